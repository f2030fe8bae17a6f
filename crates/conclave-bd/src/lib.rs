//! Block devices under the file server: the [`BlockDevice`] trait (4096-byte
//! blocks) and its implementations. Knows nothing of file systems.
#![forbid(unsafe_code)]

mod device;
mod error;
mod mem;

pub use device::{BlockDevice, BLOCK_SIZE};
pub use error::BdError;
pub use mem::MemBlockDevice;
