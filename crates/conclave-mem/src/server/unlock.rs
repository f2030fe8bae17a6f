//! `UNLOCK`: check the caller holds the lock and the payload is right,
//! then publish and hand the lock on. See [`crate::proto::unlock`].

use super::{ClientConn, Content, MemServer, ServerKind};
use crate::grant::Mode;
use crate::proto::unlock::{Publish, Request};
use conclave_rpc::{Frame, Status};

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let sealed = matches!(srv.kind, ServerKind::Smuf { .. });
    let req = Request::decode(body, sealed, crate::MAX_SEGMENT)?;
    let open = conn.handle(req.handle)?;
    let (name, mode) = (&open.key, open.mode);
    let me = (conn.id, req.handle);
    let mut st = srv.state();
    let f = st.files.get_mut(name).ok_or(Status::EBADF)?;
    // A holder whose lease the server broke gets ETIMEDOUT and publishes
    // nothing: someone else may have the lock (and newer contents) by now.
    if let Err(s) = f.check_holder(name, me, srv.limits.lease) {
        if s == Status::EPERM {
            tracing::warn!(id = conn.id, name = %name, "unlock by a client that does not hold the lock");
        } else {
            tracing::warn!(id = conn.id, name = %name, "late unlock after the lease was broken: nothing published");
        }
        return Err(s);
    }
    // A reader's publish is refused and the lock released with nothing
    // published, so a read-only identity can neither write nor keep the lock.
    if mode == Mode::Ro && !matches!(req.publish, Publish::Nothing) {
        srv.refusals.refused(&conn.identity, "publish", name);
        f.grant_next(srv.limits.lease);
        return Err(Status::EACCES);
    }
    // Validate and publish before releasing: a bad request keeps the lock.
    match (req.publish, &mut f.content) {
        (Publish::Nothing, _) => {}
        (Publish::Data(d), Content::Dish(seg)) => {
            if d.len() != seg.len() {
                return Err(Status::EINVAL);
            }
            seg.copy_from_slice(d);
            f.version += 1;
        }
        (
            Publish::Tag(t),
            Content::Uf {
                key_grant,
                tag,
                write_grant,
            },
        ) => {
            let (Some(new), Some(seg)) = (srv.host_path(name, "new"), srv.host_path(name, "seg")) else {
                return Err(Status::EIO);
            };
            if let Err(e) = std::fs::rename(&new, &seg) {
                tracing::warn!(name = %name, "cannot install the sealed segment: {e}");
                return Err(Status::EIO);
            }
            *key_grant = *write_grant;
            *tag = t;
            f.version += 1;
        }
        _ => return Err(Status::EPROTO),
    }
    f.grant_next(srv.limits.lease);
    Ok(Frame::ok(Vec::new()))
}
