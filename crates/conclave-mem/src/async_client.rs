//! The async client API (for the tokio edge), the same model as the
//! blocking one. smdish and smuf speak the protocol over an
//! [`AsyncConnection`] per open memory file; `local` and `smc` run their
//! blocking segment on tokio's blocking pool.
//!
//! An async guard cannot publish in `Drop` (it cannot await): call
//! [`AsyncLockGuard::unlock`]. A guard dropped without it is published, and
//! the lock released, at the start of the next operation on its memory file.

use crate::client::{client_options, connect, MemOptions, MemoryStore, Segment};
use crate::remote::{RemoteCore, Sealing};
use crate::{proto, MemError, MemSpec};
use conclave_rpc::{AsyncConnection, ClientOptions, Endpoint};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

enum StoreInner {
    Blocking(Arc<dyn MemoryStore>),
    Remote {
        endpoint: Endpoint,
        opts: ClientOptions,
        sealing: Sealing,
    },
}

/// Async twin of [`MemoryStore`].
pub struct AsyncMemoryStore {
    inner: StoreInner,
    kind: &'static str,
}

impl AsyncMemoryStore {
    /// The store a spec names.
    pub fn new(spec: &MemSpec, opts: &MemOptions) -> Result<Self, MemError> {
        Self::new_inner(spec, opts, None)
    }

    /// The store a spec names, connecting within `connect` (the caller
    /// bounds each call with its own timer, e.g. `tokio::time::timeout`).
    pub fn new_bounded(spec: &MemSpec, opts: &MemOptions, connect: Duration) -> Result<Self, MemError> {
        Self::new_inner(spec, opts, Some(connect))
    }

    fn new_inner(
        spec: &MemSpec,
        opts: &MemOptions,
        connect_timeout: Option<Duration>,
    ) -> Result<Self, MemError> {
        let remote_opts = || -> Result<ClientOptions, MemError> {
            let mut o = client_options(opts)?;
            if let Some(t) = connect_timeout {
                o.connect_timeout = t;
            }
            Ok(o)
        };
        let inner = match spec {
            MemSpec::Smdish { endpoint } => StoreInner::Remote {
                endpoint: endpoint.clone(),
                opts: remote_opts()?,
                sealing: Sealing::None,
            },
            MemSpec::Smuf { endpoint, dir } => StoreInner::Remote {
                endpoint: endpoint.clone(),
                opts: remote_opts()?,
                sealing: Sealing::Uf { dir: dir.clone() },
            },
            MemSpec::Local | MemSpec::Smc { .. } => StoreInner::Blocking(connect(spec, opts)?),
        };
        Ok(AsyncMemoryStore {
            inner,
            kind: spec.kind(),
        })
    }

    /// The kind: `local`, `smdish`, `smuf` or `smc`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Opens (creating if needed) a memory file with a `size`-byte segment.
    pub async fn open(&self, name: &str, size: usize) -> Result<AsyncMemoryFile, MemError> {
        let seg = match &self.inner {
            StoreInner::Blocking(store) => {
                let store = store.clone();
                let n = name.to_string();
                let file = tokio::task::spawn_blocking(move || store.open(&n, size))
                    .await
                    .map_err(|_| MemError::Closed(name.to_string()))??;
                let (_, _, seg) = file.into_parts();
                AsyncSeg::Blocking(seg)
            }
            StoreInner::Remote {
                endpoint,
                opts,
                sealing,
            } => {
                RemoteCore::check(name, size)?;
                let mut conn = AsyncConnection::connect(endpoint, opts).await?;
                let reply = conn
                    .call(proto::OPEN, &RemoteCore::open_request(name, size))
                    .await?;
                let core = RemoteCore::open_finish(name, size, sealing.clone(), reply)?;
                AsyncSeg::Remote {
                    conn,
                    core: Box::new(core),
                }
            }
        };
        Ok(AsyncMemoryFile {
            name: name.to_string(),
            buf: vec![0; size],
            seg,
            pending_publish: false,
        })
    }
}

enum AsyncSeg {
    /// `None` after a blocking task failed to hand it back.
    Blocking(Option<Box<dyn Segment>>),
    Remote {
        conn: AsyncConnection,
        core: Box<RemoteCore>,
    },
}

/// Async twin of [`crate::MemoryFile`].
pub struct AsyncMemoryFile {
    name: String,
    buf: Vec<u8>,
    seg: AsyncSeg,
    pending_publish: bool,
}

enum Op {
    Lock(Option<Duration>),
    Unlock(bool),
    Renew,
    Close,
}

impl AsyncMemoryFile {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The segment size.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    async fn run(&mut self, op: Op) -> Result<u64, MemError> {
        match &mut self.seg {
            AsyncSeg::Remote { conn, core } => match op {
                Op::Lock(t) => {
                    let reply = conn.call(proto::LOCK, &core.lock_request(t)).await?;
                    core.lock_finish(t, reply, &mut self.buf)
                }
                Op::Unlock(publish) => {
                    let body = core.unlock_request(publish.then_some(&self.buf[..]))?;
                    let reply = conn.call(proto::UNLOCK, &body).await?;
                    core.unlock_finish(reply).map(|()| 0)
                }
                Op::Renew => {
                    let reply = conn.call(proto::RENEW, &core.renew_request()).await?;
                    core.renew_finish(reply).map(|()| 0)
                }
                Op::Close => {
                    let reply = conn.call(proto::CLOSE, &core.close_request()).await?;
                    core.close_finish(reply).map(|()| 0)
                }
            },
            AsyncSeg::Blocking(slot) => {
                let mut seg = slot.take().ok_or_else(|| MemError::Closed(self.name.clone()))?;
                let mut buf = std::mem::take(&mut self.buf);
                let (seg, buf, res) = tokio::task::spawn_blocking(move || {
                    let res = match op {
                        Op::Lock(t) => seg.lock(t, &mut buf),
                        Op::Unlock(publish) => seg.unlock(publish.then_some(&buf[..])).map(|()| 0),
                        Op::Renew => seg.renew().map(|()| 0),
                        Op::Close => seg.close().map(|()| 0),
                    };
                    (seg, buf, res)
                })
                .await
                .map_err(|_| MemError::Closed(self.name.clone()))?;
                *slot = Some(seg);
                self.buf = buf;
                res
            }
        }
    }

    async fn settle(&mut self) -> Result<(), MemError> {
        if std::mem::take(&mut self.pending_publish) {
            self.finish(true).await?;
        }
        Ok(())
    }

    async fn finish(&mut self, publish: bool) -> Result<(), MemError> {
        match self.run(Op::Unlock(publish)).await {
            Err(e) if publish && !matches!(e, MemError::NotHolder(_) | MemError::LeaseExpired { .. }) => {
                let _ = self.run(Op::Unlock(false)).await;
                Err(e)
            }
            r => r.map(|_| ()),
        }
    }

    /// Waits for the lock as long as it takes.
    pub async fn lock(&mut self) -> Result<AsyncLockGuard<'_>, MemError> {
        self.lock_timeout(None).await
    }

    /// Waits for the lock at most `timeout` (None = forever).
    pub async fn lock_timeout(&mut self, timeout: Option<Duration>) -> Result<AsyncLockGuard<'_>, MemError> {
        self.settle().await?;
        match self.run(Op::Lock(timeout)).await {
            Ok(version) => Ok(AsyncLockGuard {
                file: self,
                version,
                done: false,
            }),
            Err(e @ (MemError::Tampered { .. } | MemError::BadHostFile { .. } | MemError::Io { .. })) => {
                self.buf.fill(0);
                let _ = self.run(Op::Unlock(false)).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The last published segment and its version without taking the lock:
    /// see [`crate::MemoryFile::peek`]. `None` for local and smc (take the
    /// lock) or when no snapshot could be had this time.
    pub async fn peek(&mut self) -> Result<Option<(u64, &[u8])>, MemError> {
        self.settle().await?;
        match &mut self.seg {
            AsyncSeg::Remote { conn, core } => {
                let reply = conn.call(proto::PEEK, &core.peek_request()).await?;
                match core.peek_finish(reply, &mut self.buf)? {
                    Some(v) => Ok(Some((v, &self.buf[..]))),
                    None => Ok(None),
                }
            }
            AsyncSeg::Blocking(_) => Ok(None),
        }
    }

    /// Closes the memory file; the last close removes it.
    pub async fn close(mut self) -> Result<(), MemError> {
        self.settle().await?;
        self.run(Op::Close).await.map(|_| ())
    }
}

/// A held lock of an [`AsyncMemoryFile`]; derefs to the private copy.
pub struct AsyncLockGuard<'a> {
    file: &'a mut AsyncMemoryFile,
    version: u64,
    done: bool,
}

impl AsyncLockGuard<'_> {
    /// Number of publishes before this lock was granted.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Extends the lease of this lock (memory servers): call it within each
    /// lease while working, or lose the lock ([`MemError::LeaseExpired`]).
    pub async fn renew(&mut self) -> Result<(), MemError> {
        self.file.run(Op::Renew).await.map(|_| ())
    }

    /// The lease to renew within (`None`: this kind has no leases).
    pub fn lease(&self) -> Option<Duration> {
        match &self.file.seg {
            AsyncSeg::Remote { core, .. } => Some(core.lease),
            AsyncSeg::Blocking(seg) => seg.as_ref().and_then(|s| s.lease()),
        }
    }

    /// Publishes the segment and releases the lock.
    pub async fn unlock(mut self) -> Result<(), MemError> {
        self.done = true;
        self.file.finish(true).await
    }

    /// Releases the lock without publishing.
    pub async fn release(mut self) -> Result<(), MemError> {
        self.done = true;
        self.file.finish(false).await
    }
}

impl Deref for AsyncLockGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.file.buf
    }
}

impl DerefMut for AsyncLockGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.file.buf
    }
}

impl Drop for AsyncLockGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.file.pending_publish = true;
        }
    }
}
