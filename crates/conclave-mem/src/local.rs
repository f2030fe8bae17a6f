//! The in-process kind: memory files in this process only, behind a mutex
//! and a condition variable. The benchmark's baseline and the edge's kind
//! when it runs a single worker. It keeps the pull/publish model (the guard
//! works on a private copy) so code behaves the same on every kind.

use crate::client::{MemoryFile, MemoryStore, Segment};
use crate::{name, MemError, MAX_SEGMENT};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct LocalFile {
    size: usize,
    state: Mutex<LocalState>,
    cv: Condvar,
}

struct LocalState {
    holder: Option<u64>,
    version: u64,
    data: Vec<u8>,
}

type Files = Arc<Mutex<HashMap<String, (Arc<LocalFile>, usize)>>>;

/// Memory files of this process.
#[derive(Default)]
pub struct LocalStore {
    files: Files,
    next_id: AtomicU64,
}

impl LocalStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock_poisonless<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore for LocalStore {
    fn open(&self, name: &str, size: usize) -> Result<MemoryFile, MemError> {
        name::validate(name)?;
        if size > MAX_SEGMENT {
            return Err(MemError::TooLarge {
                requested: size as u64,
                max: MAX_SEGMENT as u64,
            });
        }
        let mut files = lock_poisonless(&self.files);
        let file = match files.get_mut(name) {
            Some((f, opens)) => {
                if f.size != size {
                    return Err(MemError::SizeMismatch {
                        name: name.to_string(),
                        requested: size as u64,
                        existing: f.size as u64,
                    });
                }
                *opens += 1;
                f.clone()
            }
            None => {
                let f = Arc::new(LocalFile {
                    size,
                    state: Mutex::new(LocalState {
                        holder: None,
                        version: 0,
                        data: vec![0; size],
                    }),
                    cv: Condvar::new(),
                });
                files.insert(name.to_string(), (f.clone(), 1));
                f
            }
        };
        let seg = LocalSegment {
            files: self.files.clone(),
            name: name.to_string(),
            file,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            held: false,
            closed: false,
        };
        Ok(MemoryFile::new(name, size, Box::new(seg)))
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

struct LocalSegment {
    files: Files,
    name: String,
    file: Arc<LocalFile>,
    id: u64,
    held: bool,
    closed: bool,
}

impl LocalSegment {
    fn release(&mut self, st: &mut LocalState) {
        st.holder = None;
        self.held = false;
        self.file.cv.notify_all();
    }
}

impl Segment for LocalSegment {
    fn lock(&mut self, timeout: Option<Duration>, buf: &mut [u8]) -> Result<u64, MemError> {
        if self.closed {
            return Err(MemError::Closed(self.name.clone()));
        }
        if self.held {
            return Err(MemError::AlreadyHeld(self.name.clone()));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = lock_poisonless(&self.file.state);
        while st.holder.is_some() {
            st = match deadline {
                None => self.file.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(MemError::Timeout {
                            name: self.name.clone(),
                            ms: timeout.unwrap_or_default().as_millis() as u64,
                        });
                    }
                    self.file
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        st.holder = Some(self.id);
        self.held = true;
        buf.copy_from_slice(&st.data);
        Ok(st.version)
    }

    fn unlock(&mut self, publish: Option<&[u8]>) -> Result<(), MemError> {
        if !self.held {
            return Err(MemError::NotHolder(self.name.clone()));
        }
        let file = self.file.clone();
        let mut st = lock_poisonless(&file.state);
        if let Some(d) = publish {
            st.data.copy_from_slice(d);
            st.version += 1;
        }
        self.release(&mut st);
        Ok(())
    }

    fn close(&mut self) -> Result<(), MemError> {
        if self.closed {
            return Ok(());
        }
        if self.held {
            let file = self.file.clone();
            let mut st = lock_poisonless(&file.state);
            self.release(&mut st);
        }
        self.closed = true;
        let mut files = lock_poisonless(&self.files);
        if let Some((_, opens)) = files.get_mut(&self.name) {
            *opens -= 1;
            if *opens == 0 {
                files.remove(&self.name);
            }
        }
        Ok(())
    }
}

impl Drop for LocalSegment {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
