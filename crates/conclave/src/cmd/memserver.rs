//! `conclave memserver`: an smdish or smuf memory server over mTLS.

use anyhow::{bail, Context};
use conclave_mem::{MemServer, ServerKind};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Endpoint, Server, Shutdown};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// smdish (segments held by the server) or smuf (sealed host files).
    #[arg(long)]
    pub kind: String,
    /// Where to listen: unix:///path or tcp://127.0.0.1:PORT (port 0 picks one).
    #[arg(long)]
    pub listen: Endpoint,
    /// Directory written by `conclave certs` (uses memserver.crt/.key).
    #[arg(long)]
    pub certs: PathBuf,
    /// smuf: the host directory of the sealed segment files.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Serves until SIGTERM or SIGINT. Prints `listening on ENDPOINT` once bound.
pub fn run(a: Args) -> anyhow::Result<()> {
    let kind = match (a.kind.as_str(), a.dir) {
        ("smdish", None) => ServerKind::Smdish,
        ("smdish", Some(_)) => bail!("--dir is for smuf; smdish keeps segments in memory"),
        ("smuf", Some(dir)) => ServerKind::Smuf { dir },
        ("smuf", None) => bail!("smuf needs --dir HOSTDIR for its sealed segment files"),
        (k, _) => bail!("unknown memory server kind {k:?} (expected smdish or smuf)"),
    };
    let creds = Credentials::from_dir(&a.certs, Role::MemServer)
        .with_context(|| format!("loading the memserver identity from {}", a.certs.display()))?;
    let tls = creds.server_config()?;
    super::runtime()?.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        let svc = Arc::new(MemServer::new(kind, shutdown.clone()).context("starting the memory server")?);
        let server = Server::bind(&a.listen, Some(tls), MemServer::server_options())
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        super::print_line(format_args!("listening on {}", server.local_endpoint()));
        server.serve(svc, shutdown).await?;
        Ok(())
    })
}
