//! The blocking client and its `File`.

use super::*;
use conclave_rpc::{ClientOptions, Connection, Endpoint};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

/// A blocking file-server client shaped like `std::fs`.
pub struct FsClient {
    endpoint: Endpoint,
    opts: ClientOptions,
    idle: Mutex<Vec<Connection>>,
}

impl FsClient {
    /// A client for the server at `endpoint`; connects lazily.
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> Arc<FsClient> {
        Arc::new(FsClient {
            endpoint,
            opts,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn checkout(&self) -> io::Result<(Connection, bool)> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok((c, true));
        }
        Ok((
            Connection::connect(&self.endpoint, &self.opts).map_err(rpc)?,
            false,
        ))
    }

    fn checkin(&self, c: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.opts.max_idle {
            idle.push(c);
        }
    }

    /// Runs `f` on a pooled connection. A transport failure on a reused
    /// connection (the server restarted) is retried once on a fresh one; path
    /// operations are safe to retry because the failed attempt never got a reply.
    fn with_conn<T>(&self, mut f: impl FnMut(&mut Connection) -> Result<T, RpcError>) -> io::Result<T> {
        let (mut c, reused) = self.checkout()?;
        let res = match f(&mut c) {
            Err(_) if reused => {
                c = Connection::connect(&self.endpoint, &self.opts).map_err(rpc)?;
                f(&mut c)
            }
            r => r,
        };
        match res {
            Ok(v) => {
                self.checkin(c);
                Ok(v)
            }
            Err(e) => Err(rpc(e)),
        }
    }

    fn call(&self, code: u32, body: &[u8]) -> io::Result<bytes::Bytes> {
        ok(self.with_conn(|c| c.call(code, body))?)
    }

    /// Attributes, following symlinks.
    pub fn metadata(&self, path: &str) -> io::Result<Metadata> {
        decode_stat(&self.call(proto::STAT, &path_body(path))?)
    }

    /// Attributes of a symlink itself.
    pub fn symlink_metadata(&self, path: &str) -> io::Result<Metadata> {
        decode_stat(&self.call(proto::LSTAT, &path_body(path))?)
    }

    /// True if `path` exists.
    pub fn exists(&self, path: &str) -> io::Result<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lists a directory (without `.` and `..`), page by page.
    pub fn read_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        self.with_conn(|c| {
            let fd = c.call(proto::OPENDIR, &path_body(path))?;
            let fd = match fd.into_result() {
                Ok(b) => b,
                Err(st) => return Ok(Err(st)),
            };
            let fd = match BodyReader::new(&fd).u32() {
                Ok(fd) => fd,
                Err(st) => return Ok(Err(st)),
            };
            let mut all = Vec::new();
            let mut cookie = 0u32;
            let res = loop {
                let mut w = BodyWriter::new();
                w.u32(fd).u32(cookie).u32(1024);
                match c.call(proto::READDIR, &w.finish())?.into_result() {
                    Err(st) => break Err(st),
                    Ok(b) => match decode_page(&b) {
                        Err(_) => break Err(Status::EPROTO),
                        Ok((next, page)) => {
                            all.extend(page);
                            if next == u32::MAX {
                                break Ok(());
                            }
                            cookie = next;
                        }
                    },
                }
            };
            c.call(proto::CLOSEDIR, &fd.to_be_bytes())?;
            Ok(res.map(|_| std::mem::take(&mut all)))
        })?
        .map_err(Status::into_io_error)
    }

    /// Creates a directory.
    pub fn create_dir(&self, path: &str) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.str(path).u32(0o755);
        self.call(proto::MKDIR, &w.finish()).map(drop)
    }

    /// Creates a directory and its missing parents.
    pub fn create_dir_all(&self, path: &str) -> io::Result<()> {
        for p in ancestors(path) {
            match self.create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !self.metadata(&p)?.is_dir() {
                        return Err(io::Error::new(
                            io::ErrorKind::NotADirectory,
                            format!("{p} is not a directory"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &str) -> io::Result<()> {
        self.call(proto::RMDIR, &path_body(path)).map(drop)
    }

    /// Removes a file or symlink.
    pub fn remove_file(&self, path: &str) -> io::Result<()> {
        self.call(proto::UNLINK, &path_body(path)).map(drop)
    }

    /// Renames, replacing a compatible target.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.call(proto::RENAME, &two_paths(from, to)).map(drop)
    }

    /// Creates a hard link `link` to `original`.
    pub fn hard_link(&self, original: &str, link: &str) -> io::Result<()> {
        self.call(proto::LINK, &two_paths(original, link)).map(drop)
    }

    /// Creates a symlink `link` pointing at `target`.
    pub fn symlink(&self, target: &str, link: &str) -> io::Result<()> {
        self.call(proto::SYMLINK, &two_paths(target, link)).map(drop)
    }

    /// The target of a symlink.
    pub fn read_link(&self, path: &str) -> io::Result<String> {
        let b = self.call(proto::READLINK, &path_body(path))?;
        let mut r = BodyReader::new(&b);
        Ok(String::from_utf8_lossy(r.blob(proto::MAX_PATH).map_err(proto_err)?).into_owned())
    }

    /// Sets permission bits.
    pub fn set_permissions(&self, path: &str, mode: u32) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.str(path).u32(mode);
        self.call(proto::CHMOD, &w.finish()).map(drop)
    }

    /// Sets owner and/or group.
    pub fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.str(path)
            .u32(uid.unwrap_or(u32::MAX))
            .u32(gid.unwrap_or(u32::MAX));
        self.call(proto::CHOWN, &w.finish()).map(drop)
    }

    /// Sets access and/or modification time (seconds since the epoch).
    pub fn set_times(&self, path: &str, atime: Option<i64>, mtime: Option<i64>) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.str(path)
            .i64(atime.unwrap_or(i64::MIN))
            .i64(mtime.unwrap_or(i64::MIN));
        self.call(proto::UTIMES, &w.finish()).map(drop)
    }

    /// Truncates or extends a file by path.
    pub fn truncate(&self, path: &str, size: u64) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.str(path).u64(size);
        self.call(proto::TRUNCATE, &w.finish()).map(drop)
    }

    /// File-system capacity.
    pub fn statfs(&self) -> io::Result<proto::StatFs> {
        let b = self.call(proto::STATFS, &[])?;
        let mut r = BodyReader::new(&b);
        let mut f = || -> Result<proto::StatFs, Status> {
            Ok(proto::StatFs {
                bsize: r.u32()?,
                blocks: r.u64()?,
                bfree: r.u64()?,
                files: r.u64()?,
                ffree: r.u64()?,
            })
        };
        f().map_err(proto_err)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.call(proto::FSYNC, &[]).map(drop)
    }

    /// Opens a file.
    pub fn open_with(self: &Arc<Self>, path: &str, opts: &OpenOptions) -> io::Result<File> {
        let (mut conn, reused) = self.checkout()?;
        let body = opts.body(path);
        let reply = match conn.call(proto::OPEN, &body) {
            Err(_) if reused => {
                conn = Connection::connect(&self.endpoint, &self.opts).map_err(rpc)?;
                conn.call(proto::OPEN, &body)
            }
            r => r,
        }
        .map_err(rpc)?;
        match reply.into_result() {
            Ok(b) => Ok(File {
                client: self.clone(),
                conn: Some(conn),
                fd: decode_u32(&b)?,
            }),
            Err(st) => {
                self.checkin(conn);
                Err(st.into_io_error())
            }
        }
    }

    /// Opens for reading.
    pub fn open(self: &Arc<Self>, path: &str) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().read(true))
    }

    /// Creates or truncates for writing.
    pub fn create(self: &Arc<Self>, path: &str) -> io::Result<File> {
        self.open_with(path, OpenOptions::new().write(true).create(true).truncate(true))
    }

    /// Attributes and up to `count` bytes (≤ 1 MiB) at `offset`, in one
    /// round trip: the cheap path for small files.
    pub fn read_path(&self, path: &str, offset: u64, count: usize) -> io::Result<(Metadata, bytes::Bytes)> {
        let mut w = BodyWriter::new();
        w.str(path).u64(offset).u32(count.min(proto::MAX_IO) as u32);
        let b = self.call(proto::READ_PATH, &w.finish())?;
        let mut r = BodyReader::new(&b);
        let stat = Stat::decode(&mut r).map_err(proto_err)?;
        let used = b.len() - r.remaining();
        Ok((Metadata { stat }, b.slice(used..)))
    }

    /// Reads a whole file.
    pub fn read(self: &Arc<Self>, path: &str) -> io::Result<Vec<u8>> {
        let mut f = self.open(path)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }

    /// Creates or replaces a whole file.
    pub fn write(self: &Arc<Self>, path: &str, data: &[u8]) -> io::Result<()> {
        let mut f = self.create(path)?;
        f.write_all(data)
    }
}

/// An open file on the server; implements `Read`, `Write` and `Seek`.
pub struct File {
    client: Arc<FsClient>,
    conn: Option<Connection>,
    fd: u32,
}

impl File {
    fn call(&mut self, code: u32, body: &[u8]) -> io::Result<bytes::Bytes> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "file handle lost its connection"))?;
        match conn.call(code, body) {
            Ok(f) => ok(f),
            Err(e) => {
                // The server (and with it this descriptor) is gone.
                self.conn = None;
                Err(rpc(e))
            }
        }
    }

    /// Attributes of the open file.
    pub fn metadata(&mut self) -> io::Result<Metadata> {
        let fd = self.fd;
        decode_stat(&self.call(proto::FSTAT, &fd.to_be_bytes())?)
    }

    /// Truncates or extends.
    pub fn set_len(&mut self, size: u64) -> io::Result<()> {
        let mut w = BodyWriter::new();
        w.u32(self.fd).u64(size);
        self.call(proto::FTRUNCATE, &w.finish()).map(drop)
    }

    /// Makes everything written so far durable.
    pub fn sync_all(&mut self) -> io::Result<()> {
        let fd = self.fd;
        self.call(proto::FSYNC, &fd.to_be_bytes()).map(drop)
    }

    /// Reads at `offset` without moving the file position.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = buf.len().min(proto::MAX_IO);
        let mut w = BodyWriter::new();
        w.u32(self.fd).u64(offset).u32(n as u32);
        let b = self.call(proto::PREAD, &w.finish())?;
        let k = b.len().min(n);
        buf[..k].copy_from_slice(&b[..k]);
        Ok(k)
    }

    /// Writes at `offset` without moving the file position.
    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let n = buf.len().min(proto::MAX_IO);
        let mut w = BodyWriter::with_capacity(n + 12);
        w.u32(self.fd).u64(offset).raw(&buf[..n]);
        decode_u32(&self.call(proto::PWRITE, &w.finish())?).map(|v| v as usize)
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(proto::MAX_IO) as u32;
        let mut w = BodyWriter::new();
        w.u32(self.fd).u32(n);
        let b = self.call(proto::READ, &w.finish())?;
        let k = b.len().min(buf.len());
        buf[..k].copy_from_slice(&b[..k]);
        Ok(k)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(proto::MAX_IO);
        let mut w = BodyWriter::with_capacity(n + 4);
        w.u32(self.fd).raw(&buf[..n]);
        decode_u32(&self.call(proto::WRITE, &w.finish())?).map(|v| v as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let (off, whence) = match pos {
            SeekFrom::Start(o) => (i64::try_from(o).map_err(|_| io::ErrorKind::InvalidInput)?, 0),
            SeekFrom::Current(o) => (o, 1),
            SeekFrom::End(o) => (o, 2),
        };
        let mut w = BodyWriter::new();
        w.u32(self.fd).i64(off).u32(whence);
        decode_u64(&self.call(proto::SEEK, &w.finish())?)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if let Some(mut c) = self.conn.take() {
            if matches!(c.call(proto::CLOSE, &self.fd.to_be_bytes()), Ok(f) if f.code == 0) {
                self.client.checkin(c);
            }
        }
    }
}
