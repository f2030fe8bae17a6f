//! The state file: the counter and root of the last commit (and the root
//! before it), MACed under the device's commit key, so a restart checks the
//! device against what the last commit sealed with no operator input.
//!
//! Two slots, chosen by the counter's parity and a sector apart, so a torn
//! write leaves the previous record readable; the valid one with the higher
//! counter wins. Slot layout (little-endian):
//! magic "CNCLSTAT" ‖ kind u8 ‖ blocks u64 ‖ counter u64 ‖ root [32] ‖
//! prev_root [32] ‖ HMAC(K_commit, "state" ‖ everything before) [32].
//! Roots are zero for devices without a tree.

use crate::keys::{ct_eq32, mac_parts, HmacSha256};
use crate::{BdError, DeviceKind};
use std::fs::File;
use std::os::unix::fs::FileExt;

const MAGIC: &[u8; 8] = b"CNCLSTAT";
const BODY: usize = 8 + 1 + 8 + 8 + 32 + 32;
const RECORD: usize = BODY + 32;
/// Bytes between the two slots (one sector each).
const SLOT_STRIDE: u64 = 512;
/// Length of a state file.
pub(crate) const FILE_LEN: u64 = 2 * SLOT_STRIDE;

/// What the MAC binds besides the record: the device it belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    pub kind: DeviceKind,
    pub blocks: u64,
}

/// One commit as the state file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateRecord {
    /// Commits made so far (0: none since the state file was made).
    pub counter: u64,
    /// The device's root after that commit.
    pub root: [u8; 32],
    /// The root before it: an operator who missed the last printed root
    /// (crash between sealing and printing) still starts with the one before.
    pub prev_root: [u8; 32],
}

fn mac_of(mac: &HmacSha256, body: &[u8]) -> [u8; 32] {
    mac_parts(mac, &[b"state", body])
}

/// Encodes a record for its slot.
pub(crate) fn encode(mac: &HmacSha256, bind: Binding, rec: &StateRecord) -> [u8; RECORD] {
    let mut v = [0u8; RECORD];
    v[..8].copy_from_slice(MAGIC);
    v[8] = bind.kind.code();
    v[9..17].copy_from_slice(&bind.blocks.to_le_bytes());
    v[17..25].copy_from_slice(&rec.counter.to_le_bytes());
    v[25..57].copy_from_slice(&rec.root);
    v[57..89].copy_from_slice(&rec.prev_root);
    let m = mac_of(mac, &v[..BODY]);
    v[BODY..].copy_from_slice(&m);
    v
}

/// Decodes a slot; `None` if it is not a valid record of this device.
pub(crate) fn decode(mac: &HmacSha256, bind: Binding, slot: &[u8]) -> Option<StateRecord> {
    if slot.len() < RECORD || &slot[..8] != MAGIC {
        return None;
    }
    let stored: [u8; 32] = slot[BODY..RECORD].try_into().ok()?;
    if !ct_eq32(&mac_of(mac, &slot[..BODY]), &stored) {
        return None;
    }
    if slot[8] != bind.kind.code() || u64::from_le_bytes(slot[9..17].try_into().ok()?) != bind.blocks {
        return None;
    }
    Some(StateRecord {
        counter: u64::from_le_bytes(slot[17..25].try_into().ok()?),
        root: slot[25..57].try_into().ok()?,
        prev_root: slot[57..89].try_into().ok()?,
    })
}

/// The newest valid record of `file`; an error naming `what` if none is.
pub(crate) fn read(file: &File, mac: &HmacSha256, bind: Binding, what: &str) -> Result<StateRecord, BdError> {
    let mut raw = vec![0u8; FILE_LEN as usize];
    let n = read_up_to(file, &mut raw)?;
    raw.truncate(n);
    raw.chunks(SLOT_STRIDE as usize)
        .filter_map(|s| decode(mac, bind, s))
        .max_by_key(|r| r.counter)
        .ok_or_else(|| {
            BdError::format(
                what,
                "no valid state record (corrupt, of another device, or written under another secret)",
            )
        })
}

fn read_up_to(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes `rec` into its slot and syncs it.
pub(crate) fn write(file: &File, mac: &HmacSha256, bind: Binding, rec: &StateRecord) -> Result<(), BdError> {
    let off = (rec.counter % 2) * SLOT_STRIDE;
    file.write_all_at(&encode(mac, bind, rec), off)?;
    file.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKeys;

    fn bind() -> Binding {
        Binding {
            kind: DeviceKind::Vericrypt,
            blocks: 99,
        }
    }

    #[test]
    fn round_trips_and_refuses_any_flipped_bit_or_other_device() {
        let keys = DeviceKeys::from_master(&[1; 32], &[2; 16]);
        let rec = StateRecord {
            counter: 7,
            root: [3; 32],
            prev_root: [4; 32],
        };
        let v = encode(&keys.commit.mac, bind(), &rec);
        assert_eq!(decode(&keys.commit.mac, bind(), &v), Some(rec));
        for bit in 0..RECORD * 8 {
            let mut c = v;
            c[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&keys.commit.mac, bind(), &c), None, "bit {bit}");
        }
        let other = Binding {
            blocks: 100,
            ..bind()
        };
        assert_eq!(decode(&keys.commit.mac, other, &v), None);
        let other_key = DeviceKeys::from_master(&[9; 32], &[2; 16]);
        assert_eq!(decode(&other_key.commit.mac, bind(), &v), None);
    }

    #[test]
    fn newest_slot_wins_and_a_torn_slot_leaves_the_other() {
        let keys = DeviceKeys::from_master(&[1; 32], &[2; 16]);
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("s"))
            .unwrap();
        let mac = &keys.commit.mac;
        let r = |counter| StateRecord {
            counter,
            root: [counter as u8; 32],
            prev_root: [0; 32],
        };
        assert!(read(&f, mac, bind(), "s").is_err(), "an empty file has no record");
        write(&f, mac, bind(), &r(4)).unwrap();
        write(&f, mac, bind(), &r(5)).unwrap();
        assert_eq!(read(&f, mac, bind(), "s").unwrap().counter, 5);
        // tear the slot of counter 6 half-way: counter 5 stays
        let half = &encode(mac, bind(), &r(6))[..50];
        f.write_all_at(half, 0).unwrap();
        assert_eq!(read(&f, mac, bind(), "s").unwrap().counter, 5);
    }
}
