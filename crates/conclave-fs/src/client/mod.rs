//! Clients shaped like `std::fs`: [`FsClient`] (blocking, with [`File`]
//! implementing `Read`/`Write`/`Seek`) and [`AsyncFsClient`].
//!
//! Descriptors live per connection on the server, so an open [`File`] keeps
//! its own connection until it is dropped; path operations borrow an idle
//! connection from a pool. After a server restart, open files report an
//! error (their descriptors are gone) while new operations reconnect.

mod async_client;
mod blocking;

pub use async_client::AsyncFsClient;
pub use blocking::{File, FsClient};

use crate::proto::{self, Stat};
use conclave_rpc::{BodyReader, BodyWriter, Frame, RpcError, Status};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attributes of a file on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) stat: Stat,
}

impl Metadata {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.stat.size
    }
    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.stat.size == 0
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.stat.file_type == proto::ftype::DIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.stat.file_type == proto::ftype::FILE
    }
    /// A symbolic link (only from `symlink_metadata`).
    pub fn is_symlink(&self) -> bool {
        self.stat.file_type == proto::ftype::SYMLINK
    }
    /// Full mode (type and permission bits).
    pub fn mode(&self) -> u32 {
        self.stat.mode
    }
    /// Owner user id.
    pub fn uid(&self) -> u32 {
        self.stat.uid
    }
    /// Owner group id.
    pub fn gid(&self) -> u32 {
        self.stat.gid
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.stat.ino
    }
    /// Hard links.
    pub fn nlink(&self) -> u32 {
        self.stat.nlink
    }
    /// Last modification.
    pub fn modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.stat.mtime.max(0) as u64)
    }
    /// Last access.
    pub fn accessed(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.stat.atime.max(0) as u64)
    }
    /// Last inode change, seconds since the epoch.
    pub fn ctime(&self) -> i64 {
        self.stat.ctime
    }
    /// Last modification, seconds since the epoch.
    pub fn mtime(&self) -> i64 {
        self.stat.mtime
    }
    /// The raw record.
    pub fn stat(&self) -> &Stat {
        &self.stat
    }
}

/// One entry of [`FsClient::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name within the directory.
    pub name: String,
    /// Inode number.
    pub ino: u64,
    /// One of [`proto::ftype`].
    pub file_type: u8,
}

/// How to open a file, like `std::fs::OpenOptions`.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o644,
        }
    }
}

impl OpenOptions {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Open for reading.
    pub fn read(&mut self, v: bool) -> &mut Self {
        self.read = v;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, v: bool) -> &mut Self {
        self.write = v;
        self
    }
    /// Every write goes to the end.
    pub fn append(&mut self, v: bool) -> &mut Self {
        self.append = v;
        self
    }
    /// Truncate to 0 on open.
    pub fn truncate(&mut self, v: bool) -> &mut Self {
        self.truncate = v;
        self
    }
    /// Create if missing.
    pub fn create(&mut self, v: bool) -> &mut Self {
        self.create = v;
        self
    }
    /// Create, failing if it exists.
    pub fn create_new(&mut self, v: bool) -> &mut Self {
        self.create_new = v;
        self
    }
    /// Permission bits for a created file.
    pub fn mode(&mut self, m: u32) -> &mut Self {
        self.mode = m;
        self
    }

    pub(crate) fn flags(&self) -> i32 {
        use proto::flags::*;
        let write = self.write || self.append;
        let mut f = match (self.read, write) {
            (true, true) => O_RDWR,
            (false, true) => O_WRONLY,
            _ => O_RDONLY,
        };
        if self.append {
            f |= O_APPEND;
        }
        if self.truncate {
            f |= O_TRUNC;
        }
        if self.create || self.create_new {
            f |= O_CREAT;
        }
        if self.create_new {
            f |= O_EXCL;
        }
        f
    }

    pub(crate) fn body(&self, path: &str) -> Vec<u8> {
        let mut w = BodyWriter::new();
        w.str(path).i32(self.flags()).u32(self.mode);
        w.finish()
    }
}

/// The body of a reply as a result.
pub(crate) fn ok(f: Frame) -> io::Result<bytes::Bytes> {
    f.into_result().map_err(Status::into_io_error)
}

pub(crate) fn rpc(e: RpcError) -> io::Error {
    e.into()
}

pub(crate) fn proto_err(st: Status) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed reply from the file server: {st}"),
    )
}

pub(crate) fn decode_u32(b: &[u8]) -> io::Result<u32> {
    BodyReader::new(b).u32().map_err(proto_err)
}

pub(crate) fn decode_u64(b: &[u8]) -> io::Result<u64> {
    BodyReader::new(b).u64().map_err(proto_err)
}

pub(crate) fn decode_stat(b: &[u8]) -> io::Result<Metadata> {
    let mut r = BodyReader::new(b);
    let stat = Stat::decode(&mut r).map_err(proto_err)?;
    Ok(Metadata { stat })
}

pub(crate) fn path_body(p: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(p);
    w.finish()
}

pub(crate) fn two_paths(a: &str, b: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(a).str(b);
    w.finish()
}

/// Parses a READDIR page: (next cookie, entries).
pub(crate) fn decode_page(b: &[u8]) -> io::Result<(u32, Vec<DirEntry>)> {
    let mut r = BodyReader::new(b);
    let next = r.u32().map_err(proto_err)?;
    let n = r.u32().map_err(proto_err)?;
    let mut v = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let ino = r.u32().map_err(proto_err)? as u64;
        let file_type = r.u8().map_err(proto_err)?;
        let name = String::from_utf8_lossy(r.blob(proto::MAX_NAME).map_err(proto_err)?).into_owned();
        v.push(DirEntry { name, ino, file_type });
    }
    Ok((next, v))
}

/// Every ancestor of `p` from the top (`/a/b/c` → `/a`, `/a/b`, `/a/b/c`).
pub(crate) fn ancestors(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(c);
        out.push(cur.clone());
    }
    out
}
