//! The cache edge as an RFC 9111 shared cache, against a scriptable origin
//! (`conclave_testkit::TestOrigin`) that sends chosen headers per path: what
//! is stored, for how long, how it is revalidated, served stale, varied,
//! purged, and answered for ranges. Every test asserts exact statuses and
//! headers, and how many requests the origin saw.
#![cfg(feature = "edge")]

use std::time::Duration;

mod common;
use common::edge::{dir_with_certs, Resp, SiteSpec};
use conclave_testkit::{Reply, TestOrigin};

/// An edge with one cache site in front of `origin`, spoken to over HTTP/1.1.
struct Edge(common::edge::Edge);

impl Edge {
    /// `site` and `cache` are extra TOML lines for `[[server]]` and `[server.cache]`.
    fn start(origin: &TestOrigin, site: &str, cache: &str) -> Edge {
        let extra = format!("server_name = [\"localhost\"]\n{site}");
        let spec = SiteSpec::new(format!("http://127.0.0.1:{}", origin.port()), &extra).with_cache(format!(
            "path = \"cache\"\nkeys_zone = \"Z:1m\"\nmax_size = \"100m\"\n{cache}\n"
        ));
        Edge(common::edge::Edge::start(dir_with_certs(), &[spec], ""))
    }

    /// `curl --http1.1` of `target` with extra arguments, which must succeed.
    fn get(&self, target: &str, extra: &[&str]) -> Resp {
        let r = self.try_get(target, extra);
        assert_eq!(r.exit, 0, "curl {target}: {r:?}");
        r
    }

    /// [`Edge::get`] that may fail (`exit` says how).
    fn try_get(&self, target: &str, extra: &[&str]) -> Resp {
        let mut args = vec!["--http1.1"];
        args.extend_from_slice(extra);
        self.0.curl(0, target, &args)
    }
}

/// A reply that answers `If-None-Match: etag` with a 304 (same `Cache-Control`).
fn validating(
    body: &'static str,
    etag: &'static str,
    cc: &'static str,
) -> impl Fn(&conclave_testkit::Recorded) -> Reply {
    move |r| {
        if r.header("if-none-match").as_deref() == Some(etag) {
            Reply::status(304)
                .header("etag", etag)
                .header("cache-control", cc)
        } else {
            Reply::ok(body).header("etag", etag).header("cache-control", cc)
        }
    }
}

#[test]
fn max_age_2_is_a_hit_with_age_then_expires_at_2s_and_revalidates() {
    let origin = TestOrigin::start();
    origin.route_fn("/ma", validating("v1", "\"e1\"", "max-age=2"));
    let edge = Edge::start(&origin, "", "");
    let first = edge.get("/ma", &[]);
    assert_eq!(
        (first.status, first.cache(), first.text().as_str()),
        (200, "MISS", "v1")
    );
    let hit = edge.get("/ma", &[]);
    assert_eq!((hit.status, hit.cache(), hit.text().as_str()), (200, "HIT", "v1"));
    assert!(
        matches!(hit.header("age"), Some("0") | Some("1")),
        "{:?}",
        hit.header("age")
    );
    assert_eq!(hit.header("cache-control"), Some("max-age=2"));
    assert_eq!(hit.header("etag"), Some("\"e1\""));
    assert_eq!(origin.count("/ma"), 1);
    // Time itself is what is tested here: max-age=2 ends 2 s after the response.
    std::thread::sleep(Duration::from_millis(2100));
    let again = edge.get("/ma", &[]);
    assert_eq!(
        (again.status, again.cache(), again.text().as_str()),
        (200, "REVALIDATED", "v1")
    );
    let seen = origin.requests_to("/ma");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("if-none-match").as_deref(), Some("\"e1\""));
    // The 304 made it fresh again.
    assert_eq!(edge.get("/ma", &[]).cache(), "HIT");
    assert_eq!(origin.count("/ma"), 2);
}

#[test]
fn s_maxage_wins_over_max_age() {
    let origin = TestOrigin::start();
    origin.route(
        "/s",
        Reply::ok("s").header("cache-control", "max-age=0, s-maxage=60"),
    );
    origin.route(
        "/z",
        Reply::ok("z").header("cache-control", "max-age=60, s-maxage=0"),
    );
    let edge = Edge::start(&origin, "", "");
    assert_eq!(edge.get("/s", &[]).cache(), "MISS");
    assert_eq!(edge.get("/s", &[]).cache(), "HIT");
    assert_eq!(origin.count("/s"), 1);
    assert_eq!(edge.get("/z", &[]).cache(), "MISS");
    let z = edge.get("/z", &[]);
    assert_eq!((z.status, z.cache()), (200, "EXPIRED"));
    assert_eq!(origin.count("/z"), 2);
}

#[test]
fn expires_gives_freshness_when_max_age_is_absent_and_max_age_0_is_never_a_hit() {
    let origin = TestOrigin::start();
    origin.route(
        "/exp",
        Reply::ok("e").header("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
    );
    origin.route(
        "/past",
        Reply::ok("p").header("expires", "Thu, 01 Jan 2015 00:00:00 GMT"),
    );
    origin.route("/zero", Reply::ok("0").header("cache-control", "max-age=0"));
    // No `valid` fallback: only the origin's headers count.
    let edge = Edge::start(&origin, "", "valid = \"0s\"");
    for p in ["/exp", "/past", "/zero"] {
        assert_eq!(edge.get(p, &[]).cache(), "MISS");
    }
    assert_eq!(edge.get("/exp", &[]).cache(), "HIT");
    assert_eq!(edge.get("/past", &[]).cache(), "EXPIRED");
    assert_eq!(edge.get("/zero", &[]).cache(), "EXPIRED");
    assert_eq!(
        (origin.count("/exp"), origin.count("/past"), origin.count("/zero")),
        (1, 2, 2)
    );
}

#[test]
fn no_cache_is_stored_but_revalidated_with_a_conditional_request_every_time() {
    let origin = TestOrigin::start();
    origin.route_fn("/nc", validating("body", "\"n1\"", "no-cache"));
    let edge = Edge::start(&origin, "", "");
    assert_eq!(edge.get("/nc", &[]).cache(), "MISS");
    for _ in 0..2 {
        let r = edge.get("/nc", &[]);
        assert_eq!(
            (r.status, r.cache(), r.text().as_str()),
            (200, "REVALIDATED", "body")
        );
    }
    let seen = origin.requests_to("/nc");
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("if-none-match"), None);
    assert_eq!(seen[1].header("if-none-match").as_deref(), Some("\"n1\""));
    assert_eq!(seen[2].header("if-none-match").as_deref(), Some("\"n1\""));
    // A client's own conditional is answered from the stored validators.
    let c = edge.get("/nc", &["-H", "If-None-Match: \"n1\""]);
    assert_eq!((c.status, c.cache()), (304, "REVALIDATED"));
}

#[test]
fn set_cookie_passes_but_is_not_cached_and_private_or_no_store_neither() {
    let origin = TestOrigin::start();
    origin.route(
        "/cookie",
        Reply::ok("c")
            .header("set-cookie", "sid=1; Path=/")
            .header("cache-control", "max-age=60"),
    );
    origin.route(
        "/private",
        Reply::ok("p").header("cache-control", "private, max-age=60"),
    );
    origin.route("/nostore", Reply::ok("n").header("cache-control", "no-store"));
    let edge = Edge::start(&origin, "", "");
    for _ in 0..2 {
        let r = edge.get("/cookie", &[]);
        assert_eq!((r.status, r.cache()), (200, "MISS"));
        assert_eq!(r.header("set-cookie"), Some("sid=1; Path=/"));
        assert_eq!(edge.get("/private", &[]).cache(), "MISS");
        assert_eq!(edge.get("/nostore", &[]).cache(), "MISS");
    }
    assert_eq!(
        (
            origin.count("/cookie"),
            origin.count("/private"),
            origin.count("/nostore")
        ),
        (2, 2, 2)
    );
}

#[test]
fn vary_accept_language_keeps_variants_apart() {
    let origin = TestOrigin::start();
    origin.route_fn("/v", |r| {
        let body = match r.header("accept-language").as_deref() {
            Some("fr") => "bonjour",
            Some(_) => "hello",
            None => "default",
        };
        Reply::ok(body)
            .header("vary", "Accept-Language")
            .header("cache-control", "max-age=60")
    });
    let edge = Edge::start(&origin, "", "");
    let fr = ["-H", "Accept-Language: fr"];
    let en = ["-H", "Accept-Language: en"];
    let f1 = edge.get("/v", &fr);
    assert_eq!((f1.cache(), f1.text().as_str()), ("MISS", "bonjour"));
    let e1 = edge.get("/v", &en);
    assert_eq!((e1.cache(), e1.text().as_str()), ("MISS", "hello"));
    let f2 = edge.get("/v", &fr);
    assert_eq!((f2.cache(), f2.text().as_str()), ("HIT", "bonjour"));
    assert_eq!(f2.header("vary"), Some("Accept-Language"));
    let e2 = edge.get("/v", &en);
    assert_eq!((e2.cache(), e2.text().as_str()), ("HIT", "hello"));
    let none = edge.get("/v", &[]);
    assert_eq!((none.cache(), none.text().as_str()), ("MISS", "default"));
    assert_eq!(origin.count("/v"), 3);
}

#[test]
fn vary_star_is_never_stored() {
    let origin = TestOrigin::start();
    origin.route(
        "/star",
        Reply::ok("s")
            .header("vary", "*")
            .header("cache-control", "max-age=60"),
    );
    let edge = Edge::start(&origin, "", "");
    edge.get("/star", &[]);
    assert_eq!(edge.get("/star", &[]).cache(), "MISS");
    assert_eq!(origin.count("/star"), 2);
}

#[test]
fn stale_if_error_serves_stale_with_the_origin_down() {
    let mut origin = TestOrigin::start();
    origin.route(
        "/sie",
        Reply::ok("old").header("cache-control", "max-age=1, stale-if-error=60"),
    );
    origin.route(
        "/mr",
        Reply::ok("mr").header("cache-control", "max-age=1, must-revalidate"),
    );
    let edge = Edge::start(&origin, "", "");
    assert_eq!(edge.get("/sie", &[]).cache(), "MISS");
    assert_eq!(edge.get("/mr", &[]).cache(), "MISS");
    std::thread::sleep(Duration::from_millis(1100));
    origin.stop();
    let r = edge.get("/sie", &[]);
    assert_eq!((r.status, r.cache(), r.text().as_str()), (200, "STALE", "old"));
    // must-revalidate: never stale, the error goes to the client.
    assert_eq!(edge.get("/mr", &[]).status, 502);
}

#[test]
fn use_stale_error_serves_stale_and_without_it_the_client_gets_502() {
    let mut origin = TestOrigin::start();
    origin.route("/u", Reply::ok("u").header("cache-control", "max-age=1"));
    let with = Edge::start(&origin, "", "use_stale = [\"error\"]");
    let without = Edge::start(&origin, "", "");
    with.get("/u", &[]);
    without.get("/u", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    origin.stop();
    let r = with.get("/u", &[]);
    assert_eq!((r.status, r.cache(), r.text().as_str()), (200, "STALE", "u"));
    assert_eq!(without.get("/u", &[]).status, 502);
}

#[test]
fn a_hung_origin_with_use_stale_timeout_serves_stale_within_the_read_timeout() {
    let origin = TestOrigin::start();
    origin.route("/h", Reply::ok("before").header("cache-control", "max-age=1"));
    let edge = Edge::start(
        &origin,
        "proxy_read_timeout = \"1s\"",
        "use_stale = [\"timeout\"]",
    );
    assert_eq!(edge.get("/h", &[]).cache(), "MISS");
    std::thread::sleep(Duration::from_millis(1100));
    origin.route("/h", Reply::hang());
    let t = std::time::Instant::now();
    let r = edge.get("/h", &[]);
    assert_eq!((r.status, r.cache(), r.text().as_str()), (200, "STALE", "before"));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let origin = TestOrigin::start();
    origin.route(
        "/swr",
        Reply::ok("one").header("cache-control", "max-age=1, stale-while-revalidate=60"),
    );
    let edge = Edge::start(&origin, "", "");
    edge.get("/swr", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    origin.route("/swr", Reply::ok("two").header("cache-control", "max-age=60"));
    let r = edge.get("/swr", &[]);
    assert_eq!((r.cache(), r.text().as_str()), ("STALE", "one"));
    assert!(common::wait_until(Duration::from_secs(10), || {
        let r = edge.get("/swr", &[]);
        r.cache() == "HIT" && r.text() == "two"
    }));
    assert_eq!(origin.count("/swr"), 2);
}

#[test]
fn a_cached_redirect_keeps_its_status_and_location() {
    let origin = TestOrigin::start();
    origin.route("/old", Reply::status(301).header("location", "/new"));
    let edge = Edge::start(&origin, "", "");
    for label in ["MISS", "HIT"] {
        let r = edge.get("/old", &[]);
        assert_eq!(
            (r.status, r.cache(), r.header("location")),
            (301, label, Some("/new"))
        );
    }
    assert_eq!(origin.count("/old"), 1);
}

#[test]
fn purge_removes_one_url_or_a_prefix_and_only_from_allowed_addresses() {
    let origin = TestOrigin::start();
    for p in ["/p/a", "/p/b", "/q"] {
        origin.route(p, Reply::ok(p).header("cache-control", "max-age=600"));
    }
    let edge = Edge::start(&origin, "", "purge_allow = [\"127.0.0.1/32\"]");
    let closed = Edge::start(&origin, "", "purge_allow = [\"192.0.2.0/24\"]");
    for p in ["/p/a", "/p/b", "/q"] {
        edge.get(p, &[]);
        assert_eq!(edge.get(p, &[]).cache(), "HIT");
    }
    let purge = ["-X", "PURGE"];
    let one = edge.get("/p/a", &purge);
    assert_eq!((one.status, one.text().as_str()), (200, "purged 1\n"));
    assert_eq!(edge.get("/p/a", &[]).cache(), "MISS");
    assert_eq!(edge.get("/p/b", &[]).cache(), "HIT");
    let prefix = edge.get("/p/*", &purge);
    assert_eq!((prefix.status, prefix.text().as_str()), (200, "purged 2\n"));
    assert_eq!(edge.get("/p/b", &[]).cache(), "MISS");
    assert_eq!(edge.get("/q", &[]).cache(), "HIT");
    assert_eq!(edge.get("/nothing", &purge).status, 404);
    closed.get("/q", &[]);
    assert_eq!(closed.get("/q", &purge).status, 403);
    assert_eq!(closed.get("/q", &[]).cache(), "HIT");
}

#[test]
fn hits_answer_ranges_and_several_ranges_as_multipart_byteranges() {
    let origin = TestOrigin::start();
    let body: String = (0..1000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    origin.route(
        "/r.txt",
        Reply::ok(body.clone())
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60"),
    );
    let edge = Edge::start(&origin, "", "");
    edge.get("/r.txt", &[]);
    let one = edge.get("/r.txt", &["-H", "Range: bytes=10-19"]);
    assert_eq!((one.status, one.cache()), (206, "HIT"));
    assert_eq!(one.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(one.text(), body[10..20]);
    let many = edge.get("/r.txt", &["-H", "Range: bytes=0-1,998-"]);
    assert_eq!(many.status, 206);
    let ct = many.header("content-type").unwrap().to_string();
    let bnd = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let want = format!(
        "\r\n--{bnd}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/1000\r\n\r\nab\
         \r\n--{bnd}\r\nContent-Type: text/plain\r\nContent-Range: bytes 998-999/1000\r\n\r\n{}\
         \r\n--{bnd}--\r\n",
        &body[998..]
    );
    assert_eq!(many.text(), want);
    assert_eq!(
        many.header("content-length"),
        Some(want.len().to_string().as_str())
    );
    assert_eq!(edge.get("/r.txt", &["-H", "Range: bytes=5000-"]).status, 416);
}

#[test]
fn the_configured_key_decides_what_is_shared() {
    let origin = TestOrigin::start();
    origin.route("/k", Reply::ok("k").header("cache-control", "max-age=60"));
    // Without $args, /k?x and /k?y are one entry.
    let edge = Edge::start(&origin, "", "key = \"$scheme$host$uri\"");
    assert_eq!(edge.get("/k?x=1", &[]).cache(), "MISS");
    assert_eq!(edge.get("/k?y=2", &[]).cache(), "HIT");
    assert_eq!(origin.count("/k"), 1);
}

#[test]
fn a_body_cut_short_is_never_stored() {
    let origin = TestOrigin::start();
    origin.route(
        "/cut",
        Reply::status(200)
            .generated(1 << 20)
            .stall_after(100_000)
            .header("cache-control", "max-age=600"),
    );
    let edge = Edge::start(&origin, "proxy_read_timeout = \"1s\"", "");
    let cut = edge.try_get("/cut", &[]);
    assert_ne!(cut.exit, 0, "a cut body must not look complete");
    origin.route("/cut", Reply::ok("whole").header("cache-control", "max-age=600"));
    let r = edge.get("/cut", &[]);
    assert_eq!((r.cache(), r.text().as_str()), ("MISS", "whole"));
    assert_eq!(edge.get("/cut", &[]).cache(), "HIT");
    assert_eq!(origin.count("/cut"), 2);
}

#[test]
fn a_head_miss_stores_the_body_for_the_next_get() {
    let origin = TestOrigin::start();
    origin.route(
        "/hd",
        Reply::ok("head body").header("cache-control", "max-age=600"),
    );
    let edge = Edge::start(&origin, "", "");
    let h = edge.get("/hd", &["-I"]);
    assert_eq!((h.status, h.cache(), h.body.len()), (200, "MISS", 0));
    assert!(common::wait_until(Duration::from_secs(10), || edge
        .get("/hd", &["-I"])
        .cache()
        == "HIT"));
    let g = edge.get("/hd", &[]);
    assert_eq!((g.cache(), g.text().as_str()), ("HIT", "head body"));
    assert_eq!(origin.requests_to("/hd")[0].method, "GET");
    assert_eq!(origin.count("/hd"), 1);
}

#[test]
fn concurrent_misses_share_one_origin_fetch() {
    let origin = TestOrigin::start();
    origin.route(
        "/slow",
        Reply::ok("shared")
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(500)),
    );
    let edge = Edge::start(&origin, "", "");
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| edge.get("/slow", &[]))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!((a.status, a.text().as_str()), (200, "shared"));
    }
    assert_eq!(origin.count("/slow"), 1);
}

#[test]
fn age_includes_the_age_the_origin_reported() {
    let origin = TestOrigin::start();
    origin.route(
        "/aged",
        Reply::ok("a")
            .header("cache-control", "max-age=600")
            .header("age", "100"),
    );
    let edge = Edge::start(&origin, "", "");
    edge.get("/aged", &[]);
    let hit = edge.get("/aged", &[]);
    assert_eq!(hit.cache(), "HIT");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((100..110).contains(&age), "Age {age}");
}

#[test]
fn an_entry_the_origin_now_marks_no_store_is_dropped() {
    let origin = TestOrigin::start();
    origin.route("/ns", Reply::ok("kept").header("cache-control", "max-age=1"));
    let edge = Edge::start(&origin, "", "");
    edge.get("/ns", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    origin.route("/ns", Reply::ok("fresh").header("cache-control", "no-store"));
    let r = edge.get("/ns", &[]);
    assert_eq!((r.cache(), r.text().as_str()), ("EXPIRED", "fresh"));
    assert_eq!(edge.get("/ns", &[]).cache(), "MISS");
    assert_eq!(origin.count("/ns"), 3);
}

#[test]
fn use_stale_updating_serves_stale_while_another_request_refreshes() {
    let origin = TestOrigin::start();
    origin.route("/up", Reply::ok("old").header("cache-control", "max-age=1"));
    let edge = Edge::start(&origin, "", "use_stale = [\"updating\"]");
    edge.get("/up", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    origin.route(
        "/up",
        Reply::ok("new")
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(1500)),
    );
    std::thread::scope(|s| {
        let refresh = s.spawn(|| edge.get("/up", &[]));
        // Once the refresh reached the origin, a second request is served stale.
        assert!(common::wait_until(Duration::from_secs(10), || origin
            .count("/up")
            == 2));
        let during = edge.get("/up", &[]);
        assert_eq!((during.cache(), during.text().as_str()), ("UPDATING", "old"));
        let r = refresh.join().unwrap();
        assert_eq!((r.cache(), r.text().as_str()), ("EXPIRED", "new"));
    });
    assert_eq!(edge.get("/up", &[]).text(), "new");
}

#[test]
fn background_update_serves_stale_at_once_and_refreshes() {
    let origin = TestOrigin::start();
    origin.route("/bg", Reply::ok("old").header("cache-control", "max-age=1"));
    let edge = Edge::start(
        &origin,
        "",
        "use_stale = [\"updating\"]\nbackground_update = true",
    );
    edge.get("/bg", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    origin.route("/bg", Reply::ok("new").header("cache-control", "max-age=600"));
    let r = edge.get("/bg", &[]);
    assert_eq!((r.cache(), r.text().as_str()), ("STALE", "old"));
    assert!(common::wait_until(Duration::from_secs(10), || {
        let r = edge.get("/bg", &[]);
        r.cache() == "HIT" && r.text() == "new"
    }));
}
