//! The std device: a raw image file, one block at `idx * 4096`. No
//! confidentiality, no integrity; `e2fsck` reads the image directly.

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
    read_only: bool,
}

impl StdDevice {
    /// Opens an image; its size must be a non-zero multiple of 4096.
    pub fn open(path: &Path, read_only: bool) -> Result<StdDevice, BdError> {
        let file = open_host_file(path, read_only)?;
        let len = host_len(&file)?;
        if len == 0 || !len.is_multiple_of(BLOCK_SIZE as u64) {
            return Err(BdError::Size {
                what: path.display().to_string(),
                expected: len.div_ceil(BLOCK_SIZE as u64).max(1) * BLOCK_SIZE as u64,
                found: len,
            });
        }
        Ok(StdDevice {
            file,
            blocks: len / BLOCK_SIZE as u64,
            read_only,
        })
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

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        self.file.read_exact_at(buf, idx * BLOCK_SIZE as u64)?;
        Ok(())
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        check_range(idx, self.blocks)?;
        if self.read_only {
            return Err(BdError::ReadOnly);
        }
        self.file.write_all_at(buf, idx * BLOCK_SIZE as u64)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BdError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
