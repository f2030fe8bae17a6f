//! `conclave keyserver`: holds the sites' private keys and signs TLS
//! handshakes for the edge over mTLS. Also the hidden `conclave
//! keyless-probe`, an HTTPS responder that holds only a certificate and signs
//! through the key server (for tests and for checking a deployment).

use anyhow::{bail, Context};
use conclave_keys::{probe, KeyServer, KeyServerOptions, KeyStore};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Endpoint, Server, Shutdown};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `conclave keyserver`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of PEM private keys; `NAME.key` is served as key `NAME`.
    #[arg(long)]
    pub keys: PathBuf,
    /// Where to listen: tcp://HOST:PORT (port 0 picks one) or unix:///path.
    #[arg(long, default_value = "tcp://127.0.0.1:9000")]
    pub listen: Endpoint,
    /// Directory written by `conclave certs` (root.crt, keyserver.crt, keyserver.key).
    #[arg(long)]
    pub certs: PathBuf,
    /// Signing threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Signing requests that may wait for a thread; more get EAGAIN.
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// Sign on the runtime thread that read the request instead of handing
    /// each signature to a signing thread: cheaper on a small machine, but
    /// no queue bound (EAGAIN) and other requests wait behind a signature.
    #[arg(long, conflicts_with_all = ["threads", "queue"])]
    pub sign_inline: bool,
}

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
            KeyServer::server_options(),
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
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The site's certificate chain (PEM, leaf first). No key file is read.
    #[arg(long)]
    pub cert: PathBuf,
    /// The key server holding the site's key.
    #[arg(long)]
    pub keyserver: Endpoint,
    /// The key's name on the key server.
    #[arg(long, default_value = "server")]
    pub key_name: String,
    /// Directory with root.crt, edge.crt and edge.key (the mTLS identity).
    #[arg(long)]
    pub certs: PathBuf,
    /// HTTPS address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

/// Serves HTTPS with a remote key until SIGINT or SIGTERM.
pub fn run_probe(a: ProbeArgs) -> anyhow::Result<()> {
    let chain = conclave_rpc::tls::load_certs(&a.cert)?;
    let creds = Credentials::from_dir(&a.certs, conclave_keys::CLIENT_ROLE)
        .with_context(|| format!("loading the edge identity from {}", a.certs.display()))?;
    let ck = conclave_keys::certified_key(chain, &a.keyserver, &a.key_name, &creds)
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
