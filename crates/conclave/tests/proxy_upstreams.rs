//! Issue 14 point 4: upstreams. Timeouts answer 504 within
//! `proxy_read_timeout`, a refused origin 502; an `[[upstream]]` group shares
//! load in round robin and skips a dead server (`max_fails`); HTTPS origins
//! are verified against `proxy_ssl_trusted_certificate`. Real processes: an
//! edge in front of scriptable origins written in the test.
#![cfg(feature = "edge")]

mod common;

use common::edge::{dir_with_certs, Edge, SiteSpec};
use conclave_testkit::{free_port, BlackHole, Reply, TestOrigin};
use std::time::Duration;

/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(2500);

#[test]
fn a_hung_origin_gives_504_within_proxy_read_timeout() {
    let origin = TestOrigin::start();
    origin.route("/hang", Reply::hang());
    origin.route(
        "/stall",
        Reply::ok(vec![b'x'; 100_000])
            .header("cache-control", "no-store")
            .stall_after(1000),
    );
    origin.route(
        "/slow",
        Reply::ok("late but in time\n").delay(Duration::from_millis(300)),
    );
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(
            format!("127.0.0.1:{}", origin.port()),
            "proxy_read_timeout = \"1s\"",
        )],
        "",
    );
    for (path, args) in [("/hang", vec![]), ("/hang", vec!["-X", "POST", "-d", "x"])] {
        let r = edge.curl(0, path, &args);
        assert_eq!(r.status, 504, "{args:?}");
        assert!(
            r.took >= Duration::from_millis(900) && r.took < Duration::from_secs(1) + MARGIN,
            "504 after {:?}",
            r.took
        );
    }
    // The head came, then the body stopped: the client's transfer is cut
    // (not completed as if whole) within the read timeout.
    // (POST: passed through, streamed; GET would be fetched whole into the cache.)
    let r = edge.curl(0, "/stall", &["--http1.1", "-X", "POST", "-d", "x"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.exit, 18, "curl: partial file");
    assert!(r.body.len() < 100_000);
    assert!(r.took < Duration::from_secs(1) + MARGIN, "cut after {:?}", r.took);
    // Under the timeout: answered.
    let r = edge.curl(0, "/slow", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"late but in time\n"[..]));
    let log = edge.log();
    assert!(
        log.contains("no response within 1s (proxy_read_timeout)"),
        "the cause is logged: {log}"
    );
}

#[test]
fn a_refused_origin_gives_502_with_the_cause_logged() {
    let dead = free_port();
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(format!("http://127.0.0.1:{dead}"), "")],
        "",
    );
    for args in [vec![], vec!["-X", "PUT", "-d", "x"]] {
        let r = edge.curl(0, "/x", &args);
        assert_eq!(r.status, 502, "{args:?}");
    }
    let log = edge.log();
    assert!(log.contains(&format!("127.0.0.1:{dead}: connecting: ")), "{log}");
}

#[test]
fn an_origin_that_never_accepts_gives_504_within_proxy_connect_timeout() {
    let hole = BlackHole::new();
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(
            format!("127.0.0.1:{}", hole.port()),
            "proxy_connect_timeout = \"1s\"",
        )],
        "",
    );
    let r = edge.curl(0, "/x", &[]);
    assert_eq!(r.status, 504);
    assert!(
        r.took >= Duration::from_millis(900) && r.took < Duration::from_secs(1) + MARGIN,
        "504 after {:?}",
        r.took
    );
    let log = edge.log();
    assert!(
        log.contains("no connection within 1s (proxy_connect_timeout)"),
        "{log}"
    );
}

#[test]
fn an_origin_that_stops_reading_the_body_gives_504_within_proxy_send_timeout() {
    // Accepts, then never reads: the upload fills the socket buffers and stalls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(
            format!("127.0.0.1:{port}"),
            "proxy_send_timeout = \"1s\"\nclient_max_body_size = \"64m\"",
        )],
        "",
    );
    let big = edge.path("big.bin");
    std::fs::write(&big, vec![1u8; 48 << 20]).unwrap();
    let r = edge.curl(
        0,
        "/up",
        &["--http1.1", "--data-binary", &format!("@{}", big.display())],
    );
    assert_eq!(r.status, 504);
    assert!(r.took < Duration::from_secs(10), "504 after {:?}", r.took);
    let log = edge.log();
    assert!(
        log.contains("request body not taken within 1s (proxy_send_timeout)"),
        "{log}"
    );
    drop(holder.join());
}

#[test]
fn two_origins_share_load_and_a_dead_one_is_skipped() {
    let a = TestOrigin::start();
    let b = TestOrigin::start();
    for o in [&a, &b] {
        o.route("/n", Reply::ok("n").header("cache-control", "no-store"));
    }
    let dead = free_port();
    let group = |name: &str, ports: &[u16]| {
        let mut t = format!("[[upstream]]\nname = \"{name}\"\n");
        for p in ports {
            t.push_str(&format!("[[upstream.server]]\naddress = \"127.0.0.1:{p}\"\n"));
        }
        t
    };
    let top = format!(
        "{}{}",
        group("pair", &[a.port(), b.port()]),
        group("withdead", &[a.port(), dead, b.port()])
    );
    let edge = Edge::start(
        dir_with_certs(),
        &[
            SiteSpec::new("http://pair", ""),
            SiteSpec::new("http://withdead", ""),
        ],
        &top,
    );
    for _ in 0..10 {
        assert_eq!(edge.curl(0, "/n", &[]).status, 200);
    }
    assert_eq!((a.count("/n"), b.count("/n")), (5, 5), "round robin");
    // The dead server fails once (the request goes on to the next server),
    // then stays out for fail_timeout (10s): every request is answered.
    for _ in 0..12 {
        let r = edge.curl(1, "/n", &[]);
        assert_eq!(r.status, 200);
    }
    assert_eq!(a.count("/n") + b.count("/n"), 22);
    let log = edge.log();
    assert_eq!(
        log.matches(&format!("upstream server 127.0.0.1:{dead} is out"))
            .count(),
        1,
        "{log}"
    );
    // Both live servers keep sharing.
    assert!(
        a.count("/n") >= 10 && b.count("/n") >= 10,
        "{} {}",
        a.count("/n"),
        b.count("/n")
    );
}

#[test]
fn https_origin_is_verified_against_the_configured_ca() {
    let dir = dir_with_certs();
    let d = dir.path();
    // Another CA, which did not sign the origin's certificate.
    common::certs(&d.join("other"), &[]);
    let origin = TestOrigin::start_tls(&d.join("certs/site/server.crt"), &d.join("certs/site/server.key"));
    origin.route(
        "/s",
        Reply::ok("secret origin\n").header("cache-control", "no-store"),
    );
    let pass = format!("https://127.0.0.1:{}", origin.port());
    let edge = Edge::start(
        dir,
        &[
            SiteSpec::new(
                pass.clone(),
                "proxy_ssl_trusted_certificate = \"certs/ca/root.crt\"\nproxy_ssl_name = \"localhost\"",
            ),
            SiteSpec::new(
                pass.clone(),
                "proxy_ssl_trusted_certificate = \"other/ca/root.crt\"\nproxy_ssl_name = \"localhost\"",
            ),
            SiteSpec::new(
                pass,
                "proxy_ssl_trusted_certificate = \"certs/ca/root.crt\"\nproxy_ssl_name = \"not-the-name.test\"",
            ),
        ],
        "",
    );
    let r = edge.curl(0, "/s", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"secret origin\n"[..]));
    let r = edge.curl(0, "/s", &["-X", "POST", "-d", "x"]);
    assert_eq!(r.status, 200);
    assert_eq!(edge.curl(1, "/s", &[]).status, 502, "wrong CA");
    assert_eq!(edge.curl(2, "/s", &[]).status, 502, "wrong name");
    assert_eq!(origin.count("/s"), 2);
    let log = edge.log();
    assert!(log.contains("TLS handshake: "), "{log}");
}

#[test]
fn connections_to_the_origin_are_kept_alive_and_reused() {
    let origin = TestOrigin::start();
    origin.route("/k", Reply::ok("k").header("cache-control", "no-store"));
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(format!("127.0.0.1:{}", origin.port()), "")],
        "",
    );
    for _ in 0..5 {
        assert_eq!(edge.curl(0, "/k", &[]).status, 200);
        assert_eq!(edge.curl(0, "/k", &["-X", "POST", "-d", "x"]).status, 200);
    }
    let peers: std::collections::BTreeSet<_> = origin.requests_to("/k").iter().map(|r| r.peer).collect();
    assert_eq!(origin.count("/k"), 10);
    assert_eq!(
        peers.len(),
        1,
        "one pooled connection for sequential requests: {peers:?}"
    );
}
