//! `conclave-edge`: the HTTPS edge of a conclave (the NGINX role of the seed).
//!
//! It owns HTTP: static (`standalone`) and caching-proxy (`cache`) sites over TLS
//! with HTTP/1.1 and HTTP/2, the origin server, and the master/worker processes.
//! It does not know how its backends work inside: it reaches them through three
//! seams, [`Storage`] (docroot and cache files), [`SharedState`] (cross-worker
//! state as named, locked segments) and [`KeySource`] (the TLS signing key).
//!
//! Layout: `config/` (the file as written, its units, its validation into
//! typed settings), `cache/` (the proxy cache, its index and files),
//! `proxy/` (upstream groups, header rewriting, streamed bodies to origins),
//! `storage/` (host and nextfs), `compress/` (gzip, brotli, zstd), `shared/` (local and memory-server state),
//! `launch` (the `conclave edge` start-up) and `origin` (`conclave origin`).
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod check;
pub mod compress;
pub mod config;
pub mod entity;
pub mod keysource;
pub mod launch;
pub mod master;
pub mod metrics;
pub mod origin;
pub mod path;
pub mod proxy;
pub mod refusals;
pub mod server;
pub mod shared;
pub mod site;
pub mod sni;
pub mod storage;
pub mod tickets;
pub mod tls;
pub mod worker;

pub use config::{ConfigError, EdgeConfig, EdgeSettings};
pub use keysource::{KeyFile, KeyServerKey, KeySource};
pub use origin::OriginSettings;
pub use shared::{LocalSharedState, SharedSegment, SharedState};
pub use storage::{HostStorage, Storage};

/// Why the edge could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS key or certificate.
    #[error("TLS: {0}")]
    Key(#[from] keysource::KeyError),
    /// The cache could not be set up.
    #[error("cache: {0}")]
    Cache(#[from] cache::CacheError),
    /// The way to an origin could not be set up (its TLS).
    #[error(transparent)]
    Proxy(#[from] proxy::OriginTlsError),
    /// An I/O step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else that stops start-up.
    #[error("{0}")]
    Setup(String),
    /// `--check` found problems (all of them listed).
    #[error(transparent)]
    Check(#[from] check::CheckFailed),
}

impl EdgeError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> EdgeError {
        EdgeError::Io {
            what: what.into(),
            source,
        }
    }
}
