//! The file system handle: opening, inode I/O, dirty/clean state, `sync`.

use crate::alloc::Alloc;
use crate::block_map::Mapper;
use crate::cache::MetaCache;
use crate::error::{corrupt, Ext2Error};
use crate::inode::Inode;
use crate::metadata::{FsStats, Ino, Metadata};
use crate::superblock::STATE_VALID;
use conclave_bd::{BlockDevice, BLOCK_SIZE};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An open ext2 file system. Read-only operations take `&self` (so a server can share
/// it behind a `RwLock`), mutations take `&mut self`. Reads never update `atime`.
pub struct Ext2Fs {
    pub(crate) dev: Arc<dyn BlockDevice>,
    pub(crate) alloc: Alloc,
    pub(crate) cache: Arc<MetaCache>,
    /// Whether the superblock on the device currently says "clean".
    on_disk_clean: bool,
    /// Whether it said so when opened; if not, writes are refused.
    opened_clean: bool,
}

impl std::fmt::Debug for Ext2Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext2Fs")
            .field("blocks", &self.alloc.sb.blocks_count)
            .field("inodes", &self.alloc.sb.inodes_count)
            .finish()
    }
}

/// Seconds since the epoch, for inode times.
pub(crate) fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Ext2Fs {
    /// Opens the ext2 file system on `dev`, checking the superblock and group
    /// descriptors. A file system not cleanly closed opens for reading only.
    pub fn open(dev: Arc<dyn BlockDevice>) -> Result<Ext2Fs, Ext2Error> {
        let alloc = Alloc::load(&*dev)?;
        let clean = alloc.sb.state & STATE_VALID != 0 && alloc.sb.state & 2 == 0;
        let fs = Ext2Fs {
            dev,
            alloc,
            cache: Arc::default(),
            on_disk_clean: clean,
            opened_clean: clean,
        };
        let root = fs.inode(Ino::ROOT)?;
        if !root.is_dir() {
            return Err(corrupt("root inode is not a directory"));
        }
        Ok(fs)
    }

    /// Whether the file system was cleanly closed when opened (if not, writes fail
    /// with `NeedsCheck` until `e2fsck` has repaired it).
    pub fn was_clean(&self) -> bool {
        self.opened_clean
    }

    /// Capacity and free space.
    pub fn statfs(&self) -> FsStats {
        let sb = &self.alloc.sb;
        FsStats {
            block_size: BLOCK_SIZE as u32,
            blocks: sb.blocks_count,
            free_blocks: sb.free_blocks_count,
            inodes: sb.inodes_count,
            free_inodes: sb.free_inodes_count,
        }
    }

    /// Attributes of inode `ino`.
    pub fn stat(&self, ino: Ino) -> Result<Metadata, Ext2Error> {
        Ok(Metadata::from_inode(ino, &self.inode(ino)?))
    }

    /// Writes back cached allocation metadata (bitmaps, group descriptors, superblock,
    /// marked clean) and flushes the device. After `sync` the image is consistent.
    pub fn sync(&mut self) -> Result<(), Ext2Error> {
        if !self.on_disk_clean && self.opened_clean {
            self.alloc.sb.state = STATE_VALID;
            self.alloc.sb.wtime = now();
            self.alloc.flush(&*self.dev)?;
            self.on_disk_clean = true;
        }
        self.dev.flush()?;
        Ok(())
    }

    /// Called before every mutation: refuses unclean or unsupported file systems and
    /// marks the superblock "not clean" on the device until the next `sync`, so a crash
    /// in between is detected at the next open.
    pub(crate) fn begin_write(&mut self) -> Result<(), Ext2Error> {
        if !self.opened_clean {
            return Err(Ext2Error::NeedsCheck);
        }
        self.alloc.sb.writable()?;
        if self.on_disk_clean {
            self.alloc.sb.state &= !STATE_VALID;
            self.alloc.sb.wtime = now();
            self.alloc.write_superblock(&*self.dev)?;
            self.dev.flush()?;
            self.on_disk_clean = false;
        }
        Ok(())
    }

    fn inode_location(&self, ino: Ino) -> Result<(u64, usize), Ext2Error> {
        let sb = &self.alloc.sb;
        if ino.0 == 0 || ino.0 > sb.inodes_count {
            return Err(Ext2Error::Stale(ino.0));
        }
        let idx = (ino.0 - 1) as usize;
        let ipg = sb.inodes_per_group as usize;
        let gd = self.alloc.groups.get(idx / ipg).ok_or(Ext2Error::Stale(ino.0))?;
        let byte = (idx % ipg) * usize::from(sb.inode_size);
        Ok((
            u64::from(gd.inode_table) + (byte / BLOCK_SIZE) as u64,
            byte % BLOCK_SIZE,
        ))
    }

    /// Reads inode `ino` whatever its state.
    pub(crate) fn raw_inode(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        let (blk, off) = self.inode_location(ino)?;
        let buf = self.cache.read(&*self.dev, blk)?;
        Inode::from_bytes(&buf[off..off + usize::from(self.alloc.sb.inode_size)], ino.0)
    }

    /// Reads a live inode; a freed one is `Stale`.
    pub(crate) fn inode(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        let inode = self.raw_inode(ino)?;
        if inode.links_count == 0 || inode.mode == 0 {
            return Err(Ext2Error::Stale(ino.0));
        }
        Ok(inode)
    }

    /// Writes inode `ino` into its table slot.
    pub(crate) fn write_inode(&mut self, ino: Ino, inode: &Inode) -> Result<(), Ext2Error> {
        let (blk, off) = self.inode_location(ino)?;
        let mut buf = *self.cache.read(&*self.dev, blk)?;
        let bytes = inode.to_bytes();
        buf[off..off + bytes.len()].copy_from_slice(&bytes);
        self.cache.write(&*self.dev, blk, &buf)?;
        Ok(())
    }

    /// Reads data block `b`, refusing pointers past the end of the file system.
    pub(crate) fn read_data_block(&self, b: u32, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Ext2Error> {
        if b == 0 || b >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data block pointer {b} out of range")));
        }
        self.dev.read_block(u64::from(b), buf)?;
        Ok(())
    }

    /// Writes data block `b`.
    pub(crate) fn write_data_block(&self, b: u32, buf: &[u8; BLOCK_SIZE]) -> Result<(), Ext2Error> {
        if b == 0 || b >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data block pointer {b} out of range")));
        }
        self.cache.forget(u64::from(b));
        self.dev.write_block(u64::from(b), buf)?;
        Ok(())
    }

    /// A block mapper for one operation.
    pub(crate) fn mapper(&self) -> Mapper {
        Mapper::new(self.alloc.sb.blocks_count, self.cache.clone())
    }

    /// A fresh inode with this file system's inode size and current time.
    pub(crate) fn new_inode(&self, mode: u16) -> Inode {
        let sb = &self.alloc.sb;
        let extra = if sb.want_extra_isize != 0 {
            sb.want_extra_isize
        } else {
            32
        };
        let isz = usize::from(sb.inode_size);
        let extra = if isz > 128 {
            extra.min((isz - 128) as u16)
        } else {
            0
        };
        Inode::new(isz, extra, mode, 0, 0, now())
    }
}
