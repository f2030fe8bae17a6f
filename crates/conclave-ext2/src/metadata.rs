//! What `stat` reports about an inode, and the file system as a whole.

use crate::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use std::fmt;

/// An inode number; the file server keeps open files by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u32);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(2);
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Device, FIFO or socket (readable as metadata only).
    Special,
}

impl FileType {
    /// The kind encoded in `mode`.
    pub fn from_mode(mode: u16) -> FileType {
        match mode & S_IFMT {
            S_IFREG => FileType::File,
            S_IFDIR => FileType::Dir,
            S_IFLNK => FileType::Symlink,
            _ => FileType::Special,
        }
    }
}

/// The attributes of one inode, as `stat(2)` would give them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Inode number.
    pub ino: Ino,
    /// Kind of file.
    pub file_type: FileType,
    /// Full mode (type and permission bits).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard links.
    pub links: u16,
    /// Allocated 512-byte sectors.
    pub blocks: u64,
    /// Last access (seconds since the epoch; reads do not update it).
    pub atime: u32,
    /// Last modification of the contents.
    pub mtime: u32,
    /// Last change of the inode.
    pub ctime: u32,
}

impl Metadata {
    pub(crate) fn from_inode(ino: Ino, i: &Inode) -> Metadata {
        Metadata {
            ino,
            file_type: FileType::from_mode(i.mode),
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            links: i.links_count,
            blocks: i.blocks,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
        }
    }

    /// Permission bits only.
    pub fn permissions(&self) -> u16 {
        self.mode & 0o7777
    }
}

/// Capacity and use of the whole file system (`statfs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the file system.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Inodes in the file system.
    pub inodes: u32,
    /// Free inodes.
    pub free_inodes: u32,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirListEntry {
    /// Name bytes (ext2 names need not be UTF-8).
    pub name: Vec<u8>,
    /// Inode it names.
    pub ino: Ino,
    /// Kind from the entry's type byte (`None` if the image has no file types).
    pub file_type: Option<FileType>,
}

impl DirListEntry {
    /// The name as text, with invalid UTF-8 replaced.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}
