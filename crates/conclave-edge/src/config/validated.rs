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
    /// Where keyless handshakes sign.
    pub keyless_handshake: super::schema::KeylessHandshake,
    /// WAF verdicts cached per worker thread (`waf_verdict_cache`, 0: none).
    pub waf_verdict_cache: usize,
    /// Deadline of one file-server call.
    pub storage_timeout: Duration,
    /// Storage backend.
    pub storage: StorageConfig,
    /// Shared-state backend.
    pub shared: SharedConfig,
    /// The sites.
    pub servers: Vec<ServerConfig>,
    /// The access log's line format.
    pub access_log_format: super::AccessLogFormat,
    /// Where the error log goes.
    pub error_log: ErrorLog,
    /// The least severe level the error log writes.
    pub error_log_level: super::LogLevel,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`), `None` when off.
    pub admin: Option<AdminConfig>,
    /// Where the master writes its pid, `None` when not kept.
    pub pid_file: Option<PathBuf>,
    /// `[shared] ticket_source = "keyserver"`: the fleet's ticket keys;
    /// `None`: the edge makes its own.
    pub fleet_tickets: Option<FleetTicketsConfig>,
}

/// Where the error log (the `tracing` output) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorLog {
    /// Nowhere.
    Off,
    /// The process's standard error (the default: systemd's journal takes it).
    Stderr,
    /// A file, appended to and reopened on SIGUSR1.
    File(PathBuf),
}

/// The admin listener, validated: loopback, or any address with mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Its address.
    pub listen: SocketAddr,
    /// The identity directory that turns on mTLS (required off loopback).
    pub certs: Option<PathBuf>,
}

/// Where the fleet's TLS ticket keys are fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTicketsConfig {
    /// The key servers (fail-over).
    pub endpoints: Vec<Endpoint>,
    /// `conclave certs` directory with the edge identity.
    pub certs: PathBuf,
    /// How often a worker fetches again.
    pub refresh: Duration,
    /// Deadline of one fetch (`keyserver_timeout`).
    pub timeout: Duration,
}

impl EdgeConfig {
    /// Whether a worker calls a kernel server (and so blocks in its calls):
    /// nextfs storage, a memory server or smc, or a key server for any site.
    pub fn has_remote_seam(&self) -> bool {
        !matches!(self.storage, StorageConfig::Host)
            || !self.shared.is_local()
            || self.servers.iter().any(|s| s.tls.is_keyless())
            || self.fleet_tickets.is_some()
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
    /// Largest request body the WAF inspects (`[server.waf] body_limit`, default 128 KiB).
    pub waf_body_limit: u64,
    /// Largest request body (`client_max_body_size`): 413 beyond.
    pub client_max_body_size: u64,
    /// Compression of its responses.
    pub compression: CompressionConfig,
    /// `add_header`: set on every response of the site, errors included.
    pub add_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `server_tokens`: send `Server: conclave` (false: no `Server` at all).
    pub server_tokens: bool,
    /// `default_server`: the site of its `listen` for clients whose SNI names no site.
    pub default_server: bool,
}

/// A site's compression policy (`[compression]` merged with
/// `[server.compression]`); [`Default`] is NGINX's: everything off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Gzip on the fly.
    pub gzip: bool,
    /// Brotli on the fly.
    pub brotli: bool,
    /// Zstandard on the fly.
    pub zstd: bool,
    /// Compressible media types, lower case: `type/sub`, `type/*` or `*`.
    pub types: Vec<String>,
    /// Responses announced shorter than this are sent as they are.
    pub min_length: u64,
    /// Gzip level (1..=9).
    pub gzip_level: i32,
    /// Brotli quality (0..=11).
    pub brotli_level: i32,
    /// Zstandard level (1..=19).
    pub zstd_level: i32,
    /// Serve `FILE.gz` siblings (standalone).
    pub gzip_static: bool,
    /// Serve `FILE.br` siblings (standalone).
    pub brotli_static: bool,
    /// Serve `FILE.zst` siblings (standalone).
    pub zstd_static: bool,
}

impl CompressionConfig {
    /// `gzip_types` when none is given: text, and the structured text formats
    /// NGINX setups usually add.
    pub const DEFAULT_TYPES: [&'static str; 5] = [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "image/svg+xml",
    ];
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            gzip: false,
            brotli: false,
            zstd: false,
            types: Self::DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            min_length: 20,
            gzip_level: 1,
            brotli_level: 6,
            zstd_level: 1,
            gzip_static: false,
            brotli_static: false,
            zstd_static: false,
        }
    }
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
        /// Where requests go that the cache does not answer (boxed: it is
        /// much larger than a standalone site).
        proxy: Box<ProxyConfig>,
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
        /// More endpoints holding the same key (`keyservers`), after `endpoint`.
        fallbacks: Vec<Endpoint>,
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
    /// DER OCSP response stapled with `certificate`.
    pub ocsp_staple: Option<PathBuf>,
    /// Cipher suites, in the server's order of preference (empty: rustls' defaults).
    pub ciphers: Vec<rustls::CipherSuite>,
    /// The server's order of `ciphers` decides, not the client's.
    pub prefer_server_ciphers: bool,
    /// Key-exchange groups allowed; the client's order picks (empty: rustls' defaults).
    pub curves: Vec<rustls::NamedGroup>,
    /// `[[server.tls.certificates]]`: the site's other certificates.
    pub certificates: Vec<CertConfig>,
}

impl TlsConfig {
    /// Every certificate of the site, the one of `[server.tls]` first.
    pub fn all_certificates(&self) -> Vec<CertConfig> {
        let mut all = vec![CertConfig {
            certificate: self.certificate.clone(),
            key: self.key.clone(),
            ocsp_staple: self.ocsp_staple.clone(),
        }];
        all.extend(self.certificates.iter().cloned());
        all
    }
    /// Whether any certificate of the site has its key in a key server.
    pub fn is_keyless(&self) -> bool {
        std::iter::once(&self.key)
            .chain(self.certificates.iter().map(|c| &c.key))
            .any(|k| matches!(k, KeyConfig::KeyServer { .. }))
    }
}

/// One certificate of a site and where its key is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertConfig {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// Key source.
    pub key: KeyConfig,
    /// DER OCSP response to staple.
    pub ocsp_staple: Option<PathBuf>,
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
    /// Fallback freshness when the origin gives none; `None`: no fallback.
    pub valid: Option<Duration>,
    /// Requests before storing.
    pub min_uses: u32,
    /// The cache key template.
    pub key: crate::cache::key::CacheKey,
    /// `proxy_cache_use_stale`.
    pub use_stale: crate::cache::freshness::UseStale,
    /// `proxy_cache_background_update`.
    pub background_update: bool,
    /// `proxy_cache_lock_timeout`.
    pub lock_timeout: Duration,
    /// Who may `PURGE`.
    pub purge_allow: Vec<crate::cache::purge::Cidr>,
}

// ---- Proxying (issue 14: `proxy_pass`, `[[upstream]]`, `proxy_*` keys) ----

/// How a cache site talks to its origin: the upstream and the request headers.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    /// The `proxy_pass` target.
    pub upstream: UpstreamConfig,
    /// `proxy_set_header`: set last on every request to the origin; an empty
    /// value removes the header (NGINX).
    pub set_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// One `proxy_pass` target: a group of servers sharing a scheme and timeouts.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// The host of `proxy_pass` (an `[[upstream]]` name or `host:port`):
    /// the `Host` sent without a client one, and the default TLS name.
    pub name: String,
    /// TLS to the servers (`proxy_pass = "https://..."`), `None` for plain HTTP.
    pub tls: Option<OriginTlsConfig>,
    /// The servers, tried in round robin.
    pub servers: Vec<UpstreamServerConfig>,
    /// `proxy_connect_timeout`: TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// `proxy_read_timeout`: longest wait for the response head after the
    /// request is sent, and between two pieces of the response body.
    pub read_timeout: Duration,
    /// `proxy_send_timeout`: longest the origin may leave a piece of the request body untaken.
    pub send_timeout: Duration,
}

/// One server of an upstream group (NGINX `server ADDRESS max_fails= fail_timeout=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamServerConfig {
    /// `host:port`.
    pub address: String,
    /// Failures within `fail_timeout` that take it out (0: never).
    pub max_fails: u32,
    /// The window failures are counted in, and how long it stays out.
    pub fail_timeout: Duration,
}

/// TLS to an HTTPS origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginTlsConfig {
    /// `proxy_ssl_trusted_certificate`: PEM CA certificates the origin's chain must reach.
    pub trusted_certificate: Option<PathBuf>,
    /// `proxy_ssl_name`: the name sent in SNI and verified (default: the `proxy_pass` host).
    pub server_name: String,
    /// `proxy_ssl_verify`: verify the origin's certificate.
    pub verify: bool,
}
