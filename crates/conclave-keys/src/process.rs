//! `conclave keyserver` and the hidden `conclave keyless-probe` as
//! processes: load, bind, print the listening line, serve until SIGINT or
//! SIGTERM.

use crate::{probe, KeyServer, KeyServerSettings, KeyStore, KeylessProbeSettings, KeysError};
use conclave_rpc::{Credentials, Endpoint, Server, Shutdown, TlsError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the key server or the probe did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum KeyServerError {
    /// The key directory did not load.
    #[error("loading keys from {}", .dir.display())]
    Keys {
        /// The key directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: KeysError,
    },
    /// The key directory holds no key.
    #[error("no *.key files in {}: nothing to serve", .0.display())]
    NoKeys(PathBuf),
    /// An mTLS identity did not load (`role`: keyserver or edge).
    #[error("loading the {role} identity from {}", .certs.display())]
    Identity {
        /// The role whose identity was loaded.
        role: conclave_rpc::Role,
        /// The certificate directory.
        certs: PathBuf,
        /// Cause.
        #[source]
        source: TlsError,
    },
    /// A certificate or TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The signing threads could not be started.
    #[error("starting the signing threads")]
    Start(#[source] std::io::Error),
    /// The probe's site key is not usable on the key server.
    #[error("key {name:?} on {keyserver}")]
    RemoteKey {
        /// The key name.
        name: String,
        /// The key server.
        keyserver: Endpoint,
        /// Cause.
        #[source]
        source: KeysError,
    },
    /// The probe's HTTPS configuration could not be built.
    #[error(transparent)]
    Probe(#[from] KeysError),
    /// The listener could not be bound (`what`: the endpoint or address).
    #[error("binding {what}")]
    Bind {
        /// Where.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `--ticket-keys` or `--ticket-rotation` is unusable.
    #[error(transparent)]
    TicketKeys(#[from] crate::op::ticket_keys::TicketSecretError),
    /// The runtime, the signal handlers or the server loop failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Loads the keys and serves until SIGINT or SIGTERM; prints
/// `keyserver listening on ENDPOINT` to `out` once bound.
pub fn run(s: &KeyServerSettings, out: &mut dyn Write) -> Result<(), KeyServerError> {
    let store = KeyStore::load_dir(&s.keys).map_err(|source| KeyServerError::Keys {
        dir: s.keys.clone(),
        source,
    })?;
    if store.is_empty() {
        return Err(KeyServerError::NoKeys(s.keys.clone()));
    }
    for k in store.iter() {
        tracing::info!(key = %k.name, algorithm = %k.algorithm, "loaded");
    }
    let role = conclave_rpc::Role::KeyServer;
    let creds = Credentials::from_dir(&s.certs, role).map_err(|source| KeyServerError::Identity {
        role,
        certs: s.certs.clone(),
        source,
    })?;
    let mut opts = s.options();
    opts.tickets = s.ticket_source()?.map(Arc::new);
    if let Some(t) = &opts.tickets {
        tracing::info!(rotation = ?t.period(), "serving fleet ticket keys (TICKET_KEYS)");
    }
    if s.grants.is_empty() {
        tracing::info!(
            "no --grant given: granting {} (the edge of tenant default may use every key)",
            crate::grants::DEFAULT_GRANT
        );
    }
    if !opts.handshake_only {
        tracing::warn!("--sign-any-input: any granted caller may sign arbitrary messages");
    }
    let svc = Arc::new(KeyServer::new(store, &opts).map_err(KeyServerError::Start)?);
    runtime()?.block_on(async {
        let server = Server::bind(&s.listen, Some(creds.server_config()?), s.server_options())
            .await
            .map_err(|source| KeyServerError::Bind {
                what: s.listen.to_string(),
                source,
            })?;
        let _ = writeln!(out, "keyserver listening on {}", server.local_endpoint());
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        server.serve(svc, shutdown).await?;
        Ok(())
    })
}

/// Serves HTTPS with a remote key until SIGINT or SIGTERM; prints
/// `keyless-probe listening on https://ADDR pid PID` to `out` once bound.
pub fn run_probe(s: &KeylessProbeSettings, out: &mut dyn Write) -> Result<(), KeyServerError> {
    let chain = conclave_rpc::tls::load_certs(&s.cert)?;
    let creds =
        Credentials::from_dir(&s.certs, crate::CLIENT_ROLE).map_err(|source| KeyServerError::Identity {
            role: crate::CLIENT_ROLE,
            certs: s.certs.clone(),
            source,
        })?;
    let ck = crate::certified_key(chain, &s.keyserver, s.key_name.as_str(), &creds).map_err(|source| {
        KeyServerError::RemoteKey {
            name: s.key_name.as_str().to_string(),
            keyserver: s.keyserver.clone(),
            source,
        }
    })?;
    let config = probe::server_config(ck)?;
    runtime()?.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(s.listen)
                .await
                .map_err(|source| KeyServerError::Bind {
                    what: s.listen.to_string(),
                    source,
                })?;
        // The pid lets a test that runs us under strace stop us, not strace.
        let _ = writeln!(
            out,
            "keyless-probe listening on https://{} pid {}",
            listener.local_addr()?,
            std::process::id()
        );
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        probe::serve(listener, config, shutdown).await?;
        Ok(())
    })
}
