//! The edge with its remote seams plugged in, as real processes: keyless TLS
//! through the key server, docroot and cache on the file server, the cache
//! index in a memory server, and the WAF.
#![cfg(all(
    feature = "edge",
    feature = "keys",
    feature = "fs",
    feature = "mem",
    feature = "waf"
))]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{conclave_ok as run, free_port, wait_port, Proc};

fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
    common::start_logged(dir, name, args)
}

fn curl(dir: &Path, url: &str) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o"])
        .arg(dir.join("body"))
        .arg("--cacert")
        .arg(dir.join("certs/ca/root.crt"))
        .arg(url)
        .output()
        .expect("curl must be installed");
    assert!(out.status.success(), "curl {url} failed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read(dir.join("body")).unwrap(),
    )
}

fn status(headers: &str) -> u16 {
    headers.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        common::certs(&d.join("certs"), &[]);
        run(&["content", "--out", d.join("html").to_str().unwrap()]);
        World { dir }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }
    fn origin(&self) -> (Proc, u16) {
        let port = free_port();
        let p = start(
            self.dir.path(),
            "origin",
            &[
                "origin",
                "--root",
                &self.s("html"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
        );
        wait_port(port);
        (p, port)
    }
    fn edge(&self, toml: &str) -> Proc {
        std::fs::write(self.p("edge.toml"), toml).unwrap();
        run(&["edge", "--config", &self.s("edge.toml"), "--check"]);
        start(
            self.dir.path(),
            "edge",
            &["edge", "--config", &self.s("edge.toml")],
        )
    }
}

#[test]
fn keyless_edge_serves_with_the_key_only_in_the_key_server() {
    let w = World::new();
    let keys = w.p("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::rename(w.p("certs/site/server.key"), keys.join("server.key")).unwrap();
    let kport = free_port();
    let _ks = start(
        w.dir.path(),
        "keyserver",
        &[
            "keyserver",
            "--keys",
            &w.s("keys"),
            "--certs",
            &w.s("certs"),
            "--listen",
            &format!("tcp://127.0.0.1:{kport}"),
        ],
    );
    wait_port(kport);
    let port = free_port();
    let _edge = w.edge(&format!(
        "workers = 1\nworker_threads = 2\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
         [server.tls]\ncertificate = \"certs/site/server.crt\"\nkeyserver = \"tcp://127.0.0.1:{kport}\"\nkey_name = \"server\"\ncerts = \"certs\"\n"
    ));
    wait_port(port);
    for tls in ["--tlsv1.2", "--tlsv1.3"] {
        let out = Command::new("curl")
            .args([
                "-s",
                tls,
                "--cacert",
                &w.s("certs/ca/root.crt"),
                &format!("https://localhost:{port}/10k.txt"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, std::fs::read(w.p("html/10k.txt")).unwrap());
    }
    assert!(
        !w.p("certs/site/server.key").exists(),
        "the edge never had a key file to open"
    );
}

fn std_image(w: &World) -> PathBuf {
    let src = w.p("imgsrc");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(w.p("html"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let image = w.p("site.img");
    run(&[
        "mkfs",
        "--device",
        "std",
        "--size",
        "64M",
        &src.display().to_string(),
        &image.display().to_string(),
    ]);
    image
}

#[test]
fn edge_serves_docroot_and_cache_from_the_file_server_with_smdish_index() {
    let w = World::new();
    let image = std_image(&w);
    let fport = free_port();
    let _fs = start(
        w.dir.path(),
        "fileserver",
        &[
            "fileserver",
            "--image",
            &image.display().to_string(),
            "--listen",
            &format!("tcp://127.0.0.1:{fport}"),
            "--certs",
            &w.s("certs"),
            // What the edge needs, nothing more; `conclave fs ls` below is a client.
            "--grant",
            "edge:ro:/html",
            "--grant",
            "edge:rw:/cache",
            "--grant",
            "client:ro:/cache",
        ],
    );
    wait_port(fport);
    let mport = free_port();
    let _ms = start(
        w.dir.path(),
        "memserver",
        &[
            "memserver",
            "--kind",
            "smdish",
            "--listen",
            &format!("tcp://127.0.0.1:{mport}"),
            "--certs",
            &w.s("certs"),
        ],
    );
    wait_port(mport);
    let (_origin, oport) = w.origin();
    let (sport, cport) = (free_port(), free_port());
    let tls = "[server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n";
    let _edge = w.edge(&format!(
        "workers = 2\n[storage]\nkind = \"nextfs\"\nserver = \"tcp://127.0.0.1:{fport}\"\ncerts = \"certs\"\n\
         [shared]\nkind = \"smdish+tcp://127.0.0.1:{mport}\"\ncerts = \"certs\"\n\
         [[server]]\nlisten = \"127.0.0.1:{sport}\"\nmode = \"standalone\"\nroot = \"/html\"\n{tls}\
         [[server]]\nlisten = \"127.0.0.1:{cport}\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:{oport}\"\n{tls}\
         [server.cache]\npath = \"/cache\"\n"
    ));
    wait_port(sport);
    wait_port(cport);
    for f in ["1k.txt", "100k.txt", "1m.txt"] {
        let want = std::fs::read(w.p(&format!("html/{f}"))).unwrap();
        let (h, body) = curl(w.dir.path(), &format!("https://localhost:{sport}/{f}"));
        assert_eq!(status(&h), 200);
        assert_eq!(body, want, "standalone from nextfs: {f}");
        let (h1, body) = curl(w.dir.path(), &format!("https://localhost:{cport}/{f}"));
        assert_eq!(body, want, "cache miss: {f}");
        assert!(h1.to_lowercase().contains("x-cache-status: miss"), "{h1}");
    }
    // The index lives in the memory server, shared by both workers: every
    // later request is a hit whichever worker takes it.
    for _ in 0..6 {
        let (h, body) = curl(w.dir.path(), &format!("https://localhost:{cport}/100k.txt"));
        assert!(h.to_lowercase().contains("x-cache-status: hit"), "{h}");
        assert_eq!(body.len(), 102400);
    }
    // the cached body sits in the image, readable through the file server
    let ls = run(&[
        "fs",
        "--server",
        &format!("tcp://127.0.0.1:{fport}"),
        "--certs",
        &w.s("certs"),
        "ls",
        "/cache",
    ]);
    assert!(
        !String::from_utf8_lossy(&ls.stdout).trim().is_empty(),
        "cache files stored in nextfs"
    );
}

#[test]
fn waf_denies_listed_strings_and_lets_others_through() {
    let w = World::new();
    run(&["waf-rules", "100", "--seed", "7", "--out", &w.s("waf/main.conf")]);
    let rules = std::fs::read_to_string(w.p("waf/main-rules.conf")).unwrap();
    let listed = rules
        .split("@contains ")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let port = free_port();
    let _edge = w.edge(&format!(
        "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
         [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n[server.waf]\nrules = \"waf/main.conf\"\n"
    ));
    wait_port(port);
    let (h, _) = curl(
        w.dir.path(),
        &format!("https://localhost:{port}/1k.txt?testparam=xx{listed}yy"),
    );
    assert_eq!(status(&h), 403, "listed string denied");
    let (h, body) = curl(
        w.dir.path(),
        &format!("https://localhost:{port}/1k.txt?testparam=harmless"),
    );
    assert_eq!(status(&h), 200);
    assert_eq!(body.len(), 1024);
    let log = std::fs::read_to_string(w.p("edge.log")).unwrap();
    assert!(
        log.contains("denied by the WAF") && log.contains("rule_id"),
        "{log}"
    );
}

#[test]
fn tls_sessions_resume_on_any_worker() {
    let w = World::new();
    let port = free_port();
    let _edge = w.edge(&format!(
        "workers = 2\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
         [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n"
    ));
    wait_port(port);
    for tls in ["1.2", "1.3"] {
        let (full, resumed) = common::ab_resumed(
            &w.p("certs/ca/root.crt"),
            tls,
            &format!("https://127.0.0.1:{port}/1k.txt"),
        );
        assert_eq!(full + resumed, 200);
        // With per-worker ticket keys about half the connections (those that
        // land on the other worker) would need a full handshake.
        assert!(
            resumed >= 190,
            "TLS {tls}: only {resumed} of 200 resumed ({full} full)"
        );
    }
}
