//! `UNLOCK` (6): `u32 handle, u8 publish` then, if `publish` is 1:
//! * smdish: `blob segment` (exactly the segment size) — the new canonical copy;
//! * smuf: `[16] tag` — the tag of the host file `<stem>.new` the holder
//!   sealed with its write key; the server renames it over `<stem>.seg`.
//!
//! Everything is checked before the lock is released: a malformed or
//! mis-sized payload leaves the caller holding the lock. Errors: `EBADF`,
//! `EPERM` (this handle does not hold the lock), `EINVAL` (wrong segment
//! length), `EPROTO`, `EIO` (smuf: the sealed file could not be installed).

use super::TAG_LEN;
use conclave_rpc::{BodyReader, BodyWriter, Status};

/// What an unlock publishes.
#[derive(Debug, PartialEq, Eq)]
pub enum Publish<'a> {
    /// Nothing: the canonical copy stays as it was.
    Nothing,
    /// smdish: the new segment.
    Data(&'a [u8]),
    /// smuf: the tag of the freshly sealed host file.
    Tag([u8; TAG_LEN]),
}

/// An UNLOCK request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The handle from OPEN.
    pub handle: u32,
    /// What to publish.
    pub publish: Publish<'a>,
}

impl<'a> Request<'a> {
    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::new();
        w.u32(self.handle);
        match self.publish {
            Publish::Nothing => {
                w.u8(0);
            }
            Publish::Data(d) => {
                w.u8(1).blob(d);
            }
            Publish::Tag(t) => {
                w.u8(1).raw(&t);
            }
        }
        w.finish()
    }

    /// Parses a body for a server of the given kind (`sealed` = smuf).
    pub fn decode(body: &'a [u8], sealed: bool, max_segment: usize) -> Result<Self, Status> {
        let mut r = BodyReader::new(body);
        let handle = r.u32()?;
        let publish = match (r.u8()?, sealed) {
            (0, _) => Publish::Nothing,
            (1, false) => Publish::Data(r.blob(max_segment).map_err(|_| Status::EINVAL)?),
            (1, true) => Publish::Tag(r.bytes(TAG_LEN)?.try_into().map_err(|_| Status::EPROTO)?),
            _ => return Err(Status::EPROTO),
        };
        r.finish()?;
        Ok(Request { handle, publish })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_round_trips_and_rejects_garbage() {
        let data = [7u8; 10];
        for (req, sealed) in [
            (
                Request {
                    handle: 3,
                    publish: Publish::Nothing,
                },
                false,
            ),
            (
                Request {
                    handle: 3,
                    publish: Publish::Data(&data),
                },
                false,
            ),
            (
                Request {
                    handle: 3,
                    publish: Publish::Tag([9; 16]),
                },
                true,
            ),
        ] {
            let body = req.encode();
            assert_eq!(Request::decode(&body, sealed, 1024).unwrap(), req);
            for cut in 0..body.len() {
                assert!(Request::decode(&body[..cut], sealed, 1024).is_err());
            }
        }
        assert_eq!(Request::decode(&[0, 0, 0, 1, 2], false, 10), Err(Status::EPROTO));
    }
}
