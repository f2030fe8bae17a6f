//! Keyless handshakes off the runtime: the step of a TLS server handshake
//! that signs (rustls processing the ClientHello) runs on a few dedicated
//! threads, so a key-server round trip never holds a runtime thread.
//!
//! rustls 0.23 asks for the signature synchronously, inside the processing of
//! the ClientHello, so some thread has to wait for the key server. Before,
//! that was the runtime thread itself, lent out with `block_in_place`: every
//! keyless handshake moved the worker's run queue to another thread and back
//! (a blocking-pool spawn, two wake-ups, malloc arenas changing hands), which
//! cost 30-60 µs of edge CPU per handshake more than this module does
//! (docs/benchmarks-keys.md). Here the runtime only reads the
//! ClientHello and finishes the handshake (both async); the middle step goes
//! to a fixed set of threads through a bounded queue and comes back through a
//! oneshot. The threads are made once, so there is no per-handshake thread
//! churn, and their number bounds the signatures this process has in flight.
//!
//! The edge now signs on a coroutine of the runtime thread by default
//! ([`crate::fiber`], measured 20-50 µs less edge CPU per handshake); these
//! threads stay as `keyless_handshake = "threads"`, for comparison and as a
//! fallback.

use rustls::server::{Acceptor, ServerConfig};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

/// Handshake threads per edge worker unless told otherwise: enough
/// signatures in flight to keep a key server's cores busy across the round
/// trip, few enough that an idle worker costs nothing.
pub const DEFAULT_THREADS: usize = 16;

/// ClientHello steps that may wait for a thread; more fail that handshake.
const QUEUE: usize = 4096;

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run the signing step of keyless TLS server handshakes.
/// Dropping it closes the queue: each thread finishes the steps already queued
/// and ends (not joined, so a drop on a runtime thread never waits for a key server).
pub struct HandshakeThreads {
    queue: Arc<Queue>,
    threads: usize,
}

/// Jobs and the threads' wake-up: a lock held only to push or pop (a
/// shared `mpsc::Receiver` would be held across the wait, so every job
/// would also wake a thread blocked on that lock).
struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

struct Jobs {
    waiting: VecDeque<Job>,
    closed: bool,
}

impl HandshakeThreads {
    /// Starts `threads` threads (at least one).
    pub fn new(threads: usize) -> io::Result<HandshakeThreads> {
        let queue = Arc::new(Queue {
            jobs: Mutex::new(Jobs {
                waiting: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let hs = HandshakeThreads {
            queue,
            threads: threads.max(1),
        };
        for i in 0..hs.threads {
            let q = hs.queue.clone();
            // On an error `hs` is dropped, which ends the threads already started.
            std::thread::Builder::new()
                .name(format!("handshake-{i}"))
                .spawn(move || q.work())?;
        }
        Ok(hs)
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The server side of a TLS handshake on `io` with `config`: reads the
    /// ClientHello here, processes it (and so signs) on a handshake thread,
    /// and finishes here. Errors are those of `TlsAcceptor::accept`, plus
    /// `WouldBlock` when every thread is busy and the queue is full.
    pub async fn accept<IO>(&self, io: IO, config: Arc<ServerConfig>) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        self.finish(start, config).await
    }

    /// The rest of a handshake whose ClientHello was read (by a caller that
    /// chose `config` from it, e.g. by SNI): processed (and so signed) on a
    /// handshake thread, finished here. Errors as [`HandshakeThreads::accept`].
    pub async fn finish<IO>(
        &self,
        start: StartHandshake<IO>,
        config: Arc<ServerConfig>,
    ) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.run(Box::new(move || {
            // The caller may have timed out and gone; the stream closes here then.
            let _ = tx.send(start.into_stream(config));
        }))?;
        let accept = rx
            .await
            .map_err(|_| io::Error::other("a handshake thread stopped mid-handshake"))?;
        accept.await
    }

    fn run(&self, job: Job) -> io::Result<()> {
        let mut jobs = self.queue.lock();
        if jobs.waiting.len() >= QUEUE {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{QUEUE} keyless handshakes are already waiting for a handshake thread"),
            ));
        }
        jobs.waiting.push_back(job);
        drop(jobs);
        self.queue.ready.notify_one();
        Ok(())
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // A job runs outside the lock, so a poisoned lock holds a consistent queue.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handshake thread: runs jobs until the queue is closed and empty.
    fn work(&self) {
        let mut jobs = self.lock();
        loop {
            if let Some(job) = jobs.waiting.pop_front() {
                drop(jobs);
                job();
                jobs = self.lock();
            } else if jobs.closed {
                return;
            } else {
                jobs = self.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

impl Drop for HandshakeThreads {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

impl std::fmt::Debug for HandshakeThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeThreads")
            .field("threads", &self.threads)
            .finish()
    }
}
