//! `CLOSE`, and the same cleanup when a connection ends.

use super::{ClientConn, Holder, MemServer};
use crate::proto::close::decode;
use conclave_rpc::{Frame, Status};

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let h = decode(body)?;
    let open = conn.handles.remove(&h).ok_or(Status::EBADF)?;
    close_handle(srv, (conn.id, h), &open.key);
    Ok(Frame::ok(Vec::new()))
}

/// Releases the lock if `who` holds it (publishing nothing) and forgets
/// the opener; the last one removes the memory file. `name` is its
/// [`super::file_key`].
pub(super) fn close_handle(srv: &MemServer, who: Holder, name: &str) {
    let removed = {
        let mut st = srv.state();
        let Some(f) = st.files.get_mut(name) else {
            return;
        };
        if f.holder == Some(who) {
            tracing::debug!(name, "lock released by close or disconnect");
            f.grant_next(srv.limits.lease);
        }
        f.waiters.retain(|w| w.who != who);
        f.broken.retain(|b| *b != who);
        f.opens -= 1;
        if f.opens == 0 {
            let size = f.size;
            if let Some(f) = st.files.remove(name) {
                st.used -= size;
                if let Some(u) = st.used_by.get_mut(&f.owner) {
                    *u -= size;
                    if *u == 0 {
                        st.used_by.remove(&f.owner);
                    }
                }
            }
            true
        } else {
            false
        }
    };
    if removed {
        srv.remove_host_files(name);
    }
}
