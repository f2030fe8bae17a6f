//! The server loop shared by every service: one task per connection, a cap
//! on connections, handshake and idle timeouts, a per-service body limit, and
//! graceful shutdown (stop accepting, finish requests already received).

use crate::endpoint::Endpoint;
use crate::frame::{read_body, read_header, write_frame, Frame, FrameError, Header};
use crate::role::Role;
use crate::shutdown::Shutdown;
use crate::status::Status;
use crate::stream::AsyncStream;
use crate::tls::peer_role;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Bodies over the limit but under this many bytes are read and dropped so
/// the connection survives the error; larger ones close the connection.
const MAX_DISCARD: u64 = 64 * 1024 * 1024;

/// Limits and timeouts of one server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Largest request body accepted; larger ones get `E2BIG`.
    pub max_body: u32,
    /// How long a connection may sit without sending a whole request.
    pub idle_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body: 1024 * 1024 + 4096,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The role named by the client's certificate (None without TLS; a TLS
    /// peer without a recognised role never reaches a service).
    pub role: Option<Role>,
    /// The peer's address, for logs.
    pub addr: String,
}

impl PeerInfo {
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
        let slots = Arc::new(Semaphore::new(self.opts.max_connections));
        let opts = Arc::new(self.opts.clone());
        debug!(endpoint = %self.local, "serving");
        loop {
            let accepted: io::Result<(Box<dyn AsyncStream>, String)> = tokio::select! {
                _ = shutdown.wait() => break,
                r = accept(&self.listener) => r,
            };
            let (stream, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                warn!(peer = %addr, limit = opts.max_connections, "connection limit reached; closing new connection");
                continue;
            };
            let (svc, opts, tls, shutdown) = (svc.clone(), opts.clone(), self.tls.clone(), shutdown.clone());
            tracker.spawn(async move {
                let _permit = permit;
                handle(stream, addr, tls, svc, opts, shutdown).await;
            });
        }
        drop(self.listener);
        tracker.close();
        tracker.wait().await;
        debug!(endpoint = %self.local, "stopped");
        Ok(())
    }
}

async fn accept(l: &Listener) -> io::Result<(Box<dyn AsyncStream>, String)> {
    match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            s.set_nodelay(true)?;
            Ok((Box::new(s), a.to_string()))
        }
        Listener::Unix(l, p) => {
            let (s, _) = l.accept().await?;
            Ok((Box::new(s), format!("unix:{}", p.display())))
        }
    }
}

async fn handle<S: Service>(
    stream: Box<dyn AsyncStream>,
    addr: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
    svc: Arc<S>,
    opts: Arc<ServerOptions>,
    shutdown: Shutdown,
) {
    match tls {
        None => {
            let peer = PeerInfo { role: None, addr };
            serve_conn(stream, peer, false, svc, opts, shutdown).await
        }
        Some(acc) => {
            let s = match tokio::time::timeout(opts.handshake_timeout, acc.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(peer = %addr, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    warn!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let role = peer_role(s.get_ref().1.peer_certificates());
            let peer = PeerInfo { role, addr };
            serve_conn(s, peer, true, svc, opts, shutdown).await
        }
    }
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

async fn serve_conn<S: Service, T: AsyncStream>(
    mut s: T,
    peer: PeerInfo,
    tls: bool,
    svc: Arc<S>,
    opts: Arc<ServerOptions>,
    shutdown: Shutdown,
) {
    let mut conn = match admit(&*svc, &peer, tls) {
        Ok(c) => c,
        Err(st) => {
            warn!(peer = %peer.addr, role = ?peer.role, "client refused: {st}");
            // Answer the client's first request rather than writing first and
            // closing: a client still sending would otherwise see a broken
            // pipe instead of the status.
            let first = tokio::time::timeout(opts.idle_timeout, read_header(&mut s)).await;
            if let Ok(Ok(Some(hdr))) = first {
                if hdr.len as u64 <= MAX_DISCARD && discard(&mut s, hdr.len as u64, opts.idle_timeout).await {
                    let _ = write_frame(&mut s, &Frame::error(st)).await;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
            return;
        }
    };
    loop {
        let hdr = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            r = tokio::time::timeout(opts.idle_timeout, read_header(&mut s)) => r,
        };
        let hdr: Header = match hdr {
            Err(_) => {
                debug!(peer = %peer.addr, "idle timeout");
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(h))) => h,
            Ok(Err(e)) => {
                debug!(peer = %peer.addr, "bad frame: {e}");
                break;
            }
        };
        if hdr.len > opts.max_body {
            warn!(peer = %peer.addr, opcode = hdr.code, len = hdr.len, max = opts.max_body, "oversized request");
            if write_frame(&mut s, &Frame::error(Status::E2BIG)).await.is_err() {
                break;
            }
            if hdr.len as u64 > MAX_DISCARD || !discard(&mut s, hdr.len as u64, opts.idle_timeout).await {
                break;
            }
            continue;
        }
        let req = match tokio::time::timeout(opts.idle_timeout, read_body(&mut s, hdr, opts.max_body)).await {
            Ok(Ok(f)) => f,
            Ok(Err(FrameError::ShortBody { got, len })) => {
                debug!(peer = %peer.addr, "connection closed inside a body ({got}/{len})");
                break;
            }
            Ok(Err(e)) => {
                debug!(peer = %peer.addr, "read failed: {e}");
                break;
            }
            Err(_) => {
                warn!(peer = %peer.addr, "body not received within the idle timeout");
                break;
            }
        };
        let reply = svc.call(&mut conn, req).await;
        if write_frame(&mut s, &reply).await.is_err() {
            break;
        }
    }
    svc.close(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
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
