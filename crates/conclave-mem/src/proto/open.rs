//! `OPEN` (3): `str name, u64 size` → `u32 handle, u64 size, u32 lease_ms`
//! and, from smuf, `[16] host_id`: the host files of the memory file are
//! `hex(host_id).seg`/`.new` (the server names them, from the opener's
//! tenant and the name, so tenants never share a host file).
//!
//! The name is in the opener's tenant namespace. Errors: `EACCES` (no grant
//! of the server lets the opener's identity use the name),
//! `ENAMETOOLONG` (name over 255 bytes),
//! `EINVAL` with body `u64 existing_size` (the size disagrees with the
//! existing memory file's), `E2BIG` (size over the segment limit),
//! `EMFILE` (too many handles on this connection), `EDQUOT` (creating it
//! would put the caller's identity over its byte quota), `ENOSPC` (it would
//! put the server over its total byte quota). `lease_ms` is the server's
//! lock lease: a holder must RENEW (or UNLOCK) within it, see
//! [`super::renew`]. Creates the memory file on its first open (size 0 = a
//! pure lock) and counts an opener otherwise.

use conclave_rpc::{BodyReader, BodyWriter, Status};

/// An OPEN request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The memory file's name.
    pub name: &'a str,
    /// Its segment size in bytes.
    pub size: u64,
}

impl<'a> Request<'a> {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::with_capacity(self.name.len() + 12);
        w.str(self.name).u64(self.size);
        w.finish()
    }

    /// Parses a body.
    pub fn decode(body: &'a [u8]) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let name = r.name(crate::MAX_NAME)?;
        let size = r.u64()?;
        r.finish()?;
        Ok(Request { name, size })
    }
}

/// A successful OPEN reply.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The handle for later requests on this connection.
    pub handle: u32,
    /// The segment size.
    pub size: u64,
    /// The lease of every LOCK granted on this server, in milliseconds.
    pub lease_ms: u32,
    /// smuf: names the host files (see the module doc).
    pub host_id: Option<[u8; 16]>,
}

impl Reply {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::with_capacity(32);
        w.u32(self.handle).u64(self.size).u32(self.lease_ms);
        if let Some(id) = &self.host_id {
            w.raw(id);
        }
        w.finish()
    }

    /// Parses a body.
    pub fn decode(body: &[u8]) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let handle = r.u32()?;
        let size = r.u64()?;
        let lease_ms = r.u32()?;
        let host_id = match r.remaining() {
            0 => None,
            _ => Some(r.bytes(16)?.try_into().map_err(|_| Status::EPROTO)?),
        };
        r.finish()?;
        Ok(Reply {
            handle,
            size,
            lease_ms,
            host_id,
        })
    }
}

/// The body of the `EINVAL` reply to a size disagreement.
pub fn encode_existing_size(size: u64) -> Vec<u8> {
    size.to_be_bytes().to_vec()
}

/// The existing size carried by an `EINVAL` reply, if any.
pub fn decode_existing_size(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.try_into().ok()?))
}
