//! Clients: a blocking one (rustls' signer is synchronous, so the keyless
//! path needs it) and an async one. Each comes as a single stateful
//! `Connection` (for services whose state lives per connection, such as
//! descriptor tables) and as a `Pool` of idle connections with reconnect.

use crate::endpoint::Endpoint;
use crate::frame::{read_frame, read_frame_sync, write_parts, write_parts_sync, Frame, FrameError};
use crate::role::Role;
use crate::status::Status;
use crate::stream::{connect_async, connect_sync, AsyncStream, ClientTls, SyncStream};
use crate::tls::{Credentials, TlsError};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a client reaches a service.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// TLS configuration and the server role expected; `None` for plain
    /// streams (benchmarks only: every conclave service requires mTLS).
    pub tls: Option<ClientTls>,
    /// Largest reply body accepted.
    pub max_body: u32,
    /// Limit on connecting plus the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit on any one read or write of a blocking client.
    pub io_timeout: Duration,
    /// Idle connections a pool keeps.
    pub max_idle: usize,
}

impl ClientOptions {
    /// Mutual TLS with `creds`, expecting a server certificate for `server_role`.
    pub fn mtls(creds: &Credentials, server_role: Role) -> Result<Self, TlsError> {
        Ok(ClientOptions {
            tls: Some(ClientTls {
                config: creds.client_config()?,
                name: server_role.server_name(),
            }),
            ..Self::plain()
        })
    }

    /// No TLS.
    pub fn plain() -> Self {
        ClientOptions {
            tls: None,
            max_body: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            max_idle: 64,
        }
    }
}

/// Why a call did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Connecting or the TLS handshake failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The service.
        endpoint: Endpoint,
        /// Cause.
        source: io::Error,
    },
    /// The stream broke or carried a malformed reply.
    #[error("connection to {endpoint} failed: {source}")]
    Transport {
        /// The service.
        endpoint: Endpoint,
        /// Cause.
        source: FrameError,
    },
    /// The server closed the connection instead of replying.
    #[error("{endpoint} closed the connection without replying")]
    Closed {
        /// The service.
        endpoint: Endpoint,
    },
    /// A shared, pipelined connection ([`crate::Pipeline`]) broke while
    /// this request was written and not yet answered; the other requests
    /// then waiting on it failed the same way.
    #[error("connection to {endpoint} broke with {in_flight} requests awaiting replies: {source}")]
    Aborted {
        /// The service.
        endpoint: Endpoint,
        /// Requests that were awaiting their reply when it broke.
        in_flight: usize,
        /// Cause.
        source: io::Error,
    },
}

impl RpcError {
    /// The errno a caller should report for this failure.
    pub fn status(&self) -> Status {
        match self {
            RpcError::Connect { source, .. } | RpcError::Aborted { source, .. }
                if source.kind() == io::ErrorKind::TimedOut =>
            {
                Status::ETIMEDOUT
            }
            RpcError::Transport {
                source: FrameError::TooLarge { .. },
                ..
            } => Status::E2BIG,
            _ => Status::EREMOTEIO,
        }
    }
}

impl From<RpcError> for io::Error {
    fn from(e: RpcError) -> io::Error {
        io::Error::new(e.status().io_kind(), e)
    }
}

/// One blocking connection; the server keeps per-connection state for it.
pub struct Connection {
    stream: Box<dyn SyncStream>,
    endpoint: Endpoint,
    max_body: u32,
}

impl Connection {
    /// Connects and finishes the TLS handshake.
    pub fn connect(endpoint: &Endpoint, opts: &ClientOptions) -> Result<Self, RpcError> {
        let stream = connect_sync(endpoint, opts.tls.as_ref(), opts.connect_timeout, opts.io_timeout)
            .map_err(|source| RpcError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        Ok(Connection {
            stream,
            endpoint: endpoint.clone(),
            max_body: opts.max_body,
        })
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let ep = &self.endpoint;
        write_parts_sync(&mut self.stream, code, body).map_err(|e| RpcError::Transport {
            endpoint: ep.clone(),
            source: e.into(),
        })?;
        match read_frame_sync(&mut self.stream, self.max_body) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(RpcError::Closed { endpoint: ep.clone() }),
            Err(source) => Err(RpcError::Transport {
                endpoint: ep.clone(),
                source,
            }),
        }
    }

    /// The service this connection reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Blocking connections to one service, reused across calls. A call that
/// fails on a reused (possibly stale) connection is retried once on a fresh
/// one, so a server restart costs the caller nothing; use it only for
/// requests that are safe to repeat.
pub struct Pool {
    endpoint: Endpoint,
    opts: ClientOptions,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// A pool that connects lazily.
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> Self {
        Pool {
            endpoint,
            opts,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one request on a pooled connection.
    pub fn call(&self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => Connection::connect(&self.endpoint, &self.opts)?,
        };
        let res = match conn.call(code, body) {
            Err(_) if was_reused => {
                conn = Connection::connect(&self.endpoint, &self.opts)?;
                conn.call(code, body)
            }
            r => r,
        };
        if res.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.opts.max_idle {
                idle.push(conn);
            }
        }
        res
    }

    /// Drops every idle connection.
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The service this pool reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// One async connection.
pub struct AsyncConnection {
    stream: Box<dyn AsyncStream>,
    endpoint: Endpoint,
    max_body: u32,
    io_timeout: Duration,
}

impl AsyncConnection {
    /// Connects and finishes the TLS handshake.
    pub async fn connect(endpoint: &Endpoint, opts: &ClientOptions) -> Result<Self, RpcError> {
        let stream = connect_async(endpoint, opts.tls.as_ref(), opts.connect_timeout)
            .await
            .map_err(|source| RpcError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        Ok(AsyncConnection {
            stream,
            endpoint: endpoint.clone(),
            max_body: opts.max_body,
            io_timeout: opts.io_timeout,
        })
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&mut self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let ep = self.endpoint.clone();
        let fut = async {
            write_parts(&mut self.stream, code, body).await?;
            read_frame(&mut self.stream, self.max_body).await
        };
        match tokio::time::timeout(self.io_timeout, fut).await {
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) => Err(RpcError::Closed { endpoint: ep }),
            Ok(Err(source)) => Err(RpcError::Transport { endpoint: ep, source }),
            Err(_) => Err(RpcError::Transport {
                endpoint: ep,
                source: FrameError::Io(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")),
            }),
        }
    }

    /// The service this connection reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Async twin of [`Pool`].
pub struct AsyncPool {
    endpoint: Endpoint,
    opts: ClientOptions,
    idle: Mutex<Vec<AsyncConnection>>,
}

impl AsyncPool {
    /// A pool that connects lazily.
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> Arc<Self> {
        Arc::new(AsyncPool {
            endpoint,
            opts,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one request on a pooled connection.
    pub async fn call(&self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => AsyncConnection::connect(&self.endpoint, &self.opts).await?,
        };
        let res = match conn.call(code, body).await {
            Err(_) if was_reused => {
                conn = AsyncConnection::connect(&self.endpoint, &self.opts).await?;
                conn.call(code, body).await
            }
            r => r,
        };
        if res.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.opts.max_idle {
                idle.push(conn);
            }
        }
        res
    }

    /// The service this pool reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}
