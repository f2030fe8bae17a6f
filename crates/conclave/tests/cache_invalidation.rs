//! RFC 9111 §4.4 on the cache edge: an unsafe method (POST, PUT, DELETE)
//! answered with 2xx/3xx drops the stored entry of its target URI (every
//! `Vary` variant) and of same-origin `Location`/`Content-Location` URIs; an
//! error answer or another origin's URI drops nothing. Each test counts the
//! GETs the origin saw.
#![cfg(feature = "edge")]

use conclave_testkit::{pattern, wait_until, Recorded, Reply, TestOrigin};
use std::time::Duration;

mod common;
use common::edge::{dir_with_certs, Resp, SiteSpec};

/// An edge with one cache site (`localhost`) in front of `origin`, spoken to
/// over HTTP/1.1.
struct Edge(common::edge::Edge);

impl Edge {
    fn start(origin: &TestOrigin) -> Edge {
        let spec = SiteSpec::new(
            format!("http://127.0.0.1:{}", origin.port()),
            "server_name = [\"localhost\"]",
        )
        .with_cache("path = \"cache\"\nkeys_zone = \"Z:1m\"\nmax_size = \"100m\"\n");
        Edge(common::edge::Edge::start(dir_with_certs(), &[spec], ""))
    }

    /// `curl --http1.1` of `target` with extra arguments, which must succeed.
    fn fetch(&self, target: &str, extra: &[&str]) -> Resp {
        let mut args = vec!["--http1.1"];
        args.extend_from_slice(extra);
        let r = self.0.curl(0, target, &args);
        assert_eq!(r.exit, 0, "curl {target}: {r:?}");
        r
    }

    /// [`Edge::fetch`]'s status and `X-Cache-Status` (`-` when absent).
    fn req(&self, target: &str, extra: &[&str]) -> (u16, String) {
        let r = self.fetch(target, extra);
        (r.status, r.cache().to_string())
    }

    fn get(&self, target: &str) -> (u16, String) {
        self.req(target, &[])
    }

    /// How many complete entries the cache directory holds (`LEVEL1/LEVEL2/HASH`).
    fn stored(&self) -> usize {
        let ls = |p: &std::path::Path| {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
        };
        ls(&self.0.path("cache"))
            .flat_map(|d| ls(&d).collect::<Vec<_>>())
            .flat_map(|d| ls(&d).collect::<Vec<_>>())
            .filter(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .count()
    }

    /// The absolute URL of `target` on this edge (for `Location` values).
    fn url(&self, target: &str) -> String {
        format!("https://localhost:{}{target}", self.0.ports[0])
    }
}

/// GETs are cacheable for a minute; any other method gets `status` and `headers`.
fn doc(status: u16, headers: Vec<(&'static str, String)>) -> impl Fn(&Recorded) -> Reply {
    move |r| {
        if r.method == "GET" {
            Reply::ok("doc").header("cache-control", "max-age=60")
        } else {
            headers
                .iter()
                .fold(Reply::status(status), |rep, (k, v)| rep.header(k, v))
        }
    }
}

fn gets(origin: &TestOrigin, path: &str) -> usize {
    origin
        .requests_to(path)
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

fn s(status: u16, cache: &str) -> (u16, String) {
    (status, cache.to_string())
}

#[test]
fn a_post_answered_200_invalidates_and_one_answered_500_does_not() {
    let origin = TestOrigin::start();
    origin.route_fn("/doc", doc(200, Vec::new()));
    origin.route_fn("/keep", doc(500, Vec::new()));
    let edge = Edge::start(&origin);
    for p in ["/doc", "/keep"] {
        assert_eq!(edge.get(p), s(200, "MISS"));
        assert_eq!(edge.get(p), s(200, "HIT"));
    }
    // Passed through (no cache status), the body reaching the origin.
    assert_eq!(edge.req("/doc", &["--data", "x=1"]), s(200, "-"));
    assert_eq!(edge.req("/keep", &["--data", "x=1"]), s(500, "-"));
    assert_eq!(edge.get("/doc"), s(200, "MISS"));
    assert_eq!(edge.get("/doc"), s(200, "HIT"));
    assert_eq!(edge.get("/keep"), s(200, "HIT"));
    assert_eq!((gets(&origin, "/doc"), gets(&origin, "/keep")), (2, 1));
    let posts: Vec<_> = origin
        .requests_to("/doc")
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, b"x=1");
}

#[test]
fn location_and_content_location_of_the_same_origin_are_invalidated_too() {
    let origin = TestOrigin::start();
    let edge = Edge::start(&origin);
    // The edge's port is known only now: the routes name it.
    origin.route_fn(
        "/form",
        doc(
            303,
            vec![
                ("location", "/a".to_string()),
                ("content-location", edge.url("/b")),
            ],
        ),
    );
    origin.route_fn(
        "/elsewhere",
        doc(201, vec![("location", "https://other.example/c".to_string())]),
    );
    origin.route_fn(
        "/other-port",
        doc(201, vec![("location", "https://localhost/d".to_string())]),
    );
    for p in ["/a", "/b", "/c", "/d"] {
        origin.route_fn(p, doc(200, Vec::new()));
        assert_eq!(edge.get(p), s(200, "MISS"));
        assert_eq!(edge.get(p), s(200, "HIT"));
    }
    assert_eq!(edge.req("/form", &["-X", "PUT", "--data", "v"]), s(303, "-"));
    assert_eq!(edge.req("/elsewhere", &["--data", "v"]), s(201, "-"));
    assert_eq!(edge.req("/other-port", &["--data", "v"]), s(201, "-"));
    assert_eq!(edge.get("/a"), s(200, "MISS"));
    assert_eq!(edge.get("/b"), s(200, "MISS"));
    // Another host, another port: another origin, not touched.
    assert_eq!(edge.get("/c"), s(200, "HIT"));
    assert_eq!(edge.get("/d"), s(200, "HIT"));
    let n: Vec<usize> = ["/a", "/b", "/c", "/d"]
        .iter()
        .map(|p| gets(&origin, p))
        .collect();
    assert_eq!(n, [2, 2, 1, 1]);
}

#[test]
fn a_delete_invalidates_every_vary_variant() {
    let origin = TestOrigin::start();
    origin.route_fn("/v", |r| {
        if r.method == "GET" {
            let lang = r.header("accept-language").unwrap_or_default();
            Reply::ok(format!("in {lang}"))
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language")
        } else {
            Reply::status(204)
        }
    });
    let edge = Edge::start(&origin);
    for lang in ["fr", "en"] {
        let h = format!("Accept-Language: {lang}");
        assert_eq!(edge.req("/v", &["-H", &h]), s(200, "MISS"));
        assert_eq!(edge.req("/v", &["-H", &h]), s(200, "HIT"));
    }
    assert_eq!(
        edge.req("/v", &["-X", "DELETE", "-H", "Accept-Language: fr"]),
        s(204, "-")
    );
    for lang in ["fr", "en"] {
        let h = format!("Accept-Language: {lang}");
        assert_eq!(edge.req("/v", &["-H", &h]), s(200, "MISS"), "{lang}");
        assert_eq!(edge.req("/v", &["-H", &h]), s(200, "HIT"), "{lang}");
    }
    assert_eq!(gets(&origin, "/v"), 4);
}

#[test]
fn a_range_on_a_miss_answers_206_and_still_stores_the_whole_body() {
    const LEN: u64 = 3 << 20;
    let origin = TestOrigin::start();
    origin.route(
        "/big",
        Reply::ok("").generated(LEN).header("cache-control", "max-age=60"),
    );
    let edge = Edge::start(&origin);
    let r = edge.fetch("/big", &["-H", "Range: bytes=1000000-1000099"]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 206), "{r:?}");
    assert_eq!(r.header("content-range"), Some("bytes 1000000-1000099/3145728"));
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.cache(), "MISS");
    let want: Vec<u8> = (1_000_000..1_000_100).map(pattern).collect();
    assert_eq!(r.body, want);
    // The rest of the body goes on into the cache after the client's range.
    assert!(wait_until(Duration::from_secs(20), || edge.stored() == 1));
    let r = edge.fetch("/big", &[]);
    assert_eq!((r.status, r.cache()), (200, "HIT"));
    assert_eq!(r.body.len() as u64, LEN);
    assert!(r.body.iter().enumerate().all(|(i, b)| *b == pattern(i as u64)));
    assert_eq!(origin.count("/big"), 1);
    // Several ranges on a miss: the whole 200 (the stored entity answers them next).
    origin.route(
        "/two",
        Reply::ok("0123456789").header("cache-control", "max-age=60"),
    );
    let r = edge.fetch("/two", &["-H", "Range: bytes=0-1,4-5"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"0123456789");
}
