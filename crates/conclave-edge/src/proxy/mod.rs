//! Reverse proxying to origins (NGINX `proxy_pass`): the upstream groups and
//! their pooled connections, the header rewriting both ways, and the bodies
//! streamed through with their deadlines.
//!
//! The cache calls [`Upstream::send`] for what it fetches; a site calls
//! [`Proxy::pass`] for what is never cached (every method but GET/HEAD).
//! Nothing here reads a body whole.

mod body;
mod connector;
mod error;
pub mod headers;
mod upstream;

pub use body::{client_body, Parked, UpstreamBody};
pub use connector::OriginTlsError;
pub use error::{ClientBodyError, UpstreamError};
pub use headers::ProxyHeaderConfig;
pub use upstream::Upstream;

use crate::config::ProxyConfig;
use crate::entity::{self, Body};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request body to the origin.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// An empty request body (GET, HEAD, a cache fetch).
pub fn empty_body() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body already read (for the WAF), sent to the origin as it is.
pub fn full_body(b: bytes::Bytes) -> ProxyBody {
    http_body_util::Full::new(b)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// One site's way to its origin: the upstream and the headers it sends.
#[derive(Debug)]
pub struct Proxy {
    /// The `proxy_pass` target.
    pub upstream: Arc<Upstream>,
    /// `Host`, `X-Forwarded-*`, `proxy_set_header`.
    pub headers: ProxyHeaderConfig,
}

impl Proxy {
    /// The proxy of a site from its validated `cfg` (reads the CA file of an HTTPS origin).
    pub fn new(cfg: &ProxyConfig) -> Result<Proxy, OriginTlsError> {
        let mut headers = ProxyHeaderConfig::new(&cfg.upstream.name);
        headers.set.clone_from(&cfg.set_headers);
        Ok(Proxy {
            upstream: Arc::new(Upstream::new(&cfg.upstream)?),
            headers,
        })
    }

    /// Passes a request through to the origin as it is (headers rewritten,
    /// body streamed) and its answer back the same way: every status and
    /// end-to-end header the origin sends reaches the client.
    pub async fn pass(
        &self,
        parts: &http::request::Parts,
        body: ProxyBody,
        peer: SocketAddr,
    ) -> Response<Body> {
        let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = match target.parse() {
            Ok(u) => u,
            Err(_) => return entity::status_response(http::StatusCode::BAD_REQUEST),
        };
        *req.headers_mut() = headers::to_origin(parts, peer, &self.headers);
        match self.upstream.send(req).await {
            Ok(resp) => to_client(resp),
            Err(e) => error_response(&e),
        }
    }
}

/// An origin response for the client: hop-by-hop headers stripped, `Via`
/// added, the body streamed as it comes.
pub fn to_client(resp: Response<UpstreamBody>) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    headers::from_origin(&mut parts.headers);
    Response::from_parts(parts, entity::stream(body))
}

/// The answer to a failed exchange (504 timeout, 502 refused or broken,
/// 413/408/400 for the client's own body), its cause logged at a bounded rate.
pub fn error_response(e: &UpstreamError) -> Response<Body> {
    note_failure(e);
    let mut r = entity::status_response(e.status());
    if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE || e.status() == http::StatusCode::REQUEST_TIMEOUT {
        // The rest of the client's body may still be on its way.
        r.headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    r
}

/// Logs a failed exchange (at most one line per interval per kind).
pub(crate) fn note_failure(e: &UpstreamError) {
    match e {
        UpstreamError::ClientBody { .. } => crate::refusals::UPSTREAM_CLIENT_BODY.note(e),
        _ => crate::refusals::UPSTREAM.note(e),
    }
}
