//! From the file as written ([`EdgeSettings`]) to the validated configuration
//! ([`EdgeConfig`]): one function per section, each naming the line of what it refuses.

use super::lines::{Key, Lines};
use super::schema::TicketSource;
use super::schema::{
    AdminSettings, CacheSettings, CertificateSettings, CompressionSettings, EdgeSettings, Mode,
    ServerSettings, SharedSettings, StorageSettings, TlsSettings, UpstreamSettings,
};
use super::units::parse_size;
use super::validated::FleetTicketsConfig;
use super::validated::{
    AdminConfig, CacheConfig, CertConfig, CompressionConfig, EdgeConfig, ErrorLog, KeyConfig,
    OriginTlsConfig, ProxyConfig, ReqLimit, ServerConfig, SharedConfig, SiteConfig, StorageConfig, TlsConfig,
    UpstreamConfig, UpstreamServerConfig,
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

/// `[server.waf] body_limit` when not set: enough for forms and API bodies, small enough to buffer.
const DEFAULT_WAF_BODY_LIMIT: u64 = 128 * 1024;

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
    let fleet_tickets = fleet_tickets(&c, raw)?;
    limits(&c, raw)?;
    if raw.server.is_empty() {
        return Err(c.err(Some(0..0), "no [[server]] block: an edge needs at least one site"));
    }
    let mut servers: Vec<ServerConfig> = Vec::new();
    for (i, s) in raw.server.iter().enumerate() {
        let listen = listen(&c, i, s)?;
        shares_listen(&c, i, s, listen, &servers)?;
        let mut site = server(&c, i, s, listen, &raw.upstream)?;
        site.compression = compression(&c, i, raw.compression.as_ref(), s)?;
        servers.push(site);
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
        keyless_handshake: raw.keyless_handshake,
        waf_verdict_cache: raw.waf_verdict_cache,
        storage_timeout: raw.storage_timeout.0,
        storage,
        shared,
        admin: admin(&c, raw.admin.as_ref(), &servers)?,
        servers,
        access_log_format: raw.access_log_format,
        error_log: error_log(&c, &raw.error_log),
        error_log_level: raw.error_log_level,
        pid_file: raw.pid_file.as_deref().map(|p| c.rel(p)),
        fleet_tickets,
    })
}

/// `error_log`: `off`, `stderr` or a file relative to the config.
fn error_log(c: &Check<'_>, raw: &str) -> ErrorLog {
    match raw {
        "off" | "" => ErrorLog::Off,
        "stderr" => ErrorLog::Stderr,
        p => ErrorLog::File(c.rel(Path::new(p))),
    }
}

/// `[admin]`: its address parsed; off loopback only with mTLS, since
/// `/metrics` tells who the sites are and how loaded they are.
fn admin(
    c: &Check<'_>,
    raw: Option<&AdminSettings>,
    servers: &[ServerConfig],
) -> Result<Option<AdminConfig>, ConfigError> {
    let Some(a) = raw else { return Ok(None) };
    let at = c.at(&["admin".into(), "listen".into()]);
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        c.err(
            at.clone(),
            format!("[admin] listen {:?} is not an IP:port", a.listen),
        )
    })?;
    if !listen.ip().is_loopback() && a.certs.is_none() {
        return Err(c.err(
            at,
            format!(
                "[admin] listen {listen} is not loopback: give certs = DIR for mTLS, or listen on 127.0.0.1"
            ),
        ));
    }
    if servers.iter().any(|s| s.listen == listen) {
        return Err(c.err(at, format!("[admin] listen {listen} is also a [[server]] listen")));
    }
    Ok(Some(AdminConfig {
        listen,
        certs: a.certs.as_deref().map(|p| c.rel(p)),
    }))
}

/// `[shared] ticket_source = "keyserver"`: its key servers and identity.
fn fleet_tickets(c: &Check<'_>, raw: &EdgeSettings) -> Result<Option<FleetTicketsConfig>, ConfigError> {
    let s = &raw.shared;
    let at = |k: &'static str| c.at(&["shared".into(), k.into()]);
    if s.ticket_source == TicketSource::Edge {
        if !s.ticket_keyservers.is_empty() {
            return Err(c.err(
                at("ticket_keyservers"),
                "[shared] ticket_keyservers needs ticket_source = \"keyserver\"",
            ));
        }
        return Ok(None);
    }
    if s.ticket_secret_file.is_some() {
        return Err(c.err(
            at("ticket_secret_file"),
            "[shared] ticket_secret_file seals edge-made ticket keys; with ticket_source = \"keyserver\" \
             the keys come from the key servers (remove it)",
        ));
    }
    if s.ticket_keyservers.is_empty() {
        return Err(c.err(
            at("ticket_source"),
            "ticket_source = \"keyserver\" needs [shared] ticket_keyservers = [\"tcp://HOST:PORT\", ...]",
        ));
    }
    let Some(certs) = &s.certs else {
        return Err(c.err(
            at("ticket_source"),
            "ticket_source = \"keyserver\" needs [shared] certs (the directory with the edge identity)",
        ));
    };
    let endpoints = endpoints(c, at("ticket_keyservers"), &s.ticket_keyservers)?;
    if s.ticket_refresh.0 < std::time::Duration::from_secs(1) {
        return Err(c.err(at("ticket_refresh"), "ticket_refresh must be at least 1s"));
    }
    Ok(Some(FleetTicketsConfig {
        endpoints,
        certs: c.rel(certs),
        refresh: s.ticket_refresh.0,
        timeout: raw.keyserver_timeout.0,
    }))
}

/// A list of key-server endpoints, each parsed once, none twice.
fn endpoints(c: &Check<'_>, span: Span, list: &[String]) -> Result<Vec<conclave_rpc::Endpoint>, ConfigError> {
    let mut out: Vec<conclave_rpc::Endpoint> = Vec::new();
    for e in list {
        let ep: conclave_rpc::Endpoint = e.parse().map_err(|err| c.err(span.clone(), format!("{err}")))?;
        if out.contains(&ep) {
            return Err(c.err(span, format!("key server {ep} is listed twice")));
        }
        out.push(ep);
    }
    Ok(out)
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
    if raw.waf_verdict_cache > conclave_waf::MAX_VERDICT_CACHE {
        return Err(c.err(
            c.at(&["waf_verdict_cache".into()]),
            format!(
                "waf_verdict_cache must be at most {} entries per worker thread (0 turns it off)",
                conclave_waf::MAX_VERDICT_CACHE
            ),
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

/// Sites on one `listen` are told apart by SNI: the `i`th may join the
/// earlier ones there only with names none of them has, and one default at most.
fn shares_listen(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
    listen: SocketAddr,
    earlier: &[ServerConfig],
) -> Result<(), ConfigError> {
    let here = |k: &'static str| c.at(&["server".into(), i.into(), k.into()]);
    let same: Vec<&ServerConfig> = earlier.iter().filter(|o| o.listen == listen).collect();
    if same.is_empty() {
        return Ok(());
    }
    // A site without names is reached only as the address's default (a
    // catch-all, as an NGINX `server` without `server_name`).
    let unnamed_before = same.iter().any(|o| o.server_name.is_empty());
    if s.server_name.is_empty() && (unnamed_before || !s.default_server) {
        return Err(c.err(
            here("listen"),
            format!(
                "two servers listen on {listen}: sites sharing an address need `server_name` to be                  told apart by SNI (one without it may be the catch-all, with default_server = true)"
            ),
        ));
    }
    if unnamed_before && s.default_server {
        return Err(c.err(
            here("default_server"),
            format!("two servers on {listen} are default_server (the one without server_name is)"),
        ));
    }
    for n in &s.server_name {
        if same
            .iter()
            .any(|o| o.server_name.iter().any(|m| m.eq_ignore_ascii_case(n)))
        {
            return Err(c.err(
                here("server_name"),
                format!("two servers listen on {listen} with server_name {n:?}"),
            ));
        }
    }
    if s.default_server && same.iter().any(|o| o.default_server) {
        return Err(c.err(
            here("default_server"),
            format!("two servers on {listen} are default_server"),
        ));
    }
    Ok(())
}

/// `server_name`: host names, lower-cased, each exact or `*.` and a domain.
fn server_names(c: &Check<'_>, i: usize, names: &[String]) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .map(|n| {
            let lower = n.trim().to_ascii_lowercase();
            let rest = lower.strip_prefix("*.").unwrap_or(&lower);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if rest.split('.').all(label_ok) {
                Ok(lower)
            } else {
                Err(c.err(
                    c.at(&["server".into(), i.into(), "server_name".into()]),
                    format!("server_name {n:?} is not a host name (a.example, or *.example for every name under example)"),
                ))
            }
        })
        .collect()
}

/// `add_header`: header names and values as HTTP allows them.
fn add_headers(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let here = || c.at(&["server".into(), i.into(), "add_header".into()]);
    s.add_header
        .iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| c.err(here(), format!("add_header: {k:?} is not a header name")))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| c.err(here(), format!("add_header {k}: {v:?} is not a header value")))?;
            Ok((name, value))
        })
        .collect()
}

/// The rest of the `i`th `[[server]]` block, listening on `listen`.
fn server(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
    listen: SocketAddr,
    upstreams: &[UpstreamSettings],
) -> Result<ServerConfig, ConfigError> {
    let block = c.at(&["server".into(), i.into()]);
    let site = match s.mode {
        Mode::Standalone => standalone(c, i, s)?,
        Mode::Cache => cache_site(c, i, s, upstreams)?,
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
        server_name: server_names(c, i, &s.server_name)?,
        site,
        tls,
        waf,
        waf_body_limit: s
            .waf
            .as_ref()
            .and_then(|w| w.body_limit)
            .map_or(DEFAULT_WAF_BODY_LIMIT, |b| b.0),
        client_max_body_size: s
            .client_max_body_size
            .map_or(DEFAULT_CLIENT_MAX_BODY_SIZE, |b| b.0),
        compression: CompressionConfig::default(),
        add_headers: add_headers(c, i, s)?,
        server_tokens: s.server_tokens,
        default_server: s.default_server,
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

/// `mode = "cache"`: `proxy_pass` and the proxying keys, and `[server.cache]`.
fn cache_site(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
    upstreams: &[UpstreamSettings],
) -> Result<SiteConfig, ConfigError> {
    let block = c.at(&["server".into(), i.into()]);
    let proxy = proxy(c, i, s, upstreams)?;
    let cache = match &s.cache {
        Some(k) => cache(c, i, k, c.at(&["server".into(), i.into(), "cache".into()]))?,
        None => cache(c, i, &CacheSettings::default(), block)?,
    };
    Ok(SiteConfig::Cache {
        proxy: Box::new(proxy),
        cache,
    })
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
    let here = |key: &'static str| {
        c.at(&["server".into(), i.into(), "cache".into(), key.into()])
            .filter(|s| !s.is_empty())
            .or(c_span.clone())
    };
    let key = k.key.parse().map_err(|e| c.err(here("key"), format!("{e}")))?;
    let use_stale = crate::cache::freshness::UseStale::parse(&k.use_stale)
        .map_err(|e| c.err(here("use_stale"), format!("{e}")))?;
    let purge_allow = k
        .purge_allow
        .iter()
        .map(|a| a.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| c.err(here("purge_allow"), format!("{e}")))?;
    Ok(CacheConfig {
        path: c.site_path(&k.path),
        zone_name: name.to_string(),
        zone_size: size as usize,
        max_size: k.max_size.0,
        inactive: k.inactive.0,
        valid: Some(k.valid.0).filter(|v| !v.is_zero()),
        min_uses: k.min_uses,
        key,
        use_stale,
        background_update: k.background_update,
        lock_timeout: k.lock_timeout.0,
        purge_allow,
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
    let ocsp_staple = match &t.ocsp_staple {
        Some(p) => Some(readable_file(c, here("ocsp_staple"), "ocsp_staple", p)?),
        None => None,
    };
    let ciphers = cipher_suites(c, here("ciphers"), &t.ciphers, tls12, tls13)?;
    let curves = kx_groups(c, here("curves"), &t.curves)?;
    let certificates = t
        .certificates
        .iter()
        .enumerate()
        .map(|(j, e)| extra_certificate(c, i, j, e, t.certs.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TlsConfig {
        certificate: c.rel(&t.certificate),
        key,
        tls12,
        tls13,
        session_resumption: t.session_resumption,
        ocsp_staple,
        ciphers,
        prefer_server_ciphers: t.prefer_server_ciphers,
        curves,
        certificates,
    })
}

/// `p` relative to the config, refused (at `span`, naming `what`) unless it is a file.
fn readable_file(c: &Check<'_>, span: Span, what: &str, p: &Path) -> Result<PathBuf, ConfigError> {
    let full = c.rel(p);
    if !full.is_file() {
        return Err(c.err(span, format!("{what} {p:?} is not a file")));
    }
    Ok(full)
}

/// The `j`th `[[server.tls.certificates]]` of site `i`: a certificate and
/// exactly one of `key` and `keyserver`; `certs` defaults to `[server.tls]`'s.
fn extra_certificate(
    c: &Check<'_>,
    i: usize,
    j: usize,
    e: &CertificateSettings,
    tls_certs: Option<&Path>,
) -> Result<CertConfig, ConfigError> {
    let here = |k: &'static str| {
        c.at(&[
            "server".into(),
            i.into(),
            "tls".into(),
            "certificates".into(),
            j.into(),
            k.into(),
        ])
    };
    let block = c.at(&[
        "server".into(),
        i.into(),
        "tls".into(),
        "certificates".into(),
        j.into(),
    ]);
    let certificate = readable_file(c, here("certificate"), "certificate", &e.certificate)?;
    let key = match (&e.key, &e.keyserver) {
        (Some(k), None) => KeyConfig::File(readable_file(c, here("key"), "key", k)?),
        (None, Some(ks)) => {
            let endpoint = ks
                .parse()
                .map_err(|err| c.err(here("keyserver"), format!("{err}")))?;
            let Some(certs) = e.certs.as_deref().or(tls_certs) else {
                return Err(c.err(
                    here("keyserver"),
                    "`keyserver` needs `certs` (the directory with the edge identity), here or in [server.tls]",
                ));
            };
            KeyConfig::KeyServer {
                endpoint,
                key_name: e.key_name.clone().unwrap_or_else(|| "server".into()),
                certs: c.rel(certs),
                // One endpoint: fail-over (`keyservers`) is a `[server.tls]` key.
                fallbacks: Vec::new(),
            }
        }
        (Some(_), Some(_)) => {
            return Err(c.err(here("key"), "give either `key` or `keyserver`, not both"));
        }
        (None, None) => {
            return Err(c.err(block, "[[server.tls.certificates]] needs `key` or `keyserver`"));
        }
    };
    let ocsp_staple = match &e.ocsp_staple {
        Some(p) => Some(readable_file(c, here("ocsp_staple"), "ocsp_staple", p)?),
        None => None,
    };
    Ok(CertConfig {
        certificate,
        key,
        ocsp_staple,
    })
}

/// `ciphers`: rustls suite names (any case), each known to the provider;
/// every protocol left on keeps at least one suite, or no client could connect with it.
fn cipher_suites(
    c: &Check<'_>,
    span: Span,
    names: &[String],
    tls12: bool,
    tls13: bool,
) -> Result<Vec<rustls::CipherSuite>, ConfigError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let known = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
    let mut out = Vec::new();
    for n in names {
        let Some(s) = known
            .iter()
            .find(|s| format!("{:?}", s.suite()).eq_ignore_ascii_case(n.trim()))
        else {
            let list: Vec<String> = known.iter().map(|s| format!("{:?}", s.suite())).collect();
            return Err(c.err(
                span,
                format!("ciphers: unknown cipher suite {n:?} (known: {})", list.join(", ")),
            ));
        };
        out.push(s.suite());
    }
    let has = |v: &'static rustls::SupportedProtocolVersion| {
        known.iter().any(|s| out.contains(&s.suite()) && s.version() == v)
    };
    for (on, v, name) in [
        (tls12, &rustls::version::TLS12, "TLSv1.2"),
        (tls13, &rustls::version::TLS13, "TLSv1.3"),
    ] {
        if on && !has(v) {
            return Err(c.err(
                span,
                format!("ciphers: no {name} suite, but protocols has {name} (add one, or remove {name})"),
            ));
        }
    }
    Ok(out)
}

/// `curves`: rustls key-exchange group names (any case), each known to the provider.
fn kx_groups(c: &Check<'_>, span: Span, names: &[String]) -> Result<Vec<rustls::NamedGroup>, ConfigError> {
    let known = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
    names
        .iter()
        .map(|n| {
            known
                .iter()
                .map(|g| g.name())
                .find(|g| format!("{g:?}").eq_ignore_ascii_case(n.trim()))
                .ok_or_else(|| {
                    let list: Vec<String> = known.iter().map(|g| format!("{:?}", g.name())).collect();
                    c.err(
                        span.clone(),
                        format!("curves: unknown group {n:?} (known: {})", list.join(", ")),
                    )
                })
        })
        .collect()
}

/// Where the key is: exactly one of `key` (a file) and `keyserver` (+ `certs`).
fn key(c: &Check<'_>, i: usize, t: &TlsSettings) -> Result<KeyConfig, ConfigError> {
    let here = |k: &'static str| c.at(&["server".into(), i.into(), "tls".into(), k.into()]);
    if !t.keyservers.is_empty() {
        if t.keyserver.is_some() {
            return Err(c.err(
                here("keyservers"),
                "give either `keyserver` or `keyservers`, not both",
            ));
        }
        if t.key.is_some() {
            return Err(c.err(here("key"), "give either `key` or `keyservers`, not both"));
        }
        let mut all = endpoints(c, here("keyservers"), &t.keyservers)?;
        let Some(certs) = &t.certs else {
            return Err(c.err(
                here("keyservers"),
                "`keyservers` needs `certs` (the directory with the edge identity)",
            ));
        };
        let endpoint = all.remove(0);
        return Ok(KeyConfig::KeyServer {
            endpoint,
            key_name: t.key_name.clone().unwrap_or_else(|| "server".into()),
            certs: c.rel(certs),
            fallbacks: all,
        });
    }
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
                fallbacks: Vec::new(),
            })
        }
        (Some(_), Some(_)) => Err(c.err(here("key"), "give either `key` or `keyserver`, not both")),
        (None, None) => Err(c.err(
            c.at(&["server".into(), i.into(), "tls".into()]),
            "[server.tls] needs `key`",
        )),
    }
}

/// A site's compression: each key of its `[server.compression]`, else of the
/// top-level `[compression]`, else NGINX's default.
fn compression(
    c: &Check<'_>,
    i: usize,
    top: Option<&CompressionSettings>,
    s: &ServerSettings,
) -> Result<CompressionConfig, ConfigError> {
    let own = s.compression.as_ref();
    fn pick<T: Clone>(
        own: Option<&CompressionSettings>,
        top: Option<&CompressionSettings>,
        f: impl Fn(&CompressionSettings) -> &Option<T>,
    ) -> Option<T> {
        own.and_then(|o| f(o).clone())
            .or_else(|| top.and_then(|t| f(t).clone()))
    }
    // The line of a key: the site's own when it sets it, else the top-level one.
    let at = |key: &'static str, own_set: bool| {
        if own_set {
            c.at(&["server".into(), i.into(), "compression".into(), key.into()])
        } else {
            c.at(&["compression".into(), key.into()])
        }
    };
    let d = CompressionConfig::default();
    let level = |key: &'static str,
                 f: fn(&CompressionSettings) -> &Option<i32>,
                 range: std::ops::RangeInclusive<i32>,
                 default: i32| {
        match pick(own, top, f) {
            None => Ok(default),
            Some(v) if range.contains(&v) => Ok(v),
            Some(v) => Err(c.err(
                at(key, own.is_some_and(|o| f(o).is_some())),
                format!(
                    "{key} = {v}: must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    };
    let gzip_level = level("gzip_comp_level", |s| &s.gzip_comp_level, 1..=9, d.gzip_level)?;
    let brotli_level = level(
        "brotli_comp_level",
        |s| &s.brotli_comp_level,
        0..=11,
        d.brotli_level,
    )?;
    let zstd_level = level("zstd_comp_level", |s| &s.zstd_comp_level, 1..=19, d.zstd_level)?;
    let types = match pick(own, top, |s| &s.gzip_types) {
        None => d.types,
        Some(list) => {
            let here = at("gzip_types", own.is_some_and(|o| o.gzip_types.is_some()));
            let mut types = Vec::with_capacity(list.len() + 1);
            for t in &list {
                let t = t.trim().to_ascii_lowercase();
                let ok = t == "*"
                    || t.split_once('/').is_some_and(|(a, b)| {
                        let token = |x: &str| {
                            !x.is_empty() && x.bytes().all(|b| b.is_ascii_graphic() && !b"/;,\"".contains(&b))
                        };
                        token(a) && (b == "*" || token(b))
                    });
                if !ok {
                    return Err(c.err(
                        here,
                        format!("gzip_types: {t:?} is not a media type (TYPE/SUBTYPE, TYPE/* or *)"),
                    ));
                }
                types.push(t);
            }
            // As in NGINX, text/html is always compressible.
            types.push("text/html".into());
            types
        }
    };
    // Siblings are files of a docroot; a cache site has none. A top-level
    // key meant for the standalone sites is not an error there.
    let standalone = s.mode == Mode::Standalone;
    let sibling = |key: &'static str, f: fn(&CompressionSettings) -> &Option<bool>| {
        if !standalone && own.is_some_and(|o| *f(o) == Some(true)) {
            return Err(c.err(
                at(key, true),
                format!("{key} serves files beside a docroot: it needs mode = \"standalone\""),
            ));
        }
        Ok(standalone && pick(own, top, f).unwrap_or(false))
    };
    let gzip_static = sibling("gzip_static", |s| &s.gzip_static)?;
    let brotli_static = sibling("brotli_static", |s| &s.brotli_static)?;
    let zstd_static = sibling("zstd_static", |s| &s.zstd_static)?;
    Ok(CompressionConfig {
        gzip: pick(own, top, |s| &s.gzip).unwrap_or(d.gzip),
        brotli: pick(own, top, |s| &s.brotli).unwrap_or(d.brotli),
        zstd: pick(own, top, |s| &s.zstd).unwrap_or(d.zstd),
        types,
        min_length: pick(own, top, |s| &s.gzip_min_length).map_or(d.min_length, |b| b.0),
        gzip_level,
        brotli_level,
        zstd_level,
        gzip_static,
        brotli_static,
        zstd_static,
    })
}

// ---- Proxying (issue 14): `proxy_pass`, `[[upstream]]`, `proxy_*` keys ----

/// NGINX's `client_max_body_size` default.
pub(super) const DEFAULT_CLIENT_MAX_BODY_SIZE: u64 = 1 << 20;
/// NGINX's default for `proxy_connect_timeout`, `proxy_read_timeout` and `proxy_send_timeout`.
const DEFAULT_PROXY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `proxy_pass` with its upstream group, timeouts, TLS and `proxy_set_header`.
fn proxy(
    c: &Check<'_>,
    i: usize,
    s: &ServerSettings,
    upstreams: &[UpstreamSettings],
) -> Result<ProxyConfig, ConfigError> {
    let here = |k: &'static str| c.at(&["server".into(), i.into(), k.into()]);
    let Some(p) = &s.proxy_pass else {
        return Err(c.err(
            c.at(&["server".into(), i.into()]),
            "mode = \"cache\" needs `proxy_pass`",
        ));
    };
    let bad = || {
        c.err(
            here("proxy_pass"),
            format!(
                "proxy_pass {p:?} must be HOST:PORT, http://HOST:PORT, https://HOST:PORT or http(s)://NAME of an [[upstream]]"
            ),
        )
    };
    let (https, rest) = if let Some(r) = p.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = p.strip_prefix("http://") {
        (false, r)
    } else {
        (false, p.as_str())
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let servers = match upstreams.iter().position(|u| u.name == host) {
        Some(u) => upstream_servers(c, u, &upstreams[u])?,
        None if host_port(host) => vec![UpstreamServerConfig {
            address: host.to_string(),
            max_fails: 1,
            fail_timeout: std::time::Duration::from_secs(10),
        }],
        None => return Err(bad()),
    };
    let tls = if https {
        let verify = s.proxy_ssl_verify.unwrap_or(true);
        let trusted = s.proxy_ssl_trusted_certificate.as_ref().map(|t| c.rel(t));
        match &trusted {
            Some(t) if !t.is_file() => {
                return Err(c.err(
                    here("proxy_ssl_trusted_certificate"),
                    format!("proxy_ssl_trusted_certificate {t:?} is not a file"),
                ))
            }
            None if verify => {
                return Err(c.err(
                    here("proxy_pass"),
                    "an https proxy_pass with proxy_ssl_verify on needs proxy_ssl_trusted_certificate (the CA of the origin)",
                ))
            }
            _ => {}
        }
        let name = s
            .proxy_ssl_name
            .clone()
            .unwrap_or_else(|| strip_port(host).to_string());
        if rustls_pki_types::ServerName::try_from(name.clone()).is_err() {
            return Err(c.err(
                here("proxy_ssl_name"),
                format!("proxy_ssl_name {name:?} is not a DNS name or IP address"),
            ));
        }
        Some(OriginTlsConfig {
            trusted_certificate: trusted,
            server_name: name,
            verify,
        })
    } else {
        let given = [
            (
                "proxy_ssl_trusted_certificate",
                s.proxy_ssl_trusted_certificate.is_some(),
            ),
            ("proxy_ssl_name", s.proxy_ssl_name.is_some()),
            ("proxy_ssl_verify", s.proxy_ssl_verify.is_some()),
        ];
        if let Some((k, _)) = given.iter().find(|(_, set)| *set) {
            return Err(c.err(here(k), format!("{k} needs an https:// proxy_pass")));
        }
        None
    };
    let mut set_headers = Vec::new();
    for (k, v) in &s.proxy_set_header {
        let name = http::HeaderName::from_bytes(k.as_bytes());
        let value = http::HeaderValue::from_str(v);
        match (name, value) {
            (Ok(n), Ok(v)) => set_headers.push((n, v)),
            _ => {
                return Err(c.err(
                    here("proxy_set_header"),
                    format!("proxy_set_header {k:?} = {v:?} is not a valid header"),
                ))
            }
        }
    }
    let timeout = |d: Option<super::Dur>, k: &'static str| -> Result<std::time::Duration, ConfigError> {
        let d = d.map_or(DEFAULT_PROXY_TIMEOUT, |d| d.0);
        if d.is_zero() {
            return Err(c.err(here(k), format!("{k} must be above 0")));
        }
        Ok(d)
    };
    Ok(ProxyConfig {
        upstream: UpstreamConfig {
            name: host.to_string(),
            tls,
            servers,
            connect_timeout: timeout(s.proxy_connect_timeout, "proxy_connect_timeout")?,
            read_timeout: timeout(s.proxy_read_timeout, "proxy_read_timeout")?,
            send_timeout: timeout(s.proxy_send_timeout, "proxy_send_timeout")?,
        },
        set_headers,
    })
}

/// The servers of the `u`th `[[upstream]]`.
fn upstream_servers(
    c: &Check<'_>,
    u: usize,
    up: &UpstreamSettings,
) -> Result<Vec<UpstreamServerConfig>, ConfigError> {
    if up.server.is_empty() {
        return Err(c.err(
            c.at(&["upstream".into(), u.into()]),
            format!("upstream {:?} has no [[upstream.server]]", up.name),
        ));
    }
    up.server
        .iter()
        .enumerate()
        .map(|(j, s)| {
            if !host_port(&s.address) {
                return Err(c.err(
                    c.at(&[
                        "upstream".into(),
                        u.into(),
                        "server".into(),
                        j.into(),
                        "address".into(),
                    ]),
                    format!("upstream server address {:?} must be HOST:PORT", s.address),
                ));
            }
            Ok(UpstreamServerConfig {
                address: s.address.clone(),
                max_fails: s.max_fails,
                fail_timeout: s.fail_timeout.0,
            })
        })
        .collect()
}

/// `HOST:PORT` with a numeric port (`[v6]:port` too).
fn host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// `HOST` of `HOST[:PORT]`, without the brackets of an IPv6 literal.
fn strip_port(s: &str) -> &str {
    let h = if host_port(s) {
        s.rsplit_once(':').map_or(s, |(h, _)| h)
    } else {
        s
    };
    h.trim_start_matches('[').trim_end_matches(']')
}
