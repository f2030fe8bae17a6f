//! The memory server (`conclave memserver`): one [`MemServer`] serves either
//! smdish (segments held here) or smuf (segments sealed in host files, the
//! keys and versions held here). It is a lock manager with real wait queues:
//! `LOCK` parks in a FIFO queue until granted, only the holder may unlock,
//! and a connection that ends releases everything it held. One file per
//! operation.
//!
//! Every name lives in its opener's tenant namespace (the tenant named by
//! its certificate): the server keys memory files by `tenant/name`, so a
//! name opened by tenant B is B's own memory file and nothing of tenant A's
//! (its existence, size, contents or lock) is reachable from B. Within a
//! tenant, [`MemGrants`] decide at OPEN which roles may read or write which
//! names (`EACCES` otherwise); a read-only handle's publishing UNLOCK gets
//! `EACCES`.

mod close;
mod lock;
mod open;
mod peek;
mod renew;
mod unlock;

use crate::grant::{MemGrants, Mode};
use crate::proto::{self, KEY_LEN, TAG_LEN};
use conclave_rpc::{Frame, Identity, PeerInfo, Role, Service, Shutdown, Status};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

/// Roles allowed to use a memory server.
pub const CLIENT_ROLES: [Role; 2] = [Role::Edge, Role::Client];

/// Handles one connection may have open at once.
pub const MAX_HANDLES: usize = 1024;

/// Which memory server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Segments live in this process.
    Smdish,
    /// Segments live sealed in host files under `dir`.
    Smuf {
        /// The host directory (shared with the clients).
        dir: PathBuf,
    },
}

/// What a memory server allows one holder and one identity: the lock
/// lease and the byte quotas. Written once in
/// [`crate::MemServerSettings`]; the defaults are its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemLimits {
    /// How long a LOCK holds without RENEW before the server breaks it.
    pub lease: Duration,
    /// Total segment bytes of all memory files (`ENOSPC` beyond).
    pub max_bytes: u64,
    /// Segment bytes of the memory files one identity (the peer's role
    /// and tenant) created and that are still open (`EDQUOT` beyond).
    pub max_bytes_per_identity: u64,
}

impl Default for MemLimits {
    fn default() -> Self {
        MemLimits {
            lease: crate::settings::DEFAULT_LEASE,
            max_bytes: crate::settings::DEFAULT_MAX_BYTES,
            max_bytes_per_identity: crate::settings::DEFAULT_MAX_BYTES_PER_IDENTITY,
        }
    }
}

/// Who holds or waits for a lock: (connection id, handle).
pub(crate) type Holder = (u64, u32);

pub(crate) struct Waiter {
    who: Holder,
    grant: oneshot::Sender<()>,
}

/// What the server keeps of a segment.
pub(crate) enum Content {
    /// smdish: the canonical copy.
    Dish(Vec<u8>),
    /// smuf: the trusted metadata of the sealed host file.
    Uf {
        /// Grant whose key sealed the current contents.
        key_grant: u64,
        /// Their tag.
        tag: [u8; TAG_LEN],
        /// Grant of the current holder (its write key).
        write_grant: u64,
    },
}

pub(crate) struct MemFile {
    /// Distinguishes instances of one name over time (key separation).
    uid: u64,
    size: u64,
    /// The identity whose quota the segment counts against (its creator).
    owner: Identity,
    opens: usize,
    holder: Option<Holder>,
    /// When the holder's lease runs out.
    lease_until: Instant,
    /// Holders whose lease the server broke and who have not been told yet
    /// (their UNLOCK or RENEW gets `ETIMEDOUT` instead of `EPERM`).
    broken: Vec<Holder>,
    waiters: VecDeque<Waiter>,
    version: u64,
    content: Content,
}

impl MemFile {
    /// Hands the lock to the first waiter still waiting, with a fresh
    /// lease, or frees it.
    fn grant_next(&mut self, lease: Duration) {
        self.holder = None;
        while let Some(w) = self.waiters.pop_front() {
            if w.grant.send(()).is_ok() {
                self.grant(w.who, lease);
                return;
            }
        }
    }

    /// Makes `who` the holder for `lease` from now.
    fn grant(&mut self, who: Holder, lease: Duration) {
        self.holder = Some(who);
        self.lease_until = Instant::now() + lease;
        self.broken.retain(|b| *b != who);
    }

    /// Breaks the holder's lease if it ran out: the holder is remembered as
    /// broken (publishes nothing) and the next waiter gets the lock. True
    /// if a lease was broken.
    fn expire(&mut self, name: &str, lease: Duration) -> bool {
        match self.holder {
            Some(h) if Instant::now() >= self.lease_until => {
                tracing::warn!(
                    name,
                    conn = h.0,
                    lease_ms = lease.as_millis() as u64,
                    "lock lease ran out: broken, handed to the next waiter"
                );
                // Bounded: one entry per handle that held the lock and has not
                // come back; close removes it.
                self.broken.push(h);
                self.grant_next(lease);
                true
            }
            _ => false,
        }
    }

    /// `Ok` if `who` holds the lock with a live lease (breaking an expired
    /// one first); `ETIMEDOUT` if its lease was broken, `EPERM` otherwise.
    fn check_holder(&mut self, name: &str, who: Holder, lease: Duration) -> Result<(), Status> {
        self.expire(name, lease);
        if self.holder == Some(who) {
            return Ok(());
        }
        if let Some(i) = self.broken.iter().position(|b| *b == who) {
            self.broken.swap_remove(i);
            return Err(Status::ETIMEDOUT);
        }
        Err(Status::EPERM)
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// By [`file_key`]: `tenant/name`.
    files: HashMap<String, MemFile>,
    next_uid: u64,
    /// Segment bytes of all memory files.
    used: u64,
    /// Segment bytes per creating identity.
    used_by: HashMap<Identity, u64>,
}

/// The key of a memory file in [`State::files`]: its tenant and its name.
/// Tenants are DNS labels (no `/`), so the key names one pair.
pub(crate) fn file_key(id: &Identity, name: &str) -> String {
    format!("{}/{name}", id.tenant)
}

/// One open handle: which memory file, and what its grant allows.
pub(crate) struct OpenHandle {
    /// The memory file's [`file_key`].
    key: String,
    /// From the grant at OPEN.
    mode: Mode,
}

/// Per-connection state: the handles it opened.
pub struct ClientConn {
    id: u64,
    /// The peer's identity (its namespace, grants and quota).
    identity: Identity,
    handles: HashMap<u32, OpenHandle>,
    next_handle: u32,
}

impl ClientConn {
    /// The memory-file key and mode of handle `h` (`EBADF` if not open here).
    fn handle(&self, h: u32) -> Result<&OpenHandle, Status> {
        self.handles.get(&h).ok_or(Status::EBADF)
    }
}

/// Logs refusals (`EACCES`) at most once a second, with how many were not
/// logged: a client hammering names it may not use cannot flood the log.
#[derive(Default)]
struct RefusalLog {
    state: Mutex<Option<(Instant, u64)>>,
}

impl RefusalLog {
    fn refused(&self, identity: &Identity, op: &str, name: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *st {
            Some((last, ref mut quiet)) if now.duration_since(last) < Duration::from_secs(1) => *quiet += 1,
            prev => {
                let quiet = prev.map_or(0, |(_, q)| q);
                tracing::warn!(%identity, op, name, not_logged = quiet, "refused: no grant allows it");
                *st = Some((now, 0));
            }
        }
    }
}

/// A memory server of either kind.
pub struct MemServer {
    kind: ServerKind,
    state: Mutex<State>,
    shutdown: Shutdown,
    limits: MemLimits,
    grants: MemGrants,
    refusals: RefusalLog,
    next_conn: AtomicU64,
    next_grant: AtomicU64,
    /// smuf: never leaves this process; grant keys are derived from it.
    master: Zeroizing<[u8; KEY_LEN]>,
}

impl MemServer {
    /// A server of `kind` with the default [`MemLimits`]; waiting `LOCK`s
    /// give up with `EBUSY` when `shutdown` fires so a graceful stop never
    /// hangs on a held lock.
    pub fn new(kind: ServerKind, shutdown: Shutdown) -> Result<Self, std::io::Error> {
        Self::with_limits(kind, MemLimits::default(), shutdown)
    }

    /// A server of `kind` with `limits` (lease, quotas) and the default grants.
    pub fn with_limits(
        kind: ServerKind,
        limits: MemLimits,
        shutdown: Shutdown,
    ) -> Result<Self, std::io::Error> {
        Self::with_grants(kind, limits, MemGrants::default(), shutdown)
    }

    /// A server of `kind` with `limits` and `grants`.
    pub fn with_grants(
        kind: ServerKind,
        limits: MemLimits,
        grants: MemGrants,
        shutdown: Shutdown,
    ) -> Result<Self, std::io::Error> {
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(master.as_mut()).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
        if let ServerKind::Smuf { dir } = &kind {
            std::fs::create_dir_all(dir)?;
        }
        Ok(MemServer {
            kind,
            state: Mutex::new(State::default()),
            shutdown,
            limits,
            grants,
            refusals: RefusalLog::default(),
            next_conn: AtomicU64::new(1),
            next_grant: AtomicU64::new(1),
            master,
        })
    }

    /// The server options for this service: bodies up to a whole segment,
    /// and a long idle timeout, because an idle connection keeps its memory
    /// files alive (a dead client's socket closes at once; this bounds only
    /// peers lost without a FIN, e.g. a vanished TCP host).
    pub fn server_options() -> conclave_rpc::ServerOptions {
        conclave_rpc::ServerOptions {
            max_body: (crate::MAX_SEGMENT + 4096) as u32,
            idle_timeout: std::time::Duration::from_secs(24 * 3600),
            ..Default::default()
        }
    }

    /// The kind served.
    pub fn kind(&self) -> &ServerKind {
        &self.kind
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// smuf: the host file `ext` of the memory file `key` (a [`file_key`],
    /// so tenants never share a host file).
    fn host_path(&self, key: &str, ext: &str) -> Option<PathBuf> {
        match &self.kind {
            ServerKind::Smdish => None,
            ServerKind::Smuf { dir } => Some(dir.join(format!("{}.{ext}", crate::name::host_stem(key)))),
        }
    }

    fn remove_host_files(&self, key: &str) {
        for ext in ["seg", "new"] {
            if let Some(p) = self.host_path(key, ext) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Binds a memory server of `kind` on `ep` with the `memserver` identity
    /// `creds` and serves it on `rt` until `shutdown` fires: an in-process
    /// server (tests, embedding). Returns the service and the bound endpoint
    /// (port 0 resolved). `conclave memserver` does the same in the foreground.
    pub fn spawn(
        kind: ServerKind,
        ep: &conclave_rpc::Endpoint,
        creds: &conclave_rpc::Credentials,
        shutdown: &Shutdown,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<(std::sync::Arc<MemServer>, conclave_rpc::Endpoint)> {
        Self::spawn_with(kind, MemLimits::default(), ep, creds, shutdown, rt)
    }

    /// [`spawn`](Self::spawn) with `limits`.
    pub fn spawn_with(
        kind: ServerKind,
        limits: MemLimits,
        ep: &conclave_rpc::Endpoint,
        creds: &conclave_rpc::Credentials,
        shutdown: &Shutdown,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<(std::sync::Arc<MemServer>, conclave_rpc::Endpoint)> {
        Self::spawn_granted(kind, limits, MemGrants::default(), ep, creds, shutdown, rt)
    }

    /// [`spawn`](Self::spawn) with `limits` and `grants`.
    pub fn spawn_granted(
        kind: ServerKind,
        limits: MemLimits,
        grants: MemGrants,
        ep: &conclave_rpc::Endpoint,
        creds: &conclave_rpc::Credentials,
        shutdown: &Shutdown,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<(std::sync::Arc<MemServer>, conclave_rpc::Endpoint)> {
        let tls = creds.server_config().map_err(std::io::Error::other)?;
        let svc = std::sync::Arc::new(MemServer::with_grants(kind, limits, grants, shutdown.clone())?);
        let server = rt.block_on(conclave_rpc::Server::bind(ep, Some(tls), Self::server_options()))?;
        let bound = server.local_endpoint().clone();
        rt.spawn(server.serve(svc.clone(), shutdown.clone()));
        Ok((svc, bound))
    }

    /// Number of memory files alive (for tests and logs).
    pub fn file_count(&self) -> usize {
        self.state().files.len()
    }

    /// Segment bytes held now (what `max_bytes` bounds).
    pub fn bytes_used(&self) -> u64 {
        self.state().used
    }

    /// The limits this server enforces.
    pub fn limits(&self) -> MemLimits {
        self.limits
    }

    /// The grants this server enforces.
    pub fn grants(&self) -> &MemGrants {
        &self.grants
    }
}

impl Service for MemServer {
    type Conn = ClientConn;

    fn open(&self, peer: &PeerInfo) -> Result<ClientConn, Status> {
        peer.require_role(&CLIENT_ROLES)?;
        let identity = peer.identity().ok_or(Status::EACCES)?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %peer.addr, %identity, id, "client connected");
        Ok(ClientConn {
            id,
            identity,
            handles: HashMap::new(),
            next_handle: 1,
        })
    }

    async fn call(&self, conn: &mut ClientConn, req: Frame) -> Frame {
        let res = match req.code {
            proto::OPEN => open::handle(self, conn, &req.body),
            proto::CLOSE => close::handle(self, conn, &req.body),
            proto::LOCK => lock::handle(self, conn, &req.body).await,
            proto::UNLOCK => unlock::handle(self, conn, &req.body),
            proto::PEEK => peek::handle(self, conn, &req.body),
            proto::RENEW => renew::handle(self, conn, &req.body),
            proto::NEW_FDTABLE | proto::FORK | proto::CHILD_ATTACH | proto::MMAP => Err(Status::ENOSYS),
            _ => Err(Status::ENOSYS),
        };
        res.unwrap_or_else(Frame::error)
    }

    fn close(&self, conn: ClientConn) {
        for (h, open) in conn.handles {
            close::close_handle(self, (conn.id, h), &open.key);
        }
        tracing::debug!(id = conn.id, "client disconnected");
    }
}
