//! The async twin of [`crate::Pipeline`]: many tasks share a few
//! connections to one service, requests that meet are written in one
//! write, and replies are matched to requests by order (the wire contract:
//! a server answers the frames of one connection in the order they came).
//!
//! Why: a keyless handshake that signs on the edge's runtime thread
//! (conclave-keys' `fiber`) must await its signature without holding a
//! thread. Each connection has a writer task, which takes every request
//! queued since its last write and writes them together, and a reader task,
//! which hands each reply to the oldest waiting request. On a busy runtime
//! both are polls of a thread that is awake anyway: no thread hop, no
//! blocking read.
//!
//! A connection that breaks (closed, reset, a malformed reply, or a request
//! left unanswered for `io_timeout`) fails exactly the requests written on
//! it and not yet answered, with [`RpcError::Aborted`]; the next request
//! opens a new connection.

use crate::client::{ClientOptions, RpcError};
use crate::endpoint::Endpoint;
use crate::frame::{Decoded, Frame, FrameError, Header};
use crate::stream::{connect_async, AsyncStream};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Size the read buffer grows by: many small replies fit in one read.
const READ_BUF: usize = 16 * 1024;

type Reply = Result<Frame, RpcError>;

/// Async connections to one service shared by every calling task (see the
/// module doc). Each call goes to the connection with the fewest requests in
/// flight. Connections open when first needed, so no runtime is needed to
/// build one; calls must run inside a tokio runtime.
pub struct AsyncPipeline {
    endpoint: Endpoint,
    opts: ClientOptions,
    lanes: Box<[tokio::sync::Mutex<Option<Arc<Lane>>>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for AsyncPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncPipeline")
            .field("endpoint", &self.endpoint)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl AsyncPipeline {
    /// Up to `lanes` connections (at least one) to `endpoint`.
    /// `opts.io_timeout` bounds how long a request waits for its reply
    /// (longer breaks the connection); `opts.max_idle` is unused.
    pub fn new(endpoint: Endpoint, opts: ClientOptions, lanes: usize) -> AsyncPipeline {
        AsyncPipeline {
            endpoint,
            opts,
            lanes: (0..lanes.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The service this pipeline reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Requests written or queued and not yet answered, over every
    /// connection (a connection being opened right now is not counted).
    pub fn in_flight(&self) -> usize {
        self.lanes
            .iter()
            .filter_map(|l| {
                l.try_lock()
                    .ok()
                    .and_then(|l| l.as_ref().map(|l| l.shared.inflight()))
            })
            .sum()
    }

    /// Sends one request and awaits its reply. A request that fails on a
    /// connection opened before this call (possibly stale: the server may
    /// have restarted since) is sent once more on a new connection, so use
    /// it only for requests that are safe to repeat; if that connection
    /// cannot be opened, the first error is returned.
    pub async fn call(&self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let i = self.pick();
        let (lane, fresh) = self.lane(i, None).await?;
        match lane.call(code, body, self.opts.io_timeout).await {
            Err(e) if !fresh => match self.lane(i, Some(&lane)).await {
                Ok((again, _)) => again.call(code, body, self.opts.io_timeout).await,
                Err(_) => Err(e),
            },
            r => r,
        }
    }

    /// The lane with the fewest requests in flight (unopened, broken or
    /// being opened counts as empty), starting the search round robin.
    fn pick(&self) -> usize {
        let n = self.lanes.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| match self.lanes[i].try_lock().as_deref() {
                Ok(Some(l)) if !l.shared.is_dead() => l.shared.inflight(),
                _ => 0,
            })
            .unwrap_or(0)
    }

    /// Lane `i`, opened now if it is not open, broken, or is `stale`; with
    /// whether it was opened by this call.
    async fn lane(&self, i: usize, stale: Option<&Arc<Lane>>) -> Result<(Arc<Lane>, bool), RpcError> {
        let mut slot = self.lanes[i].lock().await;
        if let Some(l) = &*slot {
            let replace = l.shared.is_dead() || stale.is_some_and(|s| Arc::ptr_eq(s, l));
            if !replace {
                // Opened by another caller after ours failed: new as well.
                return Ok((l.clone(), stale.is_some()));
            }
        }
        // Opened under the slot's lock: callers of this lane meanwhile wait
        // for this connection instead of opening their own.
        let stream = connect_async(&self.endpoint, self.opts.tls.as_ref(), self.opts.connect_timeout)
            .await
            .map_err(|source| RpcError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let l = Arc::new(Lane::start(stream, self.endpoint.clone(), self.opts.max_body));
        *slot = Some(l.clone());
        Ok((l, true))
    }
}

/// One request on its way to the writer task.
struct Request {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// One shared connection: the handle callers use. Dropping the last handle
/// stops its tasks and closes the connection.
struct Lane {
    tx: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

/// What a lane's caller side and its two tasks share.
struct Shared {
    endpoint: Endpoint,
    /// Requests written (or being written), oldest first: the reply that
    /// comes next is the first one's.
    waiting: Mutex<Waiting>,
    /// Calls awaiting their reply: queued, written, or given up and not yet returned.
    queued: AtomicUsize,
    dead: AtomicBool,
}

/// One call awaiting its reply, counted in `Shared::queued` while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Counted<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Waiting {
    replies: VecDeque<oneshot::Sender<Reply>>,
    tasks: Vec<AbortHandle>,
}

impl Lane {
    fn start(stream: Box<dyn AsyncStream>, endpoint: Endpoint, max_body: u32) -> Lane {
        let (r, w) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            endpoint,
            waiting: Mutex::new(Waiting {
                replies: VecDeque::new(),
                tasks: Vec::new(),
            }),
            queued: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
        });
        let writer = tokio::spawn(write_requests(w, rx, shared.clone())).abort_handle();
        let reader = tokio::spawn(read_replies(r, max_body, shared.clone())).abort_handle();
        let mut g = shared.lock();
        if shared.is_dead() {
            // Broke before the handles were stored: stop both tasks now.
            writer.abort();
            reader.abort();
        } else {
            g.tasks = vec![writer, reader];
        }
        drop(g);
        Lane { tx, shared }
    }

    async fn call(&self, code: u32, body: &[u8], wait_limit: Duration) -> Reply {
        let len = u32::try_from(body.len()).map_err(|_| RpcError::Transport {
            endpoint: self.shared.endpoint.clone(),
            source: FrameError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request body over 4 GiB",
            )),
        })?;
        let mut bytes = Header { code, len }.encode().to_vec();
        bytes.extend_from_slice(body);
        let (reply, rx) = oneshot::channel();
        // Counted until this call ends in any way, its future dropped included.
        let _counted = Counted::new(&self.shared.queued);
        if self.shared.is_dead() || self.tx.send(Request { bytes, reply }).is_err() {
            return Err(self
                .shared
                .aborted(io::ErrorKind::BrokenPipe, "the connection is closed", 0));
        }
        match tokio::time::timeout(wait_limit, rx).await {
            Ok(Ok(r)) => r,
            // The tasks stopped with this request queued and not written.
            Ok(Err(_)) => Err(self
                .shared
                .aborted(io::ErrorKind::BrokenPipe, "the connection is closed", 0)),
            Err(_) => {
                // No reply in time: nothing later on this connection can
                // come sooner, so it fails every request waiting on it.
                self.shared.fail(io::ErrorKind::TimedOut, "no reply in time");
                Err(self
                    .shared
                    .aborted(io::ErrorKind::TimedOut, "no reply in time", 1))
            }
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.shared
            .fail(io::ErrorKind::BrokenPipe, "the connection was dropped");
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every critical section leaves the queue consistent.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn inflight(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn aborted(&self, kind: io::ErrorKind, reason: &str, in_flight: usize) -> RpcError {
        RpcError::Aborted {
            endpoint: self.endpoint.clone(),
            in_flight,
            source: io::Error::new(kind, reason.to_string()),
        }
    }

    /// Marks the connection broken, fails every request written on it and
    /// not answered, and stops both tasks (which closes the socket).
    fn fail(&self, kind: io::ErrorKind, reason: &str) {
        let mut g = self.lock();
        self.dead.store(true, Ordering::Relaxed);
        let replies = std::mem::take(&mut g.replies);
        let tasks = std::mem::take(&mut g.tasks);
        drop(g);
        let n = replies.len();
        for r in replies {
            let _ = r.send(Err(self.aborted(kind, reason, n)));
        }
        for t in tasks {
            t.abort();
        }
    }
}

/// The writer task: every request queued since the last write goes out in
/// one write.
async fn write_requests(
    mut w: WriteHalf<Box<dyn AsyncStream>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    shared: Arc<Shared>,
) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        // Let every task already woken on this thread run first. Without
        // this the runtime's LIFO slot runs the writer right after the first
        // handshake that queued a request, so each request would go out in
        // a write of its own (and the key server would read and answer them
        // one by one); after one turn of the scheduler, every request made
        // in that turn goes out together.
        tokio::task::yield_now().await;
        buf.clear();
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        {
            let mut g = shared.lock();
            if shared.is_dead() {
                return;
            }
            for r in batch {
                buf.extend_from_slice(&r.bytes);
                // Queued before the bytes go out, so a reply always finds its request.
                g.replies.push_back(r.reply);
            }
        }
        let written = async {
            w.write_all(&buf).await?;
            w.flush().await
        };
        if let Err(e) = written.await {
            shared.fail(e.kind(), &format!("write failed: {e}"));
            return;
        }
    }
}

/// The reader task: hands each reply to the oldest waiting request.
async fn read_replies(mut r: ReadHalf<Box<dyn AsyncStream>>, max_body: u32, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        match r.read_buf(&mut buf).await {
            Ok(0) => {
                shared.fail(io::ErrorKind::UnexpectedEof, "the server closed the connection");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.fail(e.kind(), &format!("read failed: {e}"));
                return;
            }
        }
        let mut used = 0;
        loop {
            match Frame::decode(&buf[used..], max_body) {
                Ok(Decoded::Incomplete { .. }) => break,
                Ok(Decoded::Complete(frame, n)) => {
                    used += n;
                    let next = shared.lock().replies.pop_front();
                    match next {
                        Some(tx) => {
                            let _ = tx.send(Ok(frame));
                        }
                        None => {
                            shared.fail(io::ErrorKind::InvalidData, "a reply came with no request waiting");
                            return;
                        }
                    }
                }
                Err(e) => {
                    shared.fail(io::ErrorKind::InvalidData, &format!("malformed reply: {e}"));
                    return;
                }
            }
        }
        buf.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A plain server on loopback answering each frame in order (code 0,
    /// the request's body); with `close_after`, it closes each connection
    /// after reading that many frames, answering none of them.
    async fn server(close_after: Option<usize>) -> Endpoint {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap().to_string());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut seen = 0;
                    while let Ok(Some(f)) = crate::frame::read_frame(&mut s, 1 << 20).await {
                        seen += 1;
                        if close_after == Some(seen) {
                            return;
                        }
                        if close_after.is_none()
                            && crate::frame::write_frame(&mut s, &Frame::new(0, f.body))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        ep
    }

    fn plain() -> ClientOptions {
        ClientOptions {
            io_timeout: Duration::from_secs(5),
            ..ClientOptions::plain()
        }
    }

    /// Spawns `n` calls, call `i` carrying `i`, and checks each gets its own
    /// body back.
    async fn calls_get_their_own_replies(p: &Arc<AsyncPipeline>, n: u32) {
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move { p.call(7, &i.to_be_bytes()).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(&c.await.unwrap().unwrap().body[..], &(i as u32).to_be_bytes());
        }
    }

    #[tokio::test]
    async fn concurrent_calls_on_one_connection_get_their_own_replies() {
        let ep = server(None).await;
        let p = Arc::new(AsyncPipeline::new(ep, plain(), 1));
        calls_get_their_own_replies(&p, 64).await;
        assert_eq!(p.in_flight(), 0);
    }

    /// On a multi-thread runtime the LIFO slot runs a woken writer right
    /// after the task that woke it: the writer must still wait one turn so
    /// that requests made in the same turn share one write.
    #[test]
    fn requests_made_in_one_turn_of_the_runtime_go_out_in_one_write() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap().to_string());
        // A blocking server on its own thread: answers every whole frame it
        // has and records how many frames each read brought.
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (mut buf, mut per_read) = (Vec::new(), Vec::new());
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n @ 1..) = s.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
                let mut frames = 0;
                while buf.len() >= 8 {
                    let len = u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize;
                    if buf.len() < 8 + len {
                        break;
                    }
                    let mut reply = vec![0u8; 8];
                    reply[4..8].copy_from_slice(&buf[4..8]);
                    reply.extend_from_slice(&buf[8..8 + len]);
                    s.write_all(&reply).unwrap();
                    buf.drain(..8 + len);
                    frames += 1;
                }
                per_read.push(frames);
            }
            per_read
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Spawned from a task of the runtime's one worker (not from
        // `block_on`, whose thread is not a worker), so the 32 callers are
        // queued on that worker in one turn, as a burst of handshakes is.
        let burst = async {
            let p = Arc::new(AsyncPipeline::new(ep, plain(), 1));
            // Opens the connection, so the burst below finds it ready.
            p.call(7, b"open").await.unwrap();
            calls_get_their_own_replies(&p, 32).await;
        };
        rt.block_on(rt.spawn(burst)).unwrap();
        drop(rt);
        let per_read = server.join().unwrap();
        assert_eq!(per_read.iter().sum::<usize>(), 33, "{per_read:?}");
        assert_eq!(per_read[0], 1, "{per_read:?}");
        assert!(
            per_read.len() <= 3,
            "32 requests of one turn came in {} reads: {per_read:?}",
            per_read.len() - 1
        );
    }

    #[tokio::test]
    async fn a_connection_closed_mid_pipeline_fails_its_requests_as_aborted() {
        let ep = server(Some(1)).await;
        let p = Arc::new(AsyncPipeline::new(ep, plain(), 1));
        let calls: Vec<_> = (0..3u32)
            .map(|i| {
                let p = p.clone();
                tokio::spawn(async move { p.call(7, &i.to_be_bytes()).await })
            })
            .collect();
        for c in calls {
            let e = c.await.unwrap().unwrap_err();
            assert!(matches!(e, RpcError::Aborted { .. }), "{e}");
        }
        assert_eq!(p.in_flight(), 0);
    }
}
