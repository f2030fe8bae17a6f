//! `SharedState` on the memory servers (smdish, smuf) or smc: the cache index
//! segment is pulled at lock and published at unlock by `conclave-mem`.
//!
//! On smdish and smuf a segment also gives async, shared snapshots (one PEEK
//! per round trip, whoever is waiting): the cache's hot path reads the index
//! without blocking a thread and without one round trip per request.
//!
//! Every call to a memory server has a deadline ([`MemDeadlines`]): a
//! memory server that is slow, unreachable, or whose lock someone holds
//! and never releases costs a request at most about `lock_wait + call`,
//! after which the request is served as a cache miss (see
//! [`SharedError::Unavailable`]). Those events are logged once per
//! `log_interval` with a count, so a stall does not flood the log.

use super::{SharedError, SharedSegment, SharedState, Snapshot, SnapshotFuture};
use conclave_mem::{
    AsyncMemoryFile, AsyncMemoryStore, CallLimits, MemError, MemOptions, MemSpec, MemoryFile, MemoryStore,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The edge's deadlines on memory-server calls. NGINX has no memory
/// servers; the nearest equivalents are `proxy_connect_timeout` and
/// `proxy_read_timeout`, and, for the lock, `proxy_cache_lock_timeout`
/// (after which NGINX also passes the request to the origin uncached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemDeadlines {
    /// Connecting to the memory server plus the TLS handshake.
    pub connect: Duration,
    /// One round trip other than LOCK's wait (PEEK, UNLOCK, OPEN).
    pub call: Duration,
    /// How long a request waits for the cache zone's lock before it is
    /// served as a miss without touching the index. Shorter than the
    /// server's lease, so a stuck holder degrades requests rather than
    /// stalling them for a whole lease.
    pub lock_wait: Duration,
    /// Deadline events are logged at most once per this, with a count.
    pub log_interval: Duration,
}

impl Default for MemDeadlines {
    fn default() -> Self {
        MemDeadlines {
            connect: Duration::from_secs(1),
            call: Duration::from_secs(1),
            lock_wait: Duration::from_millis(500),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// Memory files of one memory store, shared by the edge's workers.
pub struct MemSharedState {
    store: Arc<dyn MemoryStore>,
    /// smdish and smuf: the async client the snapshots use.
    peeks: Option<Arc<AsyncMemoryStore>>,
    deadlines: MemDeadlines,
}

impl std::fmt::Debug for MemSharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSharedState")
            .field("kind", &self.store.kind())
            .field("deadlines", &self.deadlines)
            .finish()
    }
}

impl MemSharedState {
    /// Connects to the store `spec` names, with the default [`MemDeadlines`].
    pub fn connect(spec: &MemSpec, opts: &MemOptions) -> Result<MemSharedState, SharedError> {
        Self::connect_with(spec, opts, MemDeadlines::default())
    }

    /// Connects to the store `spec` names; every call has `deadlines`.
    pub fn connect_with(
        spec: &MemSpec,
        opts: &MemOptions,
        deadlines: MemDeadlines,
    ) -> Result<MemSharedState, SharedError> {
        let backend = |e: MemError| SharedError::Backend {
            name: spec.kind().to_string(),
            message: e.to_string(),
        };
        let limits = CallLimits {
            connect: deadlines.connect,
            // A LOCK's reply waits up to lock_wait for the grant.
            io: deadlines.lock_wait + deadlines.call,
        };
        let store = conclave_mem::connect_bounded(spec, opts, limits).map_err(backend)?;
        let peeks = match spec {
            MemSpec::Smdish { .. } | MemSpec::Smuf { .. } => Some(Arc::new(
                AsyncMemoryStore::new_bounded(spec, opts, deadlines.connect).map_err(backend)?,
            )),
            MemSpec::Local | MemSpec::Smc { .. } => None,
        };
        Ok(MemSharedState {
            store,
            peeks,
            deadlines,
        })
    }
}

/// Deadline events of one memory file, logged once per interval.
struct DegradeLog {
    name: String,
    interval: Duration,
    /// When the last line was written, and events since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl DegradeLog {
    fn note(&self, reason: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 += 1;
        if st.0.is_none_or(|t| t.elapsed() >= self.interval) {
            tracing::warn!(
                zone = %self.name,
                count = st.1,
                "memory server past its deadline {} time(s) since the last report (latest: {reason}); \
                 those requests were served as cache misses without updating the shared index",
                st.1
            );
            *st = (Some(Instant::now()), 0);
        }
    }
}

#[derive(Clone, Debug)]
enum FlightError {
    /// A deadline ran out (already counted).
    Deadline(String),
    /// Anything else.
    Other(String),
}

type Flight = Arc<OnceCell<Result<Option<Arc<Snapshot>>, FlightError>>>;

struct MemSegment {
    name: String,
    size: usize,
    store: Arc<dyn MemoryStore>,
    /// The locking connection; `None` after a call broke it (reopened by
    /// the next section).
    file: Mutex<Option<MemoryFile>>,
    peeks: Option<Arc<AsyncMemoryStore>>,
    deadlines: MemDeadlines,
    degraded: DegradeLog,
    /// The connection snapshots use, opened at the first one; one PEEK on
    /// the wire at a time.
    peeker: tokio::sync::Mutex<Option<AsyncMemoryFile>>,
    /// The snapshot that callers arriving now will share: it is sent once
    /// the previous one's reply is in, so it is taken after they arrived.
    boarding: Mutex<Option<Flight>>,
}

impl SharedState for MemSharedState {
    fn open(&self, name: &str, size: usize) -> Result<Arc<dyn SharedSegment>, SharedError> {
        let file = self.store.open(name, size).map_err(|e| SharedError::Backend {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(Arc::new(MemSegment {
            name: name.to_string(),
            size,
            store: self.store.clone(),
            file: Mutex::new(Some(file)),
            peeks: self.peeks.clone(),
            deadlines: self.deadlines,
            degraded: DegradeLog {
                name: name.to_string(),
                interval: self.deadlines.log_interval,
                state: Mutex::new((None, 0)),
            },
            peeker: tokio::sync::Mutex::new(None),
            boarding: Mutex::new(None),
        }))
    }
}

/// Whether a memory-file error is a deadline (or a broken lease) that the
/// edge degrades on, rather than a fault to report.
fn is_deadline(e: &MemError) -> bool {
    match e {
        MemError::Timeout { .. } | MemError::LeaseExpired { .. } => true,
        MemError::Rpc(conclave_rpc::RpcError::Connect { source, .. })
        | MemError::Rpc(conclave_rpc::RpcError::Transport {
            source: conclave_rpc::FrameError::Io(source),
            ..
        }) => matches!(
            source.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

impl MemSegment {
    /// Maps a memory-file error: deadlines are counted (and logged once per
    /// interval) and become [`SharedError::Unavailable`].
    fn fail(&self, e: MemError) -> SharedError {
        if is_deadline(&e) {
            let reason = e.to_string();
            self.degraded.note(&reason);
            SharedError::Unavailable {
                name: self.name.clone(),
                reason,
            }
        } else {
            SharedError::Backend {
                name: self.name.clone(),
                message: e.to_string(),
            }
        }
    }

    /// One PEEK on the snapshot connection, (re)opening it if needed; each
    /// step within its deadline.
    async fn peek_once(
        &self,
        store: &AsyncMemoryStore,
        flight: &Flight,
    ) -> Result<Option<Arc<Snapshot>>, FlightError> {
        let d = self.deadlines;
        let deadline = |what: &str| {
            let reason = format!("{what} did not finish within {} ms", d.call.as_millis());
            self.degraded.note(&reason);
            FlightError::Deadline(reason)
        };
        let mut conn = match tokio::time::timeout(d.call, self.peeker.lock()).await {
            Ok(c) => c,
            Err(_) => return Err(deadline("waiting for the snapshot connection")),
        };
        // The previous round trip is done: close this flight to newcomers,
        // who will take the next one (so theirs starts after they arrived).
        {
            let mut boarding = self.boarding.lock().unwrap_or_else(|p| p.into_inner());
            if boarding.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
                *boarding = None;
            }
        }
        if conn.is_none() {
            match tokio::time::timeout(d.connect + d.call, store.open(&self.name, self.size)).await {
                Ok(Ok(f)) => *conn = Some(f),
                Ok(Err(e)) => return Err(FlightError::Other(e.to_string())),
                Err(_) => return Err(deadline("opening the snapshot connection")),
            }
        }
        let Some(file) = conn.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(d.call, file.peek()).await {
            Ok(Ok(snap)) => Ok(snap.map(|(version, bytes)| {
                Arc::new(Snapshot {
                    version,
                    bytes: bytes.to_vec(),
                })
            })),
            Ok(Err(e)) => {
                // A broken connection is reopened by the next snapshot.
                *conn = None;
                Err(FlightError::Other(e.to_string()))
            }
            Err(_) => {
                // Abandoned mid-call: the stream is out of step.
                *conn = None;
                Err(deadline("PEEK"))
            }
        }
    }
}

impl SharedSegment for MemSegment {
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError> {
        let d = self.deadlines;
        // The whole section, queueing behind this worker's other sections
        // included, is bounded: a request never waits much past this.
        let deadline = Instant::now() + d.lock_wait;
        // Round trips to the memory server: never stall the worker's other
        // connections (see conclave_rpc::block_in_place).
        let started = Instant::now();
        let r = conclave_rpc::run_blocking(|| {
            let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.fail(MemError::Timeout {
                    name: self.name.clone(),
                    ms: d.lock_wait.as_millis() as u64,
                }));
            }
            if slot.is_none() {
                *slot = Some(self.store.open(&self.name, self.size).map_err(|e| self.fail(e))?);
            }
            let Some(file) = slot.as_mut() else {
                return Ok(());
            };
            let res = (|| {
                // Optimistically on a snapshot: a section that changes nothing is done.
                if let Some((_, snapshot)) = file.peek()? {
                    if !f(snapshot) {
                        return Ok(());
                    }
                }
                let mut guard = file.lock_timeout(Some(left))?;
                if f(&mut guard) {
                    guard.unlock()
                } else {
                    guard.release()
                }
            })();
            match res {
                Ok(()) => Ok(()),
                Err(e) => {
                    if matches!(e, MemError::Rpc(_)) {
                        // The stream may be out of step: reopen next time
                        // (the server releases what this connection held).
                        *slot = None;
                    }
                    Err(self.fail(e))
                }
            }
        });
        let mem = crate::metrics::Backend::MemServer;
        crate::metrics::backend_call(mem, "locked_section", started.elapsed(), r.is_ok());
        r
    }

    fn snapshot(&self) -> Option<SnapshotFuture<'_>> {
        let store = self.peeks.clone()?;
        Some(Box::pin(async move {
            let started = Instant::now();
            let flight = {
                let mut boarding = self.boarding.lock().unwrap_or_else(|p| p.into_inner());
                boarding.get_or_insert_with(|| Arc::new(OnceCell::new())).clone()
            };
            let r = flight
                .get_or_init(|| self.peek_once(&store, &flight))
                .await
                .clone()
                .map_err(|e| match e {
                    FlightError::Deadline(reason) => SharedError::Unavailable {
                        name: self.name.clone(),
                        reason,
                    },
                    FlightError::Other(message) => SharedError::Backend {
                        name: self.name.clone(),
                        message,
                    },
                });
            let mem = crate::metrics::Backend::MemServer;
            crate::metrics::backend_call(mem, "snapshot", started.elapsed(), r.is_ok());
            r
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_rpc::Role;
    use conclave_testkit::MemFixture;

    /// A memory server of each remote kind in this process, over a UNIX
    /// socket with real mTLS, and the edge's shared state on it.
    fn with_server(sealed: bool, test: impl FnOnce(&tokio::runtime::Runtime, MemSharedState)) {
        let fx = MemFixture::start(sealed);
        let opts = fx.options(Role::Edge);
        test(&fx.rt, MemSharedState::connect(&fx.spec, &opts).unwrap());
    }

    #[test]
    fn snapshots_are_shared_and_never_older_than_their_call() {
        for sealed in [false, true] {
            with_server(sealed, |rt, state| {
                let seg = state.open("ZONE", 64).unwrap();
                for round in 1..=3u8 {
                    seg.with_locked(&mut |b| {
                        b[0] = round;
                        true
                    })
                    .unwrap();
                    // Every snapshot asked for after the publish sees it,
                    // however many ask at once.
                    let seen: Vec<(u64, u8)> = rt.block_on(async {
                        let calls = (0..64).map(|_| async {
                            let s = seg
                                .snapshot()
                                .expect("remote kinds snapshot")
                                .await
                                .unwrap()
                                .unwrap();
                            (s.version, s.bytes[0])
                        });
                        futures_util::future::join_all(calls).await
                    });
                    assert!(
                        seen.iter().all(|&v| v == (round as u64, round)),
                        "sealed={sealed} round {round}: {seen:?}"
                    );
                }
                // A section that only reads publishes nothing.
                seg.with_locked(&mut |b| {
                    b[1] = 9;
                    false
                })
                .unwrap();
                let s = rt.block_on(seg.snapshot().unwrap()).unwrap().unwrap();
                assert_eq!((s.version, s.bytes[1]), (3, 0), "sealed={sealed}");
            });
        }
    }

    #[test]
    fn local_state_has_no_snapshots() {
        let s = crate::shared::LocalSharedState::new();
        assert!(s.open("Z", 8).unwrap().snapshot().is_none());
    }
}
