//! Response compression: which coding a client gets (`Accept-Encoding`
//! negotiation, RFC 9110 §12.5.3), which responses are worth compressing
//! (NGINX's `gzip_*` policy), and the one hook, [`apply`], that rewrites a
//! response as it leaves a site.
//!
//! It does not read files or talk to origins: `static_files` picks a
//! precompressed sibling through the [`Storage`](crate::storage::Storage)
//! seam, and `stream` wraps whatever body the site produced.

mod static_files;
mod stream;

pub use static_files::{read_for_client, Representation};
pub use stream::encode;

use crate::config::CompressionConfig;
use crate::entity::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

/// A content coding the edge can produce, in tie-break order: when a client
/// weighs several equally, brotli (smallest) wins over zstd over gzip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Coding {
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
    /// `gzip` (RFC 1952).
    Gzip,
}

impl Coding {
    /// Every coding, most preferred first.
    pub const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sibling file (`gzip_static`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.token())
    }
}

/// A client's weights (q-values in thousandths) as `Accept-Encoding` gives them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Weights {
    br: Option<u16>,
    zstd: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    star: Option<u16>,
}

impl Weights {
    /// Every `Accept-Encoding` line of `req`; `None` when the client sent none
    /// (RFC 9110 lets a server then pick any coding, but clients that decode
    /// always ask, so such a client gets identity, as from NGINX).
    fn of(req: &HeaderMap) -> Option<Weights> {
        let mut lines = req.get_all(header::ACCEPT_ENCODING).iter().peekable();
        lines.peek()?;
        let mut w = Weights::default();
        for line in lines {
            let Ok(line) = line.to_str() else { continue };
            for item in line.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                if coding.is_empty() {
                    continue;
                }
                let mut q = Some(1000);
                for p in parts {
                    if let Some((k, v)) = p.split_once('=') {
                        if k.trim().eq_ignore_ascii_case("q") {
                            q = qvalue(v.trim());
                        }
                    }
                }
                // A malformed weight makes the item meaningless: skip it
                // rather than guess.
                let Some(q) = q else { continue };
                let slot = match coding.to_ascii_lowercase().as_str() {
                    "br" => &mut w.br,
                    "zstd" => &mut w.zstd,
                    "gzip" | "x-gzip" => &mut w.gzip,
                    "identity" => &mut w.identity,
                    "*" => &mut w.star,
                    _ => continue,
                };
                *slot = Some(q);
            }
        }
        Some(w)
    }

    /// The client's weight for `c`: its own entry, else `*`'s, else refused.
    fn get(&self, c: Coding) -> u16 {
        let own = match c {
            Coding::Brotli => self.br,
            Coding::Zstd => self.zstd,
            Coding::Gzip => self.gzip,
        };
        own.or(self.star).unwrap_or(0)
    }
}

/// RFC 9110 §12.4.2 `qvalue` in thousandths: `0`, `0.5`, `1.000`...
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().chain(std::iter::repeat(b'0')).take(3).enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The codings among `offered` that the client of `req` accepts, best first
/// (by weight, ties broken by [`Coding::ALL`] order). Empty when the client
/// sent no `Accept-Encoding` or weighs `identity` above every offered coding.
pub fn ranked(req: &HeaderMap, offered: impl Fn(Coding) -> bool) -> Vec<Coding> {
    let Some(w) = Weights::of(req) else {
        return Vec::new();
    };
    let mut out: Vec<(u16, Coding)> = Coding::ALL
        .into_iter()
        .filter(|&c| offered(c))
        .map(|c| (w.get(c), c))
        .filter(|&(q, _)| q > 0)
        .collect();
    // Stable sort keeps the ALL order among equal weights.
    out.sort_by_key(|&(q, _)| std::cmp::Reverse(q));
    if let (Some(&(best, _)), Some(identity)) = (out.first(), w.identity) {
        if identity > best {
            return Vec::new();
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}

/// The one coding to send to the client of `req`, among `offered`.
pub fn negotiate(req: &HeaderMap, offered: impl Fn(Coding) -> bool) -> Option<Coding> {
    ranked(req, offered).first().copied()
}

impl CompressionConfig {
    /// Whether `c` may be produced on the fly.
    pub fn on_the_fly(&self, c: Coding) -> bool {
        match c {
            Coding::Brotli => self.brotli,
            Coding::Zstd => self.zstd,
            Coding::Gzip => self.gzip,
        }
    }

    /// Whether a precompressed `c` sibling may be served (`*_static`).
    pub fn static_sibling(&self, c: Coding) -> bool {
        match c {
            Coding::Brotli => self.brotli_static,
            Coding::Zstd => self.zstd_static,
            Coding::Gzip => self.gzip_static,
        }
    }

    /// Whether any coding is produced on the fly (else [`apply`] is a no-op).
    pub fn any_on_the_fly(&self) -> bool {
        Coding::ALL.into_iter().any(|c| self.on_the_fly(c))
    }

    /// Whether any precompressed sibling is looked for.
    pub fn any_static(&self) -> bool {
        Coding::ALL.into_iter().any(|c| self.static_sibling(c))
    }

    /// Whether a `Content-Type` is in `gzip_types`. `text/event-stream` never
    /// is: an encoder holds back small writes, which would stall the events.
    pub fn compressible(&self, content_type: &HeaderValue) -> bool {
        let Ok(ct) = content_type.to_str() else {
            return false;
        };
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "text/event-stream" {
            return false;
        }
        let (main, _) = essence.split_once('/').unwrap_or((&essence, ""));
        self.types
            .iter()
            .any(|t| t == "*" || *t == essence || t.strip_suffix("/*").is_some_and(|m| m == main))
    }
}

/// Whether `Cache-Control` in `h` forbids transforming the content (RFC 9111 §5.2.2.6).
fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// Whether a response may be compressed at all, whatever the client accepts:
/// a 200 of a compressible type, not encoded already, not `no-transform`,
/// and not known to be shorter than `gzip_min_length`.
fn eligible(
    cfg: &CompressionConfig,
    req: &HeaderMap,
    status: StatusCode,
    h: &HeaderMap,
    len: Option<u64>,
) -> bool {
    status == StatusCode::OK
        && !h.contains_key(header::CONTENT_ENCODING)
        && !no_transform(h)
        && !no_transform(req)
        && h.get(header::CONTENT_TYPE).is_some_and(|t| cfg.compressible(t))
        && len.is_none_or(|n| n >= cfg.min_length)
}

/// Adds `Accept-Encoding` to `Vary`, on the existing line when there is one
/// (`Vary: Accept-Language, Accept-Encoding`), unless it is there or `*`.
pub fn add_vary(h: &mut HeaderMap) {
    let mut existing = Vec::new();
    for v in h.get_all(header::VARY) {
        let Ok(s) = v.to_str() else { return };
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t == "*" || t.eq_ignore_ascii_case("accept-encoding") {
                return;
            }
            existing.push(t.to_string());
        }
    }
    existing.push("Accept-Encoding".into());
    if let Ok(v) = HeaderValue::from_str(&existing.join(", ")) {
        h.insert(header::VARY, v);
    }
}

/// A strong `ETag` made weak: the encoded bytes differ from the identity
/// ones, so the tag may only claim semantic equivalence (RFC 9110 §8.8.3).
fn weaken_etag(h: &mut HeaderMap) {
    let weak = h
        .get(header::ETAG)
        .filter(|t| t.as_bytes().starts_with(b"\""))
        .and_then(|t| {
            let mut v = b"W/".to_vec();
            v.extend_from_slice(t.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        });
    if let Some(w) = weak {
        h.insert(header::ETAG, w);
    }
}

/// Compresses `resp` on the fly when the site's policy and the client of
/// `method`/`req` allow, else returns it as it is. The body is encoded as
/// it streams; a HEAD answer gets the headers a GET would get.
pub fn apply(
    cfg: &CompressionConfig,
    method: &Method,
    req: &HeaderMap,
    mut resp: Response<Body>,
) -> Response<Body> {
    if !cfg.any_on_the_fly() {
        return resp;
    }
    let len = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| hyper::body::Body::size_hint(resp.body()).exact());
    if !eligible(cfg, req, resp.status(), resp.headers(), len) {
        return resp;
    }
    add_vary(resp.headers_mut());
    let Some(coding) = negotiate(req, |c| cfg.on_the_fly(c)) else {
        return resp;
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_ENCODING, coding.header());
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    weaken_etag(h);
    if method == Method::HEAD {
        return resp;
    }
    let level = cfg.level(coding);
    resp.map(|b| encode(b, coding, level))
}

impl CompressionConfig {
    /// The `*_comp_level` of `c`.
    pub fn level(&self, c: Coding) -> i32 {
        match c {
            Coding::Brotli => self.brotli_level,
            Coding::Zstd => self.zstd_level,
            Coding::Gzip => self.gzip_level,
        }
    }
}

#[cfg(test)]
mod tests;
