//! The `nextfs` kind of [`Storage`]: the docroot and the cache live in a
//! conclave file server (an ext2 image behind a protected block device),
//! reached over mutual TLS with the `edge` identity.

use super::{FileMeta, Storage, StorageReader, StorageWriter};
use bytes::Bytes;
use conclave_fs::{proto::MAX_IO, FsClient};
use conclave_rpc::run_blocking;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One tree (docroot or cache directory) inside a file server.
pub struct NextfsStorage {
    client: Arc<FsClient>,
    root: String,
}

impl std::fmt::Debug for NextfsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextfsStorage")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl NextfsStorage {
    /// Storage rooted at `root` inside the server's image (created if `create`).
    pub fn new(client: Arc<FsClient>, root: &str, create: bool) -> io::Result<NextfsStorage> {
        let root = format!("/{}", root.trim_matches('/'));
        if create && root != "/" {
            client.create_dir_all(&root)?;
        }
        Ok(NextfsStorage { client, root })
    }

    fn full(&self, path: &str) -> io::Result<String> {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|s| s == ".." || s.contains('\0')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path escapes the storage root",
            ));
        }
        Ok(match (self.root.as_str(), rel.is_empty()) {
            (r, true) => r.to_string(),
            ("/", false) => format!("/{rel}"),
            (r, false) => format!("{r}/{rel}"),
        })
    }
}

fn meta_of(m: &conclave_fs::Metadata) -> FileMeta {
    FileMeta {
        len: m.len(),
        modified: m.modified(),
        is_dir: m.is_dir(),
    }
}

/// `run_blocking` of one file-server operation, timed and counted in the
/// metrics (a file's own errors, such as not found, are answers, not failures).
fn call<T>(op: &'static str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    crate::metrics::time_io(crate::metrics::Backend::FileServer, op, || run_blocking(f))
}

// Each call is a round trip to the file server: through `run_blocking` so it
// never stalls the worker's other connections (see conclave_rpc::block_in_place).
impl Storage for NextfsStorage {
    fn stat(&self, path: &str) -> io::Result<FileMeta> {
        call("stat", || Ok(meta_of(&self.client.metadata(&self.full(path)?)?)))
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Bytes> {
        call("read_at", || {
            let full = self.full(path)?;
            let mut out = Vec::with_capacity(len);
            while out.len() < len {
                let want = (len - out.len()).min(MAX_IO);
                let (_, data) = self.client.read_path(&full, offset + out.len() as u64, want)?;
                if data.is_empty() {
                    break;
                }
                out.extend_from_slice(&data);
            }
            Ok(Bytes::from(out))
        })
    }

    fn read_all(&self, path: &str) -> io::Result<(FileMeta, Bytes)> {
        call("read_all", || {
            let full = self.full(path)?;
            // One round trip for every file up to 1 MiB: stat and data together.
            let (m, first) = self.client.read_path(&full, 0, MAX_IO)?;
            let meta = meta_of(&m);
            if meta.is_dir || first.len() as u64 >= meta.len {
                return Ok((meta, first));
            }
            let mut out = Vec::with_capacity(meta.len as usize);
            out.extend_from_slice(&first);
            while (out.len() as u64) < meta.len {
                let (_, more) = self.client.read_path(&full, out.len() as u64, MAX_IO)?;
                if more.is_empty() {
                    break;
                }
                out.extend_from_slice(&more);
            }
            Ok((meta, Bytes::from(out)))
        })
    }

    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        call("write_atomic", || {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let full = self.full(path)?;
            let tmp = format!(
                "{full}.tmp.{}.{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let res = match self.client.write(&tmp, data) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some((dir, _)) = full.rsplit_once('/') {
                        if !dir.is_empty() {
                            self.client.create_dir_all(dir)?;
                        }
                    }
                    self.client.write(&tmp, data)
                }
                r => r,
            };
            res.and_then(|_| self.client.rename(&tmp, &full))
                .inspect_err(|_| {
                    let _ = self.client.remove_file(&tmp);
                })
        })
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        call("remove", || match self.client.remove_file(&self.full(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
    }

    fn create_streaming(&self, path: &str) -> io::Result<Box<dyn StorageWriter>> {
        call("create_streaming", || {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let full = self.full(path)?;
            let tmp = format!(
                "{full}.tmp.{}.{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let file = match self.client.create(&tmp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some((dir, _)) = full.rsplit_once('/') {
                        if !dir.is_empty() {
                            self.client.create_dir_all(dir)?;
                        }
                    }
                    self.client.create(&tmp)?
                }
                r => r?,
            };
            Ok(Box::new(NextfsWriter {
                client: self.client.clone(),
                file: Some(file),
                tmp,
                full,
                written: 0,
            }) as Box<dyn StorageWriter>)
        })
    }

    fn open_reader(&self, path: &str) -> io::Result<Box<dyn StorageReader>> {
        call("open_reader", || {
            let mut file = self.client.open(&self.full(path)?)?;
            let len = file.metadata()?.len();
            Ok(Box::new(NextfsReader { file, len }) as Box<dyn StorageReader>)
        })
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>> {
        call("list_dir", || match self.client.read_dir(&self.full(path)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            r => Ok(r?
                .into_iter()
                .map(|e| (e.name, e.file_type == conclave_fs::proto::ftype::DIR))
                .collect()),
        })
    }
}

/// A file-server file kept open while its body is sent.
struct NextfsReader {
    file: conclave_fs::File,
    len: u64,
}

impl StorageReader for NextfsReader {
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Bytes> {
        call("reader_read_at", || {
            let mut out = vec![0u8; len];
            let mut got = 0;
            while got < len {
                let n = self.file.read_at(&mut out[got..], offset + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            out.truncate(got);
            Ok(Bytes::from(out))
        })
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A file-server file being written under a temporary name.
struct NextfsWriter {
    client: Arc<FsClient>,
    file: Option<conclave_fs::File>,
    tmp: String,
    full: String,
    written: u64,
}

impl StorageWriter for NextfsWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("writer already finished"))?;
        call("write", || {
            let mut done = 0;
            while done < data.len() {
                let n = f.write_at(&data[done..], self.written + done as u64)?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                done += n;
            }
            Ok(())
        })?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        drop(self.file.take());
        call("commit", || self.client.rename(&self.tmp, &self.full))?;
        self.tmp.clear();
        Ok(())
    }
}

impl Drop for NextfsWriter {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.tmp.is_empty() {
            let _ = run_blocking(|| self.client.remove_file(&self.tmp));
        }
    }
}
