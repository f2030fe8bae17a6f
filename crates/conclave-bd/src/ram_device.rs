//! An in-memory device, for tests and for building images in memory.

use crate::{BdError, BlockDevice, BLOCK_SIZE};
use std::sync::RwLock;

/// A block device held in a `Vec<u8>`.
#[derive(Debug)]
pub struct MemBlockDevice {
    data: RwLock<Vec<u8>>,
    /// Bytes the image had (the data is padded with zeros to whole blocks).
    len: u64,
}

impl MemBlockDevice {
    /// A zero-filled device of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        MemBlockDevice {
            data: RwLock::new(vec![0u8; blocks as usize * BLOCK_SIZE]),
            len: blocks * BLOCK_SIZE as u64,
        }
    }

    /// A device over an image of any length (like the std device, a partial last
    /// block reads as zeros past the end; [`MemBlockDevice::to_image`] gives back
    /// the original length).
    pub fn from_image(mut image: Vec<u8>) -> Self {
        let len = image.len() as u64;
        image.resize(image.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
        MemBlockDevice {
            data: RwLock::new(image),
            len,
        }
    }

    /// A copy of the whole image, at its original length.
    pub fn to_image(&self) -> Vec<u8> {
        let mut v = self.data.read().unwrap_or_else(|p| p.into_inner()).clone();
        v.truncate(self.len as usize);
        v
    }

    fn range(&self, idx: u64) -> Result<std::ops::Range<usize>, BdError> {
        let count = self.block_count();
        if idx >= count {
            return Err(BdError::OutOfRange { block: idx, count });
        }
        let start = idx as usize * BLOCK_SIZE;
        Ok(start..start + BLOCK_SIZE)
    }
}

impl BlockDevice for MemBlockDevice {
    fn block_count(&self) -> u64 {
        (self.data.read().unwrap_or_else(|p| p.into_inner()).len() / BLOCK_SIZE) as u64
    }

    fn byte_len(&self) -> u64 {
        self.len
    }

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        let r = self.range(idx)?;
        buf.copy_from_slice(&self.data.read().unwrap_or_else(|p| p.into_inner())[r]);
        Ok(())
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        let r = self.range(idx)?;
        self.data.write().unwrap_or_else(|p| p.into_inner())[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), BdError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_refuses_out_of_range() {
        let d = MemBlockDevice::new(4);
        let mut b = [7u8; BLOCK_SIZE];
        d.write_block(3, &b).unwrap();
        b.fill(0);
        d.read_block(3, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 7));
        assert!(matches!(
            d.read_block(4, &mut b),
            Err(BdError::OutOfRange { block: 4, count: 4 })
        ));
    }
}
