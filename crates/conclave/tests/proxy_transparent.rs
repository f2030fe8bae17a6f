//! Issue 14 point 1: a cache site is a transparent reverse proxy. Every
//! status and end-to-end header of the origin reaches the client, hop-by-hop
//! headers stop at the edge both ways, every method passes through with its
//! body streamed, and the origin sees the client's `Host`, `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `Via`. Real processes: an edge in front of a
//! scriptable origin written in the test (`conclave_testkit::TestOrigin`).
#![cfg(feature = "edge")]

mod common;

use common::edge::{dir_with_certs, Edge, SiteSpec};
use conclave_testkit::{Reply, TestOrigin};

fn edge_for(origin: &TestOrigin, extra: &str) -> Edge {
    Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(format!("127.0.0.1:{}", origin.port()), extra)],
        "",
    )
}

#[test]
fn statuses_and_end_to_end_headers_pass_through() {
    let origin = TestOrigin::start();
    origin.route(
        "/moved",
        Reply::status(301)
            .header("location", "https://example.test/new")
            .body("moved\n"),
    );
    origin.route(
        "/login",
        Reply::ok("hi\n")
            .header("set-cookie", "sid=abc; Path=/; HttpOnly")
            .header("set-cookie", "theme=dark")
            .header("content-type", "text/plain"),
    );
    origin.route(
        "/api",
        Reply::ok("{}")
            .header("content-type", "application/json")
            .header("access-control-allow-origin", "https://app.test")
            .header("access-control-expose-headers", "X-Custom")
            .header("x-custom", "custom value")
            .header("vary", "Origin"),
    );
    let gz: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 256) as u8).collect();
    origin.route(
        "/gz",
        Reply::ok(gz.clone())
            .header("content-encoding", "gzip")
            .header("content-type", "text/html"),
    );
    origin.route(
        "/teapot",
        Reply::status(418).header("x-why", "short and stout").body("no\n"),
    );
    origin.route(
        "/boom",
        Reply::status(503).header("retry-after", "7").body("later\n"),
    );
    let edge = edge_for(&origin, "");

    let r = edge.curl(0, "/moved", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.test/new"));
    assert_eq!(r.body, b"moved\n");

    let r = edge.curl(0, "/login", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.all("set-cookie"), ["sid=abc; Path=/; HttpOnly", "theme=dark"]);
    // A response with Set-Cookie is not stored: the next request goes to the origin again.
    let r = edge.curl(0, "/login", &[]);
    assert_eq!(r.all("set-cookie").len(), 2);
    assert_eq!(origin.count("/login"), 2);

    let r = edge.curl(0, "/api", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.test"));
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Custom"));
    assert_eq!(r.header("x-custom"), Some("custom value"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("content-type"), Some("application/json"));

    // No Accept-Encoding games: the gzip body arrives byte-identical, labelled.
    for _ in 0..2 {
        let r = edge.curl(0, "/gz", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.body, gz);
    }

    let r = edge.curl(0, "/teapot", &[]);
    assert_eq!((r.status, r.header("x-why")), (418, Some("short and stout")));
    let r = edge.curl(0, "/boom", &[]);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("7")));
    assert_eq!(r.body, b"later\n");
    assert_eq!(r.header("via"), Some("1.1 conclave"));
}

#[test]
fn hop_by_hop_headers_stop_at_the_edge_both_ways() {
    let origin = TestOrigin::start();
    let reply = Reply::ok("x")
        .header("cache-control", "no-store")
        .header("connection", "X-Secret")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=5")
        .header("x-kept", "end-to-end");
    origin.route("/h", reply.clone());
    origin.route("/p", reply);
    let edge = edge_for(&origin, "");
    let hop = [
        "--http1.1",
        "-H",
        "Connection: X-Foo",
        "-H",
        "X-Foo: 1",
        "-H",
        "Keep-Alive: timeout=9",
        "-H",
        "TE: gzip",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "X-Bar: 2",
    ];
    for (path, method) in [("/h", "GET"), ("/p", "POST")] {
        let mut args = hop.to_vec();
        args.extend(["-X", method, "--data-binary", "body"]);
        if method == "GET" {
            args.truncate(hop.len());
        }
        let r = edge.curl(0, path, &args);
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("x-kept"), Some("end-to-end"));
        assert_eq!(
            r.header("x-secret"),
            None,
            "{method}: a header named in Connection passed"
        );
        assert_eq!(r.header("keep-alive"), None, "{method}");
        let got = origin.requests_to(path);
        let seen = &got.last().unwrap().headers;
        for gone in ["x-foo", "keep-alive", "te", "proxy-connection"] {
            assert!(!seen.contains_key(gone), "{method}: {gone} reached the origin");
        }
        assert_eq!(seen["x-bar"], "2");
        // The edge's own connection header to the origin, if any, is its own choice.
        assert!(seen
            .get("connection")
            .is_none_or(|v| !v.to_str().unwrap().contains("X-Foo")));
    }
}

#[test]
fn every_method_passes_through_with_its_body_byte_identical() {
    let origin = TestOrigin::start();
    origin.route_fn("/submit", |r| {
        Reply::status(201)
            .header("location", "/submit/1")
            .body(format!("{} {}\n", r.method, r.body.len()))
    });
    let edge = edge_for(&origin, "");
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let upload = format!("@{}", edge.path("upload.bin").display());
    std::fs::write(edge.path("upload.bin"), &body).unwrap();
    let r = edge.curl(
        0,
        "/submit?x=1",
        &[
            "--data-binary",
            &upload,
            "-H",
            "content-type: application/octet-stream",
        ],
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), Some("/submit/1"));
    assert_eq!(r.header("x-cache-status"), None, "a POST is never cached");
    assert_eq!(r.body, b"POST 300000\n");
    let got = origin.requests_to("/submit");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/submit?x=1");
    assert_eq!(got[0].body, body, "the body reached the origin byte-identical");
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/octet-stream")
    );

    // Chunked upload (no Content-Length) streams as well.
    let r = edge.curl(
        0,
        "/submit",
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &upload,
        ],
    );
    assert_eq!((r.status, r.body.as_slice()), (201, &b"POST 300000\n"[..]));
    assert_eq!(origin.requests_to("/submit")[1].body, body);

    for m in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = edge.curl(0, "/submit", &["-X", m, "--data-binary", "abc"]);
        assert_eq!(r.status, 201, "{m}");
        assert_eq!(r.body, format!("{m} 3\n").into_bytes());
    }
    let methods: Vec<String> = origin
        .requests_to("/submit")
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
}

#[test]
fn a_body_over_client_max_body_size_gets_413() {
    let origin = TestOrigin::start();
    origin.route_fn("/up", |r| Reply::ok(format!("{}\n", r.body.len())));
    let edge = edge_for(&origin, "");
    let big = format!("@{}", edge.path("big.bin").display());
    std::fs::write(edge.path("big.bin"), vec![7u8; 2 << 20]).unwrap();
    // Announced by Content-Length: refused before anything reaches the origin.
    // (HTTP/1.1: curl 7.88 over HTTP/2 reports the stream's reset after the 413, not the 413.)
    let r = edge.curl(0, "/up", &["--http1.1", "--data-binary", &big]);
    assert_eq!(r.status, 413);
    assert_eq!(origin.count("/up"), 0);
    // Chunked: refused once the streamed body passes the limit.
    let r = edge.curl(
        0,
        "/up",
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big,
        ],
    );
    assert_eq!(r.status, 413);
    // Exactly the limit passes.
    std::fs::write(edge.path("max.bin"), vec![7u8; 1 << 20]).unwrap();
    let max = format!("@{}", edge.path("max.bin").display());
    let r = edge.curl(0, "/up", &["--data-binary", &max]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"1048576\n"[..]));
}

#[test]
fn the_origin_sees_host_forwarded_for_proto_and_via() {
    let origin = TestOrigin::start();
    origin.route("/who", Reply::ok("ok").header("cache-control", "no-store"));
    let dir = dir_with_certs();
    let pass = format!("http://127.0.0.1:{}", origin.port());
    let edge = Edge::start(
        dir,
        &[
            SiteSpec::new(pass.clone(), ""),
            SiteSpec::new(
                pass,
                "proxy_set_header = { Host = \"origin.example\", X-Debug = \"\" }",
            ),
        ],
        "",
    );
    for (site, args) in [
        (0, vec!["--http1.1"]),
        (0, vec!["--http2"]),
        (1, vec!["--http1.1"]),
    ] {
        let mut a = args.clone();
        a.extend(["-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Debug: 1"]);
        let r = edge.curl(site, "/who", &a);
        assert_eq!(r.status, 200);
        let got = origin.requests_to("/who");
        let seen = got.last().unwrap();
        let host = if site == 0 {
            format!("localhost:{}", edge.ports[0])
        } else {
            "origin.example".into()
        };
        assert_eq!(seen.header("host"), Some(host), "{args:?}");
        assert_eq!(
            seen.header("x-forwarded-for").as_deref(),
            Some("203.0.113.9, 127.0.0.1")
        );
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
        let via = if args == ["--http2"] {
            "2 conclave"
        } else {
            "1.1 conclave"
        };
        assert_eq!(seen.header("via").as_deref(), Some(via));
        assert_eq!(
            seen.header("x-debug").is_none(),
            site == 1,
            "an empty proxy_set_header removes"
        );
    }
}

#[test]
fn a_stalled_upload_gets_408_within_client_body_timeout() {
    let origin = TestOrigin::start();
    origin.route_fn("/up", |r| Reply::ok(format!("{}\n", r.body.len())));
    let edge = Edge::start_with(
        dir_with_certs(),
        "client_body_timeout = \"1s\"",
        &[SiteSpec::new(format!("127.0.0.1:{}", origin.port()), "")],
        "",
    );
    let (answer, took) = common::edge::raw_h1(
        edge.dir.path(),
        edge.ports[0],
        b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n0123456789",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(4),
        "408 after {took:?}"
    );
    assert!(
        edge.log().contains("no data within 1s (client_body_timeout)"),
        "{}",
        edge.log()
    );
}
