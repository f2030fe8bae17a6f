//! Opcodes and record layouts of the file-server protocol. Numbers follow
//! the original nextfs where the operation existed there (see
//! `docs/fs.md`); new operations start at 60.

use conclave_rpc::{BodyReader, BodyWriter, Status};

/// Remove a file: `str path`.
pub const UNLINK: u32 = 5;
/// Hard link: `str path, str newpath`.
pub const LINK: u32 = 6;
/// Rename: `str path, str newpath`.
pub const RENAME: u32 = 7;
/// Open: `str path, i32 flags (Linux O_*), u32 mode` → `u32 fd`.
pub const OPEN: u32 = 9;
/// Close a file or directory descriptor: `u32 fd`.
pub const CLOSE: u32 = 10;
/// Truncate by descriptor: `u32 fd, u64 size`.
pub const FTRUNCATE: u32 = 11;
/// Read at the descriptor's offset: `u32 fd, u32 count` → data (empty at EOF).
pub const READ: u32 = 12;
/// Write at the descriptor's offset (or the end with O_APPEND): `u32 fd, data...` → `u32 written`.
pub const WRITE: u32 = 13;
/// Seek: `u32 fd, i64 offset, u32 whence` → `u64 offset`.
pub const SEEK: u32 = 14;
/// Current offset: `u32 fd` → `u64`.
pub const TELL: u32 = 15;
/// Size of an open file: `u32 fd` → `u64`.
pub const FSIZE: u32 = 16;
/// Make a directory: `str path, u32 mode`.
pub const MKDIR: u32 = 19;
/// Open a directory: `str path` → `u32 fd`.
pub const OPENDIR: u32 = 21;
/// Close a directory descriptor: `u32 fd`.
pub const CLOSEDIR: u32 = 22;
/// List a directory page: `u32 fd, u32 cookie, u32 max_entries` →
/// `u32 next_cookie (u32::MAX at the end), u32 n, n × {u32 ino, u8 type, str name}`.
pub const READDIR: u32 = 25;
/// Symbolic link: `str target, str linkpath`.
pub const SYMLINK: u32 = 26;
/// Read a link: `str path` → `str target`.
pub const READLINK: u32 = 28;
/// Stat, following symlinks: `str path` → [`Stat`].
pub const STAT: u32 = 29;
/// Set permission bits: `str path, u32 mode`.
pub const CHMOD: u32 = 30;
/// Set owner: `str path, u32 uid, u32 gid` (`u32::MAX` leaves one unchanged).
pub const CHOWN: u32 = 32;
/// Read at an offset without moving the descriptor: `u32 fd, u64 offset, u32 count` → data.
pub const PREAD: u32 = 60;
/// Write at an offset without moving the descriptor: `u32 fd, u64 offset, data...` → `u32 written`.
pub const PWRITE: u32 = 61;
/// Make everything written so far durable (metadata, device, sealed root): `u32 fd` or empty.
pub const FSYNC: u32 = 62;
/// Stat an open descriptor: `u32 fd` → [`Stat`].
pub const FSTAT: u32 = 63;
/// File-system capacity: → `u32 bsize, u64 blocks, u64 bfree, u64 files, u64 ffree`.
pub const STATFS: u32 = 64;
/// Remove an empty directory: `str path`.
pub const RMDIR: u32 = 65;
/// Set times: `str path, i64 atime, i64 mtime` (seconds; `i64::MIN` leaves one unchanged).
pub const UTIMES: u32 = 66;
/// Stat without following a final symlink: `str path` → [`Stat`].
pub const LSTAT: u32 = 67;
/// Truncate by path: `str path, u64 size`.
pub const TRUNCATE: u32 = 68;
/// Stat and read by path in one round trip (what a web server does on every
/// hit): `str path, u64 offset, u32 count` → Stat, then data.
pub const READ_PATH: u32 = 69;

/// Largest read or write one RPC moves; clients chunk larger ones.
pub const MAX_IO: usize = 1024 * 1024;
/// Largest request body the server accepts (a maximal write plus its header).
pub const MAX_BODY: u32 = (MAX_IO + 4096) as u32;
/// Longest path accepted (each component is at most 255 bytes).
pub const MAX_PATH: usize = 4096;
/// Longest name component.
pub const MAX_NAME: usize = 255;

/// Linux open flags understood by OPEN.
pub mod flags {
    /// Access mode mask.
    pub const O_ACCMODE: i32 = 0o3;
    /// Read only.
    pub const O_RDONLY: i32 = 0;
    /// Write only.
    pub const O_WRONLY: i32 = 0o1;
    /// Read and write.
    pub const O_RDWR: i32 = 0o2;
    /// Create if missing.
    pub const O_CREAT: i32 = 0o100;
    /// With O_CREAT: fail if it exists.
    pub const O_EXCL: i32 = 0o200;
    /// Truncate to 0 on open.
    pub const O_TRUNC: i32 = 0o1000;
    /// Every write goes to the end.
    pub const O_APPEND: i32 = 0o2000;
    /// Must be a directory.
    pub const O_DIRECTORY: i32 = 0o200000;
    /// Do not follow a final symlink.
    pub const O_NOFOLLOW: i32 = 0o400000;
}

/// Directory-entry and stat file types on the wire.
pub mod ftype {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// Regular file.
    pub const FILE: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
    /// Device, FIFO or socket.
    pub const SPECIAL: u8 = 3;
}

/// The attributes STAT, LSTAT and FSTAT return (64-bit sizes and times).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// One of [`ftype`].
    pub file_type: u8,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard links.
    pub nlink: u32,
    /// Allocated 512-byte sectors.
    pub blocks: u64,
    /// Last access, seconds since the epoch.
    pub atime: i64,
    /// Last modification.
    pub mtime: i64,
    /// Last inode change.
    pub ctime: i64,
}

impl Stat {
    /// Appends the record to a body.
    pub fn encode(&self, w: &mut BodyWriter) {
        w.u64(self.ino)
            .u8(self.file_type)
            .u32(self.mode)
            .u32(self.uid)
            .u32(self.gid)
            .u64(self.size)
            .u32(self.nlink)
            .u64(self.blocks)
            .i64(self.atime)
            .i64(self.mtime)
            .i64(self.ctime);
    }

    /// Reads the record from a body.
    pub fn decode(r: &mut BodyReader<'_>) -> Result<Stat, Status> {
        Ok(Stat {
            ino: r.u64()?,
            file_type: r.u8()?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            size: r.u64()?,
            nlink: r.u32()?,
            blocks: r.u64()?,
            atime: r.i64()?,
            mtime: r.i64()?,
            ctime: r.i64()?,
        })
    }
}

/// `statfs` results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
}
