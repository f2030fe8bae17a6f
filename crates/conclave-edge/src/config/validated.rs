//! The validated configuration of an edge: typed values the workers use as
//! they are (endpoints, memory specs, key sources, sites), never strings to
//! parse again. Built from the schema by `validation`.

use conclave_mem::MemSpec;
use conclave_rpc::Endpoint;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The validated configuration of an edge (all paths absolute or relative to the CWD).
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeConfig {
    /// The file it was read from.
    pub source: PathBuf,
    /// Worker processes.
    pub workers: usize,
    /// Connection cap per worker.
    pub worker_connections: usize,
    /// Tokio threads per worker.
    pub worker_threads: usize,
    /// Access log file, `None` when off.
    pub access_log: Option<PathBuf>,
    /// Deadline for a TLS handshake and each request head.
    pub client_header_timeout: Duration,
    /// Idle connection timeout.
    pub keepalive_timeout: Duration,
    /// Max request head bytes.
    pub max_header_bytes: usize,
    /// Max request-target length.
    pub max_uri_length: usize,
    /// Grace for in-flight requests at shutdown.
    pub graceful_timeout: Duration,
    /// Longest wait between two reads of a request body.
    pub client_body_timeout: Duration,
    /// Longest a response write may stay blocked.
    pub send_timeout: Duration,
    /// An HTTP/2 connection without open streams this long is closed.
    pub http2_idle_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Connections per client address and worker (`None`: no limit).
    pub limit_conn: Option<usize>,
    /// Request rate limit per client address and worker (`None`: no limit).
    pub limit_req: Option<ReqLimit>,
    /// Deadline of one key-server call.
    pub keyserver_timeout: Duration,
    /// Deadline of one file-server call.
    pub storage_timeout: Duration,
    /// Storage backend.
    pub storage: StorageConfig,
    /// Shared-state backend.
    pub shared: SharedConfig,
    /// The sites.
    pub servers: Vec<ServerConfig>,
}

impl EdgeConfig {
    /// Whether a worker calls a kernel server (and so blocks in its calls):
    /// nextfs storage, a memory server or smc, or a key server for any site.
    pub fn has_remote_seam(&self) -> bool {
        !matches!(self.storage, StorageConfig::Host)
            || !self.shared.is_local()
            || self
                .servers
                .iter()
                .any(|s| matches!(s.tls.key, KeyConfig::KeyServer { .. }))
    }
}

/// `limit_req`: a token bucket per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReqLimit {
    /// Requests per second refilled.
    pub rate: u32,
    /// Requests allowed at once above the rate.
    pub burst: u32,
}

/// Where the docroot and the cache live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// Host directories.
    Host,
    /// A conclave file server: site roots and cache paths are inside its image.
    Nextfs {
        /// The file server.
        server: Endpoint,
        /// `conclave certs` directory holding the edge's mTLS identity.
        certs: PathBuf,
    },
}

/// Where cross-worker state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedConfig {
    /// In-process: one index per worker.
    Local,
    /// A memory store (memory server or smc).
    Mem {
        /// Which store.
        spec: MemSpec,
        /// `conclave certs` directory with the edge identity (smdish, smuf).
        certs: Option<PathBuf>,
        /// The conclave's secret file (smc).
        secret_file: Option<PathBuf>,
        /// The secret the sealing key of `TLS_TICKET_KEYS` is derived from
        /// (`None`: from the master's seed), see [`crate::tickets`].
        ticket_secret_file: Option<PathBuf>,
        /// Deadlines on memory-server calls.
        deadlines: crate::shared::mem::MemDeadlines,
    },
}

impl SharedConfig {
    /// True for the in-process kind.
    pub fn is_local(&self) -> bool {
        matches!(self, SharedConfig::Local)
    }
}

/// One site.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Listening address.
    pub listen: SocketAddr,
    /// Names (informational).
    pub server_name: Vec<String>,
    /// What it serves.
    pub site: SiteConfig,
    /// TLS settings.
    pub tls: TlsConfig,
    /// WAF rule file, if any.
    pub waf: Option<PathBuf>,
}

/// What a site serves: files, or a cache in front of an origin.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteConfig {
    /// Files of a docroot (a host path, or a path in the nextfs image).
    Standalone {
        /// The docroot.
        root: PathBuf,
    },
    /// A caching reverse proxy.
    Cache {
        /// The origin as `host:port`.
        origin: String,
        /// The cache.
        cache: CacheConfig,
    },
}

impl SiteConfig {
    /// `standalone` or `cache`, as `mode` says in the file.
    pub fn mode(&self) -> super::Mode {
        match self {
            SiteConfig::Standalone { .. } => super::Mode::Standalone,
            SiteConfig::Cache { .. } => super::Mode::Cache,
        }
    }
}

/// Where the site's key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyConfig {
    /// A PEM key file.
    File(PathBuf),
    /// The key server (keyless TLS): the key never enters the edge.
    KeyServer {
        /// Key server endpoint.
        endpoint: Endpoint,
        /// Name of the key in the key server.
        key_name: String,
        /// `conclave certs` directory with the edge identity.
        certs: PathBuf,
    },
}

/// TLS settings of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// Key source.
    pub key: KeyConfig,
    /// Offer TLS 1.2.
    pub tls12: bool,
    /// Offer TLS 1.3.
    pub tls13: bool,
    /// Session IDs and tickets.
    pub session_resumption: bool,
}

/// Cache settings of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Cache directory.
    pub path: PathBuf,
    /// Name of the index segment.
    pub zone_name: String,
    /// Size of the index segment.
    pub zone_size: usize,
    /// Max total body bytes.
    pub max_size: u64,
    /// Unused entries are dropped after this.
    pub inactive: Duration,
    /// Freshness of a stored 200.
    pub valid: Duration,
    /// Requests before storing.
    pub min_uses: u32,
}
