//! Operations on names: UNLINK, RMDIR, MKDIR, RENAME, LINK, SYMLINK, READLINK.

use super::{path, status, FileServer};
use crate::proto::MAX_PATH;
use conclave_rpc::{BodyReader, BodyWriter, Frame, Status};

fn empty() -> Frame {
    Frame::ok(Vec::new())
}

/// UNLINK: `str path`.
pub fn unlink(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    r.finish()?;
    let mut fs = s.write()?;
    let (parent, name) = fs.lookup_parent(&p).map_err(status)?;
    fs.unlink(parent, &name).map_err(status)?;
    Ok(empty())
}

/// RMDIR: `str path` (non-empty → `ENOTEMPTY`).
pub fn rmdir(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    r.finish()?;
    let mut fs = s.write()?;
    let (parent, name) = fs.lookup_parent(&p).map_err(status)?;
    fs.rmdir(parent, &name).map_err(status)?;
    Ok(empty())
}

/// MKDIR: `str path, u32 mode`.
pub fn mkdir(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    let mode = r.u32()?;
    r.finish()?;
    let mut fs = s.write()?;
    let (parent, name) = fs.lookup_parent(&p).map_err(status)?;
    fs.mkdir(parent, &name, (mode & 0o7777) as u16).map_err(status)?;
    Ok(empty())
}

/// RENAME: `str from, str to` (replaces a compatible target).
pub fn rename(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let from = path::read(r)?;
    let to = path::read(r)?;
    r.finish()?;
    let mut fs = s.write()?;
    let (sp, sn) = fs.lookup_parent(&from).map_err(status)?;
    let (dp, dn) = fs.lookup_parent(&to).map_err(status)?;
    fs.rename(sp, &sn, dp, &dn).map_err(status)?;
    Ok(empty())
}

/// LINK: `str existing, str new`.
pub fn link(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let old = path::read(r)?;
    let new = path::read(r)?;
    r.finish()?;
    let mut fs = s.write()?;
    let ino = fs.lookup_nofollow(&old).map_err(status)?;
    let (dp, dn) = fs.lookup_parent(&new).map_err(status)?;
    fs.link(ino, dp, &dn).map_err(status)?;
    Ok(empty())
}

/// SYMLINK: `str target, str linkpath`. The target is stored as given: it is
/// resolved later inside the image, so it cannot point outside it.
pub fn symlink(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let target = r.name(MAX_PATH)?.to_string();
    let link = path::read(r)?;
    r.finish()?;
    let mut fs = s.write()?;
    let (dp, dn) = fs.lookup_parent(&link).map_err(status)?;
    fs.symlink(dp, &dn, target.as_bytes()).map_err(status)?;
    Ok(empty())
}

/// READLINK: `str path` → `str target`.
pub fn readlink(s: &FileServer, r: &mut BodyReader<'_>) -> Result<Frame, Status> {
    let p = path::read(r)?;
    r.finish()?;
    let fs = s.read();
    let ino = fs.lookup_nofollow(&p).map_err(status)?;
    let target = fs.readlink(ino).map_err(status)?;
    let mut w = BodyWriter::with_capacity(target.len() + 4);
    w.blob(&target);
    Ok(Frame::ok(w.finish()))
}
