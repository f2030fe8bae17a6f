use super::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::io::Read;

fn ae(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
    h
}

fn all(_: Coding) -> bool {
    true
}

#[test]
fn q_values_parse_as_rfc_9110_says() {
    assert_eq!(qvalue("1"), Some(1000));
    assert_eq!(qvalue("1.000"), Some(1000));
    assert_eq!(qvalue("0"), Some(0));
    assert_eq!(qvalue("0.5"), Some(500));
    assert_eq!(qvalue("0.123"), Some(123));
    assert_eq!(qvalue("0.1234"), None);
    assert_eq!(qvalue("1.5"), None);
    assert_eq!(qvalue("2"), None);
    assert_eq!(qvalue("abc"), None);
}

#[test]
fn negotiation_prefers_weight_then_br_zstd_gzip() {
    assert_eq!(negotiate(&ae("gzip"), all), Some(Coding::Gzip));
    assert_eq!(negotiate(&ae("gzip, br"), all), Some(Coding::Brotli));
    assert_eq!(negotiate(&ae("gzip, zstd"), all), Some(Coding::Zstd));
    assert_eq!(negotiate(&ae("gzip;q=1, br;q=0.5"), all), Some(Coding::Gzip));
    assert_eq!(
        negotiate(&ae("deflate, gzip, br, zstd"), all),
        Some(Coding::Brotli)
    );
    assert_eq!(negotiate(&ae("x-gzip"), all), Some(Coding::Gzip));
    assert_eq!(negotiate(&ae("GZIP ; Q=0.8"), all), Some(Coding::Gzip));
    // Only what the site offers.
    assert_eq!(
        negotiate(&ae("gzip, br"), |c| c == Coding::Gzip),
        Some(Coding::Gzip)
    );
    assert_eq!(
        ranked(&ae("gzip;q=0.2, br;q=0.9, zstd;q=0.5"), all),
        [Coding::Brotli, Coding::Zstd, Coding::Gzip]
    );
}

#[test]
fn q_zero_star_and_identity_refuse_or_allow() {
    assert_eq!(negotiate(&ae("gzip;q=0"), all), None);
    assert_eq!(negotiate(&ae("gzip;q=0, br"), all), Some(Coding::Brotli));
    assert_eq!(negotiate(&ae("*"), all), Some(Coding::Brotli));
    assert_eq!(negotiate(&ae("*;q=0.5, gzip"), all), Some(Coding::Gzip));
    assert_eq!(
        negotiate(&ae("*, br;q=0"), |c| c != Coding::Zstd),
        Some(Coding::Gzip)
    );
    assert_eq!(negotiate(&ae("*;q=0"), all), None);
    assert_eq!(negotiate(&ae("identity"), all), None);
    assert_eq!(negotiate(&ae(""), all), None);
    assert_eq!(negotiate(&HeaderMap::new(), all), None);
    // identity weighed above every coding wins; equal weights let us compress.
    assert_eq!(negotiate(&ae("gzip;q=0.5, identity"), all), None);
    assert_eq!(negotiate(&ae("gzip, identity"), all), Some(Coding::Gzip));
    // A malformed weight drops its item, not the header.
    assert_eq!(negotiate(&ae("br;q=2, gzip"), all), Some(Coding::Gzip));
}

#[test]
fn accept_encoding_on_several_lines_is_one_list() {
    let mut h = ae("gzip;q=0.5");
    h.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
    assert_eq!(negotiate(&h, all), Some(Coding::Brotli));
}

fn on() -> CompressionConfig {
    CompressionConfig {
        gzip: true,
        brotli: true,
        zstd: true,
        ..Default::default()
    }
}

#[test]
fn gzip_types_match_exact_group_and_star() {
    let c = on();
    let t = |s: &'static str| c.compressible(&HeaderValue::from_static(s));
    assert!(t("text/html"));
    assert!(t("text/plain; charset=utf-8"));
    assert!(t("Application/JSON"));
    assert!(t("image/svg+xml"));
    assert!(!t("image/png"));
    assert!(!t("application/octet-stream"));
    assert!(!t("text/event-stream"));
    let star = CompressionConfig {
        types: vec!["*".into()],
        ..on()
    };
    assert!(star.compressible(&HeaderValue::from_static("image/png")));
}

#[test]
fn vary_is_merged_once() {
    let mut h = HeaderMap::new();
    add_vary(&mut h);
    assert_eq!(h[header::VARY], "Accept-Encoding");
    add_vary(&mut h);
    assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    let mut h = HeaderMap::new();
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    add_vary(&mut h);
    assert_eq!(h[header::VARY], "Accept-Language, Origin, Accept-Encoding");
    let mut h = HeaderMap::new();
    h.insert(header::VARY, HeaderValue::from_static("*"));
    add_vary(&mut h);
    assert_eq!(h[header::VARY], "*");
}

const TEXT: &[u8] = b"<html>compress me, compress me, compress me, compress me</html>\n";

fn resp(ct: &'static str, body: &'static [u8], extra: &[(&'static str, &'static str)]) -> Response<Body> {
    let mut r = Response::new(crate::entity::full(Bytes::from_static(body)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    for (k, v) in extra {
        h.insert(*k, HeaderValue::from_static(v));
    }
    r
}

async fn body_of(r: Response<Body>) -> Vec<u8> {
    r.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        }
        Coding::Brotli => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Coding::Zstd => {
            out = zstd::decode_all(data).unwrap();
        }
    }
    out
}

#[tokio::test]
async fn each_coding_round_trips_and_rewrites_the_headers() {
    for c in Coding::ALL {
        let r = apply(&on(), &Method::GET, &ae(c.token()), resp("text/html", TEXT, &[]));
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_ENCODING], c.token());
        assert_eq!(h[header::VARY], "Accept-Encoding");
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert!(h.get(header::ACCEPT_RANGES).is_none());
        let encoded = body_of(r).await;
        assert_ne!(encoded, TEXT);
        assert_eq!(decode(c, &encoded), TEXT);
    }
}

#[tokio::test]
async fn a_long_streamed_body_is_encoded_chunk_by_chunk() {
    let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = (0..200)
        .map(|i| {
            Ok(hyper::body::Frame::data(Bytes::from(
                format!("line {i} of many\n").repeat(100),
            )))
        })
        .collect();
    let want: Vec<u8> = (0..200)
        .flat_map(|i| format!("line {i} of many\n").repeat(100).into_bytes())
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let encoded = encode(body, Coding::Gzip, 1);
    let got = encoded.collect().await.unwrap().to_bytes();
    assert!(got.len() < want.len() / 10);
    assert_eq!(decode(Coding::Gzip, &got), want);
}

async fn untouched(cfg: &CompressionConfig, method: Method, req: HeaderMap, r: Response<Body>) {
    let before = r.headers().clone();
    let out = apply(cfg, &method, &req, r);
    assert_eq!(out.headers(), &before);
    assert_eq!(body_of(out).await, TEXT);
}

#[tokio::test]
async fn responses_that_must_not_be_compressed_pass_byte_identical() {
    let gzip = ae("gzip, br, zstd");
    // Off by default.
    untouched(
        &CompressionConfig::default(),
        Method::GET,
        gzip.clone(),
        resp("text/html", TEXT, &[]),
    )
    .await;
    // Already encoded by the origin.
    untouched(
        &on(),
        Method::GET,
        gzip.clone(),
        resp("text/html", TEXT, &[("content-encoding", "gzip")]),
    )
    .await;
    // no-transform, in the response or the request.
    untouched(
        &on(),
        Method::GET,
        gzip.clone(),
        resp("text/html", TEXT, &[("cache-control", "public, no-transform")]),
    )
    .await;
    let mut nt = gzip.clone();
    nt.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-transform"));
    untouched(&on(), Method::GET, nt, resp("text/html", TEXT, &[])).await;
    // Not a compressible type.
    untouched(&on(), Method::GET, gzip.clone(), resp("image/png", TEXT, &[])).await;
    // Shorter than gzip_min_length.
    let long_min = CompressionConfig {
        min_length: 1000,
        ..on()
    };
    untouched(&long_min, Method::GET, gzip.clone(), resp("text/html", TEXT, &[])).await;
    // Not a 200.
    let mut partial = resp("text/html", TEXT, &[]);
    *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
    untouched(&on(), Method::GET, gzip.clone(), partial).await;
}

#[tokio::test]
async fn a_client_that_refuses_gets_identity_with_vary() {
    let r = apply(&on(), &Method::GET, &ae("gzip;q=0"), resp("text/html", TEXT, &[]));
    assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
    assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(r.headers()[header::CONTENT_LENGTH], TEXT.len().to_string());
    assert_eq!(r.headers()[header::ETAG], "\"abc\"");
    assert_eq!(body_of(r).await, TEXT);
}

#[tokio::test]
async fn head_gets_the_headers_of_get_and_no_body() {
    let r = apply(
        &on(),
        &Method::HEAD,
        &ae("gzip"),
        resp("text/html", b"", &[("content-length", "5000")]),
    );
    assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(body_of(r).await, b"");
}

/// A config dir with a certificate, a key and a docroot, and a site block.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("html")).unwrap();
    std::fs::write(dir.path().join("c.crt"), "").unwrap();
    std::fs::write(dir.path().join("c.key"), "").unwrap();
    dir
}

fn site(port: u16, mode: &str) -> String {
    format!(
        "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"{mode}\"\nroot = \"html\"\n\
         proxy_pass = \"http://127.0.0.1:1\"\n[server.tls]\ncertificate = \"c.crt\"\nkey = \"c.key\"\n"
    )
}

#[test]
fn server_keys_override_top_level_keys_one_by_one() {
    let dir = config_dir();
    let text = format!(
        "[compression]\ngzip = true\ngzip_comp_level = 5\ngzip_types = [\"application/json\"]\ngzip_static = true\n\n\
         {}{}[server.compression]\nbrotli = true\ngzip_comp_level = 9\ngzip_min_length = \"1k\"\n",
        site(1, "standalone"),
        site(2, "cache")
    );
    let path = dir.path().join("edge.toml");
    let cfg = crate::EdgeConfig::parse(&path, &text).unwrap();
    let a = &cfg.servers[0].compression;
    assert!(a.gzip && !a.brotli && !a.zstd && a.gzip_static);
    assert_eq!((a.gzip_level, a.min_length), (5, 20));
    assert_eq!(a.types, ["application/json", "text/html"]);
    let b = &cfg.servers[1].compression;
    assert!(b.gzip && b.brotli && !b.zstd);
    // gzip_static from the top level does not reach a cache site.
    assert!(!b.gzip_static);
    assert_eq!((b.gzip_level, b.brotli_level, b.min_length), (9, 6, 1024));
    // The value written back as TOML validates to the same configuration.
    let settings: crate::EdgeSettings = toml::from_str(&text).unwrap();
    let again = crate::EdgeConfig::parse(&path, &settings.to_toml()).unwrap();
    assert_eq!(again.servers[0].compression, *a);
    assert_eq!(again.servers[1].compression, *b);
}

#[test]
fn compression_is_off_without_keys() {
    let dir = config_dir();
    let cfg = crate::EdgeConfig::parse(&dir.path().join("edge.toml"), &site(1, "cache")).unwrap();
    assert_eq!(cfg.servers[0].compression, CompressionConfig::default());
    assert!(!cfg.servers[0].compression.any_on_the_fly());
    assert!(!cfg.servers[0].compression.any_static());
}

#[test]
fn refuses_bad_compression_values_naming_the_line() {
    let dir = config_dir();
    let path = dir.path().join("edge.toml");
    let err = |text: String| crate::EdgeConfig::parse(&path, &text).unwrap_err().to_string();
    let e = err(format!(
        "{}[server.compression]\ngzip = true\ngzip_comp_level = 10\n",
        site(1, "cache")
    ));
    assert!(
        e.contains(":11:") && e.contains("gzip_comp_level = 10: must be between 1 and 9"),
        "{e}"
    );
    let e = err(format!(
        "[compression]\nbrotli_comp_level = 12\n{}",
        site(1, "cache")
    ));
    assert!(e.contains(":2:") && e.contains("brotli_comp_level"), "{e}");
    let e = err(format!(
        "[compression]\ngzip_types = [\"text html\"]\n{}",
        site(1, "cache")
    ));
    assert!(e.contains(":2:") && e.contains("not a media type"), "{e}");
    let e = err(format!(
        "{}[server.compression]\nbrotli_static = true\n",
        site(1, "cache")
    ));
    assert!(
        e.contains(":10:") && e.contains("needs mode = \"standalone\""),
        "{e}"
    );
    let e = err(format!(
        "{}[server.compression]\ngzipp = true\n",
        site(1, "cache")
    ));
    assert!(e.contains(":10:") && e.contains("unknown field"), "{e}");
}

#[test]
fn static_siblings_are_chosen_by_the_client_and_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.css"), "body{}").unwrap();
    std::fs::write(dir.path().join("a.css.gz"), "GZ").unwrap();
    std::fs::write(dir.path().join("a.css.br"), "BR").unwrap();
    std::fs::write(dir.path().join("plain.css"), "plain").unwrap();
    let storage = crate::storage::HostStorage::new(dir.path(), false).unwrap();
    let cfg = CompressionConfig {
        gzip_static: true,
        brotli_static: true,
        zstd_static: true,
        ..Default::default()
    };
    let get = |ae_: &str, name: &str| {
        let (_, body, rep) = read_for_client(&cfg, &ae(ae_), &storage, name).unwrap();
        (String::from_utf8(body.to_vec()).unwrap(), rep.coding, rep.varies)
    };
    assert_eq!(get("gzip", "a.css"), ("GZ".into(), Some(Coding::Gzip), true));
    assert_eq!(
        get("gzip, br", "a.css"),
        ("BR".into(), Some(Coding::Brotli), true)
    );
    // zstd preferred, but no .zst: the next one that exists.
    assert_eq!(
        get("zstd, gzip;q=0.5", "a.css"),
        ("GZ".into(), Some(Coding::Gzip), true)
    );
    assert_eq!(get("gzip;q=0", "a.css"), ("body{}".into(), None, true));
    assert_eq!(get("gzip", "plain.css"), ("plain".into(), None, false));
    // Off: not even looked for.
    let (_, body, rep) =
        read_for_client(&CompressionConfig::default(), &ae("gzip"), &storage, "a.css").unwrap();
    assert_eq!((&body[..], rep), (&b"body{}"[..], Representation::default()));
    let hs: Vec<_> = Representation {
        coding: Some(Coding::Gzip),
        varies: true,
    }
    .headers()
    .collect();
    assert_eq!(hs.len(), 2);
    assert_eq!(
        (&hs[0].0, &hs[0].1),
        (&header::CONTENT_ENCODING, &HeaderValue::from_static("gzip"))
    );
    assert_eq!(
        (&hs[1].0, &hs[1].1),
        (&header::VARY, &HeaderValue::from_static("Accept-Encoding"))
    );
}

#[tokio::test]
async fn encoded_pieces_leave_before_the_source_ends() {
    // 4 MiB of text, then a source that never ends: a whole-body encoder
    // would never answer; a streaming one hands out pieces already.
    let piece = Bytes::from("streamed text that compresses, more or less\n".repeat(1500));
    let pieces = (0..64).map(move |_| Ok::<_, std::io::Error>(hyper::body::Frame::data(piece.clone())));
    let source = futures_util::StreamExt::chain(
        futures_util::stream::iter(pieces),
        futures_util::stream::pending(),
    );
    let mut body = encode(http_body_util::StreamBody::new(source), Coding::Gzip, 1);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("an encoded piece before the source ends")
        .unwrap()
        .unwrap();
    assert!(!first.into_data().unwrap().is_empty());
}
