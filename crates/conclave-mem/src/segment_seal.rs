//! The AEAD layer of the host-stored kinds: AES-256-GCM over the whole
//! segment, with associated data that binds the memory file's name, its
//! version and its size, so a host file copied from another memory file,
//! another size or an older version fails to open.

use crate::proto::{KEY_LEN, TAG_LEN};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of a GCM nonce.
pub const NONCE_LEN: usize = 12;

/// The associated data of a sealed segment: a domain label (`smuf` or
/// `smc`), then the name, the version and the size.
pub fn aad(domain: &[u8], name: &str, version: u64, size: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(domain.len() + name.len() + 24);
    v.extend_from_slice(domain);
    v.push(0);
    v.extend_from_slice(&(name.len() as u32).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&size.to_be_bytes());
    v
}

/// HKDF-SHA256 of `ikm` into a 32-byte key for `info`.
pub fn derive_key(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let info: Vec<u8> = info.concat();
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(&info, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// The smuf data key of one lock grant: each grant of each memory file
/// instance gets its own key, so a key seals at most one segment version and
/// the fixed nonce is never reused under one key.
pub fn smuf_grant_key(master: &[u8; KEY_LEN], file_uid: u64, grant: u64) -> Zeroizing<[u8; KEY_LEN]> {
    derive_key(
        b"conclave-smuf-v1",
        master,
        &[b"grant key", &file_uid.to_be_bytes(), &grant.to_be_bytes()],
    )
}

/// Encrypts `buf` in place and returns the tag.
pub fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let gcm = Aes256Gcm::new_from_slice(key).expect("key length is 32");
    let tag = gcm
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
        .expect("segment sizes are far below the GCM length limit");
    tag.into()
}

/// The sealed bytes did not authenticate under this key, nonce and AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed segment failed authentication")]
pub struct Unauthentic;

/// Decrypts `buf` in place if `tag` authenticates it; on failure `buf`
/// holds no plaintext (it is zeroed).
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Unauthentic> {
    let gcm = Aes256Gcm::new_from_slice(key).expect("key length is 32");
    let tag = Tag::from(*tag);
    match gcm.decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &tag) {
        Ok(()) => Ok(()),
        Err(_) => {
            buf.fill(0);
            Err(Unauthentic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_segment_opens_only_with_same_name_version_and_size() {
        let key = smuf_grant_key(&[1; 32], 1, 7);
        let nonce = [0u8; NONCE_LEN];
        let mut buf = b"counter=41".to_vec();
        let tag = seal(&key, &nonce, &aad(b"smuf", "a", 3, 10), &mut buf);
        assert_ne!(&buf, b"counter=41");
        for bad in [
            aad(b"smuf", "b", 3, 10),
            aad(b"smuf", "a", 2, 10),
            aad(b"smuf", "a", 3, 11),
        ] {
            let mut c = buf.clone();
            assert!(open(&key, &nonce, &bad, &mut c, &tag).is_err());
            assert!(c.iter().all(|&b| b == 0));
        }
        let mut flipped = buf.clone();
        flipped[0] ^= 1;
        assert!(open(&key, &nonce, &aad(b"smuf", "a", 3, 10), &mut flipped, &tag).is_err());
        open(&key, &nonce, &aad(b"smuf", "a", 3, 10), &mut buf, &tag).unwrap();
        assert_eq!(&buf, b"counter=41");
    }

    #[test]
    fn grant_keys_differ_per_grant_and_file() {
        let m = [9u8; 32];
        assert_ne!(*smuf_grant_key(&m, 1, 1), *smuf_grant_key(&m, 1, 2));
        assert_ne!(*smuf_grant_key(&m, 1, 1), *smuf_grant_key(&m, 2, 1));
        assert_eq!(*smuf_grant_key(&m, 1, 1), *smuf_grant_key(&m, 1, 1));
    }
}
