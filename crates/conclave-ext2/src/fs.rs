//! The file system handle: opening, inode I/O, dirty/clean state, `sync`.

use crate::alloc::Alloc;
use crate::block_io::BlockIo;
use crate::block_map::{max_blocks, Mapper};
use crate::cache::MetaCache;
use crate::error::{corrupt, Ext2Error};
use crate::features::FeatureSet;
use crate::inode::Inode;
use crate::metadata::{FsStats, Ino, Metadata};
use crate::superblock::STATE_VALID;
use conclave_bd::BlockDevice;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shape of an open file system, for code that lays out blocks itself (the
/// ext4 extent and checksum code) and for tools that report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per file-system block (1024 to 65536).
    pub block_size: u32,
    /// Blocks in the file system.
    pub blocks_count: u64,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Bytes per inode-table slot.
    pub inode_size: u16,
    /// Bytes per group descriptor (32, or 64+ with `64bit`).
    pub desc_size: u16,
    /// 1 with 1 KiB blocks, else 0.
    pub first_data_block: u32,
    /// Block groups.
    pub group_count: u32,
    /// `s_rev_level` (0 or 1).
    pub revision: u32,
    /// The three feature words.
    pub features: FeatureSet,
}

/// An open ext2 file system. Read-only operations take `&self` (so a server can share
/// it behind a `RwLock`), mutations take `&mut self`. Reads never update `atime`.
pub struct Ext2Fs {
    pub(crate) io: BlockIo,
    pub(crate) alloc: Alloc,
    pub(crate) cache: Arc<MetaCache>,
    /// Whether the superblock on the device currently says "clean".
    on_disk_clean: bool,
    /// Whether it said so when opened; if not, writes are refused.
    opened_clean: bool,
    /// Opened with [`Ext2Fs::open_read_only`]: every mutation fails with EROFS.
    read_only: bool,
}

impl std::fmt::Debug for Ext2Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext2Fs")
            .field("block_size", &self.alloc.sb.block_size)
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
    /// Opens the file system on `dev` for reading and writing, checking the
    /// superblock, the image size and the group descriptors. Features this engine
    /// reads but cannot write (unknown ro_compat ones, a journal...) are refused by
    /// name: use [`Ext2Fs::open_read_only`] for those. A file system not cleanly
    /// closed opens, but refuses writes (`NeedsCheck`).
    pub fn open(dev: Arc<dyn BlockDevice>) -> Result<Ext2Fs, Ext2Error> {
        let fs = Self::open_inner(dev, false)?;
        fs.alloc.sb.writable()?;
        Ok(fs)
    }

    /// Opens the file system for reading only (a server's `--read-only`): also
    /// images with features this engine cannot write. Every mutation fails with
    /// EROFS, and nothing is ever written to the device.
    pub fn open_read_only(dev: Arc<dyn BlockDevice>) -> Result<Ext2Fs, Ext2Error> {
        Self::open_inner(dev, true)
    }

    fn open_inner(dev: Arc<dyn BlockDevice>, read_only: bool) -> Result<Ext2Fs, Ext2Error> {
        // Before anything is parsed: the journal may hold newer metadata.
        let _replayed = crate::journal::recover_if_needed(&*dev, read_only)?;
        let mut alloc = Alloc::load(&*dev)?;
        let io = BlockIo::new(dev, alloc.sb.block_size);
        alloc.load_groups(&io)?;
        let clean = alloc.sb.state & STATE_VALID != 0 && alloc.sb.state & 2 == 0;
        let fs = Ext2Fs {
            io,
            alloc,
            cache: Arc::default(),
            on_disk_clean: clean,
            opened_clean: clean,
            read_only,
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

    /// Block size, counts and features.
    pub fn geometry(&self) -> Geometry {
        let sb = &self.alloc.sb;
        Geometry {
            block_size: sb.block_size,
            blocks_count: sb.blocks_count,
            blocks_per_group: sb.blocks_per_group,
            inodes_per_group: sb.inodes_per_group,
            inode_size: sb.inode_size,
            desc_size: sb.desc_size,
            first_data_block: sb.first_data_block,
            group_count: sb.group_count(),
            revision: sb.rev,
            features: sb.features,
        }
    }

    /// Bytes per file-system block.
    pub fn block_size(&self) -> u32 {
        self.alloc.sb.block_size
    }

    /// Names of the features the superblock has (e2fsprogs' names).
    pub fn feature_names(&self) -> Vec<String> {
        self.alloc.sb.features.names()
    }

    /// The largest file size this file system can hold: what the block map can
    /// address, and 2 GiB - 1 at revision 0 (it has no `large_file` flag to set).
    pub fn max_file_size(&self) -> u64 {
        let bs = u64::from(self.block_size());
        let map = max_blocks(self.block_size()).saturating_mul(bs);
        if self.alloc.sb.is_old_rev() {
            map.min(i32::MAX as u64)
        } else {
            map
        }
    }

    /// Reads file-system block `b` (any block, data or metadata) into `buf`, which
    /// is one block long. Refuses numbers past the end of the file system.
    pub fn read_fs_block(&self, b: u64, buf: &mut [u8]) -> Result<(), Ext2Error> {
        self.check_block(b, buf.len())?;
        self.io.read(b, buf)?;
        Ok(())
    }

    /// Writes file-system block `b` from `buf` (one block long), keeping the
    /// metadata cache coherent. The caller is inside a mutation (`begin_write`).
    pub fn write_fs_block(&self, b: u64, buf: &[u8]) -> Result<(), Ext2Error> {
        self.check_block(b, buf.len())?;
        self.cache.forget(b);
        self.io.write(b, buf)?;
        Ok(())
    }

    fn check_block(&self, b: u64, len: usize) -> Result<(), Ext2Error> {
        if len != self.io.block_size() {
            return Err(Ext2Error::InvalidArgument("buffer is not one block long"));
        }
        if b >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("block {b} out of range")));
        }
        Ok(())
    }

    /// Capacity and free space.
    pub fn statfs(&self) -> FsStats {
        let sb = &self.alloc.sb;
        FsStats {
            block_size: sb.block_size,
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
        if self.read_only {
            return Ok(());
        }
        if !self.on_disk_clean && self.opened_clean {
            self.alloc.sb.state = STATE_VALID;
            self.alloc.sb.wtime = now();
            self.alloc.flush(&self.io)?;
            self.on_disk_clean = true;
        }
        self.io.flush()?;
        Ok(())
    }

    /// Called before every mutation: refuses read-only, unclean or unsupported file
    /// systems and marks the superblock "not clean" on the device until the next
    /// `sync`, so a crash in between is detected at the next open.
    pub(crate) fn begin_write(&mut self) -> Result<(), Ext2Error> {
        if self.read_only {
            return Err(Ext2Error::ReadOnly);
        }
        if !self.opened_clean {
            return Err(Ext2Error::NeedsCheck);
        }
        self.alloc.sb.writable()?;
        if self.on_disk_clean {
            self.alloc.sb.state &= !STATE_VALID;
            self.alloc.sb.wtime = now();
            self.alloc.write_superblock(&self.io)?;
            self.io.flush()?;
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
        let bs = self.io.block_size();
        Ok((gd.inode_table + (byte / bs) as u64, byte % bs))
    }

    /// Reads inode `ino` whatever its state.
    pub(crate) fn raw_inode(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        let (blk, off) = self.inode_location(ino)?;
        let buf = self.cache.read(&self.io, blk)?;
        let slot = &buf[off..off + usize::from(self.alloc.sb.inode_size)];
        if let Some(seed) = self.alloc.csum.fs_seed {
            // Live inodes only: a freed slot's checksum is of no consequence.
            if crate::le::u16_at(slot, 26) != 0 {
                crate::csum::verify_inode(seed, ino.0, slot)?;
            }
        }
        Inode::from_bytes(slot, ino.0)
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
        let mut buf = self.cache.read(&self.io, blk)?.to_vec();
        let mut bytes = inode.to_bytes();
        if let Some(seed) = self.alloc.csum.fs_seed {
            crate::csum::set_inode(seed, ino.0, &mut bytes);
        }
        buf[off..off + bytes.len()].copy_from_slice(&bytes);
        self.cache.write(&self.io, blk, &buf)?;
        Ok(())
    }

    /// Reads data block `b`, refusing pointers past the end of the file system.
    pub(crate) fn read_data_block(&self, b: u64, buf: &mut [u8]) -> Result<(), Ext2Error> {
        if b == 0 || b >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data block pointer {b} out of range")));
        }
        self.io.read(b, buf)?;
        Ok(())
    }

    /// Reads `out.len()` bytes from byte `skip` of the `count` consecutive data blocks
    /// starting at `first`, refusing a run that leaves the file system.
    pub(crate) fn read_data_run(
        &self,
        first: u64,
        count: u64,
        skip: usize,
        out: &mut [u8],
    ) -> Result<(), Ext2Error> {
        let end = first.saturating_add(count);
        if first == 0 || end > self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data blocks {first}..{end} out of range")));
        }
        self.io
            .read_at(first * self.io.block_size() as u64 + skip as u64, out)?;
        Ok(())
    }

    /// Writes a run of whole data blocks, `(first block, offset in data, bytes)`, in one
    /// call to the device layer (so 1 KiB blocks filling a device block cost one device
    /// write, not four read-modify-writes).
    pub(crate) fn write_data_run(
        &self,
        run: Option<(u64, usize, usize)>,
        data: &[u8],
    ) -> Result<(), Ext2Error> {
        let Some((first, start, len)) = run else {
            return Ok(());
        };
        let bs = self.io.block_size();
        let end = first.saturating_add((len / bs) as u64);
        if first == 0 || end > self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data blocks {first}..{end} out of range")));
        }
        for b in first..end {
            self.cache.forget(b);
        }
        self.io.write_at(first * bs as u64, &data[start..start + len])?;
        Ok(())
    }

    /// Writes data block `b`.
    pub(crate) fn write_data_block(&self, b: u64, buf: &[u8]) -> Result<(), Ext2Error> {
        if b == 0 || b >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("data block pointer {b} out of range")));
        }
        self.cache.forget(b);
        self.io.write(b, buf)?;
        Ok(())
    }

    /// A block mapper for one operation.
    pub(crate) fn mapper(&self) -> Mapper {
        Mapper::new(self.io.clone(), self.alloc.sb.blocks_count, self.cache.clone())
            .with_csum(self.alloc.csum)
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
        let mut inode = Inode::new(isz, extra, mode, 0, 0, now());
        // ext4: new files and directories are extent-mapped, as the kernel makes them.
        let kind = mode & crate::inode::S_IFMT;
        if self.alloc.sb.features.incompat & crate::features::INCOMPAT_EXTENTS != 0
            && (kind == crate::inode::S_IFREG || kind == crate::inode::S_IFDIR)
        {
            inode.flags |= crate::inode::EXTENTS_FL;
            inode.set_block_bytes(&crate::extent::empty_root());
        }
        inode
    }
}
