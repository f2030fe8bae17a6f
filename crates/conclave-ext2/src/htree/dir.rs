//! Hashed directories inside the file system: lookup through the index, and dropping
//! the index before a directory gains an entry.

use super::{
    candidate_leaves, index_blocks, insert_index_entry, leaf_parent, linearize_node, linearize_root,
    pack_leaf, root_info, split_by_hash, HashedEntry, Hasher,
};
use crate::dir::{ftype_of, Slot};
use crate::dir_entry::{needed_len, DirEntry};
use crate::error::{corrupt, Ext2Error};
use crate::fs::Ext2Fs;
use crate::inode::{Inode, INDEX_FL};
use crate::metadata::Ino;

impl Ext2Fs {
    /// Finds `name` in an indexed directory through its index: `None` when `dir` is
    /// not indexed (or uses a hash this engine lacks), so the caller scans linearly;
    /// `Some(None)` when the name is not there.
    pub(crate) fn find_entry_hashed(
        &self,
        dir: Ino,
        inode: &Inode,
        name: &[u8],
    ) -> Result<Option<Option<Slot>>, Ext2Error> {
        if inode.flags & INDEX_FL == 0 {
            return Ok(None);
        }
        let bs = self.io.block_size() as u64;
        let dir_blocks = inode.size / bs;
        let mut mapper = self.mapper();
        let (_, root, _) = self.dir_block(&mut mapper, inode, dir, 0)?;
        // A flag without a valid root: read linearly, as the kernel falls back.
        let Ok(info) = root_info(&root, dir.0, false) else {
            return Ok(None);
        };
        let Ok(hasher) = Hasher::new(&self.alloc.sb.to_bytes(), info.hash_version, dir.0) else {
            return Ok(None);
        };
        let (hash, _) = hasher.hash(name);
        let leaves = {
            let mut read = |lb: u64| -> Result<Vec<u8>, Ext2Error> {
                // Index nodes: read (and checksum-checked) like any directory block.
                let (_, block, _) = self.dir_block(&mut mapper, inode, dir, lb)?;
                Ok(block.to_vec())
            };
            match candidate_leaves(&root, info, hash, dir.0, dir_blocks, &mut read) {
                Ok(leaves) => leaves,
                // A damaged index: scan linearly, as the kernel does (the blocks are
                // checked again there, so a checksum failure still surfaces).
                Err(Ext2Error::Corrupt(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        for lb in leaves {
            let (phys, block, entries) = self.dir_block(&mut mapper, inode, dir, u64::from(lb))?;
            if let Some(index) = entries
                .iter()
                .position(|e| e.inode != 0 && e.name(&block) == name)
            {
                return Ok(Some(Some(Slot {
                    phys,
                    block: block.to_vec(),
                    entries,
                    index,
                })));
            }
        }
        Ok(Some(None))
    }

    /// Adds `name -> ino` to indexed directory `dir` in the leaf its hash belongs to,
    /// splitting that leaf by hash into a new block when it is full (the parent index
    /// block gains an entry): the index stays valid. Returns false (nothing changed)
    /// when the index cannot be used or the parent is full too; the caller then drops
    /// the index and adds linearly.
    pub(crate) fn add_entry_hashed(
        &mut self,
        dir: Ino,
        inode: &mut Inode,
        name: &[u8],
        ino: Ino,
        mode: u16,
    ) -> Result<bool, Ext2Error> {
        let bs = self.io.block_size() as u64;
        let dir_blocks = inode.size / bs;
        let mut mapper = self.mapper();
        let (_, root, _) = self.dir_block(&mut mapper, inode, dir, 0)?;
        let Ok(info) = root_info(&root, dir.0, false) else {
            return Ok(false);
        };
        let Ok(hasher) = Hasher::new(&self.alloc.sb.to_bytes(), info.hash_version, dir.0) else {
            return Ok(false);
        };
        let (hash, _) = hasher.hash(name);
        let leaves = {
            let mut read = |lb: u64| -> Result<Vec<u8>, Ext2Error> {
                let (_, block, _) = self.dir_block(&mut mapper, inode, dir, lb)?;
                Ok(block.to_vec())
            };
            candidate_leaves(&root, info, hash, dir.0, dir_blocks, &mut read)?
        };
        let lb = u64::from(leaves[0]);
        let (phys, block, entries) = self.dir_block(&mut mapper, inode, dir, lb)?;
        let need = needed_len(name.len());
        let has_ft = self.alloc.sb.has_filetype();
        let Some(e) = entries.iter().find(|e| e.rec_len - e.used_len() >= need) else {
            // Full: split it by hash into a new block at the end of the directory.
            let mut all: Vec<HashedEntry> = entries
                .iter()
                .filter(|e| e.inode != 0)
                .map(|e| HashedEntry {
                    hash: hasher.hash(e.name(&block)).0,
                    inode: e.inode,
                    file_type: e.file_type,
                    name: e.name(&block).to_vec(),
                })
                .collect();
            let (parent_lb, pos) = {
                let mut read = |lb: u64| -> Result<Vec<u8>, Ext2Error> {
                    let (_, block, _) = self.dir_block(&mut mapper, inode, dir, lb)?;
                    Ok(block.to_vec())
                };
                leaf_parent(&root, info, hash, dir.0, dir_blocks, &mut read)?
            };
            let (parent_phys, parent, _) = self.dir_block(&mut mapper, inode, dir, u64::from(parent_lb))?;
            let mut parent = parent.to_vec();
            all.push(HashedEntry {
                hash,
                inode: ino.0,
                file_type: ftype_of(mode),
                name: name.to_vec(),
            });
            let Some((low, high, bound)) = split_by_hash(all) else {
                return Ok(false);
            };
            let Ok(new_lb) = u32::try_from(dir_blocks) else {
                return Ok(false);
            };
            if !insert_index_entry(&mut parent, pos, bound, new_lb) {
                return Ok(false);
            }
            let bsz = bs as usize;
            let usable = bsz - self.dir_tail_len();
            let (Some(low), Some(high)) = (
                pack_leaf(&low, bsz, usable, has_ft),
                pack_leaf(&high, bsz, usable, has_ft),
            ) else {
                return Ok(false);
            };
            if self.alloc.sb.free_blocks_count < 2 {
                return Ok(false);
            }
            let goal = phys.saturating_add(1);
            let (new_phys, _) = mapper.map_alloc(&mut self.alloc, inode, dir_blocks, goal)?;
            mapper.flush(&mut self.alloc, inode)?;
            inode.size += bs;
            let generation = inode.generation();
            // The new leaf first, then the index that names it, then the old leaf.
            self.write_dir_block(dir, generation, new_phys, &high)?;
            self.write_dir_block(dir, generation, parent_phys, &parent)?;
            self.write_dir_block(dir, generation, phys, &low)?;
            return Ok(true);
        };
        let new_entry = |offset, rec_len| DirEntry {
            offset,
            inode: ino.0,
            rec_len,
            file_type: ftype_of(mode),
            name: name.to_vec(),
        };
        let mut block = block.to_vec();
        if e.inode == 0 {
            new_entry(e.offset, e.rec_len).write_to(&mut block, has_ft);
        } else {
            let used = e.used_len();
            e.set_rec_len(&mut block, used);
            new_entry(e.offset + used, e.rec_len - used).write_to(&mut block, has_ft);
        }
        self.write_dir_block(dir, inode.generation(), phys, &block)?;
        Ok(true)
    }

    /// Turns indexed directory `dir` into a linear one: index nodes become empty
    /// blocks, the root keeps `.` and `..`, and `EXT4_INDEX_FL` is cleared. Every leaf
    /// stays as it is.
    pub(crate) fn drop_index(&mut self, dir: Ino, inode: &mut Inode) -> Result<(), Ext2Error> {
        self.begin_write()?;
        let bs = self.io.block_size() as u64;
        let dir_blocks = inode.size / bs;
        let seed = self.alloc.csum.inode_seed(dir.0, inode.generation());
        let mut mapper = self.mapper();
        let root_phys = mapper.lookup(inode, 0)?;
        if root_phys == 0 {
            return Err(corrupt(format!("directory {dir}: no block 0")));
        }
        let (_, root, _) = self.dir_block(&mut mapper, inode, dir, 0)?;
        let Ok(info) = root_info(&root, dir.0, false) else {
            // Flagged but not laid out as an index: already linear.
            inode.flags &= !INDEX_FL;
            return self.write_inode(dir, inode);
        };
        let nodes = {
            let mut read = |lb: u64| -> Result<Vec<u8>, Ext2Error> {
                let (_, block, _) = self.dir_block(&mut mapper, inode, dir, lb)?;
                Ok(block.to_vec())
            };
            index_blocks(&root, info, dir.0, dir_blocks, &mut read)?
        };
        for lb in nodes {
            let phys = mapper.lookup(inode, u64::from(lb))?;
            let mut block = self.cache.read(&self.io, phys)?.to_vec();
            linearize_node(&mut block, seed);
            self.cache.write(&self.io, phys, &block)?;
        }
        let mut block = root.to_vec();
        linearize_root(&mut block, seed);
        self.cache.write(&self.io, root_phys, &block)?;
        inode.flags &= !INDEX_FL;
        self.write_inode(dir, inode)
    }
}
