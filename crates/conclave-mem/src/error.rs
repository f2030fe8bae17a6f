//! What can go wrong with a memory file, in words that name the problem.

use conclave_rpc::{RpcError, Status};
use std::path::PathBuf;

/// A memory-file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The name is empty, too long, or holds a NUL byte.
    #[error("invalid memory file name: {0}")]
    BadName(String),
    /// The name is over [`crate::MAX_NAME`] bytes.
    #[error("memory file name is {len} bytes; the limit is {max} bytes")]
    NameTooLong {
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The memory file exists with another segment size.
    #[error(
        "segment size {requested} for {name:?} disagrees with the existing memory file's {existing} bytes"
    )]
    SizeMismatch {
        /// The memory file.
        name: String,
        /// Size asked for.
        requested: u64,
        /// Size it has.
        existing: u64,
    },
    /// The segment is larger than [`crate::MAX_SEGMENT`].
    #[error("segment size {requested} is over the limit of {max} bytes")]
    TooLarge {
        /// Size asked for.
        requested: u64,
        /// The limit.
        max: u64,
    },
    /// An unlock by a client that does not hold the lock.
    #[error("unlock of {0:?} refused: this client does not hold its lock")]
    NotHolder(String),
    /// The lock was not granted within the timeout.
    #[error("lock of {name:?} not granted within {ms} ms")]
    Timeout {
        /// The memory file.
        name: String,
        /// The timeout.
        ms: u64,
    },
    /// The server broke this holder's lock lease (it neither renewed nor
    /// unlocked within the lease): nothing was published, and someone else
    /// may hold the lock now. Lock again and redo the work.
    #[error("lock lease of {name:?} ran out ({lease_ms} ms without renewal): the server broke the lock and nothing was published")]
    LeaseExpired {
        /// The memory file.
        name: String,
        /// The server's lease.
        lease_ms: u64,
    },
    /// Creating the memory file would put this client's identity over its
    /// byte quota on the server (`EDQUOT`).
    #[error("memory file {name:?} of {requested} bytes refused: this identity is over its byte quota on the memory server (--max-bytes-per-identity)")]
    OverQuota {
        /// The memory file.
        name: String,
        /// Its segment size.
        requested: u64,
    },
    /// Creating the memory file would put the server over its total byte
    /// quota (`ENOSPC`).
    #[error("memory file {name:?} of {requested} bytes refused: the memory server is full (--max-bytes)")]
    NoSpace {
        /// The memory file.
        name: String,
        /// Its segment size.
        requested: u64,
    },
    /// No grant of the memory server lets this client's identity do this
    /// with the name (`EACCES`): open it at all, or (read-only) publish.
    #[error("{op} of {name:?} refused: no grant of the memory server lets this identity do it (EACCES; see --grant in docs/mem.md)")]
    Denied {
        /// The operation.
        op: &'static str,
        /// The memory file.
        name: String,
    },
    /// A second lock by the client that already holds it.
    #[error("lock of {0:?} refused: this client already holds it")]
    AlreadyHeld(String),
    /// The sealed segment failed authentication: changed, replayed or
    /// swapped by the host (or written with another key).
    #[error("segment of {name:?} failed authentication at version {version}: the host file was modified, replaced by an older copy, or sealed under another key")]
    Tampered {
        /// The memory file.
        name: String,
        /// The version the trusted state expected.
        version: u64,
    },
    /// A host file has the wrong shape (length, header).
    #[error("host file {path}: {reason}")]
    BadHostFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server answered an operation with an error status.
    #[error("{op} of {name:?} failed: server replied {status}")]
    Server {
        /// The operation.
        op: &'static str,
        /// The memory file.
        name: String,
        /// The reply status.
        status: Status,
    },
    /// The server's reply could not be decoded.
    #[error("malformed {op} reply from the memory server")]
    BadReply {
        /// The operation.
        op: &'static str,
    },
    /// The connection to the server failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A host file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The spec string is not a memory store.
    #[error("invalid memory spec {spec:?}: {reason}")]
    Spec {
        /// The input.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// Credentials or the secret file are missing or unusable.
    #[error("{0}")]
    Config(String),
    /// The memory file was used after a failed operation left it unusable.
    #[error("memory file {0:?} is closed")]
    Closed(String),
}

impl MemError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MemError::Io {
            path: path.into(),
            source,
        }
    }
}
