//! Attribute operations by path: STAT, LSTAT, CHMOD, CHOWN, UTIMES,
//! TRUNCATE, STATFS.

use super::{path, stat_of, status, FileServer};
use conclave_rpc::{BodyReader, BodyWriter, Frame, Status};

fn empty() -> Frame {
    Frame::ok(Vec::new())
}

/// STAT / LSTAT: `str path` → Stat.
pub fn stat(s: &FileServer, r: &mut BodyReader<'_>, follow: bool) -> Result<Frame, Status> {
    let p = path::read(r)?;
    r.finish()?;
    let fs = s.read();
    let md = if follow {
        fs.stat_path(&p)
    } else {
        fs.lstat_path(&p)
    }
    .map_err(status)?;
    let mut w = BodyWriter::with_capacity(80);
    stat_of(&md).encode(&mut w);
    Ok(Frame::ok(w.finish()))
}

/// CHMOD: `str path, u32 mode`.
pub fn chmod(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let mode = r.u32()?;
    r.finish()?;
    let mut fs = s.write()?;
    let ino = fs.lookup(&p).map_err(status)?;
    fs.chmod(ino, (mode & 0o7777) as u16).map_err(status)?;
    Ok(empty())
}

/// CHOWN: `str path, u32 uid, u32 gid` (`u32::MAX` keeps the old value).
pub fn chown(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    r.finish()?;
    let keep = |v: u32| (v != u32::MAX).then_some(v);
    let mut fs = s.write()?;
    let ino = fs.lookup(&p).map_err(status)?;
    fs.chown(ino, keep(uid), keep(gid)).map_err(status)?;
    Ok(empty())
}

/// UTIMES: `str path, i64 atime, i64 mtime` (`i64::MIN` keeps the old value).
pub fn utimes(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let at = r.i64()?;
    let mt = r.i64()?;
    r.finish()?;
    // ext2 keeps 32-bit times
    let conv = |v: i64| -> Result<Option<u32>, Status> {
        match v {
            i64::MIN => Ok(None),
            v => u32::try_from(v).map(Some).map_err(|_| Status::EOVERFLOW),
        }
    };
    let (at, mt) = (conv(at)?, conv(mt)?);
    let mut fs = s.write()?;
    let ino = fs.lookup(&p).map_err(status)?;
    fs.utimes(ino, at, mt).map_err(status)?;
    Ok(empty())
}

/// TRUNCATE: `str path, u64 size`.
pub fn truncate(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let size = r.u64()?;
    r.finish()?;
    let mut fs = s.write()?;
    let ino = fs.lookup(&p).map_err(status)?;
    fs.truncate(ino, size).map_err(status)?;
    Ok(empty())
}

/// STATFS: → `u32 bsize, u64 blocks, u64 bfree, u64 files, u64 ffree`.
pub fn statfs(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    r.finish()?;
    let st = s.read().statfs();
    let mut w = BodyWriter::new();
    w.u32(st.block_size)
        .u64(st.blocks)
        .u64(st.free_blocks)
        .u64(st.inodes as u64)
        .u64(st.free_inodes as u64);
    Ok(Frame::ok(w.finish()))
}

/// READ_PATH: `str path, u64 offset, u32 count` → Stat, data. A directory
/// gets its Stat and no data.
pub fn read_path(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let off = r.u64()?;
    let count = r.u32()?;
    r.finish()?;
    if count as usize > crate::proto::MAX_IO {
        return Err(Status::E2BIG);
    }
    let fs = s.read();
    let ino = fs.lookup(&p).map_err(status)?;
    let md = fs.stat(ino).map_err(status)?;
    let mut w = BodyWriter::with_capacity(80 + count as usize);
    stat_of(&md).encode(&mut w);
    if md.file_type == conclave_ext2::FileType::File {
        let want = (count as u64).min(md.size.saturating_sub(off)) as usize;
        let mut buf = vec![0u8; want];
        let n = fs.read(ino, off, &mut buf).map_err(status)?;
        w.raw(&buf[..n]);
    }
    Ok(Frame::ok(w.finish()))
}
