//! The key server as an RPC service: refuses every client but the `edge`
//! role at connect time, then dispatches by opcode with an exhaustive match
//! (unknown and retired opcodes get `ENOSYS`; the original crashed on some).

use crate::op;
use crate::pool::SigningPool;
use crate::store::KeyStore;
use crate::CLIENT_ROLE;
use conclave_rpc::{Frame, PeerInfo, ServerOptions, Service, Status};
use tracing::{debug, info};

/// How the key server runs.
#[derive(Clone, Debug)]
pub struct KeyServerOptions {
    /// Signing threads (0 = one per core).
    pub threads: usize,
    /// Signing jobs that may wait for a thread; more get `EAGAIN`.
    pub queue: usize,
    /// Sign on the runtime thread that read the request, with no pool
    /// (see [`SigningPool::inline`]); `threads` and `queue` are then unused.
    pub inline: bool,
    /// Roles allowed to call (by default only `edge`).
    pub allowed_roles: Vec<conclave_rpc::Role>,
}

impl Default for KeyServerOptions {
    fn default() -> Self {
        KeyServerOptions {
            threads: 0,
            queue: 4096,
            inline: false,
            allowed_roles: vec![CLIENT_ROLE],
        }
    }
}

/// The service: a key store and a signing pool.
pub struct KeyServer {
    store: KeyStore,
    pool: SigningPool,
    allowed_roles: Vec<conclave_rpc::Role>,
}

/// Per-connection state: who is calling, for logs.
pub struct Caller {
    addr: String,
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
            "key server ready"
        );
        Ok(KeyServer {
            store,
            pool,
            allowed_roles: opts.allowed_roles.clone(),
        })
    }

    /// The limits the RPC layer should enforce for this service.
    pub fn server_options() -> ServerOptions {
        ServerOptions {
            max_body: op::MAX_BODY,
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
}

impl Service for KeyServer {
    type Conn = Caller;

    fn open(&self, peer: &PeerInfo) -> Result<Caller, Status> {
        peer.require_role(&self.allowed_roles)?;
        Ok(Caller {
            addr: peer.addr.clone(),
        })
    }

    async fn call(&self, conn: &mut Caller, req: Frame) -> Frame {
        let res = match req.code {
            op::SIGN => op::sign::handle(&self.store, &self.pool, &req.body).await,
            op::LIST_KEYS => op::list::handle(&self.store, &req.body),
            op::GET_KEY => op::get_key::handle(&self.store, &req.body),
            _ => Err(Status::ENOSYS),
        };
        match res {
            Ok(body) => Frame::ok(body),
            Err(st) => {
                debug!(peer = %conn.addr, opcode = req.code, "refused: {st}");
                Frame::error(st)
            }
        }
    }
}
