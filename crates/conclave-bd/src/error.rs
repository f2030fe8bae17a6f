//! Errors of block devices.

/// Why a block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BdError {
    /// The host file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A block number past the end of the device.
    #[error("block {block} is out of range (device has {count} blocks)")]
    OutOfRange {
        /// The block asked for.
        block: u64,
        /// Blocks on the device.
        count: u64,
    },
    /// A block or tree node failed its integrity check.
    #[error("integrity check failed for block {block}")]
    Integrity {
        /// The block whose data or proof did not verify.
        block: u64,
    },
    /// The secret does not open this device (its key-check value differs).
    #[error("wrong secret for {what}: the key-check value in its header does not match")]
    WrongSecret {
        /// The file whose header refused the secret.
        what: String,
    },
    /// A header, seal or tree file is malformed or was tampered with.
    #[error("{what}: {reason}")]
    Format {
        /// The file.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file is shorter or longer than its header says (truncated or swapped).
    #[error("{what} is {found} bytes long, expected {expected} (truncated or not the matching file)")]
    Size {
        /// The file.
        what: String,
        /// Bytes it should have.
        expected: u64,
        /// Bytes it has.
        found: u64,
    },
    /// The tree file holds no seal whose MAC verifies.
    #[error("{what}: no valid sealed root (tree file corrupt, or it belongs to another secret)")]
    NoValidSeal {
        /// The tree file.
        what: String,
    },
    /// The sealed root is not the one the caller pinned.
    #[error(
        "sealed root {found} differs from the expected root {expected} (stale or rolled-back image and tree)"
    )]
    RootMismatch {
        /// The root the caller expected (hex).
        expected: String,
        /// The root sealed in the tree file (hex).
        found: String,
    },
    /// The commit counter sealed in the state file is below the one kept on
    /// other storage (`--counter-file`): the whole local set was rolled back.
    #[error(
        "sealed commit counter {sealed} in {state} is lower than counter {kept} in {counter_file} \
         (image, tree and state were rolled back to an older commit)"
    )]
    Rollback {
        /// The state file.
        state: String,
        /// The counter sealed there (after any redo-log replay).
        sealed: u64,
        /// The counter file.
        counter_file: String,
        /// The counter it holds.
        kept: u64,
    },
    /// The state file is gone but the counter file says commits were made.
    #[error("state file {state} is missing but {counter_file} records commit {kept} (state file deleted or rolled back)")]
    StateMissing {
        /// The state file.
        state: String,
        /// The counter file.
        counter_file: String,
        /// The counter it holds.
        kept: u64,
    },
    /// The device's sealed root is not the one the state file sealed.
    #[error(
        "the tree seals root {device} but {state} records root {recorded} at commit {counter} \
         (tree file or state file replaced)"
    )]
    StateMismatch {
        /// The state file.
        state: String,
        /// Its commit counter.
        counter: u64,
        /// The root it records (hex).
        recorded: String,
        /// The root the tree file seals (hex).
        device: String,
    },
    /// A commit failed after it began to write in place; writes stop until a
    /// restart finishes that commit from the redo log.
    #[error("an earlier commit failed half-way ({0}); restart to finish it from the redo log")]
    CommitFailed(String),
    /// The device was opened read-only.
    #[error("the device is read-only")]
    ReadOnly,
    /// The caller's configuration is wrong (missing tree or secret file, bad hex, ...).
    #[error("{0}")]
    Config(String),
}

impl BdError {
    pub(crate) fn format(what: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        BdError::Format {
            what: what.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether this is an integrity failure (tampering or a torn update), as
    /// opposed to an i/o or configuration problem.
    pub fn is_integrity(&self) -> bool {
        matches!(self, BdError::Integrity { .. })
    }
}
