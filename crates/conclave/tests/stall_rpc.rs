//! Issue 16, part 1, with real processes: no peer can stall or exhaust an
//! RPC server. `conclave keyserver` (whose accept loop the file and memory
//! servers share) keeps signing for an authenticated edge while its slots
//! are full of idle TCP connections, and a flood of refused connections
//! leaves a few log lines with counts, not one line per refusal.
#![cfg(feature = "keys")]

use conclave_keys::rustls::SignatureScheme;
use conclave_keys::KeyClient;
use conclave_rpc::{Credentials, Endpoint, Role};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{conclave, wait_until, Proc};

/// A generous bound for conditions the tests wait on.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `conclave keyserver` over a fresh conclave (the site key in
/// its own directory, as in a deployment), its stderr in `log`.
struct KeyServer {
    _proc: Proc,
    _tmp: tempfile::TempDir,
    certs: PathBuf,
    log: PathBuf,
    endpoint: Endpoint,
    addr: String,
}

impl KeyServer {
    fn start(limits: &[&str]) -> KeyServer {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        let keys = tmp.path().join("keys");
        common::certs(&certs, &[]);
        std::fs::create_dir(&keys).unwrap();
        std::fs::rename(certs.join("site/server.key"), keys.join("server.key")).unwrap();
        let log = tmp.path().join("keyserver.log");
        let mut child = conclave()
            .arg("keyserver")
            .arg("--keys")
            .arg(&keys)
            .arg("--certs")
            .arg(&certs)
            .args(["--listen", "tcp://127.0.0.1:0"])
            .args(limits)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let proc = Proc::new(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let endpoint: Endpoint = line
            .trim()
            .strip_prefix("keyserver listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected output {line:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        let Endpoint::Tcp(addr) = endpoint.clone() else {
            unreachable!()
        };
        KeyServer {
            _proc: proc,
            _tmp: tmp,
            certs,
            log,
            endpoint,
            addr,
        }
    }

    /// A new edge client (its own connection and mTLS handshake).
    fn edge(&self) -> KeyClient {
        let creds = Credentials::from_dir(&self.certs, Role::Edge).unwrap();
        KeyClient::with_credentials(self.endpoint.clone(), &creds).unwrap()
    }

    /// The refusal log lines whose reason contains `why`, and the sum of
    /// the counts they carry ("refused N ..." or "shed N ...").
    fn counted(&self, why: &str) -> (usize, u64) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut lines = 0;
        let mut sum = 0;
        for line in text.lines().filter(|l| l.contains(why)) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let n = words
                .windows(2)
                .find(|w| w[0] == "refused" || w[0] == "shed")
                .and_then(|w| w[1].parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"));
            lines += 1;
            sum += n;
        }
        (lines, sum)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sign(client: &KeyClient) -> Vec<u8> {
    client
        .sign(
            "server",
            SignatureScheme::RSA_PSS_SHA256,
            &conclave_keys::shape::tls13_certificate_verify(&[0x5a; 32]),
        )
        .expect("the key server signs")
}

const SHED: &str = "oldest unauthenticated connection dropped for a new one";
const HANDSHAKE_FAILED: &str = "TLS handshake failed";

#[test]
fn edge_gets_signatures_within_1s_while_idle_sockets_fill_every_slot() {
    // The handshake deadline is long so the idle sockets keep their slots
    // for the whole test, as an attacker who reconnects would.
    let ks = KeyServer::start(&["--max-connections", "64", "--handshake-timeout", "60s"]);
    let idle: Vec<TcpStream> = (0..70).map(|_| TcpStream::connect(&ks.addr).unwrap()).collect();
    // The server has accepted all 70: 6 were shed for newer ones, so all 64
    // slots hold idle, unauthenticated sockets.
    assert!(
        wait_until(PATIENCE, || ks.counted(SHED).1 >= 6),
        "the key server never reported shedding; log:\n{}",
        ks.log_text()
    );
    assert_eq!(ks.counted(SHED).1, 6);
    // Each edge client is kept, so each new one finds the slots full again.
    let mut edges = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let edge = ks.edge();
        let sig = sign(&edge);
        let elapsed = t.elapsed();
        edges.push(edge);
        assert_eq!(sig.len(), 256, "an RSA-2048 signature");
        println!("signature {i} (new connection and mTLS handshake) in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(1), "signature {i} took {elapsed:?}");
    }
    // Each new edge connection took the slot of the oldest idle socket.
    assert!(wait_until(PATIENCE, || ks.counted(SHED).1 >= 11));
    assert_eq!(ks.counted(SHED).1, 11);
    // The authenticated connections are never shed.
    for edge in &edges {
        assert_eq!(sign(edge).len(), 256);
    }
    drop(idle);
}

#[test]
fn refusal_floods_are_logged_as_a_few_lines_with_counts() {
    let ks = KeyServer::start(&["--max-conns-per-addr", "2", "--handshake-timeout", "60s"]);
    // Two idle sockets are the address's two pending connections (accepted
    // first: the listen queue is FIFO). Each further connection sheds the
    // address's oldest pending one; a flood socket that is not shed fails
    // its handshake when the client closes it. Either way each of the 502
    // connections ends counted exactly once.
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&ks.addr).unwrap()).collect();
    let t = Instant::now();
    for _ in 0..500 {
        drop(TcpStream::connect(&ks.addr).unwrap());
    }
    let flood = t.elapsed();
    let ended = || ks.counted(SHED).1 + ks.counted(HANDSHAKE_FAILED).1;
    assert!(
        wait_until(PATIENCE, || ended() >= 502),
        "refusals not all logged: shed {:?}, failed {:?}; log:\n{}",
        ks.counted(SHED),
        ks.counted(HANDSHAKE_FAILED),
        ks.log_text()
    );
    assert_eq!(ended(), 502);
    // The held sockets were the oldest: shed by the server.
    for s in &mut held {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0, "a held socket was not shed");
    }
    let lines = ks.counted(SHED).0 + ks.counted(HANDSHAKE_FAILED).0;
    println!("502 ended connections in {flood:?}: {lines} log lines");
    // At most one line per kind per second of flood, plus the partial
    // seconds at either end.
    assert!(
        lines >= 1 && lines as u64 <= 2 * (flood.as_secs() + 2),
        "{lines} lines for a {flood:?} flood"
    );
    drop(held);
    // Every connection of the first flood is logged (`ended() == 502`), so
    // the second flood's lines are counted from here.
    let (lines_before, failed_before) = ks.counted(HANDSHAKE_FAILED);

    // Failed TLS handshakes are counted the same way: 200 peers speaking
    // plain HTTP to the key server, one after another.
    let t = Instant::now();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&ks.addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // Wait for the server to give up on this one before the next, so
        // the address never has more than one pending connection.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let flood = t.elapsed();
    assert!(
        wait_until(PATIENCE, || ks.counted(HANDSHAKE_FAILED).1 >= failed_before + 200),
        "handshake failures not all logged: {:?}; log:\n{}",
        ks.counted(HANDSHAKE_FAILED),
        ks.log_text()
    );
    let (lines, sum) = ks.counted(HANDSHAKE_FAILED);
    println!("200 failed TLS handshakes in {flood:?}: {lines} log lines, counts summing to {sum}");
    assert_eq!(sum, failed_before + 200, "the 200 plain-HTTP peers");
    let lines = lines - lines_before;
    assert!(
        lines >= 1 && lines as u64 <= flood.as_secs() + 2,
        "{lines} lines for a {flood:?} flood"
    );
    // The server still serves, and no line was written per refusal.
    assert_eq!(sign(&ks.edge()).len(), 256);
    let total = ks.log_text().lines().count();
    assert!(total < 30, "{total} log lines:\n{}", ks.log_text());
}

/// The limits are flags of every RPC server, refused by name when invalid.
#[test]
fn limit_flags_are_checked() {
    let out = conclave()
        .args(["keyserver", "--keys", "/nonexistent", "--certs", "/nonexistent"])
        .args(["--max-connections", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-connections"), "{err}");
}
