//! Why a storage tool failed; the texts are the tools' error messages.

use crate::{BdError, DeviceKind};
use std::path::PathBuf;

/// A failed `mkfs`, `mkmerkle` or `fsck`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// `--tree` given for a device without one.
    #[error("device {0} has no tree file")]
    NoTree(DeviceKind),
    /// A device that needs a secret got no `--secret-file`.
    #[error("device {0} needs --secret-file")]
    NeedsSecret(DeviceKind),
    /// An image size that is not whole blocks of at least 1 MiB.
    #[error(transparent)]
    Size(#[from] crate::settings::ImageSizeError),
    /// The source of `mkfs` is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// An output exists and `--force` was not given.
    #[error("{} exists (use --force to overwrite)", .0.display())]
    Exists(PathBuf),
    /// mke2fs or a device operation failed.
    #[error(transparent)]
    Device(#[from] BdError),
    /// Making an encrypted or tree device failed.
    #[error("making {kind} device {}", .image.display())]
    Make {
        /// The device.
        kind: DeviceKind,
        /// The image.
        image: PathBuf,
        /// Cause.
        #[source]
        source: BdError,
    },
    /// Rebuilding a tree failed.
    #[error("building the tree of {}", .image.display())]
    Tree {
        /// The image.
        image: PathBuf,
        /// Cause.
        #[source]
        source: BdError,
    },
    /// The device did not open (header, secret, sizes, sealed root).
    #[error("opening {}", .image.display())]
    Open {
        /// The image.
        image: PathBuf,
        /// Cause.
        #[source]
        source: BdError,
    },
    /// A block could not be read for a reason other than its integrity.
    #[error("reading block {block}")]
    Read {
        /// The block.
        block: u64,
        /// Cause.
        #[source]
        source: BdError,
    },
    /// The scratch copy could not be created.
    #[error("creating {}", .path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the scratch copy failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Blocks failed verification (`shown`: the first 20 block numbers).
    #[error("{count} blocks failed their integrity check: {shown}")]
    Integrity {
        /// How many.
        count: usize,
        /// The first few, space-separated (with ` ...` when there are more).
        shown: String,
    },
    /// e2fsck could not be started.
    #[error("cannot run e2fsck (install e2fsprogs)")]
    E2fsckMissing(#[source] std::io::Error),
    /// e2fsck found problems.
    #[error("e2fsck -fn exited with {status}:\n{output}")]
    E2fsck {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout then stderr.
        output: String,
    },
}
