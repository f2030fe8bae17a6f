//! The edge configuration file (`edge.toml`): its schema, its units and its checks.
//!
//! The schema is documented in `docs/edge.md`; keep the two in step.

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A configuration error, with the line it was found on when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid for the schema.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A byte size such as `"16k"` or `10485760`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A duration such as `"60m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// Parses `N[k|m|g]` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. \"16k\", \"10m\")"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses `N(ms|s|m|h|d)`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. \"10s\", \"60m\")"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h or d)")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => parse_size(&s).map(ByteSize).map_err(serde::de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "one")]
    workers: usize,
    #[serde(default = "default_connections")]
    worker_connections: usize,
    #[serde(default = "one")]
    worker_threads: usize,
    #[serde(default = "off")]
    access_log: String,
    #[serde(default = "default_header_timeout")]
    client_header_timeout: Dur,
    #[serde(default = "default_keepalive")]
    keepalive_timeout: Dur,
    #[serde(default = "default_header_buffers")]
    large_client_header_buffers: Spanned<ByteSize>,
    #[serde(default = "default_uri")]
    max_uri_length: usize,
    #[serde(default = "default_graceful")]
    graceful_timeout: Dur,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    shared: SharedConfig,
    #[serde(default)]
    server: Vec<Spanned<RawServer>>,
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
fn default_header_buffers() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(32 << 10))
}
fn default_uri() -> usize {
    8192
}
fn default_graceful() -> Dur {
    Dur(Duration::from_secs(10))
}

/// Where the docroot and the cache live.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
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

/// Where cross-worker state lives: `kind = "local"` (in-process, one index
/// per worker) or a memory-server spec (`smdish+unix:///..`,
/// `smuf+tcp://..?dir=..`, `smc:///dir`), see `docs/mem.md`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    /// `local` or a memory-server spec.
    #[serde(default = "local_kind")]
    pub kind: String,
    /// `conclave certs` directory with the edge identity (smdish, smuf).
    pub certs: Option<PathBuf>,
    /// The conclave's secret file (smc).
    pub secret_file: Option<PathBuf>,
}

fn local_kind() -> String {
    "local".into()
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            kind: local_kind(),
            certs: None,
            secret_file: None,
        }
    }
}

impl SharedConfig {
    /// True for the in-process kind.
    pub fn is_local(&self) -> bool {
        self.kind == "local"
    }
}

/// What a site does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serve files from `root`.
    Standalone,
    /// Caching reverse proxy to `proxy_pass`.
    Cache,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    #[serde(default)]
    server_name: Vec<String>,
    mode: Mode,
    root: Option<Spanned<PathBuf>>,
    proxy_pass: Option<Spanned<String>>,
    tls: Spanned<RawTls>,
    cache: Option<Spanned<RawCache>>,
    waf: Option<RawWaf>,
}

/// `[server.waf]`: a ModSecurity rule file (the subset in `docs/waf.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaf {
    rules: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Spanned<PathBuf>,
    key: Option<Spanned<PathBuf>>,
    keyserver: Option<Spanned<String>>,
    key_name: Option<String>,
    certs: Option<PathBuf>,
    #[serde(default = "default_protocols")]
    protocols: Spanned<Vec<String>>,
    #[serde(default = "yes")]
    session_resumption: bool,
}

fn default_protocols() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["TLSv1.2".into(), "TLSv1.3".into()])
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_cache_path")]
    path: PathBuf,
    #[serde(default = "default_zone")]
    keys_zone: Spanned<String>,
    #[serde(default = "default_max_size")]
    max_size: ByteSize,
    #[serde(default = "default_60m")]
    inactive: Dur,
    #[serde(default = "default_60m")]
    valid: Dur,
    #[serde(default = "one_u32")]
    min_uses: u32,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            path: default_cache_path(),
            keys_zone: default_zone(),
            max_size: default_max_size(),
            inactive: default_60m(),
            valid: default_60m(),
            min_uses: 1,
        }
    }
}

fn default_cache_path() -> PathBuf {
    "cache".into()
}
fn default_zone() -> Spanned<String> {
    Spanned::new(0..0, "ZONE_ONE:16k".into())
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

/// The validated configuration of an edge (all paths absolute or relative to the CWD).
#[derive(Clone, Debug)]
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
            || self.shared.kind != "local"
            || self
                .servers
                .iter()
                .any(|s| matches!(s.tls.key, KeyConfig::KeyServer { .. }))
    }
}

/// One site.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Listening address.
    pub listen: SocketAddr,
    /// Names (informational).
    pub server_name: Vec<String>,
    /// What it does.
    pub mode: Mode,
    /// Docroot (standalone).
    pub root: Option<PathBuf>,
    /// Origin `host:port` (cache).
    pub proxy_pass: Option<String>,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Cache settings (cache).
    pub cache: Option<CacheConfig>,
    /// WAF rule file, if any.
    pub waf: Option<PathBuf>,
}

/// Where the site's key comes from.
#[derive(Clone, Debug)]
pub enum KeyConfig {
    /// A PEM key file.
    File(PathBuf),
    /// The key server (keyless TLS): the key never enters the edge.
    KeyServer {
        /// Key server endpoint.
        endpoint: String,
        /// Name of the key in the key server.
        key_name: String,
        /// `conclave certs` directory with the edge identity.
        certs: PathBuf,
    },
}

/// TLS settings of a site.
#[derive(Clone, Debug)]
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
#[derive(Clone, Debug)]
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

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

impl EdgeConfig {
    /// Reads and validates a config file; errors name the line.
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<EdgeConfig, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, message: String| ConfigError::Invalid {
            path: path.into(),
            line: span
                .map(|s| {
                    if s.is_empty() && s.start == 0 {
                        0
                    } else {
                        line_of(text, s.start)
                    }
                })
                .unwrap_or(0),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let whole = Some(0..0);
        // With nextfs, `root` and cache `path` name directories inside the image.
        let in_image = matches!(raw.storage, StorageConfig::Nextfs { .. });
        let mut raw = raw;
        if let StorageConfig::Nextfs { server, certs } = &mut raw.storage {
            if let Err(e) = server.parse::<conclave_rpc::Endpoint>() {
                return Err(err(find_key(text, "server"), e.to_string()));
            }
            *certs = rel(certs);
        }
        if !raw.shared.is_local() {
            if let Err(e) = raw.shared.kind.parse::<conclave_mem::MemSpec>() {
                return Err(err(find_key(text, "kind"), format!("[shared] kind: {e}")));
            }
        }
        raw.shared.certs = raw.shared.certs.as_deref().map(rel);
        raw.shared.secret_file = raw.shared.secret_file.as_deref().map(rel);
        if raw.workers == 0 || raw.workers > 64 {
            return Err(err(
                find_key(text, "workers"),
                "workers must be between 1 and 64".into(),
            ));
        }
        if raw.worker_threads == 0 || raw.worker_threads > 64 {
            return Err(err(
                find_key(text, "worker_threads"),
                "worker_threads must be between 1 and 64".into(),
            ));
        }
        if raw.worker_connections == 0 {
            return Err(err(
                find_key(text, "worker_connections"),
                "worker_connections must be at least 1".into(),
            ));
        }
        let hb = raw.large_client_header_buffers.get_ref().0;
        if !(8192..=(1 << 20)).contains(&hb) {
            return Err(err(
                Some(raw.large_client_header_buffers.span()),
                "large_client_header_buffers must be between 8k and 1m".into(),
            ));
        }
        if raw.server.is_empty() {
            return Err(err(
                whole,
                "no [[server]] block: an edge needs at least one site".into(),
            ));
        }
        let mut servers = Vec::new();
        for s in raw.server {
            let s_span = s.span();
            let s = s.into_inner();
            let listen: SocketAddr = s.listen.get_ref().parse().map_err(|_| {
                err(
                    Some(s.listen.span()),
                    format!("listen {:?} is not an IP:port address", s.listen.get_ref()),
                )
            })?;
            if servers.iter().any(|o: &ServerConfig| o.listen == listen) {
                return Err(err(
                    Some(s.listen.span()),
                    format!("two servers listen on {listen}"),
                ));
            }
            let root = s.root.as_ref().map(|r| {
                if in_image {
                    r.get_ref().clone()
                } else {
                    rel(r.get_ref())
                }
            });
            let mut proxy_pass = None;
            let mut cache = None;
            match s.mode {
                Mode::Standalone => {
                    let Some(r) = &s.root else {
                        return Err(err(Some(s_span), "mode = \"standalone\" needs `root`".into()));
                    };
                    if !in_image && !rel(r.get_ref()).is_dir() {
                        return Err(err(
                            Some(r.span()),
                            format!("root {:?} is not a directory", r.get_ref()),
                        ));
                    }
                }
                Mode::Cache => {
                    let Some(p) = &s.proxy_pass else {
                        return Err(err(Some(s_span), "mode = \"cache\" needs `proxy_pass`".into()));
                    };
                    let hostport = p
                        .get_ref()
                        .strip_prefix("http://")
                        .map(|h| h.trim_end_matches('/'));
                    match hostport {
                        Some(h) if !h.is_empty() && !h.contains('/') && h.contains(':') => {
                            proxy_pass = Some(h.to_string())
                        }
                        _ => {
                            return Err(err(
                                Some(p.span()),
                                format!("proxy_pass {:?} must look like \"http://HOST:PORT\"", p.get_ref()),
                            ))
                        }
                    }
                    let (c, c_span) = match s.cache {
                        Some(c) => {
                            let sp = c.span();
                            (c.into_inner(), Some(sp))
                        }
                        None => (RawCache::default(), Some(s_span.clone())),
                    };
                    let zone = c.keys_zone.get_ref();
                    let zone_err = |m: &str| {
                        err(
                            Some(c.keys_zone.span())
                                .filter(|s| !s.is_empty())
                                .or(c_span.clone()),
                            m.into(),
                        )
                    };
                    let (name, size) = zone
                        .split_once(':')
                        .ok_or_else(|| zone_err("keys_zone must be NAME:SIZE, e.g. ZONE_ONE:16k"))?;
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(zone_err("keys_zone NAME must be letters, digits, '_' or '-'"));
                    }
                    let size = parse_size(size).map_err(|e| zone_err(&e))?;
                    if !(16 << 10..=64 << 20).contains(&size) {
                        return Err(zone_err("keys_zone SIZE must be between 16k and 64m"));
                    }
                    if c.min_uses == 0 {
                        return Err(err(c_span, "min_uses must be at least 1".into()));
                    }
                    cache = Some(CacheConfig {
                        path: if in_image { c.path.clone() } else { rel(&c.path) },
                        zone_name: name.to_string(),
                        zone_size: size as usize,
                        max_size: c.max_size.0,
                        inactive: c.inactive.0,
                        valid: c.valid.0,
                        min_uses: c.min_uses,
                    });
                }
            }
            let t_span = s.tls.span();
            let t = s.tls.into_inner();
            if !rel(t.certificate.get_ref()).is_file() {
                return Err(err(
                    Some(t.certificate.span()),
                    format!("certificate {:?} is not a file", t.certificate.get_ref()),
                ));
            }
            let key = match (&t.key, &t.keyserver) {
                (Some(k), None) => {
                    if !rel(k.get_ref()).is_file() {
                        return Err(err(
                            Some(k.span()),
                            format!("key {:?} is not a file", k.get_ref()),
                        ));
                    }
                    KeyConfig::File(rel(k.get_ref()))
                }
                (None, Some(ks)) => {
                    if let Err(e) = ks.get_ref().parse::<conclave_rpc::Endpoint>() {
                        return Err(err(Some(ks.span()), e.to_string()));
                    }
                    let Some(certs) = &t.certs else {
                        return Err(err(
                            Some(ks.span()),
                            "`keyserver` needs `certs` (the directory with the edge identity)".into(),
                        ));
                    };
                    KeyConfig::KeyServer {
                        endpoint: ks.get_ref().clone(),
                        key_name: t.key_name.clone().unwrap_or_else(|| "server".into()),
                        certs: rel(certs),
                    }
                }
                (Some(k), Some(_)) => {
                    return Err(err(
                        Some(k.span()),
                        "give either `key` or `keyserver`, not both".into(),
                    ))
                }
                (None, None) => return Err(err(Some(t_span), "[server.tls] needs `key`".into())),
            };
            let (mut tls12, mut tls13) = (false, false);
            for p in t.protocols.get_ref() {
                match p.as_str() {
                    "TLSv1.2" => tls12 = true,
                    "TLSv1.3" => tls13 = true,
                    other => {
                        return Err(err(
                            Some(t.protocols.span()),
                            format!("unknown protocol {other:?} (use \"TLSv1.2\", \"TLSv1.3\")"),
                        ))
                    }
                }
            }
            if !tls12 && !tls13 {
                return Err(err(
                    Some(t.protocols.span()).filter(|s| !s.is_empty()),
                    "protocols is empty".into(),
                ));
            }
            servers.push(ServerConfig {
                listen,
                server_name: s.server_name,
                mode: s.mode,
                root,
                proxy_pass,
                tls: TlsConfig {
                    certificate: rel(t.certificate.get_ref()),
                    key,
                    tls12,
                    tls13,
                    session_resumption: t.session_resumption,
                },
                cache,
                waf: match &s.waf {
                    None => None,
                    Some(w) => {
                        let p = rel(&w.rules);
                        if !p.is_file() {
                            return Err(err(
                                Some(s_span),
                                format!("waf rules {:?} is not a file", w.rules),
                            ));
                        }
                        Some(p)
                    }
                },
            });
        }
        let access_log = match raw.access_log.as_str() {
            "off" | "" => None,
            p => Some(rel(Path::new(p))),
        };
        Ok(EdgeConfig {
            source: path.to_path_buf(),
            workers: raw.workers,
            worker_connections: raw.worker_connections,
            worker_threads: raw.worker_threads,
            access_log,
            client_header_timeout: raw.client_header_timeout.0,
            keepalive_timeout: raw.keepalive_timeout.0,
            max_header_bytes: hb as usize,
            max_uri_length: raw.max_uri_length,
            graceful_timeout: raw.graceful_timeout.0,
            storage: raw.storage,
            shared: raw.shared,
            servers,
        })
    }
}

/// Span of a top-level `key =` line, for errors on plain values.
fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(off..off + line.len());
        }
        off += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_size("16k").unwrap(), 16384);
        assert_eq!(parse_size("10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("7").unwrap(), 7);
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("60m").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn names_the_line_of_a_bad_value() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("edge.toml");
        let text = "workers = 1\n\n[[server]]\nlisten = \"127.0.0.1:1\"\nmode = \"cachy\"\n";
        let e = EdgeConfig::parse(&cfg, text).unwrap_err().to_string();
        assert!(e.contains(":5:"), "{e}");
        let text = "workers = 1\n[[server]]\nlisten = \"nowhere\"\nmode = \"cache\"\nproxy_pass = \"http://127.0.0.1:1\"\n[server.tls]\ncertificate = \"x\"\nkey = \"y\"\n";
        let e = EdgeConfig::parse(&cfg, text).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("listen"), "{e}");
        let e = EdgeConfig::parse(&cfg, "workers = 0\n[[server]]\n")
            .unwrap_err()
            .to_string();
        // `[[server]]` (line 2) lacks `listen`: parsing fails there before
        // `workers = 0` (line 1) is validated.
        assert!(e.contains(":2:"), "{e}");
    }
}
