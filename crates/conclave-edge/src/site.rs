//! One site's request handling: limits, method, path, then standalone or cache.

use crate::access_log::AccessLog;
use crate::cache::Cache;
use crate::compress;
use crate::config::CompressionConfig;
use crate::entity::{respond, status_response, Body, Entity};
use crate::path::normalize;
use crate::sni::HostCheck;
use crate::storage::Storage;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The default largest request body (NGINX `client_max_body_size`), 413 beyond.
pub const MAX_BODY: u64 = 1 << 20;

/// What a site serves from.
pub enum Backend {
    /// Files of a docroot.
    Static(Arc<dyn Storage>),
    /// A proxy cache in front of an origin; requests it does not cache
    /// (every method but GET and HEAD) pass through to the origin.
    Cache(Box<Cache>),
}

/// One configured site (standalone, cache or origin).
pub struct Site {
    /// What it serves from.
    pub backend: Backend,
    /// Longest accepted request target.
    pub max_uri_length: usize,
    /// Headers added to every file response (the origin's `Cache-Control`).
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    /// Access log, if on.
    pub access_log: Option<Arc<AccessLog>>,
    /// Its name in metrics and the JSON log: the first `server_name`, else `listen`.
    pub name: Arc<str>,
    /// The web application firewall, if `[server.waf]` is set.
    pub waf: Option<Arc<conclave_waf::Waf>>,
    /// Largest request body the WAF inspects (`[server.waf] body_limit`): buffered, 413 beyond.
    pub waf_body_limit: u64,
    /// Longest wait for the next piece of a request body (`client_body_timeout`).
    pub body_timeout: Duration,
    /// Largest request body (`client_max_body_size`): 413 beyond.
    pub max_body: u64,
    /// Compression of responses and precompressed siblings (`[server.compression]`).
    pub compress: CompressionConfig,
    /// `add_header`: set on every response, errors included (NGINX `always`).
    pub always_headers: Vec<(HeaderName, HeaderValue)>,
    /// `server_tokens`: `Server: conclave` on every response; false: no `Server`.
    pub server_tokens: bool,
}

/// The `Server` header of `server_tokens = true`.
pub const SERVER: &str = "conclave";

impl Site {
    /// Answers one request.
    pub async fn handle(&self, req: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<Body> {
        self.handle_routed(req, peer, None).await
    }

    /// Answers one request on a connection the client's SNI routed here
    /// among several sites of its address: a `Host` that names another of
    /// them gets 421 Misdirected Request (RFC 9110 section 15.5.20), as the
    /// certificate and TLS settings of the connection are this site's.
    pub async fn handle_routed(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        host_check: Option<&HostCheck>,
    ) -> Response<Body> {
        use hyper::body::Body as _;
        let started = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let head = crate::access_log::RequestHead::of(&parts, started);
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = announced.is_some_and(|n| n > self.max_body);
        let mut timed_out = false;
        let mut body = Some(body);
        let mut waf_body = WafBody::None;
        if !too_large && self.waf_reads_bodies() {
            if let Some(b) = body.take().filter(|b| !b.is_end_stream()) {
                // Phase 2 needs the whole body before the request goes anywhere.
                waf_body = self.buffer_body(b).await;
                timed_out = matches!(waf_body, WafBody::TimedOut);
            }
        }
        let too_large = too_large || matches!(waf_body, WafBody::TooLarge);
        if !too_large && !self.passes_through(&parts.method) {
            if let Some(b) = body.take().filter(|b| !b.is_end_stream()) {
                // Read a small body before answering: an HTTP/2 client whose stream is
                // reset mid-upload reports an error instead of our status.
                timed_out = !self.drain_body(b).await;
            }
        }
        let resp = if timed_out {
            crate::refusals::BODY_TIMEOUT.note(peer);
            let mut r = status_response(StatusCode::REQUEST_TIMEOUT);
            if parts.version < Version::HTTP_2 {
                // The rest of the body is still on its way: the connection
                // cannot carry another request (NGINX closes it too).
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        } else if !host_ok(&parts) {
            crate::refusals::BAD_HOST.note(peer);
            status_response(StatusCode::BAD_REQUEST)
        } else if host_check.is_some_and(|c| request_host(&parts).is_some_and(|h| !c.allows(h))) {
            status_response(StatusCode::MISDIRECTED_REQUEST)
        } else if too_large {
            let mut r = status_response(StatusCode::PAYLOAD_TOO_LARGE);
            if parts.version < Version::HTTP_2 {
                // The body is still on its way and will not be read.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            match body.take().filter(|b| !b.is_end_stream()) {
                Some(unread) => r.map(|b| hold(b, unread)),
                None => r,
            }
        } else {
            let buffered = match waf_body {
                WafBody::Read(b) => Some(b),
                _ => None,
            };
            let resp = self.answer(&parts, body, buffered, peer).await;
            compress::apply(&self.compress, &parts.method, &parts.headers, resp)
        };
        let mut resp = resp;
        if parts.method == Method::HEAD && !resp.body().is_end_stream() {
            // An error page answering HEAD keeps its Content-Length but
            // sends no body: HTTP/2 resets a HEAD stream that carries DATA.
            resp = resp.map(|_| crate::entity::empty());
        }
        self.decorate(&mut resp);
        crate::access_log::track(&self.name, self.access_log.as_ref(), head, peer, resp)
    }

    /// Sets the site's own response headers on `resp`, whatever made it (a
    /// file, the origin, an error, a refusal before the site saw the
    /// request): `Server` (an origin's is never passed on, as NGINX hides
    /// it) and `add_header`.
    pub fn decorate<B>(&self, resp: &mut Response<B>) {
        let h = resp.headers_mut();
        if self.server_tokens {
            h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        } else {
            h.remove(header::SERVER);
        }
        for (k, v) in &self.always_headers {
            h.insert(k.clone(), v.clone());
        }
    }

    /// Whether the WAF inspects request bodies (its rules say `SecRequestBodyAccess On`).
    fn waf_reads_bodies(&self) -> bool {
        self.waf.as_ref().is_some_and(|w| w.body_limit().is_some())
    }

    /// Reads the whole body for the WAF: at most `waf_body_limit` bytes (and `max_body`), each
    /// piece within `body_timeout`.
    async fn buffer_body(&self, mut body: hyper::body::Incoming) -> WafBody {
        use http_body_util::BodyExt;
        let limit = self.waf_body_limit.min(self.max_body);
        let mut got = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(self.body_timeout, body.frame()).await {
                Err(_) => return WafBody::TimedOut,
                Ok(None) => return WafBody::Read(got.freeze()),
                // A broken upload: what arrived is all the WAF and the origin get.
                Ok(Some(Err(_))) => return WafBody::Read(got.freeze()),
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        if (got.len() + d.len()) as u64 > limit {
                            return WafBody::TooLarge;
                        }
                        got.extend_from_slice(d);
                    }
                }
            }
        }
    }

    /// Whether a request with `method` goes to the origin as it is, its body
    /// streamed: everything a cache site does not cache.
    fn passes_through(&self, method: &Method) -> bool {
        matches!(self.backend, Backend::Cache(_)) && method != Method::GET && method != Method::HEAD
    }

    /// Reads and drops up to `max_body` bytes of `body`; false when the
    /// client let `body_timeout` pass between two pieces of it (NGINX
    /// `client_body_timeout`): a trickled body must not hold the connection.
    async fn drain_body(&self, mut body: hyper::body::Incoming) -> bool {
        self.drain(&mut body, self.max_body).await
    }

    /// [`Self::drain_body`] of at most `limit` bytes, the body left in place.
    async fn drain(&self, body: &mut hyper::body::Incoming, limit: u64) -> bool {
        use http_body_util::BodyExt;
        let mut got = 0u64;
        loop {
            match tokio::time::timeout(self.body_timeout, body.frame()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(f))) => {
                    got += f.data_ref().map_or(0, |d| d.len() as u64);
                    if got > limit {
                        return true;
                    }
                }
            }
        }
    }

    /// `body` is the request body when the request passes through to the
    /// origin (not read yet), `None` when it was drained; `buffered` is the
    /// body read for the WAF (then `body` is `None`).
    async fn answer(
        &self,
        parts: &http::request::Parts,
        body: Option<hyper::body::Incoming>,
        buffered: Option<bytes::Bytes>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if target.len() > self.max_uri_length {
            return status_response(StatusCode::URI_TOO_LONG);
        }
        if let Some(waf) = &self.waf {
            let request_body = buffered.as_deref().unwrap_or(b"");
            if let Some((status, rule_id)) = waf_check(waf, parts, target, request_body, peer) {
                let mut r = status_response(status);
                r.extensions_mut().insert(crate::access_log::WafDenied(rule_id));
                return r;
            }
        }
        let method = &parts.method;
        let get_or_head = method == Method::GET || method == Method::HEAD;
        if method == Method::CONNECT || (!get_or_head && matches!(self.backend, Backend::Static(_))) {
            return status_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        let clean = match normalize(parts.uri.path()) {
            Ok(c) => c,
            Err(_) => return status_response(StatusCode::BAD_REQUEST),
        };
        match &self.backend {
            Backend::Static(storage) => self.serve_file(storage.as_ref(), parts, &clean.rel, clean.dir),
            Backend::Cache(cache) if get_or_head => cache.handle(parts, peer).await,
            // Purging is the cache's own method, from `purge_allow` addresses only.
            Backend::Cache(cache) if method.as_str() == "PURGE" && cache.purges() => {
                cache.purge(parts, peer).await
            }
            Backend::Cache(cache) => {
                use hyper::body::Body as _;
                let (body, parked) = match (body, buffered) {
                    (_, Some(b)) => (crate::proxy::full_body(b), crate::proxy::Parked::default()),
                    (Some(b), None) if !b.is_end_stream() => {
                        crate::proxy::client_body(b, self.max_body, self.body_timeout)
                    }
                    _ => (crate::proxy::empty_body(), crate::proxy::Parked::default()),
                };
                let resp = cache.proxy().pass(parts, body, peer).await;
                cache.invalidate(parts, &resp);
                match parked.take() {
                    // The exchange failed before the body was sent: read a small
                    // rest (as for a standalone answer) so an HTTP/2 client sees
                    // the status, and keep a large one open until it is sent.
                    Some(mut unread) => {
                        self.drain(&mut unread, MAX_BODY).await;
                        resp.map(|b| hold(b, unread))
                    }
                    None => resp,
                }
            }
        }
    }

    fn serve_file(
        &self,
        storage: &dyn Storage,
        req: &http::request::Parts,
        rel: &str,
        dir: bool,
    ) -> Response<Body> {
        let mut name = if dir || rel.is_empty() {
            if rel.is_empty() {
                "index.html".to_string()
            } else {
                format!("{rel}/index.html")
            }
        } else {
            rel.to_string()
        };
        let read = |name: &str| compress::read_for_client(&self.compress, &req.headers, storage, name);
        let mut got = read(&name);
        if let Ok((m, _, _)) = &got {
            if m.is_dir {
                name = format!("{rel}/index.html");
                got = read(&name);
            }
        }
        match got {
            Ok((meta, body, rep)) if !meta.is_dir => {
                let mut e = Entity::for_file(&name, body, meta.modified);
                e.extra.clone_from(&self.add_headers);
                e.extra.extend(rep.headers());
                respond(&req.method, &req.headers, &e, None)
            }
            Ok(_) => status_response(StatusCode::NOT_FOUND),
            Err(e) => match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                    status_response(StatusCode::NOT_FOUND)
                }
                std::io::ErrorKind::PermissionDenied => status_response(StatusCode::FORBIDDEN),
                std::io::ErrorKind::InvalidInput => status_response(StatusCode::BAD_REQUEST),
                // The file server missed `storage_timeout`, or is unreachable:
                // fail this request only, as a gateway would.
                _ if gateway_error(&e).is_some() => {
                    crate::refusals::STORAGE.note(format_args!("reading {name}: {e}"));
                    status_response(gateway_error(&e).unwrap_or(StatusCode::BAD_GATEWAY))
                }
                _ => {
                    tracing::error!("reading {name}: {e}");
                    status_response(StatusCode::INTERNAL_SERVER_ERROR)
                }
            },
        }
    }
}

/// `body` with the request body `unread` kept open until it is sent: an
/// HTTP/2 stream whose request body is dropped before the answer is reset
/// (CANCEL) and the client never sees the status; after the answer, the reset
/// is NO_ERROR (RFC 9113 §8.1) and the client reads the answer.
fn hold(body: Body, unread: hyper::body::Incoming) -> Body {
    use http_body_util::BodyExt;
    Holding {
        body,
        _unread: unread,
    }
    .boxed_unsync()
}

struct Holding {
    body: Body,
    _unread: hyper::body::Incoming,
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The status of a storage error that is the file server's fault: 504 when a
/// call missed its deadline (`storage_timeout`), 502 when the server could
/// not be reached or broke the call; `None` for the file's own errors.
fn gateway_error(e: &std::io::Error) -> Option<StatusCode> {
    use std::io::ErrorKind as K;
    let late = |k: K| matches!(k, K::TimedOut | K::WouldBlock);
    if late(e.kind()) {
        return Some(StatusCode::GATEWAY_TIMEOUT);
    }
    let rpc = e
        .get_ref()
        .and_then(|r| r.downcast_ref::<conclave_rpc::RpcError>())?;
    // A timeout deeper in the chain (a TLS handshake or read past the deadline).
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rpc);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| late(io.kind()))
        {
            return Some(StatusCode::GATEWAY_TIMEOUT);
        }
        cause = c.source();
    }
    Some(StatusCode::BAD_GATEWAY)
}

/// RFC 9112 section 3.2: an HTTP/1.1 request carries exactly one `Host`
/// (HTTP/1.0 may omit it; HTTP/2 has `:authority`).
fn host_ok(req: &http::request::Parts) -> bool {
    if req.version != Version::HTTP_11 {
        return true;
    }
    let mut hosts = req.headers.get_all(header::HOST).iter();
    hosts.next().is_some() && hosts.next().is_none()
}

/// The host a request names, without port: the target's authority
/// (HTTP/2 `:authority`, absolute form), else `Host`; `None` without either.
fn request_host(req: &http::request::Parts) -> Option<&str> {
    let authority = match req.uri.host() {
        Some(h) => h,
        None => req.headers.get(header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(authority))
}

/// `host` of `host[:port]` (`[v6]:port` keeps its brackets off too).
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// A request body as read for the WAF.
enum WafBody {
    /// No body, or the WAF does not read bodies.
    None,
    Read(bytes::Bytes),
    /// Longer than `[server.waf] body_limit`: 413.
    TooLarge,
    TimedOut,
}

/// Runs the WAF on the request line, headers and (buffered) body: ModSecurity
/// phases 1 and 2. A denial is logged with the rule id, and returned with it.
fn waf_check(
    waf: &conclave_waf::Waf,
    req: &http::request::Parts,
    target: &str,
    body: &[u8],
    peer: SocketAddr,
) -> Option<(StatusCode, String)> {
    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let view = conclave_waf::RequestView {
        method: req.method.as_str(),
        uri: target,
        headers: &headers,
    };
    let protocol = match req.version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    let addr = peer.ip().to_string();
    let ctx = conclave_waf::RequestContext {
        protocol,
        remote_addr: &addr,
        body,
    };
    match waf.check_with(&view, &ctx) {
        conclave_waf::Decision::Allow => None,
        conclave_waf::Decision::Deny { status, rule_id, msg } => {
            tracing::warn!(
                rule_id,
                msg = msg.unwrap_or(""),
                target,
                "request denied by the WAF"
            );
            Some((
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                rule_id.to_string(),
            ))
        }
    }
}
