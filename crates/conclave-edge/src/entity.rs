//! Turning a stored entity (body + validators) into a response: 200, 206 for one
//! range, 304 for a matching validator, 416 for an unsatisfiable range.
//!
//! Shared by standalone files, cache hits and the origin so all three answer
//! conditionals and ranges the same way.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use std::cell::RefCell;
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

/// A representation the edge can send: body, type and validators.
#[derive(Debug, Clone)]
pub struct Entity {
    /// The full body.
    pub body: Bytes,
    /// `Content-Type`.
    pub content_type: HeaderValue,
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
            content_type: content_type_for(name),
            etag: HeaderValue::from_str(&etag).ok(),
            last_modified: last_modified(UNIX_EPOCH + Duration::from_secs(secs)),
            body,
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

/// A single satisfiable byte range, `None` for "serve the whole", `Err` for 416.
fn parse_range(v: &[u8], len: u64) -> Option<Result<(u64, u64), ()>> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let spec = s.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if b.parse::<u64>().is_ok_and(|e| e < start) {
            return None;
        }
        if start >= len {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(r))
}

/// Answers GET/HEAD `req_headers` with `e`, adding `extra` headers (e.g. `X-Cache-Status`).
pub fn respond(
    method: &Method,
    req_headers: &HeaderMap,
    e: &Entity,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Response<Body> {
    let len = e.body.len() as u64;
    let not_modified = if let Some(inm) = req_headers.get(header::IF_NONE_MATCH) {
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
    let mut status = StatusCode::OK;
    let mut body = e.body.clone();
    let mut content_range = None;
    if not_modified {
        status = StatusCode::NOT_MODIFIED;
        body = Bytes::new();
    } else if let Some(rv) = req_headers.get(header::RANGE) {
        let if_range_ok = match req_headers.get(header::IF_RANGE) {
            None => true,
            Some(ir) => e.etag.as_ref().is_some_and(|t| t.as_bytes() == ir.as_bytes()),
        };
        if if_range_ok {
            match parse_range(rv.as_bytes(), len) {
                Some(Ok((a, b))) => {
                    status = StatusCode::PARTIAL_CONTENT;
                    body = e.body.slice(a as usize..=b as usize);
                    content_range = Some(format!("bytes {a}-{b}/{len}"));
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
    }
    let body_len = body.len();
    let send = if method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
        Bytes::new()
    } else {
        body
    };
    let mut r = Response::new(full(send));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.reserve(8 + e.extra.len());
    h.insert(header::DATE, date_now());
    if status != StatusCode::NOT_MODIFIED {
        h.insert(header::CONTENT_TYPE, e.content_type.clone());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    if let Some((_, lm)) = &e.last_modified {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    if let Some(t) = &e.etag {
        h.insert(header::ETAG, t.clone());
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(cr) = content_range.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    for (k, v) in &e.extra {
        h.insert(k.clone(), v.clone());
    }
    if let Some((k, v)) = extra {
        h.insert(k, v);
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
        assert_eq!(get(&[("range", "bytes=0-1,3-4")]).status(), 200);
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
}
