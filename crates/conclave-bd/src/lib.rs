//! Block devices under the file server: the [`BlockDevice`] trait (4096-byte
//! blocks) and its implementations — std (raw image), crypt (AES-256-XTS),
//! verity (HMAC-SHA256 Merkle tree with a sealed root) and vericrypt (the
//! tree over the ciphertext) — plus their on-disk formats, key derivation,
//! the tools' building blocks ([`create`], [`rebuild_tree`]) and the tools
//! themselves ([`tools`]: mkfs, mkmerkle, fsck, with their [`settings`]), and
//! [`CommittedDevice`], which makes a device's writes durable only as whole,
//! crash-atomic commits with a sealed state file. Knows
//! nothing of file systems. Formats and threat model: `docs/storage.md`.
#![forbid(unsafe_code)]

mod build;
mod commit;
mod crypt;
mod device;
mod error;
mod header;
mod keys;
mod merkle;
mod ram_device;
mod redo_log;
mod sealed_root;
mod spec;
mod state_file;
mod std_device;
mod verity;
pub mod xts;

pub use build::{create, mke2fs, mke2fs_as, rebuild_tree, CreateOptions, FsType};
pub use commit::{forget_commits, with_suffix, Commit, CommitOptions, CommittedDevice, Recovery};
pub use crypt::CryptDevice;
pub use device::{BlockDevice, BLOCK_SIZE};
pub use error::BdError;
pub use keys::{read_secret, KdfParams};
pub use ram_device::MemBlockDevice;
pub use spec::{open, DeviceKind, DeviceSpec, SealedRoot};
pub use std_device::StdDevice;
pub use verity::VerityDevice;

// The storage tools (`conclave mkfs`, `mkmerkle`, `fsck`) and their command lines.
pub mod settings;
pub mod tools;

pub use settings::{FsckSettings, KdfSettings, MkfsSettings, MkmerkleSettings};
