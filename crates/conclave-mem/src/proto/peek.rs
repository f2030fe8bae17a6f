//! `PEEK` (8, a conclave extension): `u32 handle, u64 known_version`.
//!
//! The last published state of a memory file, without taking or waiting for
//! the lock: a snapshot that is consistent (it is exactly some published
//! version) but may be stale by the time the reply arrives. A client uses it
//! for optimistic read-only sections — run the section on the snapshot and,
//! only if it turns out to want a change, take the lock and run it again —
//! so a read-mostly segment (the edge's cache index) costs one round trip
//! per use instead of two, and never queues behind a holder.
//!
//! Reply, after a kind byte:
//! * smdish (kind 0): `u64 version, u8 included` then, if `included` is 1,
//!   `blob segment`. The server leaves the segment out when `version` equals
//!   the caller's `known_version` (the caller has that version already), or
//!   is 0 (all zeros).
//! * smuf (kind 1): `u64 version, [32] read_key, [16] tag` — what LOCK would
//!   give to open the host file `<stem>.seg`, but no write key. A publish
//!   racing the caller's read of the host file shows up as a tag mismatch;
//!   the caller then falls back to LOCK, which is never wrong.
//!
//! Errors: `EBADF`.

use super::{KEY_LEN, TAG_LEN};
use bytes::Bytes;
use conclave_rpc::{BodyReader, BodyWriter, Status};

/// A PEEK request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The handle from OPEN.
    pub handle: u32,
    /// The version whose contents the caller already has (0: none).
    pub known_version: u64,
}

impl Request {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::with_capacity(12);
        w.u32(self.handle).u64(self.known_version);
        w.finish()
    }

    /// Parses a body.
    pub fn decode(body: &[u8]) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let handle = r.u32()?;
        let known_version = r.u64()?;
        r.finish()?;
        Ok(Request {
            handle,
            known_version,
        })
    }
}

/// A successful PEEK reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// smdish: the published version and, unless the caller has it, its segment.
    Dish {
        /// Number of publishes so far.
        version: u64,
        /// The segment, when not left out.
        data: Option<Bytes>,
    },
    /// smuf: the key and trusted tag of the host file's current contents.
    Uf {
        /// Number of publishes so far.
        version: u64,
        /// Key of the host file's current contents (zero at version 0).
        read_key: [u8; KEY_LEN],
        /// Trusted tag of the current contents.
        tag: [u8; TAG_LEN],
    },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or segment contents.
        match self {
            Reply::Dish { version, data } => write!(
                f,
                "Dish {{ version: {version}, len: {:?} }}",
                data.as_ref().map(|d| d.len())
            ),
            Reply::Uf { version, .. } => write!(f, "Uf {{ version: {version}, .. }}"),
        }
    }
}

impl Reply {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Dish { version, data } => {
                let mut w = BodyWriter::with_capacity(data.as_ref().map_or(0, |d| d.len()) + 14);
                w.u8(0).u64(*version);
                match data {
                    Some(d) => w.u8(1).blob(d),
                    None => w.u8(0),
                };
                w.finish()
            }
            Reply::Uf {
                version,
                read_key,
                tag,
            } => {
                let mut w = BodyWriter::with_capacity(9 + KEY_LEN + TAG_LEN);
                w.u8(1).u64(*version).raw(read_key).raw(tag);
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
                data: match r.u8()? {
                    0 => None,
                    1 => Some(Bytes::copy_from_slice(r.blob(max_segment)?)),
                    _ => return Err(Status::EPROTO),
                },
            },
            1 => Reply::Uf {
                version,
                read_key: r.bytes(KEY_LEN)?.try_into().map_err(|_| Status::EPROTO)?,
                tag: r.bytes(TAG_LEN)?.try_into().map_err(|_| Status::EPROTO)?,
            },
            _ => return Err(Status::EPROTO),
        };
        r.finish()?;
        Ok(reply)
    }
}
