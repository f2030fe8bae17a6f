//! The `SharedState` seam: named memory files shared by the worker processes.
//!
//! A memory file is a named lock with a fixed-size segment. Taking the lock pulls
//! the canonical copy of the segment, releasing it publishes the (possibly changed)
//! copy: exactly the operations of the memory servers (smdish, smuf, smc), so a
//! remote implementation plugs in behind the same two traits. The in-process
//! implementation serves one worker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A shared-state failure.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The same name was opened with another size.
    #[error("memory file {name:?} exists with size {have}, asked for {want}")]
    SizeMismatch {
        /// Name of the memory file.
        name: String,
        /// Its size.
        have: usize,
        /// The size asked for.
        want: usize,
    },
    /// The backend failed (I/O, RPC).
    #[error("memory file {name:?}: {message}")]
    Backend {
        /// Name of the memory file.
        name: String,
        /// What failed.
        message: String,
    },
}

/// Where cross-worker state lives.
pub trait SharedState: Send + Sync + 'static {
    /// Opens (creating, zero-filled, if needed) the memory file `name` of `size` bytes.
    fn open(&self, name: &str, size: usize) -> Result<Arc<dyn SharedSegment>, SharedError>;
}

/// One memory file: a lock and its segment.
pub trait SharedSegment: Send + Sync {
    /// Gives `f` the canonical segment bytes under the lock, then unlocks,
    /// publishing the bytes if `f` returns true (it changed them). Keep `f`
    /// short and never await in it.
    ///
    /// `f` may run twice: a remote kind first runs it on a snapshot taken
    /// without the lock (one round trip instead of two; most cache lookups
    /// change nothing), discarding whatever it wrote; only if that run
    /// returns true does it take the lock and run `f` again on the current
    /// bytes. So `f` must compute its results afresh on each run.
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError>;

    /// The last published segment, read without the lock and without
    /// blocking a thread, if this kind has a way cheaper than the lock (a
    /// memory server: one PEEK round trip, shared by the callers that arrive
    /// while the previous one is on the wire). `None`: use
    /// [`with_locked`](Self::with_locked). A snapshot `Ok(None)` means none
    /// could be had this time. A snapshot is taken after the call began, but
    /// may be stale by the time it is used; read-only decisions only.
    fn snapshot(&self) -> Option<SnapshotFuture<'_>> {
        None
    }
}

/// A published version of a segment, as [`SharedSegment::snapshot`] gives it.
#[derive(Debug)]
pub struct Snapshot {
    /// Number of publishes it reflects.
    pub version: u64,
    /// The segment.
    pub bytes: Vec<u8>,
}

/// What [`SharedSegment::snapshot`] returns.
pub type SnapshotFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Arc<Snapshot>>, SharedError>> + Send + 'a>>;

/// In-process memory files (the `local` kind).
#[derive(Default, Debug)]
pub struct LocalSharedState {
    files: Mutex<HashMap<String, Arc<LocalSegment>>>,
}

impl LocalSharedState {
    /// An empty set of memory files.
    pub fn new() -> LocalSharedState {
        LocalSharedState::default()
    }
}

/// An in-process memory file: the lock is a mutex, the segment its contents.
#[derive(Debug)]
pub struct LocalSegment {
    bytes: Mutex<Vec<u8>>,
}

impl SharedState for LocalSharedState {
    fn open(&self, name: &str, size: usize) -> Result<Arc<dyn SharedSegment>, SharedError> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let seg = files
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(LocalSegment {
                    bytes: Mutex::new(vec![0; size]),
                })
            })
            .clone();
        let have = seg.bytes.lock().unwrap_or_else(|p| p.into_inner()).len();
        if have != size {
            return Err(SharedError::SizeMismatch {
                name: name.into(),
                have,
                want: size,
            });
        }
        Ok(seg)
    }
}

impl SharedSegment for LocalSegment {
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError> {
        let mut g = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_segments_are_shared_by_name_and_sized() {
        let s = LocalSharedState::new();
        let a = s.open("Z", 32).unwrap();
        a.with_locked(&mut |b| {
            b[0] = 7;
            true
        })
        .unwrap();
        let b = s.open("Z", 32).unwrap();
        let mut seen = 0;
        b.with_locked(&mut |b| {
            seen = b[0];
            false
        })
        .unwrap();
        assert_eq!(seen, 7);
        assert!(matches!(s.open("Z", 64), Err(SharedError::SizeMismatch { .. })));
    }
}
