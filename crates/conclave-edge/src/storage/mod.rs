//! The `Storage` seam: where the docroot and the cache files live.
//!
//! Paths given to a `Storage` are relative, already normalized (no `..`), and use
//! `/` as separator. The host implementation reads host directories; a file-server
//! implementation (nextfs) plugs in behind the same trait.

use bytes::Bytes;
use std::io;
use std::time::SystemTime;

mod host;
pub mod nextfs;

pub use host::HostStorage;
pub use nextfs::NextfsStorage;

/// What the HTTP layer needs to know about a file before reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Length in bytes.
    pub len: u64,
    /// Last modification time.
    pub modified: SystemTime,
    /// A directory rather than a file.
    pub is_dir: bool,
}

/// Files of one tree (a docroot or a cache directory), as the edge uses them.
pub trait Storage: Send + Sync + 'static {
    /// Metadata of `path`; `NotFound` if absent.
    fn stat(&self, path: &str) -> io::Result<FileMeta>;
    /// Reads `len` bytes at `offset` (short only at end of file).
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Bytes>;
    /// Reads a whole file together with its metadata (one open on hosts).
    fn read_all(&self, path: &str) -> io::Result<(FileMeta, Bytes)>;
    /// Replaces `path` with `data` atomically (readers see old or new, never half).
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()>;
    /// Removes `path`; absent is not an error.
    fn remove(&self, path: &str) -> io::Result<()>;
}
