//! `LOCK` (5): `u32 handle, u32 timeout_ms` (0 = wait as long as it takes).
//!
//! The request waits in a FIFO queue inside the server until the lock is
//! granted (no `EAGAIN`, no polling). Reply, after a kind byte:
//! * smdish (kind 0): `u64 version, blob segment` — the canonical copy;
//! * smuf (kind 1): `u64 version, [32] read_key, [16] tag, [32] write_key` —
//!   the single-use key and trusted tag of the sealed host file at
//!   `version` (all zero at version 0: the segment is still all zeros), and
//!   a fresh single-use key for the version this holder may publish.
//!
//! Errors: `EBADF`, `ETIMEDOUT` (not granted in time), `EDEADLK` (this handle
//! already holds it), `EBUSY` (the server is shutting down).

use super::{KEY_LEN, TAG_LEN};
use bytes::Bytes;
use conclave_rpc::{BodyReader, BodyWriter, Status};

/// A LOCK request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The handle from OPEN.
    pub handle: u32,
    /// Give up after this many milliseconds; 0 waits forever.
    pub timeout_ms: u32,
}

impl Request {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::with_capacity(8);
        w.u32(self.handle).u32(self.timeout_ms);
        w.finish()
    }

    /// Parses a body.
    pub fn decode(body: &[u8]) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let handle = r.u32()?;
        let timeout_ms = r.u32()?;
        r.finish()?;
        Ok(Request { handle, timeout_ms })
    }
}

/// A successful LOCK reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// smdish: the canonical segment.
    Dish {
        /// Number of publishes so far.
        version: u64,
        /// The segment.
        data: Bytes,
    },
    /// smuf: keys to open the sealed host file and to seal the next version.
    Uf {
        /// Number of publishes so far.
        version: u64,
        /// Key of the host file's current contents.
        read_key: [u8; KEY_LEN],
        /// Trusted tag of the current contents.
        tag: [u8; TAG_LEN],
        /// Single-use key for sealing `version + 1`.
        write_key: [u8; KEY_LEN],
    },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or segment contents.
        match self {
            Reply::Dish { version, data } => write!(f, "Dish {{ version: {version}, len: {} }}", data.len()),
            Reply::Uf { version, .. } => write!(f, "Uf {{ version: {version}, .. }}"),
        }
    }
}

impl Reply {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Dish { version, data } => {
                let mut w = BodyWriter::with_capacity(data.len() + 13);
                w.u8(0).u64(*version).blob(data);
                w.finish()
            }
            Reply::Uf {
                version,
                read_key,
                tag,
                write_key,
            } => {
                let mut w = BodyWriter::with_capacity(9 + 2 * KEY_LEN + TAG_LEN);
                w.u8(1).u64(*version).raw(read_key).raw(tag).raw(write_key);
                w.finish()
            }
        }
    }

    /// Parses a body; `max_segment` bounds the smdish data.
    pub fn decode(body: &[u8], max_segment: usize) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let kind = r.u8()?;
        let version = r.u64()?;
        let reply = match kind {
            0 => Reply::Dish {
                version,
                data: Bytes::copy_from_slice(r.blob(max_segment)?),
            },
            1 => Reply::Uf {
                version,
                read_key: r.bytes(KEY_LEN)?.try_into().map_err(|_| Status::EPROTO)?,
                tag: r.bytes(TAG_LEN)?.try_into().map_err(|_| Status::EPROTO)?,
                write_key: r.bytes(KEY_LEN)?.try_into().map_err(|_| Status::EPROTO)?,
            },
            _ => return Err(Status::EPROTO),
        };
        r.finish()?;
        Ok(reply)
    }
}
