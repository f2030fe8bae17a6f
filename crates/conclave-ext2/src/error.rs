//! Errors of the ext2 engine, each with the errno a file server should send.

use conclave_bd::BdError;

/// Why an ext2 operation failed. Corrupt metadata is always an error, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum Ext2Error {
    /// The block device failed (I/O error or failed integrity check).
    #[error("block device: {0}")]
    Device(#[from] BdError),
    /// On-disk metadata is inconsistent or out of range.
    #[error("corrupt file system: {0}")]
    Corrupt(String),
    /// A feature or structure this engine does not handle (features by name:
    /// "unsupported: inline_data, encrypt").
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Features this engine reads but does not write; the image opens only read-only.
    #[error("writing is not supported with features {0}: open read-only (--read-only)")]
    ReadOnlyFeatures(String),
    /// The journal holds transactions not yet written to their home blocks.
    #[error("needs journal recovery, run e2fsck")]
    NeedsRecovery,
    /// The image is shorter than its superblock says, or not whole 1 KiB units long.
    #[error(
        "image is {found} bytes; its superblock expects {blocks} blocks of {block_size} bytes = {} bytes{}",
        blocks * u64::from(*block_size),
        if *found % 1024 != 0 { " (not a multiple of 1024: truncated or not an ext2 image)" } else { " (truncated?)" }
    )]
    ImageSize {
        /// Bytes the device holds.
        found: u64,
        /// `s_blocks_count`.
        blocks: u64,
        /// Block size from the superblock.
        block_size: u32,
    },
    /// No such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// A path component (or the target of a directory operation) is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// The operation needs a non-directory.
    #[error("is a directory")]
    IsADirectory,
    /// The name already exists.
    #[error("file exists")]
    Exists,
    /// `rmdir` (or a rename onto) a directory that still has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// A name longer than 255 bytes (or a symlink target longer than a block).
    #[error("file name too long")]
    NameTooLong,
    /// No free block or inode left.
    #[error("no space left on device")]
    NoSpace,
    /// An offset past the largest file the block map can address (`Ext2Fs::max_file_size`).
    #[error("file too large")]
    FileTooLarge,
    /// More than 40 symbolic links followed while resolving a path.
    #[error("too many levels of symbolic links")]
    Loop,
    /// An argument no file system would accept (empty name, "." as a target, moving a
    /// directory into itself...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A link count would overflow.
    #[error("too many links")]
    TooManyLinks,
    /// An inode number that no longer names a live inode (e.g. a handle kept after unlink).
    #[error("stale inode {0}")]
    Stale(u32),
    /// The file system was opened read-only.
    #[error("read-only file system")]
    ReadOnly,
    /// The file system was not cleanly closed; it must be checked with `e2fsck` before
    /// it is modified.
    #[error("file system was not cleanly unmounted; run e2fsck before writing to it")]
    NeedsCheck,
}

impl Ext2Error {
    /// The Linux errno for this error, so a server can forward it unchanged.
    pub fn errno(&self) -> i32 {
        match self {
            Ext2Error::Device(_) | Ext2Error::Corrupt(_) => 5, // EIO
            Ext2Error::Unsupported(_) => 95,                   // ENOTSUP
            Ext2Error::ReadOnlyFeatures(_) => 30,              // EROFS
            Ext2Error::NeedsRecovery | Ext2Error::ImageSize { .. } => 117, // EUCLEAN
            Ext2Error::NotFound => 2,                          // ENOENT
            Ext2Error::NotADirectory => 20,                    // ENOTDIR
            Ext2Error::IsADirectory => 21,                     // EISDIR
            Ext2Error::Exists => 17,                           // EEXIST
            Ext2Error::NotEmpty => 39,                         // ENOTEMPTY
            Ext2Error::NameTooLong => 36,                      // ENAMETOOLONG
            Ext2Error::NoSpace => 28,                          // ENOSPC
            Ext2Error::FileTooLarge => 27,                     // EFBIG
            Ext2Error::Loop => 40,                             // ELOOP
            Ext2Error::InvalidArgument(_) => 22,               // EINVAL
            Ext2Error::TooManyLinks => 31,                     // EMLINK
            Ext2Error::Stale(_) => 116,                        // ESTALE
            Ext2Error::NeedsCheck | Ext2Error::ReadOnly => 30, // EROFS
        }
    }
}

/// Shorthand for a corrupt-metadata error.
pub(crate) fn corrupt(msg: impl Into<String>) -> Ext2Error {
    Ext2Error::Corrupt(msg.into())
}
