//! The server loop shared by every service: one task per connection (or,
//! once admitted, one thread: [`ConnectionMode`]), a cap
//! on connections that sheds unauthenticated peers first (`admission`),
//! per-address and per-identity limits, handshake and idle timeouts, a
//! per-service body limit, refusals logged with counts (`refusals`), and
//! graceful shutdown (stop accepting, finish requests already received).

use crate::admission::{Admission, NoSlot, NotAdmitted, Slot};
use crate::conn_thread::{self, Live};
use crate::connection_mode::ConnectionMode;
use crate::endpoint::Endpoint;
use crate::frame::{read_header, write_frame, Frame};
use crate::identity::{Identity, Tenant};
use crate::limits;
use crate::refusals::{Kind, Refusals, LOG_INTERVAL};
use crate::requests::{Gate, Next, Requests, MAX_DISCARD};
use crate::role::Role;
use crate::shutdown::Shutdown;
use crate::socket::{Accepted, SendOne};
use crate::status::Status;
use crate::stream::AsyncStream;
use crate::tls::peer_identity;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::time::Instant;
use tokio::time::MissedTickBehavior;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// How long one blocking write of a connection thread may wait for a peer
/// that does not read, unless a server says otherwise.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits and timeouts of one server. The connection limits have command-line
/// flags in [`ServerLimits`](crate::limits::ServerLimits); see
/// docs/protocol.md, "Limits", for how they work together.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest request body accepted; larger ones get `E2BIG`.
    pub max_body: u32,
    /// How long a connection may sit without sending a whole request.
    pub idle_timeout: Duration,
    /// How long a TLS handshake may take; a refused client also has this
    /// long to send the first request its refusal answers.
    pub handshake_timeout: Duration,
    /// Connections served at once. When all are taken, the oldest
    /// unauthenticated one is shed for a new one; a new connection is closed
    /// at accept only when every slot holds an authenticated client.
    pub max_connections: usize,
    /// Unauthenticated TCP connections one source address may hold; more are
    /// closed at accept.
    pub max_conns_per_addr: usize,
    /// Authenticated connections one identity (certificate role and tenant) may hold;
    /// more get `EMFILE` as the reply to their first request.
    pub max_conns_per_identity: usize,
    /// Requests one identity may have being served at once; more get `EAGAIN`.
    pub max_inflight_per_identity: usize,
    /// Where admitted connections are served: tasks on the runtime, or a
    /// thread each.
    pub connections: ConnectionMode,
    /// How long one write of replies may wait on a peer that does not read
    /// before the connection is closed, so such a peer cannot hold a task or
    /// thread, its connection slot and a graceful shutdown for longer.
    pub write_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body: 1024 * 1024 + 4096,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: limits::DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_conns_per_addr: limits::DEFAULT_MAX_CONNS_PER_ADDR,
            max_conns_per_identity: limits::DEFAULT_MAX_CONNS_PER_IDENTITY,
            max_inflight_per_identity: limits::DEFAULT_MAX_INFLIGHT_PER_IDENTITY,
            connections: ConnectionMode::default(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The role named by the client's certificate (None without TLS; a TLS
    /// peer without a recognised role never reaches a service).
    pub role: Option<Role>,
    /// The tenant named by the client's certificate (`default` when it
    /// names none; None without TLS).
    pub tenant: Option<Tenant>,
    /// The peer's address, for logs.
    pub addr: String,
}

impl PeerInfo {
    /// The peer's identity (role and tenant), if its certificate names a role.
    pub fn identity(&self) -> Option<Identity> {
        Some(Identity::new(self.role?, self.tenant.clone().unwrap_or_default()))
    }

    /// `Ok` if the peer's certificate names one of `roles`, else `EACCES`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), Status> {
        match self.role {
            Some(r) if roles.contains(&r) => Ok(()),
            _ => Err(Status::EACCES),
        }
    }
}

/// What a service does with requests. `Conn` is per-connection state (a
/// descriptor table, a lock owner id...).
pub trait Service: Send + Sync + 'static {
    /// Per-connection state.
    type Conn: Send + 'static;

    /// Called after the handshake; an error refuses the client (it gets that
    /// status as the reply to its first request).
    fn open(&self, peer: &PeerInfo) -> Result<Self::Conn, Status>;

    /// Handles one request and returns the reply. Unknown opcodes must get
    /// `ENOSYS`, malformed bodies `EPROTO`.
    fn call(&self, conn: &mut Self::Conn, req: Frame) -> impl Future<Output = Frame> + Send;

    /// Called when the connection ends, however it ends.
    fn close(&self, _conn: Self::Conn) {}
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A bound, not yet serving, RPC server.
pub struct Server {
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    opts: ServerOptions,
    local: Endpoint,
}

impl Server {
    /// Binds `ep` (port 0 picks a free port). A stale UNIX socket file is
    /// replaced; any other file at that path is an error.
    pub async fn bind(
        ep: &Endpoint,
        tls: Option<Arc<rustls::ServerConfig>>,
        opts: ServerOptions,
    ) -> io::Result<Server> {
        let (listener, local) = match ep {
            Endpoint::Tcp(a) => {
                let l = TcpListener::bind(a.as_str()).await?;
                let local = Endpoint::Tcp(l.local_addr()?.to_string());
                (Listener::Tcp(l), local)
            }
            Endpoint::Unix(p) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(md) = std::fs::symlink_metadata(p) {
                    if md.file_type().is_socket() {
                        std::fs::remove_file(p)?;
                    } else {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a socket", p.display()),
                        ));
                    }
                }
                let l = UnixListener::bind(p)?;
                (Listener::Unix(l, p.clone()), ep.clone())
            }
        };
        Ok(Server {
            listener,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            opts,
            local,
        })
    }

    /// The address actually bound (with the real port).
    pub fn local_endpoint(&self) -> &Endpoint {
        &self.local
    }

    /// Serves until `shutdown` fires, then waits for in-flight requests.
    pub async fn serve<S: Service>(self, svc: Arc<S>, shutdown: Shutdown) -> io::Result<()> {
        let tracker = TaskTracker::new();
        let o = &self.opts;
        let ctx = Arc::new(Ctx {
            adm: Admission::new(
                o.max_connections,
                o.max_conns_per_addr,
                o.max_conns_per_identity,
                o.max_inflight_per_identity,
            ),
            refusals: Refusals::new(&self.local),
            opts: self.opts.clone(),
            live: Live::default(),
        });
        // Twice per interval, so the tail of a burst is written soon after
        // its line is due, and a late tick never skips a whole interval.
        let mut tick = tokio::time::interval(LOG_INTERVAL / 2);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        debug!(endpoint = %self.local, "serving");
        loop {
            let accepted: io::Result<(Accepted, String, Option<IpAddr>)> = tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    ctx.refusals.flush();
                    continue;
                }
                r = accept(&self.listener) => r,
            };
            let (stream, addr, ip) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let slot = match ctx.adm.accept(ip) {
                Ok(slot) => slot,
                Err(no) => {
                    // Dropping the stream closes it: nothing is sent, so a
                    // refusal costs no more than the accept.
                    let kind = match no {
                        NoSlot::AllAuthenticated => Kind::AllAuthenticated,
                    };
                    ctx.refusals.note(kind, &addr, &"");
                    continue;
                }
            };
            let (svc, ctx, tls, shutdown) = (svc.clone(), ctx.clone(), self.tls.clone(), shutdown.clone());
            let token = tracker.token();
            tracker.spawn(handle(stream, addr, slot, tls, svc, ctx, shutdown, token));
        }
        drop(self.listener);
        ctx.live.stop();
        tracker.close();
        tracker.wait().await;
        ctx.refusals.drain();
        debug!(endpoint = %self.local, "stopped");
        Ok(())
    }
}

/// What every connection (task or thread) of one server shares.
pub(crate) struct Ctx {
    pub(crate) opts: ServerOptions,
    pub(crate) adm: Arc<Admission>,
    pub(crate) refusals: Refusals,
    /// Connection threads' sockets, woken at shutdown.
    pub(crate) live: Live,
}

async fn accept(l: &Listener) -> io::Result<(Accepted, String, Option<IpAddr>)> {
    match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Accepted::Tcp(s), a.to_string(), Some(a.ip())))
        }
        Listener::Unix(l, p) => {
            let (s, _) = l.accept().await?;
            Ok((Accepted::Unix(s), format!("unix:{}", p.display()), None))
        }
    }
}

/// An authenticated stream, before it is served.
enum Established {
    Plain(Accepted),
    Tls(Box<tokio_rustls::server::TlsStream<Accepted>>),
}

/// One connection, from accept to close. Until it is authenticated it may be
/// shed (its slot given to a newer connection) at any await point.
#[allow(clippy::too_many_arguments)]
async fn handle<S: Service>(
    stream: Accepted,
    addr: String,
    mut slot: Slot,
    tls: Option<tokio_rustls::TlsAcceptor>,
    svc: Arc<S>,
    ctx: Arc<Ctx>,
    shutdown: Shutdown,
    token: TaskTrackerToken,
) {
    let shed = slot.shed_signal();
    let established = tokio::select! {
        biased;
        _ = shed.cancelled() => {
            ctx.refusals.note(Kind::Shed, &addr, &"");
            return;
        }
        _ = shutdown.wait() => return,
        r = establish(stream, addr.clone(), &mut slot, tls, &*svc, &ctx) => r,
    };
    let Some((stream, peer, conn)) = established else {
        return;
    };
    if ctx.opts.connections == ConnectionMode::Threads {
        // Out of the reactor: the rustls session moves over as it is, with
        // anything it has buffered.
        let failed = match stream {
            Established::Plain(s) => match s.into_shared() {
                Ok(s) => return conn_thread::spawn(s, peer, conn, slot, svc, ctx, token),
                Err(e) => e,
            },
            Established::Tls(t) => {
                let (io, session) = t.into_inner();
                match io.into_shared() {
                    Ok(s) => {
                        let s = rustls::StreamOwned::new(session, SendOne(s));
                        return conn_thread::spawn(s, peer, conn, slot, svc, ctx, token);
                    }
                    Err(e) => e,
                }
            }
        };
        warn!(peer = %peer.addr, "cannot hand a connection to a thread: {failed}");
        svc.close(conn);
        return;
    }
    let inflight = slot.inflight_counter();
    match stream {
        Established::Plain(s) => serve_conn(s, peer, conn, inflight, svc, ctx, shutdown).await,
        Established::Tls(s) => serve_conn(s, peer, conn, inflight, svc, ctx, shutdown).await,
    }
    drop(slot);
}

/// The TLS handshake and admission: the connection's service state once
/// it is authenticated and admitted, or `None` (refused, counted, closed).
async fn establish<S: Service>(
    stream: Accepted,
    addr: String,
    slot: &mut Slot,
    tls: Option<tokio_rustls::TlsAcceptor>,
    svc: &S,
    ctx: &Ctx,
) -> Option<(Established, PeerInfo, S::Conn)> {
    let deadline = ctx.opts.handshake_timeout;
    let (s, peer, is_tls): (Established, PeerInfo, bool) = match tls {
        None => (
            Established::Plain(stream),
            PeerInfo {
                role: None,
                tenant: None,
                addr,
            },
            false,
        ),
        Some(acc) => match tokio::time::timeout(deadline, acc.accept(stream)).await {
            Ok(Ok(s)) => {
                let id = peer_identity(s.get_ref().1.peer_certificates());
                let (role, tenant) = match id {
                    Some(id) => (Some(id.role), Some(id.tenant)),
                    None => (None, None),
                };
                (
                    Established::Tls(Box::new(s)),
                    PeerInfo { role, tenant, addr },
                    true,
                )
            }
            Ok(Err(e)) => {
                ctx.refusals.note(Kind::HandshakeFailed, &addr, &e);
                return None;
            }
            Err(_) => {
                ctx.refusals.note(Kind::HandshakeTimeout, &addr, &"");
                return None;
            }
        },
    };
    let (kind, st) = match admit(svc, &peer, is_tls) {
        Err(st) => (Kind::Role, st),
        Ok(conn) => match slot.authenticate(peer.identity()) {
            Ok(()) => return Some((s, peer, conn)),
            Err(NotAdmitted::Shed) => {
                svc.close(conn);
                ctx.refusals.note(Kind::Shed, &peer.addr, &"");
                return None;
            }
            Err(NotAdmitted::IdentityFull) => {
                svc.close(conn);
                (Kind::IdentityConns, Status::EMFILE)
            }
        },
    };
    let who = peer
        .identity()
        .map_or_else(|| "no role".to_string(), |id| id.to_string());
    ctx.refusals.note(kind, &peer.addr, &format_args!("{who}: {st}"));
    match s {
        Established::Plain(s) => goodbye(s, st, deadline).await,
        Established::Tls(s) => goodbye(s, st, deadline).await,
    }
    None
}

/// Answers a refused client's first request with `st`, rather than writing
/// first and closing: a client still sending would otherwise see a broken
/// pipe instead of the status. The connection is still pending (sheddable)
/// and the whole goodbye is bounded by the handshake deadline.
async fn goodbye<T: AsyncStream>(mut s: T, st: Status, deadline: Duration) {
    let _ = tokio::time::timeout(deadline, async {
        if let Ok(Some(hdr)) = read_header(&mut s).await {
            if hdr.len as u64 <= MAX_DISCARD && discard(&mut s, hdr.len as u64, deadline).await {
                let _ = write_frame(&mut s, &Frame::error(st)).await;
            }
        }
        let _ = s.shutdown().await;
    })
    .await;
}

/// The one admission rule of every conclave server: over TLS, a certificate
/// that names no recognised role is refused with `EACCES` before the service
/// sees it; then the service applies its own check (`Service::open`).
fn admit<S: Service>(svc: &S, peer: &PeerInfo, tls: bool) -> Result<S::Conn, Status> {
    if tls && peer.role.is_none() {
        return Err(Status::EACCES);
    }
    svc.open(peer)
}

/// Serves one admitted connection. Frames are answered strictly in order
/// (pipelining clients match replies by order, docs/protocol.md): every
/// whole frame already read is answered before the next read, and their
/// replies leave in one write, so a burst of N requests costs one read and
/// one write rather than N of each. The idle deadline is checked lazily
/// (one timer per connection, re-armed only when it fires) instead of a
/// timer armed and cancelled per request.
async fn serve_conn<S: Service, T: AsyncStream>(
    mut s: T,
    peer: PeerInfo,
    mut conn: S::Conn,
    inflight_counter: Option<Arc<std::sync::atomic::AtomicUsize>>,
    svc: Arc<S>,
    ctx: Arc<Ctx>,
    shutdown: Shutdown,
) {
    let opts = &ctx.opts;
    let gate = Gate {
        adm: &ctx.adm,
        refusals: &ctx.refusals,
        peer: &peer,
        inflight: inflight_counter.as_deref(),
    };
    let mut rq = Requests::new(opts.max_body);
    // A request must arrive whole within `idle_timeout` of the last reply.
    let mut last = Instant::now();
    let idle = tokio::time::sleep(opts.idle_timeout);
    let stopped = shutdown.wait();
    tokio::pin!(idle, stopped);
    'conn: loop {
        loop {
            match rq.next(&gate) {
                Next::Request(req, inflight) => {
                    let reply = svc.call(&mut conn, req).await;
                    drop(inflight);
                    match rq.reply(reply) {
                        Ok(None) => {}
                        Ok(Some(big)) => {
                            if send(&mut s, &mut rq.out, opts.write_timeout).await.is_err()
                                || within(opts.write_timeout, write_frame(&mut s, &big))
                                    .await
                                    .is_err()
                            {
                                break 'conn;
                            }
                        }
                        Err(_) => break 'conn,
                    }
                }
                Next::More => break,
                Next::Close => {
                    let _ = send(&mut s, &mut rq.out, opts.write_timeout).await;
                    break 'conn;
                }
            }
        }
        if !rq.out.is_empty() {
            if let Err(e) = send(&mut s, &mut rq.out, opts.write_timeout).await {
                debug!(peer = %peer.addr, "write failed: {e}");
                break;
            }
            last = Instant::now();
        }
        rq.make_room();
        let read = tokio::select! {
            biased;
            _ = &mut stopped => break,
            r = s.read_buf(&mut rq.inbuf) => r,
            _ = &mut idle => {
                let due = last + opts.idle_timeout;
                if Instant::now() < due {
                    idle.as_mut().reset(due);
                    continue;
                }
                if !rq.inside_frame() {
                    debug!(peer = %peer.addr, "idle timeout");
                } else {
                    warn!(peer = %peer.addr, "request not received whole within the idle timeout");
                }
                break;
            }
        };
        match read {
            Ok(0) => {
                if rq.inside_frame() {
                    debug!(peer = %peer.addr, buffered = rq.inbuf.len(), "connection closed inside a frame");
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                debug!(peer = %peer.addr, "read failed: {e}");
                break;
            }
        }
    }
    svc.close(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
}

/// Writes the collected replies in one write and flushes them, within
/// `limit`: a peer that sends requests but never reads the replies fills the
/// socket buffers, and must not hold its task, its connection slot and a
/// graceful shutdown for ever.
async fn send<T: AsyncStream>(s: &mut T, out: &mut Vec<u8>, limit: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    within(limit, async {
        s.write_all(out).await?;
        s.flush().await
    })
    .await?;
    out.clear();
    Ok(())
}

/// `write` within `limit`, else a `TimedOut` error.
async fn within(limit: Duration, write: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer read no reply for {} ms", limit.as_millis()),
        )),
    }
}

/// Reads and drops `n` bytes; false if the stream ended or stalled.
async fn discard<T: AsyncStream>(s: &mut T, mut n: u64, idle: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        match tokio::time::timeout(idle, s.read(&mut buf[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
            Ok(Ok(k)) => n -= k as u64,
        }
    }
    true
}
