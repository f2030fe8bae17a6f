//! `CLOSE` (4): `u32 handle` → empty.
//!
//! Releases the lock if this handle holds it (nothing is published) and
//! forgets the opener; the last close removes the memory file (and, for
//! smuf, its host files). Errors: `EBADF`.

use conclave_rpc::{BodyReader, Status};

/// The body of a CLOSE request.
pub fn encode(handle: u32) -> Vec<u8> {
    handle.to_be_bytes().to_vec()
}

/// Parses a CLOSE body.
pub fn decode(body: &[u8]) -> Result<u32, Status> {
    let mut r = BodyReader::new(body);
    let h = r.u32()?;
    r.finish()?;
    Ok(h)
}
