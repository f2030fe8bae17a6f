//! The `local` kind of shared state: memory files inside one worker process.

use super::{SharedError, SharedSegment, SharedState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// In-process memory files (the `local` kind).
#[derive(Default, Debug)]
pub struct LocalSharedState {
    files: Mutex<HashMap<String, Arc<LocalSegment>>>,
}

impl LocalSharedState {
    /// An empty set of memory files.
    pub fn new() -> LocalSharedState {
        LocalSharedState::default()
    }
}

/// An in-process memory file: the lock is a mutex, the segment its contents.
#[derive(Debug)]
pub struct LocalSegment {
    bytes: Mutex<Vec<u8>>,
}

impl SharedState for LocalSharedState {
    fn open(&self, name: &str, size: usize) -> Result<Arc<dyn SharedSegment>, SharedError> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let seg = files
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(LocalSegment {
                    bytes: Mutex::new(vec![0; size]),
                })
            })
            .clone();
        let have = seg.bytes.lock().unwrap_or_else(|p| p.into_inner()).len();
        if have != size {
            return Err(SharedError::SizeMismatch {
                name: name.into(),
                have,
                want: size,
            });
        }
        Ok(seg)
    }
}

impl SharedSegment for LocalSegment {
    fn with_locked(&self, f: &mut dyn FnMut(&mut [u8]) -> bool) -> Result<(), SharedError> {
        let mut g = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_segments_are_shared_by_name_and_sized() {
        let s = LocalSharedState::new();
        let a = s.open("Z", 32).unwrap();
        a.with_locked(&mut |b| {
            b[0] = 7;
            true
        })
        .unwrap();
        let b = s.open("Z", 32).unwrap();
        let mut seen = 0;
        b.with_locked(&mut |b| {
            seen = b[0];
            false
        })
        .unwrap();
        assert_eq!(seen, 7);
        assert!(matches!(s.open("Z", 64), Err(SharedError::SizeMismatch { .. })));
    }
}
