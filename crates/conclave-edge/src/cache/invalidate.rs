//! Invalidation by unsafe methods (RFC 9111 §4.4): a POST, PUT, DELETE,
//! PATCH (any method but GET, HEAD, OPTIONS, TRACE) that the origin answers
//! with a non-error status (2xx, 3xx) may have changed what the cache holds
//! for the target URI, so the entry stored for it is dropped, and so are
//! those for the `Location` and `Content-Location` URIs of the answer when
//! they have the target's origin (another origin's entries must not be
//! touched by this one's answers).
//!
//! Dropping a vary record drops all its variants at once: they are stored
//! under keys that include the record's generation ([`super::vary::GENERATION`]),
//! which the next stored response renews.

use super::{hash_of, vary, Store};
use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, StatusCode, Uri};

/// Whether `m` is safe (RFC 9110 §9.2.1): it cannot change the origin's state.
fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// After `req` passed through to the origin and got `status` and `headers`:
/// drops what the cache stores for the URIs the exchange may have changed.
/// Returns how many entries were dropped.
pub(crate) fn after(store: &Store, req: &Parts, status: StatusCode, headers: &HeaderMap) -> usize {
    if is_safe(&req.method) || !(status.is_success() || status.is_redirection()) {
        return 0;
    }
    let mut n = drop_uri(store, req);
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        match same_origin_target(req, v) {
            Some(pq) if Some(pq.as_str()) != req.uri.path_and_query().map(|p| p.as_str()) => {
                if let Some(p) = with_target(req, &pq) {
                    n += drop_uri(store, &p);
                }
            }
            _ => {}
        }
    }
    if n > 0 {
        tracing::debug!("cache: {} {} invalidated {n} entries", req.method, req.uri);
    }
    n
}

/// `req` aimed at the path and query `pq` of the same origin.
fn with_target(req: &Parts, pq: &str) -> Option<Parts> {
    let mut p = req.clone();
    p.uri = match (req.uri.scheme(), req.uri.authority()) {
        (Some(s), Some(a)) => Uri::builder()
            .scheme(s.clone())
            .authority(a.clone())
            .path_and_query(pq)
            .build()
            .ok()?,
        _ => pq.parse().ok()?,
    };
    Some(p)
}

/// Drops the entry a GET (and a HEAD, when the key names the method) of
/// `req`'s target is stored under; how many were dropped.
fn drop_uri(store: &Store, req: &Parts) -> usize {
    let mut p = req.clone();
    let mut keys = Vec::with_capacity(2);
    for m in [Method::GET, Method::HEAD] {
        p.method = m;
        let k = store.cfg.key.of(&p);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter().map(|k| drop_key(store, k, &req.headers)).sum()
}

/// Drops `key`'s entry; for a vary record, the variant `req_headers` select
/// is removed at once too (the others are unreachable and age out).
fn drop_key(store: &Store, key: &str, req_headers: &HeaderMap) -> usize {
    let primary = hash_of(key);
    let Some(was_vary) = store.with_index(|ix| ix.remove_stored(&primary)).flatten() else {
        return 0;
    };
    let mut n = 1;
    if was_vary {
        let name = Store::file_name(&primary);
        if let Ok(Ok(head)) = store.read_head(key, &name, None) {
            let rec = |h: &str| head.headers.iter().find(|(k, _)| k == h).map(|(_, v)| v.clone());
            let mut m = HeaderMap::new();
            if let Some(v) = rec("vary").and_then(|v| v.parse().ok()) {
                m.insert(header::VARY, v);
            }
            let names = vary::names(&m);
            let variant = hash_of(&vary::variant_key(
                key,
                rec(vary::GENERATION).as_deref(),
                &names,
                req_headers,
            ));
            if store
                .with_index(|ix| ix.remove_stored(&variant))
                .flatten()
                .is_some()
            {
                store.forget_files(&[variant]);
                n += 1;
            }
        }
    }
    store.forget_files(&[primary]);
    n
}

/// The path and query of the URI reference `r` (a `Location` or
/// `Content-Location` value) resolved against `req`'s target (RFC 3986 §5.2),
/// when it has the same origin: scheme, host (any case) and port.
fn same_origin_target(req: &Parts, r: &str) -> Option<String> {
    let r = r.split('#').next().unwrap_or("").trim();
    let scheme = req.uri.scheme_str().unwrap_or("https");
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))?;
    let base: Uri = format!("{scheme}://{host}").parse().ok()?;
    let base_path = req.uri.path();
    let has_scheme = r
        .split_once(':')
        .is_some_and(|(s, _)| !s.is_empty() && !s.contains('/') && !s.contains('?'));
    let (path, query) = if has_scheme || r.starts_with("//") {
        let abs = if r.starts_with("//") {
            format!("{scheme}:{r}")
        } else {
            r.to_string()
        };
        let u: Uri = abs.parse().ok()?;
        let same = u.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && u.host()?.eq_ignore_ascii_case(base.host()?)
            && port_of(&u) == port_of(&base);
        if !same {
            return None;
        }
        (u.path().to_string(), u.query().map(str::to_string))
    } else {
        let (p, q) = match r.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (r, None),
        };
        if p.is_empty() {
            (
                base_path.to_string(),
                q.or_else(|| req.uri.query().map(str::to_string)),
            )
        } else if p.starts_with('/') {
            (p.to_string(), q)
        } else {
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            (format!("{dir}{p}"), q)
        }
    };
    let mut out = remove_dot_segments(if path.is_empty() { "/" } else { &path });
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out.parse::<http::uri::PathAndQuery>()
        .ok()
        .map(|p| p.as_str().to_string())
}

/// The port of an absolute URI, explicit or its scheme's default.
fn port_of(u: &Uri) -> Option<u16> {
    u.port_u16().or(match u.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    })
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match *s {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, host: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn only_unsafe_methods_invalidate() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&m));
        }
        for m in ["POST", "PUT", "DELETE", "PATCH", "PURGE"] {
            assert!(!is_safe(&m.parse().unwrap()));
        }
    }

    #[test]
    fn references_resolve_against_the_target() {
        let r = req("POST", "/a/b?x=1", "Site.example:8443");
        let t = |l: &str| same_origin_target(&r, l);
        assert_eq!(t("/c?d").as_deref(), Some("/c?d"));
        assert_eq!(t("c").as_deref(), Some("/a/c"));
        assert_eq!(t("../c#frag").as_deref(), Some("/c"));
        assert_eq!(t("./").as_deref(), Some("/a/"));
        assert_eq!(t("?y=2").as_deref(), Some("/a/b?y=2"));
        assert_eq!(t("").as_deref(), Some("/a/b?x=1"));
        assert_eq!(t("https://site.EXAMPLE:8443/z").as_deref(), Some("/z"));
        assert_eq!(t("//site.example:8443/z").as_deref(), Some("/z"));
        assert_eq!(t("https://site.example:8443").as_deref(), Some("/"));
    }

    #[test]
    fn other_origins_are_never_invalidated() {
        let r = req("PUT", "/a", "site.example");
        let t = |l: &str| same_origin_target(&r, l);
        assert_eq!(t("https://site.example/z").as_deref(), Some("/z"));
        assert_eq!(t("https://site.example:443/z").as_deref(), Some("/z"));
        assert_eq!(t("https://other.example/z"), None);
        assert_eq!(t("http://site.example/z"), None);
        assert_eq!(t("https://site.example:8443/z"), None);
        assert_eq!(t("//other.example/z"), None);
        assert_eq!(t("mailto:a@site.example"), None);
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(remove_dot_segments("/a/b/../c/./d"), "/a/c/d");
        assert_eq!(remove_dot_segments("/../.."), "/");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/."), "/a/b/");
    }
}
