//! Why a request to an origin failed, and the status the client gets for it.

use http::StatusCode;
use std::time::Duration;

/// A failed exchange with an origin server; `Display` names the server and the cause.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("{server}: connecting: {source}")]
    Connect {
        /// `host:port` of the server.
        server: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Connect plus TLS handshake took longer than `proxy_connect_timeout`.
    #[error("{server}: no connection within {after:?} (proxy_connect_timeout)")]
    ConnectTimeout {
        /// `host:port` of the server.
        server: String,
        /// The timeout.
        after: Duration,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name...).
    #[error("{server}: TLS handshake: {source}")]
    Tls {
        /// `host:port` of the server.
        server: String,
        /// The TLS error.
        source: std::io::Error,
    },
    /// The response head (or the next piece of the body) did not come within `proxy_read_timeout`.
    #[error("{server}: no response within {after:?} (proxy_read_timeout)")]
    ReadTimeout {
        /// `host:port` of the server.
        server: String,
        /// The timeout.
        after: Duration,
    },
    /// The server left a piece of the request body untaken past `proxy_send_timeout`.
    #[error("{server}: request body not taken within {after:?} (proxy_send_timeout)")]
    SendTimeout {
        /// `host:port` of the server.
        server: String,
        /// The timeout.
        after: Duration,
    },
    /// The client's request body failed (too large, stalled, reset): not the origin's fault.
    #[error("{server}: the client's request body: {source}")]
    ClientBody {
        /// `host:port` of the server.
        server: String,
        /// Why the body stopped.
        source: ClientBodyError,
    },
    /// The connection broke or the server answered something that is not HTTP.
    #[error("{server}: {source}")]
    Broken {
        /// `host:port` of the server.
        server: String,
        /// The HTTP client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a client's request body stopped on its way to the origin.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Longer than `client_max_body_size`.
    #[error("larger than client_max_body_size ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No piece of it within `client_body_timeout`.
    #[error("no data within {after:?} (client_body_timeout)")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The client's connection failed.
    #[error("{0}")]
    Io(String),
}

impl UpstreamError {
    /// The status a client gets: 504 on a timeout, 413/408/400 when the
    /// client's body failed, 502 otherwise (refused, TLS, broken).
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::ConnectTimeout { .. }
            | UpstreamError::ReadTimeout { .. }
            | UpstreamError::SendTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::ClientBody { source, .. } => match source {
                ClientBodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                ClientBodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
                ClientBodyError::Io(_) => StatusCode::BAD_REQUEST,
            },
            UpstreamError::Connect { .. } | UpstreamError::Tls { .. } | UpstreamError::Broken { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// Whether the server is to blame (counts toward `max_fails`, allows a
    /// retry on the next server): not when the client's body failed.
    pub(crate) fn is_server_failure(&self) -> bool {
        !matches!(self, UpstreamError::ClientBody { .. })
    }

    /// Whether nothing of the request reached the server (a retry is safe
    /// for any method).
    pub(crate) fn before_request(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } | UpstreamError::Tls { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_refusals_502_and_display_names_the_server() {
        let t = UpstreamError::ReadTimeout {
            server: "127.0.0.1:9".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(t.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            t.to_string(),
            "127.0.0.1:9: no response within 1s (proxy_read_timeout)"
        );
        let r = UpstreamError::Connect {
            server: "127.0.0.1:9".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(r.to_string().starts_with("127.0.0.1:9: connecting: "));
        let b = UpstreamError::ClientBody {
            server: "o:1".into(),
            source: ClientBodyError::TooLarge { limit: 1 },
        };
        assert_eq!(b.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!b.is_server_failure());
    }
}
