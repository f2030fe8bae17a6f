//! From the file as written ([`EdgeSettings`]) to the validated configuration
//! ([`EdgeConfig`]): one function per section, each naming the line of what it refuses.

use super::lines::{Key, Lines};
use super::schema::{
    CacheSettings, EdgeSettings, Mode, ServerSettings, SharedSettings, StorageSettings, TlsSettings,
};
use super::units::parse_size;
use super::validated::{
    CacheConfig, EdgeConfig, KeyConfig, ReqLimit, ServerConfig, SharedConfig, SiteConfig, StorageConfig,
    TlsConfig,
};
use super::ConfigError;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

type Span = Option<Range<usize>>;

/// What every check needs: the file (for errors and relative paths) and its spans.
struct Check<'a> {
    path: &'a Path,
    base: PathBuf,
    lines: &'a Lines<'a>,
    /// With nextfs storage, `root` and cache `path` name directories inside the image.
    in_image: bool,
}

impl Check<'_> {
    fn err(&self, span: Span, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.into(),
            line: self.lines.line_of(span),
            message: message.into(),
        }
    }

    fn at(&self, path: &[Key<'_>]) -> Span {
        self.lines.span(path)
    }

    /// A path relative to the config file's directory.
    fn rel(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A site path: inside the image with nextfs, else a host path.
    fn site_path(&self, p: &Path) -> PathBuf {
        if self.in_image {
            p.to_path_buf()
        } else {
            self.rel(p)
        }
    }
}

/// Validates `raw`, read from `path` whose text `lines` holds.
pub(super) fn validate(
    raw: &EdgeSettings,
    path: &Path,
    lines: &Lines<'_>,
) -> Result<EdgeConfig, ConfigError> {
    let c = Check {
        path,
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        lines,
        in_image: matches!(raw.storage, StorageSettings::Nextfs { .. }),
    };
    let storage = storage(&c, &raw.storage)?;
    let shared = shared(&c, &raw.shared)?;
    limits(&c, raw)?;
    if raw.server.is_empty() {
        return Err(c.err(Some(0..0), "no [[server]] block: an edge needs at least one site"));
    }
    let mut servers: Vec<ServerConfig> = Vec::new();
    for (i, s) in raw.server.iter().enumerate() {
        let listen = listen(&c, i, s)?;
        if servers.iter().any(|o| o.listen == listen) {
            return Err(c.err(
                c.at(&["server".into(), i.into(), "listen".into()]),
                format!("two servers listen on {listen}"),
            ));
        }
        servers.push(server(&c, i, s, listen)?);
    }
    let access_log = match raw.access_log.as_str() {
        "off" | "" => None,
        p => Some(c.rel(Path::new(p))),
    };
    Ok(EdgeConfig {
        source: path.to_path_buf(),
        workers: raw.workers,
        worker_connections: raw.worker_connections,
        worker_threads: raw.worker_threads,
        access_log,
        client_header_timeout: raw.client_header_timeout.0,
        keepalive_timeout: raw.keepalive_timeout.0,
        max_header_bytes: raw.large_client_header_buffers.0 as usize,
        max_uri_length: raw.max_uri_length,
        graceful_timeout: raw.graceful_timeout.0,
        client_body_timeout: raw.client_body_timeout.0,
        send_timeout: raw.send_timeout.0,
        http2_idle_timeout: raw.http2_idle_timeout.0,
        http2_max_concurrent_streams: raw.http2_max_concurrent_streams,
        limit_conn: (raw.limit_conn > 0).then_some(raw.limit_conn),
        limit_req: (raw.limit_req_rate > 0).then_some(ReqLimit {
            rate: raw.limit_req_rate,
            burst: raw.limit_req_burst,
        }),
        keyserver_timeout: raw.keyserver_timeout.0,
        storage_timeout: raw.storage_timeout.0,
        storage,
        shared,
        servers,
    })
}

/// `[storage]`: the file server's endpoint parsed once.
fn storage(c: &Check<'_>, s: &StorageSettings) -> Result<StorageConfig, ConfigError> {
    match s {
        StorageSettings::Host => Ok(StorageConfig::Host),
        StorageSettings::Nextfs { server, certs } => Ok(StorageConfig::Nextfs {
            server: server
                .parse()
                .map_err(|e| c.err(c.at(&["storage".into(), "server".into()]), format!("{e}")))?,
            certs: c.rel(certs),
        }),
    }
}

/// `[shared]`: `local` or a memory spec parsed once.
fn shared(c: &Check<'_>, s: &SharedSettings) -> Result<SharedConfig, ConfigError> {
    if s.kind == "local" {
        if s.ticket_secret_file.is_some() {
            return Err(c.err(
                c.at(&["shared".into(), "ticket_secret_file".into()]),
                "[shared] ticket_secret_file seals the ticket keys kept in a memory store; \
                 with kind = \"local\" they never leave the edge (remove it, or name a memory store)",
            ));
        }
        return Ok(SharedConfig::Local);
    }
    let spec = s.kind.parse().map_err(|e| {
        c.err(
            c.at(&["shared".into(), "kind".into()]),
            format!("[shared] kind: {e}"),
        )
    })?;
    Ok(SharedConfig::Mem {
        spec,
        certs: s.certs.as_deref().map(|p| c.rel(p)),
        secret_file: s.secret_file.as_deref().map(|p| c.rel(p)),
        ticket_secret_file: s.ticket_secret_file.as_deref().map(|p| c.rel(p)),
        deadlines: crate::shared::mem::MemDeadlines {
            connect: s.timeout.0,
            call: s.timeout.0,
            lock_wait: s.lock_wait.0,
            ..Default::default()
        },
    })
}

/// The process and connection limits at the top of the file.
fn limits(c: &Check<'_>, raw: &EdgeSettings) -> Result<(), ConfigError> {
    if raw.workers == 0 || raw.workers > 64 {
        return Err(c.err(c.at(&["workers".into()]), "workers must be between 1 and 64"));
    }
    if raw.worker_threads == 0 || raw.worker_threads > 64 {
        return Err(c.err(
            c.at(&["worker_threads".into()]),
            "worker_threads must be between 1 and 64",
        ));
    }
    if raw.worker_connections == 0 {
        return Err(c.err(
            c.at(&["worker_connections".into()]),
            "worker_connections must be at least 1",
        ));
    }
    if !(8192..=(1 << 20)).contains(&raw.large_client_header_buffers.0) {
        return Err(c.err(
            c.at(&["large_client_header_buffers".into()]),
            "large_client_header_buffers must be between 8k and 1m",
        ));
    }
    // A zero timeout would close every connection at once: refuse it by name.
    for (key, d) in [
        ("client_body_timeout", raw.client_body_timeout.0),
        ("send_timeout", raw.send_timeout.0),
        ("http2_idle_timeout", raw.http2_idle_timeout.0),
        ("keyserver_timeout", raw.keyserver_timeout.0),
        ("storage_timeout", raw.storage_timeout.0),
    ] {
        if d.is_zero() {
            return Err(c.err(c.at(&[key.into()]), format!("{key} must be more than 0s")));
        }
    }
    if raw.http2_max_concurrent_streams == 0 {
        return Err(c.err(
            c.at(&["http2_max_concurrent_streams".into()]),
            "http2_max_concurrent_streams must be at least 1",
        ));
    }
    if raw.limit_req_rate == 0 && raw.limit_req_burst > 0 {
        return Err(c.err(
            c.at(&["limit_req_burst".into()]),
            "limit_req_burst needs limit_req_rate (0 means no request limit)",
        ));
    }
    Ok(())
}

/// The `listen` address of the `i`th `[[server]]`.
fn listen(c: &Check<'_>, i: usize, s: &ServerSettings) -> Result<SocketAddr, ConfigError> {
    s.listen.parse().map_err(|_| {
        c.err(
            c.at(&["server".into(), i.into(), "listen".into()]),
            format!("listen {:?} is not an IP:port address", s.listen),
        )
    })
}

/// The rest of the `i`th `[[server]]` block, listening on `listen`.
fn server(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
    listen: SocketAddr,
) -> Result<ServerConfig, ConfigError> {
    let block = c.at(&["server".into(), i.into()]);
    let site = match s.mode {
        Mode::Standalone => standalone(c, i, s)?,
        Mode::Cache => cache_site(c, i, s)?,
    };
    let tls = tls(c, i, &s.tls)?;
    let waf = match &s.waf {
        None => None,
        Some(w) => {
            let p = c.rel(&w.rules);
            if !p.is_file() {
                return Err(c.err(block, format!("waf rules {:?} is not a file", w.rules)));
            }
            Some(p)
        }
    };
    Ok(ServerConfig {
        listen,
        server_name: s.server_name.clone(),
        site,
        tls,
        waf,
    })
}

/// `mode = "standalone"`: a docroot that exists (on the host; nextfs checks at start).
fn standalone(c: &Check<'_>, i: usize, s: &ServerSettings) -> Result<SiteConfig, ConfigError> {
    let Some(r) = &s.root else {
        return Err(c.err(
            c.at(&["server".into(), i.into()]),
            "mode = \"standalone\" needs `root`",
        ));
    };
    if !c.in_image && !c.rel(r).is_dir() {
        return Err(c.err(
            c.at(&["server".into(), i.into(), "root".into()]),
            format!("root {r:?} is not a directory"),
        ));
    }
    Ok(SiteConfig::Standalone { root: c.site_path(r) })
}

/// `mode = "cache"`: `proxy_pass` as `host:port`, and `[server.cache]`.
fn cache_site(c: &Check<'_>, i: usize, s: &ServerSettings) -> Result<SiteConfig, ConfigError> {
    let block = c.at(&["server".into(), i.into()]);
    let Some(p) = &s.proxy_pass else {
        return Err(c.err(block, "mode = \"cache\" needs `proxy_pass`"));
    };
    let origin = match p.strip_prefix("http://").map(|h| h.trim_end_matches('/')) {
        Some(h) if !h.is_empty() && !h.contains('/') && h.contains(':') => h.to_string(),
        _ => {
            return Err(c.err(
                c.at(&["server".into(), i.into(), "proxy_pass".into()]),
                format!("proxy_pass {p:?} must look like \"http://HOST:PORT\""),
            ))
        }
    };
    let cache = match &s.cache {
        Some(k) => cache(c, i, k, c.at(&["server".into(), i.into(), "cache".into()]))?,
        None => cache(c, i, &CacheSettings::default(), block)?,
    };
    Ok(SiteConfig::Cache { origin, cache })
}

/// `[server.cache]`; `c_span` is the block (or the site when absent).
fn cache(c: &Check<'_>, i: usize, k: &CacheSettings, c_span: Span) -> Result<CacheConfig, ConfigError> {
    let zone_err = |m: &str| {
        let at = c
            .at(&["server".into(), i.into(), "cache".into(), "keys_zone".into()])
            .filter(|s| !s.is_empty())
            .or(c_span.clone());
        c.err(at, m)
    };
    let (name, size) = k
        .keys_zone
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
    if k.min_uses == 0 {
        return Err(c.err(c_span, "min_uses must be at least 1"));
    }
    Ok(CacheConfig {
        path: c.site_path(&k.path),
        zone_name: name.to_string(),
        zone_size: size as usize,
        max_size: k.max_size.0,
        inactive: k.inactive.0,
        valid: k.valid.0,
        min_uses: k.min_uses,
    })
}

/// `[server.tls]`: the certificate, the key source, the protocols.
fn tls(c: &Check<'_>, i: usize, t: &TlsSettings) -> Result<TlsConfig, ConfigError> {
    let here = |k: &'static str| c.at(&["server".into(), i.into(), "tls".into(), k.into()]);
    if !c.rel(&t.certificate).is_file() {
        return Err(c.err(
            here("certificate"),
            format!("certificate {:?} is not a file", t.certificate),
        ));
    }
    let key = key(c, i, t)?;
    let (mut tls12, mut tls13) = (false, false);
    for p in &t.protocols {
        match p.as_str() {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => {
                return Err(c.err(
                    here("protocols"),
                    format!("unknown protocol {other:?} (use \"TLSv1.2\", \"TLSv1.3\")"),
                ))
            }
        }
    }
    if !tls12 && !tls13 {
        return Err(c.err(here("protocols").filter(|s| !s.is_empty()), "protocols is empty"));
    }
    Ok(TlsConfig {
        certificate: c.rel(&t.certificate),
        key,
        tls12,
        tls13,
        session_resumption: t.session_resumption,
    })
}

/// Where the key is: exactly one of `key` (a file) and `keyserver` (+ `certs`).
fn key(c: &Check<'_>, i: usize, t: &TlsSettings) -> Result<KeyConfig, ConfigError> {
    let here = |k: &'static str| c.at(&["server".into(), i.into(), "tls".into(), k.into()]);
    match (&t.key, &t.keyserver) {
        (Some(k), None) => {
            if !c.rel(k).is_file() {
                return Err(c.err(here("key"), format!("key {k:?} is not a file")));
            }
            Ok(KeyConfig::File(c.rel(k)))
        }
        (None, Some(ks)) => {
            let endpoint = ks.parse().map_err(|e| c.err(here("keyserver"), format!("{e}")))?;
            let Some(certs) = &t.certs else {
                return Err(c.err(
                    here("keyserver"),
                    "`keyserver` needs `certs` (the directory with the edge identity)",
                ));
            };
            Ok(KeyConfig::KeyServer {
                endpoint,
                key_name: t.key_name.clone().unwrap_or_else(|| "server".into()),
                certs: c.rel(certs),
            })
        }
        (Some(_), Some(_)) => Err(c.err(here("key"), "give either `key` or `keyserver`, not both")),
        (None, None) => Err(c.err(
            c.at(&["server".into(), i.into(), "tls".into()]),
            "[server.tls] needs `key`",
        )),
    }
}
