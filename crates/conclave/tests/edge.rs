//! Integration tests of `conclave edge` and `conclave origin`: real processes on
//! loopback, checked with curl, ab and openssl s_client.
#![cfg(feature = "edge")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{conclave, conclave_ok, free_port, poll_until, server, signal, wait_port, wait_until, Proc};

const FILES: [&str; 5] = ["1k.txt", "10k.txt", "100k.txt", "1m.txt", "index.html"];

/// A temp dir with certs/, html/ and a running origin that logs requests.
struct World {
    dir: tempfile::TempDir,
    origin_port: u16,
    _origin: Proc,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        common::certs(&p.join("certs"), &[]);
        conclave_ok(&["content", "--out", p.join("html").to_str().unwrap()]);
        let origin_port = free_port();
        let origin = conclave()
            .args(["origin", "--root"])
            .arg(p.join("html"))
            .args(["--listen", &format!("127.0.0.1:{origin_port}"), "--access-log"])
            .arg(p.join("origin.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let origin = server(origin);
        wait_port(origin_port);
        World {
            dir,
            origin_port,
            _origin: origin,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an edge config: `sites` are (port, mode) pairs.
    fn config(&self, name: &str, workers: usize, sites: &[(u16, &str)]) -> PathBuf {
        let mut t = format!(
            "workers = {workers}\nclient_header_timeout = \"2s\"\nkeepalive_timeout = \"5s\"\n\
             large_client_header_buffers = \"32k\"\nmax_uri_length = 8192\naccess_log = \"{name}-access.log\"\n"
        );
        for (i, (port, mode)) in sites.iter().enumerate() {
            t += &format!(
                "\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nserver_name = [\"localhost\"]\nmode = \"{mode}\"\n\
                 root = \"html\"\nproxy_pass = \"http://127.0.0.1:{}\"\n[server.tls]\n\
                 certificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n",
                self.origin_port
            );
            if *mode == "cache" {
                t += &format!(
                    "[server.cache]\npath = \"cache-{name}-{i}\"\nkeys_zone = \"Z{i}:16k\"\nmax_size = \"10m\"\n\
                     inactive = \"60m\"\nvalid = \"60m\"\nmin_uses = 1\n"
                );
            }
        }
        let p = self.path().join(format!("{name}.toml"));
        std::fs::write(&p, t).unwrap();
        p
    }

    fn edge(&self, config: &Path, ports: &[u16]) -> Proc {
        let child = conclave()
            .arg("edge")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let p = server(child);
        for port in ports {
            wait_port(*port);
        }
        p
    }

    /// How many requests the origin saw for `target`.
    fn origin_hits(&self, target: &str) -> usize {
        let log = std::fs::read_to_string(self.path().join("origin.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.split(' ').nth(3) == Some(target))
            .count()
    }

    fn curl(&self, port: u16, extra: &[&str], target: &str) -> std::process::Output {
        Command::new("curl")
            .args(["-sS", "--path-as-is", "--cacert"])
            .arg(self.path().join("certs/ca/root.crt"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .arg(format!("https://localhost:{port}{target}"))
            .output()
            .unwrap()
    }

    /// Status code of a request.
    fn status(&self, port: u16, extra: &[&str], target: &str) -> String {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(extra);
        String::from_utf8(self.curl(port, &a, target).stdout).unwrap()
    }
}

const VARIANTS: [(&str, &[&str], &str); 3] = [
    ("TLS 1.2", &["--tlsv1.2", "--tls-max", "1.2", "--http1.1"], "1.1"),
    ("TLS 1.3", &["--tlsv1.3", "--http1.1"], "1.1"),
    ("HTTP/2", &["--http2"], "2"),
];

fn fetch_all_identical(w: &World, port: u16) {
    for (name, args, version) in VARIANTS {
        for f in FILES {
            let mut a = args.to_vec();
            a.extend_from_slice(&["-w", "\n%{http_version} %{http_code}"]);
            let out = w.curl(port, &a, &format!("/{f}"));
            assert!(
                out.status.success(),
                "{name} {f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = std::fs::read(w.path().join("html").join(f)).unwrap();
            let trailer = format!("\n{version} 200");
            assert!(
                out.stdout.ends_with(trailer.as_bytes()),
                "{name} {f}: version/status"
            );
            let body = &out.stdout[..out.stdout.len() - trailer.len()];
            assert!(
                body == want.as_slice(),
                "{name} {f}: body differs ({} vs {} bytes)",
                body.len(),
                want.len()
            );
        }
    }
}

fn header(out: &std::process::Output, name: &str) -> Option<String> {
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}

#[test]
fn standalone_and_cache_serve_every_file_byte_identical_and_origin_once() {
    let w = World::new();
    let (sp, cp) = (free_port(), free_port());
    let cfg = w.config("both", 1, &[(sp, "standalone"), (cp, "cache")]);
    let check = conclave()
        .arg("edge")
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _edge = w.edge(&cfg, &[sp, cp]);

    fetch_all_identical(&w, sp);

    // Many clients at once for fresh URLs: the origin is asked once per URL.
    for f in FILES {
        let target = format!("/{f}");
        let kids: Vec<Child> = (0..8)
            .map(|_| {
                Command::new("curl")
                    .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                    .arg(w.path().join("certs/ca/root.crt"))
                    .args(["--resolve", &format!("localhost:{cp}:127.0.0.1")])
                    .arg(format!("https://localhost:{cp}{target}"))
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for k in kids {
            let out = k.wait_with_output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{f}");
        }
        assert_eq!(w.origin_hits(&target), 1, "origin requests for {target}");
    }
    fetch_all_identical(&w, cp);
    for f in FILES {
        assert_eq!(
            w.origin_hits(&format!("/{f}")),
            1,
            "origin requests for /{f} after all fetches"
        );
    }

    // MISS, then HIT, for a URL never asked before (query strings are part of the key).
    let first = w.curl(cp, &["-D", "-", "-o", "/dev/null"], "/1k.txt?fresh");
    assert_eq!(header(&first, "x-cache-status").as_deref(), Some("MISS"));
    let second = w.curl(cp, &["-D", "-", "-o", "/dev/null"], "/1k.txt?fresh");
    assert_eq!(header(&second, "x-cache-status").as_deref(), Some("HIT"));
    assert_eq!(header(&second, "content-length").as_deref(), Some("1024"));
    assert_eq!(w.origin_hits("/1k.txt?fresh"), 1);

    // Conditionals and ranges on hits and on files.
    for port in [sp, cp] {
        let h = w.curl(port, &["-D", "-", "-o", "/dev/null"], "/10k.txt");
        let etag = header(&h, "etag").expect("etag");
        assert!(header(&h, "last-modified").is_some() && header(&h, "date").is_some());
        assert_eq!(header(&h, "content-type").as_deref(), Some("text/plain"));
        assert_eq!(
            w.status(port, &["-H", &format!("If-None-Match: {etag}")], "/10k.txt"),
            "304"
        );
        let lm = header(&h, "last-modified").unwrap();
        assert_eq!(
            w.status(port, &["-H", &format!("If-Modified-Since: {lm}")], "/10k.txt"),
            "304"
        );
        let r = w.curl(port, &["-r", "26-51"], "/10k.txt");
        assert_eq!(r.stdout, b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(w.status(port, &["-r", "26-51"], "/10k.txt"), "206");
        assert_eq!(w.status(port, &["-I"], "/1k.txt"), "200");
    }
    assert_eq!(w.status(sp, &[], "/missing.txt"), "404");
    assert_eq!(w.status(cp, &[], "/missing.txt"), "404");

    // The access log has one line per request, with the cache status.
    let log = std::fs::read_to_string(w.path().join("both-access.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains(" GET /1k.txt?fresh 200 1024 HIT")),
        "{log}"
    );
    assert!(log.lines().any(|l| l.contains(" GET /missing.txt 404 ")), "{log}");
}

fn ab(url: &str, workers: usize) {
    let out = Command::new("ab")
        .args(["-n", "2000", "-c", "32", url])
        .output()
        .expect("ab (apache2-utils) is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ab with {workers} worker(s): {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Complete requests:      2000"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    assert!(text.contains("Document Length:        1024 bytes"), "{text}");
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.get(1) == Some(&pid.to_string().as_str()) {
            out.push(e.file_name().to_string_lossy().parse().unwrap());
        }
    }
    out.sort();
    out
}

#[test]
fn ab_completes_without_failures_with_one_and_two_workers_and_a_killed_worker_is_replaced() {
    let w = World::new();
    for workers in [1, 2] {
        let port = free_port();
        let cfg = w.config(&format!("ab{workers}"), workers, &[(port, "cache")]);
        let edge = w.edge(&cfg, &[port]);
        ab(&format!("https://127.0.0.1:{port}/1k.txt"), workers);
        if workers == 2 {
            let mut kids = Vec::new();
            wait_until(Duration::from_secs(20), || {
                kids = children_of(edge.id());
                kids.len() >= 2
            });
            assert_eq!(kids.len(), 2, "two workers");
            let victim = kids[0];
            assert!(signal(victim.into(), "KILL"));
            let mut now = Vec::new();
            wait_until(Duration::from_secs(20), || {
                now = children_of(edge.id());
                now.len() == 2 && !now.contains(&victim)
            });
            assert!(
                now.len() == 2 && !now.contains(&victim),
                "worker replaced: {kids:?} -> {now:?}"
            );
            assert_eq!(w.status(port, &[], "/1k.txt"), "200");
            // Stopping the master stops every worker.
            drop(edge);
            for k in now {
                assert!(
                    !Path::new(&format!("/proc/{k}")).exists() || is_zombie(k),
                    "worker {k} left behind"
                );
            }
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn bad_input_is_refused_while_others_are_served() {
    let w = World::new();
    let port = free_port();
    let cfg = w.config("bad", 1, &[(port, "standalone")]);
    let _edge = w.edge(&cfg, &[port]);

    // A slowloris client trickles a request head, one byte at a time.
    let mut slow = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let mut stdin = slow.stdin.take().unwrap();
    let _ = stdin.write_all(b"GET /1k.txt HTTP/1.1\r\nHost: localhost\r\n");

    assert_eq!(w.status(port, &[], "/../etc/passwd"), "400");
    assert_eq!(w.status(port, &[], "/%2e%2e/%2e%2e/etc/passwd"), "400");
    assert_eq!(w.status(port, &[], "/a/%2E%2e/1k.txt"), "400");
    assert_eq!(w.status(port, &[], "/..%2f1k.txt"), "400");
    assert_eq!(w.status(port, &[], "/1k.txt%00"), "400");
    assert_eq!(w.status(port, &["-X", "POST", "-d", "x"], "/1k.txt"), "405");
    assert_eq!(w.status(port, &["-X", "DELETE"], "/1k.txt"), "405");
    let long = format!("/{}", "a".repeat(10_000));
    assert_eq!(w.status(port, &[], &long), "414");
    let big = format!("X-Big: {}", "b".repeat(100 * 1024));
    let st = w.status(port, &["--http1.1", "-H", &big], "/1k.txt");
    assert_eq!(st, "431", "100 KiB header");
    assert_eq!(
        w.status(port, &["--http1.1", "-H", "Content-Length: 5000000"], "/1k.txt"),
        "413"
    );
    assert_eq!(w.status(port, &[], "/1k.txt"), "200");

    // The slow client is cut off at the header timeout (2 s) though it keeps sending.
    let mut slow = Proc::new(slow);
    let closed = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        if let Ok(Some(_)) = slow.try_wait() {
            return true;
        }
        let _ = stdin.write_all(b"X");
        let _ = stdin.flush();
        false
    });
    drop(slow);
    assert!(closed, "slowloris connection was not closed");
    assert_eq!(w.status(port, &[], "/1k.txt"), "200");
}

#[test]
fn check_names_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.toml");
    std::fs::write(
        &p,
        "workers = 1\n\n[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"mirror\"\n",
    )
    .unwrap();
    let out = conclave()
        .arg("edge")
        .arg("--config")
        .arg(&p)
        .arg("--check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("e.toml:5:"), "{err}");
}

#[test]
fn workers_exit_when_the_master_dies() {
    let w = World::new();
    let port = free_port();
    let cfg = w.config("orphan", 2, &[(port, "standalone")]);
    let mut edge = w.edge(&cfg, &[port]);
    let mut kids = Vec::new();
    wait_until(Duration::from_secs(20), || {
        kids = children_of(edge.id());
        kids.len() >= 2
    });
    assert_eq!(kids.len(), 2, "two workers");
    edge.kill().unwrap();
    edge.wait().unwrap();
    let gone = |k: &u32| !Path::new(&format!("/proc/{k}")).exists() || is_zombie(*k);
    wait_until(Duration::from_secs(20), || kids.iter().all(gone));
    assert!(kids.iter().all(gone), "workers {kids:?} outlived their master");
}
