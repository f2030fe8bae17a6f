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
//! `launch` (the `conclave edge` start-up), `master` (worker generations
//! and signals), `listen` (the listening sockets the master hands down),
//! `pid_file` and `origin` (`conclave origin`).
// `deny`, not `forbid`: `listen::adopt` owns an inherited descriptor by
// number, the one `unsafe` of the crate.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod check;
pub mod compress;
pub mod config;
pub mod entity;
pub mod keysource;
pub mod launch;
pub mod listen;
pub mod master;
pub mod metrics;
pub mod origin;
pub mod path;
pub mod pid_file;
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
    /// A listening socket could not be had (e.g. the port is held).
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    /// The pid file names another running edge, or cannot be written.
    #[error(transparent)]
    PidFile(#[from] pid_file::PidFileError),
    /// A worker could not set up (it exited with `master::EX_CONFIG`):
    /// the edge stops instead of restarting it in a loop.
    #[error("worker {index} could not start: {reason}")]
    WorkerSetup {
        /// Which worker.
        index: usize,
        /// The reason it gave.
        reason: String,
    },
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
