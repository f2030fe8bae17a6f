//! Typed errors of the key store, the client and the keyless signer.

use conclave_rpc::{RpcError, Status, TlsError};
use std::path::PathBuf;

/// Why a key-server operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key name is not a plain name (`/`, `..`, or characters outside
    /// `[A-Za-z0-9._-]`), or is empty or too long.
    #[error("invalid key name {name:?}: {reason}")]
    BadName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key file could not be read or parsed (the reason never holds key bytes).
    #[error("cannot load key {path}: {reason}")]
    Load {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key of a type or size the key server does not serve.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// Reaching the key server failed (connect, TLS, broken stream).
    #[error("key server unreachable: {0}")]
    Rpc(#[from] RpcError),
    /// The key server answered with an error status.
    #[error("key server refused {op}: {status}")]
    Refused {
        /// The operation.
        op: &'static str,
        /// The status it returned.
        status: Status,
    },
    /// The key server's reply did not decode.
    #[error("malformed {op} reply from the key server")]
    Malformed {
        /// The operation.
        op: &'static str,
    },
    /// TLS credentials could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate's public key is not the key server's key of that name.
    #[error("certificate does not match key {name:?} on the key server: {reason}")]
    KeyMismatch {
        /// The key name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// Two endpoints of one key-server set hold different keys under one
    /// name: signatures would fail on one of them, so this refuses at start.
    #[error("key {name:?} differs between key servers {} and {}: every endpoint of a site must hold the same key", .endpoints[0], .endpoints[1])]
    EndpointsDisagree {
        /// The key name.
        name: String,
        /// The endpoint whose key was taken first, and the one whose key
        /// differs (boxed: keeps every `Result<_, KeysError>` small).
        endpoints: Box<[String; 2]>,
    },
    /// A handshake signing on the runtime thread was abandoned (its client
    /// left, it timed out, or the worker stops) while its signature was
    /// pending: the handshake is failed rather than left suspended.
    #[error("the handshake was abandoned while its signature was pending")]
    Abandoned,
    /// Reading a directory or file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

impl KeysError {
    /// The status of a refusal, if the key server sent one.
    pub fn status(&self) -> Option<Status> {
        match self {
            KeysError::Refused { status, .. } => Some(*status),
            KeysError::Rpc(e) => Some(e.status()),
            _ => None,
        }
    }
}
