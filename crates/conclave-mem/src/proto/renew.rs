//! `RENEW` (9, a conclave extension): `u32 handle` → `u32 lease_ms`.
//!
//! Every LOCK is a lease: the server gives the holder `lease_ms` (the
//! server's `--lease`, also sent in the OPEN reply) and breaks the lock
//! when it runs out, so a holder that hangs or never unlocks cannot stall
//! everyone else. A holder that works longer sends RENEW before the lease
//! ends; the reply is the fresh lease, counted from the server's receipt.
//!
//! Errors: `EBADF`; `EPERM` (this handle does not hold the lock);
//! `ETIMEDOUT` (the lease already ran out and the lock was broken — the same
//! status a late UNLOCK gets; the holder's changes are lost and it must
//! LOCK again).

use conclave_rpc::{BodyReader, Status};

/// The body of a RENEW request.
pub fn encode(handle: u32) -> Vec<u8> {
    handle.to_be_bytes().to_vec()
}

/// Parses a RENEW body.
pub fn decode(body: &[u8]) -> Result<u32, Status> {
    let mut r = BodyReader::new(body);
    let h = r.u32()?;
    r.finish()?;
    Ok(h)
}

/// The body of a successful RENEW reply: the new lease.
pub fn encode_reply(lease_ms: u32) -> Vec<u8> {
    lease_ms.to_be_bytes().to_vec()
}

/// Parses a RENEW reply.
pub fn decode_reply(body: &[u8]) -> Result<u32, Status> {
    decode(body)
}
