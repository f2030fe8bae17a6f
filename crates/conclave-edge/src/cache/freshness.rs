//! RFC 9111 freshness: what the origin's `Cache-Control`, `Expires`, `Date`
//! and `Age` say about storing a response (§3), how long it stays fresh
//! (§4.2.1), how old it is (§4.2.3), and what may be done with it once stale
//! (§4.2.4, RFC 5861).
//!
//! Pure functions of headers and times, so every rule is unit-tested here and
//! the cache only asks questions.

use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The response directives of `Cache-Control` the cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache` (also its field-qualified form, taken as the whole
    /// response): stored, but validated before every use.
    pub no_cache: bool,
    /// `private` (also qualified): a shared cache does not store it.
    pub private: bool,
    /// `public`: storable even for a request with `Authorization`.
    pub public: bool,
    /// `must-revalidate`, `proxy-revalidate`, or `s-maxage` (§5.2.2.10):
    /// never served stale.
    pub must_revalidate: bool,
    /// `max-age` in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage` in seconds (wins over `max-age` in a shared cache).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate` in seconds (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` in seconds (RFC 5861).
    pub stale_if_error: Option<u64>,
}

/// A delta-seconds value; a malformed one is taken as 0 (§1.2.2: a cache
/// treats an invalid freshness as stale), an overflowing one as "very long".
fn delta(v: Option<&str>) -> u64 {
    let v = v.unwrap_or("").trim().trim_matches('"');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    v.parse().unwrap_or(u64::from(u32::MAX))
}

impl CacheControl {
    /// The directives of every `Cache-Control` field line in `h`.
    pub fn parse(h: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for line in h.get_all(header::CACHE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for d in line.split(',') {
                let (name, arg) = match d.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a)),
                    None => (d.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    // §4.2.1: with duplicates, the first counts... or treat as stale;
                    // the smaller value is the safe reading of both.
                    "max-age" => cc.max_age = Some(cc.max_age.map_or(delta(arg), |m| m.min(delta(arg)))),
                    "s-maxage" => {
                        cc.s_maxage = Some(cc.s_maxage.map_or(delta(arg), |m| m.min(delta(arg))));
                        cc.must_revalidate = true;
                    }
                    "stale-while-revalidate" => cc.stale_while_revalidate = Some(delta(arg)),
                    "stale-if-error" => cc.stale_if_error = Some(delta(arg)),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// Statuses stored when the origin gives explicit freshness (§3: a final
/// status the cache understands; 206 and 304 are not full representations).
const STORABLE_WITH_FRESHNESS: [u16; 13] = [200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 501];

/// Statuses the configured `valid` applies to when the origin gives no
/// freshness (NGINX's `proxy_cache_valid TIME` without codes: 200, 301, 302).
const STORABLE_WITH_VALID: [u16; 3] = [200, 301, 302];

/// Why a response is not stored (logged at debug, shown by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Not GET or HEAD.
    Method,
    /// A status the cache does not store (or not without explicit freshness).
    Status,
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`.
    Private,
    /// The request had `Authorization` and the response does not allow sharing.
    Authorization,
    /// `Set-Cookie` (NGINX does not cache these either).
    SetCookie,
    /// `Vary: *`.
    VaryStar,
}

/// RFC 9111 §3: whether the response to `method` with request headers `req`
/// may be stored; `valid` is the configured fallback lifetime, if any.
pub fn storable(
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    resp: &HeaderMap,
    cc: &CacheControl,
    valid: Option<Duration>,
) -> Result<(), NotStored> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotStored::Method);
    }
    if cc.no_store || CacheControl::parse(req).no_store {
        return Err(NotStored::NoStore);
    }
    if cc.private {
        return Err(NotStored::Private);
    }
    if req.contains_key(header::AUTHORIZATION) && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStored::Authorization);
    }
    if resp.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if resp
        .get_all(header::VARY)
        .iter()
        .any(|v| v.as_bytes().split(|&b| b == b',').any(|f| f.trim_ascii() == b"*"))
    {
        return Err(NotStored::VaryStar);
    }
    let code = status.as_u16();
    let explicit = has_explicit_freshness(resp, cc);
    let ok = (explicit && STORABLE_WITH_FRESHNESS.contains(&code))
        || (valid.is_some() && STORABLE_WITH_VALID.contains(&code))
        // no-cache without a lifetime: stored to be revalidated (§5.2.2.4).
        || (cc.no_cache && STORABLE_WITH_FRESHNESS.contains(&code));
    if ok {
        Ok(())
    } else {
        Err(NotStored::Status)
    }
}

fn has_explicit_freshness(resp: &HeaderMap, cc: &CacheControl) -> bool {
    cc.s_maxage.is_some() || cc.max_age.is_some() || resp.contains_key(header::EXPIRES)
}

fn date_header(h: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(h.get(name)?.to_str().ok()?).ok()
}

/// §4.2.1: the freshness lifetime, from `s-maxage`, else `max-age`, else
/// `Expires` − `Date`, else `valid` (NGINX's fallback; no other heuristic).
/// `no-cache` makes it zero: every use is validated first.
pub fn lifetime(
    resp: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
    valid: Option<Duration>,
) -> Duration {
    if cc.no_cache {
        return Duration::ZERO;
    }
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Duration::from_secs(s);
    }
    if resp.contains_key(header::EXPIRES) {
        // An invalid Expires (e.g. "0") means already expired (§5.3).
        let Some(exp) = date_header(resp, header::EXPIRES) else {
            return Duration::ZERO;
        };
        let date = date_header(resp, header::DATE).unwrap_or(response_time);
        return exp.duration_since(date).unwrap_or(Duration::ZERO);
    }
    valid.unwrap_or(Duration::ZERO)
}

/// §4.2.3: the age the response already had when it arrived
/// (`corrected_initial_age`), from `Age`, `Date` and the request/response times.
pub fn initial_age(resp: &HeaderMap, request_time: SystemTime, response_time: SystemTime) -> Duration {
    let age_value = Duration::from_secs(delta(resp.get(header::AGE).and_then(|v| v.to_str().ok())));
    let apparent = date_header(resp, header::DATE)
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    apparent.max(age_value + delay)
}

/// Milliseconds since the epoch (the unit of the index and the cache files).
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// When a response stops being fresh, in ms since the epoch:
/// `response_time + lifetime − initial_age`.
pub fn fresh_until_ms(response_ms: u64, lifetime: Duration, initial_age: Duration) -> u64 {
    (response_ms + lifetime.as_millis() as u64).saturating_sub(initial_age.as_millis() as u64)
}

/// §4.2.3: `current_age` in whole seconds (the `Age` header of a hit).
pub fn current_age_secs(initial_age_ms: u64, response_ms: u64, now_ms: u64) -> u64 {
    (initial_age_ms + now_ms.saturating_sub(response_ms)) / 1000
}

/// NGINX `proxy_cache_use_stale`: when a stale entry may be served instead
/// of the origin's answer (in addition to what `stale-if-error` and
/// `stale-while-revalidate` allow per response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UseStale {
    /// The origin could not be reached or broke the exchange.
    pub error: bool,
    /// The origin did not answer within `proxy_read_timeout` (or connect).
    pub timeout: bool,
    /// Another request is already refreshing the entry.
    pub updating: bool,
    /// The origin answered 500.
    pub http_500: bool,
    /// The origin answered 502.
    pub http_502: bool,
    /// The origin answered 503.
    pub http_503: bool,
    /// The origin answered 504.
    pub http_504: bool,
}

/// A `use_stale` word that is not one of NGINX's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown use_stale value {0:?} (use \"error\", \"timeout\", \"updating\", \"http_500\", \"http_502\", \"http_503\", \"http_504\")")]
pub struct UnknownUseStale(pub String);

impl UseStale {
    /// From the words of the `use_stale` list (`"off"` alone: none).
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<UseStale, UnknownUseStale> {
        let mut u = UseStale::default();
        for w in words {
            match w.as_ref() {
                "off" => {}
                "error" => u.error = true,
                "timeout" => u.timeout = true,
                "updating" => u.updating = true,
                "http_500" => u.http_500 = true,
                "http_502" => u.http_502 = true,
                "http_503" => u.http_503 = true,
                "http_504" => u.http_504 = true,
                other => return Err(UnknownUseStale(other.to_string())),
            }
        }
        Ok(u)
    }

    /// Whether an origin answer with `status` lets a stale entry be served.
    pub fn on_status(&self, status: StatusCode) -> bool {
        match status.as_u16() {
            500 => self.http_500,
            502 => self.http_502,
            503 => self.http_503,
            504 => self.http_504,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }
    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    fn stor(
        req: &[(&'static str, &str)],
        status: u16,
        resp: &[(&'static str, &str)],
    ) -> Result<(), NotStored> {
        let r = h(resp);
        let cc = CacheControl::parse(&r);
        storable(
            &Method::GET,
            &h(req),
            StatusCode::from_u16(status).unwrap(),
            &r,
            &cc,
            HOUR,
        )
    }

    #[test]
    fn parses_directives_case_insensitively_across_lines() {
        let cc = CacheControl::parse(&h(&[
            ("cache-control", "Public, MAX-AGE=60"),
            (
                "cache-control",
                "s-maxage=\"120\", stale-if-error=30, stale-while-revalidate=5",
            ),
        ]));
        assert!(cc.public && cc.must_revalidate);
        assert_eq!(
            (
                cc.max_age,
                cc.s_maxage,
                cc.stale_if_error,
                cc.stale_while_revalidate
            ),
            (Some(60), Some(120), Some(30), Some(5))
        );
        assert_eq!(
            CacheControl::parse(&h(&[("cache-control", "max-age=abc")])).max_age,
            Some(0)
        );
    }

    #[test]
    fn s_maxage_wins_over_max_age_which_wins_over_expires_and_valid() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let both = h(&[("cache-control", "max-age=10, s-maxage=20")]);
        assert_eq!(
            lifetime(&both, &CacheControl::parse(&both), t, HOUR),
            Duration::from_secs(20)
        );
        let ma = h(&[
            ("cache-control", "max-age=10"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ]);
        assert_eq!(
            lifetime(&ma, &CacheControl::parse(&ma), t, HOUR),
            Duration::from_secs(10)
        );
        let exp = h(&[
            ("date", &httpdate::fmt_http_date(t)),
            ("expires", &httpdate::fmt_http_date(t + Duration::from_secs(300))),
        ]);
        assert_eq!(
            lifetime(&exp, &CacheControl::parse(&exp), t, HOUR),
            Duration::from_secs(300)
        );
        let bad = h(&[("expires", "0")]);
        assert_eq!(
            lifetime(&bad, &CacheControl::parse(&bad), t, HOUR),
            Duration::ZERO
        );
        let none = h(&[("cache-control", "public, no-transform")]);
        assert_eq!(
            lifetime(&none, &CacheControl::parse(&none), t, HOUR),
            Duration::from_secs(3600)
        );
        let nc = h(&[("cache-control", "no-cache, max-age=100")]);
        assert_eq!(lifetime(&nc, &CacheControl::parse(&nc), t, HOUR), Duration::ZERO);
    }

    #[test]
    fn age_is_the_larger_of_apparent_and_corrected_age() {
        let req = UNIX_EPOCH + Duration::from_secs(1000);
        let resp = req + Duration::from_secs(2);
        let r = h(&[("age", "30"), ("date", &httpdate::fmt_http_date(resp))]);
        assert_eq!(initial_age(&r, req, resp), Duration::from_secs(32));
        let r = h(&[("date", &httpdate::fmt_http_date(resp - Duration::from_secs(100)))]);
        assert_eq!(initial_age(&r, req, resp), Duration::from_secs(100));
        assert_eq!(
            fresh_until_ms(10_000, Duration::from_secs(60), Duration::from_secs(32)),
            38_000
        );
        assert_eq!(current_age_secs(32_000, 10_000, 15_500), 37);
    }

    #[test]
    fn use_stale_words_are_nginx_s() {
        let u = UseStale::parse(&["error", "timeout", "http_503"]).unwrap();
        assert!(u.error && u.timeout && !u.updating);
        assert!(u.on_status(StatusCode::SERVICE_UNAVAILABLE) && !u.on_status(StatusCode::BAD_GATEWAY));
        assert_eq!(UseStale::parse(&["off"]).unwrap(), UseStale::default());
        assert_eq!(
            UseStale::parse(&["http_404"]),
            Err(UnknownUseStale("http_404".into()))
        );
    }

    #[test]
    fn storable_follows_rfc_9111_section_3_and_nginx() {
        assert_eq!(
            stor(&[], 200, &[("cache-control", "public, no-transform")]),
            Ok(())
        );
        assert_eq!(
            stor(&[], 200, &[("cache-control", "no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            stor(&[("cache-control", "no-store")], 200, &[]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            stor(&[], 200, &[("cache-control", "private, max-age=60")]),
            Err(NotStored::Private)
        );
        assert_eq!(
            stor(&[], 200, &[("set-cookie", "a=b")]),
            Err(NotStored::SetCookie)
        );
        assert_eq!(stor(&[], 200, &[("vary", "Accept, *")]), Err(NotStored::VaryStar));
        assert_eq!(stor(&[], 200, &[("cache-control", "no-cache")]), Ok(()));
        let auth = [("authorization", "Basic eDp5")];
        assert_eq!(
            stor(&auth, 200, &[("cache-control", "max-age=60")]),
            Err(NotStored::Authorization)
        );
        assert_eq!(stor(&auth, 200, &[("cache-control", "public")]), Ok(()));
        assert_eq!(stor(&auth, 200, &[("cache-control", "s-maxage=60")]), Ok(()));
        // Statuses: 404 only with explicit freshness; 206, 500 never by `valid`.
        assert_eq!(stor(&[], 404, &[]), Err(NotStored::Status));
        assert_eq!(stor(&[], 404, &[("cache-control", "max-age=60")]), Ok(()));
        assert_eq!(stor(&[], 301, &[]), Ok(()));
        assert_eq!(
            stor(&[], 206, &[("cache-control", "max-age=60")]),
            Err(NotStored::Status)
        );
        assert_eq!(stor(&[], 500, &[]), Err(NotStored::Status));
        let r = h(&[]);
        let cc = CacheControl::parse(&r);
        assert_eq!(
            storable(&Method::POST, &r, StatusCode::OK, &r, &cc, HOUR),
            Err(NotStored::Method)
        );
        assert_eq!(
            storable(&Method::GET, &r, StatusCode::OK, &r, &cc, None),
            Err(NotStored::Status)
        );
    }
}
