//! An in-process memory server with real mTLS over a UNIX socket, for tests
//! of the memory clients and of what is built on them (the edge's shared state).

use conclave_mem::{MemGrants, MemLimits, MemOptions, MemServer, MemSpec, ServerKind};
use conclave_rpc::{Credentials, Endpoint, Role, Shutdown};
use std::path::PathBuf;
use std::sync::Arc;

/// A running smdish (or, `sealed`, smuf) server in a temp dir: its
/// certificates, the spec clients connect with, and the runtime serving it.
/// Shut down on drop.
pub struct MemFixture {
    /// The temp dir: `certs/`, `mem.sock` and, for smuf, `host/`.
    pub dir: tempfile::TempDir,
    /// The certificate directory (every role).
    pub certs: PathBuf,
    /// What clients connect to.
    pub spec: MemSpec,
    /// Fires on drop.
    pub shutdown: Shutdown,
    /// The runtime the server runs on (two workers).
    pub rt: tokio::runtime::Runtime,
    /// The service, for its counters.
    pub server: Arc<MemServer>,
}

impl MemFixture {
    /// Starts the server: smuf with host files in `dir/host` if `sealed`, else smdish.
    pub fn start(sealed: bool) -> MemFixture {
        Self::start_with(sealed, MemLimits::default())
    }

    /// [`start`](Self::start) with a lease and quotas of the test's choosing.
    pub fn start_with(sealed: bool, limits: MemLimits) -> MemFixture {
        Self::start_granted(sealed, limits, MemGrants::default())
    }

    /// [`start_with`](Self::start_with) with grants of the test's choosing
    /// (the default grants only `edge`; see [`edge_and_client_grants`]).
    pub fn start_granted(sealed: bool, limits: MemLimits, grants: MemGrants) -> MemFixture {
        let dir = tempfile::tempdir().unwrap();
        let certs = crate::certs(dir.path());
        let host = dir.path().join("host");
        let kind = if sealed {
            ServerKind::Smuf { dir: host.clone() }
        } else {
            ServerKind::Smdish
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = Shutdown::new();
        let creds = Credentials::from_dir(&certs, Role::MemServer).unwrap();
        let sock = Endpoint::Unix(dir.path().join("mem.sock"));
        let (server, endpoint) =
            MemServer::spawn_granted(kind, limits, grants, &sock, &creds, &shutdown, rt.handle()).unwrap();
        let spec = if sealed {
            MemSpec::Smuf { endpoint, dir: host }
        } else {
            MemSpec::Smdish { endpoint }
        };
        MemFixture {
            dir,
            certs,
            spec,
            shutdown,
            rt,
            server,
        }
    }

    /// Client options with the identity of `role`.
    pub fn options(&self, role: Role) -> MemOptions {
        MemOptions {
            creds: Some(Credentials::from_dir(&self.certs, role).unwrap()),
            secret_file: None,
        }
    }
}

/// `edge@*:rw:*` and `client@*:rw:*`: the grants of a memory server whose
/// tests use `client` as a second process beside the edge.
pub fn edge_and_client_grants() -> MemGrants {
    MemGrants::new(vec![
        "edge@*:rw:*".parse().expect("a grant"),
        "client@*:rw:*".parse().expect("a grant"),
    ])
}

impl Drop for MemFixture {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
