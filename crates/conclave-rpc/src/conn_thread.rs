//! [`ConnectionMode::Threads`](crate::ConnectionMode::Threads): an admitted
//! connection served by an OS thread of its own, blocking on its socket,
//! with no reactor on the request path.
//!
//! The frame loop is the same as on a task (`requests`): every whole frame
//! already read is answered in order before the next read and the replies
//! leave in one write. What the reactor gave for free is rebuilt here:
//! * idle timeout: `SO_RCVTIMEO`, re-armed only when the time left for a
//!   whole request drifts from it (a peer dripping a frame byte by byte);
//! * write timeout: `SO_SNDTIMEO`, so a peer that never reads cannot hold
//!   the thread;
//! * graceful shutdown: a registry of the live sockets (the same
//!   descriptor, shared); on shutdown each is
//!   `shutdown(SHUT_RD)`, which wakes a thread blocked in `read` with end of
//!   file once the frames already received are answered;
//! * the service's `async fn call`: polled on the thread itself, parked
//!   until woken (a synchronous service is ready at the first poll).

use crate::admission::Slot;
use crate::frame::{write_parts_sync, Frame};
use crate::requests::{Gate, Next, Requests, READ_CHUNK};
use crate::server::{Ctx, PeerInfo, Service};
use crate::socket::{SendOne, SharedSocket};
use rustls::{ServerConnection, StreamOwned};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Shutdown as How;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, warn};

/// Name of every connection thread (tests look for leftovers by it).
pub const THREAD_NAME: &str = "rpc-conn";

/// The read timeout is re-armed when the time left for a whole request
/// differs from it by more than this: the idle deadline holds to within
/// this much, and a request/reply exchange costs no extra system call.
const REARM_SLACK: Duration = Duration::from_millis(10);

/// The live connection threads' sockets, so shutdown can wake them.
#[derive(Default)]
pub(crate) struct Live {
    stopping: AtomicBool,
    socks: Mutex<LiveSockets>,
}

#[derive(Default)]
struct LiveSockets {
    next: u64,
    by_id: HashMap<u64, SharedSocket>,
}

impl Live {
    fn socks(&self) -> MutexGuard<'_, LiveSockets> {
        // Nothing under this lock can panic half way; take the data anyway.
        self.socks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `sock`; `None` once shutdown began (the connection must
    /// not start).
    fn register(&self, sock: &SharedSocket) -> Option<u64> {
        let mut s = self.socks();
        if self.stopping.load(Ordering::Acquire) {
            return None;
        }
        let id = s.next;
        s.next += 1;
        s.by_id.insert(id, sock.clone());
        Some(id)
    }

    fn remove(&self, id: u64) {
        self.socks().by_id.remove(&id);
    }

    /// True once shutdown began: a thread answers what it has read, then
    /// closes.
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Begins shutdown: threads blocked in a read get end of file; a thread
    /// between reads sees [`Live::stopping`] before its next one.
    pub(crate) fn stop(&self) {
        let s = self.socks();
        self.stopping.store(true, Ordering::Release);
        for sock in s.by_id.values() {
            let _ = sock.shutdown(How::Read);
        }
    }
}

/// A connection thread's byte stream: the socket, with or without TLS.
pub(crate) trait BlockingStream: Read + Write + Send + 'static {
    /// The socket under it (timeouts, shutdown).
    fn socket(&self) -> &SharedSocket;
    /// Ends the session politely (TLS `close_notify`).
    fn close_notify(&mut self) {}
}

impl BlockingStream for SharedSocket {
    fn socket(&self) -> &SharedSocket {
        self
    }
}

impl BlockingStream for StreamOwned<ServerConnection, SendOne<SharedSocket>> {
    fn socket(&self) -> &SharedSocket {
        &self.sock.0
    }

    fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

/// Everything a connection thread owns; dropping it (at the thread's end,
/// or if the thread could not start) closes the service's state and frees
/// the registry entry and the slot, then releases the server's wait.
struct Session<S: Service> {
    svc: Arc<S>,
    conn: Option<S::Conn>,
    ctx: Arc<Ctx>,
    id: u64,
    slot: Option<Slot>,
    token: Option<TaskTrackerToken>,
}

impl<S: Service> Drop for Session<S> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.svc.close(c);
        }
        self.ctx.live.remove(self.id);
        drop(self.slot.take());
        drop(self.token.take());
    }
}

/// Serves an admitted connection on a new thread. The caller's task may end
/// at once: `token` keeps the server's shutdown waiting for the thread.
pub(crate) fn spawn<S: Service, T: BlockingStream>(
    stream: T,
    peer: PeerInfo,
    conn: S::Conn,
    slot: Slot,
    svc: Arc<S>,
    ctx: Arc<Ctx>,
    token: TaskTrackerToken,
) {
    let Some(id) = ctx.live.register(stream.socket()) else {
        svc.close(conn);
        return;
    };
    let session = Session {
        svc,
        conn: Some(conn),
        ctx,
        id,
        slot: Some(slot),
        token: Some(token),
    };
    // Futures of the service may use tokio's timers or I/O.
    let rt = tokio::runtime::Handle::current();
    let started = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            let _rt = rt.enter();
            run(stream, peer, session);
        });
    if let Err(e) = started {
        // The closure, and with it the session, is dropped: all freed.
        warn!("cannot start a connection thread: {e}");
    }
}

/// The frame loop of one connection (see the module doc).
fn run<S: Service, T: BlockingStream>(mut s: T, peer: PeerInfo, mut session: Session<S>) {
    let ctx = session.ctx.clone();
    let opts = &ctx.opts;
    let idle = opts.idle_timeout;
    if let Err(e) = s
        .socket()
        .set_read_timeout(idle)
        .and_then(|()| s.socket().set_write_timeout(opts.write_timeout))
    {
        debug!(peer = %peer.addr, "cannot set socket timeouts: {e}");
        return;
    }
    let inflight = session.slot.as_ref().and_then(Slot::inflight_counter);
    let gate = Gate {
        adm: &ctx.adm,
        refusals: &ctx.refusals,
        peer: &peer,
        inflight: inflight.as_deref(),
    };
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let (svc, Some(conn)) = (&session.svc, session.conn.as_mut()) else {
        return;
    };
    let mut rq = Requests::new(opts.max_body);
    let mut chunk = vec![0u8; READ_CHUNK];
    // A request must arrive whole within `idle` of the last reply.
    let mut last = Instant::now();
    let mut armed = idle;
    'conn: loop {
        loop {
            match rq.next(&gate) {
                Next::Request(req, inflight) => {
                    let reply = block_on(&waker, svc.call(conn, req));
                    drop(inflight);
                    match rq.reply(reply) {
                        Ok(None) => {}
                        Ok(Some(big)) => {
                            if send(&mut s, &mut rq.out).is_err() || send_big(&mut s, &big).is_err() {
                                break 'conn;
                            }
                        }
                        Err(_) => break 'conn,
                    }
                }
                Next::More => break,
                Next::Close => {
                    let _ = send(&mut s, &mut rq.out);
                    break 'conn;
                }
            }
        }
        let mut now = None;
        if !rq.out.is_empty() {
            if let Err(e) = send(&mut s, &mut rq.out) {
                debug!(peer = %peer.addr, "write failed (or timed out): {e}");
                break;
            }
            let t = Instant::now();
            last = t;
            now = Some(t);
        }
        if ctx.live.stopping() {
            break;
        }
        let now = now.unwrap_or_else(Instant::now);
        // No deadline if `idle` is beyond what an Instant can reach.
        let left = last
            .checked_add(idle)
            .map_or(idle, |due| due.saturating_duration_since(now));
        if left.is_zero() {
            warn!(peer = %peer.addr, "request not received whole within the idle timeout");
            break;
        }
        if left.abs_diff(armed) > REARM_SLACK {
            if s.socket().set_read_timeout(left).is_err() {
                break;
            }
            armed = left;
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                if rq.inside_frame() {
                    debug!(peer = %peer.addr, buffered = rq.inbuf.len(), "connection closed inside a frame");
                }
                break;
            }
            Ok(n) => rq.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if rq.inside_frame() {
                    warn!(peer = %peer.addr, "request not received whole within the idle timeout");
                } else {
                    debug!(peer = %peer.addr, "idle timeout");
                }
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!(peer = %peer.addr, "read failed: {e}");
                break;
            }
        }
    }
    if let Some(c) = session.conn.take() {
        session.svc.close(c);
    }
    s.close_notify();
    let _ = s.socket().shutdown(How::Both);
}

/// Writes the collected replies in one write.
fn send<T: Write>(s: &mut T, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    s.write_all(out)?;
    s.flush()?;
    out.clear();
    Ok(())
}

fn send_big<T: Write>(s: &mut T, f: &Frame) -> io::Result<()> {
    write_parts_sync(s, f.code, &f.body)
}

/// Wakes the connection thread parked in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `f` to completion on this thread: poll, park until woken, poll.
/// A future ready at its first poll (a synchronous service) costs one poll.
fn block_on<F: Future>(waker: &Waker, f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        // A spurious or stale unpark only costs another poll.
        std::thread::park();
    }
}
