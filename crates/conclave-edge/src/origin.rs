//! `conclave origin`: the seed's origin, a plain-HTTP static server that marks
//! every response `Cache-Control: public, no-transform` so edges cache it.

use crate::access_log::AccessLog;
use crate::server::{accept_loop, Limits, Listener};
use crate::site::{Backend, Site};
use crate::storage::HostStorage;
use crate::worker::{finish, stop_signal};
use crate::EdgeError;
use http::header::{HeaderName, HeaderValue};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Settings of an origin server.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Docroot.
    pub root: PathBuf,
    /// Plain-HTTP listening address.
    pub listen: SocketAddr,
    /// One line per request, if set.
    pub access_log: Option<PathBuf>,
    /// Tokio threads.
    pub threads: usize,
}

/// Serves until SIGTERM/SIGINT.
pub fn run_origin(cfg: &OriginConfig) -> Result<(), EdgeError> {
    let rt =
        crate::worker::runtime(cfg.threads, false).map_err(|e| EdgeError::io("building the runtime", e))?;
    rt.block_on(async {
        let (_stopper, stop) = stop_signal(false)?;
        let storage = HostStorage::new(&cfg.root, false)
            .map_err(|e| EdgeError::io(format!("root {}", cfg.root.display()), e))?;
        if !cfg.root.is_dir() {
            return Err(EdgeError::Setup(format!(
                "root {} is not a directory",
                cfg.root.display()
            )));
        }
        let access_log = match &cfg.access_log {
            Some(p) => {
                Some(Arc::new(AccessLog::open(p).map_err(|e| {
                    EdgeError::io(format!("access log {}", p.display()), e)
                })?))
            }
            None => None,
        };
        let site = Arc::new(Site {
            backend: Backend::Static(Arc::new(storage)),
            max_uri_length: 8192,
            add_headers: vec![(
                HeaderName::from_static("cache-control"),
                HeaderValue::from_static("public, no-transform"),
            )],
            access_log,
            waf: None,
        });
        let tcp = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| EdgeError::io(format!("listen {}", cfg.listen), e))?;
        tracing::info!("origin serving {} on http://{}", cfg.root.display(), cfg.listen);
        let limits = Arc::new(Limits {
            header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(65),
            max_header_bytes: 32 << 10,
        });
        let graceful = Arc::new(GracefulShutdown::new());
        let l = Listener { tcp, tls: None, site };
        accept_loop(l, limits, Arc::new(Semaphore::new(8192)), graceful.clone(), stop).await;
        finish(graceful, Duration::from_secs(10)).await;
        Ok(())
    })
}
