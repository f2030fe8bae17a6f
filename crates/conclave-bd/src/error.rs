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
}
