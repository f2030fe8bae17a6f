//! A blocking client that pipelines: many threads share a few connections,
//! each request is written as soon as it is made (several requests that
//! meet are written in one `write`), and replies are matched to requests by
//! order, which the wire contract guarantees (a server answers the frames of
//! one connection in the order they came).
//!
//! Why: the keyless handshake threads of an edge worker each made one
//! blocking round trip on a connection of their own, so every signature cost
//! the edge a write, a blocking read and a wake-up, and the key server a
//! wake-up and a read. Sharing a connection lets a burst of signatures go out
//! in one write and come back in one read, and the key server reads them
//! without going back to its reactor in between.
//!
//! Nobody owns the reading: the oldest waiting caller whose reply has not come
//! reads the socket (without holding the lock), hands every reply it finds to
//! its caller, and when its own reply is in, passes the reading on to the next
//! waiter. One caller alone reads its own reply, as a plain connection would;
//! there is no extra thread and no extra hop.
//!
//! A connection that breaks (closed, reset, timed out, a malformed reply) fails
//! exactly the requests written on it and not yet answered, with
//! [`RpcError::Aborted`]; the next request opens a new connection.

use crate::client::{ClientOptions, RpcError};
use crate::endpoint::Endpoint;
use crate::frame::{Decoded, Frame, FrameError, Header};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Size of the buffer one read fills: many small replies fit in one read.
const READ_BUF: usize = 16 * 1024;

thread_local! {
    /// The condition variable a thread waits on for its reply. A thread
    /// waits for one reply at a time, so one per thread is enough, and no
    /// call allocates one.
    static WAKE: Arc<Condvar> = Arc::new(Condvar::new());
}

/// Connections to one service shared by every calling thread (see the
/// module doc). Each call goes to the connection with the fewest requests
/// in flight, so a service that answers one connection's requests one at a
/// time still works on `lanes` of them at once.
pub struct Pipeline {
    endpoint: Endpoint,
    opts: ClientOptions,
    lanes: Box<[Mutex<Option<Arc<Lane>>>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("endpoint", &self.endpoint)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Up to `lanes` connections (at least one) to `endpoint`, opened when
    /// first needed. `opts.io_timeout` bounds each read and write;
    /// `opts.max_idle` is unused (connections stay open).
    pub fn new(endpoint: Endpoint, opts: ClientOptions, lanes: usize) -> Pipeline {
        Pipeline {
            endpoint,
            opts,
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The service this pipeline reaches.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Requests written and not yet answered, over every connection.
    pub fn in_flight(&self) -> usize {
        self.lanes
            .iter()
            .filter_map(|l| lock(l).as_ref().map(|l| l.inflight.load(Ordering::Relaxed)))
            .sum()
    }

    /// Sends one request and waits for its reply. A request that fails on a
    /// connection opened before this call (possibly stale: the server may
    /// have restarted since) is sent once more on a new connection, so use
    /// it only for requests that are safe to repeat; if that new connection
    /// cannot be opened, the first error is returned.
    pub fn call(&self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let i = self.pick();
        let (lane, fresh) = self.lane(i, None)?;
        match lane.call(code, body) {
            Err(e) if !fresh => match self.lane(i, Some(&lane)) {
                Ok((again, _)) => again.call(code, body),
                Err(_) => Err(e),
            },
            r => r,
        }
    }

    /// The lane with the fewest requests in flight (an unopened or broken
    /// one counts as empty), starting the search round robin.
    fn pick(&self) -> usize {
        let n = self.lanes.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| match &*lock(&self.lanes[i]) {
                Some(l) if !l.dead.load(Ordering::Relaxed) => l.inflight.load(Ordering::Relaxed),
                _ => 0,
            })
            .unwrap_or(0)
    }

    /// Lane `i`, opened now if it is not open, broken, or is `stale`; with
    /// whether it was opened by this call.
    fn lane(&self, i: usize, stale: Option<&Arc<Lane>>) -> Result<(Arc<Lane>, bool), RpcError> {
        let mut slot = lock(&self.lanes[i]);
        if let Some(l) = &*slot {
            let replace = l.dead.load(Ordering::Relaxed) || stale.is_some_and(|s| Arc::ptr_eq(s, l));
            if !replace {
                // Opened by another caller after ours failed: new as well.
                return Ok((l.clone(), stale.is_some()));
            }
        }
        // Opening under the slot's lock: callers that pick this lane meanwhile
        // wait for the connection instead of opening their own.
        let l = Arc::new(Lane::connect(&self.endpoint, &self.opts)?);
        *slot = Some(l.clone());
        Ok((l, true))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The socket under a lane; read and written through shared references, so
/// one thread can block in a read while another writes.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => (&*s).read(buf),
            Sock::Unix(s) => (&*s).read(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => (&*s).write_all(buf),
            Sock::Unix(s) => (&*s).write_all(buf),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Sock::Tcp(s) => s.shutdown(Shutdown::Both),
            Sock::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            Sock::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
        }
    }
}

/// `Read + Write` over a shared socket, for the TLS handshake.
struct SockIo<'a>(&'a Sock);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One shared connection.
struct Lane {
    sock: Sock,
    endpoint: Endpoint,
    max_body: u32,
    /// How long a caller waits for its reply before giving up on its own
    /// (the reader's socket read has `io_timeout`, so this is a safety net).
    wait_limit: Duration,
    inflight: AtomicUsize,
    dead: AtomicBool,
    state: Mutex<State>,
}

struct State {
    /// `None`: a plain stream (benchmarks and tests only).
    tls: Option<rustls::ClientConnection>,
    /// Plain streams: request bytes not yet written.
    out: Vec<u8>,
    /// Reused buffer of the bytes one flush writes.
    wbuf: Vec<u8>,
    /// A caller is writing `wbuf`; others only queue their requests.
    flushing: bool,
    /// Reused read buffer, taken by the reader while it reads.
    rbuf: Vec<u8>,
    /// A caller is reading the socket.
    reading: bool,
    /// Sequence number of the next request written.
    next_seq: u64,
    /// Replies received so far (= the sequence number of the next reply).
    answered: u64,
    /// Callers waiting, oldest first, with their reply once it came.
    slots: VecDeque<Slot>,
    /// Received plaintext not yet decoded into frames.
    plain: Vec<u8>,
    /// Why the connection is unusable, once it is.
    broken: Option<Broken>,
}

struct Slot {
    seq: u64,
    wake: Arc<Condvar>,
    reply: Option<Frame>,
}

/// Why a lane broke, kept to tell every caller it fails.
#[derive(Clone)]
struct Broken {
    kind: io::ErrorKind,
    reason: String,
    in_flight: usize,
}

impl Lane {
    fn connect(endpoint: &Endpoint, opts: &ClientOptions) -> Result<Lane, RpcError> {
        let conn_err = |source: io::Error| RpcError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let sock = open(endpoint, opts.connect_timeout).map_err(conn_err)?;
        // Every read and write, the TLS handshake's included, is bounded by
        // the I/O timeout (as on the pool's connections).
        sock.set_timeouts(opts.io_timeout, opts.io_timeout)
            .map_err(conn_err)?;
        let tls = match &opts.tls {
            None => None,
            Some(t) => {
                let mut c = rustls::ClientConnection::new(t.config.clone(), t.name.clone())
                    .map_err(|e| conn_err(io::Error::other(e)))?;
                // Requests wait in rustls until a flush; their number is bounded
                // by the calling threads, so no limit is needed (and none may
                // refuse a request halfway).
                c.set_buffer_limit(None);
                let mut io = SockIo(&sock);
                while c.is_handshaking() {
                    c.complete_io(&mut io).map_err(conn_err)?;
                }
                Some(c)
            }
        };
        Ok(Lane {
            sock,
            endpoint: endpoint.clone(),
            max_body: opts.max_body,
            wait_limit: opts.io_timeout.saturating_mul(2),
            inflight: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            state: Mutex::new(State {
                tls,
                out: Vec::new(),
                wbuf: Vec::new(),
                flushing: false,
                rbuf: Vec::new(),
                reading: false,
                next_seq: 0,
                answered: 0,
                slots: VecDeque::new(),
                plain: Vec::new(),
                broken: None,
            }),
        })
    }

    fn call(&self, code: u32, body: &[u8]) -> Result<Frame, RpcError> {
        let len = u32::try_from(body.len()).map_err(|_| RpcError::Transport {
            endpoint: self.endpoint.clone(),
            source: FrameError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request body over 4 GiB",
            )),
        })?;
        let hdr = Header { code, len }.encode();
        let wake = WAKE.with(|w| w.clone());
        let mut g = lock(&self.state);
        if let Some(b) = &g.broken {
            return Err(self.aborted(b));
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.slots.push_back(Slot {
            seq,
            wake: wake.clone(),
            reply: None,
        });
        self.inflight.fetch_add(1, Ordering::Relaxed);
        let st = &mut *g;
        let queued = match &mut st.tls {
            // One record for header and body.
            Some(t) => t.writer().write_all(&[hdr.as_slice(), body].concat()),
            None => {
                st.out.extend_from_slice(&hdr);
                st.out.extend_from_slice(body);
                Ok(())
            }
        };
        if let Err(e) = queued {
            self.break_lane(&mut g, e);
        } else if !g.flushing {
            g = self.flush(g);
        }
        self.wait(g, seq, &wake)
    }

    /// Writes every queued request, including those queued by others while
    /// this caller writes, until none is left.
    fn flush<'a>(&'a self, mut g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        g.flushing = true;
        loop {
            let st = &mut *g;
            let mut buf = std::mem::take(&mut st.wbuf);
            match &mut st.tls {
                Some(t) => {
                    while t.wants_write() {
                        if let Err(e) = t.write_tls(&mut buf) {
                            st.wbuf = buf;
                            self.break_lane(&mut g, e);
                            g.flushing = false;
                            return g;
                        }
                    }
                }
                None => std::mem::swap(&mut buf, &mut st.out),
            }
            if buf.is_empty() {
                g.wbuf = buf;
                g.flushing = false;
                return g;
            }
            drop(g);
            let r = self.sock.write_all(&buf);
            g = lock(&self.state);
            buf.clear();
            g.wbuf = buf;
            if let Err(e) = r {
                self.break_lane(&mut g, e);
                g.flushing = false;
                return g;
            }
        }
    }

    /// Waits for reply `seq`, reading the socket when nobody else does.
    fn wait<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        seq: u64,
        wake: &Arc<Condvar>,
    ) -> Result<Frame, RpcError> {
        let deadline = Instant::now() + self.wait_limit;
        loop {
            let at = g.slots.iter().position(|s| s.seq == seq);
            if let Some(i) = at.filter(|&i| g.slots[i].reply.is_some()) {
                let slot = g.slots.remove(i).expect("position is in range");
                self.inflight.fetch_sub(1, Ordering::Relaxed);
                // The reading passes to the oldest caller still waiting.
                if !g.reading {
                    if let Some(next) = g.slots.iter().find(|s| s.reply.is_none()) {
                        next.wake.notify_one();
                    }
                }
                return Ok(slot.reply.expect("checked above"));
            }
            if let Some(b) = g.broken.clone() {
                self.forget(&mut g, seq);
                return Err(self.aborted(&b));
            }
            if !g.reading {
                g = self.read_once(g, wake);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                self.forget(&mut g, seq);
                return Err(RpcError::Transport {
                    endpoint: self.endpoint.clone(),
                    source: FrameError::Io(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")),
                });
            }
            g = wake
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Drops the slot of a caller that gives up (its reply, if it comes, is discarded).
    fn forget(&self, g: &mut State, seq: u64) {
        if let Some(i) = g.slots.iter().position(|s| s.seq == seq) {
            g.slots.remove(i);
            self.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// One read of the socket (outside the lock), and the replies it brings
    /// handed to their callers.
    fn read_once<'a>(&'a self, mut g: MutexGuard<'a, State>, me: &Arc<Condvar>) -> MutexGuard<'a, State> {
        g.reading = true;
        let mut rbuf = std::mem::take(&mut g.rbuf);
        if rbuf.len() < READ_BUF {
            rbuf.resize(READ_BUF, 0);
        }
        drop(g);
        let r = self.sock.read(&mut rbuf);
        let mut g = lock(&self.state);
        g.reading = false;
        let outcome = match r {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
            Ok(n) => self.absorb(&mut g, &rbuf[..n], me),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            // SO_RCVTIMEO expiring reads as WouldBlock.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))
            }
            Err(e) => Err(e),
        };
        g.rbuf = rbuf;
        if let Err(e) = outcome {
            self.break_lane(&mut g, e);
        }
        g
    }

    /// Decrypts `bytes`, decodes the whole frames now buffered and gives
    /// each to the caller whose request it answers, in order.
    fn absorb(&self, g: &mut State, bytes: &[u8], me: &Arc<Condvar>) -> io::Result<()> {
        match &mut g.tls {
            Some(t) => {
                let mut rd = bytes;
                while !rd.is_empty() {
                    t.read_tls(&mut rd)?;
                    let st = t.process_new_packets().map_err(io::Error::other)?;
                    let n = st.plaintext_bytes_to_read();
                    if n > 0 {
                        let old = g.plain.len();
                        g.plain.resize(old + n, 0);
                        t.reader().read_exact(&mut g.plain[old..])?;
                    }
                    if st.peer_has_closed() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ));
                    }
                }
            }
            None => g.plain.extend_from_slice(bytes),
        }
        let mut used = 0;
        loop {
            let decoded = Frame::decode(&g.plain[used..], self.max_body).map_err(|e| match e {
                FrameError::Io(e) => e,
                other => io::Error::new(io::ErrorKind::InvalidData, other),
            })?;
            let Decoded::Complete(frame, n) = decoded else {
                break;
            };
            used += n;
            let seq = g.answered;
            if seq >= g.next_seq {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a reply came with no request waiting for it",
                ));
            }
            g.answered += 1;
            // A caller that gave up has no slot: its reply is dropped.
            if let Some(s) = g.slots.iter_mut().find(|s| s.seq == seq) {
                s.reply = Some(frame);
                if !Arc::ptr_eq(&s.wake, me) {
                    s.wake.notify_one();
                }
            }
        }
        g.plain.drain(..used);
        Ok(())
    }

    /// Marks the lane unusable and wakes every caller still waiting, each of
    /// which then fails with [`RpcError::Aborted`].
    fn break_lane(&self, g: &mut State, e: io::Error) {
        if g.broken.is_some() {
            return;
        }
        let waiting: Vec<&Slot> = g.slots.iter().filter(|s| s.reply.is_none()).collect();
        let in_flight = waiting.len();
        for s in waiting {
            s.wake.notify_one();
        }
        g.broken = Some(Broken {
            kind: e.kind(),
            reason: e.to_string(),
            in_flight,
        });
        self.dead.store(true, Ordering::Relaxed);
        // A reader blocked in read() returns at once.
        self.sock.shutdown();
    }

    fn aborted(&self, b: &Broken) -> RpcError {
        RpcError::Aborted {
            endpoint: self.endpoint.clone(),
            in_flight: b.in_flight,
            source: io::Error::new(b.kind, b.reason.clone()),
        }
    }
}

/// Connects to `ep` (the first address of a TCP name that answers).
fn open(ep: &Endpoint, timeout: Duration) -> io::Result<Sock> {
    match ep {
        Endpoint::Tcp(addr) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to no address"));
            for a in addr.to_socket_addrs()? {
                match TcpStream::connect_timeout(&a, timeout) {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        return Ok(Sock::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Endpoint::Unix(p) => Ok(Sock::Unix(UnixStream::connect(p)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A plain echo server on loopback that answers each frame in order
    /// (code 0, the request's body), reading `batch` frames before replying
    /// to any, so replies to a pipeline come back together.
    fn echo_server(batch: usize) -> (Endpoint, std::thread::JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap().to_string());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut served = 0;
            loop {
                let mut out = Vec::new();
                for _ in 0..batch {
                    match crate::frame::read_frame_sync(&mut s, 1 << 20) {
                        Ok(Some(f)) => out.extend(Frame::ok(f.body).encode()),
                        _ => return served,
                    }
                    served += 1;
                }
                s.write_all(&out).unwrap();
            }
        });
        (ep, h)
    }

    #[test]
    fn concurrent_calls_share_one_connection_and_get_their_own_replies() {
        let (ep, server) = echo_server(8);
        let p = Arc::new(Pipeline::new(ep, ClientOptions::plain(), 1));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..16u32 {
                        let body = format!("{t}-{i}");
                        let r = p.call(7, body.as_bytes()).unwrap();
                        assert_eq!((r.code, &r.body[..]), (0, body.as_bytes()));
                    }
                })
            })
            .collect();
        // 8 threads x 16 calls in batches of 8: the server only answers
        // once 8 requests are in, so every batch was pipelined.
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.in_flight(), 0);
        drop(p);
        assert_eq!(server.join().unwrap(), 128);
    }

    #[test]
    fn a_server_gone_mid_pipeline_fails_exactly_the_waiting_calls() {
        // The server reads 3 requests, answers none and closes.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap().to_string());
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            for _ in 0..3 {
                crate::frame::read_frame_sync(&mut s, 1 << 20).unwrap().unwrap();
            }
        });
        let p = Arc::new(Pipeline::new(ep.clone(), ClientOptions::plain(), 1));
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || p.call(1, b"x"))
            })
            .collect();
        server.join().unwrap();
        for c in calls {
            match c.join().unwrap() {
                // Opened by this call or another waiting one: either the
                // pipeline broke under it, or its retry found nobody listening.
                Err(RpcError::Aborted { in_flight, .. }) => assert!((1..=3).contains(&in_flight)),
                other => panic!("expected Aborted, got {other:?}"),
            }
        }
        assert_eq!(p.in_flight(), 0);
    }
}
