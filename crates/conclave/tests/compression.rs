//! Integration tests of the edge's compression: on-the-fly gzip, brotli and
//! zstd, and precompressed siblings (`gzip_static`), with a real edge on
//! loopback fetched by curl (raw bytes; decoded here with flate2, brotli and
//! zstd so each coding is checked on its own).
#![cfg(feature = "edge")]

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

mod common;
use common::edge::{dir_with_certs, Edge, Resp, SiteSpec};
use common::{conclave, free_port, server, wait_port, Proc};
use conclave_testkit::{Reply, TestOrigin};

/// A page long enough to compress well (and above `gzip_min_length`).
fn page() -> Vec<u8> {
    let mut p = b"<!doctype html>\n<html><body>\n".to_vec();
    for i in 0..400 {
        p.extend_from_slice(
            format!("<p>paragraph {i}: the quick brown fox jumps over the lazy dog</p>\n").as_bytes(),
        );
    }
    p.extend_from_slice(b"</body></html>\n");
    p
}

/// What curl got (the body raw), where a header sent twice fails the test.
struct Got(Resp);

impl std::ops::Deref for Got {
    type Target = Resp;
    fn deref(&self) -> &Resp {
        &self.0
    }
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        let all = self.0.all(name);
        assert!(all.len() <= 1, "{name} sent twice");
        all.first().copied()
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096).read_to_end(&mut out).unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Certificates, a docroot, a `conclave origin` (which marks its answers
/// `no-transform`) and an edge with three sites: standalone with every
/// coding and `gzip_static`/`brotli_static` on, standalone with the
/// defaults (off), and a cache in front of the origin with gzip on.
struct World {
    dir: tempfile::TempDir,
    on: u16,
    off: u16,
    cache: u16,
    _origin: Proc,
    _edge: Proc,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        common::certs(&p.join("certs"), &[]);
        let html = p.join("html");
        std::fs::create_dir_all(&html).unwrap();
        std::fs::write(html.join("page.html"), page()).unwrap();
        std::fs::write(html.join("tiny.txt"), b"0123456789").unwrap();
        std::fs::write(html.join("img.png"), page()).unwrap();
        let js = b"function f(){return 'precompressed sibling';}\n".repeat(50);
        std::fs::write(html.join("app.js"), &js).unwrap();
        std::fs::write(html.join("app.js.gz"), gzip(&js)).unwrap();
        std::fs::write(
            html.join("app.js.br"),
            b"not really brotli, but served as the .br sibling",
        )
        .unwrap();
        let origin_port = free_port();
        let origin = server(
            conclave()
                .args(["origin", "--root"])
                .arg(&html)
                .args(["--listen", &format!("127.0.0.1:{origin_port}")])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(origin_port);
        let (on, off, cache) = (free_port(), free_port(), free_port());
        let tls = "[server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n";
        let text = format!(
            "client_header_timeout = \"2s\"\n\
             [[server]]\nlisten = \"127.0.0.1:{on}\"\nmode = \"standalone\"\nroot = \"html\"\n{tls}\
             [server.compression]\ngzip = true\nbrotli = true\nzstd = true\ngzip_static = true\nbrotli_static = true\n\
             [[server]]\nlisten = \"127.0.0.1:{off}\"\nmode = \"standalone\"\nroot = \"html\"\n{tls}\
             [[server]]\nlisten = \"127.0.0.1:{cache}\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:{origin_port}\"\n{tls}\
             [server.cache]\npath = \"cache\"\n[server.compression]\ngzip = true\n"
        );
        let config = p.join("edge.toml");
        std::fs::write(&config, text).unwrap();
        let edge = server(
            conclave()
                .args(["edge", "--config"])
                .arg(&config)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for port in [on, off, cache] {
            wait_port(port);
        }
        World {
            dir,
            on,
            off,
            cache,
            _origin: origin,
            _edge: edge,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path().join("html").join(name)).unwrap()
    }

    /// `curl` of `target` on `port` with `extra` arguments; the body raw.
    fn get(&self, port: u16, target: &str, extra: &[&str]) -> Got {
        let resolve = format!("localhost:{port}:127.0.0.1");
        let args = [&["--http1.1", "--resolve", resolve.as_str()][..], extra].concat();
        let r = common::edge::curl(self.path(), &format!("https://localhost:{port}{target}"), &args);
        assert_eq!(r.exit, 0, "curl: {r:?}");
        Got(r)
    }
}

fn ae(v: &str) -> [String; 2] {
    ["-H".into(), format!("Accept-Encoding: {v}")]
}

fn args(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

#[test]
fn on_the_fly_codings_follow_accept_encoding() {
    let w = World::new();
    let want = w.file("page.html");

    // gzip: encoded, streamed (chunked, no Content-Length), weak ETag, Vary.
    let g = w.get(w.on, "/page.html", &args(&ae("gzip")));
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-encoding"), Some("gzip"));
    assert_eq!(g.header("content-type"), Some("text/html"));
    assert_eq!(g.header("vary"), Some("Accept-Encoding"));
    assert_eq!(g.header("transfer-encoding"), Some("chunked"));
    assert_eq!(g.header("content-length"), None);
    assert_eq!(g.header("accept-ranges"), None);
    assert!(
        g.header("etag").unwrap().starts_with("W/\""),
        "{:?}",
        g.header("etag")
    );
    assert!(g.body.len() < want.len() / 4, "{} bytes", g.body.len());
    assert_eq!(gunzip(&g.body), want);

    // HTTP/2 alike.
    let h2 = w.get(w.on, "/page.html", &["--http2", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(h2.status, 200);
    assert_eq!(h2.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&h2.body), want);

    // Equal weights: br over zstd over gzip.
    let b = w.get(w.on, "/page.html", &args(&ae("gzip, deflate, zstd, br")));
    assert_eq!(b.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&b.body), want);
    let z = w.get(w.on, "/page.html", &args(&ae("gzip, zstd")));
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    assert_eq!(zstd::decode_all(&z.body[..]).unwrap(), want);
    // A higher weight wins over the tie-break.
    let g2 = w.get(w.on, "/page.html", &args(&ae("br;q=0.5, gzip")));
    assert_eq!(g2.header("content-encoding"), Some("gzip"));

    // q=0 refuses: identity, whole, with its length, still Vary.
    let i = w.get(w.on, "/page.html", &args(&ae("gzip;q=0")));
    assert_eq!(i.status, 200);
    assert_eq!(i.header("content-encoding"), None);
    assert_eq!(i.header("content-length"), Some(want.len().to_string().as_str()));
    assert_eq!(i.header("vary"), Some("Accept-Encoding"));
    assert_eq!(i.body, want);
    // No Accept-Encoding at all (the eval's ab): identity.
    let n = w.get(w.on, "/page.html", &[]);
    assert_eq!(n.header("content-encoding"), None);
    assert_eq!(n.body, want);

    // HEAD (curl -I writes the head where the body would go): the
    // headers of the GET.
    let h = w.get(w.on, "/page.html", &["-I", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert_eq!(h.header("vary"), Some("Accept-Encoding"));
    assert_eq!(h.header("content-length"), None);
}

#[test]
fn responses_not_worth_or_not_allowed_to_compress_pass_untouched() {
    let w = World::new();
    let gz = ae("gzip, br, zstd");
    // Below gzip_min_length (20 bytes by default).
    let t = w.get(w.on, "/tiny.txt", &args(&gz));
    assert_eq!(t.status, 200);
    assert_eq!(t.header("content-encoding"), None);
    assert_eq!(t.header("vary"), None);
    assert_eq!(t.header("content-length"), Some("10"));
    assert_eq!(t.body, b"0123456789");
    // Not a compressible type.
    let png = w.get(w.on, "/img.png", &args(&gz));
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.header("vary"), None);
    assert_eq!(png.body, w.file("img.png"));
    // A range is served from the identity bytes, as asked.
    let r = w.get(w.on, "/page.html", &["-r", "0-9", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, w.file("page.html")[..10]);
    // Off by default (NGINX `gzip off`).
    let off = w.get(w.off, "/page.html", &args(&gz));
    assert_eq!(off.header("content-encoding"), None);
    assert_eq!(off.header("vary"), None);
    assert_eq!(off.body, w.file("page.html"));
    // The seed origin says `Cache-Control: public, no-transform`: a cache
    // site with gzip on passes its answer as it is, miss and hit alike.
    for status in ["MISS", "HIT"] {
        let c = w.get(w.cache, "/page.html", &args(&gz));
        assert_eq!(c.status, 200);
        assert_eq!(c.header("x-cache-status"), Some(status));
        assert_eq!(c.header("cache-control"), Some("public, no-transform"));
        assert_eq!(c.header("content-encoding"), None);
        assert_eq!(
            c.header("content-length"),
            Some(w.file("page.html").len().to_string().as_str())
        );
        assert_eq!(c.body, w.file("page.html"));
    }
}

#[test]
fn gzip_static_serves_the_precompressed_sibling() {
    let w = World::new();
    let js = w.file("app.js");
    let js_gz = w.file("app.js.gz");
    let g = w.get(w.on, "/app.js", &args(&ae("gzip")));
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-encoding"), Some("gzip"));
    assert_eq!(g.header("content-type"), Some("application/javascript"));
    assert_eq!(g.header("vary"), Some("Accept-Encoding"));
    assert_eq!(g.header("content-length"), Some(js_gz.len().to_string().as_str()));
    // The sibling's own bytes, not a fresh encoding of app.js.
    assert_eq!(g.body, js_gz);
    assert_eq!(gunzip(&g.body), js);
    // br preferred, and its sibling exists.
    let b = w.get(w.on, "/app.js", &args(&ae("gzip, br")));
    assert_eq!(b.header("content-encoding"), Some("br"));
    assert_eq!(b.body, w.file("app.js.br"));
    // Ranges apply to the sibling's bytes.
    let r = w.get(w.on, "/app.js", &["-r", "0-9", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", js_gz.len()).as_str())
    );
    assert_eq!(r.body, js_gz[..10]);
    // A client without gzip or br gets the file, and the Vary that says why.
    let i = w.get(w.on, "/app.js", &[]);
    assert_eq!(i.header("content-encoding"), None);
    assert_eq!(i.header("vary"), Some("Accept-Encoding"));
    assert_eq!(i.body, js);
    // HEAD: the sibling's headers.
    let h = w.get(w.on, "/app.js", &["-I", "-H", "Accept-Encoding: gzip"]);
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert_eq!(h.header("content-length"), Some(js_gz.len().to_string().as_str()));
}

#[test]
fn a_cache_site_compresses_what_the_client_gets_and_stores_the_origin_bytes() {
    let origin = TestOrigin::start();
    let text = page();
    origin.route(
        "/page",
        Reply::ok(text.clone())
            .header("content-type", "text/html; charset=utf-8")
            .header("etag", "\"v1\"")
            .header("vary", "Accept-Language")
            .header("cache-control", "max-age=60"),
    );
    // Already gzip-encoded by the origin: passes byte-identical, labelled.
    let pre = gzip(&text);
    origin.route(
        "/pre",
        Reply::ok(pre.clone())
            .header("content-type", "text/html")
            .header("content-encoding", "gzip")
            .header("cache-control", "max-age=60"),
    );
    // Length unknown to the edge (chunked from the origin): compressed.
    origin.route(
        "/chunked",
        Reply::ok(text.clone())
            .header("content-type", "application/json")
            .chunked(),
    );
    let edge = Edge::start(
        dir_with_certs(),
        &[SiteSpec::new(
            format!("127.0.0.1:{}", origin.port()),
            "[server.compression]\ngzip = true\nbrotli = true\n",
        )],
        "",
    );
    let gz = ["-H", "Accept-Encoding: gzip"];

    let miss = edge.curl(0, "/page", &gz);
    assert_eq!(miss.status, 200);
    assert_eq!(miss.header("x-cache-status"), Some("MISS"));
    assert_eq!(miss.header("content-encoding"), Some("gzip"));
    assert_eq!(miss.header("vary"), Some("Accept-Language, Accept-Encoding"));
    assert_eq!(miss.header("etag"), Some("W/\"v1\""));
    assert_eq!(miss.header("content-length"), None);
    assert_eq!(gunzip(&miss.body), text);
    // The cache holds the origin's bytes: an identity client gets them from
    // the cache, whole, with the origin's length and strong ETag.
    let hit = edge.curl(0, "/page", &[]);
    assert_eq!(hit.header("x-cache-status"), Some("HIT"));
    assert_eq!(hit.header("content-encoding"), None);
    assert_eq!(
        hit.header("content-length"),
        Some(text.len().to_string().as_str())
    );
    assert_eq!(hit.header("etag"), Some("\"v1\""));
    assert_eq!(hit.header("vary"), Some("Accept-Language, Accept-Encoding"));
    assert_eq!(hit.body, text);
    // A hit is compressed like a miss, here with the client's preferred br.
    let br = edge.curl(0, "/page", &["-H", "Accept-Encoding: gzip, br"]);
    assert_eq!(br.header("x-cache-status"), Some("HIT"));
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&br.body), text);
    assert_eq!(origin.count("/page"), 1);

    for ae in ["gzip", "br"] {
        let p = edge.curl(0, "/pre", &["-H", &format!("Accept-Encoding: {ae}")]);
        assert_eq!(p.status, 200);
        assert_eq!(p.header("content-encoding"), Some("gzip"));
        assert_eq!(p.header("content-length"), Some(pre.len().to_string().as_str()));
        assert_eq!(p.header("vary"), None);
        assert_eq!(p.body, pre);
    }

    let c = edge.curl(0, "/chunked", &gz);
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&c.body), text);
}
