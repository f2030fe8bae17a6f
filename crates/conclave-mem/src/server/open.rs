//! `OPEN`: create or join a memory file (see [`crate::proto::open`]).

use super::{file_key, ClientConn, Content, MemFile, MemServer, OpenHandle, ServerKind, MAX_HANDLES};
use crate::proto::open::{encode_existing_size, Reply, Request};
use crate::MAX_SEGMENT;
use conclave_rpc::{Frame, Status};
use std::collections::VecDeque;
use std::time::Instant;

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let req = Request::decode(body)?;
    if req.name.is_empty() || req.name.contains('\0') {
        return Err(Status::EINVAL);
    }
    // Before anything that could tell whether the name exists.
    let Some(mode) = srv.grants.mode_for(&conn.identity, req.name) else {
        srv.refusals.refused(&conn.identity, "open", req.name);
        return Err(Status::EACCES);
    };
    let key = file_key(&conn.identity, req.name);
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
        match st.files.get_mut(&key) {
            Some(f) if f.size != req.size => {
                return Ok(Frame::new(Status::EINVAL.0, encode_existing_size(f.size)));
            }
            Some(f) => {
                f.opens += 1;
                false
            }
            None => {
                // Quotas count segment bytes at creation, so memory files
                // already open keep working when the server is full.
                let mine = st.used_by.get(&conn.identity).copied().unwrap_or(0);
                if mine + req.size > srv.limits.max_bytes_per_identity {
                    tracing::warn!(id = conn.id, identity = %conn.identity, name = req.name, size = req.size,
                        used = mine, quota = srv.limits.max_bytes_per_identity, "open refused: identity over its byte quota");
                    return Err(Status::EDQUOT);
                }
                if st.used + req.size > srv.limits.max_bytes {
                    tracing::warn!(
                        id = conn.id,
                        name = req.name,
                        size = req.size,
                        used = st.used,
                        quota = srv.limits.max_bytes,
                        "open refused: server over its byte quota"
                    );
                    return Err(Status::ENOSPC);
                }
                st.used += req.size;
                *st.used_by.entry(conn.identity.clone()).or_insert(0) += req.size;
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
                    owner: conn.identity.clone(),
                    opens: 1,
                    holder: None,
                    lease_until: Instant::now(),
                    broken: Vec::new(),
                    waiters: VecDeque::new(),
                    version: 0,
                    content,
                };
                st.files.insert(key.clone(), f);
                // Leftovers of a crashed server are never trusted.
                srv.remove_host_files(&key);
                true
            }
        }
    };
    let host_id = matches!(srv.kind, ServerKind::Smuf { .. }).then(|| crate::name::host_id(&key));
    tracing::debug!(id = conn.id, handle, key, size = req.size, created, ?mode, "open");
    conn.handles.insert(handle, OpenHandle { key, mode });
    Ok(Frame::ok(
        Reply {
            handle,
            size: req.size,
            lease_ms: super::renew::lease_ms(srv.limits.lease),
            host_id,
        }
        .encode(),
    ))
}
