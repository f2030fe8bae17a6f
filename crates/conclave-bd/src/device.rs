//! The block-device interface every device implements.

use crate::{BdError, SealedRoot};

/// Size of every block, in bytes.
pub const BLOCK_SIZE: usize = 4096;

/// A device of fixed-size blocks. Methods take `&self` so many readers can
/// use one device at once; implementations lock what they must.
pub trait BlockDevice: Send + Sync {
    /// Number of blocks.
    fn block_count(&self) -> u64;

    /// Bytes of data the device holds: `block_count() * BLOCK_SIZE`, except for a
    /// std image whose length is not whole 4 KiB blocks (a 1 KiB-block file system),
    /// whose last block is partial. A file system checks its own size against this.
    fn byte_len(&self) -> u64 {
        self.block_count() * BLOCK_SIZE as u64
    }

    /// Reads block `idx` into `buf`; an integrity failure is an error, never
    /// wrong data.
    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError>;

    /// Writes block `idx`.
    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError>;

    /// Makes every completed write durable (and, for verity devices, seals
    /// the new root).
    fn flush(&self) -> Result<(), BdError>;

    /// The root sealed by the last flush (or found at open), for devices
    /// with a Merkle tree; `None` for the others. The file server prints it
    /// so the next start can pin it with `expect_root`.
    fn sealed_root(&self) -> Option<SealedRoot> {
        None
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for std::sync::Arc<T> {
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn byte_len(&self) -> u64 {
        (**self).byte_len()
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        (**self).read_block(idx, buf)
    }
    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        (**self).write_block(idx, buf)
    }
    fn flush(&self) -> Result<(), BdError> {
        (**self).flush()
    }
    fn sealed_root(&self) -> Option<SealedRoot> {
        (**self).sealed_root()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn byte_len(&self) -> u64 {
        (**self).byte_len()
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        (**self).read_block(idx, buf)
    }
    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        (**self).write_block(idx, buf)
    }
    fn flush(&self) -> Result<(), BdError> {
        (**self).flush()
    }
    fn sealed_root(&self) -> Option<SealedRoot> {
        (**self).sealed_root()
    }
}
