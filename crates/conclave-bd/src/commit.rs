//! Atomic commits over any device: [`CommittedDevice`] holds every write in
//! memory until its owner calls [`CommittedDevice::commit`] at a point where
//! the data on it is consistent (the file server: after `Ext2Fs::sync`, on
//! FSYNC, on a size bound, on a timer, at shutdown). A commit
//!
//! 1. writes the changed blocks to the redo log and syncs it (`redo_log.rs`),
//! 2. writes them in place and flushes the device (verity: seals a new root),
//! 3. seals counter + root into the state file and syncs it (`state_file.rs`),
//! 4. writes the counter to the counter file on other storage, if any.
//!
//! So after a crash at any point, [`CommittedDevice::open`] finds either a
//! torn log (discarded: the device is the previous commit) or a complete one
//! (replayed: the device becomes the new commit) — never a half. The open
//! also checks, with no operator input, that the device's seal is the one the
//! state file recorded, and refuses a rollback of the whole set when the
//! operator kept the last root (`expect_root`) or a counter file.
//! `BlockDevice::flush` does not commit: ext2 calls it mid-operation.

use crate::crypt::CryptDevice;
use crate::keys::CommitKeys;
use crate::redo_log::{self, LogContent};
use crate::state_file::{self, Binding, StateRecord};
use crate::std_device::StdDevice;
use crate::verity::VerityDevice;
use crate::{BdError, BlockDevice, DeviceKind, DeviceSpec, SealedRoot, BLOCK_SIZE};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where the commit layer keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOptions {
    /// The sealed state (counter and root of the last commit).
    pub state_file: PathBuf,
    /// The redo log of the commit in progress.
    pub redo_log: PathBuf,
    /// A copy of the counter on other storage; a lower sealed counter is a rollback.
    pub counter_file: Option<PathBuf>,
}

impl CommitOptions {
    /// `IMAGE.state` and `IMAGE.redo` beside the image, no counter file.
    pub fn beside(image: &Path) -> CommitOptions {
        CommitOptions {
            state_file: with_suffix(image, "state"),
            redo_log: with_suffix(image, "redo"),
            counter_file: None,
        }
    }
}

/// `PATH.suffix` (appended, not replacing an extension: `fs.img.state`).
pub fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes the commit files beside `image` (`IMAGE.state`, `IMAGE.redo`):
/// `conclave mkfs` and `mkmerkle` start a new history, against which an old
/// state would be refused (`StateMismatch`). Files elsewhere (`--state-file`)
/// are the operator's to remove.
pub fn forget_commits(image: &Path) -> Result<(), BdError> {
    let o = CommitOptions::beside(image);
    for p in [o.state_file, o.redo_log] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_at(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

/// One commit: its counter and, for tree devices, the root it sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Commits made on this device since its state file was made.
    pub counter: u64,
    /// The Merkle root after the commit (verity, vericrypt).
    pub root: Option<[u8; 32]>,
}

/// `sealed root: HEX (counter N)` for tree devices, `committed (counter N)` otherwise:
/// the line the file server prints on every commit.
impl std::fmt::Display for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.root {
            Some(r) => write!(f, "sealed root: {} (counter {})", hex::encode(r), self.counter),
            None => write!(f, "committed (counter {})", self.counter),
        }
    }
}

/// What [`CommittedDevice::open`] found and did, for the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The commit finished from the redo log, if a crash interrupted one.
    pub replayed: Option<u64>,
    /// A torn log record (crash while it was written) was ignored.
    pub discarded_torn_log: bool,
    /// The state file was made by this open (first start).
    pub initialized: bool,
    /// The state the device opened at.
    pub state: Commit,
}

/// Writes held since the last commit, and the last commit's state.
struct Pending {
    blocks: HashMap<u64, Box<[u8; BLOCK_SIZE]>>,
    state: StateRecord,
    /// Set when a commit failed after its in-place writes began.
    failed: Option<String>,
}

/// A device whose writes become durable only as whole commits.
pub struct CommittedDevice {
    inner: Arc<dyn BlockDevice>,
    keys: CommitKeys,
    bind: Binding,
    log: Option<File>,
    state_file: Option<File>,
    state_path: PathBuf,
    counter_file: Option<PathBuf>,
    read_only: bool,
    pending: RwLock<Pending>,
    pending_blocks: AtomicU64,
}

fn io_at(path: &Path, e: std::io::Error) -> BdError {
    BdError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Opens (or, unless read-only, creates) a small host file; `None` if it is
/// missing and read-only. Creating it syncs its directory.
fn open_or_create(path: &Path, read_only: bool) -> Result<(Option<File>, bool), BdError> {
    match OpenOptions::new().read(true).write(!read_only).open(path) {
        Ok(f) => Ok((Some(f), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && read_only => Ok((None, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| io_at(path, e))?;
            sync_dir(path)?;
            Ok((Some(f), true))
        }
        Err(e) => Err(io_at(path, e)),
    }
}

fn sync_dir(path: &Path) -> Result<(), BdError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_at(dir, e))
}

/// The counter in a counter file; `None` if there is none yet.
fn read_counter(path: &Path) -> Result<Option<u64>, BdError> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            BdError::format(
                path.display(),
                "counter file does not hold a commit counter (one decimal number)",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path, e)),
    }
}

/// Replaces the counter file atomically (temporary file, sync, rename, sync directory).
fn write_counter(path: &Path, counter: u64) -> Result<(), BdError> {
    let tmp = with_suffix(path, "tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| io_at(&tmp, e))?;
        writeln!(f, "{counter}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_at(path, e))?;
    sync_dir(path)
}

/// Opens the device `spec` names (its `expect_root` is checked here, against
/// the state after recovery), with the keys of its commit layer.
fn open_inner(spec: &DeviceSpec) -> Result<(Arc<dyn BlockDevice>, CommitKeys), BdError> {
    let mut plain = spec.clone();
    plain.expect_root = None;
    Ok(match spec.kind {
        DeviceKind::Std => (
            Arc::new(StdDevice::open(&spec.image, spec.read_only)?),
            CommitKeys::public(),
        ),
        DeviceKind::Crypt => {
            let (d, k) = CryptDevice::open_keyed(&plain)?;
            (Arc::new(d), k)
        }
        DeviceKind::Verity | DeviceKind::Vericrypt => {
            let (d, k) = VerityDevice::open_keyed(&plain)?;
            (Arc::new(d), k)
        }
    })
}

fn root_of(dev: &dyn BlockDevice) -> [u8; 32] {
    dev.sealed_root().map(|r| r.root).unwrap_or([0; 32])
}

/// The steps of [`CommittedDevice::open`], over the device just opened.
struct Opened<'a> {
    inner: &'a dyn BlockDevice,
    keys: &'a CommitKeys,
    bind: Binding,
    opts: &'a CommitOptions,
    read_only: bool,
    recovery: Recovery,
}

impl Opened<'_> {
    fn state_what(&self) -> String {
        self.opts.state_file.display().to_string()
    }

    /// The state file's newest record, or (first start: no record yet) a
    /// record of the device as it is, written unless read-only. A missing
    /// record while the counter file says commits were made is refused.
    fn load_state(
        &mut self,
        file: Option<&File>,
        created: bool,
        kept: Option<u64>,
    ) -> Result<StateRecord, BdError> {
        if let Some(f) = file {
            if !created && f.metadata()?.len() > 0 {
                return state_file::read(f, &self.keys.mac, self.bind, &self.state_what());
            }
        }
        if let (Some(k @ 1..), Some(cf)) = (kept, &self.opts.counter_file) {
            return Err(BdError::StateMissing {
                state: self.state_what(),
                counter_file: cf.display().to_string(),
                kept: k,
            });
        }
        let root = root_of(self.inner);
        let rec = StateRecord {
            counter: 0,
            root,
            prev_root: root,
        };
        if let Some(f) = file {
            state_file::write(f, &self.keys.mac, self.bind, &rec)?;
            self.recovery.initialized = true;
        }
        Ok(rec)
    }

    /// Replays a complete log record of the commit after `state` (a crash
    /// came after the log was synced) and seals it; notes a torn one.
    fn finish_interrupted(
        &mut self,
        log: &File,
        state_file: Option<&File>,
        state: &mut StateRecord,
    ) -> Result<(), BdError> {
        match redo_log::inspect(log, self.keys, self.bind)? {
            LogContent::Valid(h) if h.counter == state.counter + 1 && h.base_root == state.root => {
                let Some(sf) = state_file.filter(|_| !self.read_only) else {
                    return Err(BdError::Config(format!(
                        "{} holds commit {} that a crash interrupted; start once without --read-only to finish it",
                        self.opts.redo_log.display(),
                        h.counter
                    )));
                };
                redo_log::replay(log, self.keys, self.bind, &h, |b, d| self.inner.write_block(b, d))?;
                self.inner.flush()?;
                let next = StateRecord {
                    counter: h.counter,
                    root: root_of(self.inner),
                    prev_root: state.root,
                };
                state_file::write(sf, &self.keys.mac, self.bind, &next)?;
                *state = next;
                self.recovery.replayed = Some(h.counter);
            }
            LogContent::Torn => self.recovery.discarded_torn_log = true,
            // Empty, or a record of a commit the state already has.
            _ => {}
        }
        Ok(())
    }

    /// The device must seal the state's root, the pinned root must be the
    /// state's (or the one before), and the counter file must not be ahead.
    fn check_fresh(
        &self,
        state: &StateRecord,
        expected: Option<[u8; 32]>,
        kept: Option<u64>,
    ) -> Result<(), BdError> {
        let device_root = root_of(self.inner);
        if self.bind.kind.has_tree() && device_root != state.root {
            return Err(BdError::StateMismatch {
                state: self.state_what(),
                counter: state.counter,
                recorded: hex::encode(state.root),
                device: hex::encode(device_root),
            });
        }
        if let Some(e) = expected {
            if e != state.root && e != state.prev_root {
                return Err(BdError::RootMismatch {
                    expected: hex::encode(e),
                    found: hex::encode(state.root),
                });
            }
        }
        if let (Some(k), Some(cf)) = (kept, &self.opts.counter_file) {
            if k > state.counter {
                return Err(BdError::Rollback {
                    state: self.state_what(),
                    sealed: state.counter,
                    counter_file: cf.display().to_string(),
                    kept: k,
                });
            }
        }
        Ok(())
    }
}

impl CommittedDevice {
    /// Opens the device, finishes or discards an interrupted commit, checks
    /// the device against the state file, and refuses a rollback that the
    /// pinned root or the counter file reveals (see the module doc).
    pub fn open(
        spec: &DeviceSpec,
        opts: &CommitOptions,
    ) -> Result<(Arc<CommittedDevice>, Recovery), BdError> {
        if spec.expect_root.is_some() && !spec.kind.has_tree() {
            return Err(BdError::Config(format!(
                "device {} has no root to pin",
                spec.kind
            )));
        }
        let expected = spec.expected_root()?;
        let (inner, keys) = open_inner(spec)?;
        let ro = spec.read_only;
        let kept = match &opts.counter_file {
            Some(p) => read_counter(p)?,
            None => None,
        };
        let mut opened = Opened {
            bind: Binding {
                kind: spec.kind,
                blocks: inner.block_count(),
            },
            inner: &*inner,
            keys: &keys,
            opts,
            read_only: ro,
            recovery: Recovery {
                replayed: None,
                discarded_torn_log: false,
                initialized: false,
                state: Commit {
                    counter: 0,
                    root: None,
                },
            },
        };
        let (state_file, created) = open_or_create(&opts.state_file, ro)?;
        let mut state = opened.load_state(state_file.as_ref(), created, kept)?;
        let (log, _) = open_or_create(&opts.redo_log, ro)?;
        if let Some(f) = &log {
            opened.finish_interrupted(f, state_file.as_ref(), &mut state)?;
        }
        opened.check_fresh(&state, expected, kept)?;
        if let Some(cf) = &opts.counter_file {
            if !ro && kept != Some(state.counter) {
                write_counter(cf, state.counter)?;
            }
        }
        let (bind, mut recovery) = (opened.bind, opened.recovery);
        let dev = CommittedDevice {
            inner,
            keys,
            bind,
            log,
            state_file,
            state_path: opts.state_file.clone(),
            counter_file: opts.counter_file.clone(),
            read_only: ro,
            pending: RwLock::new(Pending {
                blocks: HashMap::new(),
                state,
                failed: None,
            }),
            pending_blocks: AtomicU64::new(0),
        };
        recovery.state = dev.commit_of(&state);
        Ok((Arc::new(dev), recovery))
    }

    fn commit_of(&self, s: &StateRecord) -> Commit {
        Commit {
            counter: s.counter,
            root: self.bind.kind.has_tree().then_some(s.root),
        }
    }

    fn read_pending(&self) -> RwLockReadGuard<'_, Pending> {
        self.pending.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_pending(&self) -> RwLockWriteGuard<'_, Pending> {
        self.pending.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes written since the last commit (what a commit would log).
    pub fn pending_bytes(&self) -> u64 {
        self.pending_blocks.load(Ordering::Relaxed) * BLOCK_SIZE as u64
    }

    /// The last commit (or the state found at open).
    pub fn last_commit(&self) -> Commit {
        self.commit_of(&self.read_pending().state)
    }

    /// The state file this device seals into.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Makes every write since the last commit durable as one unit and
    /// returns the new commit; `None` if nothing changed. The caller must
    /// call it only where the data is consistent (an operation boundary).
    pub fn commit(&self) -> Result<Option<Commit>, BdError> {
        if self.read_only {
            return Ok(None);
        }
        let mut p = self.write_pending();
        if let Some(why) = &p.failed {
            return Err(BdError::CommitFailed(why.clone()));
        }
        if p.blocks.is_empty() {
            return Ok(None);
        }
        let (Some(log), Some(sf)) = (&self.log, &self.state_file) else {
            return Err(BdError::ReadOnly);
        };
        let mut list: Vec<(u64, &[u8; BLOCK_SIZE])> = p.blocks.iter().map(|(b, d)| (*b, &**d)).collect();
        list.sort_unstable_by_key(|(b, _)| *b);
        let counter = p.state.counter + 1;
        // Until the log is synced a failure changes nothing: the writes stay pending.
        redo_log::write(log, &self.keys, self.bind, counter, p.state.root, &list)?;
        let applied = (|| {
            for (b, d) in &list {
                self.inner.write_block(*b, d)?;
            }
            self.inner.flush()?;
            let next = StateRecord {
                counter,
                root: root_of(&*self.inner),
                prev_root: p.state.root,
            };
            state_file::write(sf, &self.keys.mac, self.bind, &next)?;
            Ok::<_, BdError>(next)
        })();
        drop(list);
        let next = match applied {
            Ok(n) => n,
            Err(e) => {
                // The device is between two commits; only a replay at the next open mends it.
                p.failed = Some(e.to_string());
                return Err(e);
            }
        };
        p.state = next;
        p.blocks.clear();
        self.pending_blocks.store(0, Ordering::Relaxed);
        if let Some(cf) = &self.counter_file {
            // The commit is durable already; a stale counter file only makes the
            // next open rewrite it (it refuses only counters above the sealed one).
            write_counter(cf, counter)?;
        }
        Ok(Some(self.commit_of(&next)))
    }
}

impl BlockDevice for CommittedDevice {
    fn block_count(&self) -> u64 {
        self.bind.blocks
    }

    /// The inner device's: a std image need not be whole 4 KiB blocks.
    fn byte_len(&self) -> u64 {
        self.inner.byte_len()
    }

    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        let p = self.read_pending();
        if let Some(d) = p.blocks.get(&idx) {
            buf.copy_from_slice(&d[..]);
            return Ok(());
        }
        // Still under the lock, so a commit cannot move the block in between.
        self.inner.read_block(idx, buf)
    }

    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        if self.read_only {
            return Err(BdError::ReadOnly);
        }
        if idx >= self.bind.blocks {
            return Err(BdError::OutOfRange {
                block: idx,
                count: self.bind.blocks,
            });
        }
        let mut p = self.write_pending();
        if let Some(why) = &p.failed {
            return Err(BdError::CommitFailed(why.clone()));
        }
        if p.blocks.insert(idx, Box::new(*buf)).is_none() {
            self.pending_blocks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Does nothing: durability comes only from [`CommittedDevice::commit`],
    /// because ext2 flushes mid-operation (to mark itself "not clean").
    fn flush(&self) -> Result<(), BdError> {
        Ok(())
    }

    /// The last commit's counter and root (tree devices).
    fn sealed_root(&self) -> Option<SealedRoot> {
        let c = self.last_commit();
        c.root.map(|root| SealedRoot {
            counter: c.counter,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create, CreateOptions, KdfParams};

    fn setup(kind: DeviceKind) -> (tempfile::TempDir, DeviceSpec) {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, vec![0u8; 64 * BLOCK_SIZE]).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"commit test secret").unwrap();
        let mut perms = std::fs::metadata(&secret).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&secret, perms).unwrap();
        let mut spec = DeviceSpec::new(kind, dir.path().join("img"));
        if kind != DeviceKind::Std {
            spec = spec.secret_file(&secret);
        }
        if kind.has_tree() {
            spec = spec.tree(dir.path().join("tree"));
        }
        let opts = CreateOptions {
            kdf: KdfParams::MIN,
            ..CreateOptions::default()
        };
        create(&spec, &raw, &opts).unwrap();
        (dir, spec)
    }

    fn opts(dir: &Path) -> CommitOptions {
        CommitOptions {
            counter_file: Some(dir.join("counter")),
            ..CommitOptions::beside(&dir.join("img"))
        }
    }

    fn read(dev: &dyn BlockDevice, b: u64) -> u8 {
        let mut buf = [0u8; BLOCK_SIZE];
        dev.read_block(b, &mut buf).unwrap();
        buf[0]
    }

    #[test]
    fn uncommitted_writes_vanish_and_committed_ones_stay() {
        for kind in DeviceKind::ALL {
            let (dir, spec) = setup(kind);
            let (dev, rec) = CommittedDevice::open(&spec, &opts(dir.path())).unwrap();
            assert!(rec.initialized, "{kind}");
            dev.write_block(3, &[1; BLOCK_SIZE]).unwrap();
            assert_eq!(read(&*dev, 3), 1, "{kind}: a pending write reads back");
            let c = dev.commit().unwrap().unwrap();
            assert_eq!(c.counter, 1);
            assert_eq!(c.root.is_some(), kind.has_tree());
            assert_eq!(dev.commit().unwrap(), None, "nothing pending");
            dev.write_block(3, &[2; BLOCK_SIZE]).unwrap();
            dev.write_block(4, &[2; BLOCK_SIZE]).unwrap();
            drop(dev); // a crash: pending writes are lost
            let (dev, rec) = CommittedDevice::open(&spec, &opts(dir.path())).unwrap();
            assert_eq!(
                (rec.state, rec.replayed, rec.initialized),
                (c, None, false),
                "{kind}"
            );
            assert_eq!((read(&*dev, 3), read(&*dev, 4)), (1, 0), "{kind}");
            assert_eq!(
                std::fs::read_to_string(dir.path().join("counter")).unwrap(),
                "1\n"
            );
        }
    }

    #[test]
    fn a_complete_log_is_replayed_and_a_torn_one_discarded() {
        for kind in [DeviceKind::Std, DeviceKind::Vericrypt] {
            let (dir, spec) = setup(kind);
            let o = opts(dir.path());
            let (dev, _) = CommittedDevice::open(&spec, &o).unwrap();
            dev.write_block(5, &[5; BLOCK_SIZE]).unwrap();
            let first = dev.commit().unwrap().unwrap();
            drop(dev);
            // A crash right after the log of commit 2 was synced: nothing in place yet.
            let (inner, keys) = open_inner(&spec).unwrap();
            let bind = Binding {
                kind,
                blocks: inner.block_count(),
            };
            let log = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&o.redo_log)
                .unwrap();
            let blk = [9u8; BLOCK_SIZE];
            redo_log::write(
                &log,
                &keys,
                bind,
                2,
                first.root.unwrap_or([0; 32]),
                &[(5, &blk), (6, &blk)],
            )
            .unwrap();
            drop(inner);
            let (dev, rec) = CommittedDevice::open(&spec, &o).unwrap();
            assert_eq!(rec.replayed, Some(2), "{kind}");
            assert_eq!(rec.state.counter, 2);
            assert_eq!((read(&*dev, 5), read(&*dev, 6)), (9, 9), "{kind}");
            drop(dev);
            // Opening again replays nothing (the state has commit 2).
            let (_, rec) = CommittedDevice::open(&spec, &o).unwrap();
            assert_eq!((rec.replayed, rec.state.counter), (None, 2));
            // A torn record of commit 3 is discarded.
            let raw = std::fs::read(&o.redo_log).unwrap();
            let mut torn = raw[..raw.len() / 2].to_vec();
            torn[24..32].copy_from_slice(&3u64.to_le_bytes());
            std::fs::write(&o.redo_log, &torn).unwrap();
            let (dev, rec) = CommittedDevice::open(&spec, &o).unwrap();
            assert!(rec.discarded_torn_log);
            assert_eq!((rec.state.counter, read(&*dev, 5)), (2, 9));
        }
    }

    #[test]
    fn a_rolled_back_set_is_refused_with_the_counter_file_or_the_pinned_root() {
        let (dir, spec) = setup(DeviceKind::Verity);
        let o = opts(dir.path());
        let (dev, _) = CommittedDevice::open(&spec, &o).unwrap();
        dev.write_block(1, &[1; BLOCK_SIZE]).unwrap();
        let old = dev.commit().unwrap().unwrap();
        drop(dev);
        let saved: Vec<(PathBuf, Vec<u8>)> = ["img", "tree", "img.state", "img.redo"]
            .iter()
            .map(|n| (dir.path().join(n), std::fs::read(dir.path().join(n)).unwrap()))
            .collect();
        let (dev, _) = CommittedDevice::open(&spec, &o).unwrap();
        for i in 2..4u8 {
            dev.write_block(1, &[i; BLOCK_SIZE]).unwrap();
            dev.commit().unwrap().unwrap();
        }
        let last = dev.last_commit();
        drop(dev);
        for (p, b) in &saved {
            std::fs::write(p, b).unwrap();
        }
        match CommittedDevice::open(&spec, &o) {
            Err(BdError::Rollback { sealed, kept, .. }) => assert_eq!((sealed, kept), (1, 3)),
            Err(e) => panic!("wrong refusal: {e}"),
            Ok(_) => panic!("rollback accepted"),
        }
        let pinned = spec.clone().expect_root(hex::encode(last.root.unwrap()));
        let no_counter = CommitOptions {
            counter_file: None,
            ..o.clone()
        };
        assert!(matches!(
            CommittedDevice::open(&pinned, &no_counter),
            Err(BdError::RootMismatch { .. })
        ));
        // Without either, the older set is all there is to go by: accepted.
        let (dev, rec) = CommittedDevice::open(&spec, &no_counter).unwrap();
        assert_eq!(rec.state, old);
        assert_eq!(read(&*dev, 1), 1);
    }

    #[test]
    fn a_deleted_state_file_is_refused_under_a_counter_file_and_read_only_never_replays() {
        let (dir, spec) = setup(DeviceKind::Crypt);
        let o = opts(dir.path());
        let (dev, _) = CommittedDevice::open(&spec, &o).unwrap();
        dev.write_block(2, &[2; BLOCK_SIZE]).unwrap();
        dev.commit().unwrap().unwrap();
        drop(dev);
        let state = std::fs::read(&o.state_file).unwrap();
        std::fs::remove_file(&o.state_file).unwrap();
        assert!(matches!(
            CommittedDevice::open(&spec, &o),
            Err(BdError::StateMissing { kept: 1, .. })
        ));
        std::fs::write(&o.state_file, &state).unwrap();
        // A commit interrupted after its log was synced: read-only names it and stops.
        let (inner, keys) = open_inner(&spec).unwrap();
        let bind = Binding {
            kind: DeviceKind::Crypt,
            blocks: inner.block_count(),
        };
        let log = OpenOptions::new().write(true).open(&o.redo_log).unwrap();
        redo_log::write(&log, &keys, bind, 2, [0; 32], &[(3, &[3; BLOCK_SIZE])]).unwrap();
        drop(inner);
        let ro = spec.clone().read_only(true);
        match CommittedDevice::open(&ro, &o) {
            Err(BdError::Config(m)) => assert!(m.contains("holds commit 2"), "{m}"),
            Err(e) => panic!("wrong refusal: {e}"),
            Ok(_) => panic!("read-only open over a pending commit"),
        }
        let (dev, rec) = CommittedDevice::open(&spec, &o).unwrap();
        assert_eq!((rec.replayed, read(&*dev, 3)), (Some(2), 3));
    }

    #[test]
    fn a_replaced_state_or_tree_is_named() {
        let (dir, spec) = setup(DeviceKind::Vericrypt);
        let o = CommitOptions::beside(&dir.path().join("img"));
        let (dev, _) = CommittedDevice::open(&spec, &o).unwrap();
        let state0 = std::fs::read(&o.state_file).unwrap();
        // Two commits, so the redo log (commit 2) cannot lead from the old state.
        for i in 1..3u8 {
            dev.write_block(1, &[i; BLOCK_SIZE]).unwrap();
            dev.commit().unwrap().unwrap();
        }
        drop(dev);
        std::fs::write(&o.state_file, &state0).unwrap();
        assert!(matches!(
            CommittedDevice::open(&spec, &o),
            Err(BdError::StateMismatch { counter: 0, .. })
        ));
        std::fs::write(&o.state_file, b"garbage").unwrap();
        assert!(matches!(
            CommittedDevice::open(&spec, &o),
            Err(BdError::Format { .. })
        ));
    }
}
