//! The `SharedState` seam: named memory files shared by the worker processes.
//!
//! A memory file is a named lock with a fixed-size segment. Taking the lock pulls
//! the canonical copy of the segment, releasing it publishes the (possibly changed)
//! copy: exactly the operations of the memory servers (smdish, smuf, smc), so a
//! remote implementation plugs in behind the same two traits. The in-process
//! implementation serves one worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod local;
pub mod mem;

pub use local::{LocalSegment, LocalSharedState};
pub use mem::MemSharedState;

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
    /// The memory server did not answer within the edge's deadline (lock
    /// wait, PEEK, connect) or broke our lease: the caller degrades (serves
    /// the request as a cache miss, without an index update). Already
    /// logged by the seam, once per interval with a count.
    #[error("memory file {name:?} unavailable: {reason}")]
    Unavailable {
        /// Name of the memory file.
        name: String,
        /// What ran out.
        reason: String,
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
