//! The `nextfs` kind of [`Storage`]: the docroot and the cache live in a
//! conclave file server (an ext2 image behind a protected block device),
//! reached over mutual TLS with the `edge` identity.

use super::{FileMeta, Storage};
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

// Each call is a round trip to the file server: through `run_blocking` so it
// never stalls the worker's other connections (see conclave_rpc::block_in_place).
impl Storage for NextfsStorage {
    fn stat(&self, path: &str) -> io::Result<FileMeta> {
        run_blocking(|| Ok(meta_of(&self.client.metadata(&self.full(path)?)?)))
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Bytes> {
        run_blocking(|| {
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
        run_blocking(|| {
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
        run_blocking(|| {
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
        run_blocking(|| match self.client.remove_file(&self.full(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
    }
}
