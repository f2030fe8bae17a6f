//! The `conclave mount` process: connect, mount, serve until SIGTERM/SIGINT
//! (or an outside `umount`), then unmount and exit 0.

use crate::fs::MountFs;
use crate::settings::MountSettings;
use conclave_fs::FsClient;
use conclave_rpc::{ClientOptions, Credentials, Endpoint, Role, TlsError};
use fuser::{Config, MountOption, SessionACL};
use nix::sys::signal::{SigSet, Signal};
use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Why `conclave mount` could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The client identity did not load.
    #[error("loading the {role} identity from {dir}")]
    Identity {
        /// The identity asked for.
        role: Role,
        /// The certificate directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: TlsError,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The file server did not answer the first request (so nothing was mounted).
    #[error("file server {server} is not usable")]
    Server {
        /// The server.
        server: Endpoint,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// mount(2) (or fusermount3) refused.
    #[error("mounting at {mountpoint}")]
    Mount {
        /// Where.
        mountpoint: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The signal mask could not be set.
    #[error("blocking SIGTERM/SIGINT")]
    Signals(#[source] nix::Error),
}

/// Mounts and serves until SIGTERM/SIGINT or an outside unmount.
pub fn run(s: &MountSettings) -> Result<(), MountError> {
    let creds = Credentials::from_dir(&s.certs, s.identity).map_err(|source| MountError::Identity {
        role: s.identity,
        dir: s.certs.clone(),
        source,
    })?;
    let mut opts = ClientOptions::mtls(&creds, Role::FileServer)?;
    // Every FUSE thread may hold one pooled connection at a time.
    opts.max_idle = opts.max_idle.max(s.threads * 2);
    let client = FsClient::new(s.server.clone(), opts);
    // Fail before mounting when the server or the identity is wrong, rather
    // than leaving a mount whose every operation fails. STATFS needs a grant.
    client.statfs().map_err(|source| MountError::Server {
        server: s.server.clone(),
        source,
    })?;

    // Threads spawned from here on (FUSE workers) inherit the mask, so the
    // signals wait for the thread below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(MountError::Signals)?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("conclave:{}", s.server)),
        MountOption::Subtype("conclave".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        if s.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    if s.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(s.threads.max(1));
    config.clone_fd = true;
    let fs = MountFs::new(client, s.attr_ttl.0);
    let ops = fs.op_counts();
    let hidden = fs.hidden_files();
    let session = fuser::spawn_mount(fs, &s.mountpoint, &config).map_err(|source| MountError::Mount {
        mountpoint: s.mountpoint.clone(),
        source,
    })?;
    tracing::info!(mountpoint = %s.mountpoint.display(), server = %s.server, read_only = s.read_only, "mounted");

    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                let _ = tx.send(sig);
            }
        })
        .map_err(|source| MountError::Mount {
            mountpoint: s.mountpoint.clone(),
            source,
        })?;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sig) => {
                tracing::info!(signal = %sig, "unmounting");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !session.guard.is_finished() => {}
            Err(_) => {
                // Unmounted from outside (`umount`, `fusermount3 -u`).
                tracing::info!(mountpoint = %s.mountpoint.display(), "unmounted from outside");
                remove_hidden(&hidden);
                tracing::info!(%ops, "FUSE requests served");
                return Ok(());
            }
        }
    }
    if let Err(e) = session.umount_and_join() {
        // Busy (a program still has files open): detach now; the kernel
        // finishes the unmount when the last file closes.
        tracing::warn!(error = %e, "unmount failed; detaching lazily");
        if let Err(e) = nix::mount::umount2(&s.mountpoint, nix::mount::MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL {
                return Err(MountError::Mount {
                    mountpoint: s.mountpoint.clone(),
                    source: e.into(),
                });
            }
        }
    }
    remove_hidden(&hidden);
    tracing::info!(%ops, "FUSE requests served");
    Ok(())
}

/// At exit: files this mount kept under a hidden name are unreadable from
/// now on, whoever still holds them, so their names go.
fn remove_hidden(hidden: &crate::fs::HiddenFiles) {
    let n = hidden.remove_all();
    if n > 0 {
        tracing::info!(files = n, "removed the hidden names of files still open at exit");
    }
}
