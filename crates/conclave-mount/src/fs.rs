//! The FUSE operations: each is at most one or two calls of the file-server client.
//!
//! Caching is exact for a single writer (this mount): every change made
//! through the mount passes through the kernel, so its caches stay coherent
//! with it. The kernel keeps attributes and names for `--attr-ttl`, and a
//! file's pages across opens (`FOPEN_KEEP_CACHE`) while the file is
//! unchanged: an open within `--attr-ttl` of the last check of a file that
//! this mount has not changed since costs no file-server call at all (the
//! cache-hit path of NGINX: open, fstat, read from the page cache, close);
//! after the TTL the open asks the server again and keeps the pages only when
//! the file's version (size, mtime, ctime) is the one the pages were loaded
//! at. A change by another client of the file server is therefore seen by
//! the first open after the TTL (docs/nginx.md, "Caching").

use crate::errno::errno_of;
use crate::inodes::{fuse_ino, join, InodeTable, ROOT};
use bytes::Bytes;
use conclave_fs::proto::{ftype, Stat, MAX_IO};
use conclave_fs::{DirEntry, File, FsClient, Metadata, OpenOptions};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes fetched with the open of a file for reading (one READ_PATH round
/// trip gives the attributes and this much data). Small files are then
/// served without another call, and a file whose first blocks fail their
/// integrity check fails at open, so NGINX answers an error status before it
/// has sent a header.
const READ_AHEAD: usize = 128 * 1024;

/// One open file or directory.
enum Handle {
    /// Opened read-only: reads go by path through the client's pool (no
    /// server descriptor, so many readers cost no connections).
    Reader {
        ino: u64,
        /// The first bytes, fetched at open; dropped when this mount writes the file.
        head: Mutex<Option<Head>>,
    },
    /// Opened for writing: a server descriptor on its own connection.
    Writer { ino: u64, file: Mutex<File> },
    /// An open directory: its listing, read once at opendir.
    Dir { entries: Vec<DirEntry> },
}

struct Head {
    data: Bytes,
    /// The data is the whole file (it was shorter than [`READ_AHEAD`]).
    whole: bool,
}

/// What identifies one content of a file on the server: any write or
/// truncate through any client moves `ctime` (ext2 keeps seconds, hence the
/// "racy" rule in [`Seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    size: u64,
    mtime: i64,
    ctime: i64,
}

impl Version {
    fn of(s: &Stat) -> Version {
        Version {
            size: s.size,
            mtime: s.mtime,
            ctime: s.ctime,
        }
    }

    /// Whether a change made at `wall` (seconds) or later must move this
    /// version: its timestamps' second is over, with a second's margin.
    fn stable_at(&self, wall: i64) -> bool {
        self.mtime.max(self.ctime).saturating_add(1) < wall
    }
}

/// The version a file had when the kernel last dropped its pages at an open
/// (so the pages it holds now were read at that version or later).
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: Version,
    /// When the server last confirmed `version`.
    checked: Instant,
    /// `version`'s timestamps were over when it was read (both more than a
    /// second older than this host's clock), so a later change by another
    /// client, made in a later second, cannot carry the same version. A file
    /// changed within the second it was checked in is never kept.
    stable: bool,
}

/// FUSE requests served, by kind, and the file-server calls they cost:
/// logged when the mount exits, to measure what a program's I/O costs.
#[derive(Debug, Default)]
pub struct OpCounts {
    /// lookup.
    pub lookup: AtomicU64,
    /// getattr.
    pub getattr: AtomicU64,
    /// open (files).
    pub open: AtomicU64,
    /// opens answered from the mount's cache (`FOPEN_KEEP_CACHE`, no server call).
    pub open_cached: AtomicU64,
    /// read.
    pub read: AtomicU64,
    /// write.
    pub write: AtomicU64,
    /// flush (the first answers ENOSYS, so the kernel sends no more).
    pub flush: AtomicU64,
    /// release.
    pub release: AtomicU64,
    /// everything else (create, setattr, mkdir, rename, unlink, opendir, ...).
    pub other: AtomicU64,
}

impl std::fmt::Display for OpCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "lookup={} getattr={} open={} (cached {}) read={} write={} flush={} release={} other={}",
            n(&self.lookup),
            n(&self.getattr),
            n(&self.open),
            n(&self.open_cached),
            n(&self.read),
            n(&self.write),
            n(&self.flush),
            n(&self.release),
            n(&self.other)
        )
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The FUSE file system over one file server.
pub struct MountFs {
    client: Arc<FsClient>,
    inodes: RwLock<InodeTable>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    /// By FUSE inode number: what the kernel's pages of the file hold.
    seen: Mutex<HashMap<u64, Seen>>,
    next_fh: AtomicU64,
    ttl: Duration,
    ops: Arc<OpCounts>,
    /// By FUSE inode number: files unlinked or renamed over through this
    /// mount while open here, kept under a hidden name until their last
    /// close (see [`HIDDEN_PREFIX`]).
    hidden: Arc<Mutex<HashMap<u64, String>>>,
    next_hidden: AtomicU64,
    /// Opens hold it shared from their path check to their handle; unlink
    /// and rename hold it exclusively. So a rename over a file either sees
    /// an open that raced it (and hides the file) or comes before its path
    /// check, never between: without it, an NGINX worker's `open` could
    /// succeed and its `fstat` a moment later fail with ESTALE.
    names: RwLock<()>,
}

/// Name prefix of an open file that was unlinked or renamed over. Readers
/// read by path, so the file must keep a path while it is open: as libfuse
/// does with `.fuse_hidden`, the mount renames it to
/// `.conclave_hidden_INO_N` in the same directory and removes it at the last
/// close, so an open file stays readable with its old bytes as POSIX says
/// (NGINX's cache renames a new file over one another worker is reading).
pub const HIDDEN_PREFIX: &str = ".conclave_hidden_";

/// The hidden names of a mount's open-but-removed files, held beyond the
/// FUSE session: a mount that exits while programs still hold such files
/// (SIGTERM with NGINX running: the unmount is then lazy, and every handle
/// of the dead mount fails from then on) removes them, so no
/// `.conclave_hidden_*` file is left in the image. Only a mount killed
/// outright (SIGKILL) leaves them; NGINX's cache loader deletes names in its
/// cache that are not cache keys, and `rm` removes them anywhere else.
pub struct HiddenFiles {
    client: Arc<FsClient>,
    names: Arc<Mutex<HashMap<u64, String>>>,
}

impl HiddenFiles {
    /// Removes every hidden file still recorded; returns how many were removed.
    pub fn remove_all(&self) -> usize {
        let names: Vec<String> = {
            let mut m = self.names.lock().unwrap_or_else(|p| p.into_inner());
            m.drain().map(|(_, n)| n).collect()
        };
        let mut removed = 0;
        for name in names {
            match self.client.remove_file(&name) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("removing {name} at exit: {e}"),
            }
        }
        removed
    }
}

type Res<T> = Result<T, Errno>;

fn err(e: io::Error) -> Errno {
    Errno::from_i32(errno_of(&e))
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn secs(t: TimeOrNow) -> i64 {
    let t = match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn kind(file_type: u8) -> FileType {
    match file_type {
        ftype::DIR => FileType::Directory,
        ftype::SYMLINK => FileType::Symlink,
        _ => FileType::RegularFile,
    }
}

/// FUSE attributes for an image `stat`.
fn attr(s: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(fuse_ino(s.ino)),
        size: s.size,
        blocks: s.blocks,
        atime: time(s.atime),
        mtime: time(s.mtime),
        ctime: time(s.ctime),
        crtime: time(s.ctime),
        kind: kind(s.file_type),
        perm: (s.mode & 0o7777) as u16,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name_str(name: &OsStr) -> Res<&str> {
    let n = name.to_str().ok_or(Errno::EINVAL)?;
    if n.is_empty() || n.contains('/') {
        return Err(Errno::EINVAL);
    }
    Ok(n)
}

impl MountFs {
    /// A file system over `client`; the kernel caches attributes and names for `ttl`.
    pub fn new(client: Arc<FsClient>, ttl: Duration) -> MountFs {
        MountFs {
            client,
            inodes: RwLock::new(InodeTable::default()),
            handles: RwLock::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            ttl,
            ops: Arc::default(),
            hidden: Arc::default(),
            next_hidden: AtomicU64::new(1),
            names: RwLock::new(()),
        }
    }

    /// The files kept under a hidden name (shared, so the process can remove
    /// them when it exits with some still open, see [`HiddenFiles`]).
    pub fn hidden_files(&self) -> HiddenFiles {
        HiddenFiles {
            client: Arc::clone(&self.client),
            names: Arc::clone(&self.hidden),
        }
    }

    /// The request counters (shared, so they can be read after the session ends).
    pub fn op_counts(&self) -> Arc<OpCounts> {
        Arc::clone(&self.ops)
    }

    fn path(&self, ino: INodeNo) -> Res<String> {
        let t = self.inodes.read().unwrap_or_else(|p| p.into_inner());
        // A number the kernel still holds but whose name was removed or
        // renamed by someone else: the handle is stale.
        t.path(ino.0).map(str::to_string).ok_or(Errno::ESTALE)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Res<String> {
        Ok(join(&self.path(parent)?, name_str(name)?))
    }

    fn remember(&self, path: &str, md: &Metadata) -> FileAttr {
        let a = attr(md.stat());
        if a.ino.0 != ROOT {
            self.inodes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(a.ino.0, path.to_string());
        }
        a
    }

    /// The attributes of `path` itself: a symlink is reported as a symlink
    /// (LSTAT), as FUSE expects; the kernel reads its target and resolves it,
    /// one lookup at a time, as on any file system. (STAT would show the
    /// target under the link's name: a dangling link would vanish from
    /// lookups, and a link would share its target's inode number.)
    fn stat_path(&self, path: &str) -> Res<FileAttr> {
        let md = self.client.symlink_metadata(path).map_err(err)?;
        Ok(self.remember(path, &md))
    }

    fn handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        let h = self.handles.read().unwrap_or_else(|p| p.into_inner());
        h.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    /// Whether a file handle of this mount has `ino` open.
    fn is_open(&self, ino: u64) -> bool {
        let h = self.handles.read().unwrap_or_else(|p| p.into_inner());
        h.values().any(|handle| match handle.as_ref() {
            Handle::Reader { ino: i, .. } | Handle::Writer { ino: i, .. } => *i == ino,
            Handle::Dir { .. } => false,
        })
    }

    /// If `path` names a file open here, renames it to a hidden name beside
    /// it and returns its inode number: its readers keep reading its bytes,
    /// and the last release removes it. Between this rename and the caller's
    /// own operation, `path` is briefly absent (libfuse has the same window).
    fn hide_if_open(&self, path: &str) -> Res<Option<u64>> {
        let ino = {
            let t = self.inodes.read().unwrap_or_else(|p| p.into_inner());
            t.ino(path)
        };
        let Some(ino) = ino.filter(|&i| self.is_open(i)) else {
            return Ok(None);
        };
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let n = self.next_hidden.fetch_add(1, Ordering::Relaxed);
        let hidden = join(
            if dir.is_empty() { "/" } else { dir },
            &format!("{HIDDEN_PREFIX}{ino:x}_{n}"),
        );
        self.client.rename(path, &hidden).map_err(err)?;
        self.inodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .rename(path, &hidden);
        self.hidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ino, hidden);
        Ok(Some(ino))
    }

    /// Undoes [`MountFs::hide_if_open`] when the operation it made room for failed.
    fn unhide(&self, ino: u64, path: &str) {
        let Some(hidden) = self.hidden.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino) else {
            return;
        };
        if let Err(e) = self.client.rename(&hidden, path) {
            tracing::warn!("putting {hidden} back as {path}: {e}");
            return;
        }
        self.inodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .rename(&hidden, path);
    }

    /// After a close: removes `ino`'s hidden name if it was the last open.
    fn reap_hidden(&self, ino: u64) {
        if !self
            .hidden
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&ino)
        {
            return;
        }
        // Exclusive, so an open of the same file cannot slip in between.
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if self.is_open(ino) {
            return;
        }
        let Some(hidden) = self.hidden.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino) else {
            return;
        };
        if let Err(e) = self.client.remove_file(&hidden) {
            tracing::warn!("removing {hidden} after its last close: {e}");
        }
        self.inodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_path(&hidden);
        self.changed(ino);
    }

    /// This mount changed `ino`: read-ahead kept by its readers is stale,
    /// and the next open drops the kernel's pages and checks the server.
    fn changed(&self, ino: u64) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
        let h = self.handles.read().unwrap_or_else(|p| p.into_inner());
        for handle in h.values() {
            if let Handle::Reader { ino: i, head } = handle.as_ref() {
                if *i == ino {
                    *head.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        }
    }

    fn do_read(&self, ino: INodeNo, fh: FileHandle, offset: u64, size: u32) -> Res<Vec<u8>> {
        let size = size as usize;
        match self.handle(fh)?.as_ref() {
            Handle::Reader { head, .. } => {
                if let Some(h) = head.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    let len = h.data.len() as u64;
                    if offset + size as u64 <= len || (h.whole && offset <= len) {
                        let end = (offset as usize + size).min(h.data.len());
                        return Ok(h.data[offset as usize..end].to_vec());
                    }
                    if h.whole {
                        return Ok(Vec::new());
                    }
                }
                let path = self.path(ino)?;
                let mut out = Vec::with_capacity(size);
                while out.len() < size {
                    let want = (size - out.len()).min(MAX_IO);
                    let (_, data) = self
                        .client
                        .read_path(&path, offset + out.len() as u64, want)
                        .map_err(err)?;
                    out.extend_from_slice(&data);
                    if data.len() < want {
                        break;
                    }
                }
                Ok(out)
            }
            Handle::Writer { file, .. } => {
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = vec![0u8; size];
                let mut got = 0;
                while got < size {
                    let n = f.read_at(&mut out[got..], offset + got as u64).map_err(err)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                out.truncate(got);
                Ok(out)
            }
            Handle::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Res<u32> {
        let h = self.handle(fh)?;
        let Handle::Writer { ino, file } = h.as_ref() else {
            return Err(Errno::EBADF);
        };
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0;
        while done < data.len() {
            let n = f.write_at(&data[done..], offset + done as u64).map_err(err)?;
            if n == 0 {
                return Err(Errno::EIO);
            }
            done += n;
        }
        drop(f);
        self.changed(*ino);
        Ok(done as u32)
    }

    /// Whether an open of `ino` now may keep the kernel's pages without
    /// asking the server: checked within the TTL, stable, not changed since.
    fn fresh(&self, ino: u64, now: Instant) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&ino)
            .is_some_and(|s| s.stable && now.saturating_duration_since(s.checked) < self.ttl)
    }

    /// Records the server's `stat` of `ino` at an open; true when the kernel
    /// may keep the pages it has (they were loaded at this same, stable version).
    fn check(&self, ino: u64, s: &Stat, now: Instant) -> bool {
        let version = Version::of(s);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let stable = version.stable_at(wall);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let keep = seen.get(&ino).is_some_and(|p| p.stable && p.version == version);
        seen.insert(
            ino,
            Seen {
                version,
                checked: now,
                stable,
            },
        );
        keep
    }

    fn do_open(&self, ino: INodeNo, flags: OpenFlags) -> Res<(FileHandle, FopenFlags)> {
        let _names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let acc = flags.acc_mode();
        if acc == OpenAccMode::O_RDONLY && flags.0 & libc::O_TRUNC == 0 {
            let now = Instant::now();
            // The path check keeps ESTALE for a name removed meanwhile.
            if self.fresh(ino.0, now) && self.path(ino).is_ok() {
                // The cache hit: no server call; reads come from the pages
                // (or, if the kernel evicted some, by path).
                count(&self.ops.open_cached);
                let fh = self.add_handle(Handle::Reader {
                    ino: ino.0,
                    head: Mutex::new(None),
                });
                return Ok((fh, FopenFlags::FOPEN_KEEP_CACHE));
            }
            let path = self.path(ino)?;
            // One round trip: checks the grant, fetches the attributes and the
            // first bytes (an integrity failure there fails the open: EIO).
            let (md, data) = self.client.read_path(&path, 0, READ_AHEAD).map_err(err)?;
            if md.is_dir() {
                return Err(Errno::EISDIR);
            }
            let keep = self.check(ino.0, md.stat(), now);
            let whole = data.len() < READ_AHEAD;
            let fh = self.add_handle(Handle::Reader {
                ino: ino.0,
                head: Mutex::new(Some(Head { data, whole })),
            });
            // Without KEEP_CACHE the kernel drops the file's pages now.
            let keep = if keep {
                FopenFlags::FOPEN_KEEP_CACHE
            } else {
                FopenFlags::empty()
            };
            return Ok((fh, keep));
        }
        let path = self.path(ino)?;
        let mut o = OpenOptions::new();
        o.read(acc == OpenAccMode::O_RDWR)
            .write(acc != OpenAccMode::O_RDONLY)
            .append(flags.0 & libc::O_APPEND != 0)
            .truncate(flags.0 & libc::O_TRUNC != 0);
        let file = self.client.open_with(&path, &o).map_err(err)?;
        self.changed(ino.0);
        let fh = self.add_handle(Handle::Writer {
            ino: ino.0,
            file: Mutex::new(file),
        });
        Ok((fh, FopenFlags::empty()))
    }

    fn do_create(&self, parent: INodeNo, name: &OsStr, mode: u32, flags: i32) -> Res<(FileAttr, FileHandle)> {
        let path = self.child(parent, name)?;
        let mut o = OpenOptions::new();
        o.read(flags & libc::O_ACCMODE == libc::O_RDWR)
            .write(true)
            .create(true)
            .create_new(flags & libc::O_EXCL != 0)
            .truncate(flags & libc::O_TRUNC != 0)
            .append(flags & libc::O_APPEND != 0)
            .mode(mode & 0o7777);
        let mut file = self.client.open_with(&path, &o).map_err(err)?;
        let md = file.metadata().map_err(err)?;
        let a = self.remember(&path, &md);
        self.changed(a.ino.0);
        let fh = self.add_handle(Handle::Writer {
            ino: a.ino.0,
            file: Mutex::new(file),
        });
        Ok((a, fh))
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Res<FileAttr> {
        let path = self.path(ino)?;
        if let Some(size) = size {
            let writer = fh.and_then(|fh| self.handle(fh).ok());
            match writer.as_deref() {
                Some(Handle::Writer { file, .. }) => file
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_len(size)
                    .map_err(err)?,
                _ => self.client.truncate(&path, size).map_err(err)?,
            }
            self.changed(ino.0);
        }
        if let Some(mode) = mode {
            self.client.set_permissions(&path, mode & 0o7777).map_err(err)?;
        }
        if uid.is_some() || gid.is_some() {
            self.client.chown(&path, uid, gid).map_err(err)?;
        }
        if atime.is_some() || mtime.is_some() {
            self.client
                .set_times(&path, atime.map(secs), mtime.map(secs))
                .map_err(err)?;
        }
        self.stat_path(&path)
    }

    fn do_getattr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Res<FileAttr> {
        if let Some(h) = fh.and_then(|fh| self.handle(fh).ok()) {
            if let Handle::Writer { file, .. } = h.as_ref() {
                let md = file
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .metadata()
                    .map_err(err)?;
                return Ok(attr(md.stat()));
            }
        }
        self.stat_path(&self.path(ino)?)
    }

    fn do_mkdir(&self, parent: INodeNo, name: &OsStr, mode: u32) -> Res<FileAttr> {
        let path = self.child(parent, name)?;
        self.client.create_dir(&path).map_err(err)?;
        // MKDIR creates 0755; NGINX's cache levels ask for 0700.
        if mode & 0o7777 != 0o755 {
            self.client.set_permissions(&path, mode & 0o7777).map_err(err)?;
        }
        self.stat_path(&path)
    }

    /// A symlink `name` in `parent` holding `target` as given (relative or
    /// absolute; the file server resolves it inside the image).
    fn do_symlink(&self, parent: INodeNo, name: &OsStr, target: &Path) -> Res<FileAttr> {
        let path = self.child(parent, name)?;
        let target = target.to_str().ok_or(Errno::EINVAL)?;
        self.client.symlink(target, &path).map_err(err)?;
        self.stat_path(&path)
    }

    fn do_remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Res<()> {
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        let path = self.child(parent, name)?;
        if dir {
            self.client.remove_dir(&path).map_err(err)?;
        } else if self.hide_if_open(&path)?.is_some() {
            // Open here: removed at its last close.
            return Ok(());
        } else {
            self.client.remove_file(&path).map_err(err)?;
        }
        let gone = {
            let mut t = self.inodes.write().unwrap_or_else(|p| p.into_inner());
            let ino = t.ino(&path);
            t.remove_path(&path);
            ino
        };
        // Its number may come back for a new file: forget its version.
        if let Some(ino) = gone {
            self.changed(ino);
        }
        Ok(())
    }

    fn do_rename(&self, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr) -> Res<()> {
        let _names = self.names.write().unwrap_or_else(|p| p.into_inner());
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        let hid = if from != to { self.hide_if_open(&to)? } else { None };
        if let Err(e) = self.client.rename(&from, &to) {
            if let Some(ino) = hid {
                self.unhide(ino, &to);
            }
            return Err(err(e));
        }
        let replaced = {
            let mut t = self.inodes.write().unwrap_or_else(|p| p.into_inner());
            let ino = t.ino(&to);
            t.rename(&from, &to);
            ino
        };
        if let Some(ino) = replaced {
            self.changed(ino);
        }
        Ok(())
    }

    fn do_opendir(&self, ino: INodeNo) -> Res<FileHandle> {
        let path = self.path(ino)?;
        let entries = self.client.read_dir(&path).map_err(err)?;
        Ok(self.add_handle(Handle::Dir { entries }))
    }

    fn do_readdir(&self, ino: INodeNo, fh: FileHandle, offset: u64, reply: &mut ReplyDirectory) -> Res<()> {
        let h = self.handle(fh)?;
        let Handle::Dir { entries } = h.as_ref() else {
            return Err(Errno::ENOTDIR);
        };
        // Offsets: 1 after ".", 2 after "..", 3 + i after entries[i].
        let dots = [
            (ino.0, FileType::Directory, "."),
            (ino.0, FileType::Directory, ".."),
        ];
        let listing = dots.into_iter().chain(
            entries
                .iter()
                .map(|e| (fuse_ino(e.ino), kind(e.file_type), e.name.as_str())),
        );
        for (i, (ino, k, name)) in listing.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, k, name) {
                break;
            }
        }
        Ok(())
    }

    fn do_fsync(&self, fh: FileHandle) -> Res<()> {
        match self.handle(fh)?.as_ref() {
            Handle::Writer { file, .. } => file
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sync_all()
                .map_err(err),
            _ => self.client.sync().map_err(err),
        }
    }
}

fn reply_empty(r: Res<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for MountFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        // Attributes refreshed from the server with a new mtime or size drop
        // the file's pages too (a second guard beside the check at open).
        // Lookups of different names in one directory run in parallel.
        for flag in [
            fuser::InitFlags::FUSE_AUTO_INVAL_DATA,
            fuser::InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "not offered by this kernel");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        count(&self.ops.lookup);
        match self.child(parent, name).and_then(|p| self.stat_path(&p)) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        count(&self.ops.getattr);
        match self.do_getattr(ino, fh) {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        count(&self.ops.other);
        match self.do_setattr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        count(&self.ops.other);
        match self.do_mkdir(parent, name, mode & !umask) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        count(&self.ops.other);
        match self.do_symlink(parent, link_name, target) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        count(&self.ops.other);
        reply_empty(self.do_remove(parent, name, false), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        count(&self.ops.other);
        reply_empty(self.do_remove(parent, name, true), reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        count(&self.ops.other);
        // RENAME_NOREPLACE / RENAME_EXCHANGE have no file-server operation.
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        reply_empty(self.do_rename(parent, name, newparent, newname), reply)
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        count(&self.ops.other);
        let r = self.path(ino).and_then(|from| {
            let to = self.child(newparent, newname)?;
            self.client.hard_link(&from, &to).map_err(err)?;
            self.stat_path(&to)
        });
        match r {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        count(&self.ops.other);
        match self
            .path(ino)
            .and_then(|p| self.client.read_link(&p).map_err(err))
        {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        count(&self.ops.open);
        match self.do_open(ino, flags) {
            Ok((fh, f)) => reply.opened(fh, f),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        count(&self.ops.other);
        match self.do_create(parent, name, mode & !umask, flags) {
            Ok((a, fh)) => reply.created(&self.ttl, &a, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        count(&self.ops.read);
        match self.do_read(ino, fh, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        count(&self.ops.write);
        match self.do_write(fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes are sent as they come; close-to-open needs nothing more.
        // ENOSYS tells the kernel so: it sends no FLUSH on later closes,
        // which saves a round trip per close(2).
        count(&self.ops.flush);
        reply.error(Errno::ENOSYS)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Dropping a writer's File closes its server descriptor.
        count(&self.ops.release);
        let gone = self
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        if let Some(Handle::Reader { ino, .. } | Handle::Writer { ino, .. }) = gone.as_deref() {
            self.reap_hidden(*ino);
        }
        reply.ok()
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        count(&self.ops.other);
        reply_empty(self.do_fsync(fh), reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        count(&self.ops.other);
        match self.do_opendir(ino) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        count(&self.ops.other);
        match self.do_readdir(ino, fh, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        count(&self.ops.other);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        count(&self.ops.other);
        reply_empty(self.client.sync().map_err(err), reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        count(&self.ops.other);
        match self.client.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, 255, s.bsize,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Modes are not enforced (docs/fs.md): the server's grants decide.
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn a_version_is_stable_only_once_its_second_and_a_margin_are_over() {
        let v = Version {
            size: 10,
            mtime: 100,
            ctime: 101,
        };
        assert!(!v.stable_at(101));
        assert!(!v.stable_at(102));
        assert!(v.stable_at(103));
        // A clock behind the server's never makes it stable.
        assert!(!v.stable_at(50));
        let extreme = Version {
            size: 0,
            mtime: i64::MAX,
            ctime: 0,
        };
        assert!(!extreme.stable_at(i64::MAX));
    }
}
