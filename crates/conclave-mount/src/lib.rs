//! `conclave mount`: a FUSE file system that presents a file server's tree
//! (nextfs: an ext2 image behind a std/crypt/verity/vericrypt device) to
//! unmodified programs, so NGINX's `root` and `proxy_cache_path` can live on
//! a protected image (issue 19, docs/nginx.md).
//!
//! Owns: the FUSE operations ([`MountFs`]), the inode-number → path table,
//! errno mapping, and the process (mount, signals, unmount). Does not own the
//! wire protocol or the grants: every operation is a call of the blocking
//! [`conclave_fs::FsClient`], and the server decides what this identity may do.
#![forbid(unsafe_code)]

mod errno;
mod fs;
mod inodes;
mod process;
pub mod settings;

pub use errno::errno_of;
pub use fs::MountFs;
pub use process::{run, MountError};
pub use settings::MountSettings;
