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
    /// Starts writing `path` piece by piece (a body streamed from an origin):
    /// readers keep seeing the old file, or none, until
    /// [`StorageWriter::commit`]; dropping the writer uncommitted removes
    /// what was written.
    fn create_streaming(&self, path: &str) -> io::Result<Box<dyn StorageWriter>>;
    /// Opens `path` for reads at offsets (a body streamed to a client): the
    /// reader keeps the file open, so a generation replaced meanwhile is
    /// still read whole.
    fn open_reader(&self, path: &str) -> io::Result<Box<dyn StorageReader>>;
    /// The entries of directory `path` as (name, is a directory); a missing
    /// directory is empty.
    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>>;
}

/// A file opened by [`Storage::open_reader`].
pub trait StorageReader: Send {
    /// Reads up to `len` bytes at `offset` (short only at end of file).
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Bytes>;
    /// The file's length.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file being written by [`Storage::create_streaming`].
pub trait StorageWriter: Send {
    /// Appends `data`.
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Puts the file in place atomically.
    fn commit(self: Box<Self>) -> io::Result<()>;
}
