//! Key names: the only way to designate a key. A name is a capability looked
//! up by exact match in the store, never a path (the original joined client
//! paths onto its key directory, so `../` reached any PEM on the host).

use crate::error::KeysError;
use std::fmt;

/// Longest accepted key name, in bytes.
pub const MAX_NAME: usize = 64;

/// A validated key name: 1..=64 bytes of `[A-Za-z0-9._-]`, not starting with
/// `.` and containing no `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    /// Checks `s` and wraps it.
    pub fn new(s: &str) -> Result<KeyName, KeysError> {
        let bad = |reason| {
            Err(KeysError::BadName {
                name: s.chars().take(MAX_NAME + 8).collect(),
                reason,
            })
        };
        if s.is_empty() {
            return bad("empty");
        }
        if s.len() > MAX_NAME {
            return bad("longer than 64 bytes");
        }
        if s.contains('/') || s.contains('\\') {
            return bad("contains a path separator");
        }
        if s.contains("..") {
            return bad("contains `..`");
        }
        if s.starts_with('.') {
            return bad("starts with `.`");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return bad("only A-Z, a-z, 0-9, `.`, `_` and `-` are allowed");
        }
        Ok(KeyName(s.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Lets the store look a wire name up without building a KeyName first.
impl std::borrow::Borrow<str> for KeyName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for KeyName {
    type Err = KeysError;
    fn from_str(s: &str) -> Result<KeyName, KeysError> {
        KeyName::new(s)
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["server", "site-1.example_com", "a", "RSA2048"] {
            assert_eq!(KeyName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_path_like_and_odd_names() {
        for bad in [
            "",
            ".",
            "..",
            "../server",
            "a/b",
            "/etc/ssl/server",
            "a\\b",
            ".hidden",
            "a..b",
            "sp ace",
            "nul\0",
            "ünï",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(KeyName::new(bad), Err(KeysError::BadName { .. })),
                "{bad:?}"
            );
        }
    }
}
