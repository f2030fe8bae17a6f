//! The file server: one ext2 file system shared by every connection, each
//! connection with its own descriptor table.

mod access;
mod attrs;
mod dir;
mod fdtable;
mod file;
mod names;
mod path;

use crate::grants::Grants;
use crate::proto;
use conclave_bd::{Commit, CommittedDevice};
use conclave_ext2::{Ext2Error, Ext2Fs, Metadata};
use conclave_rpc::{BodyReader, Frame, Identity, PeerInfo, Role, Service, Status};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use fdtable::FdTable;

/// Normalises a client or grant path (`/a/./b/../c//` → `/a/c`); `..`
/// above the root is `EACCES`.
pub(crate) fn normalize_path(p: &str) -> Result<String, Status> {
    path::normalize(p)
}

/// Settings of a file server.
#[derive(Clone, Debug)]
pub struct FileServerOptions {
    /// Descriptors one connection may hold open.
    pub max_open_per_client: usize,
    /// Roles allowed to connect (their certificate's name).
    pub allowed_roles: Vec<Role>,
    /// Refuse every mutation (for images that were not cleanly shut down).
    pub read_only: bool,
    /// Largest data one WRITE/PWRITE may carry; larger ones get `EFBIG`
    /// before the file system is locked, so one client cannot hold the
    /// (single, shared) write lock for an arbitrarily long write. Capped by
    /// the frame body limit (`proto::MAX_IO` of data) in any case.
    pub max_write_per_request: usize,
    /// What each identity may do where (`--grant`); none: every TLS peer
    /// is denied everything. Peers without TLS (in-process callers) are
    /// not checked.
    pub grants: Grants,
}

impl Default for FileServerOptions {
    fn default() -> Self {
        FileServerOptions {
            max_open_per_client: 1024,
            allowed_roles: vec![Role::Edge, Role::Client],
            read_only: false,
            max_write_per_request: crate::proto::MAX_IO,
            grants: Grants::default(),
        }
    }
}

/// What a commit reports to (the process prints `sealed root: HEX (counter N)`).
pub type CommitHook = Box<dyn Fn(&Commit) + Send + Sync>;

/// Atomic commits: the device that holds writes until a commit, when one is
/// due, and who hears of each.
struct Commits {
    dev: Arc<CommittedDevice>,
    max_pending: u64,
    on_commit: CommitHook,
}

/// The file-server service (plug it into `conclave_rpc::Server`).
pub struct FileServer {
    fs: RwLock<Ext2Fs>,
    opts: FileServerOptions,
    commits: Option<Commits>,
}

/// Maps an ext2 error to the status sent to the client; device errors and
/// corrupt metadata are logged with their message (the wire carries only the errno).
pub(crate) fn status(e: Ext2Error) -> Status {
    match e {
        Ext2Error::Device(ref d) => tracing::warn!("device error: {d}"),
        Ext2Error::Corrupt(ref m) => tracing::warn!("corrupt file system: {m}"),
        _ => {}
    }
    Status(e.errno() as u32)
}

/// The wire form of ext2 metadata.
pub(crate) fn stat_of(m: &Metadata) -> proto::Stat {
    use conclave_ext2::FileType;
    proto::Stat {
        ino: m.ino.0 as u64,
        file_type: match m.file_type {
            FileType::File => proto::ftype::FILE,
            FileType::Dir => proto::ftype::DIR,
            FileType::Symlink => proto::ftype::SYMLINK,
            FileType::Special => proto::ftype::SPECIAL,
        },
        mode: m.mode as u32,
        uid: m.uid,
        gid: m.gid,
        size: m.size,
        nlink: m.links as u32,
        blocks: m.blocks,
        atime: m.atime as i64,
        mtime: m.mtime as i64,
        ctime: m.ctime as i64,
    }
}

impl FileServer {
    /// Serves `fs`.
    pub fn new(fs: Ext2Fs, opts: FileServerOptions) -> FileServer {
        FileServer {
            fs: RwLock::new(fs),
            opts,
            commits: None,
        }
    }

    /// Serves `fs`, which sits on `dev`, committing at operation boundaries
    /// only: on every sync (FSYNC, timer, shutdown) and after any operation
    /// that leaves more than `max_pending` bytes uncommitted. So after a
    /// crash the image is exactly the last commit (docs/fs.md).
    pub fn with_commits(
        fs: Ext2Fs,
        dev: Arc<CommittedDevice>,
        max_pending: u64,
        on_commit: CommitHook,
        opts: FileServerOptions,
    ) -> FileServer {
        FileServer {
            commits: Some(Commits {
                dev,
                max_pending,
                on_commit,
            }),
            ..FileServer::new(fs, opts)
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Ext2Fs> {
        self.fs.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> Result<RwLockWriteGuard<'_, Ext2Fs>, Status> {
        if self.opts.read_only {
            return Err(Status(30)); // EROFS
        }
        Ok(self.fs.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes back metadata and flushes the device (sealing a new root); with
    /// commits, also commits, under the file-system lock so no operation is
    /// half in it. Returns when the commit is durable.
    pub fn sync(&self) -> Result<(), Ext2Error> {
        if self.opts.read_only {
            return Ok(());
        }
        let mut fs = self.fs.write().unwrap_or_else(|p| p.into_inner());
        fs.sync()?;
        if let Some(c) = &self.commits {
            if let Some(done) = c.dev.commit()? {
                (c.on_commit)(&done);
            }
        }
        Ok(())
    }

    /// Bytes written since the last commit (0 without commits).
    pub fn pending_bytes(&self) -> u64 {
        self.commits.as_ref().map_or(0, |c| c.dev.pending_bytes())
    }

    /// Commits if the uncommitted bytes passed the bound; called between operations.
    fn commit_if_due(&self) {
        let Some(c) = &self.commits else { return };
        if c.dev.pending_bytes() >= c.max_pending {
            if let Err(e) = self.sync() {
                tracing::error!("commit after {} pending bytes failed: {e}", c.max_pending);
            }
        }
    }

    fn dispatch(&self, t: &mut FdTable, req: &Frame) -> Result<Frame, Status> {
        let mut r = BodyReader::new(&req.body);
        let reply = match req.code {
            proto::OPEN => file::open(self, t, &mut r),
            proto::CLOSE | proto::CLOSEDIR => file::close(t, &mut r),
            proto::READ => file::read(self, t, &mut r),
            proto::PREAD => file::pread(self, t, &mut r),
            proto::WRITE => file::write(self, t, &mut r),
            proto::PWRITE => file::pwrite(self, t, &mut r),
            proto::SEEK => file::seek(self, t, &mut r),
            proto::TELL => file::tell(t, &mut r),
            proto::FSIZE => file::fsize(self, t, &mut r),
            proto::FTRUNCATE => file::ftruncate(self, t, &mut r),
            proto::FSTAT => file::fstat(self, t, &mut r),
            proto::FSYNC => file::fsync(self, t, &mut r),
            proto::OPENDIR => dir::opendir(self, t, &mut r),
            proto::READDIR => dir::readdir(t, &mut r),
            proto::STAT => attrs::stat(self, &mut r, true),
            proto::LSTAT => attrs::stat(self, &mut r, false),
            proto::CHMOD => attrs::chmod(self, &mut r),
            proto::CHOWN => attrs::chown(self, &mut r),
            proto::UTIMES => attrs::utimes(self, &mut r),
            proto::TRUNCATE => attrs::truncate(self, &mut r),
            proto::READ_PATH => attrs::read_path(self, &mut r),
            proto::STATFS => attrs::statfs(self, &mut r),
            proto::UNLINK => names::unlink(self, &mut r),
            proto::RMDIR => names::rmdir(self, &mut r),
            proto::MKDIR => names::mkdir(self, &mut r),
            proto::RENAME => names::rename(self, &mut r),
            proto::LINK => names::link(self, &mut r),
            proto::SYMLINK => names::symlink(self, &mut r),
            proto::READLINK => names::readlink(self, &mut r),
            _ => return Err(Status::ENOSYS),
        }?;
        Ok(reply)
    }
}

/// One connection: its descriptors and who it is.
pub struct Client {
    fds: FdTable,
    /// The certificate's identity; `None` without TLS (not checked).
    who: Option<Identity>,
}

impl Service for FileServer {
    type Conn = Client;

    fn open(&self, peer: &PeerInfo) -> Result<Client, Status> {
        if peer.role.is_some() {
            peer.require_role(&self.opts.allowed_roles)?;
        }
        Ok(Client {
            fds: FdTable::new(self.opts.max_open_per_client),
            who: peer.identity(),
        })
    }

    async fn call(&self, c: &mut Client, req: Frame) -> Frame {
        // ext2 work is short, synchronous block I/O: run it in place rather
        // than paying a thread hop per request.
        let res = tokio::task::block_in_place(|| {
            if let Some(who) = &c.who {
                access::authorize(self, &self.opts.grants, who, &req)?;
            }
            let reply = self.dispatch(&mut c.fds, &req);
            self.commit_if_due();
            reply
        });
        res.unwrap_or_else(Frame::error)
    }
}
