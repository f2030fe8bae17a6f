//! Memory-file names and the host file names derived from them.

use crate::{MemError, MAX_NAME};
use sha2::{Digest, Sha256};

/// Checks a name: 1 to [`MAX_NAME`] bytes of UTF-8, no NUL. Any other byte
/// is fine because names never become paths (see [`host_stem`]).
pub fn validate(name: &str) -> Result<(), MemError> {
    if name.is_empty() {
        return Err(MemError::BadName("the name is empty".into()));
    }
    if name.len() > MAX_NAME {
        return Err(MemError::NameTooLong {
            len: name.len(),
            max: MAX_NAME,
        });
    }
    if name.contains('\0') {
        return Err(MemError::BadName("the name contains a NUL byte".into()));
    }
    Ok(())
}

/// The stem of a memory file's host files: 32 hex digits of SHA-256 of the
/// name (smc) or of the memory server's `tenant/name` key (smuf, whose
/// server sends it in the OPEN reply). Hashing keeps `..`, `/` and long
/// names out of host paths, and the file suffixes (`.seg`, `.new`, `.lock`)
/// within NAME_MAX.
pub fn host_stem(name: &str) -> String {
    hex::encode(host_id(name))
}

/// The 16 bytes [`host_stem`] writes in hex.
pub fn host_id(name: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"conclave-mem-name\0");
    h.update(name.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize()[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_nul_names() {
        assert!(matches!(validate(""), Err(MemError::BadName(_))));
        assert!(matches!(
            validate(&"x".repeat(256)),
            Err(MemError::NameTooLong { len: 256, max: 255 })
        ));
        assert!(validate(&"x".repeat(255)).is_ok());
        assert!(matches!(validate("a\0b"), Err(MemError::BadName(_))));
        assert!(validate("../../etc/passwd").is_ok());
    }

    #[test]
    fn host_stem_is_fixed_length_hex_and_distinct() {
        let a = host_stem("../../etc/passwd");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, host_stem("../../etc/passwe"));
    }
}
