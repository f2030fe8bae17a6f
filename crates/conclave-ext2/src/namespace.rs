//! Names and inodes: create, mkdir, symlink, link, unlink, rmdir, rename, and the
//! attribute changes (chmod, chown, utimes). Space is checked before anything is
//! changed, so `NoSpace` leaves the file system as it was.

use crate::dir::check_name;
use crate::dir_entry::ftype;
use crate::error::{corrupt, Ext2Error};
use crate::fs::{now, Ext2Fs};
use crate::inode::{Inode, I_BLOCK_BYTES, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::le::u32_at;
use crate::metadata::Ino;

/// Hard-link limit (as Linux ext2).
const LINK_MAX: u16 = 32000;
/// Longest symlink target on any block size (Linux's PATH_MAX less the NUL).
const PATH_MAX_TARGET: usize = 4095;
const XATTR_MAGIC: u32 = 0xEA02_0000;

impl Ext2Fs {
    /// Longest symlink target: one block less its NUL, and never past PATH_MAX.
    fn max_symlink(&self) -> usize {
        (self.io.block_size() - 1).min(PATH_MAX_TARGET)
    }

    /// Checks that `name` can be added to `parent` and that space for the entry plus
    /// `extra_blocks` and one inode exists.
    fn prepare_new_name(&mut self, parent: Ino, name: &[u8], extra_blocks: u64) -> Result<(), Ext2Error> {
        check_name(name)?;
        let pinode = self.writable_dir(parent)?;
        if self.find_entry(parent, &pinode, name)?.is_some() {
            return Err(Ext2Error::Exists);
        }
        let need = self.entry_blocks_needed(parent, &pinode, name.len())? + extra_blocks;
        if need > self.alloc.sb.free_blocks_count || self.alloc.sb.free_inodes_count == 0 {
            return Err(Ext2Error::NoSpace);
        }
        self.begin_write()
    }

    /// Creates an empty regular file `name` in `parent` with permission bits `mode`.
    pub fn create(&mut self, parent: Ino, name: impl AsRef<[u8]>, mode: u16) -> Result<Ino, Ext2Error> {
        let name = name.as_ref();
        self.prepare_new_name(parent, name, 0)?;
        let ino = Ino(self.alloc.alloc_inode(&self.io, parent.0, false)?);
        let mut inode = self.new_inode(S_IFREG | (mode & 0o7777));
        inode.links_count = 1;
        self.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, inode.mode)?;
        Ok(ino)
    }

    /// Creates directory `name` in `parent` (with `.` and `..`).
    pub fn mkdir(&mut self, parent: Ino, name: impl AsRef<[u8]>, mode: u16) -> Result<Ino, Ext2Error> {
        let name = name.as_ref();
        let mut pinode = self.writable_dir(parent)?;
        if pinode.links_count >= LINK_MAX {
            return Err(Ext2Error::TooManyLinks);
        }
        self.prepare_new_name(parent, name, 1)?;
        let ino = Ino(self.alloc.alloc_inode(&self.io, parent.0, true)?);
        let mut inode = self.new_inode(S_IFDIR | (mode & 0o7777));
        inode.links_count = 2;
        let goal = self.group_start_of(ino);
        let mut mapper = self.mapper();
        let (phys, _) = mapper.map_alloc(&mut self.alloc, &mut inode, 0, goal)?;
        let bs = self.io.block_size();
        let has_ft = self.alloc.sb.has_filetype();
        let mut block = vec![0u8; bs];
        let dot = crate::dir_entry::DirEntry {
            offset: 0,
            inode: ino.0,
            rec_len: 12,
            file_type: ftype::DIR,
            name: b".".to_vec(),
        };
        dot.write_to(&mut block, has_ft);
        let dotdot = crate::dir_entry::DirEntry {
            offset: 12,
            inode: parent.0,
            rec_len: bs - 12 - self.dir_tail_len(),
            file_type: ftype::DIR,
            name: b"..".to_vec(),
        };
        dotdot.write_to(&mut block, has_ft);
        self.write_dir_block(ino, inode.generation(), phys, &block)?;
        inode.size = bs as u64;
        self.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, inode.mode)?;
        pinode = self.inode(parent)?;
        pinode.links_count += 1;
        self.write_inode(parent, &pinode)?;
        Ok(ino)
    }

    /// Creates symbolic link `name` in `parent` pointing at `target`. Targets shorter
    /// than 60 bytes live in the inode ("fast"), longer ones in one block.
    pub fn symlink(
        &mut self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> Result<Ino, Ext2Error> {
        let (name, target) = (name.as_ref(), target.as_ref());
        if target.is_empty() {
            return Err(Ext2Error::InvalidArgument("empty symlink target"));
        }
        if target.len() > self.max_symlink() {
            return Err(Ext2Error::NameTooLong);
        }
        if target.contains(&0) {
            return Err(Ext2Error::InvalidArgument("NUL in symlink target"));
        }
        let fast = target.len() < I_BLOCK_BYTES;
        self.prepare_new_name(parent, name, u64::from(!fast))?;
        let ino = Ino(self.alloc.alloc_inode(&self.io, parent.0, false)?);
        let mut inode = self.new_inode(S_IFLNK | 0o777);
        inode.links_count = 1;
        inode.size = target.len() as u64;
        if fast {
            inode.set_block_bytes(target);
        } else {
            let b = self.alloc.alloc_block(&self.io, self.group_start_of(ino))?;
            let mut block = vec![0u8; self.io.block_size()];
            block[..target.len()].copy_from_slice(target);
            self.write_data_block(b, &block)?;
            inode.block[0] = u32::try_from(b).map_err(|_| corrupt("symlink block past 32 bits"))?;
            inode.blocks = u64::from(self.block_size() / 512);
        }
        self.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, inode.mode)?;
        Ok(ino)
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Ext2Error> {
        let inode = self.inode(ino)?;
        if !inode.is_symlink() {
            return Err(Ext2Error::InvalidArgument("not a symbolic link"));
        }
        let len = inode.size as usize;
        if inode.is_fast_symlink(self.block_size()) {
            if inode.size >= I_BLOCK_BYTES as u64 {
                return Err(corrupt(format!("fast symlink {ino} with size {}", inode.size)));
            }
            return Ok(inode.block_bytes()[..len].to_vec());
        }
        if inode.size > self.max_symlink() as u64 {
            return Err(corrupt(format!("symlink {ino} with size {}", inode.size)));
        }
        let mut block = vec![0u8; self.io.block_size()];
        // ext4 makes slow symlinks extent-mapped.
        let b = if inode.uses_extents() {
            self.mapper().lookup(&inode, 0)?
        } else {
            u64::from(inode.block[0])
        };
        self.read_data_block(b, &mut block)?;
        Ok(block[..len].to_vec())
    }

    /// Adds a hard link `name` in `parent` to the non-directory `ino`.
    pub fn link(&mut self, ino: Ino, parent: Ino, name: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let name = name.as_ref();
        let mut inode = self.inode(ino)?;
        if inode.is_dir() {
            return Err(Ext2Error::IsADirectory);
        }
        if inode.links_count >= LINK_MAX {
            return Err(Ext2Error::TooManyLinks);
        }
        check_name(name)?;
        let pinode = self.writable_dir(parent)?;
        if self.find_entry(parent, &pinode, name)?.is_some() {
            return Err(Ext2Error::Exists);
        }
        if self.entry_blocks_needed(parent, &pinode, name.len())? > self.alloc.sb.free_blocks_count {
            return Err(Ext2Error::NoSpace);
        }
        self.begin_write()?;
        inode.links_count += 1;
        inode.ctime = now();
        self.write_inode(ino, &inode)?;
        self.add_entry(parent, name, ino, inode.mode)
    }

    /// Removes the non-directory `name` from `parent`; frees the inode with its last link.
    pub fn unlink(&mut self, parent: Ino, name: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let name = name.as_ref();
        if name == b"." || name == b".." {
            return Err(Ext2Error::IsADirectory);
        }
        let pinode = self.writable_dir(parent)?;
        let slot = self
            .find_entry(parent, &pinode, name)?
            .ok_or(Ext2Error::NotFound)?;
        let ino = Ino(slot.entries[slot.index].inode);
        let inode = self.inode(ino)?;
        if inode.is_dir() {
            return Err(Ext2Error::IsADirectory);
        }
        self.begin_write()?;
        self.remove_entry(parent, slot)?;
        self.drop_link(ino, inode)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: Ino, name: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let name = name.as_ref();
        if name == b"." {
            return Err(Ext2Error::InvalidArgument("rmdir of '.'"));
        }
        if name == b".." {
            return Err(Ext2Error::NotEmpty);
        }
        let pinode = self.writable_dir(parent)?;
        let slot = self
            .find_entry(parent, &pinode, name)?
            .ok_or(Ext2Error::NotFound)?;
        let ino = Ino(slot.entries[slot.index].inode);
        let inode = self.inode(ino)?;
        if !inode.is_dir() {
            return Err(Ext2Error::NotADirectory);
        }
        if !self.dir_is_empty(ino)? {
            return Err(Ext2Error::NotEmpty);
        }
        self.begin_write()?;
        self.remove_entry(parent, slot)?;
        self.drop_dir(parent, ino, inode)
    }

    /// Renames `sname` in `sparent` to `dname` in `dparent`, replacing a compatible
    /// existing target (a file by a file, an empty directory by a directory). A moved
    /// directory gets its `..` and the parents' link counts fixed; moving a directory
    /// into its own subtree is refused.
    pub fn rename(
        &mut self,
        sparent: Ino,
        sname: impl AsRef<[u8]>,
        dparent: Ino,
        dname: impl AsRef<[u8]>,
    ) -> Result<(), Ext2Error> {
        let (sname, dname) = (sname.as_ref(), dname.as_ref());
        check_name(sname)?;
        check_name(dname)?;
        let spinode = self.writable_dir(sparent)?;
        let dpinode = self.writable_dir(dparent)?;
        let sslot = self
            .find_entry(sparent, &spinode, sname)?
            .ok_or(Ext2Error::NotFound)?;
        let src = Ino(sslot.entries[sslot.index].inode);
        let sinode = self.inode(src)?;
        let dslot = self.find_entry(dparent, &dpinode, dname)?;
        let existing = dslot.as_ref().map(|s| Ino(s.entries[s.index].inode));
        if existing == Some(src) {
            return Ok(());
        }
        let moving_dir = sinode.is_dir();
        if moving_dir && sparent != dparent {
            self.refuse_move_into_itself(src, dparent)?;
        }
        let replaced = match existing {
            Some(e) => {
                let einode = self.inode(e)?;
                match (moving_dir, einode.is_dir()) {
                    (true, false) => return Err(Ext2Error::NotADirectory),
                    (false, true) => return Err(Ext2Error::IsADirectory),
                    (true, true) if !self.dir_is_empty(e)? => return Err(Ext2Error::NotEmpty),
                    _ => {}
                }
                Some((e, einode))
            }
            None => {
                if moving_dir && sparent != dparent && dpinode.links_count >= LINK_MAX {
                    return Err(Ext2Error::TooManyLinks);
                }
                if self.entry_blocks_needed(dparent, &dpinode, dname.len())? > self.alloc.sb.free_blocks_count
                {
                    return Err(Ext2Error::NoSpace);
                }
                None
            }
        };
        self.begin_write()?;
        match (dslot, &replaced) {
            (Some(slot), Some(_)) => self.retarget_entry(dparent, slot, src, sinode.mode)?,
            _ => self.add_entry(dparent, dname, src, sinode.mode)?,
        }
        // The source slot may have moved if the same block was rewritten: look it up again.
        let spinode = self.writable_dir(sparent)?;
        let sslot = match self.find_entry(sparent, &spinode, sname)? {
            Some(s) if s.entries[s.index].inode == src.0 => s,
            _ => return Err(corrupt("source entry vanished during rename")),
        };
        self.remove_entry(sparent, sslot)?;
        if let Some((e, einode)) = replaced {
            if einode.is_dir() {
                self.drop_dir(dparent, e, einode)?;
            } else {
                self.drop_link(e, einode)?;
            }
        }
        let mut sinode = self.inode(src)?;
        sinode.ctime = now();
        self.write_inode(src, &sinode)?;
        if moving_dir && sparent != dparent {
            let slot = self
                .find_entry(src, &sinode, b"..")?
                .ok_or_else(|| corrupt("directory without '..'"))?;
            self.retarget_entry(src, slot, dparent, S_IFDIR)?;
            self.adjust_links(sparent, -1)?;
            self.adjust_links(dparent, 1)?;
        }
        Ok(())
    }

    /// Fails if `dest` is `dir` or lies below it.
    fn refuse_move_into_itself(&self, dir: Ino, dest: Ino) -> Result<(), Ext2Error> {
        let mut cur = dest;
        for _ in 0..=self.alloc.sb.inodes_count.min(65536) {
            if cur == dir {
                return Err(Ext2Error::InvalidArgument(
                    "moving a directory into its own subtree",
                ));
            }
            if cur == Ino::ROOT {
                return Ok(());
            }
            cur = self.lookup_in(cur, b"..")?;
        }
        Err(corrupt("directory '..' chain does not reach the root"))
    }

    fn adjust_links(&mut self, ino: Ino, delta: i32) -> Result<(), Ext2Error> {
        let mut inode = self.inode(ino)?;
        let n = i32::from(inode.links_count) + delta;
        inode.links_count =
            u16::try_from(n).map_err(|_| corrupt(format!("link count of {ino} out of range")))?;
        inode.ctime = now();
        self.write_inode(ino, &inode)
    }

    /// One link less for a non-directory; frees it with the last.
    fn drop_link(&mut self, ino: Ino, mut inode: Inode) -> Result<(), Ext2Error> {
        inode.links_count = inode.links_count.saturating_sub(1);
        inode.ctime = now();
        if inode.links_count == 0 {
            return self.free_inode(ino, inode);
        }
        self.write_inode(ino, &inode)
    }

    /// Frees a directory whose entry in `parent` is gone (its `..` no longer counts).
    fn drop_dir(&mut self, parent: Ino, ino: Ino, inode: Inode) -> Result<(), Ext2Error> {
        self.free_inode(ino, inode)?;
        self.adjust_links(parent, -1)
    }

    /// Releases an inode's blocks (data, indirect, xattr) and the inode itself.
    fn free_inode(&mut self, ino: Ino, mut inode: Inode) -> Result<(), Ext2Error> {
        let maps_blocks = matches!(inode.kind(), S_IFREG | S_IFDIR)
            || (inode.is_symlink() && !inode.is_fast_symlink(self.block_size()));
        if !maps_blocks {
            // Fast symlinks keep their target, devices their numbers, in `i_block`.
            inode.block = [0; 15];
        } else {
            let mut mapper = self.mapper();
            mapper.truncate(&mut self.alloc, &mut inode, 0)?;
            mapper.flush(&mut self.alloc, &mut inode)?;
        }
        if inode.file_acl != 0 {
            self.release_xattr_block(&mut inode)?;
        }
        let is_dir = inode.is_dir();
        inode.links_count = 0;
        inode.size = 0;
        inode.blocks = 0;
        inode.dtime = now();
        self.write_inode(ino, &inode)?;
        self.alloc.free_inode(&self.io, ino.0, is_dir)
    }

    /// Drops this inode's reference to its shared extended-attribute block.
    fn release_xattr_block(&mut self, inode: &mut Inode) -> Result<(), Ext2Error> {
        let b = inode.file_acl;
        let b = u64::from(b);
        let mut block = vec![0u8; self.io.block_size()];
        self.read_data_block(b, &mut block)?;
        if u32_at(&block, 0) != XATTR_MAGIC {
            return Err(corrupt(format!("xattr block {b} has a bad magic")));
        }
        let refs = u32_at(&block, 4);
        if refs > 1 {
            block[4..8].copy_from_slice(&(refs - 1).to_le_bytes());
            self.write_data_block(b, &block)?;
        } else {
            self.alloc.free_block(&self.io, b)?;
        }
        inode.file_acl = 0;
        Ok(())
    }

    /// Sets the permission bits (the file type is kept).
    pub fn chmod(&mut self, ino: Ino, mode: u16) -> Result<(), Ext2Error> {
        let mut inode = self.inode(ino)?;
        self.begin_write()?;
        inode.mode = (inode.mode & S_IFMT) | (mode & 0o7777);
        inode.ctime = now();
        self.write_inode(ino, &inode)
    }

    /// Sets owner and/or group.
    pub fn chown(&mut self, ino: Ino, uid: Option<u32>, gid: Option<u32>) -> Result<(), Ext2Error> {
        let mut inode = self.inode(ino)?;
        self.begin_write()?;
        if let Some(u) = uid {
            inode.uid = u;
        }
        if let Some(g) = gid {
            inode.gid = g;
        }
        inode.ctime = now();
        self.write_inode(ino, &inode)
    }

    /// Sets access and/or modification time (seconds since the epoch).
    pub fn utimes(&mut self, ino: Ino, atime: Option<u32>, mtime: Option<u32>) -> Result<(), Ext2Error> {
        let mut inode = self.inode(ino)?;
        self.begin_write()?;
        if let Some(a) = atime {
            inode.atime = a;
        }
        if let Some(m) = mtime {
            inode.mtime = m;
        }
        inode.ctime = now();
        self.write_inode(ino, &inode)
    }
}
