//! The std device: a raw image file, one block at `idx * 4096`. No
//! confidentiality, no integrity; `e2fsck` reads the image directly.
//!
//! An image of any non-zero length opens: a file system with 1 KiB or 2 KiB blocks
//! need not be whole 4 KiB blocks long, so the last device block may be partial. It
//! reads as zeros past the end of the file, and a write may not put anything but
//! zeros there. Whether the length suits the file system is for the file system to
//! say (conclave-ext2 compares it with its superblock), since only it knows what
//! length to expect.

use crate::{BdError, BlockDevice, BLOCK_SIZE};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Opens a host file for the device, naming it in errors.
pub(crate) fn open_host_file(path: &Path, read_only: bool) -> Result<File, BdError> {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| BdError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

/// The length of an open host file.
pub(crate) fn host_len(f: &File) -> Result<u64, BdError> {
    Ok(f.metadata()?.len())
}

/// A raw image file.
#[derive(Debug)]
pub struct StdDevice {
    file: File,
    blocks: u64,
    /// Length of the file in bytes (`blocks * 4096` unless the last block is partial).
    len: u64,
    read_only: bool,
}

impl StdDevice {
    /// Opens an image of any non-zero length (see the module doc for a partial last block).
    pub fn open(path: &Path, read_only: bool) -> Result<StdDevice, BdError> {
        let file = open_host_file(path, read_only)?;
        let len = host_len(&file)?;
        if len == 0 {
            return Err(BdError::Size {
                what: path.display().to_string(),
                expected: BLOCK_SIZE as u64,
                found: len,
            });
        }
        Ok(StdDevice {
            file,
            blocks: len.div_ceil(BLOCK_SIZE as u64),
            len,
            read_only,
        })
    }

    /// Bytes of block `idx` that lie inside the file.
    fn in_file(&self, idx: u64) -> usize {
        (self.len - idx * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize
    }
}

/// Refuses a block number past the end.
pub(crate) fn check_range(idx: u64, count: u64) -> Result<(), BdError> {
    if idx >= count {
        return Err(BdError::OutOfRange { block: idx, count });
    }
    Ok(())
}

impl BlockDevice for StdDevice {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn byte_len(&self) -> u64 {
        self.len
    }

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        let n = self.in_file(idx);
        self.file.read_exact_at(&mut buf[..n], idx * BLOCK_SIZE as u64)?;
        buf[n..].fill(0);
        Ok(())
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        if self.read_only {
            return Err(BdError::ReadOnly);
        }
        let n = self.in_file(idx);
        if buf[n..].iter().any(|&b| b != 0) {
            // Data past the end of the image would be lost: refuse rather than drop it.
            return Err(BdError::OutOfRange {
                block: idx,
                count: self.len / BLOCK_SIZE as u64,
            });
        }
        self.file.write_all_at(&buf[..n], idx * BLOCK_SIZE as u64)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BdError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
