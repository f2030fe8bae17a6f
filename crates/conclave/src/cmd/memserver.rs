//! `conclave memserver`: an smdish or smuf memory server over mTLS.

use anyhow::Context;
use conclave_mem::MemServer;
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Server, Shutdown};
use std::sync::Arc;

/// Arguments: the memory server settings of `conclave-mem`.
pub use conclave_mem::MemServerSettings as Args;

/// Serves until SIGTERM or SIGINT. Prints `listening on ENDPOINT` once bound.
pub fn run(a: Args) -> anyhow::Result<()> {
    let kind = a.server_kind()?;
    let creds = Credentials::from_dir(&a.certs, Role::MemServer)
        .with_context(|| format!("loading the memserver identity from {}", a.certs.display()))?;
    let tls = creds.server_config()?;
    super::runtime()?.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        let svc = Arc::new(
            MemServer::with_limits(kind, a.limits(), shutdown.clone())
                .context("starting the memory server")?,
        );
        let server = Server::bind(&a.listen, Some(tls), a.rpc.apply(MemServer::server_options()))
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        super::print_line(format_args!("listening on {}", server.local_endpoint()));
        server.serve(svc, shutdown).await?;
        Ok(())
    })
}
