//! `SharedState` on the memory servers (smdish, smuf) or smc: the cache index
//! segment is pulled at lock and published at unlock by `conclave-mem`.
//!
//! On smdish and smuf a segment also gives async, shared snapshots (one PEEK
//! per round trip, whoever is waiting): the cache's hot path reads the index
//! without blocking a thread and without one round trip per request.

use super::{SharedError, SharedSegment, SharedState, Snapshot, SnapshotFuture};
use conclave_mem::{AsyncMemoryFile, AsyncMemoryStore, MemOptions, MemSpec, MemoryFile, MemoryStore};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Memory files of one memory store, shared by the edge's workers.
pub struct MemSharedState {
    store: Arc<dyn MemoryStore>,
    /// smdish and smuf: the async client the snapshots use.
    peeks: Option<Arc<AsyncMemoryStore>>,
}

impl std::fmt::Debug for MemSharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSharedState")
            .field("kind", &self.store.kind())
            .finish()
    }
}

impl MemSharedState {
    /// Connects to the store `spec` names.
    pub fn connect(spec: &MemSpec, opts: &MemOptions) -> Result<MemSharedState, SharedError> {
        let backend = |e: conclave_mem::MemError| SharedError::Backend {
            name: spec.kind().to_string(),
            message: e.to_string(),
        };
        let store = conclave_mem::connect(spec, opts).map_err(backend)?;
        let peeks = match spec {
            MemSpec::Smdish { .. } | MemSpec::Smuf { .. } => {
                Some(Arc::new(AsyncMemoryStore::new(spec, opts).map_err(backend)?))
            }
            MemSpec::Local | MemSpec::Smc { .. } => None,
        };
        Ok(MemSharedState { store, peeks })
    }
}

type Flight = Arc<OnceCell<Result<Option<Arc<Snapshot>>, String>>>;

struct MemSegment {
    name: String,
    size: usize,
    file: Mutex<MemoryFile>,
    peeks: Option<Arc<AsyncMemoryStore>>,
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
            file: Mutex::new(file),
            peeks: self.peeks.clone(),
            peeker: tokio::sync::Mutex::new(None),
            boarding: Mutex::new(None),
        }))
    }
}

impl MemSegment {
    /// One PEEK on the snapshot connection, (re)opening it if needed.
    async fn peek_once(
        &self,
        store: &AsyncMemoryStore,
        flight: &Flight,
    ) -> Result<Option<Arc<Snapshot>>, String> {
        let mut conn = self.peeker.lock().await;
        // The previous round trip is done: close this flight to newcomers,
        // who will take the next one (so theirs starts after they arrived).
        {
            let mut boarding = self.boarding.lock().unwrap_or_else(|p| p.into_inner());
            if boarding.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
                *boarding = None;
            }
        }
        if conn.is_none() {
            *conn = Some(
                store
                    .open(&self.name, self.size)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(file) = conn.as_mut() else {
            return Ok(None);
        };
        match file.peek().await {
            Ok(snap) => Ok(snap.map(|(version, bytes)| {
                Arc::new(Snapshot {
                    version,
                    bytes: bytes.to_vec(),
                })
            })),
            Err(e) => {
                // A broken connection is reopened by the next snapshot.
                *conn = None;
                Err(e.to_string())
            }
        }
    }
}

impl SharedSegment for MemSegment {
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError> {
        let backend = |e: conclave_mem::MemError| SharedError::Backend {
            name: self.name.clone(),
            message: e.to_string(),
        };
        // Round trips to the memory server: never stall the worker's other
        // connections (see conclave_rpc::block_in_place).
        conclave_rpc::run_blocking(|| {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            // Optimistically on a snapshot: a section that changes nothing is done.
            if let Some((_, snapshot)) = file.peek().map_err(backend)? {
                if !f(snapshot) {
                    return Ok(());
                }
            }
            let mut guard = file.lock().map_err(backend)?;
            if f(&mut guard) {
                guard.unlock().map_err(backend)
            } else {
                guard.release().map_err(backend)
            }
        })
    }

    fn snapshot(&self) -> Option<SnapshotFuture<'_>> {
        let store = self.peeks.clone()?;
        Some(Box::pin(async move {
            let flight = {
                let mut boarding = self.boarding.lock().unwrap_or_else(|p| p.into_inner());
                boarding.get_or_insert_with(|| Arc::new(OnceCell::new())).clone()
            };
            flight
                .get_or_init(|| self.peek_once(&store, &flight))
                .await
                .clone()
                .map_err(|message| SharedError::Backend {
                    name: self.name.clone(),
                    message,
                })
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
