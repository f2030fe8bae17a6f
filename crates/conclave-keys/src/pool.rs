//! The signing pool: private-key operations run on dedicated threads (one
//! per core by default) fed by a bounded queue, so the async server never
//! blocks on RSA and throughput scales with cores (the original signed on its
//! single event-loop thread). A full queue is `EAGAIN`, not unbounded memory.

use conclave_rpc::Status;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use tracing::warn;

struct Job {
    key: Arc<dyn SigningKey>,
    scheme: SignatureScheme,
    message: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, Status>>,
}

/// Threads that sign.
pub struct SigningPool {
    queue: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    inline: bool,
}

impl SigningPool {
    /// Starts `threads` signing threads (0 = one per core) with room for
    /// `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<SigningPool> {
        let n = if threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            threads
        };
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("sign-{i}"))
                    .spawn(move || worker(&rx))?,
            );
        }
        Ok(SigningPool {
            queue: Some(tx),
            threads: handles,
            inline: false,
        })
    }

    /// No threads: each signature runs on the calling (runtime) thread.
    /// Saves two thread hand-offs per signature, which on a small VM cost
    /// more than the signature's wait for a free runtime thread; the price
    /// is no queue bound (`EAGAIN`) and other requests of that runtime
    /// thread waiting behind the signature.
    pub fn inline() -> SigningPool {
        SigningPool {
            queue: None,
            threads: Vec::new(),
            inline: true,
        }
    }

    /// Number of signing threads (0 when signing inline).
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Signs `message` with `key` under `scheme` on a pool thread.
    /// `ENOTSUP` if the key cannot sign with that scheme, `EAGAIN` if the
    /// queue is full, `EIO` if the signature failed.
    pub async fn sign(
        &self,
        key: Arc<dyn SigningKey>,
        scheme: SignatureScheme,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, Status> {
        if self.inline {
            return sign_one(&*key, scheme, &message);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            key,
            scheme,
            message,
            reply,
        };
        let Some(q) = &self.queue else {
            return Err(Status::EIO);
        };
        match q.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Status::EAGAIN),
            Err(TrySendError::Disconnected(_)) => return Err(Status::EIO),
        }
        rx.await.unwrap_or(Err(Status::EIO))
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        let res = sign_one(&*job.key, job.scheme, &job.message);
        // The caller may have gone (connection closed); nothing to do then.
        let _ = job.reply.send(res);
    }
}

fn sign_one(key: &dyn SigningKey, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, Status> {
    match key.choose_scheme(&[scheme]) {
        None => Err(Status::ENOTSUP),
        Some(signer) => signer.sign(message).map_err(|e| {
            warn!(scheme = ?scheme, "signing failed: {e}");
            Status::EIO
        }),
    }
}

impl Drop for SigningPool {
    fn drop(&mut self) {
        self.queue = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
