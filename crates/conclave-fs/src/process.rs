//! `conclave fileserver` as a process: opens the device and the ext2 image
//! (refusing an unclean image for writing), serves it over mutual TLS until
//! SIGTERM/SIGINT, then syncs and prints the sealed root.

use crate::{proto, FileServer, FileServerOptions, FileServerSettings};
use conclave_bd::{BdError, DeviceKind, DeviceSpec};
use conclave_ext2::{Ext2Error, Ext2Fs};
use conclave_rpc::{Credentials, Endpoint, Role, Server, ServerOptions, Shutdown, TlsError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the file server did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum FileServerError {
    /// The block device did not open (header, secret, tree, sealed root).
    #[error("opening {} as {kind}", .image.display())]
    Open {
        /// The image.
        image: PathBuf,
        /// Its device.
        kind: DeviceKind,
        /// Cause.
        #[source]
        source: BdError,
    },
    /// The device holds no readable ext2 file system.
    #[error("reading the ext2 file system in {}", .image.display())]
    Ext2 {
        /// The image.
        image: PathBuf,
        /// Cause.
        #[source]
        source: Ext2Error,
    },
    /// The image was not cleanly shut down and `--read-only` was not given.
    #[error(
        "{} was not cleanly shut down (the server was killed or crashed while it had unsynced changes); \
         check it with `conclave fsck` (or e2fsck on a decrypted copy) before serving it for writing, \
         or serve it with --read-only",
        .0.display()
    )]
    Unclean(PathBuf),
    /// `--max-write` is 0 or over the frame limit.
    #[error("--max-write {0} is out of range: it must be between 1 and {1} (the frame limit)")]
    MaxWrite(conclave_units::ByteSize, conclave_units::ByteSize),
    /// The grants file could not be used.
    #[error(transparent)]
    Grants(#[from] crate::grants::GrantsFileError),
    /// The `fileserver` identity did not load.
    #[error("loading the fileserver identity")]
    Identity(#[source] TlsError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
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
    /// The final sync failed.
    #[error("syncing the file system at shutdown")]
    Sync(#[source] Ext2Error),
}

/// Runs the file server `s` describes until SIGTERM/SIGINT, then syncs and
/// prints `sealed root: HEX (counter N)` (tree devices) or `synced` to `out`.
pub fn run(s: &FileServerSettings, out: &mut dyn Write) -> Result<(), FileServerError> {
    let mut spec = DeviceSpec::new(s.device, &s.image).read_only(s.read_only);
    if let Some(t) = &s.tree {
        spec = spec.tree(t);
    }
    if let Some(f) = &s.secret_file {
        spec = spec.secret_file(f);
    }
    if let Some(r) = &s.expect_root {
        spec = spec.expect_root(r);
    }
    let dev = conclave_bd::open(&spec).map_err(|source| FileServerError::Open {
        image: s.image.clone(),
        kind: s.device,
        source,
    })?;
    // Read-only also serves images with features the engine reads but cannot write.
    let open = if s.read_only {
        Ext2Fs::open_read_only
    } else {
        Ext2Fs::open
    };
    let fs = open(dev.clone()).map_err(|source| FileServerError::Ext2 {
        image: s.image.clone(),
        source,
    })?;
    if !fs.was_clean() && !s.read_only {
        return Err(FileServerError::Unclean(s.image.clone()));
    }
    let frame_limit = conclave_units::ByteSize(proto::MAX_IO as u64);
    if s.max_write.bytes() == 0 || s.max_write > frame_limit {
        return Err(FileServerError::MaxWrite(s.max_write, frame_limit));
    }
    let creds = Credentials::from_dir(&s.certs, Role::FileServer).map_err(FileServerError::Identity)?;
    let mut grants = s.grants.clone();
    if let Some(f) = &s.grants_file {
        grants.extend(crate::grants::read_grants_file(f)?);
    }
    if grants.is_empty() {
        tracing::warn!("no --grant given: every client will be denied every operation (EACCES)");
    }
    for g in &grants {
        tracing::info!(grant = %g, "file-server grant");
    }
    let svc = Arc::new(FileServer::new(
        fs,
        FileServerOptions {
            max_open_per_client: s.max_open,
            max_write_per_request: s.max_write.bytes() as usize,
            read_only: s.read_only,
            grants: crate::grants::Grants::new(grants),
            ..FileServerOptions::default()
        },
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let opts = s.rpc.apply(ServerOptions {
            max_body: proto::MAX_BODY,
            ..ServerOptions::default()
        });
        let server = Server::bind(&s.listen, Some(creds.server_config()?), opts)
            .await
            .map_err(|source| FileServerError::Bind {
                endpoint: s.listen.clone(),
                source,
            })?;
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals()?;
        tracing::info!(endpoint = %server.local_endpoint(), device = %s.device, "file server listening");
        server.serve(svc.clone(), shutdown).await?;
        Ok::<_, FileServerError>(())
    })?;
    svc.sync().map_err(FileServerError::Sync)?;
    let _ = match dev.sealed_root() {
        Some(root) => writeln!(out, "sealed root: {} (counter {})", root.hex(), root.counter),
        None => writeln!(out, "synced"),
    };
    Ok(())
}
