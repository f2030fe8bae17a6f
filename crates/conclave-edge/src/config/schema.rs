//! The edge configuration file as written (`edge.toml`): serde types that read
//! and write it, defaults included. Checks and meaning live in `validation`.
//!
//! Public and constructible so a program (`conclave eval`) builds an edge
//! configuration as a value and writes it with [`EdgeSettings::to_toml`]
//! instead of printing TOML text. Keep in step with `docs/edge.md`.

use super::units::{ByteSize, Dur};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The whole file, as written.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    /// Worker processes (1..=64).
    #[serde(default = "one")]
    pub workers: usize,
    /// Connection cap per worker.
    #[serde(default = "default_connections")]
    pub worker_connections: usize,
    /// Tokio threads per worker (1..=64).
    #[serde(default = "one")]
    pub worker_threads: usize,
    /// `"off"` or the access log file.
    #[serde(default = "off")]
    pub access_log: String,
    /// Deadline for a TLS handshake and each request head.
    #[serde(default = "default_header_timeout")]
    pub client_header_timeout: Dur,
    /// Idle connection timeout.
    #[serde(default = "default_keepalive")]
    pub keepalive_timeout: Dur,
    /// Max request head size (8k..=1m).
    #[serde(default = "default_header_buffers")]
    pub large_client_header_buffers: ByteSize,
    /// Max request-target length.
    #[serde(default = "default_uri")]
    pub max_uri_length: usize,
    /// Grace for in-flight requests at shutdown.
    #[serde(default = "default_graceful")]
    pub graceful_timeout: Dur,
    /// Longest wait between two reads of a request body (NGINX
    /// `client_body_timeout`): a client trickling its body would otherwise
    /// hold a connection slot forever, since every byte resets the idle timer.
    #[serde(default = "default_60s")]
    pub client_body_timeout: Dur,
    /// Longest a response write may stay blocked (NGINX `send_timeout`): a
    /// client that stops reading frees its slot after this.
    #[serde(default = "default_60s")]
    pub send_timeout: Dur,
    /// An HTTP/2 connection with no stream open for this long is closed, PINGs
    /// and SETTINGS notwithstanding (NGINX `http2_idle_timeout`).
    #[serde(default = "default_h2_idle")]
    pub http2_idle_timeout: Dur,
    /// Concurrent streams per HTTP/2 connection (NGINX `http2_max_concurrent_streams`).
    #[serde(default = "default_h2_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Open connections per client address and worker, 0 = no limit (NGINX
    /// `limit_conn`); beyond it a new connection is closed at once.
    #[serde(default)]
    pub limit_conn: usize,
    /// Requests per second per client address and worker, 0 = no limit
    /// (NGINX `limit_req rate=`); beyond it (and the burst) the answer is 503.
    #[serde(default)]
    pub limit_req_rate: u32,
    /// Requests a client address may make above `limit_req_rate` at once
    /// (NGINX `limit_req burst= nodelay`).
    #[serde(default)]
    pub limit_req_burst: u32,
    /// Deadline of one key-server call (a handshake signature): past it that
    /// handshake fails instead of waiting on a stalled key server.
    #[serde(default = "default_keyserver_timeout")]
    pub keyserver_timeout: Dur,
    /// Where the signing step of keyless handshakes runs: `"coroutine"`
    /// (on the runtime thread, the signature awaited) or `"threads"` (on
    /// handshake threads that wait for it).
    #[serde(default)]
    pub keyless_handshake: KeylessHandshake,
    /// `@detectSQLi`/`@detectXSS` verdicts each worker thread keeps for
    /// values it sees again (User-Agent, Referer, cookies), 0 for none;
    /// rounded up to a power of two (docs/waf.md, "libinjection verdict cache").
    #[serde(default = "default_waf_verdict_cache")]
    pub waf_verdict_cache: usize,
    /// Deadline of one file-server call (nextfs storage): past it the request
    /// gets 504 (a cache site serves it from the origin as a miss).
    #[serde(default = "default_storage_timeout")]
    pub storage_timeout: Dur,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageSettings,
    /// `[shared]`.
    #[serde(default)]
    pub shared: SharedSettings,
    /// `[compression]`: the compression keys every site starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSettings>,
    /// `[[server]]`: the sites.
    #[serde(default)]
    pub server: Vec<ServerSettings>,
    /// `[[upstream]]`: named groups of origin servers for `proxy_pass = "http://NAME"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<UpstreamSettings>,
    /// The access log's line format (NGINX `log_format`): `main`, `combined` or `json`.
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    /// `"off"`, `"stderr"` or the error log file (reopened on SIGUSR1).
    #[serde(default = "default_error_log")]
    pub error_log: String,
    /// The least severe error-log level written.
    #[serde(default)]
    pub error_log_level: LogLevel,
    /// `[admin]`: the metrics and health listener; absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSettings>,
    /// File the master writes its pid to (NGINX `pid`): how
    /// `conclave edge --reload/--stop` find it, and how a second master
    /// started by mistake sees that one already runs. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
}

/// Where the signing step of a keyless TLS handshake runs (`keyless_handshake`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeylessHandshake {
    /// A coroutine on the runtime thread; the signature is awaited
    /// (`conclave_keys::fiber`): no thread hop, no blocking read.
    #[default]
    Coroutine,
    /// A pool of handshake threads per worker that block on the key server
    /// (`conclave_keys::HandshakeThreads`), kept for comparison.
    Threads,
}

/// The line format of the access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// `unix-time addr method target status length cache-status` (conclave's own).
    #[default]
    Main,
    /// NGINX's predefined `combined` format, for tools that read NGINX logs.
    Combined,
    /// One JSON object per line, with timings, cache and TLS details.
    Json,
}

/// Error-log severity, most severe first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default: start-up, workers, refusals.
    #[default]
    Info,
    /// Everything, per connection.
    Debug,
}

/// `[admin]`: where `/metrics`, `/healthz` and `/readyz` are served.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// `"127.0.0.1:PORT"`; a non-loopback address needs `certs`.
    pub listen: String,
    /// A `conclave certs` identity directory: with it the listener asks for
    /// a client certificate from the conclave's CA (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<PathBuf>,
}

fn default_error_log() -> String {
    "stderr".into()
}

impl Default for EdgeSettings {
    /// The defaults of every key, and no site.
    fn default() -> Self {
        EdgeSettings {
            workers: one(),
            worker_connections: default_connections(),
            worker_threads: one(),
            access_log: off(),
            client_header_timeout: default_header_timeout(),
            keepalive_timeout: default_keepalive(),
            large_client_header_buffers: default_header_buffers(),
            max_uri_length: default_uri(),
            graceful_timeout: default_graceful(),
            client_body_timeout: default_60s(),
            send_timeout: default_60s(),
            http2_idle_timeout: default_h2_idle(),
            http2_max_concurrent_streams: default_h2_streams(),
            limit_conn: 0,
            limit_req_rate: 0,
            limit_req_burst: 0,
            keyserver_timeout: default_keyserver_timeout(),
            keyless_handshake: KeylessHandshake::default(),
            waf_verdict_cache: default_waf_verdict_cache(),
            storage_timeout: default_storage_timeout(),
            storage: StorageSettings::default(),
            shared: SharedSettings::default(),
            compression: None,
            server: Vec::new(),
            upstream: Vec::new(),
            access_log_format: AccessLogFormat::default(),
            error_log: default_error_log(),
            error_log_level: LogLevel::default(),
            admin: None,
            pid_file: None,
        }
    }
}

impl EdgeSettings {
    /// The file text of these settings; [`super::EdgeConfig::parse`] of it
    /// gives the same configuration as validating the value.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("edge settings always serialise to TOML")
    }
}

fn one() -> usize {
    1
}
fn default_connections() -> usize {
    4096
}
fn off() -> String {
    "off".into()
}
fn default_header_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_keepalive() -> Dur {
    Dur(Duration::from_secs(65))
}
fn default_header_buffers() -> ByteSize {
    ByteSize(32 << 10)
}
fn default_uri() -> usize {
    8192
}
fn default_graceful() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_60s() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_h2_idle() -> Dur {
    Dur(Duration::from_secs(180))
}
fn default_h2_streams() -> u32 {
    128
}
fn default_keyserver_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_storage_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// `[storage]`: where the docroot and the cache live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StorageSettings {
    /// Host directories.
    #[default]
    Host,
    /// A conclave file server: `root` and cache `path` are paths inside its image.
    Nextfs {
        /// The file server's endpoint (`unix:///...` or `tcp://...`).
        server: String,
        /// `conclave certs` directory holding the edge's mTLS identity.
        certs: PathBuf,
    },
}

/// `[shared]`: where cross-worker state lives: `kind = "local"` (in-process,
/// one index per worker) or a memory-server spec (`smdish+unix:///..`,
/// `smuf+tcp://..?dir=..`, `smc:///dir`), see `docs/mem.md`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSettings {
    /// `local` or a memory-server spec.
    #[serde(default = "local_kind")]
    pub kind: String,
    /// `conclave certs` directory with the edge identity (smdish, smuf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<PathBuf>,
    /// The conclave's secret file (smc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Memory stores: the file (mode 0600, at least 32 random bytes) from
    /// which the edge derives the key that seals `TLS_TICKET_KEYS` before
    /// it leaves the edge. Every edge sharing the memory store needs the
    /// same file; without it the key comes from the master's random seed
    /// (one edge's workers share it; another edge's sealed keys are
    /// replaced, with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_secret_file: Option<PathBuf>,
    /// Memory servers: limit on connecting and on each round trip (NGINX
    /// `proxy_connect_timeout`/`proxy_read_timeout`); past it the request is
    /// served as a cache miss.
    #[serde(default = "default_shared_timeout")]
    pub timeout: Dur,
    /// Memory servers: how long a request waits for the cache zone's lock
    /// before it is served as a miss without an index update (NGINX
    /// `proxy_cache_lock_timeout`).
    #[serde(default = "default_lock_wait")]
    pub lock_wait: Dur,
    /// Where TLS ticket keys come from: `"edge"` (the default: the master's
    /// seed, or the memory store sealed with `ticket_secret_file`) or
    /// `"keyserver"` (per-epoch keys fetched from `ticket_keyservers`, the
    /// same on every edge of the fleet, so a client resumes on any node).
    #[serde(default, skip_serializing_if = "TicketSource::is_edge")]
    pub ticket_source: TicketSource,
    /// With `ticket_source = "keyserver"`: the key servers to fetch ticket
    /// keys from (fail-over in order of health), reached with `certs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ticket_keyservers: Vec<String>,
    /// With `ticket_source = "keyserver"`: how often a worker fetches the
    /// keys again (it also fetches right after each epoch change).
    #[serde(default = "default_ticket_refresh")]
    pub ticket_refresh: Dur,
}

/// `[shared] ticket_source`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketSource {
    /// The edge makes its own keys (one edge's workers share them).
    #[default]
    Edge,
    /// The fleet's key servers hand out per-epoch keys.
    Keyserver,
}

impl TicketSource {
    fn is_edge(&self) -> bool {
        *self == TicketSource::Edge
    }
}

fn default_ticket_refresh() -> Dur {
    Dur(Duration::from_secs(60))
}

fn local_kind() -> String {
    "local".into()
}
fn default_shared_timeout() -> Dur {
    Dur(crate::shared::mem::MemDeadlines::default().call)
}
fn default_lock_wait() -> Dur {
    Dur(crate::shared::mem::MemDeadlines::default().lock_wait)
}

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            kind: local_kind(),
            certs: None,
            secret_file: None,
            ticket_secret_file: None,
            timeout: default_shared_timeout(),
            lock_wait: default_lock_wait(),
            ticket_source: TicketSource::Edge,
            ticket_keyservers: Vec::new(),
            ticket_refresh: default_ticket_refresh(),
        }
    }
}

/// What a site does, as `mode` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serve files from `root`.
    Standalone,
    /// Caching reverse proxy to `proxy_pass`.
    Cache,
}

/// `[[server]]`: one site.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `IP:port` to listen on.
    pub listen: String,
    /// Names (informational).
    #[serde(default)]
    pub server_name: Vec<String>,
    /// What the site does.
    pub mode: Mode,
    /// Docroot (standalone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Origin (cache): `HOST:PORT`, `http://HOST:PORT`, `https://HOST:PORT`,
    /// or `http://NAME`/`https://NAME` of an `[[upstream]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_pass: Option<String>,
    // -- proxying keys (NGINX names; defaults applied by validation) --
    /// Largest request body, NGINX `client_max_body_size` (default 1m): 413 beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_max_body_size: Option<ByteSize>,
    /// TCP connect plus TLS handshake to an origin server (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_connect_timeout: Option<Dur>,
    /// Wait for the origin's response head, and between two body reads (default 60s): 504 past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_read_timeout: Option<Dur>,
    /// Wait for the origin to take the next piece of a request body (default 60s): 504 past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_send_timeout: Option<Dur>,
    /// PEM CA certificates an HTTPS origin is verified against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ssl_trusted_certificate: Option<PathBuf>,
    /// The name sent to and verified of an HTTPS origin (default: the `proxy_pass` host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ssl_name: Option<String>,
    /// Verify an HTTPS origin's certificate (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ssl_verify: Option<bool>,
    /// `[server.tls]`.
    pub tls: TlsSettings,
    /// `[server.cache]` (cache; defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSettings>,
    /// `[server.waf]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafSettings>,
    /// Headers set on requests to the origin, NGINX `proxy_set_header`
    /// (`{ Host = "origin.example" }`); an empty value removes the header.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_set_header: BTreeMap<String, String>,
    /// `[server.compression]`: this site's compression keys, each over the
    /// top-level `[compression]` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSettings>,
    /// Headers set on every response of the site, errors included (NGINX
    /// `add_header ... always`), e.g. `{ Strict-Transport-Security = "max-age=63072000" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_header: BTreeMap<String, String>,
    /// `Server: conclave` on every response (default true); false omits the
    /// header (NGINX `server_tokens`, stricter: no product name either).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub server_tokens: bool,
    /// The site a client gets on this `listen` address when its SNI names no
    /// site (NGINX `listen ... default_server`); default: the first site.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default_server: bool,
}

impl ServerSettings {
    /// A standalone site serving `root`.
    pub fn standalone(
        listen: impl Into<String>,
        root: impl Into<PathBuf>,
        tls: TlsSettings,
    ) -> ServerSettings {
        ServerSettings {
            listen: listen.into(),
            server_name: Vec::new(),
            mode: Mode::Standalone,
            root: Some(root.into()),
            proxy_pass: None,
            tls,
            cache: None,
            waf: None,
            ..ServerSettings::proxy_defaults()
        }
    }

    /// A cache site in front of `proxy_pass` (`http://HOST:PORT`).
    pub fn cache(
        listen: impl Into<String>,
        proxy_pass: impl Into<String>,
        cache: CacheSettings,
        tls: TlsSettings,
    ) -> ServerSettings {
        ServerSettings {
            listen: listen.into(),
            server_name: Vec::new(),
            mode: Mode::Cache,
            root: None,
            proxy_pass: Some(proxy_pass.into()),
            tls,
            cache: Some(cache),
            waf: None,
            ..ServerSettings::proxy_defaults()
        }
    }

    /// The proxying keys unset (their defaults), the rest placeholders.
    fn proxy_defaults() -> ServerSettings {
        ServerSettings {
            listen: String::new(),
            server_name: Vec::new(),
            mode: Mode::Standalone,
            root: None,
            proxy_pass: None,
            client_max_body_size: None,
            proxy_connect_timeout: None,
            proxy_read_timeout: None,
            proxy_send_timeout: None,
            proxy_ssl_trusted_certificate: None,
            proxy_ssl_name: None,
            proxy_ssl_verify: None,
            tls: TlsSettings::key_file("", ""),
            cache: None,
            waf: None,
            proxy_set_header: BTreeMap::new(),
            compression: None,
            add_header: BTreeMap::new(),
            server_tokens: true,
            default_server: false,
        }
    }
}

/// `[[upstream]]`: a named group of origin servers (NGINX `upstream NAME { server ...; }`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// The name `proxy_pass = "http://NAME"` refers to.
    pub name: String,
    /// `[[upstream.server]]`: its servers, tried in round robin.
    pub server: Vec<UpstreamServerSettings>,
}

/// `[[upstream.server]]`: one origin server of a group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServerSettings {
    /// `HOST:PORT`.
    pub address: String,
    /// Failed attempts within `fail_timeout` that take the server out for
    /// `fail_timeout` (default 1; 0 never takes it out).
    #[serde(default = "one_u32")]
    pub max_fails: u32,
    /// The window failures are counted in, and the time out (default 10s).
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: Dur,
}

impl UpstreamServerSettings {
    /// A server at `address` with NGINX's defaults.
    pub fn new(address: impl Into<String>) -> UpstreamServerSettings {
        UpstreamServerSettings {
            address: address.into(),
            max_fails: one_u32(),
            fail_timeout: default_fail_timeout(),
        }
    }
}

fn default_waf_verdict_cache() -> usize {
    conclave_waf::DEFAULT_VERDICT_CACHE
}

fn default_fail_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// `[server.waf]`: a ModSecurity rule file (see `docs/waf.md`; the OWASP CRS runs as is).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WafSettings {
    /// The rule file.
    pub rules: PathBuf,
    /// Largest request body the WAF inspects in phase 2 (default 128k), when the rules say
    /// `SecRequestBodyAccess On`: the edge buffers up to this much; a longer body gets 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<ByteSize>,
}

/// `[server.tls]`: the certificate and where its key is (a file, or a key server).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key file (or `keyserver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Key server endpoint (keyless TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyserver: Option<String>,
    /// Name of the key in the key server (default `server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `conclave certs` directory with the edge identity (key server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<PathBuf>,
    /// `"TLSv1.2"`, `"TLSv1.3"`.
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    /// Session IDs and tickets.
    #[serde(default = "yes")]
    pub session_resumption: bool,
    /// A DER OCSP response for `certificate`, stapled to handshakes that ask
    /// for it (re-read when workers start, so a reload picks up a fresh one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_staple: Option<PathBuf>,
    /// Cipher suites, rustls names (`TLS13_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`...), in the server's order
    /// of preference; empty: rustls' defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    /// NGINX's `ssl_prefer_server_ciphers`: pick the first suite of
    /// `ciphers` (or of rustls' defaults) the client offers, instead of the
    /// first of the client's list the server allows (the default, as NGINX's).
    #[serde(default, skip_serializing_if = "is_false")]
    pub prefer_server_ciphers: bool,
    /// Key-exchange groups, rustls names (`X25519`, `secp256r1`,
    /// `secp384r1`, `X25519MLKEM768`) the site allows; the client's order
    /// picks among them (rustls has no server preference for groups); empty:
    /// rustls' defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<String>,
    /// `[[server.tls.certificates]]`: more certificates of the site (e.g. an
    /// ECDSA one beside an RSA one), each chosen for the clients whose
    /// signature algorithms it serves; the one above comes first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateSettings>,
    /// Several key-server endpoints holding the same key (instead of
    /// `keyserver`): signatures go round robin over the healthy ones and a
    /// failed call is retried once on the next within `keyserver_timeout`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyservers: Vec<String>,
}

/// `[[server.tls.certificates]]`: one more certificate and where its key is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSettings {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key file (or `keyserver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Key server endpoint (keyless TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyserver: Option<String>,
    /// Name of the key in the key server (default `server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// `conclave certs` directory with the edge identity (default: the one of `[server.tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certs: Option<PathBuf>,
    /// A DER OCSP response for this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_staple: Option<PathBuf>,
}

impl TlsSettings {
    /// A certificate and a PEM key file, with the default protocols and resumption.
    pub fn key_file(certificate: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            certificate: certificate.into(),
            key: Some(key.into()),
            keyserver: None,
            key_name: None,
            certs: None,
            protocols: default_protocols(),
            session_resumption: true,
            ocsp_staple: None,
            ciphers: Vec::new(),
            prefer_server_ciphers: false,
            curves: Vec::new(),
            certificates: Vec::new(),
            keyservers: Vec::new(),
        }
    }

    /// A certificate whose key stays in a key server, reached with the edge
    /// identity in `certs`.
    pub fn key_server(
        certificate: impl Into<PathBuf>,
        keyserver: impl Into<String>,
        key_name: impl Into<String>,
        certs: impl Into<PathBuf>,
    ) -> TlsSettings {
        TlsSettings {
            certificate: certificate.into(),
            key: None,
            keyserver: Some(keyserver.into()),
            key_name: Some(key_name.into()),
            certs: Some(certs.into()),
            protocols: default_protocols(),
            session_resumption: true,
            ocsp_staple: None,
            ciphers: Vec::new(),
            prefer_server_ciphers: false,
            curves: Vec::new(),
            certificates: Vec::new(),
            keyservers: Vec::new(),
        }
    }
}

fn default_protocols() -> Vec<String> {
    vec!["TLSv1.2".into(), "TLSv1.3".into()]
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// `[server.cache]`: the proxy cache of a cache site.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Cache directory.
    #[serde(default = "default_cache_path")]
    pub path: PathBuf,
    /// `NAME:SIZE` of the shared index segment.
    #[serde(default = "default_zone")]
    pub keys_zone: String,
    /// Max total body bytes.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Unused entries are dropped after this.
    #[serde(default = "default_60m")]
    pub inactive: Dur,
    /// Freshness of a stored 200/301/302 whose origin gives none
    /// (`Cache-Control` max-age/s-maxage, `Expires`); `"0s"`: no fallback
    /// (NGINX `proxy_cache_valid`).
    #[serde(default = "default_60m")]
    pub valid: Dur,
    /// Requests before storing.
    #[serde(default = "one_u32")]
    pub min_uses: u32,
    /// The cache key template (NGINX `proxy_cache_key`).
    #[serde(default = "default_key")]
    pub key: String,
    /// When a stale entry is served instead of the origin's answer
    /// (NGINX `proxy_cache_use_stale`): "error", "timeout", "updating",
    /// "http_500", "http_502", "http_503", "http_504".
    #[serde(default)]
    pub use_stale: Vec<String>,
    /// With "updating" in `use_stale`: a stale entry is served at once and
    /// refreshed in the background (NGINX `proxy_cache_background_update`).
    #[serde(default)]
    pub background_update: bool,
    /// How long concurrent misses for one key wait for the first one's
    /// stored response before fetching themselves (NGINX `proxy_cache_lock_timeout`).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: Dur,
    /// Addresses (CIDR) allowed to send `PURGE` (empty: purging is off).
    #[serde(default)]
    pub purge_allow: Vec<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            path: default_cache_path(),
            keys_zone: default_zone(),
            max_size: default_max_size(),
            inactive: default_60m(),
            valid: default_60m(),
            min_uses: one_u32(),
            key: default_key(),
            use_stale: Vec::new(),
            background_update: false,
            lock_timeout: default_lock_timeout(),
            purge_allow: Vec::new(),
        }
    }
}

fn default_key() -> String {
    crate::cache::key::DEFAULT_KEY.into()
}
fn default_lock_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

fn default_cache_path() -> PathBuf {
    "cache".into()
}
fn default_zone() -> String {
    "ZONE_ONE:16k".into()
}
fn default_max_size() -> ByteSize {
    ByteSize(10 << 20)
}
fn default_60m() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn one_u32() -> u32 {
    1
}

/// `[compression]` and `[server.compression]`: NGINX's `gzip`, `brotli` and
/// `zstd` directives under their NGINX names. Every key is optional so a
/// site's block sets only what differs from the top-level one (as NGINX
/// inherits directives); absent everywhere, the NGINX default applies, and
/// compression is off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSettings {
    /// Gzip responses on the fly (`gzip on`); default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<bool>,
    /// Media types compressed on the fly by every coding (`gzip_types`);
    /// `type/*` and `*` match groups; `text/html` is always included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_types: Option<Vec<String>>,
    /// Responses announced shorter than this stay as they are (`gzip_min_length`, default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_min_length: Option<ByteSize>,
    /// Gzip level 1..=9 (`gzip_comp_level`, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_comp_level: Option<i32>,
    /// Serve `FILE.gz` beside `FILE` to gzip clients (`gzip_static on`, standalone sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_static: Option<bool>,
    /// Brotli on the fly (`brotli on`, ngx_brotli); default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotli: Option<bool>,
    /// Brotli quality 0..=11 (`brotli_comp_level`, default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotli_comp_level: Option<i32>,
    /// Serve `FILE.br` to brotli clients (`brotli_static on`, standalone sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brotli_static: Option<bool>,
    /// Zstandard on the fly (`zstd on`, zstd-nginx-module); default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd: Option<bool>,
    /// Zstandard level 1..=19 (`zstd_comp_level`, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd_comp_level: Option<i32>,
    /// Serve `FILE.zst` to zstd clients (`zstd_static on`, standalone sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zstd_static: Option<bool>,
}
