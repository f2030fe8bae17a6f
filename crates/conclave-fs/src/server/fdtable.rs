//! A connection's descriptors: the lowest free index is reused, files and
//! directories are distinct kinds, and each table has a cap.

use conclave_ext2::{DirListEntry, Ino};
use conclave_rpc::Status;

/// An open regular file.
#[derive(Debug)]
pub struct OpenFile {
    /// Its inode.
    pub ino: Ino,
    /// Offset of the next READ/WRITE.
    pub offset: u64,
    /// Opened for reading.
    pub readable: bool,
    /// Opened for writing.
    pub writable: bool,
    /// Writes go to the end.
    pub append: bool,
}

/// An open directory with the listing taken at OPENDIR, so paging is stable.
#[derive(Debug)]
pub struct OpenDir {
    /// Its inode.
    pub ino: Ino,
    /// Entries, without `.` and `..`.
    pub entries: Vec<DirListEntry>,
}

/// One descriptor.
#[derive(Debug)]
pub enum Handle {
    /// A regular file.
    File(OpenFile),
    /// A directory.
    Dir(OpenDir),
}

/// The descriptor table of one connection.
#[derive(Debug)]
pub struct FdTable {
    slots: Vec<Option<Handle>>,
    open: usize,
    cap: usize,
}

impl FdTable {
    /// An empty table holding at most `cap` descriptors.
    pub fn new(cap: usize) -> FdTable {
        FdTable {
            slots: Vec::new(),
            open: 0,
            cap,
        }
    }

    /// Stores `h` at the lowest free index; `EMFILE` at the cap.
    pub fn insert(&mut self, h: Handle) -> Result<u32, Status> {
        if self.open >= self.cap {
            return Err(Status::EMFILE);
        }
        self.open += 1;
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(h);
            return Ok(i as u32);
        }
        self.slots.push(Some(h));
        Ok((self.slots.len() - 1) as u32)
    }

    /// Removes descriptor `fd`; `EBADF` if it is not open.
    pub fn remove(&mut self, fd: u32) -> Result<Handle, Status> {
        let h = self
            .slots
            .get_mut(fd as usize)
            .and_then(Option::take)
            .ok_or(Status::EBADF)?;
        self.open -= 1;
        Ok(h)
    }

    /// The open file `fd`: `EBADF` if none, `EISDIR` for a directory.
    pub fn file(&mut self, fd: u32) -> Result<&mut OpenFile, Status> {
        match self.slots.get_mut(fd as usize).and_then(Option::as_mut) {
            Some(Handle::File(f)) => Ok(f),
            Some(Handle::Dir(_)) => Err(Status::EISDIR),
            None => Err(Status::EBADF),
        }
    }

    /// The open directory `fd`: `EBADF` if none, `ENOTDIR` for a file.
    pub fn dir(&mut self, fd: u32) -> Result<&mut OpenDir, Status> {
        match self.slots.get_mut(fd as usize).and_then(Option::as_mut) {
            Some(Handle::Dir(d)) => Ok(d),
            Some(Handle::File(_)) => Err(Status::ENOTDIR),
            None => Err(Status::EBADF),
        }
    }

    /// The inode behind any descriptor.
    pub fn ino(&self, fd: u32) -> Result<Ino, Status> {
        match self.slots.get(fd as usize).and_then(Option::as_ref) {
            Some(Handle::File(f)) => Ok(f.ino),
            Some(Handle::Dir(d)) => Ok(d.ino),
            None => Err(Status::EBADF),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Handle {
        Handle::File(OpenFile {
            ino: Ino(12),
            offset: 0,
            readable: true,
            writable: false,
            append: false,
        })
    }

    #[test]
    fn reuses_lowest_free_descriptor_and_enforces_cap() {
        let mut t = FdTable::new(3);
        assert_eq!(t.insert(file()).unwrap(), 0);
        assert_eq!(t.insert(file()).unwrap(), 1);
        assert_eq!(t.insert(file()).unwrap(), 2);
        assert_eq!(t.insert(file()).unwrap_err(), Status::EMFILE);
        t.remove(1).unwrap();
        assert_eq!(t.insert(file()).unwrap(), 1);
        assert_eq!(t.remove(7).unwrap_err(), Status::EBADF);
    }

    #[test]
    fn kinds_are_checked() {
        let mut t = FdTable::new(4);
        let d = t
            .insert(Handle::Dir(OpenDir {
                ino: Ino(2),
                entries: vec![],
            }))
            .unwrap();
        assert_eq!(t.file(d).unwrap_err(), Status::EISDIR);
        let f = t.insert(file()).unwrap();
        assert_eq!(t.dir(f).unwrap_err(), Status::ENOTDIR);
        assert_eq!(t.file(99).unwrap_err(), Status::EBADF);
    }
}
