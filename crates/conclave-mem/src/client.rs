//! The blocking client API, the same for every kind: a [`MemoryStore`]
//! opens [`MemoryFile`]s; [`MemoryFile::lock`] returns a [`LockGuard`] that
//! derefs to the segment and publishes it when unlocked or dropped.

use crate::local::LocalStore;
use crate::remote::{RemoteStore, Sealing};
use crate::smc::SmcStore;
use crate::{MemError, MemSpec};
use conclave_rpc::Role;
use conclave_rpc::{ClientOptions, Credentials};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a kind does for one open memory file. Implemented by each kind;
/// [`MemoryFile`] adds the buffer and the guard on top.
pub trait Segment: Send {
    /// Waits for the lock (at most `timeout`) and fills `buf` with the
    /// canonical segment; returns its version (number of publishes).
    fn lock(&mut self, timeout: Option<Duration>, buf: &mut [u8]) -> Result<u64, MemError>;
    /// Publishes `data` (if given) as the canonical segment and releases the lock.
    fn unlock(&mut self, publish: Option<&[u8]>) -> Result<(), MemError>;
    /// Fills `buf` with the last published segment without taking the lock
    /// and returns its version; `None` when the kind has no cheaper way than
    /// the lock (the default) or no snapshot could be had this time.
    fn peek(&mut self, buf: &mut [u8]) -> Result<Option<u64>, MemError> {
        let _ = buf;
        Ok(None)
    }
    /// Closes the memory file (releasing the lock if held).
    fn close(&mut self) -> Result<(), MemError>;
    /// Extends the held lock's lease (memory servers); kinds without
    /// leases have nothing to do.
    fn renew(&mut self) -> Result<(), MemError> {
        Ok(())
    }
    /// The lock lease a holder must renew within; `None`: no lease (local,
    /// smc: a holder keeps the lock until it unlocks or dies).
    fn lease(&self) -> Option<Duration> {
        None
    }
}

/// A place memory files live; one per spec. Shared by threads.
pub trait MemoryStore: Send + Sync {
    /// Opens the memory file `name` with a segment of `size` bytes (0 = a
    /// pure lock), creating it if nobody has it open.
    fn open(&self, name: &str, size: usize) -> Result<MemoryFile, MemError>;
    /// The kind: `local`, `smdish`, `smuf` or `smc`.
    fn kind(&self) -> &'static str;
}

/// What a client needs besides the spec.
#[derive(Clone, Debug, Default)]
pub struct MemOptions {
    /// mTLS identity for smdish and smuf (the `edge` or `client` role).
    pub creds: Option<Credentials>,
    /// The conclave's secret file for smc (overrides `?secret=` in the spec).
    pub secret_file: Option<PathBuf>,
}

/// Opens the memory store a spec names.
pub fn connect(spec: &MemSpec, opts: &MemOptions) -> Result<Arc<dyn MemoryStore>, MemError> {
    connect_inner(spec, opts, None)
}

/// Limits on each round trip to a memory server, for callers that must
/// never hang on one (the edge): connecting plus the TLS handshake, and
/// each read or write of a reply. A LOCK's reply legitimately waits for the
/// grant, so `io` must exceed the longest lock timeout the caller uses. A
/// call past its limit fails with [`MemError::Rpc`] and leaves the memory
/// file's connection unusable: reopen it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Connecting and the TLS handshake.
    pub connect: Duration,
    /// Any one read or write.
    pub io: Duration,
}

/// [`connect`] whose memory-server round trips are bounded by `limits`.
pub fn connect_bounded(
    spec: &MemSpec,
    opts: &MemOptions,
    limits: CallLimits,
) -> Result<Arc<dyn MemoryStore>, MemError> {
    connect_inner(spec, opts, Some(limits))
}

fn connect_inner(
    spec: &MemSpec,
    opts: &MemOptions,
    limits: Option<CallLimits>,
) -> Result<Arc<dyn MemoryStore>, MemError> {
    let remote_opts = || -> Result<ClientOptions, MemError> {
        let mut o = client_options(opts)?;
        if let Some(l) = limits {
            o.connect_timeout = l.connect;
            o.io_timeout = l.io;
        }
        Ok(o)
    };
    Ok(match spec {
        MemSpec::Local => Arc::new(LocalStore::new()),
        MemSpec::Smdish { endpoint } => {
            Arc::new(RemoteStore::new(endpoint.clone(), remote_opts()?, Sealing::None))
        }
        MemSpec::Smuf { endpoint, dir } => Arc::new(RemoteStore::new(
            endpoint.clone(),
            remote_opts()?,
            Sealing::Uf { dir: dir.clone() },
        )),
        MemSpec::Smc { dir, secret } => {
            let secret = opts.secret_file.as_ref().or(secret.as_ref()).ok_or_else(|| {
                MemError::Config("smc needs the conclave's secret file (--secret-file or ?secret=)".into())
            })?;
            Arc::new(SmcStore::new(dir, secret)?)
        }
    })
}

pub(crate) fn client_options(opts: &MemOptions) -> Result<ClientOptions, MemError> {
    let creds = opts.creds.as_ref().ok_or_else(|| {
        MemError::Config("memory servers require a client certificate (--certs DIR)".into())
    })?;
    let mut o = ClientOptions::mtls(creds, Role::MemServer).map_err(|e| MemError::Config(e.to_string()))?;
    // A LOCK reply may legitimately take as long as another client holds
    // the lock; a dead server still shows up at once as a closed stream.
    o.io_timeout = Duration::from_secs(24 * 3600);
    o.max_body = (crate::MAX_SEGMENT + 4096) as u32;
    Ok(o)
}

/// One open memory file.
pub struct MemoryFile {
    name: String,
    seg: Option<Box<dyn Segment>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for MemoryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFile")
            .field("name", &self.name)
            .field("size", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl MemoryFile {
    /// Wraps a kind's segment (for implementors of [`Segment`]).
    pub fn new(name: &str, size: usize, seg: Box<dyn Segment>) -> Self {
        MemoryFile {
            name: name.to_string(),
            seg: Some(seg),
            buf: vec![0; size],
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The segment size.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    fn seg(&mut self) -> Result<&mut Box<dyn Segment>, MemError> {
        self.seg
            .as_mut()
            .ok_or_else(|| MemError::Closed(self.name.clone()))
    }

    /// Waits for the lock as long as it takes.
    pub fn lock(&mut self) -> Result<LockGuard<'_>, MemError> {
        self.lock_timeout(None)
    }

    /// Waits for the lock at most `timeout` (None = forever).
    pub fn lock_timeout(&mut self, timeout: Option<Duration>) -> Result<LockGuard<'_>, MemError> {
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.seg()?.lock(timeout, &mut buf);
        self.buf = buf;
        match res {
            Ok(version) => Ok(LockGuard {
                file: self,
                version,
                done: false,
            }),
            Err(e @ (MemError::Tampered { .. } | MemError::BadHostFile { .. } | MemError::Io { .. })) => {
                // The lock was granted but the segment is unusable: give it back.
                self.buf.fill(0);
                let _ = self.seg()?.unlock(None);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The last published segment and its version, read without taking the
    /// lock (smdish and smuf: one round trip, and none of the segment's bytes
    /// move when this client already has that version). For optimistic
    /// read-only sections: changes to the returned bytes are never published;
    /// a section that wants to change something takes [`lock`](Self::lock)
    /// and runs again, since the snapshot may be stale by then. `None`: no
    /// snapshot (local and smc, whose lock is as cheap; or a publish raced
    /// the read): take the lock.
    pub fn peek(&mut self) -> Result<Option<(u64, &mut [u8])>, MemError> {
        let mut buf = std::mem::take(&mut self.buf);
        let res = self.seg()?.peek(&mut buf);
        self.buf = buf;
        match res? {
            Some(v) => Ok(Some((v, &mut self.buf[..]))),
            None => Ok(None),
        }
    }

    /// Runs `f` on the segment under the lock and publishes it if `f`
    /// returns true (else releases without publishing), returning `f`'s
    /// result. While `f` runs, a helper thread renews the lease every third
    /// of it, so a long section keeps the lock (a section that outlives a
    /// lease would otherwise lose it to the next waiter). If the lease is
    /// broken anyway (the server was unreachable), nothing is published
    /// and the result is [`MemError::LeaseExpired`].
    pub fn with_locked<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut [u8]) -> (bool, R),
    ) -> Result<R, MemError> {
        let guard = self.lock_timeout(timeout)?;
        std::mem::forget(guard);
        let lease = self.seg()?.lease();
        let (publish, out, renewed) = match lease {
            None => {
                let (p, out) = f(&mut self.buf);
                (p, out, Ok(()))
            }
            Some(lease) => {
                let every = (lease / 3).max(Duration::from_millis(1));
                let seg = self
                    .seg
                    .as_mut()
                    .ok_or_else(|| MemError::Closed(self.name.clone()))?;
                let buf = &mut self.buf;
                std::thread::scope(|s| {
                    let (stop, stopped) = std::sync::mpsc::channel::<()>();
                    let renewer = s.spawn(move || loop {
                        match stopped.recv_timeout(every) {
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => seg.renew()?,
                            _ => return Ok::<(), MemError>(()),
                        }
                    });
                    let (p, out) = f(buf);
                    drop(stop);
                    let renewed = renewer.join().unwrap_or(Err(MemError::Closed(String::new())));
                    (p, out, renewed)
                })
            }
        };
        match renewed {
            Err(e @ MemError::LeaseExpired { .. }) => Err(e),
            Err(e) => {
                let _ = self.finish(false);
                Err(e)
            }
            Ok(()) => self.finish(publish).map(|()| out),
        }
    }

    /// Sends an unlock without holding the lock. Exists so tools and tests
    /// can check that a server refuses it ([`MemError::NotHolder`]).
    pub fn unlock_unheld(&mut self) -> Result<(), MemError> {
        self.seg()?.unlock(None)
    }

    /// Closes the memory file; the last close removes it.
    pub fn close(mut self) -> Result<(), MemError> {
        match self.seg.take() {
            Some(mut s) => s.close(),
            None => Ok(()),
        }
    }

    pub(crate) fn into_parts(mut self) -> (String, Vec<u8>, Option<Box<dyn Segment>>) {
        (
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.buf),
            self.seg.take(),
        )
    }

    fn finish(&mut self, publish: bool) -> Result<(), MemError> {
        let buf = std::mem::take(&mut self.buf);
        let res = self.seg()?.unlock(if publish { Some(&buf) } else { None });
        self.buf = buf;
        match res {
            Err(e) if publish && !matches!(e, MemError::NotHolder(_) | MemError::LeaseExpired { .. }) => {
                // Publishing failed but we still hold the lock: release it.
                let _ = self.seg()?.unlock(None);
                Err(e)
            }
            r => r,
        }
    }
}

/// A held lock: derefs to the private copy of the segment.
/// [`unlock`](Self::unlock) (or dropping the guard) publishes it;
/// [`release`](Self::release) gives the lock back without publishing.
pub struct LockGuard<'a> {
    file: &'a mut MemoryFile,
    version: u64,
    done: bool,
}

impl LockGuard<'_> {
    /// Number of publishes before this lock was granted.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Extends the lease of this lock (memory servers): a holder that works
    /// longer than the server's lease calls it within each lease, or loses
    /// the lock ([`MemError::LeaseExpired`]). See
    /// [`MemoryFile::with_locked`], which does it for you.
    pub fn renew(&mut self) -> Result<(), MemError> {
        self.file.seg()?.renew()
    }

    /// The lease to renew within (`None`: this kind has no leases).
    pub fn lease(&mut self) -> Option<Duration> {
        self.file.seg.as_ref().and_then(|s| s.lease())
    }

    /// Publishes the segment and releases the lock.
    pub fn unlock(mut self) -> Result<(), MemError> {
        self.done = true;
        self.file.finish(true)
    }

    /// Releases the lock without publishing (for read-only sections).
    pub fn release(mut self) -> Result<(), MemError> {
        self.done = true;
        self.file.finish(false)
    }
}

impl Deref for LockGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.file.buf
    }
}

impl DerefMut for LockGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.file.buf
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.file.finish(true) {
                tracing::warn!(name = %self.file.name, "unlock on drop failed: {e}");
            }
        }
    }
}
