//! `RENEW`: extend the holder's lease. See [`crate::proto::renew`].

use super::{ClientConn, MemServer};
use crate::proto::renew::{decode, encode_reply};
use conclave_rpc::{Frame, Status};
use std::time::Instant;

pub(super) fn handle(srv: &MemServer, conn: &mut ClientConn, body: &[u8]) -> Result<Frame, Status> {
    let h = decode(body)?;
    let name = &conn.handle(h)?.key;
    let lease = srv.limits.lease;
    let mut st = srv.state();
    let f = st.files.get_mut(name).ok_or(Status::EBADF)?;
    f.check_holder(name, (conn.id, h), lease)?;
    f.lease_until = Instant::now() + lease;
    Ok(Frame::ok(encode_reply(lease_ms(lease))))
}

/// A lease in whole milliseconds for the wire (at least 1).
pub(super) fn lease_ms(lease: std::time::Duration) -> u32 {
    lease.as_millis().clamp(1, u32::MAX as u128) as u32
}
