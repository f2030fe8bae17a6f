//! `OPEN`: create or join a memory file (see [`crate::proto::open`]).

use super::{ClientConn, Content, MemFile, MemServer, ServerKind, MAX_HANDLES};
use crate::proto::open::{encode_existing_size, Reply, Request};
use crate::MAX_SEGMENT;
use conclave_rpc::{Frame, Status};
use std::collections::VecDeque;

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let req = Request::decode(body)?;
    if req.name.is_empty() || req.name.contains('\0') {
        return Err(Status::EINVAL);
    }
    if req.size > MAX_SEGMENT as u64 {
        return Err(Status::E2BIG);
    }
    if conn.handles.len() >= MAX_HANDLES {
        return Err(Status::EMFILE);
    }
    let handle = conn.next_handle;
    conn.next_handle = conn.next_handle.checked_add(1).ok_or(Status::EMFILE)?;
    let created = {
        let mut st = srv.state();
        match st.files.get_mut(req.name) {
            Some(f) if f.size != req.size => {
                return Ok(Frame::new(Status::EINVAL.0, encode_existing_size(f.size)));
            }
            Some(f) => {
                f.opens += 1;
                false
            }
            None => {
                st.next_uid += 1;
                let content = match srv.kind {
                    ServerKind::Smdish => Content::Dish(vec![0; req.size as usize]),
                    ServerKind::Smuf { .. } => Content::Uf {
                        key_grant: 0,
                        tag: [0; 16],
                        write_grant: 0,
                    },
                };
                let f = MemFile {
                    uid: st.next_uid,
                    size: req.size,
                    opens: 1,
                    holder: None,
                    waiters: VecDeque::new(),
                    version: 0,
                    content,
                };
                st.files.insert(req.name.to_string(), f);
                // Leftovers of a crashed server are never trusted.
                srv.remove_host_files(req.name);
                true
            }
        }
    };
    conn.handles.insert(handle, req.name.to_string());
    tracing::debug!(
        id = conn.id,
        handle,
        name = req.name,
        size = req.size,
        created,
        "open"
    );
    Ok(Frame::ok(
        Reply {
            handle,
            size: req.size,
        }
        .encode(),
    ))
}
