//! Issue 22: the edge runs Debian's OWASP CRS package unmodified (`apt-get install
//! modsecurity-crs`) with Debian's recommended modsecurity.conf, at paranoia levels 1 to 4: curl
//! gets 403 for SQL injection and XSS in the query, 200 for a benign request; in phase 2 a JSON
//! body with SQL injection is blocked before it reaches the origin, a benign one reaches it
//! byte-identical. A CRS copy broken on purpose is named by file and line by `--check`, and a
//! worker that cannot load it stops the edge once with exit code 78. Skipped (with a message)
//! when the package is not installed.
#![cfg(all(feature = "edge", feature = "waf"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::edge::{dir_with_certs, Edge, SiteSpec};
use common::{conclave, free_port, wait_exit};
use conclave_testkit::{Reply, TestOrigin};

const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn crs_installed() -> bool {
    let ok = Path::new(CRS_SETUP).exists() && Path::new(CRS_RULES).is_dir();
    if !ok {
        eprintln!("skipped: modsecurity-crs is not installed (apt-get install modsecurity-crs)");
    }
    ok
}

/// Debian's recommended modsecurity.conf (a copy kept with the WAF's tests).
fn recommended() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conclave-waf/tests/crs/modsecurity.conf")
}

/// `main.conf` in `dir`: the recommended config, the engine on, the CRS at paranoia level `pl`
/// from `rules` (a directory of `*.conf`).
fn main_conf(dir: &Path, pl: u8, rules: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "Include {}\nSecRuleEngine On\nInclude {CRS_SETUP}\n\
         SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}\"\n\
         IncludeOptional /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf\n\
         Include {}/*.conf\n\
         IncludeOptional /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf\n",
        recommended().display(),
        rules.display()
    );
    let p = dir.join("main.conf");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn crs_in_the_edge_blocks_attacks_and_passes_benign_requests_at_pl1_to_pl4() {
    if !crs_installed() {
        return;
    }
    let origin = TestOrigin::start();
    origin.route("/products", Reply::ok("products\n"));
    origin.route_fn("/api/items", |r| {
        Reply::ok(format!("{} {}\n", r.method, r.body.len()))
    });
    for pl in 1..=4u8 {
        let dir = dir_with_certs();
        let conf = main_conf(&dir.path().join("waf"), pl, Path::new(CRS_RULES));
        let extra = format!(
            "[server.waf]\nrules = \"{}\"\nbody_limit = \"64k\"\n",
            conf.display()
        );
        let edge = Edge::start(
            dir,
            &[SiteSpec::new(format!("127.0.0.1:{}", origin.port()), &extra)],
            "",
        );
        let ua = ["-A", BROWSER];
        let r = edge.curl(0, "/products?id=1%27%20OR%20%271%27%3D%271", &ua);
        assert_eq!(r.status, 403, "PL{pl} SQLi: {}", edge.log());
        let r = edge.curl(0, "/products?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", &ua);
        assert_eq!(r.status, 403, "PL{pl} XSS");
        let r = edge.curl(0, "/products?id=42&sort=price&page=2", &ua);
        assert_eq!(r.status, 200, "PL{pl} benign: {}", edge.log());
        assert_eq!(r.body, b"products\n");

        let json = |body: &str| {
            edge.curl(
                0,
                "/api/items",
                &[
                    "-A",
                    BROWSER,
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    body,
                ],
            )
        };
        let before = origin.requests_to("/api/items").len();
        let r = json(r#"{"user":{"id":"1' OR '1'='1"}}"#);
        assert_eq!(r.status, 403, "PL{pl} SQLi in a JSON body");
        assert_eq!(
            origin.requests_to("/api/items").len(),
            before,
            "a denied body never reaches the origin"
        );
        if pl == 1 {
            let benign = r#"{"name":"Widget","qty":3,"tags":["a","b"]}"#;
            let r = json(benign);
            assert_eq!(r.status, 200, "benign JSON: {}", edge.log());
            assert_eq!(r.body, format!("POST {}\n", benign.len()).as_bytes());
            let got = origin.requests_to("/api/items");
            assert_eq!(
                got.last().unwrap().body,
                benign.as_bytes(),
                "buffered body forwarded as is"
            );
            // A body over `body_limit` is refused, not inspected in part.
            let big = format!("{{\"a\":\"{}\"}}", "x".repeat(70_000));
            assert_eq!(json(&big).status, 413);
        }
        let log = edge.log();
        assert!(
            log.contains("denied by the WAF") && log.contains("949110"),
            "{log}"
        );
        assert!(
            log.contains("rule(s) of phase 4 not run"),
            "load-time note: {log}"
        );
    }
}

#[test]
fn a_broken_crs_is_named_by_check_and_stops_the_edge_once_with_78() {
    if !crs_installed() {
        return;
    }
    let dir = dir_with_certs();
    let d = dir.path();
    // The CRS rules copied, one file broken on purpose at a known line.
    let rules = d.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for e in std::fs::read_dir(CRS_RULES).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, rules.join(p.file_name().unwrap())).unwrap();
    }
    let broken = rules.join("REQUEST-920-PROTOCOL-ENFORCEMENT.conf");
    let mut text = std::fs::read_to_string(&broken).unwrap();
    let line = text.lines().count() + 1;
    text.push_str("SecHashEngine On\n");
    std::fs::write(&broken, text).unwrap();
    let conf = main_conf(&d.join("waf"), 1, &rules);
    std::fs::create_dir_all(d.join("html")).unwrap();
    let port = free_port();
    let cfg = d.join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "workers = 2\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n\
             [server.waf]\nrules = \"{}\"\n",
            conf.display()
        ),
    )
    .unwrap();
    let want = format!(
        "{}:{line}: SecHashEngine: unsupported: directive",
        broken.display()
    );

    let out = conclave()
        .args(["edge", "--config", cfg.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&want), "{err}");

    let mut edge = conclave()
        .args(["edge", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("edge.log")).unwrap())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut edge, Duration::from_secs(60));
    let log = std::fs::read_to_string(d.join("edge.log")).unwrap();
    assert_eq!(st.code(), Some(78), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "the reason once: {log}");
    assert!(errors[0].contains(&want), "{log}");
    assert!(!log.contains("restarting"), "no restart: {log}");
}
