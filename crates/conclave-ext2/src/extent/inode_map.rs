//! The extent side of the block mapper: an inode with `EXT4_EXTENTS_FL` is mapped
//! through [`ExtentMap`] instead of the indirect-block map, with the same calls.

use super::{ExtentMap, TreeCtx, ROOT_BYTES};
use crate::alloc::Alloc;
use crate::block_io::BlockIo;
use crate::cache::MetaCache;
use crate::csum::FsCsum;
use crate::error::Ext2Error;
use crate::inode::Inode;
use std::sync::Arc;

/// One operation's extent mapping (of one inode at a time).
pub(crate) struct InodeExtents {
    io: BlockIo,
    shared: Arc<MetaCache>,
    blocks_count: u64,
    csum: Option<FsCsum>,
    sectors: u64,
    map: Option<(u32, ExtentMap)>,
}

fn root_of(inode: &Inode) -> [u8; ROOT_BYTES] {
    inode.block_bytes()
}

impl InodeExtents {
    /// Extent mapping over `io`, through the shared metadata cache.
    pub fn new(io: BlockIo, shared: Arc<MetaCache>, blocks_count: u64) -> InodeExtents {
        let sectors = io.block_size() as u64 / 512;
        InodeExtents {
            io,
            shared,
            blocks_count,
            csum: None,
            sectors,
            map: None,
        }
    }

    /// Checks and writes extent-block checksums with these settings.
    pub fn set_csum(&mut self, csum: FsCsum) {
        self.csum = Some(csum);
    }

    /// The map of `inode`, fresh if the last call was for another inode.
    fn parts(
        &mut self,
        inode: &Inode,
    ) -> (&mut ExtentMap, impl FnMut(u64) -> Result<Vec<u8>, Ext2Error> + '_) {
        let stale = !matches!(&self.map, Some((ino, _)) if *ino == inode.ino);
        if stale {
            let ctx = TreeCtx {
                ino: inode.ino,
                blocks_count: self.blocks_count,
                block_size: self.io.block_size(),
                csum_seed: self
                    .csum
                    .and_then(|c| c.inode_seed(inode.ino, inode.generation())),
            };
            self.map = Some((inode.ino, ExtentMap::new(ctx)));
        }
        let (io, shared) = (&self.io, &self.shared);
        let read = move |b: u64| -> Result<Vec<u8>, Ext2Error> { Ok(shared.read(io, b)?.to_vec()) };
        let map = match &mut self.map {
            Some((_, m)) => m,
            None => unreachable!("set above"),
        };
        (map, read)
    }

    /// The block holding logical block `lb`, or 0 for a hole or an unwritten block.
    pub fn lookup(&mut self, inode: &Inode, lb: u64) -> Result<u64, Ext2Error> {
        let root = root_of(inode);
        let (map, mut read) = self.parts(inode);
        Ok(map.lookup(&root, lb, &mut read)?.unwrap_or(0))
    }

    /// Blocks mapping `lb` would allocate (a tree block may come on top, at `flush`).
    pub fn missing(&mut self, inode: &Inode, lb: u64) -> Result<u64, Ext2Error> {
        let root = root_of(inode);
        let (map, mut read) = self.parts(inode);
        map.blocks_to_map(&root, lb, &mut read)
    }

    /// See `Mapper::map_alloc`.
    pub fn map_alloc(
        &mut self,
        alloc: &mut Alloc,
        inode: &mut Inode,
        lb: u64,
        goal: u64,
    ) -> Result<(u64, bool), Ext2Error> {
        let root = root_of(inode);
        let io = self.io.clone();
        let sectors = self.sectors;
        let mut allocated = 0u64;
        let out = {
            let (map, mut read) = self.parts(inode);
            let mut alloc_fn = |g: u64| {
                allocated += 1;
                alloc.alloc_block(&io, g)
            };
            map.map_alloc(&root, lb, goal, &mut read, &mut alloc_fn)?
        };
        inode.blocks += allocated * sectors;
        self.settle(alloc, inode)?;
        Ok(out)
    }

    /// Frees every block mapping logical blocks `>= keep`.
    pub fn truncate(&mut self, alloc: &mut Alloc, inode: &mut Inode, keep: u64) -> Result<(), Ext2Error> {
        let root = root_of(inode);
        let freed = {
            let (map, mut read) = self.parts(inode);
            map.truncate(&root, keep, &mut read)?
        };
        for (start, len) in freed {
            for b in start..start + u64::from(len) {
                self.shared.forget(b);
                alloc.free_block(&self.io, b)?;
                inode.blocks = inode.blocks.saturating_sub(self.sectors);
            }
        }
        self.settle(alloc, inode)
    }

    /// Writes the tree into `i_block` at once when it fits there (no tree block to
    /// allocate or write), so operations that never call `flush` stay correct.
    fn settle(&mut self, alloc: &mut Alloc, inode: &mut Inode) -> Result<(), Ext2Error> {
        let fits = matches!(&self.map, Some((_, m)) if m.fits_in_root());
        if fits {
            self.flush(alloc, inode)?;
        }
        Ok(())
    }

    /// Lays out the edited tree: tree blocks written (with checksums), `i_block` and
    /// `i_blocks` updated in `inode` (the caller writes the inode).
    pub fn flush(&mut self, alloc: &mut Alloc, inode: &mut Inode) -> Result<(), Ext2Error> {
        let Some((ino, map)) = self.map.as_mut() else {
            return Ok(());
        };
        if *ino != inode.ino {
            return Ok(());
        }
        let io = self.io.clone();
        // Tree blocks go just before the data, after the first extent's start.
        let root = inode.block_bytes();
        let goal = u64::from(u32::from_le_bytes([root[20], root[21], root[22], root[23]]));
        let mut alloc_fn = |g: u64| alloc.alloc_block(&io, g);
        let Some(fin) = map.finish(goal, &mut alloc_fn)? else {
            return Ok(());
        };
        for &b in &fin.freed_nodes {
            self.shared.forget(b);
            alloc.free_block(&self.io, b)?;
        }
        for (b, data) in &fin.layout.blocks {
            self.shared.write(&self.io, *b, data)?;
        }
        inode.set_block_bytes(&fin.layout.root);
        let sectors = self.sectors as i64 * fin.node_delta;
        inode.blocks = (inode.blocks as i64 + sectors).max(0) as u64;
        Ok(())
    }
}
