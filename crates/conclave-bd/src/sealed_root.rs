//! The sealed root: the seal, a record in one of two journal slots of the tree file that
//! carries the flush counter, the root, and the tree nodes that flush
//! changed, all under one MAC. A flush writes the record into the slot of
//! its counter's parity and syncs it before it touches the node array, so
//! a crash leaves either the previous seal (node array untouched since) or
//! the new one (its entries replayed at the next open).
//!
//! Layout (little-endian): magic "CNCLSEAL" ‖ counter u64 ‖ root [32] ‖
//! n u32 ‖ n × (node u64 ‖ value [32]) ‖ HMAC(K_seal, kind ‖ blocks ‖ leaves ‖
//! everything before the MAC) [32]. The rest of the slot is zero.

use crate::keys::{ct_eq32, mac_parts, HmacSha256};
use crate::merkle::Node;
use crate::{BdError, DeviceKind, SealedRoot};

const MAGIC: &[u8; 8] = b"CNCLSEAL";
const FIXED: usize = 8 + 8 + 32 + 4;
const ENTRY: usize = 8 + 32;

/// What the seal MAC binds besides the record: the tree it belongs to.
pub(crate) struct SealContext<'a> {
    pub mac: &'a HmacSha256,
    pub kind: DeviceKind,
    pub blocks: u64,
    pub leaves: u64,
}

/// How many node entries fit a slot of `slot_bytes`.
pub(crate) fn capacity(slot_bytes: u32) -> usize {
    (slot_bytes as usize - FIXED - 32) / ENTRY
}

impl SealContext<'_> {
    fn mac_of(&self, body: &[u8]) -> [u8; 32] {
        mac_parts(
            self.mac,
            &[
                &[self.kind.code()],
                &self.blocks.to_le_bytes(),
                &self.leaves.to_le_bytes(),
                body,
            ],
        )
    }

    /// Encodes a seal record (not padded to the slot).
    pub fn encode(&self, root: &SealedRoot, entries: &[(u64, Node)]) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED + entries.len() * ENTRY + 32);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&root.counter.to_le_bytes());
        v.extend_from_slice(&root.root);
        v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (n, val) in entries {
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(val);
        }
        let mac = self.mac_of(&v);
        v.extend_from_slice(&mac);
        v
    }

    /// Decodes a slot; `None` if it holds no valid record (never written,
    /// torn, tampered, or of another tree).
    pub fn decode(&self, slot: &[u8]) -> Option<(SealedRoot, Vec<(u64, Node)>)> {
        if slot.len() < FIXED + 32 || &slot[..8] != MAGIC {
            return None;
        }
        let counter = u64::from_le_bytes(slot[8..16].try_into().ok()?);
        let root: Node = slot[16..48].try_into().ok()?;
        let n = u32::from_le_bytes(slot[48..52].try_into().ok()?) as usize;
        let end = n.checked_mul(ENTRY)?.checked_add(FIXED)?;
        if end + 32 > slot.len() {
            return None;
        }
        let stored: [u8; 32] = slot[end..end + 32].try_into().ok()?;
        if !ct_eq32(&self.mac_of(&slot[..end]), &stored) {
            return None;
        }
        let mut entries = Vec::with_capacity(n);
        for e in slot[FIXED..end].chunks_exact(ENTRY) {
            let node = u64::from_le_bytes(e[..8].try_into().ok()?);
            if node == 0 || node >= 2 * self.leaves {
                return None;
            }
            entries.push((node, e[8..].try_into().ok()?));
        }
        Some((SealedRoot { counter, root }, entries))
    }
}

/// Picks the valid seal with the highest counter from the two slots.
pub(crate) fn newest(
    ctx: &SealContext<'_>,
    slots: [&[u8]; 2],
    what: &str,
) -> Result<(SealedRoot, Vec<(u64, Node)>), BdError> {
    slots
        .into_iter()
        .filter_map(|s| ctx.decode(s))
        .max_by_key(|(r, _)| r.counter)
        .ok_or_else(|| BdError::NoValidSeal {
            what: what.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKeys;

    #[test]
    fn round_trips_and_refuses_flips_and_other_trees() {
        let keys = DeviceKeys::from_master(&[3; 32], &[4; 16]);
        let ctx = SealContext {
            mac: &keys.seal_mac,
            kind: DeviceKind::Verity,
            blocks: 10,
            leaves: 16,
        };
        let root = SealedRoot {
            counter: 7,
            root: [9; 32],
        };
        let rec = ctx.encode(&root, &[(3, [1; 32]), (17, [2; 32])]);
        let mut slot = rec.clone();
        slot.resize(4096, 0);
        let (r, e) = ctx.decode(&slot).unwrap();
        assert_eq!(r, root);
        assert_eq!(e, vec![(3, [1; 32]), (17, [2; 32])]);
        for bit in 0..rec.len() * 8 {
            let mut s = slot.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            assert!(ctx.decode(&s).is_none(), "flip of bit {bit} accepted");
        }
        let other = SealContext { blocks: 11, ..ctx };
        assert!(other.decode(&slot).is_none());
    }

    #[test]
    fn random_slots_never_panic_the_decoder() {
        let keys = DeviceKeys::from_master(&[3; 32], &[4; 16]);
        let ctx = SealContext {
            mac: &keys.seal_mac,
            kind: DeviceKind::Verity,
            blocks: 10,
            leaves: 16,
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600usize {
            let mut s: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len >= 8 {
                s[..8].copy_from_slice(MAGIC);
            }
            assert!(ctx.decode(&s).is_none());
        }
    }

    #[test]
    fn newest_valid_slot_wins() {
        let keys = DeviceKeys::from_master(&[3; 32], &[4; 16]);
        let ctx = SealContext {
            mac: &keys.seal_mac,
            kind: DeviceKind::Verity,
            blocks: 10,
            leaves: 16,
        };
        let a = ctx.encode(
            &SealedRoot {
                counter: 4,
                root: [1; 32],
            },
            &[],
        );
        let b = ctx.encode(
            &SealedRoot {
                counter: 5,
                root: [2; 32],
            },
            &[],
        );
        assert_eq!(newest(&ctx, [&a, &b], "t").unwrap().0.counter, 5);
        let torn = &b[..b.len() - 1];
        assert_eq!(newest(&ctx, [&a, torn], "t").unwrap().0.counter, 4);
        assert!(matches!(
            newest(&ctx, [&[0; 64], &[]], "t"),
            Err(BdError::NoValidSeal { .. })
        ));
    }
}
