//! An edge with cache sites in front of test origins
//! (`conclave_testkit::TestOrigin`), and curl to talk to it: what the proxy,
//! compression and cache tests share, so they start and query the edge one way.
#![allow(dead_code)]

use conclave_testkit::{wait_port, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running edge and its directory (certificates, config, log).
pub struct Edge {
    /// First, so the edge is stopped before its directory is removed (fields
    /// drop in order).
    proc: Proc,
    pub dir: tempfile::TempDir,
    /// The listening port of each site, in the order given.
    pub ports: Vec<u16>,
}

/// One cache site: `proxy_pass` and more `[[server]]` lines.
pub struct SiteSpec<'a> {
    pub proxy_pass: String,
    pub extra: &'a str,
    /// The whole `[server.cache]` table; `None`: `path = "cacheN"` and
    /// `keys_zone = "ZN:16k"` (N: the site's index), enough for a few keys.
    pub cache: Option<String>,
}

impl<'a> SiteSpec<'a> {
    pub fn new(proxy_pass: impl Into<String>, extra: &'a str) -> SiteSpec<'a> {
        SiteSpec {
            proxy_pass: proxy_pass.into(),
            extra,
            cache: None,
        }
    }

    /// This site with `lines` as its whole `[server.cache]` table (they must
    /// name `path` and `keys_zone`), for tests that size or place the cache.
    pub fn with_cache(mut self, lines: impl Into<String>) -> SiteSpec<'a> {
        self.cache = Some(lines.into());
        self
    }
}

/// The test's certificates (`conclave certs`) in a fresh directory.
pub fn dir_with_certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    super::certs(&dir.path().join("certs"), &[]);
    dir
}

impl Edge {
    /// One edge worker serving `sites`; `top` is appended after them (e.g. `[[upstream]]`).
    pub fn start(dir: tempfile::TempDir, sites: &[SiteSpec<'_>], top: &str) -> Edge {
        Self::start_with(dir, "", sites, top)
    }

    /// [`Edge::start`] with top-level keys `head` (before the sites).
    pub fn start_with(dir: tempfile::TempDir, head: &str, sites: &[SiteSpec<'_>], top: &str) -> Edge {
        let d = dir.path();
        let mut toml = format!("workers = 1\n{head}\n");
        let mut ports = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let port = super::free_port();
            ports.push(port);
            let cache = s
                .cache
                .clone()
                .unwrap_or_else(|| format!("path = \"cache{i}\"\nkeys_zone = \"Z{i}:16k\"\n"));
            toml.push_str(&format!(
                "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"cache\"\nproxy_pass = \"{}\"\n{}\n\
                 [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n\
                 [server.cache]\n{cache}\n",
                s.proxy_pass, s.extra
            ));
        }
        toml.push_str(top);
        let cfg = d.join("edge.toml");
        std::fs::write(&cfg, toml).unwrap();
        super::conclave_ok(&["edge", "--config", cfg.to_str().unwrap(), "--check"]);
        let proc = super::start_logged(d, "edge", &["edge", "--config", cfg.to_str().unwrap()]);
        for p in &ports {
            wait_port(*p);
        }
        Edge { proc, dir, ports }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The edge's master process (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// `curl ARGS https://localhost:PORT{target}` to site `site`, with
    /// `localhost` pinned to 127.0.0.1 (the edge listens there only).
    pub fn curl(&self, site: usize, target: &str, args: &[&str]) -> Resp {
        let port = self.ports[site];
        let resolve = format!("localhost:{port}:127.0.0.1");
        let mut all = vec!["--resolve", resolve.as_str()];
        all.extend_from_slice(args);
        curl(
            self.dir.path(),
            &format!("https://localhost:{port}{target}"),
            &all,
        )
    }

    /// The edge's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("edge.log")).unwrap_or_default()
    }
}

/// A response as curl got it.
#[derive(Debug)]
pub struct Resp {
    /// The status line's protocol (`HTTP/1.1`, `HTTP/2`); empty when curl got
    /// no response.
    pub version: String,
    /// 0 when curl got no response.
    pub status: u16,
    /// Header lines of the last response (names lowercase).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's exit code (18: body cut short, 28: timed out, 92: HTTP/2 stream error).
    pub exit: i32,
    pub took: Duration,
}

impl Resp {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `X-Cache-Status` (`-` when absent).
    pub fn cache(&self) -> &str {
        self.header("x-cache-status").unwrap_or("-")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// curl with the test CA; the head and body kept apart.
pub fn curl(dir: &Path, url: &str, args: &[&str]) -> Resp {
    let head = tempfile::NamedTempFile::new_in(dir).unwrap();
    let body = tempfile::NamedTempFile::new_in(dir).unwrap();
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-D"])
        .arg(head.path())
        .arg("-o")
        .arg(body.path())
        .arg("--cacert")
        .arg(dir.join("certs/ca/root.crt"))
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed");
    let took = t.elapsed();
    let text = std::fs::read_to_string(head.path()).unwrap_or_default();
    // The last response block (after any 100 Continue).
    let last = text
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .unwrap_or("");
    let mut lines = last.lines();
    let mut status_line = lines.next().unwrap_or("").split_whitespace();
    let version = status_line.next().unwrap_or("").to_string();
    let status = status_line.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        version,
        status,
        headers,
        // With -I curl writes the head to `-o` too; a HEAD answer has no body.
        body: if args.iter().any(|a| *a == "-I" || *a == "--head") {
            Vec::new()
        } else {
            std::fs::read(body.path()).unwrap_or_default()
        },
        exit: out.status.code().unwrap_or(-1),
        took,
    }
}

/// The raw HTTP/1.1 answer to `request` (sent as is, then nothing more) over
/// TLS to `port`, and how long it took to come (the connection closed).
pub fn raw_h1(dir: &Path, port: u16, request: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let roots = conclave_rpc::tls::load_roots(&dir.join("certs/ca/root.crt")).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let mut s = rustls::StreamOwned::new(conn, sock);
    let t = Instant::now();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}
