//! Block and inode allocation: the cached superblock, group descriptors and bitmaps.
//!
//! Counters live in three places (superblock, group descriptor, bitmap) and every
//! allocation or release updates all three in memory; `flush` writes them back.

use crate::bitmap::Bitmap;
use crate::error::{corrupt, Ext2Error};
use crate::group_desc::{GroupDesc, GROUP_DESC_SIZE};
use crate::superblock::{Superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use conclave_bd::{BlockDevice, BLOCK_SIZE};

/// Allocation state of the whole file system.
pub(crate) struct Alloc {
    pub sb: Superblock,
    pub groups: Vec<GroupDesc>,
    block_bitmaps: Vec<Option<Bitmap>>,
    inode_bitmaps: Vec<Option<Bitmap>>,
    block_bm_dirty: Vec<bool>,
    inode_bm_dirty: Vec<bool>,
}

impl Alloc {
    /// Reads the superblock and the group descriptor table.
    pub fn load(dev: &dyn BlockDevice) -> Result<Alloc, Ext2Error> {
        if dev.block_count() < 2 {
            return Err(corrupt("device too small for an ext2 file system"));
        }
        let mut b0 = [0u8; BLOCK_SIZE];
        dev.read_block(0, &mut b0)?;
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        raw.copy_from_slice(&b0[SUPERBLOCK_OFFSET..SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE]);
        let sb = Superblock::from_bytes(&raw)?;
        if u64::from(sb.blocks_count) > dev.block_count() {
            return Err(corrupt(format!(
                "superblock says {} blocks, device has {}",
                sb.blocks_count,
                dev.block_count()
            )));
        }
        let count = sb.group_count() as usize;
        let per_block = BLOCK_SIZE / GROUP_DESC_SIZE;
        let mut groups = Vec::with_capacity(count);
        let mut buf = [0u8; BLOCK_SIZE];
        for g in 0..count {
            if g % per_block == 0 {
                dev.read_block(1 + (g / per_block) as u64, &mut buf)?;
            }
            let off = (g % per_block) * GROUP_DESC_SIZE;
            let mut raw = [0u8; GROUP_DESC_SIZE];
            raw.copy_from_slice(&buf[off..off + GROUP_DESC_SIZE]);
            groups.push(GroupDesc::from_bytes(&raw, g as u32, &sb)?);
        }
        Ok(Alloc {
            sb,
            groups,
            block_bitmaps: vec![None; count],
            inode_bitmaps: vec![None; count],
            block_bm_dirty: vec![false; count],
            inode_bm_dirty: vec![false; count],
        })
    }

    /// Blocks in group `g` (the last group may be short).
    fn blocks_in_group(&self, g: usize) -> usize {
        let start = u64::from(self.sb.first_data_block) + g as u64 * u64::from(self.sb.blocks_per_group);
        let left = u64::from(self.sb.blocks_count).saturating_sub(start);
        left.min(u64::from(self.sb.blocks_per_group)) as usize
    }

    fn block_bitmap(&mut self, dev: &dyn BlockDevice, g: usize) -> Result<&mut Bitmap, Ext2Error> {
        if self.block_bitmaps[g].is_none() {
            let mut b = [0u8; BLOCK_SIZE];
            dev.read_block(u64::from(self.groups[g].block_bitmap), &mut b)?;
            self.block_bitmaps[g] = Some(Bitmap::from_bytes(&b, self.blocks_in_group(g)));
        }
        self.block_bitmaps[g]
            .as_mut()
            .ok_or_else(|| corrupt("bitmap vanished"))
    }

    fn inode_bitmap(&mut self, dev: &dyn BlockDevice, g: usize) -> Result<&mut Bitmap, Ext2Error> {
        if self.inode_bitmaps[g].is_none() {
            let mut b = [0u8; BLOCK_SIZE];
            dev.read_block(u64::from(self.groups[g].inode_bitmap), &mut b)?;
            self.inode_bitmaps[g] = Some(Bitmap::from_bytes(&b, self.sb.inodes_per_group as usize));
        }
        self.inode_bitmaps[g]
            .as_mut()
            .ok_or_else(|| corrupt("bitmap vanished"))
    }

    /// Allocates one block, preferring `goal` and the blocks after it.
    pub fn alloc_block(&mut self, dev: &dyn BlockDevice, goal: u32) -> Result<u32, Ext2Error> {
        if self.sb.free_blocks_count == 0 {
            return Err(Ext2Error::NoSpace);
        }
        let bpg = self.sb.blocks_per_group as usize;
        let goal = if goal < self.sb.blocks_count { goal } else { 0 } as usize;
        let n = self.groups.len();
        let first = goal / bpg;
        for k in 0..n {
            let g = (first + k) % n;
            if self.groups[g].free_blocks_count == 0 {
                continue;
            }
            let start = if k == 0 { goal % bpg } else { 0 };
            let bm = self.block_bitmap(dev, g)?;
            if let Some(bit) = bm.find_free(start) {
                bm.set(bit);
                self.block_bm_dirty[g] = true;
                self.groups[g].free_blocks_count -= 1;
                self.sb.free_blocks_count -= 1;
                return Ok((g * bpg + bit) as u32 + self.sb.first_data_block);
            }
        }
        Err(Ext2Error::NoSpace)
    }

    /// Releases block `b`; releasing a free or out-of-range block is corruption.
    pub fn free_block(&mut self, dev: &dyn BlockDevice, b: u32) -> Result<(), Ext2Error> {
        if b <= self.sb.first_data_block || b >= self.sb.blocks_count {
            return Err(corrupt(format!("freeing block {b} out of range")));
        }
        let rel = (b - self.sb.first_data_block) as usize;
        let bpg = self.sb.blocks_per_group as usize;
        let (g, bit) = (rel / bpg, rel % bpg);
        let bm = self.block_bitmap(dev, g)?;
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
    pub fn alloc_inode(
        &mut self,
        dev: &dyn BlockDevice,
        parent: u32,
        is_dir: bool,
    ) -> Result<u32, Ext2Error> {
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
            let start = if g == 0 { self.sb.first_ino as usize - 1 } else { 0 };
            let bm = self.inode_bitmap(dev, g)?;
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
    pub fn free_inode(&mut self, dev: &dyn BlockDevice, ino: u32, is_dir: bool) -> Result<(), Ext2Error> {
        if ino < self.sb.first_ino || ino > self.sb.inodes_count {
            return Err(corrupt(format!("freeing inode {ino} out of range")));
        }
        let ipg = self.sb.inodes_per_group as usize;
        let (g, bit) = ((ino - 1) as usize / ipg, (ino - 1) as usize % ipg);
        let bm = self.inode_bitmap(dev, g)?;
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

    /// Writes just the superblock (used to mark the file system dirty or clean).
    pub fn write_superblock(&self, dev: &dyn BlockDevice) -> Result<(), Ext2Error> {
        let mut b0 = [0u8; BLOCK_SIZE];
        dev.read_block(0, &mut b0)?;
        b0[SUPERBLOCK_OFFSET..SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE].copy_from_slice(&self.sb.to_bytes());
        dev.write_block(0, &b0)?;
        Ok(())
    }

    /// Writes dirty bitmaps, every group descriptor and the superblock.
    pub fn flush(&mut self, dev: &dyn BlockDevice) -> Result<(), Ext2Error> {
        for g in 0..self.groups.len() {
            if self.block_bm_dirty[g] {
                if let Some(bm) = &self.block_bitmaps[g] {
                    dev.write_block(u64::from(self.groups[g].block_bitmap), bm.as_bytes())?;
                }
                self.block_bm_dirty[g] = false;
            }
            if self.inode_bm_dirty[g] {
                if let Some(bm) = &self.inode_bitmaps[g] {
                    dev.write_block(u64::from(self.groups[g].inode_bitmap), bm.as_bytes())?;
                }
                self.inode_bm_dirty[g] = false;
            }
        }
        let per_block = BLOCK_SIZE / GROUP_DESC_SIZE;
        for (i, chunk) in self.groups.chunks(per_block).enumerate() {
            let idx = 1 + i as u64;
            let mut buf = [0u8; BLOCK_SIZE];
            dev.read_block(idx, &mut buf)?;
            for (j, gd) in chunk.iter().enumerate() {
                buf[j * GROUP_DESC_SIZE..(j + 1) * GROUP_DESC_SIZE].copy_from_slice(&gd.to_bytes());
            }
            dev.write_block(idx, &buf)?;
        }
        self.write_superblock(dev)
    }
}
