//! A shared cache of metadata blocks (inode-table, indirect and directory blocks), so
//! repeated reads of one file (e.g. a server reading it 64 KiB per request) do not
//! re-read and re-verify the same blocks from the device on every call.
//!
//! Every write of such a block goes through [`MetaCache::write`], and a freed or
//! overwritten block is forgotten, so the cache never serves stale metadata. Data
//! blocks are not cached. Keys are file-system block numbers.

use crate::block_io::BlockIo;
use conclave_bd::BdError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes kept before the cache is emptied (16 MiB).
const CAPACITY_BYTES: usize = 16 << 20;

/// Shared block cache; reads take `&self`.
#[derive(Default)]
pub(crate) struct MetaCache {
    map: Mutex<HashMap<u64, Arc<[u8]>>>,
}

impl MetaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<[u8]>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block `b`, from the cache or the device.
    pub fn read(&self, io: &BlockIo, b: u64) -> Result<Arc<[u8]>, BdError> {
        if let Some(hit) = self.lock().get(&b) {
            return Ok(hit.clone());
        }
        let mut buf = vec![0u8; io.block_size()];
        io.read(b, &mut buf)?;
        let block: Arc<[u8]> = Arc::from(buf);
        self.insert(io, b, block.clone());
        Ok(block)
    }

    /// Writes block `b` to the device and keeps the new contents.
    pub fn write(&self, io: &BlockIo, b: u64, data: &[u8]) -> Result<(), BdError> {
        self.forget(b);
        io.write(b, data)?;
        self.insert(io, b, Arc::from(data));
        Ok(())
    }

    fn insert(&self, io: &BlockIo, b: u64, block: Arc<[u8]>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY_BYTES / io.block_size() {
            map.clear();
        }
        map.insert(b, block);
    }

    /// Drops block `b` (freed, or about to be overwritten as data).
    pub fn forget(&self, b: u64) {
        self.lock().remove(&b);
    }
}
