//! smc: memory files with no server. Host files under a directory, one set
//! per memory file (named by [`crate::name::host_stem`]):
//!
//! * `<stem>.lock` — empty; an exclusive `flock` on it is the memory file's lock.
//! * `<stem>.meta` — empty; an exclusive `flock` on it serialises opening and
//!   closing (so an open never waits for a lock holder). Lock files are
//!   never deleted (deleting a lock file races with its next user).
//! * `<stem>.ref` — every process with the memory file open holds a shared
//!   `flock` on it; the closer that can take it exclusively is the last one
//!   and removes the segment. The kernel drops a dead process's locks, so a
//!   crash neither blocks others nor leaks a count.
//! * `<stem>.seg` — [`SegmentFile`]: header + AES-256-GCM ciphertext, written
//!   to `<stem>.tmp` and renamed over, so a crash mid-write leaves the old one.
//!
//! The key is derived (HKDF-SHA256) from the conclave's secret file and the
//! name. What smc does not protect: rollback (an old `.seg` of the same name
//! opens fine), a host that deletes files, or a host that ignores `flock`.

use crate::client::{MemoryFile, MemoryStore, Segment};
use crate::proto::{KEY_LEN, TAG_LEN};
use crate::segment_seal::{self, NONCE_LEN};
use crate::{name, MemError, MAX_SEGMENT};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Shortest secret file accepted.
pub const MIN_SECRET: usize = 16;

/// The on-disk layout of `<stem>.seg`: `magic[8] "CNCLSMC1"`, `u64 version`,
/// `u64 size`, `nonce[12]`, `tag[16]` (all big-endian), then `size` bytes of
/// ciphertext. AAD = ("smc", name, version, size).
pub struct SegmentFile {
    /// Number of publishes.
    pub version: u64,
    /// Segment size.
    pub size: u64,
    /// GCM nonce (random per publish).
    pub nonce: [u8; NONCE_LEN],
    /// GCM tag.
    pub tag: [u8; TAG_LEN],
}

impl SegmentFile {
    /// Magic bytes at offset 0.
    pub const MAGIC: &'static [u8; 8] = b"CNCLSMC1";
    /// Header length.
    pub const HEADER_LEN: usize = 8 + 8 + 8 + NONCE_LEN + TAG_LEN;

    /// Parses a header, checking the magic.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        if b.len() < Self::HEADER_LEN {
            return Err(format!(
                "{} bytes is shorter than the {}-byte header",
                b.len(),
                Self::HEADER_LEN
            ));
        }
        if &b[..8] != Self::MAGIC {
            return Err("bad magic (not an smc segment file)".into());
        }
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Ok(SegmentFile {
            version: u64_at(8),
            size: u64_at(16),
            nonce: b[24..36].try_into().expect("12 bytes"),
            tag: b[36..52].try_into().expect("16 bytes"),
        })
    }

    /// The header bytes.
    pub fn to_bytes(&self) -> [u8; Self::HEADER_LEN] {
        let mut b = [0u8; Self::HEADER_LEN];
        b[..8].copy_from_slice(Self::MAGIC);
        b[8..16].copy_from_slice(&self.version.to_be_bytes());
        b[16..24].copy_from_slice(&self.size.to_be_bytes());
        b[24..36].copy_from_slice(&self.nonce);
        b[36..52].copy_from_slice(&self.tag);
        b
    }
}

/// Memory files in a host directory, sealed under the conclave's secret.
pub struct SmcStore {
    dir: PathBuf,
    master: Zeroizing<[u8; KEY_LEN]>,
}

impl SmcStore {
    /// Opens the store over `dir` (created if missing) with the key derived
    /// from `secret_file` (at least [`MIN_SECRET`] bytes).
    pub fn new(dir: &Path, secret_file: &Path) -> Result<Self, MemError> {
        // Refused when group or others may read it (conclave_secret).
        let secret =
            conclave_secret::read_private(secret_file).map_err(|e| MemError::Config(e.to_string()))?;
        if secret.len() < MIN_SECRET {
            return Err(MemError::Config(format!(
                "secret file {} holds {} bytes; at least {MIN_SECRET} are needed",
                secret_file.display(),
                secret.len()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| MemError::io(dir, e))?;
        Ok(SmcStore {
            dir: dir.to_path_buf(),
            master: segment_seal::derive_key(b"conclave-smc-v1", &secret, &[b"master"]),
        })
    }
}

fn open_rw(path: &Path) -> Result<File, MemError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| MemError::io(path, e))
}

fn flock(f: File, arg: FlockArg, path: &Path) -> Result<Flock<File>, MemError> {
    let mut f = f;
    loop {
        match Flock::lock(f, arg) {
            Ok(l) => return Ok(l),
            Err((back, Errno::EINTR)) => f = back,
            Err((_, e)) => return Err(MemError::io(path, e.into())),
        }
    }
}

fn unflock(l: Flock<File>, path: &Path) -> Result<File, MemError> {
    l.unlock().map_err(|(_, e)| MemError::io(path, e.into()))
}

/// Reads `<stem>.seg`: `None` if it does not exist.
fn read_segment(path: &Path) -> Result<Option<(SegmentFile, Vec<u8>)>, MemError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MemError::io(path, e)),
    };
    let mut all = Vec::new();
    f.read_to_end(&mut all).map_err(|e| MemError::io(path, e))?;
    let hdr = SegmentFile::from_bytes(&all).map_err(|reason| MemError::BadHostFile {
        path: path.to_path_buf(),
        reason,
    })?;
    all.drain(..SegmentFile::HEADER_LEN);
    Ok(Some((hdr, all)))
}

impl MemoryStore for SmcStore {
    fn open(&self, name: &str, size: usize) -> Result<MemoryFile, MemError> {
        name::validate(name)?;
        if size > MAX_SEGMENT {
            return Err(MemError::TooLarge {
                requested: size as u64,
                max: MAX_SEGMENT as u64,
            });
        }
        let stem = name::host_stem(name);
        let p = |ext: &str| self.dir.join(format!("{stem}.{ext}"));
        let meta_path = p("meta");
        let guard = flock(open_rw(&meta_path)?, FlockArg::LockExclusive, &meta_path)?;
        let key = segment_seal::derive_key(
            b"conclave-smc-v1",
            self.master.as_ref(),
            &[b"segment key\0", name.as_bytes()],
        );
        match read_segment(&p("seg"))? {
            Some((hdr, _)) if hdr.size != size as u64 => {
                return Err(MemError::SizeMismatch {
                    name: name.to_string(),
                    requested: size as u64,
                    existing: hdr.size,
                });
            }
            Some(_) => {}
            // The first opener writes version 0 (zeros), which fixes the size.
            None => write_segment_file(&self.dir, &stem, &key, name, 0, &vec![0; size])?,
        }
        let ref_path = p("ref");
        // Nobody holds .ref exclusively outside the .lock section we are in.
        let ref_lock = flock(open_rw(&ref_path)?, FlockArg::LockSharedNonblock, &ref_path)?;
        let lock_file = open_rw(&p("lock"))?;
        drop(guard);
        let seg = SmcSegment {
            name: name.to_string(),
            size,
            dir: self.dir.clone(),
            stem,
            key,
            lock: LockState::Free(lock_file),
            ref_lock: Some(ref_lock),
            version: 0,
        };
        Ok(MemoryFile::new(name, size, Box::new(seg)))
    }

    fn kind(&self) -> &'static str {
        "smc"
    }
}

enum LockState {
    Free(File),
    Held(Flock<File>),
    Gone,
}

struct SmcSegment {
    name: String,
    size: usize,
    dir: PathBuf,
    stem: String,
    key: Zeroizing<[u8; KEY_LEN]>,
    lock: LockState,
    ref_lock: Option<Flock<File>>,
    version: u64,
}

impl SmcSegment {
    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }

    fn take_lock(&mut self, timeout: Option<Duration>) -> Result<(), MemError> {
        let path = self.path("lock");
        let file = match std::mem::replace(&mut self.lock, LockState::Gone) {
            LockState::Free(f) => f,
            held @ LockState::Held(_) => {
                self.lock = held;
                return Err(MemError::AlreadyHeld(self.name.clone()));
            }
            LockState::Gone => return Err(MemError::Closed(self.name.clone())),
        };
        let Some(t) = timeout else {
            self.lock = LockState::Held(flock(file, FlockArg::LockExclusive, &path)?);
            return Ok(());
        };
        // flock has no timeout: poll the non-blocking form until the deadline.
        let deadline = Instant::now() + t;
        let mut f = file;
        loop {
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => {
                    self.lock = LockState::Held(l);
                    return Ok(());
                }
                Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => f = back,
                Err((back, e)) => {
                    self.lock = LockState::Free(back);
                    return Err(MemError::io(path, e.into()));
                }
            }
            if Instant::now() >= deadline {
                self.lock = LockState::Free(f);
                return Err(MemError::Timeout {
                    name: self.name.clone(),
                    ms: t.as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn drop_lock(&mut self) -> Result<(), MemError> {
        match std::mem::replace(&mut self.lock, LockState::Gone) {
            LockState::Held(l) => {
                self.lock = LockState::Free(unflock(l, &self.path("lock"))?);
                Ok(())
            }
            other => {
                self.lock = other;
                Err(MemError::NotHolder(self.name.clone()))
            }
        }
    }

    fn write_segment(&mut self, data: &[u8]) -> Result<(), MemError> {
        let version = self.version + 1;
        write_segment_file(&self.dir, &self.stem, &self.key, &self.name, version, data)?;
        self.version = version;
        Ok(())
    }
}

/// Seals `data` as `version` into `<stem>.tmp` and renames it over `<stem>.seg`.
fn write_segment_file(
    dir: &Path,
    stem: &str,
    key: &[u8; KEY_LEN],
    name: &str,
    version: u64,
    data: &[u8],
) -> Result<(), MemError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| MemError::Config(format!("no randomness: {e}")))?;
    let mut ct = data.to_vec();
    let size = data.len() as u64;
    let tag = segment_seal::seal(
        key,
        &nonce,
        &segment_seal::aad(b"smc", name, version, size),
        &mut ct,
    );
    let hdr = SegmentFile {
        version,
        size,
        nonce,
        tag,
    };
    let tmp = dir.join(format!("{stem}.tmp"));
    let mut f = File::create(&tmp).map_err(|e| MemError::io(&tmp, e))?;
    f.write_all(&hdr.to_bytes())
        .and_then(|()| f.write_all(&ct))
        .map_err(|e| MemError::io(&tmp, e))?;
    let seg = dir.join(format!("{stem}.seg"));
    std::fs::rename(&tmp, &seg).map_err(|e| MemError::io(&seg, e))?;
    Ok(())
}

impl Segment for SmcSegment {
    fn lock(&mut self, timeout: Option<Duration>, buf: &mut [u8]) -> Result<u64, MemError> {
        self.take_lock(timeout)?;
        let path = self.path("seg");
        let Some((hdr, mut ct)) = read_segment(&path)? else {
            buf.fill(0);
            self.version = 0;
            return Ok(0);
        };
        if hdr.size != self.size as u64 || ct.len() != self.size {
            return Err(MemError::BadHostFile {
                path,
                reason: format!(
                    "holds a {}-byte segment ({} bytes of ciphertext); expected {}",
                    hdr.size,
                    ct.len(),
                    self.size
                ),
            });
        }
        let aad = segment_seal::aad(b"smc", &self.name, hdr.version, hdr.size);
        segment_seal::open(&self.key, &hdr.nonce, &aad, &mut ct, &hdr.tag).map_err(|_| {
            MemError::Tampered {
                name: self.name.clone(),
                version: hdr.version,
            }
        })?;
        buf.copy_from_slice(&ct);
        self.version = hdr.version;
        Ok(hdr.version)
    }

    fn unlock(&mut self, publish: Option<&[u8]>) -> Result<(), MemError> {
        if !matches!(self.lock, LockState::Held(_)) {
            return Err(MemError::NotHolder(self.name.clone()));
        }
        let res = match publish {
            Some(d) if self.size > 0 => self.write_segment(d),
            _ => Ok(()),
        };
        self.drop_lock()?;
        res
    }

    fn close(&mut self) -> Result<(), MemError> {
        if matches!(self.lock, LockState::Held(_)) {
            self.drop_lock()?;
        }
        let Some(ref_lock) = self.ref_lock.take() else {
            return Ok(());
        };
        self.lock = LockState::Gone;
        let meta_path = self.path("meta");
        let guard = flock(open_rw(&meta_path)?, FlockArg::LockExclusive, &meta_path)?;
        let ref_path = self.path("ref");
        let ref_file = unflock(ref_lock, &ref_path)?;
        match Flock::lock(ref_file, FlockArg::LockExclusiveNonblock) {
            Ok(last) => {
                for ext in ["seg", "tmp", "ref"] {
                    let _ = std::fs::remove_file(self.path(ext));
                }
                drop(last);
            }
            Err((_, Errno::EWOULDBLOCK)) => {}
            Err((_, e)) => return Err(MemError::io(ref_path, e.into())),
        }
        drop(guard);
        Ok(())
    }
}

impl Drop for SmcSegment {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(name = %self.name, "closing smc memory file: {e}");
        }
    }
}
