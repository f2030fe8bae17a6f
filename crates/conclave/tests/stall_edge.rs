//! Issue 16 on a real `conclave edge`: peers that stall connections
//! (a trickled body, an HTTP/2 connection sending only PINGs) are closed
//! within their timeouts while other clients are served, and HTTP/1.1
//! requests without exactly one `Host` get 400. Raw TLS clients (rustls) so
//! the test controls every byte and frame.
#![cfg(feature = "edge")]

use rustls::{ClientConnection, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{conclave, conclave_ok, free_port, server, signal, wait_port, wait_until, Proc};

/// The timeouts of the test edge: short, so the test is quick.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);
const H2_IDLE: Duration = Duration::from_secs(2);
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Slots of the one worker: the attackers below fill them all.
const CONNECTIONS: usize = 4;

struct Edge {
    dir: tempfile::TempDir,
    port: u16,
    _edge: Proc,
}

impl Edge {
    /// One worker with `worker_connections = 4`, short body and HTTP/2 idle
    /// timeouts and a long keep-alive (so only the new timers can close the
    /// attackers), stderr in `edge.log`.
    fn start() -> Edge {
        Self::start_with("")
    }

    /// [`Edge::start`] with `extra` keys (top-level TOML) added.
    fn start_with(extra: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        common::certs(&p.join("certs"), &[]);
        conclave_ok(&["content", "--out", p.join("html").to_str().unwrap()]);
        Self::start_in(dir, extra, "key = \"certs/site/server.key\"\n")
    }

    /// An edge in `dir` (certs and html made), its site's key given by `key`.
    fn start_in(dir: tempfile::TempDir, extra: &str, key: &str) -> Edge {
        let p = dir.path();
        let port = free_port();
        let cfg = format!(
            "workers = 1\nworker_connections = {CONNECTIONS}\nkeepalive_timeout = \"60s\"\n\
             client_header_timeout = \"10s\"\nclient_body_timeout = \"{}s\"\nhttp2_idle_timeout = \"{}s\"\n\
             send_timeout = \"{}s\"\n{extra}\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\n\
             root = \"html\"\n[server.tls]\ncertificate = \"certs/site/server.crt\"\n{key}",
            BODY_TIMEOUT.as_secs(),
            H2_IDLE.as_secs(),
            SEND_TIMEOUT.as_secs()
        );
        let path = p.join("edge.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(p.join("edge.log")).unwrap();
        let child = conclave()
            .args(["edge", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let edge = server(child);
        wait_port(port);
        Edge {
            dir,
            port,
            _edge: edge,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("certs/ca/root.crt")
    }

    /// A TLS connection (handshake done) offering `alpn`.
    fn tls(&self, alpn: &[&[u8]]) -> StreamOwned<ClientConnection, TcpStream> {
        let roots = conclave_rpc::tls::load_roots(&self.root()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let mut conn = ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
        let mut sock = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        StreamOwned::new(conn, sock)
    }

    /// The raw HTTP/1.1 answer to `head` (sent as is) on its own connection.
    fn raw(&self, head: &str) -> String {
        let mut s = self.tls(&[b"http/1.1"]);
        s.write_all(head.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Status of a curl GET (HTTP/1.1 or 2).
    fn curl(&self, http2: bool) -> String {
        self.curl_path(http2, "/1k.txt")
    }

    /// Status of a curl GET of `target`.
    fn curl_path(&self, http2: bool, target: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30"])
            .arg(if http2 { "--http2" } else { "--http1.1" })
            .arg("--cacert")
            .arg(self.root())
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", self.port)])
            .arg(format!("https://localhost:{}{target}", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Whether a read error means the peer closed the connection.
fn closed(e: &std::io::Error) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// A POST whose body comes one byte every 2 s: returns what the edge
/// answered and how long after the head the connection closed.
fn slow_body(edge: &Edge) -> (String, Duration) {
    let mut s = edge.tls(&[b"http/1.1"]);
    s.get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    s.write_all(b"POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(60) {
        let _ = s.write_all(b"x");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if closed(&e) => break,
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

/// An HTTP/2 frame header.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        0,
        0,
        0,
        0,
    ];
    f.extend_from_slice(payload);
    f
}

/// An HTTP/2 connection that opens no stream and sends a PING every 500 ms:
/// returns how many PING ACKs it got and how long until it was closed.
fn ping_only(edge: &Edge) -> (usize, Duration) {
    let mut s = edge.tls(&[b"h2"]);
    assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
    s.get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = Instant::now();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(4, 0, &[])).unwrap();
    let mut input = Vec::new();
    let mut acks = 0;
    let mut buf = [0u8; 4096];
    let mut last_ping: Option<Instant> = None;
    while start.elapsed() < Duration::from_secs(60) {
        if last_ping.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            if s.write_all(&frame(6, 0, b"12345678")).is_err() {
                break;
            }
            last_ping = Some(Instant::now());
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if closed(&e) => break,
            Err(_) => {}
        }
        // Count PING ACKs (type 6, flag 1) among the complete frames read.
        while input.len() >= 9 {
            let len = (usize::from(input[0]) << 16) | (usize::from(input[1]) << 8) | usize::from(input[2]);
            if input.len() < 9 + len {
                break;
            }
            if input[3] == 6 && input[4] & 1 == 1 {
                acks += 1;
            }
            input.drain(..9 + len);
        }
    }
    (acks, start.elapsed())
}

#[test]
fn stalling_clients_are_closed_within_their_timeouts_while_others_are_served() {
    let edge = Arc::new(Edge::start());
    assert_eq!(edge.curl(false), "200");
    // Fill every slot of the worker: two trickled bodies, two PING-only connections.
    let slow: Vec<_> = (0..CONNECTIONS / 2)
        .map(|_| {
            let e = edge.clone();
            std::thread::spawn(move || slow_body(&e))
        })
        .collect();
    let pings: Vec<_> = (0..CONNECTIONS / 2)
        .map(|_| {
            let e = edge.clone();
            std::thread::spawn(move || ping_only(&e))
        })
        .collect();
    // Other clients meanwhile: each must be served once the stalled slots are freed.
    let started = Instant::now();
    let others: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let e = edge.clone();
            std::thread::spawn(move || (e.curl(i % 2 == 0), started.elapsed()))
        })
        .collect();
    for t in slow {
        let (answer, took) = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "slow body got: {answer:?}");
        assert!(
            took >= BODY_TIMEOUT && took < BODY_TIMEOUT + Duration::from_secs(2),
            "slow body closed after {took:?}, client_body_timeout is {BODY_TIMEOUT:?}"
        );
        eprintln!("slow body: 408 and closed after {took:?}");
    }
    for t in pings {
        let (acks, took) = t.join().unwrap();
        assert!(acks >= 1, "the PINGs were not answered");
        assert!(
            took >= H2_IDLE - Duration::from_millis(100) && took < H2_IDLE + Duration::from_secs(2),
            "PING-only connection closed after {took:?}, http2_idle_timeout is {H2_IDLE:?}"
        );
        eprintln!("PING-only: {acks} PING ACKs, closed after {took:?}");
    }
    for t in others {
        let (status, took) = t.join().unwrap();
        assert_eq!(status, "200");
        assert!(took < Duration::from_secs(20), "a client waited {took:?}");
        eprintln!("other client: 200 after {took:?}");
    }
    let log = edge.log();
    assert!(log.contains("request bodies timed out"), "log: {log}");
    assert!(log.contains("closed by http2_idle_timeout"), "log: {log}");
}

#[test]
fn http11_requests_need_exactly_one_host() {
    let edge = Edge::start();
    let ok = edge.raw("GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    let none = edge.raw("GET /1k.txt HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(none.starts_with("HTTP/1.1 400 "), "{none}");
    let two = edge.raw("GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nHost: evil\r\nConnection: close\r\n\r\n");
    assert!(two.starts_with("HTTP/1.1 400 "), "{two}");
    // HTTP/1.0 may omit it.
    let old = edge.raw("GET /1k.txt HTTP/1.0\r\n\r\n");
    assert!(old.starts_with("HTTP/1.0 200 "), "{old}");
    assert!(wait_until(Duration::from_secs(10), || edge
        .log()
        .contains("missing or duplicate Host refused (400): 1 since")));
}

#[test]
fn malformed_requests_are_counted_and_logged_once_per_interval() {
    let edge = Edge::start();
    for _ in 0..5 {
        let answer = edge.raw("NOT AN HTTP REQUEST\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    assert!(wait_until(Duration::from_secs(10), || edge
        .log()
        .contains("malformed requests refused: 1 since")));
    // Five refusals inside one interval: one line.
    assert_eq!(edge.log().matches("malformed requests refused").count(), 1);
    // Still serving.
    assert_eq!(edge.curl(true), "200");
}

#[test]
fn a_client_that_stops_reading_is_closed_by_send_timeout() {
    let edge = Edge::start();
    let mut s = edge.tls(&[b"http/1.1"]);
    // 32 pipelined 1 MiB answers, never read: the edge's writes block once the
    // socket buffers are full.
    let req = "GET /1m.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(32);
    s.write_all(req.as_bytes()).unwrap();
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || edge
            .log()
            .contains("closed by send_timeout")),
        "log: {}",
        edge.log()
    );
    let took = start.elapsed();
    eprintln!("send_timeout: closed {took:?} after the requests");
    assert!(took >= SEND_TIMEOUT, "closed after {took:?}, before send_timeout");
    assert!(
        took < SEND_TIMEOUT + Duration::from_secs(10),
        "closed after {took:?}"
    );
    assert_eq!(edge.curl(false), "200");
}

#[test]
fn a_stalled_file_server_fails_the_request_with_504_within_storage_timeout() {
    // A "file server" that accepts TCP (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fport = silent.local_addr().unwrap().port();
    let edge = Edge::start_with(&format!(
        "storage_timeout = \"1s\"\n[storage]\nkind = \"nextfs\"\nserver = \"tcp://127.0.0.1:{fport}\"\ncerts = \"certs\"\n"
    ));
    for http2 in [false, true] {
        let start = Instant::now();
        assert_eq!(edge.curl(http2), "504", "log: {}", edge.log());
        let took = start.elapsed();
        eprintln!("stalled file server: 504 after {took:?}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
    assert!(wait_until(Duration::from_secs(10), || edge
        .log()
        .contains("file-server reads failed (502/504)")));
    drop(silent);
}

#[test]
fn limit_conn_and_limit_req_refuse_the_excess_of_one_address() {
    let edge = Edge::start_with("limit_conn = 1\nlimit_req_rate = 1\nlimit_req_burst = 2\n");
    // limit_req: five pipelined requests at once; rate 1/s with burst 2 lets three through.
    let head = "GET /1k.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(4)
        + "GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let answer = edge.raw(&head);
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 3, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 503 ").count(), 2, "{answer}");
    // limit_conn: while one connection of 127.0.0.1 is open, a second is closed at once.
    let held = edge.tls(&[b"http/1.1"]);
    let refused = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", "--cacert"])
        .arg(edge.root())
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", edge.port)])
        .arg(format!("https://localhost:{}/1k.txt", edge.port))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a second connection was served");
    drop(held);
    // Once it is closed (and the bucket refilled) the address is served again.
    assert!(wait_until(Duration::from_secs(10), || edge.curl(false) == "200"));
    let log = edge.log();
    assert!(log.contains("refused by limit_conn"), "{log}");
    assert!(log.contains("refused by limit_req (503)"), "{log}");
}

#[test]
fn a_stalled_key_server_fails_only_the_handshakes_past_keyserver_timeout() {
    stalled_key_server_case("");
}

/// The same with the signing step on handshake threads (the design kept for
/// comparison), so both `keyless_handshake` modes keep this guarantee.
#[test]
fn a_stalled_key_server_fails_only_the_handshakes_past_keyserver_timeout_on_handshake_threads() {
    stalled_key_server_case("keyless_handshake = \"threads\"\n");
}

/// A keyless edge (`top`: extra top-level keys) whose key server is stopped
/// (SIGSTOP): the handshake fails after `keyserver_timeout`, and the edge
/// serves again once the key server resumes.
fn stalled_key_server_case(top: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    common::certs(&p.join("certs"), &[]);
    conclave_ok(&["content", "--out", p.join("html").to_str().unwrap()]);
    std::fs::create_dir_all(p.join("keys")).unwrap();
    std::fs::rename(p.join("certs/site/server.key"), p.join("keys/server.key")).unwrap();
    let kport = free_port();
    let child = conclave()
        .args(["keyserver", "--keys"])
        .arg(p.join("keys"))
        .arg("--certs")
        .arg(p.join("certs"))
        .args(["--listen", &format!("tcp://127.0.0.1:{kport}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p.join("keyserver.log")).unwrap())
        .spawn()
        .unwrap();
    let kpid = i64::from(child.id());
    let _ks = server(child);
    wait_port(kport);
    let edge = Edge::start_in(
        dir,
        &format!("worker_threads = 2\nkeyserver_timeout = \"1s\"\n{top}"),
        &format!("keyserver = \"tcp://127.0.0.1:{kport}\"\nkey_name = \"server\"\ncerts = \"certs\"\n"),
    );
    assert_eq!(edge.curl(false), "200");
    assert!(signal(kpid, "STOP"));
    let start = Instant::now();
    let status = edge.curl(false);
    let took = start.elapsed();
    assert!(signal(kpid, "CONT"));
    eprintln!("stalled key server: handshake failed (curl status {status:?}) after {took:?}");
    assert_eq!(status, "000", "the handshake should fail");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The edge keeps serving once the key server answers again.
    assert!(wait_until(Duration::from_secs(10), || edge.curl(true) == "200"));
}
