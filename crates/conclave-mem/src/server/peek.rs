//! `PEEK`: the last published version, without the lock. See
//! [`crate::proto::peek`].

use super::{ClientConn, Content, MemServer};
use crate::proto::peek::{Reply, Request};
use crate::segment_seal::smuf_grant_key;
use bytes::Bytes;
use conclave_rpc::{Frame, Status};

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let req = Request::decode(body)?;
    // Read-only and read-write handles alike.
    let name = &conn.handle(req.handle)?.key;
    let (uid, version, sealed) = {
        let st = srv.state();
        let f = st.files.get(name).ok_or(Status::EBADF)?;
        match &f.content {
            // The holder's unpublished changes live in its own copy, so the
            // canonical segment is always a published version.
            Content::Dish(d) => {
                let data =
                    (f.version != 0 && f.version != req.known_version).then(|| Bytes::copy_from_slice(d));
                return Ok(Frame::ok(
                    Reply::Dish {
                        version: f.version,
                        data,
                    }
                    .encode(),
                ));
            }
            Content::Uf { key_grant, tag, .. } => (f.uid, f.version, (*key_grant, *tag)),
        }
    };
    // Derived outside the state lock, like LOCK's keys.
    let (key_grant, tag) = sealed;
    let read_key = if version == 0 {
        [0; 32]
    } else {
        *smuf_grant_key(&srv.master, uid, key_grant)
    };
    Ok(Frame::ok(
        Reply::Uf {
            version,
            read_key,
            tag,
        }
        .encode(),
    ))
}
