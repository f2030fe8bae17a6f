//! `conclave memserver` as a process: an smdish or smuf memory server over
//! mutual TLS until SIGTERM or SIGINT.

use crate::settings::MemSettingsError;
use crate::{MemServer, MemServerSettings};
use conclave_rpc::{Credentials, Endpoint, Role, Server, Shutdown, TlsError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the memory server did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MemServerError {
    /// `--kind` and `--dir` do not make a server.
    #[error(transparent)]
    Settings(#[from] MemSettingsError),
    /// The `memserver` identity did not load.
    #[error("loading the memserver identity from {}", .certs.display())]
    Identity {
        /// The certificate directory.
        certs: PathBuf,
        /// Cause.
        #[source]
        source: TlsError,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The service could not be made (e.g. the smuf directory).
    #[error("starting the memory server")]
    Start(#[source] std::io::Error),
    /// The listener could not be bound.
    #[error("binding {endpoint}")]
    Bind {
        /// Where.
        endpoint: Endpoint,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime, the signal handlers or the server loop failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves until SIGTERM or SIGINT; prints `listening on ENDPOINT` to `out`
/// once bound.
pub fn run(s: &MemServerSettings, out: &mut dyn Write) -> Result<(), MemServerError> {
    let kind = s.server_kind()?;
    let creds =
        Credentials::from_dir(&s.certs, Role::MemServer).map_err(|source| MemServerError::Identity {
            certs: s.certs.clone(),
            source,
        })?;
    let tls = creds.server_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        let grants = s.grants();
        if s.grants.is_empty() {
            tracing::info!(
                "no --grant given: the default {} (every tenant's edge, in its own namespace)",
                grants.as_slice()[0]
            );
        }
        let svc = Arc::new(
            MemServer::with_grants(kind, s.limits(), grants, shutdown.clone())
                .map_err(MemServerError::Start)?,
        );
        let server = Server::bind(&s.listen, Some(tls), s.rpc.apply(MemServer::server_options()))
            .await
            .map_err(|source| MemServerError::Bind {
                endpoint: s.listen.clone(),
                source,
            })?;
        let _ = writeln!(out, "listening on {}", server.local_endpoint());
        server.serve(svc, shutdown).await?;
        Ok(())
    })
}
