//! A shared cache of metadata blocks (inode-table and indirect blocks), so repeated
//! reads of one file (e.g. a server reading it 64 KiB per request) do not re-read and
//! re-verify the same blocks from the device on every call.
//!
//! Every write of such a block goes through [`MetaCache::write`], and a freed indirect
//! block is forgotten, so the cache never serves stale metadata. Data and directory
//! blocks are not cached.

use conclave_bd::{BdError, BlockDevice, BLOCK_SIZE};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Blocks kept before the cache is emptied (16 MiB).
const CAPACITY: usize = 4096;

/// Shared block cache; reads take `&self`.
#[derive(Default)]
pub(crate) struct MetaCache {
    map: Mutex<HashMap<u64, Arc<[u8; BLOCK_SIZE]>>>,
}

impl MetaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<[u8; BLOCK_SIZE]>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block `b`, from the cache or the device.
    pub fn read(&self, dev: &dyn BlockDevice, b: u64) -> Result<Arc<[u8; BLOCK_SIZE]>, BdError> {
        if let Some(hit) = self.lock().get(&b) {
            return Ok(hit.clone());
        }
        let mut buf = Box::new([0u8; BLOCK_SIZE]);
        dev.read_block(b, &mut buf)?;
        let block: Arc<[u8; BLOCK_SIZE]> = Arc::from(buf);
        self.insert(b, block.clone());
        Ok(block)
    }

    /// Writes block `b` to the device and keeps the new contents.
    pub fn write(&self, dev: &dyn BlockDevice, b: u64, data: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        self.forget(b);
        dev.write_block(b, data)?;
        self.insert(b, Arc::new(*data));
        Ok(())
    }

    fn insert(&self, b: u64, block: Arc<[u8; BLOCK_SIZE]>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(b, block);
    }

    /// Drops block `b` (freed, or about to be overwritten as data).
    pub fn forget(&self, b: u64) {
        self.lock().remove(&b);
    }
}
