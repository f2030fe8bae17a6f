//! The memory servers' wire protocol (smdish and smuf share it).
//!
//! Frames are conclave-rpc's (8-byte header: `u32` BE code, `u32` BE body
//! length). Opcode numbers are the original's; the fork-era opcodes
//! (NEW_FDTABLE, FORK, CHILD_ATTACH) and MMAP are answered `ENOSYS`: each
//! process connects on its own, and `OPEN` carries the segment size. One
//! file per operation, each with the request and reply encodings used by
//! both ends.

pub mod close;
pub mod lock;
pub mod open;
pub mod peek;
pub mod renew;
pub mod unlock;

/// Original opcode 0: replaced by one connection per process.
pub const NEW_FDTABLE: u32 = 0;
/// Original opcode 1: replaced by one connection per process.
pub const FORK: u32 = 1;
/// Original opcode 2: replaced by one connection per process.
pub const CHILD_ATTACH: u32 = 2;
/// Opens (creating on first open) a memory file: see [`open`].
pub const OPEN: u32 = 3;
/// Closes a handle, releasing its lock: see [`close`].
pub const CLOSE: u32 = 4;
/// Waits for the lock and returns the canonical segment: see [`lock`].
pub const LOCK: u32 = 5;
/// Publishes (optionally) and releases: see [`unlock`].
pub const UNLOCK: u32 = 6;
/// Original opcode 7: folded into [`OPEN`].
pub const MMAP: u32 = 7;
/// The last published state without the lock (conclave extension): see [`peek`].
pub const PEEK: u32 = 8;
/// Extends the holder's lock lease (conclave extension): see [`renew`].
pub const RENEW: u32 = 9;

/// Length of an smuf data key.
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let o = open::Request {
            name: "zone",
            size: 4096,
        };
        assert_eq!(open::Request::decode(&o.encode()).unwrap(), o);
        let mut r = open::Reply {
            handle: 3,
            size: 4096,
            lease_ms: 1000,
            host_id: None,
        };
        assert_eq!(open::Reply::decode(&r.encode()).unwrap(), r);
        r.host_id = Some([7; 16]);
        assert_eq!(open::Reply::decode(&r.encode()).unwrap(), r);
        let mut short = r.encode();
        short.pop();
        assert_eq!(open::Reply::decode(&short), Err(conclave_rpc::Status::EPROTO));
        let l = lock::Request {
            handle: 3,
            timeout_ms: 250,
        };
        assert_eq!(lock::Request::decode(&l.encode()).unwrap(), l);
        for reply in [
            lock::Reply::Dish {
                version: 9,
                data: bytes::Bytes::from_static(b"abc"),
            },
            lock::Reply::Uf {
                version: 9,
                read_key: [1; KEY_LEN],
                tag: [2; TAG_LEN],
                write_key: [3; KEY_LEN],
            },
        ] {
            assert!(lock::Reply::decode(&reply.encode(), 16) == Ok(reply));
        }
        let p = peek::Request {
            handle: 3,
            known_version: 41,
        };
        assert_eq!(peek::Request::decode(&p.encode()).unwrap(), p);
        for reply in [
            peek::Reply::Dish {
                version: 9,
                data: None,
            },
            peek::Reply::Dish {
                version: 9,
                data: Some(bytes::Bytes::from_static(b"abc")),
            },
            peek::Reply::Uf {
                version: 9,
                read_key: [1; KEY_LEN],
                tag: [2; TAG_LEN],
            },
        ] {
            assert!(peek::Reply::decode(&reply.encode(), 16) == Ok(reply));
        }
        assert_eq!(close::decode(&close::encode(7)).unwrap(), 7);
        assert_eq!(renew::decode(&renew::encode(7)).unwrap(), 7);
        assert_eq!(renew::decode_reply(&renew::encode_reply(1000)).unwrap(), 1000);
        assert_eq!(
            open::decode_existing_size(&open::encode_existing_size(8)),
            Some(8)
        );
    }

    proptest! {
        // The fuzz target of every decoder fed by another process or a host
        // file: random bytes never panic.
        #[test]
        fn decoders_survive_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = open::Request::decode(&buf);
            let _ = open::Reply::decode(&buf);
            let _ = lock::Request::decode(&buf);
            let _ = lock::Reply::decode(&buf, 64);
            let _ = peek::Request::decode(&buf);
            let _ = peek::Reply::decode(&buf, 64);
            let _ = unlock::Request::decode(&buf, false, 64);
            let _ = unlock::Request::decode(&buf, true, 64);
            let _ = close::decode(&buf);
            let _ = renew::decode(&buf);
            let _ = renew::decode_reply(&buf);
            let _ = open::decode_existing_size(&buf);
            let _ = crate::smc::SegmentFile::from_bytes(&buf);
        }
    }
}
