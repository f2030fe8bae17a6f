//! Block and inode allocation: the cached superblock, group descriptors and bitmaps.
//!
//! Counters live in three places (superblock, group descriptor, bitmap) and every
//! allocation or release updates all three in memory; `flush` writes them back.

use crate::bitmap::Bitmap;
use crate::block_io::{read_bytes, write_bytes, BlockIo};
use crate::csum::{self, BitmapKind, FsCsum};
use crate::error::{corrupt, Ext2Error};
use crate::group_desc::GroupDesc;
use crate::le::{put_u16, u16_at};
use crate::superblock::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use conclave_bd::BlockDevice;

/// Allocation state of the whole file system.
pub(crate) struct Alloc {
    pub sb: Superblock,
    pub groups: Vec<GroupDesc>,
    /// The checksums this file system keeps (ext4).
    pub csum: FsCsum,
    block_bitmaps: Vec<Option<Bitmap>>,
    inode_bitmaps: Vec<Option<Bitmap>>,
    block_bm_dirty: Vec<bool>,
    inode_bm_dirty: Vec<bool>,
}

impl Alloc {
    /// Reads the superblock (checking the device is as long as it says) and the
    /// group descriptor table.
    pub fn load(dev: &dyn BlockDevice) -> Result<Alloc, Ext2Error> {
        let len = dev.byte_len();
        if len < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(corrupt(format!(
                "image of {len} bytes is too small to hold an ext2 superblock (at bytes 1024..2048)"
            )));
        }
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        read_bytes(dev, SUPERBLOCK_OFFSET, &mut raw)?;
        let sb = Superblock::from_bytes(&raw)?;
        let csum = FsCsum::from_superblock(&raw, sb.features.incompat, sb.features.ro_compat);
        if csum.fs_seed.is_some() {
            csum::verify_superblock(&raw)?;
        }
        let want = sb.blocks_count.saturating_mul(u64::from(sb.block_size));
        if len < want {
            return Err(Ext2Error::ImageSize {
                found: len,
                blocks: sb.blocks_count,
                block_size: sb.block_size,
            });
        }
        Ok(Alloc::with_superblock(sb, csum))
    }

    fn with_superblock(sb: Superblock, csum: FsCsum) -> Alloc {
        let count = sb.group_count() as usize;
        Alloc {
            sb,
            csum,
            groups: Vec::with_capacity(count),
            block_bitmaps: vec![None; count],
            inode_bitmaps: vec![None; count],
            block_bm_dirty: vec![false; count],
            inode_bm_dirty: vec![false; count],
        }
    }

    /// Reads the group descriptor table (from the block after the superblock's).
    pub fn load_groups(&mut self, io: &BlockIo) -> Result<(), Ext2Error> {
        let count = self.sb.group_count() as usize;
        let dsz = usize::from(self.sb.desc_size);
        let per_block = io.block_size() / dsz;
        let first = u64::from(self.sb.first_data_block) + 1;
        let mut buf = vec![0u8; io.block_size()];
        self.groups.clear();
        for g in 0..count {
            if g % per_block == 0 {
                io.read(first + (g / per_block) as u64, &mut buf)?;
            }
            let off = (g % per_block) * dsz;
            self.csum.group.verify(g as u32, &buf[off..off + dsz])?;
            self.groups
                .push(GroupDesc::from_bytes(&buf[off..off + dsz], g as u32, &self.sb)?);
        }
        Ok(())
    }

    /// Blocks in group `g` (the last group may be short).
    fn blocks_in_group(&self, g: usize) -> usize {
        let start = u64::from(self.sb.first_data_block) + g as u64 * u64::from(self.sb.blocks_per_group);
        let left = self.sb.blocks_count.saturating_sub(start);
        left.min(u64::from(self.sb.blocks_per_group)) as usize
    }

    fn block_bitmap(&mut self, io: &BlockIo, g: usize) -> Result<&mut Bitmap, Ext2Error> {
        if self.block_bitmaps[g].is_none() {
            let mut b = vec![0u8; io.block_size()];
            if self.uninit(g, BG_BLOCK_UNINIT) {
                b = self.uninit_block_bitmap(g, io.block_size());
            } else {
                io.read(self.groups[g].block_bitmap, &mut b)?;
            }
            if let Some(seed) = self.csum.fs_seed.filter(|_| !self.uninit(g, BG_BLOCK_UNINIT)) {
                let n = self.sb.blocks_per_group as usize / 8;
                let desc = self.groups[g].to_bytes();
                csum::verify_bitmap(seed, BitmapKind::Block, g as u32, &desc, &b[..n])?;
            }
            self.block_bitmaps[g] = Some(Bitmap::from_bytes(&b, self.blocks_in_group(g)));
        }
        self.block_bitmaps[g]
            .as_mut()
            .ok_or_else(|| corrupt("bitmap vanished"))
    }

    fn inode_bitmap(&mut self, io: &BlockIo, g: usize) -> Result<&mut Bitmap, Ext2Error> {
        if self.inode_bitmaps[g].is_none() {
            let mut b = vec![0u8; io.block_size()];
            if self.uninit(g, BG_INODE_UNINIT) {
                // Not on disk: all free, the bits past the group's inodes set.
                for i in self.sb.inodes_per_group as usize..b.len() * 8 {
                    b[i / 8] |= 1 << (i % 8);
                }
            } else {
                io.read(self.groups[g].inode_bitmap, &mut b)?;
            }
            if let Some(seed) = self.csum.fs_seed.filter(|_| !self.uninit(g, BG_INODE_UNINIT)) {
                let n = self.sb.inodes_per_group as usize / 8;
                let desc = self.groups[g].to_bytes();
                csum::verify_bitmap(seed, BitmapKind::Inode, g as u32, &desc, &b[..n])?;
            }
            self.inode_bitmaps[g] = Some(Bitmap::from_bytes(&b, self.sb.inodes_per_group as usize));
        }
        self.inode_bitmaps[g]
            .as_mut()
            .ok_or_else(|| corrupt("bitmap vanished"))
    }

    /// Allocates one block, preferring `goal` and the blocks after it.
    pub fn alloc_block(&mut self, io: &BlockIo, goal: u64) -> Result<u64, Ext2Error> {
        if self.sb.free_blocks_count == 0 {
            return Err(Ext2Error::NoSpace);
        }
        let bpg = u64::from(self.sb.blocks_per_group);
        let fdb = u64::from(self.sb.first_data_block);
        let rel = if goal >= fdb && goal < self.sb.blocks_count {
            goal - fdb
        } else {
            0
        };
        let n = self.groups.len();
        let first = (rel / bpg) as usize;
        for k in 0..n {
            let g = (first + k) % n;
            if self.groups[g].free_blocks_count == 0 {
                continue;
            }
            let start = if k == 0 { (rel % bpg) as usize } else { 0 };
            let bm = self.block_bitmap(io, g)?;
            if let Some(bit) = bm.find_free(start) {
                bm.set(bit);
                self.block_bm_dirty[g] = true;
                // Its bitmap is now real and goes to disk at the next flush.
                self.groups[g].flags &= !BG_BLOCK_UNINIT;
                self.groups[g].free_blocks_count -= 1;
                self.sb.free_blocks_count -= 1;
                return Ok(g as u64 * bpg + bit as u64 + fdb);
            }
        }
        Err(Ext2Error::NoSpace)
    }

    /// Releases block `b`; releasing a free or out-of-range block is corruption.
    pub fn free_block(&mut self, io: &BlockIo, b: u64) -> Result<(), Ext2Error> {
        let fdb = u64::from(self.sb.first_data_block);
        if b <= fdb || b >= self.sb.blocks_count {
            return Err(corrupt(format!("freeing block {b} out of range")));
        }
        let rel = b - fdb;
        let bpg = u64::from(self.sb.blocks_per_group);
        let (g, bit) = ((rel / bpg) as usize, (rel % bpg) as usize);
        let bm = self.block_bitmap(io, g)?;
        if !bm.is_set(bit) {
            return Err(corrupt(format!("block {b} freed twice")));
        }
        bm.clear(bit);
        self.block_bm_dirty[g] = true;
        let gd = &mut self.groups[g];
        gd.free_blocks_count = gd
            .free_blocks_count
            .checked_add(1)
            .ok_or_else(|| corrupt("group free count"))?;
        self.sb.free_blocks_count = self.sb.free_blocks_count.saturating_add(1);
        Ok(())
    }

    /// Allocates an inode, preferring the parent's group (directories go to the group
    /// with the fewest directories, to spread them).
    pub fn alloc_inode(&mut self, io: &BlockIo, parent: u32, is_dir: bool) -> Result<u32, Ext2Error> {
        if self.sb.free_inodes_count == 0 {
            return Err(Ext2Error::NoSpace);
        }
        let ipg = self.sb.inodes_per_group as usize;
        let n = self.groups.len();
        let parent_group = (parent.saturating_sub(1) as usize / ipg).min(n - 1);
        let first = if is_dir {
            (0..n)
                .filter(|&g| self.groups[g].free_inodes_count > 0)
                .min_by_key(|&g| self.groups[g].used_dirs_count)
                .unwrap_or(parent_group)
        } else {
            parent_group
        };
        for k in 0..n {
            let g = (first + k) % n;
            if self.groups[g].free_inodes_count == 0 {
                continue;
            }
            if self.uninit(g, BG_INODE_UNINIT) {
                self.init_inode_table(io, g)?;
            }
            let start = if g == 0 { self.sb.first_ino as usize - 1 } else { 0 };
            let bm = self.inode_bitmap(io, g)?;
            let Some(bit) = bm.find_free(start).filter(|&b| g > 0 || b >= start) else {
                continue;
            };
            bm.set(bit);
            self.inode_bm_dirty[g] = true;
            let gd = &mut self.groups[g];
            gd.free_inodes_count -= 1;
            if is_dir {
                gd.used_dirs_count = gd.used_dirs_count.saturating_add(1);
            }
            self.sb.free_inodes_count -= 1;
            return Ok((g * ipg + bit + 1) as u32);
        }
        Err(Ext2Error::NoSpace)
    }

    /// Releases inode `ino`.
    pub fn free_inode(&mut self, io: &BlockIo, ino: u32, is_dir: bool) -> Result<(), Ext2Error> {
        if ino < self.sb.first_ino || ino > self.sb.inodes_count {
            return Err(corrupt(format!("freeing inode {ino} out of range")));
        }
        let ipg = self.sb.inodes_per_group as usize;
        let (g, bit) = ((ino - 1) as usize / ipg, (ino - 1) as usize % ipg);
        let bm = self.inode_bitmap(io, g)?;
        if !bm.is_set(bit) {
            return Err(corrupt(format!("inode {ino} freed twice")));
        }
        bm.clear(bit);
        self.inode_bm_dirty[g] = true;
        let gd = &mut self.groups[g];
        gd.free_inodes_count = gd
            .free_inodes_count
            .checked_add(1)
            .ok_or_else(|| corrupt("group free count"))?;
        if is_dir {
            gd.used_dirs_count = gd.used_dirs_count.saturating_sub(1);
        }
        self.sb.free_inodes_count = self.sb.free_inodes_count.saturating_add(1);
        Ok(())
    }

    /// Starts using a group whose inode bitmap and table were never written
    /// (`INODE_UNINIT`): zeroes its inode table unless `ITABLE_ZEROED`, so `e2fsck`
    /// finds no stale inodes in the used part of the table.
    fn init_inode_table(&mut self, io: &BlockIo, g: usize) -> Result<(), Ext2Error> {
        if self.groups[g].flags & BG_ITABLE_ZEROED == 0 {
            let zero = vec![0u8; io.block_size()];
            let first = self.groups[g].inode_table;
            for b in first..first + crate::group_desc::inode_table_blocks(&self.sb) {
                io.write(b, &zero)?;
            }
            self.groups[g].flags |= BG_ITABLE_ZEROED;
        }
        self.inode_bitmap(io, g)?;
        self.groups[g].flags &= !BG_INODE_UNINIT;
        self.inode_bm_dirty[g] = true;
        Ok(())
    }

    /// The block bitmap of a `BLOCK_UNINIT` group, as the kernel builds it: the
    /// group's superblock and descriptor backup, every group's bitmaps and inode table
    /// that lie in it (`flex_bg` packs them together), and the padding past its end.
    fn uninit_block_bitmap(&self, g: usize, bs: usize) -> Vec<u8> {
        let mut b = vec![0u8; bs];
        let mut set = |i: u64| {
            if let Some(byte) = b.get_mut((i / 8) as usize) {
                *byte |= 1 << (i % 8);
            }
        };
        let bpg = u64::from(self.sb.blocks_per_group);
        let start = u64::from(self.sb.first_data_block) + g as u64 * bpg;
        for i in self.blocks_in_group(g) as u64..bs as u64 * 8 {
            set(i);
        }
        if self.has_super_backup(g) {
            let raw = self.sb.to_bytes();
            let gdt = (self.groups.len() * usize::from(self.sb.desc_size)).div_ceil(bs) as u64;
            let reserved = u64::from(u16_at(&raw, 0xCE));
            for i in 0..1 + gdt + reserved {
                set(i);
            }
        }
        let itb = crate::group_desc::inode_table_blocks(&self.sb);
        for gd in &self.groups {
            let table = gd.inode_table..gd.inode_table + itb;
            for blk in [gd.block_bitmap, gd.inode_bitmap].into_iter().chain(table) {
                if (start..start + bpg).contains(&blk) {
                    set(blk - start);
                }
            }
        }
        b
    }

    /// Whether group `g` holds a superblock backup (`sparse_super`, `sparse_super2`).
    fn has_super_backup(&self, g: usize) -> bool {
        let f = self.sb.features;
        if g == 0 {
            return true;
        }
        if f.compat & COMPAT_SPARSE_SUPER2 != 0 {
            let raw = self.sb.to_bytes();
            let g = g as u32;
            return g == crate::le::u32_at(&raw, 0x24C) || g == crate::le::u32_at(&raw, 0x250);
        }
        if f.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || g == 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&p| {
            let mut x = p;
            while x < g as u64 {
                x *= p;
            }
            x == g as u64
        })
    }

    /// Whether group `g` has `flag` (a `*_UNINIT` flag: its bitmap is not on disk).
    fn uninit(&self, g: usize, flag: u16) -> bool {
        self.csum.uninit_groups && self.groups[g].flags & flag != 0
    }

    /// Descriptor `g` as written: bitmap checksums of the loaded bitmaps, the unused
    /// tail of the inode table shrunk past the last inode in use, its own checksum.
    fn desc_bytes(&self, g: usize) -> Vec<u8> {
        let mut d = self.groups[g].to_bytes();
        if let Some(seed) = self.csum.fs_seed {
            if let Some(bm) = &self.block_bitmaps[g] {
                let n = self.sb.blocks_per_group as usize / 8;
                csum::set_bitmap(seed, BitmapKind::Block, &mut d, &bm.as_bytes()[..n]);
            }
            if let Some(bm) = &self.inode_bitmaps[g] {
                let n = self.sb.inodes_per_group as usize / 8;
                csum::set_bitmap(seed, BitmapKind::Inode, &mut d, &bm.as_bytes()[..n]);
            }
        }
        if self.csum.uninit_groups {
            if let Some(bm) = &self.inode_bitmaps[g] {
                let ipg = self.sb.inodes_per_group as usize;
                let used = (0..ipg).rev().find(|&i| bm.is_set(i)).map_or(0, |i| i + 1);
                let wide = d.len() >= 64;
                let old = u32::from(u16_at(&d, 0x1C))
                    | if wide {
                        u32::from(u16_at(&d, 0x32)) << 16
                    } else {
                        0
                    };
                let new = old.min((ipg - used) as u32);
                put_u16(&mut d, 0x1C, new as u16);
                if wide {
                    put_u16(&mut d, 0x32, (new >> 16) as u16);
                }
            }
        }
        self.csum.group.set(g as u32, &mut d);
        d
    }

    /// Writes just the superblock (used to mark the file system dirty or clean).
    pub fn write_superblock(&self, io: &BlockIo) -> Result<(), Ext2Error> {
        let mut b = self.sb.to_bytes();
        if self.csum.fs_seed.is_some() {
            csum::set_superblock(&mut b);
        }
        write_bytes(&**io.device(), SUPERBLOCK_OFFSET, &b)?;
        Ok(())
    }

    /// Writes dirty bitmaps, every group descriptor and the superblock.
    pub fn flush(&mut self, io: &BlockIo) -> Result<(), Ext2Error> {
        for g in 0..self.groups.len() {
            if self.block_bm_dirty[g] {
                if let Some(bm) = &self.block_bitmaps[g] {
                    io.write(self.groups[g].block_bitmap, bm.as_bytes())?;
                }
                self.block_bm_dirty[g] = false;
            }
            if self.inode_bm_dirty[g] {
                if let Some(bm) = &self.inode_bitmaps[g] {
                    io.write(self.groups[g].inode_bitmap, bm.as_bytes())?;
                }
                self.inode_bm_dirty[g] = false;
            }
        }
        let dsz = usize::from(self.sb.desc_size);
        let per_block = io.block_size() / dsz;
        let first = u64::from(self.sb.first_data_block) + 1;
        let mut buf = vec![0u8; io.block_size()];
        for (i, chunk) in self.groups.chunks(per_block).enumerate() {
            let idx = first + i as u64;
            io.read(idx, &mut buf)?;
            for j in 0..chunk.len() {
                let d = self.desc_bytes(i * per_block + j);
                buf[j * dsz..(j + 1) * dsz].copy_from_slice(&d);
            }
            io.write(idx, &buf)?;
        }
        self.write_superblock(io)
    }
}

/// `bg_flags`: the inode bitmap and table are not initialized.
const BG_INODE_UNINIT: u16 = 0x1;
/// `bg_flags`: the block bitmap is not initialized.
const BG_BLOCK_UNINIT: u16 = 0x2;
/// `bg_flags`: the inode table is zeroed.
const BG_ITABLE_ZEROED: u16 = 0x4;
/// `s_feature_compat`: superblock backups only in the two groups the superblock names.
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
/// `s_feature_ro_compat`: superblock backups in groups 0, 1 and powers of 3, 5, 7.
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
