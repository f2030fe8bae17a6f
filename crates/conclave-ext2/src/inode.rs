//! An inode as stored in a group's inode table (128 or 256 bytes).

use crate::error::{corrupt, Ext2Error};
use crate::le::{put_u16, put_u32, u16_at, u32_at};

/// Direct block pointers.
pub const DIRECT_BLOCKS: usize = 12;
/// Slot of the single-indirect pointer in `i_block`.
pub const IND_SLOT: usize = 12;
/// Slot of the double-indirect pointer.
pub const DIND_SLOT: usize = 13;
/// Slot of the triple-indirect pointer.
pub const TIND_SLOT: usize = 14;

/// File-type bits of `i_mode`.
pub const S_IFMT: u16 = 0o170000;
/// Regular file.
pub const S_IFREG: u16 = 0o100000;
/// Directory.
pub const S_IFDIR: u16 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0o120000;

/// Inode flag: hashed (htree) directory.
pub const INDEX_FL: u32 = 0x1000;
/// Inode flag: `i_block` holds an extent tree root (ext4).
pub const EXTENTS_FL: u32 = 0x80000;
/// Inode flags this engine cannot interpret (inline data, huge-file units).
const UNSUPPORTED_FL: u32 = 0x1000_0000 | 0x40000;

/// Bytes of `i_block` (also the room for a fast symlink's target).
pub const I_BLOCK_BYTES: usize = 60;

/// One inode. The raw bytes keep fields this engine does not interpret.
#[derive(Clone, Debug)]
pub struct Inode {
    raw: Vec<u8>,
    /// Inode number it was read as (0 for one not yet written): seeds its checksums.
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Access time (seconds).
    pub atime: u32,
    /// Inode change time.
    pub ctime: u32,
    /// Modification time.
    pub mtime: u32,
    /// Deletion time.
    pub dtime: u32,
    /// Hard links.
    pub links_count: u16,
    /// Allocated 512-byte sectors (data, indirect and xattr blocks).
    pub blocks: u64,
    /// Inode flags.
    pub flags: u32,
    /// Block pointers: 12 direct, single, double, triple indirect.
    pub block: [u32; 15],
    /// Extended-attribute block, 0 if none.
    pub file_acl: u32,
}

impl Inode {
    /// Parses inode `ino` from its table slot.
    pub fn from_bytes(b: &[u8], ino: u32) -> Result<Inode, Ext2Error> {
        if b.len() < 128 {
            return Err(corrupt(format!("inode {ino}: slot of {} bytes", b.len())));
        }
        let mut block = [0u32; 15];
        for (i, p) in block.iter_mut().enumerate() {
            *p = u32_at(b, 40 + 4 * i);
        }
        let inode = Inode {
            raw: b.to_vec(),
            ino,
            mode: u16_at(b, 0),
            uid: u32::from(u16_at(b, 2)) | u32::from(u16_at(b, 120)) << 16,
            size: u64::from(u32_at(b, 4)) | u64::from(u32_at(b, 108)) << 32,
            atime: u32_at(b, 8),
            ctime: u32_at(b, 12),
            mtime: u32_at(b, 16),
            dtime: u32_at(b, 20),
            gid: u32::from(u16_at(b, 24)) | u32::from(u16_at(b, 122)) << 16,
            links_count: u16_at(b, 26),
            blocks: u64::from(u32_at(b, 28)) | u64::from(u16_at(b, 116)) << 32,
            flags: u32_at(b, 32),
            block,
            file_acl: u32_at(b, 104),
        };
        if inode.links_count > 0 {
            if inode.flags & UNSUPPORTED_FL != 0 {
                return Err(Ext2Error::Unsupported(format!(
                    "inode {ino}: flags {:#x}",
                    inode.flags
                )));
            }
            if u16_at(b, 118) != 0 {
                return Err(corrupt(format!("inode {ino}: 48-bit xattr block pointer")));
            }
            if b.len() > 128 {
                let extra = usize::from(u16_at(b, 128));
                if extra > b.len() - 128 || extra % 4 != 0 {
                    return Err(corrupt(format!("inode {ino}: extra isize {extra}")));
                }
            }
        }
        Ok(inode)
    }

    /// A fresh inode of `size` table bytes with extra fields sized as the file system wants.
    pub fn new(inode_size: usize, extra_isize: u16, mode: u16, uid: u32, gid: u32, now: u32) -> Inode {
        let mut raw = vec![0u8; inode_size];
        if inode_size > 128 {
            put_u16(&mut raw, 128, extra_isize);
            if usize::from(extra_isize) >= 24 {
                put_u32(&mut raw, 144, now); // crtime
            }
        }
        Inode {
            raw,
            ino: 0,
            mode,
            uid,
            gid,
            size: 0,
            atime: now,
            ctime: now,
            mtime: now,
            dtime: 0,
            links_count: 0,
            blocks: 0,
            flags: 0,
            block: [0; 15],
            file_acl: 0,
        }
    }

    /// The table slot as it should be written back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.raw.clone();
        put_u16(&mut b, 0, self.mode);
        put_u16(&mut b, 2, self.uid as u16);
        put_u16(&mut b, 120, (self.uid >> 16) as u16);
        put_u32(&mut b, 4, self.size as u32);
        put_u32(&mut b, 108, (self.size >> 32) as u32);
        put_u32(&mut b, 8, self.atime);
        put_u32(&mut b, 12, self.ctime);
        put_u32(&mut b, 16, self.mtime);
        put_u32(&mut b, 20, self.dtime);
        put_u16(&mut b, 24, self.gid as u16);
        put_u16(&mut b, 122, (self.gid >> 16) as u16);
        put_u16(&mut b, 26, self.links_count);
        put_u32(&mut b, 28, self.blocks as u32);
        put_u16(&mut b, 116, (self.blocks >> 32) as u16);
        put_u32(&mut b, 32, self.flags);
        for (i, p) in self.block.iter().enumerate() {
            put_u32(&mut b, 40 + 4 * i, *p);
        }
        put_u32(&mut b, 104, self.file_acl);
        b
    }

    /// `i_generation`, part of the seed of this inode's checksums.
    pub fn generation(&self) -> u32 {
        u32_at(&self.raw, 0x64)
    }

    /// Whether `i_block` holds an extent tree (`EXT4_EXTENTS_FL`).
    pub fn uses_extents(&self) -> bool {
        self.flags & EXTENTS_FL != 0
    }

    /// The type bits of the mode.
    pub fn kind(&self) -> u16 {
        self.mode & S_IFMT
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind() == S_IFLNK
    }

    /// Whether this symlink keeps its target inside `i_block` (no data block), on a
    /// file system of `block_size`-byte blocks.
    pub fn is_fast_symlink(&self, block_size: u32) -> bool {
        let acl_sectors = if self.file_acl != 0 {
            u64::from(block_size / 512)
        } else {
            0
        };
        self.is_symlink() && self.blocks <= acl_sectors
    }

    /// `i_block` as raw bytes (a fast symlink's target).
    pub fn block_bytes(&self) -> [u8; I_BLOCK_BYTES] {
        let mut out = [0u8; I_BLOCK_BYTES];
        for (i, p) in self.block.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&p.to_le_bytes());
        }
        out
    }

    /// Stores raw bytes in `i_block` (a fast symlink's target).
    pub fn set_block_bytes(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; I_BLOCK_BYTES];
        let n = bytes.len().min(I_BLOCK_BYTES);
        buf[..n].copy_from_slice(&bytes[..n]);
        for (i, p) in self.block.iter_mut().enumerate() {
            *p = u32_at(&buf, 4 * i);
        }
    }
}
