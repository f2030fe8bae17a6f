//! The block map of an inode: 12 direct pointers, then single, double and triple
//! indirect blocks of `block_size / 4` pointers each. Maps logical blocks to
//! file-system blocks, allocates missing ones, and frees the tail on truncation.

use crate::alloc::Alloc;
use crate::block_io::BlockIo;
use crate::cache::MetaCache;
use crate::csum::FsCsum;
use crate::error::{corrupt, Ext2Error};
use crate::extent::InodeExtents;
use crate::inode::{Inode, DIND_SLOT, DIRECT_BLOCKS, IND_SLOT, TIND_SLOT};
use crate::le::u32_at;
use std::collections::HashMap;
use std::sync::Arc;

/// Logical blocks a map of `block_size`-byte blocks can address.
pub fn max_blocks(block_size: u32) -> u64 {
    let p = u64::from(block_size / 4);
    DIRECT_BLOCKS as u64 + p + p * p + p * p * p
}

/// Where a logical block's pointer lives: `i_block[slot]`, then `depth` indirect
/// blocks indexed by `idx[0..depth]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPath {
    /// Slot in `i_block`.
    pub slot: usize,
    /// Index into each indirect block on the way down.
    pub idx: [usize; 3],
    /// Levels of indirection (0 = direct).
    pub depth: usize,
}

/// The path to logical block `lb` with `block_size`-byte blocks, or `FileTooLarge`
/// past the triple-indirect range.
pub fn path_of(lb: u64, block_size: u32) -> Result<BlockPath, Ext2Error> {
    let ptrs = u64::from(block_size / 4);
    let d = DIRECT_BLOCKS as u64;
    if lb < d {
        return Ok(BlockPath {
            slot: lb as usize,
            idx: [0; 3],
            depth: 0,
        });
    }
    let mut r = lb - d;
    if r < ptrs {
        return Ok(BlockPath {
            slot: IND_SLOT,
            idx: [r as usize, 0, 0],
            depth: 1,
        });
    }
    r -= ptrs;
    if r < ptrs * ptrs {
        return Ok(BlockPath {
            slot: DIND_SLOT,
            idx: [(r / ptrs) as usize, (r % ptrs) as usize, 0],
            depth: 2,
        });
    }
    r -= ptrs * ptrs;
    if r < ptrs * ptrs * ptrs {
        return Ok(BlockPath {
            slot: TIND_SLOT,
            idx: [
                (r / (ptrs * ptrs)) as usize,
                ((r / ptrs) % ptrs) as usize,
                (r % ptrs) as usize,
            ],
            depth: 3,
        });
    }
    Err(Ext2Error::FileTooLarge)
}

struct IndBlock {
    ptrs: Vec<u32>,
    dirty: bool,
}

/// Maps logical blocks of one inode during one operation, keeping the indirect blocks
/// it has read so a sequential run reads each only once.
pub(crate) struct Mapper {
    cache: HashMap<u64, IndBlock>,
    shared: Arc<MetaCache>,
    io: BlockIo,
    blocks_count: u64,
    block_size: u32,
    /// 512-byte sectors per block, the unit of `i_blocks`.
    sectors: u64,
    /// Inodes with `EXT4_EXTENTS_FL` are mapped here instead.
    ext: InodeExtents,
}

impl Mapper {
    /// A mapper for a file system of `blocks_count` blocks, backed by the shared cache.
    pub fn new(io: BlockIo, blocks_count: u64, shared: Arc<MetaCache>) -> Mapper {
        let block_size = io.block_size() as u32;
        Mapper {
            cache: HashMap::new(),
            ext: InodeExtents::new(io.clone(), shared.clone(), blocks_count),
            shared,
            io,
            blocks_count,
            block_size,
            sectors: u64::from(block_size / 512),
        }
    }

    /// Checks and writes extent-block checksums as the file system says.
    pub fn with_csum(mut self, csum: FsCsum) -> Mapper {
        self.ext.set_csum(csum);
        self
    }

    fn ptrs(&self) -> u64 {
        u64::from(self.block_size / 4)
    }

    fn path(&self, lb: u64) -> Result<BlockPath, Ext2Error> {
        path_of(lb, self.block_size)
    }

    fn check(&self, p: u32) -> Result<u64, Ext2Error> {
        let p = u64::from(p);
        if p >= self.blocks_count {
            return Err(corrupt(format!(
                "block pointer {p} past the end ({} blocks)",
                self.blocks_count
            )));
        }
        Ok(p)
    }

    /// A block number as an indirect-map pointer (32 bits on disk).
    fn narrow(b: u64) -> Result<u32, Ext2Error> {
        u32::try_from(b).map_err(|_| corrupt(format!("block {b} does not fit a 32-bit block map")))
    }

    fn load(&mut self, b: u64) -> Result<&mut IndBlock, Ext2Error> {
        if !self.cache.contains_key(&b) {
            self.check(Self::narrow(b)?)?;
            let buf = self.shared.read(&self.io, b)?;
            let mut ptrs = vec![0u32; self.ptrs() as usize];
            for (i, p) in ptrs.iter_mut().enumerate() {
                *p = u32_at(&buf[..], 4 * i);
                self.check(*p)?;
            }
            self.cache.insert(b, IndBlock { ptrs, dirty: false });
        }
        self.cache
            .get_mut(&b)
            .ok_or_else(|| corrupt("indirect block vanished"))
    }

    /// The file-system block holding logical block `lb`, or 0 for a hole.
    pub fn lookup(&mut self, inode: &Inode, lb: u64) -> Result<u64, Ext2Error> {
        if inode.uses_extents() {
            return self.ext.lookup(inode, lb);
        }
        let p = self.path(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        for level in 0..p.depth {
            if cur == 0 {
                return Ok(0);
            }
            cur = u64::from(self.load(cur)?.ptrs[p.idx[level]]);
        }
        Ok(cur)
    }

    /// How many blocks mapping `lb` would allocate (data plus missing indirect blocks).
    pub fn missing(&mut self, inode: &Inode, lb: u64) -> Result<u64, Ext2Error> {
        if inode.uses_extents() {
            return self.ext.missing(inode, lb);
        }
        let p = self.path(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        for level in 0..p.depth {
            if cur == 0 {
                return Ok((p.depth - level + 1) as u64);
            }
            cur = u64::from(self.load(cur)?.ptrs[p.idx[level]]);
        }
        Ok(u64::from(cur == 0))
    }

    /// The block for `lb`, allocating it (and indirect blocks) near `goal` if
    /// missing; also whether the data block is freshly allocated (its contents are
    /// garbage and must be overwritten whole or zero-filled).
    pub fn map_alloc(
        &mut self,
        alloc: &mut Alloc,
        inode: &mut Inode,
        lb: u64,
        goal: u64,
    ) -> Result<(u64, bool), Ext2Error> {
        if inode.uses_extents() {
            return self.ext.map_alloc(alloc, inode, lb, goal);
        }
        let p = self.path(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        let mut fresh = false;
        if cur == 0 {
            cur = alloc.alloc_block(&self.io, goal)?;
            inode.block[p.slot] = Self::narrow(cur)?;
            inode.blocks += self.sectors;
            fresh = true;
            if p.depth > 0 {
                self.insert_zeroed(cur);
            }
        }
        for level in 0..p.depth {
            let parent = cur;
            let i = p.idx[level];
            cur = u64::from(self.load(parent)?.ptrs[i]);
            fresh = false;
            if cur == 0 {
                cur = alloc.alloc_block(&self.io, parent.saturating_add(1))?;
                let narrow = Self::narrow(cur)?;
                let entry = self.load(parent)?;
                entry.ptrs[i] = narrow;
                entry.dirty = true;
                inode.blocks += self.sectors;
                fresh = true;
                if level + 1 < p.depth {
                    self.insert_zeroed(cur);
                }
            }
        }
        Ok((cur, fresh))
    }

    fn insert_zeroed(&mut self, b: u64) {
        let ptrs = vec![0; self.ptrs() as usize];
        self.cache.insert(b, IndBlock { ptrs, dirty: true });
    }

    /// Frees every block that maps logical blocks `>= keep`, and indirect blocks left empty.
    pub fn truncate(&mut self, alloc: &mut Alloc, inode: &mut Inode, keep: u64) -> Result<(), Ext2Error> {
        if inode.uses_extents() {
            return self.ext.truncate(alloc, inode, keep);
        }
        for slot in 0..DIRECT_BLOCKS {
            let b = self.check(inode.block[slot])?;
            if slot as u64 >= keep && b != 0 {
                self.free_tree(alloc, inode, b, 0)?;
                inode.block[slot] = 0;
            }
        }
        let d = DIRECT_BLOCKS as u64;
        let ptrs = self.ptrs();
        let tops = [
            (IND_SLOT, 1u32, d),
            (DIND_SLOT, 2, d + ptrs),
            (TIND_SLOT, 3, d + ptrs + ptrs * ptrs),
        ];
        for (slot, depth, base) in tops {
            let b = self.check(inode.block[slot])?;
            if b == 0 {
                continue;
            }
            if keep <= base {
                self.free_tree(alloc, inode, b, depth)?;
                inode.block[slot] = 0;
            } else if keep < base + ptrs.pow(depth) && self.trunc_tree(alloc, inode, b, depth, base, keep)? {
                self.free_tree(alloc, inode, b, 0)?;
                inode.block[slot] = 0;
            }
        }
        Ok(())
    }

    /// Frees block `b` and, for an indirect block of `depth` levels, all it points to.
    fn free_tree(
        &mut self,
        alloc: &mut Alloc,
        inode: &mut Inode,
        b: u64,
        depth: u32,
    ) -> Result<(), Ext2Error> {
        if depth > 0 {
            let ptrs = self.load(b)?.ptrs.clone();
            for &c in ptrs.iter().filter(|&&c| c != 0) {
                self.free_tree(alloc, inode, u64::from(c), depth - 1)?;
            }
        }
        self.cache.remove(&b);
        self.shared.forget(b);
        alloc.free_block(&self.io, b)?;
        inode.blocks = inode
            .blocks
            .checked_sub(self.sectors)
            .ok_or_else(|| corrupt("i_blocks smaller than the blocks mapped"))?;
        Ok(())
    }

    /// Frees the part of indirect block `b` (covering logical blocks from `base`) at or
    /// past `keep`. Returns whether `b` is now empty.
    fn trunc_tree(
        &mut self,
        alloc: &mut Alloc,
        inode: &mut Inode,
        b: u64,
        depth: u32,
        base: u64,
        keep: u64,
    ) -> Result<bool, Ext2Error> {
        let span = self.ptrs().pow(depth - 1);
        let old = self.load(b)?.ptrs.clone();
        let mut new = old.clone();
        for (i, &c) in old.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let c = u64::from(c);
            let cb = base + i as u64 * span;
            if cb >= keep {
                self.free_tree(alloc, inode, c, depth - 1)?;
                new[i] = 0;
            } else if depth > 1
                && cb + span > keep
                && self.trunc_tree(alloc, inode, c, depth - 1, cb, keep)?
            {
                self.free_tree(alloc, inode, c, 0)?;
                new[i] = 0;
            }
        }
        let entry = self.load(b)?;
        if new != old {
            entry.ptrs = new;
            entry.dirty = true;
        }
        Ok(entry.ptrs.iter().all(|&p| p == 0))
    }

    /// Writes back the indirect blocks this operation changed, and lays out an edited
    /// extent tree (its new root goes into `inode`, which the caller writes).
    pub fn flush(&mut self, alloc: &mut Alloc, inode: &mut Inode) -> Result<(), Ext2Error> {
        if inode.uses_extents() {
            return self.ext.flush(alloc, inode);
        }
        let mut buf = vec![0u8; self.io.block_size()];
        for (&b, entry) in self.cache.iter_mut().filter(|(_, e)| e.dirty) {
            for (i, p) in entry.ptrs.iter().enumerate() {
                buf[4 * i..4 * i + 4].copy_from_slice(&p.to_le_bytes());
            }
            self.shared.write(&self.io, b, &buf)?;
            entry.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cover_direct_single_double_and_triple_indirect() {
        assert_eq!(
            path_of(0, 4096).unwrap(),
            BlockPath {
                slot: 0,
                idx: [0; 3],
                depth: 0
            }
        );
        assert_eq!(path_of(11, 4096).unwrap().slot, 11);
        assert_eq!(
            path_of(12, 4096).unwrap(),
            BlockPath {
                slot: 12,
                idx: [0, 0, 0],
                depth: 1
            }
        );
        assert_eq!(
            path_of(12 + 1023, 4096).unwrap(),
            BlockPath {
                slot: 12,
                idx: [1023, 0, 0],
                depth: 1
            }
        );
        assert_eq!(
            path_of(12 + 1024, 4096).unwrap(),
            BlockPath {
                slot: 13,
                idx: [0, 0, 0],
                depth: 2
            }
        );
        assert_eq!(
            path_of(12 + 1024 + 1025, 4096).unwrap(),
            BlockPath {
                slot: 13,
                idx: [1, 1, 0],
                depth: 2
            }
        );
        let t = 12 + 1024 + 1024 * 1024;
        assert_eq!(
            path_of(t, 4096).unwrap(),
            BlockPath {
                slot: 14,
                idx: [0, 0, 0],
                depth: 3
            }
        );
        assert_eq!(
            path_of(t + 1024 * 1024 + 2048 + 5, 4096).unwrap(),
            BlockPath {
                slot: 14,
                idx: [1, 2, 5],
                depth: 3
            }
        );
        assert_eq!(
            path_of(max_blocks(4096) - 1, 4096).unwrap().idx,
            [1023, 1023, 1023]
        );
        assert!(matches!(
            path_of(max_blocks(4096), 4096),
            Err(Ext2Error::FileTooLarge)
        ));
        // 1 KiB blocks: 256 pointers per indirect block.
        assert_eq!(path_of(12 + 256, 1024).unwrap().slot, 13);
        assert_eq!(path_of(12 + 256 + 256 * 256, 1024).unwrap().slot, 14);
        assert_eq!(max_blocks(1024), 12 + 256 + 65536 + 16_777_216);
        assert_eq!(path_of(max_blocks(65536) - 1, 65536).unwrap().idx, [16383; 3]);
    }
}
