//! Host directories as storage (the seed's `nonextfs`).

use super::{FileMeta, Storage, StorageReader, StorageWriter};
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A host directory (the seed's `nonextfs`).
#[derive(Debug)]
pub struct HostStorage {
    root: PathBuf,
}

impl HostStorage {
    /// Storage rooted at `root` (created if `create`).
    pub fn new(root: &Path, create: bool) -> io::Result<HostStorage> {
        if create {
            std::fs::create_dir_all(root)?;
        }
        Ok(HostStorage {
            root: root.to_path_buf(),
        })
    }

    fn full(&self, path: &str) -> io::Result<PathBuf> {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|s| s == ".." || s.contains('\0')) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path escapes the storage root",
            ));
        }
        Ok(if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        })
    }
}

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    FileMeta {
        len: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        is_dir: m.is_dir(),
    }
}

impl Storage for HostStorage {
    fn stat(&self, path: &str) -> io::Result<FileMeta> {
        Ok(meta_of(&std::fs::metadata(self.full(path)?)?))
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Bytes> {
        read_file_at(&std::fs::File::open(self.full(path)?)?, offset, len)
    }

    fn open_reader(&self, path: &str) -> io::Result<Box<dyn StorageReader>> {
        let file = std::fs::File::open(self.full(path)?)?;
        let len = file.metadata()?.len();
        Ok(Box::new(HostReader { file, len }))
    }

    fn read_all(&self, path: &str) -> io::Result<(FileMeta, Bytes)> {
        use std::io::Read;
        let mut f = std::fs::File::open(self.full(path)?)?;
        let meta = meta_of(&f.metadata()?);
        if meta.is_dir {
            return Ok((meta, Bytes::new()));
        }
        let mut buf = Vec::with_capacity(meta.len as usize);
        f.read_to_end(&mut buf)?;
        Ok((meta, Bytes::from(buf)))
    }

    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let mut w = self.create_streaming(path)?;
        w.write(data)?;
        w.commit()
    }

    fn create_streaming(&self, path: &str) -> io::Result<Box<dyn StorageWriter>> {
        let full = self.full(path)?;
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)?;
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = full.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        let file = std::fs::File::create(&tmp)?;
        Ok(Box::new(HostWriter {
            file: Some(file),
            tmp,
            full,
            written: 0,
        }))
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<(String, bool)>> {
        let rd = match std::fs::read_dir(self.full(path)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r?,
        };
        rd.map(|e| {
            let e = e?;
            Ok((
                e.file_name().to_string_lossy().into_owned(),
                e.file_type()?.is_dir(),
            ))
        })
        .collect()
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_file(self.full(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Reads up to `len` bytes of `f` at `offset` (short only at end of file).
fn read_file_at(f: &std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(Bytes::from(buf))
}

/// A host file kept open while its body is sent.
struct HostReader {
    file: std::fs::File,
    len: u64,
}

impl StorageReader for HostReader {
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Bytes> {
        read_file_at(&self.file, offset, len)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A host file being written under a temporary name beside its final one.
struct HostWriter {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    full: PathBuf,
    written: u64,
}

impl StorageWriter for HostWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("writer already finished"))?;
        f.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        drop(self.file.take());
        std::fs::rename(&self.tmp, &self.full)
        // On error, Drop removes the temporary file.
    }
}

impl Drop for HostWriter {
    fn drop(&mut self) {
        // Uncommitted (or a failed rename): never leave a partial file.
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_storage_round_trips_and_refuses_escape() {
        let d = tempfile::tempdir().unwrap();
        let s = HostStorage::new(&d.path().join("c"), true).unwrap();
        s.write_atomic("a/b", b"hello").unwrap();
        assert_eq!(s.read_all("a/b").unwrap().1.as_ref(), b"hello");
        assert_eq!(s.read_at("a/b", 1, 10).unwrap().as_ref(), b"ello");
        assert_eq!(s.stat("a/b").unwrap().len, 5);
        assert!(s.read_all("../x").is_err());
        s.remove("a/b").unwrap();
        s.remove("a/b").unwrap();
        assert_eq!(s.stat("a/b").unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn streaming_writer_commits_atomically_and_aborts_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let s = HostStorage::new(d.path(), true).unwrap();
        s.write_atomic("x/f", b"old").unwrap();
        let mut w = s.create_streaming("x/f").unwrap();
        w.write(b"new ").unwrap();
        w.write(b"body").unwrap();
        assert_eq!(w.written(), 8);
        assert_eq!(s.read_all("x/f").unwrap().1.as_ref(), b"old");
        w.commit().unwrap();
        assert_eq!(s.read_all("x/f").unwrap().1.as_ref(), b"new body");
        let mut w = s.create_streaming("x/f").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(s.read_all("x/f").unwrap().1.as_ref(), b"new body");
        assert_eq!(s.list_dir("x").unwrap(), vec![("f".to_string(), false)]);
        assert!(s.list_dir("nothing").unwrap().is_empty());
    }
}
