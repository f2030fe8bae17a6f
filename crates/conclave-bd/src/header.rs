//! The versioned header: the first 4096 bytes of a crypt or vericrypt image
//! and of every tree file. It carries the geometry and the KDF salt and
//! parameters, a key-check value (wrong secret → clear error) and a MAC
//! under the header subkey (tampering → clear error).
//!
//! Layout (little-endian):
//! ```text
//!   0  magic "CNCLVBD1"        8
//!   8  version u16 = 1          2
//!  10  role u8 (1 image, 2 tree)
//!  11  kind u8 (2 crypt, 3 verity, 4 vericrypt)
//!  12  data blocks u64
//!  20  tree leaves u64 (power of two; 0 in an image header)
//!  28  journal slot bytes u32 (0 in an image header)
//!  32  kdf u8 (0 none: keys come from the image header; 1 argon2id), 3 zero bytes
//!  36  m_kib u32, 40 t u32, 44 p u32
//!  48  salt [16]
//!  64  key-check value [32]   (zero when kdf = 0)
//!  96  HMAC-SHA256(header subkey, bytes 0..96) [32]
//! 128  zeros up to 4096
//! ```

use crate::keys::{ct_eq32, mac_parts, DeviceKeys, KdfParams};
use crate::{BdError, DeviceKind, BLOCK_SIZE};

const MAGIC: &[u8; 8] = b"CNCLVBD1";
const VERSION: u16 = 1;
const MAC_OFFSET: usize = 96;
/// Bytes the header occupies at the start of its file.
pub(crate) const HEADER_BYTES: u64 = BLOCK_SIZE as u64;

/// Which file a header heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Image = 1,
    Tree = 2,
}

/// Where the keys of a device come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kdf {
    /// This header carries no KDF: the keys come from the image header.
    None,
    /// Argon2id with these parameters over the secret file and `salt`.
    Argon2id(KdfParams),
}

/// A parsed header (its MAC not yet checked until [`Header::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub role: Role,
    pub kind: DeviceKind,
    pub blocks: u64,
    pub leaves: u64,
    pub journal_slot_bytes: u32,
    pub kdf: Kdf,
    pub salt: [u8; 16],
    pub key_check: [u8; 32],
}

impl Header {
    /// Encodes the header into a 4096-byte block, MACed under `keys`.
    pub fn to_block(&self, keys: &DeviceKeys) -> Box<[u8; BLOCK_SIZE]> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        b[0..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10] = self.role as u8;
        b[11] = self.kind.code();
        b[12..20].copy_from_slice(&self.blocks.to_le_bytes());
        b[20..28].copy_from_slice(&self.leaves.to_le_bytes());
        b[28..32].copy_from_slice(&self.journal_slot_bytes.to_le_bytes());
        if let Kdf::Argon2id(p) = self.kdf {
            b[32] = 1;
            b[36..40].copy_from_slice(&p.m_kib.to_le_bytes());
            b[40..44].copy_from_slice(&p.t.to_le_bytes());
            b[44..48].copy_from_slice(&p.p.to_le_bytes());
        }
        b[48..64].copy_from_slice(&self.salt);
        b[64..96].copy_from_slice(&self.key_check);
        let mac = mac_parts(&keys.header_mac, &[&b[..MAC_OFFSET]]);
        b[MAC_OFFSET..MAC_OFFSET + 32].copy_from_slice(&mac);
        b
    }

    /// Parses every field, refusing anything malformed; `what` names the file in errors.
    pub fn parse(b: &[u8; BLOCK_SIZE], what: &str) -> Result<Header, BdError> {
        let bad = |r: &str| BdError::format(what, format!("bad header: {r}"));
        if &b[0..8] != MAGIC {
            return Err(bad("not a conclave-bd file (magic differs)"));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        let role = match b[10] {
            1 => Role::Image,
            2 => Role::Tree,
            r => return Err(bad(&format!("unknown role {r}"))),
        };
        let kind =
            DeviceKind::from_code(b[11]).ok_or_else(|| bad(&format!("unknown device kind {}", b[11])))?;
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let kdf = match b[32] {
            0 => Kdf::None,
            1 => Kdf::Argon2id(KdfParams {
                m_kib: u32_at(36),
                t: u32_at(40),
                p: u32_at(44),
            }),
            k => return Err(bad(&format!("unknown kdf {k}"))),
        };
        let h = Header {
            role,
            kind,
            blocks: u64_at(12),
            leaves: u64_at(20),
            journal_slot_bytes: u32_at(28),
            kdf,
            salt: b[48..64].try_into().expect("16 bytes"),
            key_check: b[64..96].try_into().expect("32 bytes"),
        };
        if h.blocks == 0 || h.blocks > 1 << 40 {
            return Err(bad(&format!("block count {} out of range", h.blocks)));
        }
        if role == Role::Tree {
            if !h.leaves.is_power_of_two() || h.leaves < h.blocks || h.leaves > 2 * h.blocks {
                return Err(bad(&format!("{} leaves for {} blocks", h.leaves, h.blocks)));
            }
            if h.journal_slot_bytes < 4096
                || !h.journal_slot_bytes.is_multiple_of(4096)
                || h.journal_slot_bytes > 1 << 26
            {
                return Err(bad(&format!("journal slot of {} bytes", h.journal_slot_bytes)));
            }
        }
        Ok(h)
    }

    /// Checks the key-check value (if this header has a KDF) and the MAC.
    pub fn verify(&self, b: &[u8; BLOCK_SIZE], keys: &DeviceKeys, what: &str) -> Result<(), BdError> {
        if matches!(self.kdf, Kdf::Argon2id(_)) && !keys.check_matches(&self.key_check) {
            return Err(BdError::WrongSecret {
                what: what.to_string(),
            });
        }
        let mac = mac_parts(&keys.header_mac, &[&b[..MAC_OFFSET]]);
        let stored: [u8; 32] = b[MAC_OFFSET..MAC_OFFSET + 32].try_into().expect("32 bytes");
        if !ct_eq32(&mac, &stored) {
            return Err(BdError::format(
                what,
                "header MAC does not verify (tampered, or tree of another image)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            role: Role::Tree,
            kind: DeviceKind::Verity,
            blocks: 100,
            leaves: 128,
            journal_slot_bytes: 8192,
            kdf: Kdf::Argon2id(KdfParams::MIN),
            salt: [5; 16],
            key_check: [0; 32],
        }
    }

    #[test]
    fn round_trips_and_detects_any_flipped_bit() {
        let keys = DeviceKeys::from_master(&[7; 32], &[5; 16]);
        let mut h = sample();
        h.key_check = keys.key_check;
        let b = h.to_block(&keys);
        let p = Header::parse(&b, "t").unwrap();
        assert_eq!(p, h);
        p.verify(&b, &keys, "t").unwrap();
        for bit in (0..128 * 8).step_by(3) {
            let mut c = b.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            let ok = Header::parse(&c, "t").and_then(|p| p.verify(&c, &keys, "t"));
            assert!(ok.is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..2000 {
            let mut b = Box::new([0u8; BLOCK_SIZE]);
            for byte in b[..128].iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            if i % 2 == 0 {
                b[..8].copy_from_slice(MAGIC);
                b[8..10].copy_from_slice(&VERSION.to_le_bytes());
                b[10] = 1 + (i % 3) as u8;
                b[11] = (i % 5) as u8;
                b[32] = (i % 3) as u8;
            }
            let _ = Header::parse(&b, "fuzz");
        }
    }

    #[test]
    fn wrong_keys_are_reported_as_wrong_secret() {
        let keys = DeviceKeys::from_master(&[7; 32], &[5; 16]);
        let other = DeviceKeys::from_master(&[8; 32], &[5; 16]);
        let mut h = sample();
        h.key_check = keys.key_check;
        let b = h.to_block(&keys);
        let p = Header::parse(&b, "t").unwrap();
        assert!(matches!(
            p.verify(&b, &other, "t"),
            Err(BdError::WrongSecret { .. })
        ));
    }
}
