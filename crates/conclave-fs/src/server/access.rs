//! The grant check in front of every request: which paths a request names
//! and what it does to them, decided before the operation runs (so the
//! operations themselves stay as they were). See `crate::grants`.

use super::{path, FileServer};
use crate::grants::{Access, Grants};
use crate::proto::{self, flags::*, MAX_PATH};
use conclave_rpc::{BodyReader, Frame, Identity, Status};

/// `Ok` when `who` may make request `req`, else `EACCES` (or `EEXIST` for a
/// MKDIR of an existing directory above one of its grants, so `mkdir -p`
/// down to a granted path works). A malformed body is left to the
/// operation, which answers it with its own status.
pub(crate) fn authorize(s: &FileServer, g: &Grants, who: &Identity, req: &Frame) -> Result<(), Status> {
    let mut r = BodyReader::new(&req.body);
    let need = |p: &str, want: Access| match g.access(who, p) {
        Some(have) if have >= want => Ok(()),
        _ => Err(Status::EACCES),
    };
    // The body was too short or not a path: the operation reports it.
    let Ok(checks) = requests(req.code, &mut r) else {
        return Ok(());
    };
    match checks {
        Needs::Nothing => Ok(()),
        Needs::AnyGrant => match g.has_any(who) {
            true => Ok(()),
            false => Err(Status::EACCES),
        },
        Needs::Path(p, Access::ReadOnly) if is_stat(req.code) && g.is_ancestor_of_grant(who, &p) => Ok(()),
        Needs::Path(p, want) => need(&p, want).map_err(|e| {
            if req.code == proto::MKDIR && g.is_ancestor_of_grant(who, &p) && s.read().lookup(&p).is_ok() {
                Status::EEXIST
            } else {
                e
            }
        }),
        Needs::Two(a, b) => need(&a, Access::ReadWrite).and_then(|_| need(&b, Access::ReadWrite)),
        // A symlink's target is resolved at each use, possibly through
        // other links, so no prefix of it can be checked once: only an
        // identity that may write everywhere may make one.
        Needs::Symlink(link) => need(&link, Access::ReadWrite).and_then(|_| need("/", Access::ReadWrite)),
    }
}

fn is_stat(code: u32) -> bool {
    matches!(code, proto::STAT | proto::LSTAT)
}

enum Needs {
    /// Descriptor operations: the descriptor was checked when opened (and
    /// writes need a descriptor opened for writing).
    Nothing,
    /// No path (STATFS, FSYNC of everything): any grant at all.
    AnyGrant,
    Path(String, Access),
    /// RENAME, LINK: write on both names.
    Two(String, String),
    Symlink(String),
}

fn requests(code: u32, r: &mut BodyReader<'_>) -> Result<Needs, Status> {
    use Access::*;
    Ok(match code {
        proto::OPEN => {
            let p = path::read(r)?;
            let fl = r.i32()?;
            let writes = fl & O_ACCMODE != O_RDONLY || fl & (O_CREAT | O_TRUNC | O_APPEND) != 0;
            Needs::Path(p, if writes { ReadWrite } else { ReadOnly })
        }
        proto::OPENDIR | proto::STAT | proto::LSTAT | proto::READ_PATH | proto::READLINK => {
            Needs::Path(path::read(r)?, ReadOnly)
        }
        proto::CHMOD
        | proto::CHOWN
        | proto::UTIMES
        | proto::TRUNCATE
        | proto::UNLINK
        | proto::RMDIR
        | proto::MKDIR => Needs::Path(path::read(r)?, ReadWrite),
        proto::RENAME | proto::LINK => Needs::Two(path::read(r)?, path::read(r)?),
        proto::SYMLINK => {
            let _target = r.name(MAX_PATH)?;
            Needs::Symlink(path::read(r)?)
        }
        proto::STATFS => Needs::AnyGrant,
        proto::FSYNC if r.remaining() == 0 => Needs::AnyGrant,
        _ => Needs::Nothing,
    })
}
