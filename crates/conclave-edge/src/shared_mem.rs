//! `SharedState` on the memory servers (smdish, smuf) or smc: the cache index
//! segment is pulled at lock and published at unlock by `conclave-mem`.

use crate::shared::{SharedError, SharedSegment, SharedState};
use conclave_mem::{MemOptions, MemSpec, MemoryFile, MemoryStore};
use std::sync::{Arc, Mutex};

/// Memory files of one memory store, shared by the edge's workers.
pub struct MemSharedState {
    store: Arc<dyn MemoryStore>,
}

impl std::fmt::Debug for MemSharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSharedState")
            .field("kind", &self.store.kind())
            .finish()
    }
}

impl MemSharedState {
    /// Connects to the store `spec` names.
    pub fn connect(spec: &MemSpec, opts: &MemOptions) -> Result<MemSharedState, SharedError> {
        let store = conclave_mem::connect(spec, opts).map_err(|e| SharedError::Backend {
            name: spec.kind().to_string(),
            message: e.to_string(),
        })?;
        Ok(MemSharedState { store })
    }
}

struct MemSegment {
    name: String,
    file: Mutex<MemoryFile>,
}

impl SharedState for MemSharedState {
    fn open(&self, name: &str, size: usize) -> Result<Arc<dyn SharedSegment>, SharedError> {
        let file = self.store.open(name, size).map_err(|e| SharedError::Backend {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(Arc::new(MemSegment {
            name: name.to_string(),
            file: Mutex::new(file),
        }))
    }
}

impl SharedSegment for MemSegment {
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError> {
        let backend = |e: conclave_mem::MemError| SharedError::Backend {
            name: self.name.clone(),
            message: e.to_string(),
        };
        // Round trips to the memory server: never stall the worker's other
        // connections (see conclave_rpc::blocking).
        conclave_rpc::run_blocking(|| {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            // Optimistically on a snapshot: a section that changes nothing is done.
            if let Some((_, snapshot)) = file.peek().map_err(backend)? {
                if !f(snapshot) {
                    return Ok(());
                }
            }
            let mut guard = file.lock().map_err(backend)?;
            if f(&mut guard) {
                guard.unlock().map_err(backend)
            } else {
                guard.release().map_err(backend)
            }
        })
    }
}
