//! Why the provider refused or failed. Each variant maps to an OpenSSL
//! error reason of the `conclave` library, so NGINX's error log names the
//! cause (`SSL_do_handshake() failed (SSL: error:...:conclave::key server
//! unreachable:...)`). Messages hold endpoints, key names and paths, never
//! key bytes.

use conclave_keys::KeysError;

/// A provider failure.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The key reference file is ours but does not parse.
    #[error("bad key reference: {0}")]
    BadReference(String),
    /// The mTLS identity named by the reference could not be loaded.
    #[error("cannot load the identity in {dir}: {reason}")]
    Identity {
        /// The identity directory.
        dir: String,
        /// What went wrong.
        reason: String,
    },
    /// The key server did not answer (connect, TLS, timeout, broken stream).
    #[error("SIGN with key {name:?} at {endpoint}: {source}")]
    Unreachable {
        /// The key server.
        endpoint: String,
        /// The key.
        name: String,
        /// Cause.
        source: KeysError,
    },
    /// The key server answered with a refusal (EPERM, EACCES, ENOENT, ...).
    #[error("SIGN with key {name:?} at {endpoint}: {source}")]
    Refused {
        /// The key server.
        endpoint: String,
        /// The key.
        name: String,
        /// Cause.
        source: KeysError,
    },
    /// A digest, padding or salt length no TLS signature scheme of this key uses.
    #[error("unsupported signature parameters: {0}")]
    Unsupported(String),
    /// The caller's signature buffer is smaller than the signature.
    #[error("signature buffer too small ({have} bytes, need {need})")]
    BufferTooSmall {
        /// Its size.
        have: usize,
        /// The signature's size.
        need: usize,
    },
}

impl ProviderError {
    /// The OpenSSL reason code (see [`REASONS`]).
    pub fn reason(&self) -> i32 {
        match self {
            ProviderError::BadReference(_) => 1,
            ProviderError::Identity { .. } => 2,
            ProviderError::Unreachable { .. } => 3,
            ProviderError::Refused { .. } => 4,
            ProviderError::Unsupported(_) => 5,
            ProviderError::BufferTooSmall { .. } => 6,
        }
    }

    /// Sorts a key-server error: no answer vs an answer that refuses.
    pub fn from_sign(endpoint: String, name: String, source: KeysError) -> ProviderError {
        match source {
            KeysError::Refused { .. } => ProviderError::Refused {
                endpoint,
                name,
                source,
            },
            _ => ProviderError::Unreachable {
                endpoint,
                name,
                source,
            },
        }
    }
}

/// The reason strings registered with OpenSSL, by code.
pub const REASONS: &[(i32, &str)] = &[
    (1, "bad key reference"),
    (2, "cannot load key server identity"),
    (3, "key server unreachable"),
    (4, "key server refused"),
    (5, "unsupported signature parameters"),
    (6, "signature buffer too small"),
];
