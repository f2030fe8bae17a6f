//! Linear directories: lookup, listing, adding and removing entries.
//!
//! Entries never cross a block; a new entry takes a free slot or the slack of an
//! existing entry, else the directory grows by one block. Removing merges the slot
//! into the previous entry. Hashed (htree) directories are looked up and extended
//! through their index (`htree.rs`); `readdir` reads their leaves in block order.

use crate::block_map::Mapper;
use crate::dir_entry::{ftype, needed_len, DirEntry, RawEntry, MAX_NAME_LEN};
use crate::error::{corrupt, Ext2Error};
use crate::fs::{now, Ext2Fs};
use crate::inode::{Inode, INDEX_FL, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::metadata::{DirListEntry, FileType, Ino};
use std::sync::Arc;

/// A directory block: file-system block, contents, parsed entries.
type DirBlock = (u64, Arc<[u8]>, Vec<RawEntry>);

/// Where an entry was found.
pub(crate) struct Slot {
    /// File-system block of the directory block.
    pub phys: u64,
    /// The whole directory block.
    pub block: Vec<u8>,
    /// Parsed entries of that block.
    pub entries: Vec<RawEntry>,
    /// Index of the entry in `entries`.
    pub index: usize,
}

/// The entry type byte for a mode.
pub(crate) fn ftype_of(mode: u16) -> u8 {
    match mode & S_IFMT {
        S_IFREG => ftype::REG,
        S_IFDIR => ftype::DIR,
        S_IFLNK => ftype::SYMLINK,
        0o020000 => 3,
        0o060000 => 4,
        0o010000 => 5,
        0o140000 => 6,
        _ => ftype::UNKNOWN,
    }
}

fn ftype_kind(t: u8) -> Option<FileType> {
    match t {
        ftype::REG => Some(FileType::File),
        ftype::DIR => Some(FileType::Dir),
        ftype::SYMLINK => Some(FileType::Symlink),
        3..=6 => Some(FileType::Special),
        _ => None,
    }
}

/// Checks a name for a new entry.
pub(crate) fn check_name(name: &[u8]) -> Result<(), Ext2Error> {
    if name.is_empty() {
        return Err(Ext2Error::InvalidArgument("empty name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Ext2Error::NameTooLong);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Ext2Error::InvalidArgument("name contains '/' or NUL"));
    }
    if name == b"." || name == b".." {
        return Err(Ext2Error::InvalidArgument("'.' or '..' as a name"));
    }
    Ok(())
}

impl Ext2Fs {
    /// A live directory inode.
    pub(crate) fn dir_inode(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        let inode = self.inode(ino)?;
        if !inode.is_dir() {
            return Err(Ext2Error::NotADirectory);
        }
        Ok(inode)
    }

    /// A live directory inode we may change (a hashed one loses its index when an
    /// entry is added, see `htree.rs`).
    pub(crate) fn writable_dir(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        self.dir_inode(ino)
    }

    /// Bytes at the end of each leaf block kept for the checksum tail (`metadata_csum`).
    pub(crate) fn dir_tail_len(&self) -> usize {
        if self.alloc.csum.fs_seed.is_some() {
            crate::csum::DIR_TAIL_LEN
        } else {
            0
        }
    }

    fn dir_block_count(&self, inode: &Inode, ino: Ino) -> Result<u64, Ext2Error> {
        let bs = self.io.block_size() as u64;
        if inode.size % bs != 0 {
            return Err(corrupt(format!(
                "directory {ino} has size {} (not whole blocks)",
                inode.size
            )));
        }
        Ok(inode.size / bs)
    }

    /// Reads and parses directory block `lb`, checking its checksum (leaf tail, or
    /// `dx_tail` for the index blocks of a hashed directory).
    pub(crate) fn dir_block(
        &self,
        mapper: &mut Mapper,
        inode: &Inode,
        ino: Ino,
        lb: u64,
    ) -> Result<DirBlock, Ext2Error> {
        let phys = mapper.lookup(inode, lb)?;
        if phys == 0 || phys >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!(
                "directory {ino} has a hole or bad pointer at block {lb}"
            )));
        }
        let block = self.cache.read(&self.io, phys)?;
        let mut len = block.len();
        if let Some(seed) = self.alloc.csum.inode_seed(ino.0, inode.generation()) {
            if inode.flags & INDEX_FL != 0 && crate::htree::is_index_block(&block, lb) {
                crate::csum::verify_dx(seed, ino.0, lb, &block)?;
            } else {
                crate::csum::verify_dir_leaf(seed, ino.0, lb, &block)?;
                len -= crate::csum::DIR_TAIL_LEN;
            }
        }
        let sb = &self.alloc.sb;
        let entries = RawEntry::scan_block(&block[..len], sb.inodes_count, sb.has_filetype())
            .map_err(|e| corrupt(format!("directory {ino} block {lb}: {e}")))?;
        Ok((phys, block, entries))
    }

    /// Finds `name` in directory `dir`.
    pub(crate) fn find_entry(&self, dir: Ino, inode: &Inode, name: &[u8]) -> Result<Option<Slot>, Ext2Error> {
        if let Some(found) = self.find_entry_hashed(dir, inode, name)? {
            return Ok(found);
        }
        let mut mapper = self.mapper();
        for lb in 0..self.dir_block_count(inode, dir)? {
            let (phys, block, entries) = self.dir_block(&mut mapper, inode, dir, lb)?;
            if let Some(index) = entries
                .iter()
                .position(|e| e.inode != 0 && e.name(&block) == name)
            {
                return Ok(Some(Slot {
                    phys,
                    block: block.to_vec(),
                    entries,
                    index,
                }));
            }
        }
        Ok(None)
    }

    /// The inode `name` names in directory `dir` (one path component, no symlinks).
    pub fn lookup_in(&self, dir: Ino, name: impl AsRef<[u8]>) -> Result<Ino, Ext2Error> {
        let name = name.as_ref();
        if name.len() > MAX_NAME_LEN {
            return Err(Ext2Error::NameTooLong);
        }
        let inode = self.dir_inode(dir)?;
        match self.find_entry(dir, &inode, name)? {
            Some(s) => Ok(Ino(s.entries[s.index].inode)),
            None => Err(Ext2Error::NotFound),
        }
    }

    /// Every live entry of directory `dir`, including `.` and `..`, in on-disk order.
    pub fn readdir(&self, dir: Ino) -> Result<Vec<DirListEntry>, Ext2Error> {
        let inode = self.dir_inode(dir)?;
        let mut mapper = self.mapper();
        let mut out = Vec::new();
        for lb in 0..self.dir_block_count(&inode, dir)? {
            let (_, block, entries) = self.dir_block(&mut mapper, &inode, dir, lb)?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.inode != 0)
                    .map(|e| DirListEntry {
                        ino: Ino(e.inode),
                        file_type: ftype_kind(e.file_type),
                        name: e.name(&block).to_vec(),
                    }),
            );
        }
        Ok(out)
    }

    /// Whether directory `dir` holds nothing but `.` and `..`.
    pub(crate) fn dir_is_empty(&self, dir: Ino) -> Result<bool, Ext2Error> {
        Ok(self
            .readdir(dir)?
            .iter()
            .all(|e| e.name == b"." || e.name == b".."))
    }

    /// Blocks adding an entry of `name_len` to `dir` would allocate (0 if a slot is free).
    pub(crate) fn entry_blocks_needed(
        &self,
        dir: Ino,
        inode: &Inode,
        name_len: usize,
    ) -> Result<u64, Ext2Error> {
        let need = needed_len(name_len);
        let mut mapper = self.mapper();
        let n = self.dir_block_count(inode, dir)?;
        for lb in 0..n {
            let (_, _, entries) = self.dir_block(&mut mapper, inode, dir, lb)?;
            if entries.iter().any(|e| e.rec_len - e.used_len() >= need) {
                return Ok(0);
            }
        }
        mapper.missing(inode, n)
    }

    /// Adds `name -> ino` to directory `dir` (which the caller checked has no such name
    /// and has room, see `entry_blocks_needed`). Updates the directory's times and size.
    pub(crate) fn add_entry(&mut self, dir: Ino, name: &[u8], ino: Ino, mode: u16) -> Result<(), Ext2Error> {
        let mut inode = self.writable_dir(dir)?;
        if inode.flags & INDEX_FL != 0 {
            // Into the leaf the index names, if it has room; else the index goes.
            if self.add_entry_hashed(dir, &mut inode, name, ino, mode)? {
                let t = now();
                inode.mtime = t;
                inode.ctime = t;
                return self.write_inode(dir, &inode);
            }
            self.drop_index(dir, &mut inode)?;
        }
        let need = needed_len(name.len());
        let has_ft = self.alloc.sb.has_filetype();
        let mut mapper = self.mapper();
        let n = self.dir_block_count(&inode, dir)?;
        let bs = self.io.block_size();
        let new_entry = |offset, rec_len| DirEntry {
            offset,
            inode: ino.0,
            rec_len,
            file_type: ftype_of(mode),
            name: name.to_vec(),
        };
        let mut placed = false;
        for lb in 0..n {
            let (phys, block, entries) = self.dir_block(&mut mapper, &inode, dir, lb)?;
            let Some(e) = entries.iter().find(|e| e.rec_len - e.used_len() >= need) else {
                continue;
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
            placed = true;
            break;
        }
        if !placed {
            let goal = match n {
                0 => self.group_start_of(dir),
                _ => mapper.lookup(&inode, n - 1)?.saturating_add(1),
            };
            let (phys, _) = mapper.map_alloc(&mut self.alloc, &mut inode, n, goal)?;
            let mut block = vec![0u8; bs];
            new_entry(0, bs - self.dir_tail_len()).write_to(&mut block, has_ft);
            self.write_dir_block(dir, inode.generation(), phys, &block)?;
            mapper.flush(&mut self.alloc, &mut inode)?;
            inode.size += bs as u64;
        }
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        self.write_inode(dir, &inode)
    }

    /// Removes the entry in `slot` from directory `dir` (merging it into the previous
    /// entry, or marking it unused if first in its block).
    pub(crate) fn remove_entry(&mut self, dir: Ino, slot: Slot) -> Result<(), Ext2Error> {
        let Slot {
            phys,
            mut block,
            entries,
            index,
        } = slot;
        let has_ft = self.alloc.sb.has_filetype();
        if index == 0 {
            entries[0].set_inode(&mut block, 0, 0, has_ft);
        } else {
            let prev = entries[index - 1];
            prev.set_rec_len(&mut block, prev.rec_len + entries[index].rec_len);
        }
        let generation = self.inode(dir)?.generation();
        self.write_dir_block(dir, generation, phys, &block)?;
        self.touch_dir(dir)
    }

    /// Points the entry in `slot` at `ino` (rename over an existing name, `..` fix-up).
    pub(crate) fn retarget_entry(
        &mut self,
        dir: Ino,
        slot: Slot,
        ino: Ino,
        mode: u16,
    ) -> Result<(), Ext2Error> {
        let Slot {
            phys,
            mut block,
            entries,
            index,
        } = slot;
        entries[index].set_inode(&mut block, ino.0, ftype_of(mode), self.alloc.sb.has_filetype());
        let generation = self.inode(dir)?.generation();
        self.write_dir_block(dir, generation, phys, &block)?;
        self.touch_dir(dir)
    }

    /// Writes a block of directory `dir` (of generation `generation`) through the
    /// metadata cache, with a fresh checksum under `metadata_csum` (leaf blocks keep
    /// their last 12 bytes free for the tail; see `dir_tail_len`).
    pub(crate) fn write_dir_block(
        &self,
        dir: Ino,
        generation: u32,
        phys: u64,
        block: &[u8],
    ) -> Result<(), Ext2Error> {
        if phys == 0 || phys >= self.alloc.sb.blocks_count {
            return Err(corrupt(format!("directory block pointer {phys} out of range")));
        }
        match self.alloc.csum.inode_seed(dir.0, generation) {
            Some(seed) => {
                let mut b = block.to_vec();
                crate::htree::set_block_csum(seed, dir.0, &mut b)?;
                self.cache.write(&self.io, phys, &b)?;
            }
            None => self.cache.write(&self.io, phys, block)?,
        }
        Ok(())
    }

    fn touch_dir(&mut self, dir: Ino) -> Result<(), Ext2Error> {
        let mut inode = self.inode(dir)?;
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        self.write_inode(dir, &inode)
    }
}
