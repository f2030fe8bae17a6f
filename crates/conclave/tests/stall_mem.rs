//! Issue 16: a memory-file lock held and never released does not stall the
//! edge. Real processes: an smdish memory server with a 1 s lease, an edge
//! whose cache index lives there, an origin, and `conclave mem hold
//! ZONE_ONE` holding the cache zone's lock until killed.
#![cfg(all(feature = "edge", feature = "mem"))]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{conclave, conclave_ok as run, free_port, wait_port, Proc};

/// The memory server's lease in this test.
const LEASE: Duration = Duration::from_secs(1);
/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1500);

fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
    common::start_logged(dir, name, args)
}

/// GET over TLS with curl: (status, X-Cache-Status, time taken).
fn get(dir: &Path, url: &str) -> (u16, String, Duration) {
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "20", "-D", "-", "--cacert"])
        .arg(dir.join("certs/ca/root.crt"))
        .arg(url)
        .output()
        .expect("curl must be installed");
    let took = t.elapsed();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache-status:"))
        .map(|v| v.trim().to_uppercase())
        .unwrap_or_default();
    (status, cache, took)
}

#[test]
fn a_held_cache_zone_lock_never_stalls_the_edge_and_its_lease_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::certs(&d.join("certs"), &[]);
    std::fs::create_dir(d.join("html")).unwrap();
    for (f, n) in [
        ("1k.txt", 1 << 10),
        ("10k.txt", 10 << 10),
        ("100k.txt", 100 << 10),
        ("1m.txt", 1 << 20),
    ] {
        std::fs::write(d.join("html").join(f), vec![b'x'; n]).unwrap();
    }
    let certs = d.join("certs").display().to_string();
    let mport = free_port();
    let _ms = start(
        d,
        "memserver",
        &[
            "memserver",
            "--kind",
            "smdish",
            "--listen",
            &format!("tcp://127.0.0.1:{mport}"),
            "--certs",
            &certs,
            "--lease",
            "1s",
        ],
    );
    wait_port(mport);
    let oport = free_port();
    let _origin = start(
        d,
        "origin",
        &[
            "origin",
            "--root",
            &d.join("html").display().to_string(),
            "--listen",
            &format!("127.0.0.1:{oport}"),
        ],
    );
    wait_port(oport);
    let cport = free_port();
    let spec = format!("smdish+tcp://127.0.0.1:{mport}");
    std::fs::write(
        d.join("edge.toml"),
        format!(
            "workers = 2\n[shared]\nkind = \"{spec}\"\ncerts = \"certs\"\n\
             [[server]]\nlisten = \"127.0.0.1:{cport}\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:{oport}\"\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n\
             [server.cache]\npath = \"cache\"\n"
        ),
    )
    .unwrap();
    let edge_toml = d.join("edge.toml").display().to_string();
    run(&["edge", "--config", &edge_toml, "--check"]);
    let _edge = start(d, "edge", &["edge", "--config", &edge_toml]);
    wait_port(cport);
    let url = |f: &str| format!("https://localhost:{cport}/{f}");
    // Warm: 1k.txt is stored and then a hit.
    assert_eq!(get(d, &url("1k.txt")).0, 200);
    assert!(
        common::wait_until(Duration::from_secs(30), || get(d, &url("1k.txt")).1 == "HIT"),
        "1k.txt never became a hit"
    );

    // A holder of the cache zone's lock (the default zone, 16 KiB) that
    // never releases it.
    let mem = |args: &[&str]| {
        let mut c = conclave();
        c.args(["mem", "--spec", &spec, "--certs", &certs])
            .args(args)
            .args(["--size", "16384"]);
        c
    };
    let mut holder = Proc::new(
        mem(&["hold", "ZONE_ONE"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let held = Instant::now();

    // The next LOCK (another client, waiting up to 20 s) is granted once
    // the server breaks the holder's lease.
    let mut waiter = mem(&["get", "ZONE_ONE", "--timeout-ms", "20000"]);
    let next_lock = std::thread::spawn(move || {
        let out = waiter.output().unwrap();
        (
            out.status.success(),
            held.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });

    // Meanwhile the edge answers hits and misses (as misses if need be).
    for (i, f) in ["1k.txt", "10k.txt", "1k.txt", "100k.txt", "1k.txt"]
        .iter()
        .enumerate()
    {
        let (status, cache, took) = get(d, &url(f));
        eprintln!("during the hold: {f} -> {status} {cache} in {took:?}");
        assert_eq!(status, 200, "request {i} for {f} during the hold ({cache})");
        assert!(
            took < LEASE + MARGIN,
            "request {i} for {f} took {took:?} with the zone lock held"
        );
    }
    let (granted, after, err) = next_lock.join().unwrap();
    assert!(granted, "the next LOCK failed: {err}");
    eprintln!("next LOCK granted {after:?} after the hold began");
    assert!(
        after < LEASE + MARGIN,
        "the next LOCK was granted {after:?} after the hold began (lease {LEASE:?})"
    );
    // The holder is still alive (it never unlocks), yet the edge is back to
    // normal: a new file is stored and becomes a hit.
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder must still be running"
    );
    assert!(
        common::wait_until(Duration::from_secs(30), || get(d, &url("1m.txt")).1 == "HIT"),
        "1m.txt never became a hit after the lease was broken"
    );
}
