//! The header rewriting of a reverse proxy: what the origin sees of a client
//! request, and what the client sees of an origin response.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, never the
//! message, so they stop at the edge in both directions; every other header is
//! end-to-end and passes as it is.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;
use std::net::SocketAddr;

/// The `Via` pseudonym of the edge (RFC 9110 §7.6.3).
pub const VIA_NAME: &str = "conclave";

/// Hop-by-hop headers that are always removed, named or not in `Connection`
/// (RFC 9110 §7.6.1, plus `Proxy-Connection`, which old clients still send).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What a site adds to or changes in the requests it passes to the origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyHeaderConfig {
    /// `Host` sent when the client gave none (an HTTP/1.0 request): the
    /// `proxy_pass` host, as NGINX's `$proxy_host`.
    pub default_host: HeaderValue,
    /// `X-Forwarded-Proto`: the scheme the client used (`https` on an edge site).
    pub forwarded_proto: HeaderValue,
    /// `proxy_set_header`: headers set last, replacing the client's (`Host`
    /// included); an empty value removes the header, as in NGINX.
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl ProxyHeaderConfig {
    /// The defaults for a site proxying to `proxy_host` (`host[:port]`) over
    /// HTTPS from its clients, with no `proxy_set_header`.
    pub fn new(proxy_host: &str) -> ProxyHeaderConfig {
        ProxyHeaderConfig {
            default_host: HeaderValue::from_str(proxy_host)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            forwarded_proto: HeaderValue::from_static("https"),
            set: Vec::new(),
        }
    }
}

/// Whether `name` is hop-by-hop in a message whose `Connection` headers are `conn`.
fn is_hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || named.contains(name)
}

/// The header names listed in `Connection` (RFC 9110 §7.6.1): hop-by-hop too.
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// The `received-protocol` of a `Via` entry for a message of `v`.
fn via_entry(v: Version) -> HeaderValue {
    let proto = match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    HeaderValue::from_str(&format!("{proto} {VIA_NAME}")).unwrap_or(HeaderValue::from_static("1.1 conclave"))
}

/// Adds the edge's entry to `Via`, after any the message already carries.
fn add_via(h: &mut HeaderMap, v: Version) {
    h.append(header::VIA, via_entry(v));
}

/// Headers for the origin: hop-by-hop removed (RFC 9110 §7.6.1, plus those
/// named in `Connection`), `Host` (the client's by default or the configured
/// override), `X-Forwarded-For` (the peer appended), `X-Forwarded-Proto`, `Via`.
pub fn to_origin(parts: &http::request::Parts, peer: SocketAddr, cfg: &ProxyHeaderConfig) -> HeaderMap {
    let src = &parts.headers;
    let named = connection_named(src);
    let mut h = HeaderMap::with_capacity(src.len() + 4);
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (k, v) in src {
        if is_hop(k, &named) || k == header::HOST || *k == xff {
            continue;
        }
        if k == header::COOKIE {
            cookies.push(v.as_bytes());
            continue;
        }
        h.append(k.clone(), v.clone());
    }
    // HTTP/2 clients may split `Cookie`; an HTTP/1.1 origin wants one line (RFC 9113 §8.2.3).
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&cookies.join(&b"; "[..])) {
            h.insert(header::COOKIE, v);
        }
    }
    let host = src
        .get(header::HOST)
        .cloned()
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
        .unwrap_or_else(|| cfg.default_host.clone());
    h.insert(header::HOST, host);
    // NGINX's $proxy_add_x_forwarded_for: the client's list, then the peer.
    let mut chain: Vec<&str> = src
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let ip = peer.ip().to_string();
    chain.push(&ip);
    if let Ok(v) = HeaderValue::from_str(&chain.join(", ")) {
        h.insert(xff, v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        cfg.forwarded_proto.clone(),
    );
    add_via(&mut h, parts.version);
    for (k, v) in &cfg.set {
        if v.is_empty() {
            h.remove(k);
        } else {
            h.insert(k.clone(), v.clone());
        }
    }
    h
}

/// Strips hop-by-hop headers from an origin response (and adds Via).
pub fn from_origin(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    add_via(headers, Version::HTTP_11);
}

/// Removes the hop-by-hop headers of `headers` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for n in connection_named(headers) {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(h: &[(&'static str, &'static str)], v: Version) -> http::request::Parts {
        let mut b = http::Request::builder().uri("/p?q").version(v);
        for (k, val) in h {
            b = b.header(*k, *val);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn peer() -> SocketAddr {
        "192.0.2.7:5555".parse().unwrap()
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers_toward_the_origin() {
        let p = parts(
            &[
                ("host", "site.example"),
                ("connection", "keep-alive, X-Foo"),
                ("keep-alive", "timeout=5"),
                ("x-foo", "1"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
                ("proxy-connection", "keep-alive"),
                ("x-bar", "2"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
            ],
            Version::HTTP_11,
        );
        let h = to_origin(&p, peer(), &ProxyHeaderConfig::new("origin:80"));
        for gone in [
            "connection",
            "keep-alive",
            "x-foo",
            "te",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(!h.contains_key(gone), "{gone} passed");
        }
        assert_eq!(h["x-bar"], "2");
        assert_eq!(h["host"], "site.example");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["via"], "1.1 conclave");
    }

    #[test]
    fn appends_the_peer_to_x_forwarded_for_and_applies_overrides() {
        let p = parts(
            &[
                ("host", "site.example"),
                ("x-forwarded-for", "203.0.113.1"),
                ("x-drop", "1"),
            ],
            Version::HTTP_2,
        );
        let mut cfg = ProxyHeaderConfig::new("origin:80");
        cfg.set = vec![
            (header::HOST, HeaderValue::from_static("origin.example")),
            (HeaderName::from_static("x-drop"), HeaderValue::from_static("")),
        ];
        let h = to_origin(&p, peer(), &cfg);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
        assert_eq!(h["host"], "origin.example");
        assert_eq!(h["via"], "2 conclave");
        assert!(!h.contains_key("x-drop"));
    }

    #[test]
    fn falls_back_to_the_proxy_host_without_a_client_host() {
        let p = parts(&[], Version::HTTP_10);
        let h = to_origin(&p, peer(), &ProxyHeaderConfig::new("origin:8081"));
        assert_eq!(h["host"], "origin:8081");
        assert_eq!(h["via"], "1.0 conclave");
    }

    #[test]
    fn strips_hop_by_hop_from_responses_and_adds_via() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Secret"),
            ("x-secret", "s"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "a=1"),
            ("location", "/x"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        from_origin(&mut h);
        assert_eq!(h.len(), 3);
        assert_eq!(h["set-cookie"], "a=1");
        assert_eq!(h["location"], "/x");
        assert_eq!(h["via"], "1.1 conclave");
    }
}
