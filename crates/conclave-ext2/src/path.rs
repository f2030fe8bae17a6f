//! Path resolution: `/`-separated components from the root, `.` and `..`, symbolic
//! links anywhere in the path (at most 40 followed), and by-path wrappers of the
//! inode operations.

use crate::error::Ext2Error;
use crate::fs::Ext2Fs;
use crate::metadata::{Ino, Metadata};
use std::collections::VecDeque;

/// Most symbolic links followed while resolving one path (as Linux).
pub const MAX_SYMLINK_FOLLOWS: u32 = 40;

fn components(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

impl Ext2Fs {
    fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Ino, Ext2Error> {
        if path.is_empty() {
            return Err(Ext2Error::NotFound);
        }
        let mut queue: VecDeque<Vec<u8>> = components(path).collect();
        let mut cur = Ino::ROOT;
        let mut follows = 0u32;
        while let Some(c) = queue.pop_front() {
            if c == b"." {
                self.dir_inode(cur)?;
                continue;
            }
            let next = self.lookup_in(cur, &c)?;
            let inode = self.inode(next)?;
            if inode.is_symlink() && (follow_last || !queue.is_empty()) {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    return Err(Ext2Error::Loop);
                }
                let target = self.readlink(next)?;
                if target.first() == Some(&b'/') {
                    cur = Ino::ROOT;
                }
                for (i, t) in components(&target).enumerate() {
                    queue.insert(i, t);
                }
                continue;
            }
            cur = next;
        }
        Ok(cur)
    }

    /// The inode at `path` (absolute or relative to the root), following symlinks.
    pub fn lookup(&self, path: impl AsRef<[u8]>) -> Result<Ino, Ext2Error> {
        self.resolve(path.as_ref(), true)
    }

    /// The inode at `path`, not following a symlink in the last component.
    pub fn lookup_nofollow(&self, path: impl AsRef<[u8]>) -> Result<Ino, Ext2Error> {
        self.resolve(path.as_ref(), false)
    }

    /// The directory holding the last component of `path`, and that component.
    pub fn lookup_parent(&self, path: impl AsRef<[u8]>) -> Result<(Ino, Vec<u8>), Ext2Error> {
        let path = path.as_ref();
        let cut = path
            .iter()
            .rposition(|&c| c != b'/')
            .ok_or(Ext2Error::InvalidArgument("path names the root"))?;
        let trimmed = &path[..=cut];
        let (dir, name) = match trimmed.iter().rposition(|&c| c == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        let parent = if dir.iter().all(|&c| c == b'/') {
            Ino::ROOT
        } else {
            self.resolve(dir, true)?
        };
        self.dir_inode(parent)?;
        Ok((parent, name.to_vec()))
    }

    /// `stat` by path, following symlinks.
    pub fn stat_path(&self, path: impl AsRef<[u8]>) -> Result<Metadata, Ext2Error> {
        self.stat(self.lookup(path)?)
    }

    /// `lstat` by path (a final symlink is described, not followed).
    pub fn lstat_path(&self, path: impl AsRef<[u8]>) -> Result<Metadata, Ext2Error> {
        self.stat(self.lookup_nofollow(path)?)
    }

    /// Creates a regular file at `path`.
    pub fn create_path(&mut self, path: impl AsRef<[u8]>, mode: u16) -> Result<Ino, Ext2Error> {
        let (dir, name) = self.lookup_parent(path)?;
        self.create(dir, name, mode)
    }

    /// Creates a directory at `path`.
    pub fn mkdir_path(&mut self, path: impl AsRef<[u8]>, mode: u16) -> Result<Ino, Ext2Error> {
        let (dir, name) = self.lookup_parent(path)?;
        self.mkdir(dir, name, mode)
    }

    /// Removes the non-directory at `path`.
    pub fn unlink_path(&mut self, path: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let (dir, name) = self.lookup_parent(path)?;
        self.unlink(dir, name)
    }

    /// Removes the empty directory at `path`.
    pub fn rmdir_path(&mut self, path: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let (dir, name) = self.lookup_parent(path)?;
        self.rmdir(dir, name)
    }

    /// Renames `from` to `to`.
    pub fn rename_path(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let (sdir, sname) = self.lookup_parent(from)?;
        let (ddir, dname) = self.lookup_parent(to)?;
        self.rename(sdir, sname, ddir, dname)
    }

    /// Hard-links `existing` (not following a final symlink) as `new`.
    pub fn link_path(&mut self, existing: impl AsRef<[u8]>, new: impl AsRef<[u8]>) -> Result<(), Ext2Error> {
        let ino = self.lookup_nofollow(existing)?;
        let (dir, name) = self.lookup_parent(new)?;
        self.link(ino, dir, name)
    }

    /// Creates a symlink at `path` pointing at `target`.
    pub fn symlink_path(
        &mut self,
        target: impl AsRef<[u8]>,
        path: impl AsRef<[u8]>,
    ) -> Result<Ino, Ext2Error> {
        let (dir, name) = self.lookup_parent(path)?;
        self.symlink(dir, name, target)
    }

    /// The target of the symlink at `path`.
    pub fn readlink_path(&self, path: impl AsRef<[u8]>) -> Result<Vec<u8>, Ext2Error> {
        self.readlink(self.lookup_nofollow(path)?)
    }
}
