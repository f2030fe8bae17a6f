//! One worker process: builds the sites of the config and serves them until told
//! to stop (SIGTERM, SIGINT, SIGQUIT, or EOF on stdin: the master drains it or
//! is gone). Its listening sockets are the master's ([`crate::listen`]).

use crate::access_log::AccessLog;
use crate::cache::Cache;
use crate::config::{
    CertConfig, EdgeConfig, KeyConfig, KeylessHandshake, SharedConfig, SiteConfig, StorageConfig,
};
use crate::keysource::{KeyFile, KeyServerKey, KeySource};
use crate::server::{accept_loop, ConnLimiter, Limits, Listener, ReqLimiter};
use crate::shared::{LocalSharedState, MemSharedState, SharedState};
use crate::site::{Backend, Site};
use crate::sni::{KeylessStep, ServerNames, SniRouter};
use crate::storage::{HostStorage, NextfsStorage, Storage};
use crate::EdgeError;
use conclave_rpc::Role;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

/// Builds a runtime with the configured number of threads. A worker with a
/// remote seam (key server, file server, memory server) blocks in their
/// calls, so it gets a multi-thread runtime even for one thread: only there
/// can a blocking call hand the worker's other connections to a fresh
/// thread (`conclave_rpc::run_blocking`) while `threads` stay running.
pub fn runtime(threads: usize, remote_seams: bool) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 && !remote_seams {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Stops when SIGTERM, SIGINT or SIGQUIT arrives, or (if `watch_stdin`) stdin reaches EOF.
pub fn stop_signal(
    watch_stdin: bool,
) -> Result<(Arc<watch::Sender<bool>>, watch::Receiver<bool>), EdgeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    if watch_stdin {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("master-watch".into())
            .spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 64];
                let mut stdin = std::io::stdin();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::warn!("reading stdin (the master's pipe): {e}");
                            break;
                        }
                        Ok(_) => {}
                    }
                }
                tracing::debug!("stdin closed: stopping");
                let _ = tx.send(true);
            })
            .map_err(|e| EdgeError::io("starting the stdin watcher", e))?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| EdgeError::io("SIGTERM handler", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| EdgeError::io("SIGINT handler", e))?;
    let mut quit = signal(SignalKind::quit()).map_err(|e| EdgeError::io("SIGQUIT handler", e))?;
    let tx2 = tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = quit.recv() => {}
        }
        tracing::debug!("signal: stopping");
        let _ = tx2.send(true);
    });
    Ok((tx, rx))
}

/// Keeps the master's signals from killing a worker that gets them too (a
/// signal to the whole process group, a terminal's hang-up): SIGHUP and
/// SIGUSR2 are the master's business; SIGUSR1 (reopen the logs) is acted on
/// by its own handler. A handler once installed stays for the process's life.
fn hold_master_signals() -> Result<(), EdgeError> {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        // Dropping the stream keeps the handler: the signal is then ignored.
        drop(signal(kind).map_err(|e| EdgeError::io(format!("{name} handler"), e))?);
    }
    Ok(())
}

/// Tells the master (the first line on our stdout, its pipe) that this
/// worker serves, so a reload can let the old workers drain.
fn report_ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", crate::master::READY_LINE)
        .and_then(|()| out.flush())
        .is_err()
    {
        tracing::debug!("the master's pipe is closed");
    }
}

/// The TLS ticket keys: derived from the master's seed (`local`), or kept
/// in the memory store sealed with the edge's key (see [`crate::tickets`]).
fn ticketer(
    cfg: &EdgeConfig,
    shared: &dyn SharedState,
    seed: Option<[u8; crate::tickets::SEED_LEN]>,
) -> Result<crate::tickets::SharedTicketer, EdgeError> {
    use crate::tickets::{SharedTicketer, TicketSeal};
    let ticket_secret_file = match &cfg.shared {
        SharedConfig::Local => {
            let seed = match seed {
                Some(s) => s,
                None => {
                    let mut s = [0u8; crate::tickets::SEED_LEN];
                    getrandom::fill(&mut s)
                        .map_err(|e| EdgeError::Setup(format!("no randomness for the ticket seed: {e}")))?;
                    s
                }
            };
            return Ok(SharedTicketer::derived(seed));
        }
        SharedConfig::Mem {
            ticket_secret_file, ..
        } => ticket_secret_file.as_deref(),
    };
    let seal = TicketSeal::for_edge(ticket_secret_file, seed.as_ref())
        .map_err(|e| EdgeError::Setup(format!("[shared] ticket_secret_file: {e}")))?;
    SharedTicketer::in_segment(shared, seal).map_err(|e| EdgeError::Setup(format!("TLS ticket keys: {e}")))
}

/// The cross-worker state `[shared]` names.
fn shared_state(c: &SharedConfig) -> Result<Arc<dyn SharedState>, EdgeError> {
    let SharedConfig::Mem {
        spec,
        certs,
        secret_file,
        deadlines,
        ..
    } = c
    else {
        return Ok(Arc::new(LocalSharedState::new()));
    };
    let creds = match certs {
        Some(dir) => Some(
            conclave_rpc::Credentials::from_dir(dir, Role::Edge)
                .map_err(|e| EdgeError::Setup(format!("[shared] certs: {e}")))?,
        ),
        None => None,
    };
    let opts = conclave_mem::MemOptions {
        creds,
        secret_file: secret_file.clone(),
    };
    let st = MemSharedState::connect_with(spec, &opts, *deadlines)
        .map_err(|e| EdgeError::Setup(format!("[shared]: {e}")))?;
    Ok(Arc::new(st))
}

/// The file-server client `[storage] kind = "nextfs"` names.
/// Each call has `timeout` (`storage_timeout`) per read or write: a stalled
/// file server fails the request (504, or a cache miss) instead of holding it.
fn fs_client(
    server: &conclave_rpc::Endpoint,
    certs: &std::path::Path,
    timeout: std::time::Duration,
) -> Result<Arc<conclave_fs::FsClient>, EdgeError> {
    let creds = conclave_rpc::Credentials::from_dir(certs, Role::Edge)
        .map_err(|e| EdgeError::Setup(format!("[storage] certs: {e}")))?;
    let mut opts = conclave_rpc::ClientOptions::mtls(&creds, Role::FileServer)
        .map_err(|e| EdgeError::Setup(format!("[storage] certs: {e}")))?;
    opts.io_timeout = timeout;
    opts.connect_timeout = opts.connect_timeout.min(timeout);
    Ok(conclave_fs::FsClient::new(server.clone(), opts))
}

/// The storage of a site tree: a host directory, or a directory in the nextfs image.
fn site_storage(
    fs_client: Option<&Arc<conclave_fs::FsClient>>,
    dir: &std::path::Path,
    create: bool,
    what: &str,
) -> Result<Arc<dyn Storage>, EdgeError> {
    Ok(match fs_client {
        None => Arc::new(
            HostStorage::new(dir, create)
                .map_err(|e| EdgeError::io(format!("{what} {}", dir.display()), e))?,
        ),
        Some(c) => Arc::new(
            NextfsStorage::new(c.clone(), &dir.to_string_lossy(), create)
                .map_err(|e| EdgeError::io(format!("nextfs {what} {}", dir.display()), e))?,
        ),
    })
}

/// The key source of one certificate of a site; a key-server key signs over
/// `lanes` pipelined connections per key server.
pub fn key_source(tls: &CertConfig, timeout: std::time::Duration, lanes: usize) -> Box<dyn KeySource> {
    match &tls.key {
        KeyConfig::File(k) => Box::new(KeyFile {
            certificate: tls.certificate.clone(),
            key: k.clone(),
        }),
        KeyConfig::KeyServer {
            endpoint,
            key_name,
            certs,
            fallbacks,
        } => Box::new(KeyServerKey {
            certificate: tls.certificate.clone(),
            endpoint: endpoint.clone(),
            key_name: key_name.clone(),
            certs: certs.clone(),
            timeout,
            fallbacks: fallbacks.clone(),
            lanes,
        }),
    }
}

/// Where the worker's keyless sites sign (none if it has none): on a
/// coroutine of the runtime thread, or on handshake threads shared by those
/// sites (`keyless_handshake`); either way not blocking a runtime thread.
fn keyless_step(cfg: &EdgeConfig) -> Result<Option<KeylessStep>, EdgeError> {
    if !cfg.servers.iter().any(|s| s.tls.is_keyless()) {
        return Ok(None);
    }
    Ok(Some(match cfg.keyless_handshake {
        KeylessHandshake::Coroutine => KeylessStep::Coroutine,
        KeylessHandshake::Threads => {
            let t = conclave_keys::HandshakeThreads::new(conclave_keys::handshake::DEFAULT_THREADS)
                .map_err(|e| EdgeError::io("starting the keyless handshake threads", e))?;
            KeylessStep::Threads(Arc::new(t))
        }
    }))
}

/// Serves `cfg` in this process until stopped. `seed` is the master's (see
/// [`crate::launch::read_handoff`]): with one, EOF on stdin (the master's
/// pipe) is a stop and readiness is reported on stdout. With `metrics_dir`
/// it also answers the master's metrics scrapes on a socket there (see
/// [`crate::admin`]).
pub fn run_worker(
    cfg: &EdgeConfig,
    seed: Option<[u8; crate::tickets::SEED_LEN]>,
    metrics_dir: Option<&std::path::Path>,
) -> Result<(), EdgeError> {
    let watch_stdin = seed.is_some();
    let rt = runtime(cfg.worker_threads, cfg.has_remote_seam())
        .map_err(|e| EdgeError::io("building the runtime", e))?;
    rt.block_on(serve(cfg, watch_stdin, seed, metrics_dir))
}

async fn serve(
    cfg: &EdgeConfig,
    watch_stdin: bool,
    seed: Option<[u8; crate::tickets::SEED_LEN]>,
    metrics_dir: Option<&std::path::Path>,
) -> Result<(), EdgeError> {
    let (_stopper, stop) = stop_signal(watch_stdin)?;
    hold_master_signals()?;
    // SIGUSR1 (forwarded by the master) reopens the log files.
    crate::access_log::reopen_on_sigusr1()?;
    let shared: Arc<dyn SharedState> = shared_state(&cfg.shared)?;
    let tickets: Arc<dyn rustls::server::ProducesTickets> = match &cfg.fleet_tickets {
        Some(f) => Arc::new(
            crate::tickets::fleet::FleetTicketer::start(f)
                .map_err(|e| EdgeError::Setup(format!("[shared] ticket_source = \"keyserver\": {e}")))?,
        ),
        None => Arc::new(ticketer(cfg, shared.as_ref(), seed)?),
    };
    let fs_client = match &cfg.storage {
        StorageConfig::Host => None,
        StorageConfig::Nextfs { server, certs } => Some(fs_client(server, certs, cfg.storage_timeout)?),
    };
    let access_log = match &cfg.access_log {
        Some(p) => Some(Arc::new(
            AccessLog::open(p, cfg.access_log_format)
                .map_err(|e| EdgeError::io(format!("access log {}", p.display()), e))?,
        )),
        None => None,
    };
    let limits = Arc::new(Limits {
        header_timeout: cfg.client_header_timeout,
        keepalive_timeout: cfg.keepalive_timeout,
        max_header_bytes: cfg.max_header_bytes,
        send_timeout: cfg.send_timeout,
        http2_idle_timeout: cfg.http2_idle_timeout,
        http2_max_concurrent_streams: cfg.http2_max_concurrent_streams,
        conn_limit: cfg.limit_conn.map(ConnLimiter::new),
        req_limit: cfg.limit_req.map(|r| Arc::new(ReqLimiter::new(r.rate, r.burst))),
    });
    let cap = Arc::new(Semaphore::new(cfg.worker_connections));
    let keyless = keyless_step(cfg)?;
    // Before any check: each runtime thread makes its verdict cache on its first one.
    conclave_waf::set_verdict_cache_entries(cfg.waf_verdict_cache);
    let graceful = Arc::new(GracefulShutdown::new());
    let mut loops = Vec::new();
    let mut routers: Vec<(std::net::SocketAddr, SniRouter)> = Vec::new();
    for s in &cfg.servers {
        let backend = match &s.site {
            SiteConfig::Standalone { root } => {
                Backend::Static(site_storage(fs_client.as_ref(), root, false, "root")?)
            }
            SiteConfig::Cache { proxy, cache } => {
                let st = site_storage(fs_client.as_ref(), &cache.path, true, "cache path")?;
                Backend::Cache(Box::new(Cache::new(
                    cache.clone(),
                    Arc::new(crate::proxy::Proxy::new(proxy)?),
                    st,
                    shared.as_ref(),
                )?))
            }
        };
        let keys: Vec<_> = s
            .tls
            .all_certificates()
            .into_iter()
            .map(|c| {
                let k = key_source(
                    &c,
                    cfg.keyserver_timeout,
                    conclave_keys::client::sign_lanes(cfg.workers),
                );
                (c, k)
            })
            .collect();
        let waf = match &s.waf {
            None => None,
            Some(p) => {
                let waf = conclave_waf::Waf::load(p)
                    .map_err(|e| EdgeError::Setup(format!("waf rules {}: {e}", p.display())))?;
                for note in waf.notes() {
                    tracing::info!(rules = %p.display(), "waf: {note}");
                }
                Some(Arc::new(waf))
            }
        };
        let tls = crate::tls::server_config(&s.tls, &keys, Some(tickets.clone()))?;
        let site = Arc::new(Site {
            backend,
            max_uri_length: cfg.max_uri_length,
            add_headers: Vec::new(),
            access_log: access_log.clone(),
            name: Arc::from(
                s.server_name
                    .first()
                    .cloned()
                    .unwrap_or_else(|| s.listen.to_string()),
            ),
            waf,
            waf_body_limit: s.waf_body_limit,
            body_timeout: cfg.client_body_timeout,
            max_body: s.client_max_body_size,
            compress: s.compression.clone(),
            always_headers: s.add_headers.clone(),
            server_tokens: s.server_tokens,
        });
        // Sites sharing an address share its socket; SNI picks among them.
        let at = match routers.iter().position(|(a, _)| *a == s.listen) {
            Some(at) => at,
            None => {
                routers.push((s.listen, SniRouter::new()));
                routers.len() - 1
            }
        };
        let names = ServerNames::new(s.server_name.clone());
        let step = keyless.clone().filter(|_| s.tls.is_keyless());
        routers[at].1.add(names, tls, site, s.default_server, step);
    }
    for (listen, router) in routers {
        let tcp = crate::listen::take_or_bind(listen)?;
        let site = router
            .default_site()
            .ok_or_else(|| EdgeError::Setup(format!("no site on {listen}")))?;
        let l = Listener {
            tcp,
            tls: Some(Arc::new(router)),
            site,
        };
        loops.push(tokio::spawn(accept_loop(
            l,
            limits.clone(),
            cap.clone(),
            graceful.clone(),
            stop.clone(),
        )));
    }
    crate::listen::close_unused();
    // Bound after the listeners: a worker that answers scrapes serves.
    let _metrics = metrics_dir.map(crate::admin::serve_worker).transpose()?;
    tracing::debug!(
        "worker {} serving {} site(s)",
        std::process::id(),
        cfg.servers.len()
    );
    if watch_stdin {
        report_ready();
    }
    for l in loops {
        let _ = l.await;
    }
    finish(graceful, cfg.graceful_timeout).await;
    Ok(())
}

/// Lets in-flight requests finish, up to `grace`.
pub async fn finish(graceful: Arc<GracefulShutdown>, grace: std::time::Duration) {
    match Arc::try_unwrap(graceful) {
        Ok(g) => {
            if tokio::time::timeout(grace, g.shutdown()).await.is_err() {
                tracing::warn!("graceful shutdown timed out; closing remaining connections");
            }
        }
        Err(_) => tracing::warn!("connections still referenced at shutdown"),
    }
}
