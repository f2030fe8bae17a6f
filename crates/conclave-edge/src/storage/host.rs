//! Host directories as storage (the seed's `nonextfs`).

use super::{FileMeta, Storage};
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
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(self.full(path)?)?;
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
        use std::io::Write;
        let full = self.full(path)?;
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir)?;
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = full.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        drop(f);
        std::fs::rename(&tmp, &full).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        match std::fs::remove_file(self.full(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
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
}
