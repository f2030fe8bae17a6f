//! The block map of an inode: 12 direct pointers, then single, double and triple
//! indirect blocks of 1024 pointers each. Maps logical blocks to device blocks,
//! allocates missing ones, and frees the tail on truncation.

use crate::alloc::Alloc;
use crate::cache::MetaCache;
use crate::error::{corrupt, Ext2Error};
use crate::inode::{Inode, DIND_SLOT, DIRECT_BLOCKS, IND_SLOT, TIND_SLOT};
use crate::le::u32_at;
use conclave_bd::{BlockDevice, BLOCK_SIZE};
use std::collections::HashMap;
use std::sync::Arc;

/// Pointers per indirect block.
pub const PTRS: u64 = (BLOCK_SIZE / 4) as u64;
/// Logical blocks the map can address.
pub const MAX_BLOCKS: u64 = DIRECT_BLOCKS as u64 + PTRS + PTRS * PTRS + PTRS * PTRS * PTRS;
/// 512-byte sectors per block, the unit of `i_blocks`.
pub const SECTORS_PER_BLOCK: u64 = (BLOCK_SIZE / 512) as u64;

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

/// The path to logical block `lb`, or `FileTooLarge` past the triple-indirect range.
pub fn path_of(lb: u64) -> Result<BlockPath, Ext2Error> {
    let d = DIRECT_BLOCKS as u64;
    if lb < d {
        return Ok(BlockPath {
            slot: lb as usize,
            idx: [0; 3],
            depth: 0,
        });
    }
    let mut r = lb - d;
    if r < PTRS {
        return Ok(BlockPath {
            slot: IND_SLOT,
            idx: [r as usize, 0, 0],
            depth: 1,
        });
    }
    r -= PTRS;
    if r < PTRS * PTRS {
        return Ok(BlockPath {
            slot: DIND_SLOT,
            idx: [(r / PTRS) as usize, (r % PTRS) as usize, 0],
            depth: 2,
        });
    }
    r -= PTRS * PTRS;
    if r < PTRS * PTRS * PTRS {
        return Ok(BlockPath {
            slot: TIND_SLOT,
            idx: [
                (r / (PTRS * PTRS)) as usize,
                ((r / PTRS) % PTRS) as usize,
                (r % PTRS) as usize,
            ],
            depth: 3,
        });
    }
    Err(Ext2Error::FileTooLarge)
}

struct IndBlock {
    ptrs: Box<[u32; PTRS as usize]>,
    dirty: bool,
}

/// Maps logical blocks of one inode during one operation, keeping the indirect blocks
/// it has read so a sequential run reads each only once.
pub(crate) struct Mapper {
    cache: HashMap<u32, IndBlock>,
    shared: Arc<MetaCache>,
    blocks_count: u32,
}

impl Mapper {
    /// A mapper for a device of `blocks_count` blocks, backed by the shared cache.
    pub fn new(blocks_count: u32, shared: Arc<MetaCache>) -> Mapper {
        Mapper {
            cache: HashMap::new(),
            shared,
            blocks_count,
        }
    }

    fn check(&self, p: u32) -> Result<u32, Ext2Error> {
        if p >= self.blocks_count {
            return Err(corrupt(format!(
                "block pointer {p} past the end ({} blocks)",
                self.blocks_count
            )));
        }
        Ok(p)
    }

    fn load(&mut self, dev: &dyn BlockDevice, b: u32) -> Result<&mut IndBlock, Ext2Error> {
        if !self.cache.contains_key(&b) {
            self.check(b)?;
            let buf = self.shared.read(dev, u64::from(b))?;
            let mut ptrs = Box::new([0u32; PTRS as usize]);
            for (i, p) in ptrs.iter_mut().enumerate() {
                *p = self.check(u32_at(&buf[..], 4 * i))?;
            }
            self.cache.insert(b, IndBlock { ptrs, dirty: false });
        }
        self.cache
            .get_mut(&b)
            .ok_or_else(|| corrupt("indirect block vanished"))
    }

    /// The device block holding logical block `lb`, or 0 for a hole.
    pub fn lookup(&mut self, dev: &dyn BlockDevice, inode: &Inode, lb: u64) -> Result<u32, Ext2Error> {
        let p = path_of(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        for level in 0..p.depth {
            if cur == 0 {
                return Ok(0);
            }
            cur = self.load(dev, cur)?.ptrs[p.idx[level]];
        }
        Ok(cur)
    }

    /// How many blocks mapping `lb` would allocate (data plus missing indirect blocks).
    pub fn missing(&mut self, dev: &dyn BlockDevice, inode: &Inode, lb: u64) -> Result<u32, Ext2Error> {
        let p = path_of(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        for level in 0..p.depth {
            if cur == 0 {
                return Ok((p.depth - level + 1) as u32);
            }
            cur = self.load(dev, cur)?.ptrs[p.idx[level]];
        }
        Ok(u32::from(cur == 0))
    }

    /// The device block for `lb`, allocating it (and indirect blocks) near `goal` if
    /// missing. Returns whether the data block is new (the caller zero-fills it).
    pub fn map_alloc(
        &mut self,
        dev: &dyn BlockDevice,
        alloc: &mut Alloc,
        inode: &mut Inode,
        lb: u64,
        goal: u32,
    ) -> Result<(u32, bool), Ext2Error> {
        let p = path_of(lb)?;
        let mut cur = self.check(inode.block[p.slot])?;
        let mut fresh = false;
        if cur == 0 {
            cur = alloc.alloc_block(dev, goal)?;
            inode.block[p.slot] = cur;
            inode.blocks += SECTORS_PER_BLOCK;
            fresh = true;
            if p.depth > 0 {
                self.insert_zeroed(cur);
            }
        }
        for level in 0..p.depth {
            let parent = cur;
            let i = p.idx[level];
            cur = self.load(dev, parent)?.ptrs[i];
            fresh = false;
            if cur == 0 {
                cur = alloc.alloc_block(dev, parent.saturating_add(1))?;
                let entry = self.load(dev, parent)?;
                entry.ptrs[i] = cur;
                entry.dirty = true;
                inode.blocks += SECTORS_PER_BLOCK;
                fresh = true;
                if level + 1 < p.depth {
                    self.insert_zeroed(cur);
                }
            }
        }
        Ok((cur, fresh))
    }

    fn insert_zeroed(&mut self, b: u32) {
        self.cache.insert(
            b,
            IndBlock {
                ptrs: Box::new([0; PTRS as usize]),
                dirty: true,
            },
        );
    }

    /// Frees every block that maps logical blocks `>= keep`, and indirect blocks left empty.
    pub fn truncate(
        &mut self,
        dev: &dyn BlockDevice,
        alloc: &mut Alloc,
        inode: &mut Inode,
        keep: u64,
    ) -> Result<(), Ext2Error> {
        for slot in 0..DIRECT_BLOCKS {
            let b = self.check(inode.block[slot])?;
            if slot as u64 >= keep && b != 0 {
                self.free_tree(dev, alloc, inode, b, 0)?;
                inode.block[slot] = 0;
            }
        }
        let d = DIRECT_BLOCKS as u64;
        let tops = [
            (IND_SLOT, 1u32, d),
            (DIND_SLOT, 2, d + PTRS),
            (TIND_SLOT, 3, d + PTRS + PTRS * PTRS),
        ];
        for (slot, depth, base) in tops {
            let b = self.check(inode.block[slot])?;
            if b == 0 {
                continue;
            }
            if keep <= base {
                self.free_tree(dev, alloc, inode, b, depth)?;
                inode.block[slot] = 0;
            } else if keep < base + PTRS.pow(depth)
                && self.trunc_tree(dev, alloc, inode, b, depth, base, keep)?
            {
                self.free_tree(dev, alloc, inode, b, 0)?;
                inode.block[slot] = 0;
            }
        }
        Ok(())
    }

    /// Frees block `b` and, for an indirect block of `depth` levels, all it points to.
    fn free_tree(
        &mut self,
        dev: &dyn BlockDevice,
        alloc: &mut Alloc,
        inode: &mut Inode,
        b: u32,
        depth: u32,
    ) -> Result<(), Ext2Error> {
        if depth > 0 {
            let ptrs = self.load(dev, b)?.ptrs.clone();
            for &c in ptrs.iter().filter(|&&c| c != 0) {
                self.free_tree(dev, alloc, inode, c, depth - 1)?;
            }
        }
        self.cache.remove(&b);
        self.shared.forget(u64::from(b));
        alloc.free_block(dev, b)?;
        inode.blocks = inode
            .blocks
            .checked_sub(SECTORS_PER_BLOCK)
            .ok_or_else(|| corrupt("i_blocks smaller than the blocks mapped"))?;
        Ok(())
    }

    /// Frees the part of indirect block `b` (covering logical blocks from `base`) at or
    /// past `keep`. Returns whether `b` is now empty.
    #[allow(clippy::too_many_arguments)]
    fn trunc_tree(
        &mut self,
        dev: &dyn BlockDevice,
        alloc: &mut Alloc,
        inode: &mut Inode,
        b: u32,
        depth: u32,
        base: u64,
        keep: u64,
    ) -> Result<bool, Ext2Error> {
        let span = PTRS.pow(depth - 1);
        let old = self.load(dev, b)?.ptrs.clone();
        let mut new = old.clone();
        for (i, &c) in old.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let cb = base + i as u64 * span;
            if cb >= keep {
                self.free_tree(dev, alloc, inode, c, depth - 1)?;
                new[i] = 0;
            } else if depth > 1
                && cb + span > keep
                && self.trunc_tree(dev, alloc, inode, c, depth - 1, cb, keep)?
            {
                self.free_tree(dev, alloc, inode, c, 0)?;
                new[i] = 0;
            }
        }
        let entry = self.load(dev, b)?;
        if new != old {
            entry.ptrs = new;
            entry.dirty = true;
        }
        Ok(entry.ptrs.iter().all(|&p| p == 0))
    }

    /// Writes back the indirect blocks this operation changed.
    pub fn flush(&mut self, dev: &dyn BlockDevice) -> Result<(), Ext2Error> {
        for (&b, entry) in self.cache.iter_mut().filter(|(_, e)| e.dirty) {
            let mut buf = [0u8; BLOCK_SIZE];
            for (i, p) in entry.ptrs.iter().enumerate() {
                buf[4 * i..4 * i + 4].copy_from_slice(&p.to_le_bytes());
            }
            self.shared.write(dev, u64::from(b), &buf)?;
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
            path_of(0).unwrap(),
            BlockPath {
                slot: 0,
                idx: [0; 3],
                depth: 0
            }
        );
        assert_eq!(path_of(11).unwrap().slot, 11);
        assert_eq!(
            path_of(12).unwrap(),
            BlockPath {
                slot: 12,
                idx: [0, 0, 0],
                depth: 1
            }
        );
        assert_eq!(
            path_of(12 + 1023).unwrap(),
            BlockPath {
                slot: 12,
                idx: [1023, 0, 0],
                depth: 1
            }
        );
        assert_eq!(
            path_of(12 + 1024).unwrap(),
            BlockPath {
                slot: 13,
                idx: [0, 0, 0],
                depth: 2
            }
        );
        assert_eq!(
            path_of(12 + 1024 + 1025).unwrap(),
            BlockPath {
                slot: 13,
                idx: [1, 1, 0],
                depth: 2
            }
        );
        let t = 12 + 1024 + 1024 * 1024;
        assert_eq!(
            path_of(t).unwrap(),
            BlockPath {
                slot: 14,
                idx: [0, 0, 0],
                depth: 3
            }
        );
        assert_eq!(
            path_of(t + 1024 * 1024 + 2048 + 5).unwrap(),
            BlockPath {
                slot: 14,
                idx: [1, 2, 5],
                depth: 3
            }
        );
        assert_eq!(path_of(MAX_BLOCKS - 1).unwrap().idx, [1023, 1023, 1023]);
        assert!(matches!(path_of(MAX_BLOCKS), Err(Ext2Error::FileTooLarge)));
    }
}
