//! The key server as an RPC service: refuses at connect time every client
//! no grant names (by default all but `edge@default`), then dispatches by
//! opcode with an exhaustive match (unknown and retired opcodes get
//! `ENOSYS`; the original crashed on some). Each operation sees the caller's
//! identity, so keys are listed, described and used only as granted.

use crate::grants::KeyGrants;
use crate::op;
use crate::pool::SigningPool;
use crate::rate::{IdentityLimit, RateLimits, DEFAULT_MAX_SIGNS_PER_SEC};
use crate::store::KeyStore;
use conclave_rpc::{Frame, Identity, PeerInfo, ServerOptions, Service, Status};
use tracing::{debug, info};

/// How the key server runs.
#[derive(Clone, Debug)]
pub struct KeyServerOptions {
    /// Signing threads when not `inline` (0 = one per core).
    pub threads: usize,
    /// Signing jobs that may wait for a thread when not `inline`; more get
    /// `EAGAIN`.
    pub queue: usize,
    /// Sign on the runtime thread that read the request, with no pool
    /// (see [`SigningPool::inline`]); `threads` and `queue` are then unused.
    /// The default: the pool's two thread hand-offs per signature cost more
    /// CPU than they save (docs/benchmarks-keys.md).
    pub inline: bool,
    /// Who may use which key (by default `edge:*`).
    pub grants: KeyGrants,
    /// Sign only TLS handshake content ([`crate::shape`]); else `EPERM`.
    pub handshake_only: bool,
    /// Signatures per second per identity (0 = no limit); over it, `EAGAIN`.
    pub max_signs_per_sec: u32,
    /// The fleet's ticket-key secret (`TICKET_KEYS`); `None`: `ENOTSUP`.
    pub tickets: Option<std::sync::Arc<crate::op::ticket_keys::TicketKeySource>>,
}

impl Default for KeyServerOptions {
    fn default() -> Self {
        KeyServerOptions {
            threads: 0,
            queue: 4096,
            inline: true,
            grants: KeyGrants::default(),
            handshake_only: true,
            max_signs_per_sec: DEFAULT_MAX_SIGNS_PER_SEC,
            tickets: None,
        }
    }
}

/// The service: a key store, a signing pool and the rules of who signs what.
pub struct KeyServer {
    store: KeyStore,
    pool: SigningPool,
    grants: KeyGrants,
    handshake_only: bool,
    limits: RateLimits,
    tickets: Option<std::sync::Arc<crate::op::ticket_keys::TicketKeySource>>,
}

/// Per-connection state: who is calling (checked against the grants on
/// every operation) and that identity's rate limit.
pub struct Caller {
    addr: String,
    identity: Identity,
    limit: IdentityLimit,
}

impl Caller {
    /// The caller's identity, from its certificate.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The caller's signing rate limit (shared with its other connections).
    pub fn limit(&self) -> &IdentityLimit {
        &self.limit
    }
}

impl KeyServer {
    /// A service over `store`, with its signing threads started.
    pub fn new(store: KeyStore, opts: &KeyServerOptions) -> std::io::Result<KeyServer> {
        let pool = if opts.inline {
            SigningPool::inline()
        } else {
            SigningPool::new(opts.threads, opts.queue)?
        };
        info!(
            keys = store.len(),
            threads = pool.threads(),
            inline = opts.inline,
            handshake_only = opts.handshake_only,
            max_signs_per_sec = opts.max_signs_per_sec,
            "key server ready"
        );
        for g in opts.grants.iter() {
            info!(grant = %g, "granted");
        }
        Ok(KeyServer {
            store,
            pool,
            grants: opts.grants.clone(),
            handshake_only: opts.handshake_only,
            limits: RateLimits::new(opts.max_signs_per_sec),
            tickets: opts.tickets.clone(),
        })
    }

    /// The limits the RPC layer should enforce for this service, and its
    /// connection mode ([`crate::settings::DEFAULT_CONNECTIONS`]).
    pub fn server_options() -> ServerOptions {
        ServerOptions {
            max_body: op::MAX_BODY,
            connections: crate::settings::DEFAULT_CONNECTIONS,
            ..ServerOptions::default()
        }
    }

    /// The keys served.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Signing threads.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The signing pool.
    pub(crate) fn pool(&self) -> &SigningPool {
        &self.pool
    }

    /// The grants enforced.
    pub fn grants(&self) -> &KeyGrants {
        &self.grants
    }

    /// True if only handshake-shaped messages are signed.
    pub fn handshake_only(&self) -> bool {
        self.handshake_only
    }
}

impl Service for KeyServer {
    type Conn = Caller;

    fn open(&self, peer: &PeerInfo) -> Result<Caller, Status> {
        let identity = peer.identity().ok_or(Status::EACCES)?;
        let ticket_only = self
            .tickets
            .as_ref()
            .is_some_and(|t| t.grants().admits(&identity));
        if !self.grants.admits(&identity) && !ticket_only {
            debug!(peer = %peer.addr, %identity, "refused: no key is granted to this identity");
            return Err(Status::EACCES);
        }
        Ok(Caller {
            addr: peer.addr.clone(),
            limit: self.limits.for_identity(&identity),
            identity,
        })
    }

    async fn call(&self, conn: &mut Caller, req: Frame) -> Frame {
        let res = match req.code {
            op::SIGN => op::sign::handle(self, conn, &req.body).await,
            op::LIST_KEYS => op::list::handle(&self.store, &self.grants, &conn.identity, &req.body),
            op::GET_KEY => op::get_key::handle(&self.store, &self.grants, &conn.identity, &req.body),
            op::TICKET_KEYS => op::ticket_keys::handle(self.tickets.as_deref(), &conn.identity, &req.body),
            _ => Err(Status::ENOSYS),
        };
        match res {
            Ok(body) => Frame::ok(body),
            Err(st) => {
                debug!(peer = %conn.addr, identity = %conn.identity, opcode = req.code, "refused: {st}");
                Frame::error(st)
            }
        }
    }
}
