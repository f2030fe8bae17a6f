//! Accepting and serving connections: TLS, HTTP/1.1 or HTTP/2 by ALPN, the
//! connection cap, `limit_conn`/`limit_req`, the header, idle, send and
//! HTTP/2 idle timeouts, graceful shutdown.

use crate::site::Site;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Per-process connection limits and timeouts.
#[derive(Debug)]
pub struct Limits {
    /// TLS handshake and each request head must finish within this.
    pub header_timeout: Duration,
    /// Close a connection idle this long.
    pub keepalive_timeout: Duration,
    /// Max request head bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Close a connection whose write stays blocked this long (`send_timeout`).
    pub send_timeout: Duration,
    /// Close an HTTP/2 connection without open streams this long.
    pub http2_idle_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// `limit_conn`, if set.
    pub conn_limit: Option<ConnLimiter>,
    /// `limit_req`, if set (shared by the connections' services: an `Arc`, so
    /// without it a request pays nothing).
    pub req_limit: Option<Arc<ReqLimiter>>,
}

impl Limits {
    /// Limits without `limit_conn`/`limit_req` and with NGINX's default
    /// send and HTTP/2 timeouts (the origin's).
    pub fn basic(header_timeout: Duration, keepalive_timeout: Duration, max_header_bytes: usize) -> Limits {
        Limits {
            header_timeout,
            keepalive_timeout,
            max_header_bytes,
            send_timeout: Duration::from_secs(60),
            http2_idle_timeout: Duration::from_secs(180),
            http2_max_concurrent_streams: 128,
            conn_limit: None,
            req_limit: None,
        }
    }
}

/// `limit_conn`: open connections per client address in this worker.
#[derive(Debug)]
pub struct ConnLimiter {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounts itself when dropped.
pub struct ConnSlot<'a> {
    limiter: &'a ConnLimiter,
    ip: IpAddr,
}

impl ConnLimiter {
    /// At most `max` connections per address.
    pub fn new(max: usize) -> ConnLimiter {
        ConnLimiter {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a connection from `ip`, or `None` when it has `max` already.
    pub fn enter(&self, ip: IpAddr) -> Option<ConnSlot<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnSlot { limiter: self, ip })
    }
}

impl Drop for ConnSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// `limit_req`: a token bucket per client address in this worker (NGINX's
/// `limit_req zone=... rate=R burst=B nodelay`: excess requests are refused,
/// never delayed).
#[derive(Debug)]
pub struct ReqLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Addresses remembered before full buckets are forgotten (bounds the memory
/// a scan of many addresses can take).
const MAX_TRACKED: usize = 65536;

impl ReqLimiter {
    /// `rate` requests per second, `burst` more at once.
    pub fn new(rate: u32, burst: u32) -> ReqLimiter {
        ReqLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `ip`; false when it has none left.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let cap = 1.0 + self.burst;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED && !b.contains_key(&ip) {
            let (rate, cap2) = (self.rate, cap);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < cap2);
        }
        let (tokens, at) = b.entry(ip).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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

/// Milliseconds since the first call, plus one: 0 never names a moment, so
/// it can mean "not set" in [`ConnClock::blocked_since`].
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What a connection's watchdog reads: written by its stream and its
/// service with relaxed atomics, the only per-request cost of the timeouts.
#[derive(Debug)]
struct ConnClock {
    /// Last successful read or write (the keep-alive idle timer).
    last_io: AtomicU64,
    /// When a write started to be refused (`Pending`), 0 while writes pass:
    /// `send_timeout` counts from there, so a client that stops reading is
    /// found even while it keeps sending (PINGs, window updates).
    blocked_since: AtomicU64,
    /// HTTP/2 requests being answered.
    streams: AtomicUsize,
    /// When a request last began or ended: `http2_idle_timeout` counts from
    /// there while `streams` is 0, whatever frames (PINGs) arrive.
    last_stream: AtomicU64,
    /// Set when a timer closes the connection: no lingering close then, or
    /// the peer that stalled it (still sending PINGs or body bytes) would keep
    /// it open [`LINGER`] longer.
    abort: AtomicBool,
}

impl ConnClock {
    fn new() -> ConnClock {
        let now = clock_ms();
        ConnClock {
            last_io: AtomicU64::new(now),
            blocked_since: AtomicU64::new(0),
            streams: AtomicUsize::new(0),
            last_stream: AtomicU64::new(now),
            abort: AtomicBool::new(false),
        }
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.last_io.store(clock_ms(), Ordering::Relaxed);
                self.unblocked();
            }
            Poll::Pending => self.blocked(),
            _ => {}
        }
    }

    fn unblocked(&self) {
        if self.blocked_since.load(Ordering::Relaxed) != 0 {
            self.blocked_since.store(0, Ordering::Relaxed);
        }
    }

    fn blocked(&self) {
        if self.blocked_since.load(Ordering::Relaxed) == 0 {
            self.blocked_since.store(clock_ms(), Ordering::Relaxed);
        }
    }
}

/// Marks one HTTP/2 request in progress for the watchdog until dropped.
struct StreamMark(Arc<ConnClock>);

impl StreamMark {
    fn new(clock: Arc<ConnClock>) -> StreamMark {
        clock.streams.fetch_add(1, Ordering::Relaxed);
        clock.last_stream.store(clock_ms(), Ordering::Relaxed);
        StreamMark(clock)
    }
}

impl Drop for StreamMark {
    fn drop(&mut self) {
        self.0.last_stream.store(clock_ms(), Ordering::Relaxed);
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records its reads and writes in a [`ConnClock`], and
/// closes lingeringly: when dropped it keeps reading (and discarding) for up to
/// [`LINGER`] so a client still sending (e.g. a refused 100 KiB header) reads our
/// answer instead of a reset (nginx's `lingering_close`).
struct IdleIo<T: AsyncRead + Unpin + Send + 'static> {
    inner: Option<T>,
    clock: Arc<ConnClock>,
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
        if self.clock.abort.load(Ordering::Relaxed) {
            return;
        }
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
            self.clock.last_io.store(clock_ms(), Ordering::Relaxed);
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
        self.clock.wrote(&r);
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
        self.clock.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => {
                let r = Pin::new(inner).poll_flush(cx);
                match &r {
                    Poll::Pending => self.clock.blocked(),
                    // Everything written went out: nothing is blocked any more
                    // (an idle keep-alive connection is no send_timeout case).
                    Poll::Ready(Ok(())) => self.clock.unblocked(),
                    Poll::Ready(Err(_)) => {}
                }
                r
            }
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

/// The timers a connection's watchdog enforces.
struct Watch {
    idle: Duration,
    send: Duration,
    /// `http2_idle_timeout` for HTTP/2 connections, `None` for HTTP/1.
    h2_idle: Option<Duration>,
}

/// Runs `conn` until it ends (its result) or one of `w`'s timers fires
/// (`None`, and `conn` is dropped: the connection closes). One timer per
/// connection, re-armed at the nearest deadline.
async fn watchdog<F: std::future::Future>(
    conn: F,
    clock: &ConnClock,
    w: &Watch,
    peer: SocketAddr,
) -> Option<F::Output> {
    tokio::pin!(conn);
    let r = watch_timers(conn, clock, w, peer).await;
    if r.is_none() {
        clock.abort.store(true, Ordering::Relaxed);
    }
    r
}

async fn watch_timers<F: std::future::Future>(
    mut conn: Pin<&mut F>,
    clock: &ConnClock,
    w: &Watch,
    peer: SocketAddr,
) -> Option<F::Output> {
    let ms = |d: Duration| d.as_millis() as u64;
    let mut wait = w.idle.min(w.send).min(w.h2_idle.unwrap_or(w.idle));
    loop {
        tokio::select! {
            r = &mut conn => return Some(r),
            _ = tokio::time::sleep(wait) => {
                let now = clock_ms();
                let since = |t: u64| now.saturating_sub(t);
                let quiet = since(clock.last_io.load(Ordering::Relaxed));
                if quiet >= ms(w.idle) {
                    return None;
                }
                let mut left = ms(w.idle) - quiet;
                let blocked = clock.blocked_since.load(Ordering::Relaxed);
                if blocked != 0 {
                    if since(blocked) >= ms(w.send) {
                        crate::refusals::SEND_TIMEOUT.note(peer);
                        return None;
                    }
                    left = left.min(ms(w.send) - since(blocked));
                } else {
                    left = left.min(ms(w.send));
                }
                if let Some(h2) = w.h2_idle {
                    if clock.streams.load(Ordering::Relaxed) == 0 {
                        let idle = since(clock.last_stream.load(Ordering::Relaxed));
                        if idle >= ms(h2) {
                            crate::refusals::H2_IDLE.note(peer);
                            return None;
                        }
                        left = left.min(ms(h2) - idle);
                    } else {
                        left = left.min(ms(h2));
                    }
                }
                wait = Duration::from_millis(left.max(1));
            }
        }
    }
}

/// Counts and logs (rate-limited) a connection hyper ended with an error that
/// is the peer's fault: a malformed request, or an HTTP/2 protocol error.
/// Plain I/O ends (resets, EOF mid-request) and our own timeouts are not refusals.
fn note_conn_error(r: Option<Result<(), hyper::Error>>, peer: SocketAddr) {
    let Some(Err(e)) = r else { return };
    let io = std::error::Error::source(&e).is_some_and(|s| s.downcast_ref::<io::Error>().is_some());
    if e.is_parse()
        || e.is_parse_too_large()
        || !(io
            || e.is_timeout()
            || e.is_closed()
            || e.is_canceled()
            || e.is_incomplete_message()
            || e.is_body_write_aborted()
            || e.is_user())
    {
        crate::refusals::MALFORMED.note(format_args!("{peer}: {e}"));
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
    /// For a keyless site: the threads that run the signing step of its
    /// handshakes, so no runtime thread waits for the key server.
    pub handshakes: Option<Arc<conclave_keys::HandshakeThreads>>,
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
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
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
            l.tls.clone().map(|acc| Handshake {
                acc,
                threads: l.handshakes.clone(),
            }),
            h1.clone(),
            h2.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = match &limits.conn_limit {
                None => None,
                Some(c) => match c.enter(peer.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        crate::refusals::LIMIT_CONN.note(peer);
                        return;
                    }
                },
            };
            serve_conn(tcp, peer, tls, site, &limits, &h1, &h2, watcher).await;
        });
    }
}

/// How one listener's TLS handshakes run: on the runtime thread, or (keyless
/// sites) with the signing step on [`conclave_keys::HandshakeThreads`].
struct Handshake {
    acc: TlsAcceptor,
    threads: Option<Arc<conclave_keys::HandshakeThreads>>,
}

impl Handshake {
    async fn accept(&self, tcp: TcpStream) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        match &self.threads {
            None => self.acc.accept(tcp).await,
            Some(t) => t.accept(tcp, self.acc.config().clone()).await,
        }
    }
}

/// The answer to a request `limit_req` refuses (NGINX's `limit_req_status` default).
fn limited() -> hyper::Response<crate::entity::Body> {
    crate::entity::status_response(http::StatusCode::SERVICE_UNAVAILABLE)
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Handshake>,
    site: Arc<Site>,
    limits: &Limits,
    h1: &hyper::server::conn::http1::Builder,
    h2: &hyper::server::conn::http2::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let clock = Arc::new(ConnClock::new());
    let mut w = Watch {
        idle: limits.keepalive_timeout,
        send: limits.send_timeout,
        h2_idle: None,
    };
    let stream = match tls {
        Some(hs) => match tokio::time::timeout(limits.header_timeout, hs.accept(tcp)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {peer}: {e}");
                return;
            }
            Err(_) => return,
        },
        None => Err(tcp),
    };
    let is_h2 = matches!(&stream, Ok(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"));
    let mark = is_h2.then(|| clock.clone());
    let req_limit = limits.req_limit.clone();
    let svc = service_fn(move |req| {
        let site = site.clone();
        let req_limit = req_limit.clone();
        let mark = mark.clone().map(StreamMark::new);
        async move {
            let _mark = mark;
            if let Some(rl) = &req_limit {
                if !rl.allow(peer.ip()) {
                    crate::refusals::LIMIT_REQ.note(peer);
                    return Ok::<_, Infallible>(limited());
                }
            }
            Ok::<_, Infallible>(site.handle(req, peer).await)
        }
    });
    let r = match stream {
        Ok(stream) if is_h2 => {
            w.h2_idle = Some(limits.http2_idle_timeout);
            let io = TokioIo::new(IdleIo {
                inner: Some(stream),
                clock: clock.clone(),
            });
            watchdog(watcher.watch(h2.serve_connection(io, svc)), &clock, &w, peer).await
        }
        Ok(stream) => {
            let io = TokioIo::new(IdleIo {
                inner: Some(stream),
                clock: clock.clone(),
            });
            watchdog(watcher.watch(h1.serve_connection(io, svc)), &clock, &w, peer).await
        }
        Err(tcp) => {
            let io = TokioIo::new(IdleIo {
                inner: Some(tcp),
                clock: clock.clone(),
            });
            watchdog(watcher.watch(h1.serve_connection(io, svc)), &clock, &w, peer).await
        }
    };
    note_conn_error(r, peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_conn_counts_per_address_and_frees_on_drop() {
        let l = ConnLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let s1 = l.enter(a).unwrap();
        let _s2 = l.enter(a).unwrap();
        assert!(l.enter(a).is_none());
        assert!(l.enter(b).is_some());
        drop(s1);
        assert!(l.enter(a).is_some());
    }

    #[test]
    fn limit_req_allows_rate_plus_burst_then_refuses() {
        let l = ReqLimiter::new(1, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let allowed = (0..10).filter(|_| l.allow(a)).count();
        assert_eq!(allowed, 4);
        assert!(l.allow("127.0.0.2".parse().unwrap()));
    }
}
