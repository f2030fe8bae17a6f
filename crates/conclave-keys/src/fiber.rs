//! Keyless handshakes on the runtime thread: the step of a TLS server
//! handshake that signs (rustls processing the ClientHello) runs as a
//! stackful coroutine, and the signature is awaited, not waited for.
//!
//! rustls 0.23 asks for the signature synchronously, deep inside
//! `Accepted::into_connection`, so the handshake cannot simply `.await` it.
//! [`crate::HandshakeThreads`] give that step a thread, which costs each
//! handshake two thread hops and a blocking read. Here it runs on a
//! coroutine stack of its own (the `generator` crate, as OpenSSL's
//! `ASYNC_JOB` does for keyless engines): when [`crate::RemoteSigningKey`]'s
//! signer is called on such a stack it hands the request out and suspends;
//! the handshake's task awaits the key server's reply on an async pipelined
//! connection ([`crate::KeyServers::sign_async`]) and resumes the coroutine
//! with it, on the same runtime thread. A busy runtime thus handles a keyless
//! handshake with no context switch of its own.
//!
//! Safety of the design, without `unsafe` here: a suspended coroutine is
//! never dropped (its stack would be unwound by a panic): [`Fiber`]'s drop
//! resumes it with [`KeysError::Abandoned`], and rustls fails the handshake
//! as for any signing error. A panic inside is caught and becomes that
//! handshake's error. The stack size is measured (`fiber` tests) with a 4×
//! margin, and stacks are reused per thread, so a handshake costs no mmap.
//!
//! A fiber is `Send` (tokio may move the handshake's task to another worker
//! thread between resumptions) because everything alive on its stack across
//! a suspension is: rustls' connection state, the `Arc<ServerConfig>`, the
//! signer's request.

use crate::error::KeysError;
use crate::failover::KeyServers;
use generator::{Generator, Gn};
use rustls::server::ServerConfig;
use rustls::SignatureScheme;
use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{Accept, StartHandshake};

/// Coroutine stack size, in machine words: 256 KiB. A full keyless
/// handshake (RSA and ECDSA, TLS 1.2 and 1.3) used at most 5316 words
/// (42 KiB) in a debug build (`tests/fiber.rs`), so this leaves a 6× margin.
/// Only the pages a handshake touches are ever mapped in.
pub const STACK_WORDS: usize = 32 * 1024;

/// Finished stacks kept per thread for the next handshakes: more than a
/// worker's signing handshakes in flight at saturation (~64 at `-c 128` over
/// 2 workers). Measured: with 64 kept, the stacks made and unmapped beyond
/// them cost the edge ~10 % of its CPU under that load.
const POOL: usize = 1024;

/// Whether new stacks track their exact use (see [`track_stack_use`]).
static TRACK: AtomicBool = AtomicBool::new(false);

/// Coroutines alive in this process (suspended or running), for tests and
/// leak checks.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// What a signature resumes the coroutine with.
pub type SignReply = Result<Vec<u8>, KeysError>;

/// One signature a suspended handshake waits for.
pub struct SignJob {
    servers: Arc<KeyServers>,
    name: Arc<str>,
    scheme: SignatureScheme,
    message: Vec<u8>,
}

impl SignJob {
    /// Asks the key servers, awaiting the reply.
    async fn run(self) -> SignReply {
        self.servers
            .sign_async(&self.name, self.scheme, &self.message)
            .await
    }
}

/// What a coroutine hands out: a signature to make, or (when it returns)
/// its result, boxed so one stack type serves every stream type.
enum Step {
    Sign(SignJob),
    Done(Box<dyn Any + Send>),
}

type Coroutine = Generator<'static, SignReply, Step>;

thread_local! {
    /// Stacks of finished coroutines, ready for the next handshake.
    static STACKS: RefCell<Vec<Coroutine>> = const { RefCell::new(Vec::new()) };
}

/// Coroutines alive in this process right now (0 when no keyless handshake
/// is in its signing step): a pending signature whose handshake went away
/// must not leave one behind.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// True on a coroutine stack, where a keyless signer must hand its request
/// out ([`sign_here`]) instead of blocking.
pub fn on_fiber() -> bool {
    generator::is_generator()
}

/// Called by the keyless signer on a coroutine stack: suspends the
/// handshake until its task has the key server's reply.
pub(crate) fn sign_here(
    servers: Arc<KeyServers>,
    name: Arc<str>,
    scheme: SignatureScheme,
    message: &[u8],
) -> SignReply {
    let job = SignJob {
        servers,
        name,
        scheme,
        message: message.to_vec(),
    };
    // The free `yield_` is deprecated in favour of a `Scope` handle, but the
    // signer is called deep inside rustls, which cannot pass one down.
    #[allow(deprecated)]
    let reply = generator::yield_::<SignReply, Step>(Step::Sign(job));
    reply.unwrap_or(Err(KeysError::Abandoned))
}

/// One handshake's coroutine; resumed by its task, never dropped while
/// suspended (see the module doc).
struct Fiber {
    co: Option<Coroutine>,
}

impl Fiber {
    fn new(body: impl FnOnce() -> Step + Send + 'static) -> Fiber {
        LIVE.fetch_add(1, Ordering::Relaxed);
        // `try_with`: a thread being torn down makes a new stack instead.
        let reused = STACKS.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        let co = match reused {
            Some(mut co) => {
                co.init_code(body);
                co
            }
            None => {
                // An odd size asks the `generator` crate to track the exact use.
                let words = STACK_WORDS + usize::from(TRACK.load(Ordering::Relaxed));
                Gn::<SignReply>::new_opt(words, body)
            }
        };
        Fiber { co: Some(co) }
    }

    /// Runs the coroutine until it next hands something out. A panic inside
    /// ends it and is returned as an error.
    fn resume(&mut self, reply: Option<SignReply>) -> io::Result<Step> {
        let co = self
            .co
            .as_mut()
            .ok_or_else(|| io::Error::other("keyless handshake coroutine already ended"))?;
        match catch_unwind(AssertUnwindSafe(|| co.raw_send(reply))) {
            Ok(Some(step)) => Ok(step),
            Ok(None) => Err(io::Error::other(
                "keyless handshake coroutine ended without a result",
            )),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!("keyless handshake coroutine panicked: {why}");
                // Ended by the panic: its stack is not reused.
                self.co = None;
                Err(io::Error::other(format!("keyless handshake failed: {why}")))
            }
        }
    }
}

impl Drop for Fiber {
    fn drop(&mut self) {
        if let Some(mut co) = self.co.take() {
            // Abandoned mid-signature: each pending signature fails, so rustls
            // fails the handshake and the coroutine returns normally.
            while !co.is_done() {
                let r = catch_unwind(AssertUnwindSafe(|| co.raw_send(Some(Err(KeysError::Abandoned)))));
                if r.is_err() {
                    break;
                }
            }
            if co.is_done() {
                // On a thread being torn down the stack is simply unmapped.
                let _ = STACKS.try_with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < POOL {
                        s.push(co);
                    }
                });
            }
        }
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The rest of a handshake whose ClientHello was read: processed (and so
/// signed) on a coroutine whose signatures are awaited here, then finished
/// here. Errors are those of `StartHandshake::into_stream`'s `Accept`, plus
/// a panic inside the signing step.
pub async fn finish<IO>(start: StartHandshake<IO>, config: Arc<ServerConfig>) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut fiber = Fiber::new(move || Step::Done(Box::new(start.into_stream(config))));
    let mut step = fiber.resume(None)?;
    loop {
        match step {
            Step::Sign(job) => {
                let reply = job.run().await;
                step = fiber.resume(Some(reply))?;
            }
            Step::Done(out) => {
                drop(fiber);
                let accept = out
                    .downcast::<Accept<IO>>()
                    .map_err(|_| io::Error::other("keyless handshake coroutine returned another type"))?;
                return accept.await;
            }
        }
    }
}

/// Makes stacks created from now on track their exact use (the `generator`
/// crate then fills each new stack with a pattern, touching all of it), so
/// [`last_stack_usage`] is exact; off by default. For tests that size
/// [`STACK_WORDS`].
pub fn track_stack_use(on: bool) {
    TRACK.store(on, Ordering::Relaxed);
}

/// Stack words the last coroutine finished on this thread used, of its
/// size: `(size, used)`; exact for stacks made under [`track_stack_use`].
pub fn last_stack_usage() -> Option<(usize, usize)> {
    STACKS
        .try_with(|s| s.borrow().last().map(|co| co.stack_usage()))
        .ok()
        .flatten()
}
