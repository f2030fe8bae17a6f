//! `conclave ab` against real ApacheBench: both load the same stock nginx
//! (Debian's, generated config, certificate from `conclave certs`) and must
//! agree on request counts, failure counts, non-2xx counts and document length.

use std::path::Path;
use std::process::Command;

mod common;
use common::{conclave, free_port, nginx, stdout_ok as run_ok, Proc};

/// nginx serving `conclave content` over TLS with conclave's site
/// certificate, its whole process group (master and workers) killed on drop.
fn start_nginx(dir: &Path, port: u16) -> Proc {
    let certs = dir.join("certs");
    let html = dir.join("html");
    common::certs(&certs, &[]);
    run_ok(conclave().arg("content").arg("--out").arg(&html));
    let conf = format!(
        "{preamble} keepalive_timeout 65;\n\
         server {{\n  listen 127.0.0.1:{port} ssl;\n  server_name localhost;\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_certificate {c}/site/server.crt;\n  ssl_certificate_key {c}/site/server.key;\n  root {h};\n }}\n}}\n",
        preamble = nginx::preamble(dir, 1),
        c = certs.display(),
        h = html.display()
    );
    nginx::start(dir, &conf, &[port])
}

/// The numbers both tools print, read from ab's text layout.
#[derive(Debug, PartialEq)]
struct Summary {
    complete: u64,
    failed: u64,
    non_2xx: u64,
    doc_len: u64,
    html: u64,
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn summary(text: &str) -> Summary {
    let get = |n: &str| field(text, n).unwrap_or_else(|| panic!("no {n:?} in:\n{text}"));
    Summary {
        complete: get("Complete requests:"),
        failed: get("Failed requests:"),
        non_2xx: field(text, "Non-2xx responses:").unwrap_or(0),
        doc_len: get("Document Length:"),
        html: get("HTML transferred:"),
    }
}

#[test]
fn agrees_with_apachebench_on_counts_and_lengths() {
    nginx::require(&["ab"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port);
    let cases: [(&str, &[&str]); 5] = [
        ("/1k.txt", &["-n", "200", "-c", "8"]),
        ("/100k.txt", &["-n", "60", "-c", "4"]),
        ("/missing.txt", &["-n", "40", "-c", "5"]),
        ("/10k.txt", &["-n", "100", "-c", "4", "-k"]),
        ("/1k.txt", &["-n", "20", "-c", "2", "-i"]),
    ];
    for (path, flags) in cases {
        let url = format!("https://127.0.0.1:{port}{path}");
        let theirs = summary(&run_ok(Command::new("ab").args(flags).arg(&url)));
        let ours_text = run_ok(conclave().arg("ab").arg("--insecure").args(flags).arg(&url));
        let ours = summary(&ours_text);
        assert_eq!(ours, theirs, "{path} {flags:?}\nours:\n{ours_text}");
        let n: u64 = flags[1].parse().unwrap();
        assert_eq!(ours.complete, n);
        assert_eq!(ours.failed, 0);
        if path == "/missing.txt" {
            assert_eq!(ours.non_2xx, n);
        } else {
            assert_eq!(ours.non_2xx, 0);
        }
        if flags.contains(&"-k") {
            let ka = field(&ours_text, "Keep-Alive requests:").unwrap();
            assert!(ka > 0, "keep-alive was not used:\n{ours_text}");
        } else {
            // One full handshake per request, no resumption.
            assert!(
                ours_text.contains(&format!("TLS handshakes:         {n} full, 0 resumed")),
                "{ours_text}"
            );
        }
    }
}

#[test]
fn verifies_the_conclave_ca_and_counts_connect_failures() {
    nginx::require(&[]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port);
    let url = format!("https://127.0.0.1:{port}/1k.txt");
    let ca = dir.path().join("certs/ca/root.crt");
    for tls in ["1.2", "1.3"] {
        let text = run_ok(
            conclave()
                .args(["ab", "-n", "20", "-c", "2", "--tls", tls, "--cacert"])
                .arg(&ca)
                .arg(&url),
        );
        assert_eq!(summary(&text).failed, 0, "{text}");
        assert_eq!(summary(&text).doc_len, 1024);
        let want = if tls == "1.2" { "TLSv1_2" } else { "TLSv1_3" };
        assert!(text.contains(want), "{text}");
    }
    // -t stops on time; -e writes ab's percentile CSV.
    let csv = dir.path().join("pct.csv");
    let text = run_ok(
        conclave()
            .args(["ab", "-t", "1", "-c", "2", "--insecure", "-e"])
            .arg(&csv)
            .arg(&url),
    );
    let s = summary(&text);
    assert!(s.complete > 0 && s.failed == 0, "{text}");
    let table = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(table.lines().next(), Some("Percentage served,Time in ms"));
    assert_eq!(table.lines().count(), 102);
    // With resumption allowed, later handshakes resume.
    let text = run_ok(
        conclave()
            .args(["ab", "-n", "20", "-c", "1", "--resume", "--cacert"])
            .arg(&ca)
            .arg(&url),
    );
    assert!(!text.contains(" 0 resumed"), "{text}");
    // A CA that did not issue the server's certificate: every request fails to connect.
    let other = dir.path().join("other");
    common::certs(&other, &[]);
    let text = run_ok(
        conclave()
            .args(["ab", "-n", "10", "-c", "2", "--cacert"])
            .arg(other.join("ca/root.crt"))
            .arg(&url),
    );
    let s = summary(&text);
    assert_eq!((s.complete, s.failed), (10, 10), "{text}");
    assert!(
        text.contains("(Connect: 10, Receive: 0, Length: 0, Exceptions: 0)"),
        "{text}"
    );
    // https without a trust choice is a clear error.
    let out = conclave().args(["ab", "-n", "1"]).arg(&url).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cacert"));
}
