//! Operations on file descriptors: OPEN, CLOSE, READ, PREAD, WRITE, PWRITE,
//! SEEK, TELL, FSIZE, FTRUNCATE, FSTAT, FSYNC.

use super::fdtable::{FdTable, Handle, OpenDir, OpenFile};
use super::{path, stat_of, status, FileServer};
use crate::proto::{flags::*, MAX_IO};
use conclave_ext2::{Ext2Error, FileType, Ino};
use conclave_rpc::{BodyReader, BodyWriter, Frame, Status};

fn u64_reply(v: u64) -> Frame {
    Frame::ok(v.to_be_bytes().to_vec())
}

/// OPEN: `str path, i32 flags, u32 mode` → `u32 fd`.
pub fn open(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let fl = r.i32()?;
    let mode = r.u32()?;
    r.finish()?;
    let acc = fl & O_ACCMODE;
    if acc == O_ACCMODE {
        return Err(Status::EINVAL);
    }
    let (readable, writable) = (acc != O_WRONLY, acc != O_RDONLY);
    let found = {
        let fs = s.read();
        if fl & O_NOFOLLOW != 0 {
            fs.lookup_nofollow(&p)
        } else {
            fs.lookup(&p)
        }
    };
    let ino = match found {
        Ok(ino) => {
            if fl & O_CREAT != 0 && fl & O_EXCL != 0 {
                return Err(Status::EEXIST);
            }
            ino
        }
        Err(Ext2Error::NotFound) if fl & O_CREAT != 0 => {
            let mut fs = s.write()?;
            let (parent, name) = fs.lookup_parent(&p).map_err(status)?;
            match fs.create(parent, &name, (mode & 0o7777) as u16) {
                Ok(ino) => ino,
                // lost a race with another creator: open what is there
                Err(Ext2Error::Exists) if fl & O_EXCL == 0 => fs.lookup(&p).map_err(status)?,
                Err(e) => return Err(status(e)),
            }
        }
        Err(e) => return Err(status(e)),
    };
    let md = s.read().stat(ino).map_err(status)?;
    let handle = match md.file_type {
        FileType::Dir => {
            if writable {
                return Err(Status::EISDIR);
            }
            let entries = s.read().readdir(ino).map_err(status)?;
            Handle::Dir(OpenDir {
                ino,
                entries: without_dots(entries),
            })
        }
        FileType::Symlink => return Err(Status::ELOOP), // only with O_NOFOLLOW
        FileType::Special => return Err(Status::ENOTSUP),
        FileType::File => {
            if fl & O_DIRECTORY != 0 {
                return Err(Status::ENOTDIR);
            }
            if fl & O_TRUNC != 0 && writable && md.size != 0 {
                s.write()?.truncate(ino, 0).map_err(status)?;
            }
            Handle::File(OpenFile {
                ino,
                offset: 0,
                readable,
                writable,
                append: fl & O_APPEND != 0,
            })
        }
    };
    let fd = t.insert(handle)?;
    Ok(Frame::ok(fd.to_be_bytes().to_vec()))
}

/// Drops `.` and `..` from a listing.
pub(super) fn without_dots(v: Vec<conclave_ext2::DirListEntry>) -> Vec<conclave_ext2::DirListEntry> {
    v.into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .collect()
}

/// CLOSE / CLOSEDIR: `u32 fd`.
pub fn close(t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    r.finish()?;
    t.remove(fd)?;
    Ok(Frame::ok(Vec::new()))
}

fn read_at(s: &FileServer, ino: Ino, off: u64, count: u32) -> Result<Vec<u8>, Status> {
    if count as usize > MAX_IO {
        return Err(Status::E2BIG);
    }
    let mut buf = vec![0u8; count as usize];
    let n = s.read().read(ino, off, &mut buf).map_err(status)?;
    buf.truncate(n);
    Ok(buf)
}

/// READ: `u32 fd, u32 count` → data.
pub fn read(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let count = r.u32()?;
    r.finish()?;
    let f = t.file(fd)?;
    if !f.readable {
        return Err(Status::EBADF);
    }
    let data = read_at(s, f.ino, f.offset, count)?;
    f.offset += data.len() as u64;
    Ok(Frame::ok(data))
}

/// PREAD: `u32 fd, u64 offset, u32 count` → data.
pub fn pread(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let off = r.u64()?;
    let count = r.u32()?;
    r.finish()?;
    let f = t.file(fd)?;
    if !f.readable {
        return Err(Status::EBADF);
    }
    Ok(Frame::ok(read_at(s, f.ino, off, count)?))
}

fn write_at(s: &FileServer, f: &mut OpenFile, off: Option<u64>, data: &[u8]) -> Result<u32, Status> {
    if !f.writable {
        return Err(Status::EBADF);
    }
    if data.len() > s.opts.max_write_per_request {
        return Err(Status::EFBIG);
    }
    let mut fs = s.write()?;
    let at = match off {
        Some(o) => o,
        None if f.append => fs.stat(f.ino).map_err(status)?.size,
        None => f.offset,
    };
    let n = fs.write(f.ino, at, data).map_err(status)?;
    if off.is_none() {
        f.offset = at + n as u64;
    }
    Ok(n as u32)
}

/// WRITE: `u32 fd, data...` → `u32 written`.
pub fn write(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let data = r.rest();
    let n = write_at(s, t.file(fd)?, None, data)?;
    Ok(Frame::ok(n.to_be_bytes().to_vec()))
}

/// PWRITE: `u32 fd, u64 offset, data...` → `u32 written`.
pub fn pwrite(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let off = r.u64()?;
    let data = r.rest();
    let n = write_at(s, t.file(fd)?, Some(off), data)?;
    Ok(Frame::ok(n.to_be_bytes().to_vec()))
}

/// SEEK: `u32 fd, i64 offset, u32 whence` → `u64`.
pub fn seek(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let off = r.i64()?;
    let whence = r.u32()?;
    r.finish()?;
    let f = t.file(fd)?;
    let base: i128 = match whence {
        0 => 0,
        1 => f.offset as i128,
        2 => s.read().stat(f.ino).map_err(status)?.size as i128,
        _ => return Err(Status::EINVAL),
    };
    let new = base + off as i128;
    if new < 0 || new > i64::MAX as i128 {
        return Err(Status::EINVAL);
    }
    f.offset = new as u64;
    Ok(u64_reply(f.offset))
}

/// TELL: `u32 fd` → `u64`.
pub fn tell(t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    r.finish()?;
    Ok(u64_reply(t.file(fd)?.offset))
}

/// FSIZE: `u32 fd` → `u64`.
pub fn fsize(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    r.finish()?;
    let ino = t.file(fd)?.ino;
    Ok(u64_reply(s.read().stat(ino).map_err(status)?.size))
}

/// FTRUNCATE: `u32 fd, u64 size`.
pub fn ftruncate(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let size = r.u64()?;
    r.finish()?;
    let f = t.file(fd)?;
    if !f.writable {
        return Err(Status::EBADF);
    }
    s.write()?.truncate(f.ino, size).map_err(status)?;
    Ok(Frame::ok(Vec::new()))
}

/// FSTAT: `u32 fd` → Stat.
pub fn fstat(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    r.finish()?;
    let ino = t.ino(fd)?;
    let md = s.read().stat(ino).map_err(status)?;
    let mut w = BodyWriter::with_capacity(80);
    stat_of(&md).encode(&mut w);
    Ok(Frame::ok(w.finish()))
}

/// FSYNC: `[u32 fd]` — syncs the whole file system (metadata, device, root).
pub fn fsync(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    if r.remaining() > 0 {
        let fd = r.u32()?;
        t.ino(fd)?;
    }
    r.finish()?;
    s.sync().map_err(status)?;
    Ok(Frame::ok(Vec::new()))
}
