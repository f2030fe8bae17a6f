//! Key derivation: a secret file through Argon2id into a master key, then one
//! subkey per purpose through HKDF-SHA256. Every key is zeroized on drop.

use crate::xts::Xts;
use crate::BdError;
use aes::cipher::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// A keyed HMAC-SHA256 state; cloned per message so the key schedule is paid once.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The largest secret file we read (a secret is a passphrase or a key, not a document).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Argon2id cost parameters, recorded in the header so a device opens with
/// the parameters it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The default for new devices: 64 MiB, 3 passes, 1 lane (RFC 9106's
    /// second recommendation), about 0.1-0.3 s per open on our machines.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// The cheapest parameters we accept (8 MiB, 1 pass): for tests only.
    pub const MIN: KdfParams = KdfParams {
        m_kib: 8 * 1024,
        t: 1,
        p: 1,
    };
    /// The most we accept from a header, so a forged header cannot make an
    /// open allocate unbounded memory or run for minutes.
    const MAX: KdfParams = KdfParams {
        m_kib: 1024 * 1024,
        t: 16,
        p: 8,
    };

    /// Refuses parameters outside [MIN, MAX].
    pub fn check(&self) -> Result<(), String> {
        let (lo, hi) = (Self::MIN, Self::MAX);
        if !(lo.m_kib..=hi.m_kib).contains(&self.m_kib)
            || !(lo.t..=hi.t).contains(&self.t)
            || !(lo.p..=hi.p).contains(&self.p)
        {
            return Err(format!(
                "argon2id parameters m={}KiB t={} p={} are outside m={}..={}KiB t={}..={} p={}..={}",
                self.m_kib, self.t, self.p, lo.m_kib, hi.m_kib, lo.t, hi.t, lo.p, hi.p
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Reads a secret file, refusing one that group or others may read
/// (`conclave_secret`). Errors name the file, never its content.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, BdError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| BdError::Config(format!("cannot read secret file {}: {e}", path.display())))?;
    if meta.len() > MAX_SECRET_BYTES {
        return Err(BdError::Config(format!(
            "secret file {} is {} bytes; at most {MAX_SECRET_BYTES} allowed",
            path.display(),
            meta.len()
        )));
    }
    let secret = conclave_secret::read_private(path).map_err(|e| BdError::Config(e.to_string()))?;
    if secret.is_empty() {
        return Err(BdError::Config(format!(
            "secret file {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// The subkeys of one device. The AES key schedules zeroize themselves
/// (aes `zeroize` feature); the HMAC states through hmac's `zeroize`.
pub(crate) struct DeviceKeys {
    /// AES-256-XTS over data blocks (two 256-bit keys).
    pub xts: Xts,
    /// Leaves and inner nodes of the Merkle tree.
    pub node_mac: HmacSha256,
    /// The seal (root, counter, journal) in the tree file.
    pub seal_mac: HmacSha256,
    /// The header of the image or tree file.
    pub header_mac: HmacSha256,
    /// Stored in the header so a wrong secret is detected at open.
    pub key_check: [u8; 32],
    /// The redo log and state file of atomic commits (`commit.rs`).
    pub commit: CommitKeys,
}

/// Keys of the commit layer: a MAC over redo-log records and state-file
/// records, and (for encrypting devices) an XTS key so the log never holds
/// plaintext. Subkeys of their own, so a log record can never pass for a
/// seal, a header or a data block.
pub(crate) struct CommitKeys {
    pub mac: HmacSha256,
    pub xts: Option<Xts>,
}

impl CommitKeys {
    /// Keys for the std device, which has no secret: the "MAC" is a checksum
    /// under a public key (it catches torn writes, not forgery).
    pub fn public() -> CommitKeys {
        CommitKeys {
            mac: <HmacSha256 as KeyInit>::new_from_slice(b"conclave-bd v1 commit (std, no secret)")
                .expect("HMAC takes any key length"),
            xts: None,
        }
    }
}

const INFO_XTS: &[u8] = b"conclave-bd v1 aes-256-xts";
const INFO_NODE: &[u8] = b"conclave-bd v1 merkle node";
const INFO_SEAL: &[u8] = b"conclave-bd v1 seal";
const INFO_HEADER: &[u8] = b"conclave-bd v1 header";
const INFO_CHECK: &[u8] = b"conclave-bd v1 key check";
const INFO_COMMIT: &[u8] = b"conclave-bd v1 commit";
const INFO_COMMIT_XTS: &[u8] = b"conclave-bd v1 commit aes-256-xts";

impl DeviceKeys {
    /// Argon2id(secret, salt) → master; HKDF(master, salt, purpose) → subkeys.
    pub fn derive(secret: &[u8], salt: &[u8; 16], params: &KdfParams) -> Result<DeviceKeys, BdError> {
        params.check().map_err(BdError::Config)?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
                .map_err(|e| BdError::Config(format!("argon2id parameters: {e}")))?,
        );
        let mut master = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(secret, salt, &mut master[..])
            .map_err(|e| BdError::Config(format!("argon2id: {e}")))?;
        Ok(Self::from_master(&master, salt))
    }

    /// Subkeys from a master key (the Argon2id output).
    pub fn from_master(master: &[u8; 32], salt: &[u8; 16]) -> DeviceKeys {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), master);
        let mut xts_key = Zeroizing::new([0u8; 64]);
        let mut k = Zeroizing::new([0u8; 32]);
        // Lengths are fixed and far below HKDF's 255*32 limit.
        let expand = |info: &[u8], out: &mut [u8]| hk.expand(info, out).expect("HKDF output length is valid");
        expand(INFO_XTS, &mut xts_key[..]);
        let xts = Xts::new(&xts_key);
        expand(INFO_COMMIT_XTS, &mut xts_key[..]);
        let commit_xts = Xts::new(&xts_key);
        let mut mac = |info: &[u8]| {
            expand(info, &mut k[..]);
            <HmacSha256 as KeyInit>::new_from_slice(&k[..]).expect("HMAC takes any key length")
        };
        let node_mac = mac(INFO_NODE);
        let seal_mac = mac(INFO_SEAL);
        let header_mac = mac(INFO_HEADER);
        let commit_mac = mac(INFO_COMMIT);
        let mut key_check = [0u8; 32];
        expand(INFO_CHECK, &mut key_check);
        k.zeroize();
        DeviceKeys {
            xts,
            node_mac,
            seal_mac,
            header_mac,
            key_check,
            commit: CommitKeys {
                mac: commit_mac,
                xts: Some(commit_xts),
            },
        }
    }

    /// Constant-time comparison with a stored key-check value.
    pub fn check_matches(&self, stored: &[u8; 32]) -> bool {
        bool::from(self.key_check.ct_eq(stored))
    }
}

/// HMAC of the concatenation of `parts` under a keyed state.
pub(crate) fn mac_parts(key: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    let mut m = key.clone();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time equality of two MACs.
pub(crate) fn ct_eq32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

/// 16 random bytes from the OS.
pub(crate) fn random_salt() -> Result<[u8; 16], BdError> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| BdError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_differ_by_purpose_and_salt() {
        let a = DeviceKeys::from_master(&[1; 32], &[2; 16]);
        let b = DeviceKeys::from_master(&[1; 32], &[3; 16]);
        assert_ne!(a.key_check, b.key_check);
        let x = mac_parts(&a.node_mac, &[b"x"]);
        assert_ne!(x, mac_parts(&a.seal_mac, &[b"x"]));
        assert_ne!(x, mac_parts(&a.header_mac, &[b"x"]));
        assert_ne!(x, mac_parts(&b.node_mac, &[b"x"]));
    }

    #[test]
    fn argon2id_is_deterministic_and_secret_dependent() {
        let a = DeviceKeys::derive(b"s1", &[9; 16], &KdfParams::MIN).unwrap();
        let b = DeviceKeys::derive(b"s1", &[9; 16], &KdfParams::MIN).unwrap();
        let c = DeviceKeys::derive(b"s2", &[9; 16], &KdfParams::MIN).unwrap();
        assert!(a.check_matches(&b.key_check));
        assert!(!a.check_matches(&c.key_check));
    }

    #[test]
    fn refuses_out_of_range_kdf_parameters() {
        let p = KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        assert!(DeviceKeys::derive(b"s", &[0; 16], &p).is_err());
        let p = KdfParams {
            m_kib: 8192,
            t: 99,
            p: 1,
        };
        assert!(p.check().is_err());
    }
}
