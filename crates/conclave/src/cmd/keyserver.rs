//! `conclave keyserver`: holds the sites' private keys and signs TLS
//! handshakes for the edge over mTLS. Also the hidden `conclave
//! keyless-probe`, an HTTPS responder that holds only a certificate and signs
//! through the key server (for tests and for checking a deployment).

use anyhow::{bail, Context};
use conclave_keys::{probe, KeyServer, KeyServerOptions, KeyStore};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Server, Shutdown};
use std::sync::Arc;

/// Arguments of `conclave keyserver`: its settings in `conclave-keys`.
pub use conclave_keys::KeyServerSettings as Args;

/// Loads the keys and serves until SIGINT or SIGTERM.
pub fn run(a: Args) -> anyhow::Result<()> {
    let store =
        KeyStore::load_dir(&a.keys).with_context(|| format!("loading keys from {}", a.keys.display()))?;
    if store.is_empty() {
        bail!("no *.key files in {}: nothing to serve", a.keys.display());
    }
    for k in store.iter() {
        tracing::info!(key = %k.name, algorithm = %k.algorithm, "loaded");
    }
    let creds = Credentials::from_dir(&a.certs, Role::KeyServer)
        .with_context(|| format!("loading the keyserver identity from {}", a.certs.display()))?;
    let opts = KeyServerOptions {
        threads: a.threads,
        queue: a.queue,
        inline: a.sign_inline,
        ..KeyServerOptions::default()
    };
    let svc = Arc::new(KeyServer::new(store, &opts).context("starting the signing threads")?);
    let rt = super::runtime()?;
    rt.block_on(async {
        let server = Server::bind(
            &a.listen,
            Some(creds.server_config()?),
            a.rpc.apply(KeyServer::server_options()),
        )
        .await
        .with_context(|| format!("binding {}", a.listen))?;
        super::print_line(format_args!("keyserver listening on {}", server.local_endpoint()));
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        server.serve(svc, shutdown).await?;
        Ok(())
    })
}

/// Arguments of the hidden `conclave keyless-probe`.
pub use conclave_keys::KeylessProbeSettings as ProbeArgs;

/// Serves HTTPS with a remote key until SIGINT or SIGTERM.
pub fn run_probe(a: ProbeArgs) -> anyhow::Result<()> {
    let chain = conclave_rpc::tls::load_certs(&a.cert)?;
    let creds = Credentials::from_dir(&a.certs, conclave_keys::CLIENT_ROLE)
        .with_context(|| format!("loading the edge identity from {}", a.certs.display()))?;
    let ck = conclave_keys::certified_key(chain, &a.keyserver, a.key_name.as_str(), &creds)
        .with_context(|| format!("key {:?} on {}", a.key_name, a.keyserver))?;
    let config = probe::server_config(ck)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        // The pid lets a test that runs us under strace stop us, not strace.
        super::print_line(format_args!(
            "keyless-probe listening on https://{} pid {}",
            listener.local_addr()?,
            std::process::id()
        ));
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        probe::serve(listener, config, shutdown).await?;
        Ok(())
    })
}
