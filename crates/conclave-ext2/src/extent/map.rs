//! One operation's view of an extent-mapped inode: cached lookups for reads, and the
//! loaded tree for writes, laid out again once at the end of the operation.
//!
//! I/O and allocation are the caller's (closures), so this stays independent of how
//! blocks reach the device.

use super::{lookup, Extent, ExtentTree, Layout, TreeCtx, ROOT_BYTES};
use crate::error::Ext2Error;

/// A block reader: file-system block number to its bytes.
pub type ReadFn<'a> = &'a mut dyn FnMut(u64) -> Result<Vec<u8>, Ext2Error>;

/// The extent side of a block mapper.
#[derive(Debug)]
pub struct ExtentMap {
    ctx: TreeCtx,
    /// The extent of the last lookup (sequential reads stay inside it).
    last: Option<Extent>,
    /// The whole tree, once a write needed it.
    tree: Option<ExtentTree>,
    dirty: bool,
}

/// What laying the tree out again changed.
#[derive(Debug)]
pub struct Finished {
    /// New `i_block` and tree blocks to write.
    pub layout: Layout,
    /// Tree blocks allocated minus tree blocks freed (for `i_blocks`).
    pub node_delta: i64,
    /// Tree blocks no longer used: the caller releases them.
    pub freed_nodes: Vec<u64>,
}

impl ExtentMap {
    /// A map for the inode described by `ctx`.
    pub fn new(ctx: TreeCtx) -> ExtentMap {
        ExtentMap {
            ctx,
            last: None,
            tree: None,
            dirty: false,
        }
    }

    /// The physical block of logical block `lb`: `None` for a hole, and for an
    /// uninitialized block (both read as zeros).
    pub fn lookup(
        &mut self,
        root: &[u8; ROOT_BYTES],
        lb: u64,
        read: ReadFn,
    ) -> Result<Option<u64>, Ext2Error> {
        let Ok(lb32) = u32::try_from(lb) else {
            return Ok(None);
        };
        let e = match (&self.tree, self.last) {
            (Some(t), _) => t.find(lb32),
            (None, Some(e))
                if e.logical <= lb32 && u64::from(lb32) < u64::from(e.logical) + u64::from(e.len) =>
            {
                Some(e)
            }
            _ => {
                let e = lookup(root, lb32, &self.ctx, read)?;
                self.last = e;
                e
            }
        };
        Ok(e.filter(|e| !e.uninit)
            .map(|e| e.phys + u64::from(lb32 - e.logical)))
    }

    fn tree(&mut self, root: &[u8; ROOT_BYTES], read: ReadFn) -> Result<&mut ExtentTree, Ext2Error> {
        if self.tree.is_none() {
            self.tree = Some(ExtentTree::load(root, &self.ctx, read)?);
        }
        self.tree
            .as_mut()
            .ok_or_else(|| crate::error::corrupt("extent tree vanished"))
    }

    /// Blocks mapping `lb` may allocate: 0 if mapped, else the data block plus the
    /// tree blocks one more extent could add (so a write never runs out of space
    /// between its data and the tree that maps it).
    pub fn blocks_to_map(
        &mut self,
        root: &[u8; ROOT_BYTES],
        lb: u64,
        read: ReadFn,
    ) -> Result<u64, Ext2Error> {
        let lb = u32::try_from(lb).map_err(|_| Ext2Error::FileTooLarge)?;
        let per = self.ctx.per_block();
        let tree = self.tree(root, read)?;
        if tree.find(lb).is_some() {
            return Ok(0);
        }
        let grow = super::nodes_for(tree.extents.len() + 1, per).saturating_sub(tree.nodes.len());
        Ok(1 + grow as u64)
    }

    /// The physical block for `lb`, allocating one with `alloc(goal)` if unmapped;
    /// returns whether its contents are undefined (new, or uninitialized until now):
    /// the caller must write the whole block (zero-filled around its data).
    pub fn map_alloc(
        &mut self,
        root: &[u8; ROOT_BYTES],
        lb: u64,
        goal: u64,
        read: ReadFn,
        alloc: &mut dyn FnMut(u64) -> Result<u64, Ext2Error>,
    ) -> Result<(u64, bool), Ext2Error> {
        let lb = u32::try_from(lb)
            .ok()
            .filter(|&l| l < u32::MAX)
            .ok_or(Ext2Error::FileTooLarge)?;
        let tree = self.tree(root, read)?;
        if let Some(e) = tree.find(lb) {
            let phys = e.phys + u64::from(lb - e.logical);
            if e.uninit {
                tree.mark_init(lb);
                self.dirty = true;
                return Ok((phys, true));
            }
            return Ok((phys, false));
        }
        // Continue the extent before, so sequential writes stay one extent.
        let goal = match lb.checked_sub(1).and_then(|p| tree.find(p)) {
            Some(prev) => prev.phys + u64::from(lb - prev.logical),
            None => goal,
        };
        let phys = alloc(goal)?;
        let tree = self.tree(root, read)?;
        tree.insert(lb, 1, phys, false)?;
        self.dirty = true;
        self.last = None;
        Ok((phys, true))
    }

    /// Unmaps logical blocks `>= keep`; returns the freed data runs.
    pub fn truncate(
        &mut self,
        root: &[u8; ROOT_BYTES],
        keep: u64,
        read: ReadFn,
    ) -> Result<Vec<(u64, u32)>, Ext2Error> {
        let keep = u32::try_from(keep).unwrap_or(u32::MAX);
        let freed = self.tree(root, read)?.truncate(keep);
        if !freed.is_empty() {
            self.dirty = true;
            self.last = None;
        }
        Ok(freed)
    }

    /// Whether the edited tree now fits in `i_block` (no tree block to write).
    pub fn fits_in_root(&self) -> bool {
        self.dirty
            && self
                .tree
                .as_ref()
                .is_some_and(|t| t.nodes_needed(self.ctx.per_block()) == 0)
    }

    /// Lays the edited tree out, reusing its old tree blocks, allocating the missing
    /// ones near `goal` with `alloc`; the surplus is returned in
    /// [`Finished::freed_nodes`]. `None` if nothing changed.
    pub fn finish(
        &mut self,
        goal: u64,
        alloc: &mut dyn FnMut(u64) -> Result<u64, Ext2Error>,
    ) -> Result<Option<Finished>, Ext2Error> {
        if !self.dirty {
            return Ok(None);
        }
        let Some(tree) = self.tree.as_mut() else {
            return Ok(None);
        };
        let need = tree.nodes_needed(self.ctx.per_block());
        let mut nodes = std::mem::take(&mut tree.nodes);
        let before = nodes.len() as i64;
        let freed_nodes = nodes.split_off(need.min(nodes.len()));
        while nodes.len() < need {
            let near = nodes.last().map_or(goal, |&b| b + 1);
            nodes.push(alloc(near)?);
        }
        let layout = tree.layout(&nodes, &self.ctx)?;
        tree.nodes = nodes;
        self.dirty = false;
        Ok(Some(Finished {
            layout,
            node_delta: need as i64 - before,
            freed_nodes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::empty_root;
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fragmented_writes_grow_the_tree_and_read_back() {
        let ctx = TreeCtx {
            ino: 12,
            blocks_count: 1 << 20,
            block_size: 1024,
            csum_seed: Some(5),
        };
        let mut disk: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut root = empty_root();
        let mut next_free = 1000u64;
        let mut nodes_total = 0i64;
        // Every other block, in three operations.
        for round in 0..3u64 {
            let mut m = ExtentMap::new(ctx);
            for i in 0..200u64 {
                let lb = 2 * (round * 200 + i);
                let mut read = |b: u64| Ok(disk.get(&b).cloned().unwrap_or_default());
                let mut alloc = |_goal: u64| {
                    next_free += 2;
                    Ok(next_free)
                };
                let (_, fresh) = m.map_alloc(&root, lb, 0, &mut read, &mut alloc).unwrap();
                assert!(fresh);
            }
            let mut alloc = |_goal: u64| {
                next_free += 2;
                Ok(next_free)
            };
            let fin = m.finish(0, &mut alloc).unwrap().unwrap();
            nodes_total += fin.node_delta;
            root = fin.layout.root;
            for (b, data) in fin.layout.blocks {
                disk.insert(b, data);
            }
        }
        assert_eq!(
            u16::from_le_bytes([root[6], root[7]]),
            2,
            "600 extents: 8 leaves, one index block"
        );
        assert_eq!(nodes_total, 9);
        let mut m = ExtentMap::new(ctx);
        let mut read = |b: u64| Ok(disk.get(&b).cloned().unwrap_or_default());
        assert!(m.lookup(&root, 0, &mut read).unwrap().is_some());
        assert!(m.lookup(&root, 1, &mut read).unwrap().is_none());
        assert!(m.lookup(&root, 1198, &mut read).unwrap().is_some());
        assert!(m.lookup(&root, 1200, &mut read).unwrap().is_none());
    }
}
