//! Turning a stored entity (body + validators) into a response: 200, 206 for one
//! range, `multipart/byteranges` for several, 304 for a matching validator,
//! 416 for an unsatisfiable range.
//!
//! Shared by standalone files, cache hits and the origin so all three answer
//! conditionals and ranges the same way. A body in storage is streamed in
//! [`CHUNK`] pieces, and a range reads only the bytes it sends.

use crate::storage::{Storage, StorageReader};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The response body type of the edge: boxed so one type carries a body in
/// memory (files, hits, errors) and one streamed from an origin alike.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of bytes already in memory (its exact length is known, so the
/// server sends `Content-Length`).
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body (HEAD, 304, 204).
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed from `b` (e.g. an origin's), its errors turned into
/// `io::Error` so the server resets the stream instead of sending a short body.
pub fn stream<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    b.map_err(std::io::Error::other).boxed_unsync()
}

/// How much of a stored body one read takes (and one frame carries).
pub const CHUNK: usize = 64 << 10;

/// Where an entity's body is.
#[derive(Clone)]
pub enum EntityBody {
    /// In memory (files read whole, small cache hits).
    Memory(Bytes),
    /// `len` bytes at `offset` of a file in storage (large cache hits):
    /// read piece by piece while sending.
    Stored {
        /// The storage holding the file.
        storage: Arc<dyn Storage>,
        /// Its path there.
        path: String,
        /// Where the body starts in the file.
        offset: u64,
        /// Body length.
        len: u64,
    },
}

impl std::fmt::Debug for EntityBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityBody::Memory(b) => write!(f, "Memory({} bytes)", b.len()),
            EntityBody::Stored {
                path, offset, len, ..
            } => write!(f, "Stored({path}@{offset}, {len} bytes)"),
        }
    }
}

impl EntityBody {
    /// Body length.
    pub fn len(&self) -> u64 {
        match self {
            EntityBody::Memory(b) => b.len() as u64,
            EntityBody::Stored { len, .. } => *len,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A representation the edge can send: body, type and validators.
#[derive(Debug, Clone)]
pub struct Entity {
    /// The status it was stored with (200 for files; a cache may keep e.g. 301).
    pub status: StatusCode,
    /// The full body.
    pub body: EntityBody,
    /// `Content-Type`, if known.
    pub content_type: Option<HeaderValue>,
    /// `ETag`, if known.
    pub etag: Option<HeaderValue>,
    /// `Last-Modified` (whole seconds) and its header value, if known.
    pub last_modified: Option<(SystemTime, HeaderValue)>,
    /// More headers to send as they are (e.g. the origin's `Cache-Control`).
    pub extra: Vec<(HeaderName, HeaderValue)>,
}

impl Entity {
    /// An entity for a file: type from the extension, nginx-style ETag.
    pub fn for_file(name: &str, body: Bytes, modified: SystemTime) -> Entity {
        let secs = modified.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let etag = format!("\"{:x}-{:x}\"", secs, body.len());
        Entity {
            status: StatusCode::OK,
            content_type: Some(content_type_for(name)),
            etag: HeaderValue::from_str(&etag).ok(),
            last_modified: last_modified(UNIX_EPOCH + Duration::from_secs(secs)),
            body: EntityBody::Memory(body),
            extra: Vec::new(),
        }
    }
}

/// A `Last-Modified` time with its header value formatted once.
pub fn last_modified(t: SystemTime) -> Option<(SystemTime, HeaderValue)> {
    HeaderValue::from_str(&httpdate::fmt_http_date(t))
        .ok()
        .map(|v| (t, v))
}

/// `Content-Type` by file extension (`application/octet-stream` when unknown).
pub fn content_type_for(name: &str) -> HeaderValue {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let fast = match ext {
        "txt" => Some("text/plain"),
        "html" | "htm" => Some("text/html"),
        "css" => Some("text/css"),
        "js" => Some("application/javascript"),
        "json" => Some("application/json"),
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        _ => None,
    };
    match fast {
        Some(t) => HeaderValue::from_static(t),
        None => mime_guess::from_ext(ext)
            .first_raw()
            .map(HeaderValue::from_static)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    }
}

thread_local! {
    static DATE: RefCell<(u64, HeaderValue)> = const { RefCell::new((0, HeaderValue::from_static(""))) };
}

/// The current `Date` header value, formatted once per second per thread.
pub fn date_now() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let s = httpdate::fmt_http_date(now);
            *d = (
                secs,
                HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("")),
            );
        }
        d.1.clone()
    })
}

/// A small plain-text response for a status (errors, 405...).
pub fn status_response(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::DATE, date_now());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    r
}

fn etag_matches(list: &[u8], etag: &[u8]) -> bool {
    let strip = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
    let want = strip(etag);
    list.split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .any(|t| t == b"*" || strip(t) == want)
}

/// Most ranges one request may ask for before it gets the whole body
/// (NGINX's `max_ranges` idea: many tiny ranges cost more than the body).
const MAX_RANGES: usize = 32;

/// The satisfiable byte ranges (inclusive) of a `Range` value: `None` to
/// serve the whole (not a byte range, malformed, or too many), `Err` for 416
/// (none satisfiable, RFC 9110 §14.1.2).
pub(crate) fn parse_ranges(v: &[u8], len: u64) -> Option<Result<Vec<(u64, u64)>, ()>> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (unit, spec) = s.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut out = Vec::new();
    let mut n = 0;
    for one in spec.split(',') {
        let one = one.trim();
        if one.is_empty() {
            continue;
        }
        n += 1;
        if n > MAX_RANGES {
            return None;
        }
        let (a, b) = one.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            let suffix: u64 = b.parse().ok()?;
            if suffix > 0 && len > 0 {
                out.push((len.saturating_sub(suffix), len - 1));
            }
            continue;
        }
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            u64::MAX
        } else {
            let e: u64 = b.parse().ok()?;
            if e < start {
                return None;
            }
            e
        };
        if start < len {
            out.push((start, end.min(len - 1)));
        }
    }
    if n == 0 {
        return None;
    }
    if out.is_empty() {
        return Some(Err(()));
    }
    Some(Ok(out))
}

/// RFC 9110 §13.1.5: `If-Range` holds a strong ETag equal to ours, or the
/// exact `Last-Modified` date.
fn if_range_ok(ir: &HeaderValue, e: &Entity) -> bool {
    let v = ir.as_bytes();
    if v.starts_with(b"\"") {
        return e
            .etag
            .as_ref()
            .is_some_and(|t| !t.as_bytes().starts_with(b"W/") && t.as_bytes() == v);
    }
    let date = ir.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
    matches!((date, &e.last_modified), (Some(d), Some((lm, _))) if d == *lm)
}

/// A piece of a response body: bytes made here, or a range of the entity's.
#[derive(Debug, Clone)]
enum Piece {
    Bytes(Bytes),
    Range(u64, u64),
}

/// A body assembled from [`Piece`]s; the entity's ranges are read from
/// storage only while the client takes them, one [`CHUNK`] at a time.
struct PieceBody {
    pieces: VecDeque<Piece>,
    storage: Arc<dyn Storage>,
    path: String,
    base: u64,
    reader: Option<Box<dyn StorageReader>>,
    remaining: u64,
}

impl hyper::body::Body for PieceBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(p) = this.pieces.pop_front() else {
                return Poll::Ready(None);
            };
            let data = match p {
                Piece::Bytes(b) => b,
                Piece::Range(a, b) if a > b => continue,
                Piece::Range(a, b) => {
                    let want = (b - a + 1).min(CHUNK as u64);
                    if this.reader.is_none() {
                        match this.storage.open_reader(&this.path) {
                            Ok(r) => this.reader = Some(r),
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    let Some(r) = this.reader.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let got = match r.read_at(this.base + a, want as usize) {
                        Ok(g) => g,
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    };
                    if got.is_empty() {
                        // The file is shorter than its index entry said.
                        return Poll::Ready(Some(Err(std::io::Error::from(
                            std::io::ErrorKind::UnexpectedEof,
                        ))));
                    }
                    let next = a + got.len() as u64;
                    if next <= b {
                        this.pieces.push_front(Piece::Range(next, b));
                    }
                    got
                }
            };
            this.remaining = this.remaining.saturating_sub(data.len() as u64);
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// The body made of `pieces` of `e` (in memory: one buffer; in storage: streamed).
fn body_of(e: &Entity, pieces: Vec<Piece>, total: u64) -> Body {
    match &e.body {
        EntityBody::Memory(b) => {
            if let [Piece::Range(a, z)] = pieces.as_slice() {
                return full(b.slice(*a as usize..=*z as usize));
            }
            let mut out = Vec::with_capacity(total as usize);
            for p in pieces {
                match p {
                    Piece::Bytes(x) => out.extend_from_slice(&x),
                    Piece::Range(a, z) => out.extend_from_slice(&b[a as usize..=z as usize]),
                }
            }
            full(out)
        }
        EntityBody::Stored {
            storage,
            path,
            offset,
            ..
        } => PieceBody {
            pieces: pieces.into(),
            storage: storage.clone(),
            path: path.clone(),
            base: *offset,
            reader: None,
            remaining: total,
        }
        .boxed_unsync(),
    }
}

/// A `multipart/byteranges` boundary, unique enough not to occur in a body
/// by chance (RFC 9110 §14.6 asks no more).
fn boundary() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        b = (t.as_nanos() as u64).to_le_bytes();
    }
    format!("{:016x}", u64::from_le_bytes(b))
}

/// Answers GET/HEAD `req_headers` with `e`, adding `extra` headers (e.g. `X-Cache-Status`).
pub fn respond(
    method: &Method,
    req_headers: &HeaderMap,
    e: &Entity,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Response<Body> {
    respond_with(method, req_headers, e, extra.as_slice())
}

/// [`respond`] with any number of extra headers (a cache hit's `Age` and
/// `X-Cache-Status`).
pub fn respond_with(
    method: &Method,
    req_headers: &HeaderMap,
    e: &Entity,
    extra: &[(HeaderName, HeaderValue)],
) -> Response<Body> {
    let len = e.body.len();
    // Conditionals and ranges apply to a 200's representation only.
    let is_ok = e.status == StatusCode::OK;
    let not_modified = is_ok
        && if let Some(inm) = req_headers.get(header::IF_NONE_MATCH) {
            e.etag
                .as_ref()
                .is_some_and(|t| etag_matches(inm.as_bytes(), t.as_bytes()))
        } else if let (Some(ims), Some(lm)) = (
            req_headers.get(header::IF_MODIFIED_SINCE),
            e.last_modified.as_ref().map(|l| l.0),
        ) {
            ims.to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .is_some_and(|t| lm <= t)
        } else {
            false
        };
    let mut status = e.status;
    let mut pieces = vec![Piece::Range(0, len.wrapping_sub(1))];
    let mut body_len = len;
    let mut content_range = None;
    let mut multipart = None;
    if not_modified {
        status = StatusCode::NOT_MODIFIED;
        pieces.clear();
        body_len = 0;
    } else if let Some(rv) = req_headers.get(header::RANGE).filter(|_| is_ok) {
        let wanted = req_headers
            .get(header::IF_RANGE)
            .is_none_or(|ir| if_range_ok(ir, e));
        match parse_ranges(rv.as_bytes(), len).filter(|_| wanted) {
            Some(Ok(ranges)) if ranges.len() == 1 => {
                let (a, b) = ranges[0];
                status = StatusCode::PARTIAL_CONTENT;
                pieces = vec![Piece::Range(a, b)];
                body_len = b - a + 1;
                content_range = Some(format!("bytes {a}-{b}/{len}"));
            }
            Some(Ok(ranges)) => {
                status = StatusCode::PARTIAL_CONTENT;
                let bnd = boundary();
                let ct = e
                    .content_type
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream");
                pieces.clear();
                body_len = 0;
                for (a, b) in ranges {
                    let part = format!(
                        "\r\n--{bnd}\r\nContent-Type: {ct}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
                    );
                    body_len += part.len() as u64 + (b - a + 1);
                    pieces.push(Piece::Bytes(Bytes::from(part)));
                    pieces.push(Piece::Range(a, b));
                }
                let end = format!("\r\n--{bnd}--\r\n");
                body_len += end.len() as u64;
                pieces.push(Piece::Bytes(Bytes::from(end)));
                multipart = Some(bnd);
            }
            Some(Err(())) => {
                let mut r = status_response(StatusCode::RANGE_NOT_SATISFIABLE);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            None => {}
        }
    }
    let send = if method == Method::HEAD || status == StatusCode::NOT_MODIFIED || len == 0 {
        empty()
    } else {
        body_of(e, pieces, body_len)
    };
    let mut r = Response::new(send);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.reserve(8 + e.extra.len() + extra.len());
    h.insert(header::DATE, date_now());
    if status != StatusCode::NOT_MODIFIED {
        if let Some(bnd) = &multipart {
            if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={bnd}")) {
                h.insert(header::CONTENT_TYPE, v);
            }
        } else if let Some(ct) = &e.content_type {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    if let Some((_, lm)) = &e.last_modified {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    if let Some(t) = &e.etag {
        h.insert(header::ETAG, t.clone());
    }
    if is_ok {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(cr) = content_range.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    for (k, v) in &e.extra {
        // Framing and range headers are this answer's own; the rest may
        // repeat (Link, Vary...) and is sent as stored.
        if ![
            header::DATE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
            header::CONTENT_RANGE,
        ]
        .contains(k)
        {
            h.append(k.clone(), v.clone());
        }
    }
    for (k, v) in extra {
        h.insert(k.clone(), v.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent() -> Entity {
        Entity::for_file(
            "a.txt",
            Bytes::from_static(b"abcdefghij"),
            UNIX_EPOCH + Duration::from_secs(1000),
        )
    }

    fn body(r: Response<Body>) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes().to_vec() })
    }

    fn get(h: &[(&'static str, &str)]) -> Response<Body> {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        respond(&Method::GET, &m, &ent(), None)
    }

    #[test]
    fn serves_ranges_and_conditionals() {
        let r = get(&[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["etag"], "\"3e8-a\"");
        let r = get(&[("range", "bytes=2-4")]);
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
        assert_eq!(r.headers()["content-length"], "3");
        assert_eq!(
            get(&[("range", "bytes=-3")]).headers()["content-range"],
            "bytes 7-9/10"
        );
        assert_eq!(
            get(&[("range", "bytes=8-")]).headers()["content-range"],
            "bytes 8-9/10"
        );
        assert_eq!(get(&[("range", "bytes=10-")]).status(), 416);
        assert_eq!(get(&[("range", "items=0-1")]).status(), 200);
        assert_eq!(get(&[("range", "bytes=5-2")]).status(), 200);
        assert_eq!(
            get(&[("range", "bytes=2-4"), ("if-range", "\"3e8-a\"")]).status(),
            206
        );
        assert_eq!(
            get(&[("range", "bytes=2-4"), ("if-range", "\"old\"")]).status(),
            200
        );
        assert_eq!(
            get(&[
                ("range", "bytes=2-4"),
                ("if-range", "Thu, 01 Jan 1970 00:16:40 GMT")
            ])
            .status(),
            206
        );
        assert_eq!(get(&[("if-none-match", "\"x\", \"3e8-a\"")]).status(), 304);
        assert_eq!(get(&[("if-none-match", "\"x\"")]).status(), 200);
        assert_eq!(
            get(&[("if-modified-since", "Thu, 01 Jan 1970 00:16:40 GMT")]).status(),
            304
        );
        assert_eq!(
            get(&[("if-modified-since", "Thu, 01 Jan 1970 00:16:39 GMT")]).status(),
            200
        );
    }

    #[test]
    fn several_ranges_make_multipart_byteranges_with_exact_length() {
        let r = get(&[("range", "bytes=0-1, 4-5, 20-30")]);
        assert_eq!(r.status(), 206);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let bnd = ct
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap()
            .to_string();
        let cl: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let b = body(r);
        assert_eq!(b.len(), cl);
        let want = format!(
            "\r\n--{bnd}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\nab\
             \r\n--{bnd}\r\nContent-Type: text/plain\r\nContent-Range: bytes 4-5/10\r\n\r\nef\
             \r\n--{bnd}--\r\n"
        );
        assert_eq!(String::from_utf8(b).unwrap(), want);
        assert_eq!(get(&[("range", "bytes=20-30, 40-")]).status(), 416);
    }

    #[test]
    fn stored_bodies_stream_only_the_ranges_asked() {
        let d = tempfile::tempdir().unwrap();
        let s: Arc<dyn Storage> = Arc::new(crate::storage::HostStorage::new(d.path(), true).unwrap());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = b"HEAD".to_vec();
        file.extend_from_slice(&data);
        s.write_atomic("f", &file).unwrap();
        let mut e = ent();
        e.body = EntityBody::Stored {
            storage: s,
            path: "f".into(),
            offset: 4,
            len: data.len() as u64,
        };
        let whole = respond(&Method::GET, &HeaderMap::new(), &e, None);
        assert_eq!(whole.headers()["content-length"], "200000");
        assert_eq!(body(whole), data);
        let mut m = HeaderMap::new();
        m.insert("range", HeaderValue::from_static("bytes=70000-140000"));
        let part = respond(&Method::GET, &m, &e, None);
        assert_eq!(part.headers()["content-range"], "bytes 70000-140000/200000");
        assert_eq!(body(part), &data[70000..=140000]);
    }
}
