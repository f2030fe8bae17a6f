//! TEMPORARY stand-in for helper "proxy"'s module (replaced by the merge of
//! READY(proxy-api)): the subset of its API the cache uses.

use crate::entity::{self, Body};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A request body to the origin.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// An empty request body.
pub fn empty_body() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The origin's response body.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, UpstreamError>;

/// A failed exchange with an origin.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection.
    #[error("{server}: connecting: {source}")]
    Connect {
        /// Server.
        server: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Connect timeout.
    #[error("{server}: no connection within {after:?}")]
    ConnectTimeout {
        /// Server.
        server: String,
        /// Timeout.
        after: Duration,
    },
    /// Read timeout.
    #[error("{server}: no response within {after:?}")]
    ReadTimeout {
        /// Server.
        server: String,
        /// Timeout.
        after: Duration,
    },
    /// Send timeout.
    #[error("{server}: request body not taken within {after:?}")]
    SendTimeout {
        /// Server.
        server: String,
        /// Timeout.
        after: Duration,
    },
    /// Broken.
    #[error("{server}: {source}")]
    Broken {
        /// Server.
        server: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl UpstreamError {
    /// 504 on timeouts, 502 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout { .. }
            | UpstreamError::ReadTimeout { .. }
            | UpstreamError::SendTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The origin.
#[derive(Debug)]
pub struct Upstream {
    origin: String,
    client: Client<HttpConnector, ProxyBody>,
    read_timeout: Duration,
}

impl Upstream {
    /// Sends `req` to the origin.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = format!(
            "http://{}{}",
            self.origin,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        )
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamError::Broken {
            server: self.origin.clone(),
            source: Box::new(e),
        })?;
        let server = self.origin.clone();
        let r = tokio::time::timeout(
            self.read_timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await
        .map_err(|_| UpstreamError::ReadTimeout {
            server: server.clone(),
            after: self.read_timeout,
        })?
        .map_err(|e| UpstreamError::Broken {
            server: server.clone(),
            source: Box::new(e),
        })?;
        let (p, b) = r.into_parts();
        let b = b
            .map_err(move |e| UpstreamError::Broken {
                server: server.clone(),
                source: Box::new(e),
            })
            .boxed_unsync();
        Ok(Response::from_parts(p, b))
    }
}

/// Header rewriting.
pub mod headers {
    use http::HeaderMap;
    use std::net::SocketAddr;

    /// Request headers for the origin.
    pub fn to_origin(parts: &http::request::Parts, _peer: SocketAddr, _cfg: &()) -> HeaderMap {
        let mut h = parts.headers.clone();
        h.remove(http::header::CONNECTION);
        h
    }

    /// Response headers for the client.
    pub fn from_origin(headers: &mut HeaderMap) {
        headers.remove(http::header::CONNECTION);
        headers.remove(http::header::TRANSFER_ENCODING);
        headers.remove("keep-alive");
    }
}

/// One site's way to its origin.
#[derive(Debug)]
pub struct Proxy {
    /// The origin.
    pub upstream: std::sync::Arc<Upstream>,
    /// Header config.
    pub headers: (),
}

impl Proxy {
    /// To `origin` (`host:port`).
    pub fn new(origin: &str) -> Proxy {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        Proxy {
            upstream: std::sync::Arc::new(Upstream {
                origin: origin.to_string(),
                client: Client::builder(TokioExecutor::new()).build(conn),
                read_timeout: Duration::from_secs(
                    std::env::var("CONCLAVE_STUB_READ_TIMEOUT")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(60),
                ),
            }),
            headers: (),
        }
    }
}

/// The answer to a failed exchange.
pub fn error_response(e: &UpstreamError) -> Response<Body> {
    note_failure(e);
    entity::status_response(e.status())
}

/// Logs a failed exchange.
pub fn note_failure(e: &UpstreamError) {
    tracing::warn!("{e}");
}
