//! File contents: read at an offset, write at an offset (extend, overwrite, holes),
//! truncate (shrink frees blocks, grow leaves a hole).

use crate::error::Ext2Error;
use crate::features::RO_COMPAT_LARGE_FILE;
use crate::fs::{now, Ext2Fs};
use crate::inode::{Inode, S_IFREG};
use crate::metadata::Ino;

/// Largest file `read_all` will load into memory.
const READ_ALL_LIMIT: u64 = 1 << 30;

impl Ext2Fs {
    fn regular(&self, ino: Ino) -> Result<Inode, Ext2Error> {
        let inode = self.inode(ino)?;
        match inode.kind() {
            S_IFREG => Ok(inode),
            _ if inode.is_dir() => Err(Ext2Error::IsADirectory),
            _ => Err(Ext2Error::InvalidArgument("not a regular file")),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at or past the end).
    /// Holes read as zeros. Does not update `atime`. A run of blocks that lie one after
    /// the other on disk is read in one go, so 1 KiB and 2 KiB blocks do not read
    /// (and decrypt, and verify) the same device block once per file-system block.
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Ext2Error> {
        let inode = self.regular(ino)?;
        if offset >= inode.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (inode.size - offset).min(buf.len() as u64) as usize;
        let mut mapper = self.mapper();
        let mut done = 0usize;
        let bsz = self.io.block_size();
        let bs = bsz as u64;
        while done < len {
            let pos = offset + done as u64;
            let (lb, in_block) = (pos / bs, (pos % bs) as usize);
            let mut n = (bsz - in_block).min(len - done);
            let phys = mapper.lookup(&inode, lb)?;
            if phys == 0 {
                buf[done..done + n].fill(0);
                done += n;
                continue;
            }
            let mut next = lb + 1;
            while done + n < len && mapper.lookup(&inode, next)? == phys + (next - lb) {
                n += bsz.min(len - done - n);
                next += 1;
            }
            self.read_data_run(phys, next - lb, in_block, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(done)
    }

    /// The whole contents of a regular file (a convenience for files up to 1 GiB; use
    /// [`Ext2Fs::read`] in chunks for anything larger).
    pub fn read_all(&self, ino: Ino) -> Result<Vec<u8>, Ext2Error> {
        let size = self.regular(ino)?.size;
        if size > READ_ALL_LIMIT {
            return Err(Ext2Error::FileTooLarge);
        }
        let len = usize::try_from(size).map_err(|_| Ext2Error::FileTooLarge)?;
        let mut buf = vec![0u8; len];
        let n = self.read(ino, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes `data` at `offset`, allocating blocks as needed (a write past the end
    /// leaves a hole). If space runs out part way, the bytes that fit stay written and
    /// their count is returned; if none fit, `NoSpace`.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Ext2Error> {
        let mut inode = self.regular(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Ext2Error::FileTooLarge)?;
        if end > self.max_file_size() {
            return Err(Ext2Error::FileTooLarge);
        }
        self.begin_write()?;
        let mut mapper = self.mapper();
        // (`i_block[0]` of an extent-mapped inode is the tree header, not a block.)
        let mut goal = if inode.uses_extents() {
            0
        } else {
            u64::from(inode.block[0])
        };
        let mut done = 0usize;
        let mut out_of_space = false;
        let bsz = self.io.block_size();
        let bs = bsz as u64;
        let mut tmp = vec![0u8; bsz];
        // Pending whole blocks: (first block, offset in `data`, bytes).
        let mut run: Option<(u64, usize, usize)> = None;
        while done < data.len() {
            let pos = offset + done as u64;
            let (lb, in_block) = (pos / bs, (pos % bs) as usize);
            let n = (bsz - in_block).min(data.len() - done);
            if mapper.missing(&inode, lb)? > self.alloc.sb.free_blocks_count {
                out_of_space = true;
                break;
            }
            if goal == 0 && lb > 0 {
                goal = mapper.lookup(&inode, lb - 1)?;
            }
            if goal == 0 {
                goal = self.group_start_of(ino);
            }
            let (phys, fresh) = mapper.map_alloc(&mut self.alloc, &mut inode, lb, goal)?;
            goal = phys.saturating_add(1);
            let src = &data[done..done + n];
            if n == bsz {
                // Whole blocks that follow each other on disk go down as one run.
                match &mut run {
                    Some((first, start, len))
                        if *first + (*len / bsz) as u64 == phys && *start + *len == done =>
                    {
                        *len += n
                    }
                    _ => {
                        self.write_data_run(run.take(), data)?;
                        run = Some((phys, done, n));
                    }
                }
            } else {
                self.write_data_run(run.take(), data)?;
                if fresh {
                    tmp.fill(0);
                } else {
                    self.read_data_block(phys, &mut tmp)?;
                }
                tmp[in_block..in_block + n].copy_from_slice(src);
                self.write_data_block(phys, &tmp)?;
            }
            done += n;
        }
        self.write_data_run(run.take(), data)?;
        mapper.flush(&mut self.alloc, &mut inode)?;
        if done > 0 {
            inode.size = inode.size.max(offset + done as u64);
            let t = now();
            inode.mtime = t;
            inode.ctime = t;
        }
        self.write_inode(ino, &inode)?;
        self.note_large_file(inode.size);
        if done == 0 && out_of_space {
            return Err(Ext2Error::NoSpace);
        }
        Ok(done)
    }

    /// Sets the size of a regular file: shrinking frees blocks (and emptied indirect
    /// blocks) and zeroes the tail of the last block; growing leaves a hole.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Ext2Error> {
        let mut inode = self.regular(ino)?;
        if size > self.max_file_size() {
            return Err(Ext2Error::FileTooLarge);
        }
        self.begin_write()?;
        let bs = self.io.block_size() as u64;
        if size < inode.size {
            let mut mapper = self.mapper();
            mapper.truncate(&mut self.alloc, &mut inode, size.div_ceil(bs))?;
            let tail = (size % bs) as usize;
            if tail != 0 {
                let phys = mapper.lookup(&inode, size / bs)?;
                if phys != 0 {
                    let mut buf = vec![0u8; bs as usize];
                    self.read_data_block(phys, &mut buf)?;
                    buf[tail..].fill(0);
                    self.write_data_block(phys, &buf)?;
                }
            }
            mapper.flush(&mut self.alloc, &mut inode)?;
        }
        inode.size = size;
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        self.write_inode(ino, &inode)?;
        self.note_large_file(size);
        Ok(())
    }

    /// First block of the group holding inode `ino`: where its data should start.
    pub(crate) fn group_start_of(&self, ino: Ino) -> u64 {
        let sb = &self.alloc.sb;
        let g = u64::from(ino.0.saturating_sub(1) / sb.inodes_per_group);
        g * u64::from(sb.blocks_per_group) + u64::from(sb.first_data_block)
    }

    /// Sets the `large_file` feature once a file passes 2 GiB (never needed at
    /// revision 0, whose files stop below 2 GiB).
    fn note_large_file(&mut self, size: u64) {
        if size > i32::MAX as u64 && !self.alloc.sb.is_old_rev() {
            self.alloc.sb.features.ro_compat |= RO_COMPAT_LARGE_FILE;
        }
    }
}
