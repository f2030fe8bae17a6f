//! Accepting and serving connections: TLS, HTTP/1.1 or HTTP/2 by ALPN, the
//! connection cap, the header and idle timeouts, graceful shutdown.

use crate::site::Site;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Per-process connection limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS handshake and each request head must finish within this.
    pub header_timeout: Duration,
    /// Close a connection idle this long.
    pub keepalive_timeout: Duration,
    /// Max request head bytes (431 beyond).
    pub max_header_bytes: usize,
}

/// Binds `addr` with SO_REUSEPORT so several worker processes share the port.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    TcpListener::from_std(s.into())
}

fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A stream that records the time of its last successful read or write, and
/// closes lingeringly: when dropped it keeps reading (and discarding) for up to
/// [`LINGER`] so a client still sending (e.g. a refused 100 KiB header) reads our
/// answer instead of a reset (nginx's `lingering_close`).
struct IdleIo<T: AsyncRead + Unpin + Send + 'static> {
    inner: Option<T>,
    last: Arc<AtomicU64>,
}

/// How long a closed connection's leftover input is drained.
const LINGER: Duration = Duration::from_secs(2);

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream already closed")
}

impl<T: AsyncRead + Unpin + Send + 'static> Drop for IdleIo<T> {
    fn drop(&mut self) {
        let (Some(mut inner), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER, async {
                while let Ok(n) = inner.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

impl<T: AsyncRead + Unpin + Send + 'static> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.store(clock_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(clock_ms(), Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let r = Pin::new(inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(clock_ms(), Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Runs `conn` until it ends or its stream has been idle for `idle`.
async fn with_idle_timeout<F: std::future::Future>(conn: F, last: Arc<AtomicU64>, idle: Duration) {
    tokio::pin!(conn);
    let idle_ms = idle.as_millis() as u64;
    let mut wait = idle;
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = tokio::time::sleep(wait) => {
                let quiet = clock_ms().saturating_sub(last.load(Ordering::Relaxed));
                if quiet >= idle_ms {
                    return;
                }
                wait = Duration::from_millis(idle_ms - quiet);
            }
        }
    }
}

/// Everything an accept loop needs.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS, or `None` for plain HTTP (the origin).
    pub tls: Option<TlsAcceptor>,
    /// What to serve.
    pub site: Arc<Site>,
}

/// Accepts until `stop` turns true, serving each connection in its own task.
pub async fn accept_loop(
    l: Listener,
    limits: Arc<Limits>,
    cap: Arc<Semaphore>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size((limits.max_header_bytes + 16 * 1024).max(8192))
        .max_header_size(limits.max_header_bytes)
        .writev(false)
        .keep_alive(true);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(128);
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    loop {
        if *stop.borrow() {
            return;
        }
        let permit = tokio::select! {
            p = cap.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = l.tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let (site, limits, tls, h1, h2) = (
            l.site.clone(),
            limits.clone(),
            l.tls.clone(),
            h1.clone(),
            h2.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            serve_conn(tcp, peer, tls, site, &limits, &h1, &h2, watcher).await;
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    site: Arc<Site>,
    limits: &Limits,
    h1: &hyper::server::conn::http1::Builder,
    h2: &hyper::server::conn::http2::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let svc = service_fn(move |req| {
        let site = site.clone();
        async move { Ok::<_, Infallible>(site.handle(req, peer).await) }
    });
    let last = Arc::new(AtomicU64::new(clock_ms()));
    match tls {
        Some(acc) => {
            let stream = match tokio::time::timeout(limits.header_timeout, acc.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer}: {e}");
                    return;
                }
                Err(_) => return,
            };
            let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(IdleIo {
                inner: Some(stream),
                last: last.clone(),
            });
            if is_h2 {
                with_idle_timeout(
                    watcher.watch(h2.serve_connection(io, svc)),
                    last,
                    limits.keepalive_timeout,
                )
                .await
            } else {
                with_idle_timeout(
                    watcher.watch(h1.serve_connection(io, svc)),
                    last,
                    limits.keepalive_timeout,
                )
                .await
            }
        }
        None => {
            let io = TokioIo::new(IdleIo {
                inner: Some(tcp),
                last: last.clone(),
            });
            with_idle_timeout(
                watcher.watch(h1.serve_connection(io, svc)),
                last,
                limits.keepalive_timeout,
            )
            .await
        }
    }
}
