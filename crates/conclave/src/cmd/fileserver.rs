//! `conclave fileserver`: serves one ext2 image through one protected block
//! device over mutual TLS (role `fileserver`).

use anyhow::{bail, Context};
use conclave_bd::DeviceSpec;
use conclave_fs::{FileServer, FileServerOptions};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Server, ServerOptions, Shutdown};
use std::sync::Arc;

/// Arguments: the file server settings of `conclave-fs`.
pub use conclave_fs::FileServerSettings as Args;

/// Runs the server until SIGTERM/SIGINT, then syncs and prints the root.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut spec = DeviceSpec::new(a.device, &a.image).read_only(a.read_only);
    if let Some(t) = &a.tree {
        spec = spec.tree(t);
    }
    if let Some(s) = &a.secret_file {
        spec = spec.secret_file(s);
    }
    if let Some(r) = &a.expect_root {
        spec = spec.expect_root(r);
    }
    let dev =
        conclave_bd::open(&spec).with_context(|| format!("opening {} as {}", a.image.display(), a.device))?;
    let fs = conclave_ext2::Ext2Fs::open(dev.clone())
        .with_context(|| format!("reading the ext2 file system in {}", a.image.display()))?;
    if !fs.was_clean() && !a.read_only {
        bail!(
            "{} was not cleanly shut down (the server was killed or crashed while it had unsynced changes); \
             check it with `conclave fsck` (or e2fsck on a decrypted copy) before serving it for writing, \
             or serve it with --read-only",
            a.image.display()
        );
    }
    if a.max_write.bytes() > conclave_fs::proto::MAX_IO as u64 || a.max_write.bytes() == 0 {
        bail!(
            "--max-write {} is out of range: it must be between 1 and {} (the frame limit)",
            a.max_write,
            conclave_units::ByteSize(conclave_fs::proto::MAX_IO as u64)
        );
    }
    let creds =
        Credentials::from_dir(&a.certs, Role::FileServer).context("loading the fileserver identity")?;
    let svc = Arc::new(FileServer::new(
        fs,
        FileServerOptions {
            max_open_per_client: a.max_open,
            max_write_per_request: a.max_write.bytes() as usize,
            read_only: a.read_only,
            ..FileServerOptions::default()
        },
    ));
    let rt = super::runtime()?;
    rt.block_on(async {
        let opts = a.rpc.apply(ServerOptions {
            max_body: conclave_fs::proto::MAX_BODY,
            ..ServerOptions::default()
        });
        let server = Server::bind(&a.listen, Some(creds.server_config()?), opts)
            .await
            .with_context(|| format!("binding {}", a.listen))?;
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        tracing::info!(endpoint = %server.local_endpoint(), device = %a.device, "file server listening");
        server.serve(svc.clone(), shutdown).await?;
        anyhow::Ok(())
    })?;
    svc.sync().context("syncing the file system at shutdown")?;
    match dev.sealed_root() {
        Some(root) => super::print_line(format!("sealed root: {} (counter {})", root.hex(), root.counter)),
        None => super::print_line("synced"),
    }
    Ok(())
}
