//! Directory descriptors: OPENDIR and paged READDIR.

use super::fdtable::{FdTable, Handle, OpenDir};
use super::file::without_dots;
use super::{path, status, FileServer};
use crate::proto::ftype;
use conclave_ext2::FileType;
use conclave_rpc::{BodyReader, BodyWriter, Frame, Status};

/// Most entries one READDIR page carries.
const MAX_PAGE: u32 = 1024;

/// OPENDIR: `str path` → `u32 fd`.
pub fn opendir(s: &FileServer, t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    r.finish()?;
    let fs = s.read();
    let ino = fs.lookup(&p).map_err(status)?;
    let entries = fs.readdir(ino).map_err(status)?;
    drop(fs);
    let fd = t.insert(Handle::Dir(OpenDir {
        ino,
        entries: without_dots(entries),
    }))?;
    Ok(Frame::ok(fd.to_be_bytes().to_vec()))
}

/// READDIR: `u32 fd, u32 cookie, u32 max` → `u32 next (u32::MAX = end), u32 n, entries`.
pub fn readdir(t: &mut FdTable, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let fd = r.u32()?;
    let cookie = r.u32()?;
    let max = r.u32()?.clamp(1, MAX_PAGE);
    r.finish()?;
    let d = t.dir(fd)?;
    let start = (cookie as usize).min(d.entries.len());
    let end = (start + max as usize).min(d.entries.len());
    let next = if end == d.entries.len() {
        u32::MAX
    } else {
        end as u32
    };
    let mut w = BodyWriter::new();
    w.u32(next).u32((end - start) as u32);
    for e in &d.entries[start..end] {
        let ty = match e.file_type {
            Some(FileType::File) => ftype::FILE,
            Some(FileType::Dir) => ftype::DIR,
            Some(FileType::Symlink) => ftype::SYMLINK,
            Some(FileType::Special) => ftype::SPECIAL,
            None => ftype::UNKNOWN,
        };
        w.u32(e.ino.0).u8(ty).blob(&e.name);
    }
    Ok(Frame::ok(w.finish()))
}
