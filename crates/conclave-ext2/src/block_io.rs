//! File-system blocks (1 KiB to 64 KiB) over the device's 4 KiB blocks.
//!
//! The device's granularity (its sectors, its Merkle leaves) is independent of the
//! file system's block size: a 1 KiB or 2 KiB block is part of one device block
//! (read: copy out; write: read-modify-write), an 8 KiB to 64 KiB block spans
//! several. Every byte the engine reads or writes goes through here.

use conclave_bd::{BdError, BlockDevice, BLOCK_SIZE as DEV_BLOCK};
use std::sync::Arc;

/// Smallest file-system block size.
pub const MIN_BLOCK_SIZE: u32 = 1024;
/// Largest file-system block size.
pub const MAX_BLOCK_SIZE: u32 = 65536;

/// A device seen as an array of file-system blocks. Cheap to clone.
#[derive(Clone)]
pub(crate) struct BlockIo {
    dev: Arc<dyn BlockDevice>,
    bs: usize,
}

impl BlockIo {
    /// File-system blocks of `bs` bytes (a power of two, 1024..=65536, checked by
    /// the superblock parser) on `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, bs: u32) -> BlockIo {
        BlockIo { dev, bs: bs as usize }
    }

    /// The device underneath.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The file-system block size.
    pub fn block_size(&self) -> usize {
        self.bs
    }

    /// Reads file-system block `b` into `buf` (exactly one block long).
    pub fn read(&self, b: u64, buf: &mut [u8]) -> Result<(), BdError> {
        debug_assert_eq!(buf.len(), self.bs);
        read_bytes(&*self.dev, self.offset(b)?, buf)
    }

    /// Writes file-system block `b` from `buf` (exactly one block long).
    pub fn write(&self, b: u64, buf: &[u8]) -> Result<(), BdError> {
        debug_assert_eq!(buf.len(), self.bs);
        write_bytes(&*self.dev, self.offset(b)?, buf)
    }

    /// Reads `buf.len()` bytes at byte `off` of the file system (a run of blocks).
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<(), BdError> {
        read_bytes(&*self.dev, off, buf)
    }

    fn offset(&self, b: u64) -> Result<u64, BdError> {
        b.checked_mul(self.bs as u64).ok_or(BdError::OutOfRange {
            block: b,
            count: self.dev.block_count(),
        })
    }

    /// Makes completed writes durable.
    pub fn flush(&self) -> Result<(), BdError> {
        self.dev.flush()
    }
}

/// Reads `buf.len()` bytes at byte `off` of the device: whole device blocks straight
/// into `buf`, partial ones through a bounce block.
pub(crate) fn read_bytes(dev: &dyn BlockDevice, off: u64, buf: &mut [u8]) -> Result<(), BdError> {
    let mut done = 0usize;
    let mut bounce: Option<Box<[u8; DEV_BLOCK]>> = None;
    while done < buf.len() {
        let pos = off + done as u64;
        let (idx, in_block) = (pos / DEV_BLOCK as u64, (pos % DEV_BLOCK as u64) as usize);
        let n = (DEV_BLOCK - in_block).min(buf.len() - done);
        let out = &mut buf[done..done + n];
        if let Ok(whole) = <&mut [u8; DEV_BLOCK]>::try_from(&mut *out) {
            dev.read_block(idx, whole)?;
        } else {
            let tmp = bounce.get_or_insert_with(|| Box::new([0u8; DEV_BLOCK]));
            dev.read_block(idx, tmp)?;
            out.copy_from_slice(&tmp[in_block..in_block + n]);
        }
        done += n;
    }
    Ok(())
}

/// Writes `data` at byte `off` of the device, reading back the rest of any device
/// block it covers only in part.
pub(crate) fn write_bytes(dev: &dyn BlockDevice, off: u64, data: &[u8]) -> Result<(), BdError> {
    let mut done = 0usize;
    let mut bounce: Option<Box<[u8; DEV_BLOCK]>> = None;
    while done < data.len() {
        let pos = off + done as u64;
        let (idx, in_block) = (pos / DEV_BLOCK as u64, (pos % DEV_BLOCK as u64) as usize);
        let n = (DEV_BLOCK - in_block).min(data.len() - done);
        let src = &data[done..done + n];
        if let Ok(whole) = <&[u8; DEV_BLOCK]>::try_from(src) {
            dev.write_block(idx, whole)?;
        } else {
            let tmp = bounce.get_or_insert_with(|| Box::new([0u8; DEV_BLOCK]));
            dev.read_block(idx, tmp)?;
            tmp[in_block..in_block + n].copy_from_slice(src);
            dev.write_block(idx, tmp)?;
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_bd::MemBlockDevice;

    #[test]
    fn small_and_large_blocks_map_onto_device_blocks() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new(8));
        for bs in [1024u32, 2048, 4096, 8192, 16384] {
            let io = BlockIo::new(dev.clone(), bs);
            let n = 8 * 4096 / u64::from(bs);
            let fill = |b: u64| (b as u8).wrapping_mul(7) ^ (bs >> 10) as u8;
            for b in 0..n {
                io.write(b, &vec![fill(b); bs as usize]).unwrap();
            }
            let mut buf = vec![0u8; bs as usize];
            for b in 0..n {
                io.read(b, &mut buf).unwrap();
                assert!(buf.iter().all(|&x| x == fill(b)), "bs {bs} block {b}");
            }
            assert!(io.read(n, &mut buf).is_err(), "bs {bs}: past the end");
        }
        // A 1 KiB write leaves its neighbours in the same device block alone.
        let io = BlockIo::new(dev.clone(), 1024);
        for b in 4..8u64 {
            io.write(b, &[b as u8; 1024]).unwrap();
        }
        io.write(5, &[0xAA; 1024]).unwrap();
        let mut buf = vec![0u8; 1024];
        for (b, want) in [(4u64, 4u8), (5, 0xAA), (6, 6), (7, 7)] {
            io.read(b, &mut buf).unwrap();
            assert!(buf.iter().all(|&x| x == want), "block {b}");
        }
    }
}
