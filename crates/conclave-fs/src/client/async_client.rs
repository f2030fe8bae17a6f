//! The async client: what an async server (the edge) needs — whole-file and
//! ranged reads, whole-file writes, names and attributes — on pooled
//! connections.

use super::*;
use conclave_rpc::{AsyncConnection, ClientOptions, Endpoint};
use std::sync::{Arc, Mutex};

/// An async file-server client.
pub struct AsyncFsClient {
    endpoint: Endpoint,
    opts: ClientOptions,
    idle: Mutex<Vec<AsyncConnection>>,
}

impl AsyncFsClient {
    /// A client for the server at `endpoint`; connects lazily.
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> Arc<AsyncFsClient> {
        Arc::new(AsyncFsClient {
            endpoint,
            opts,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn checkout(&self) -> io::Result<(AsyncConnection, bool)> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok((c, true)),
            None => Ok((
                AsyncConnection::connect(&self.endpoint, &self.opts)
                    .await
                    .map_err(rpc)?,
                false,
            )),
        }
    }

    fn checkin(&self, c: AsyncConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.opts.max_idle {
            idle.push(c);
        }
    }

    /// One request on a pooled connection, retried once on a fresh connection
    /// if a reused one turned out dead (the server restarted).
    async fn call(&self, code: u32, body: &[u8]) -> io::Result<bytes::Bytes> {
        let (mut c, reused) = self.checkout().await?;
        let res = match c.call(code, body).await {
            Err(_) if reused => {
                c = AsyncConnection::connect(&self.endpoint, &self.opts)
                    .await
                    .map_err(rpc)?;
                c.call(code, body).await
            }
            r => r,
        };
        let f = res.map_err(rpc)?;
        self.checkin(c);
        ok(f)
    }

    /// Opens `path` on a checked-out connection and runs `f` with the fd,
    /// closing it afterwards whatever happens.
    async fn with_open<T>(
        &self,
        path: &str,
        opts: &OpenOptions,
        f: impl AsyncFnOnce(&mut AsyncConnection, u32) -> io::Result<T>,
    ) -> io::Result<T> {
        let (mut c, reused) = self.checkout().await?;
        let body = opts.body(path);
        let reply = match c.call(proto::OPEN, &body).await {
            Err(_) if reused => {
                c = AsyncConnection::connect(&self.endpoint, &self.opts)
                    .await
                    .map_err(rpc)?;
                c.call(proto::OPEN, &body).await
            }
            r => r,
        }
        .map_err(rpc)?;
        let fd = match reply.into_result() {
            Ok(b) => decode_u32(&b)?,
            Err(st) => {
                self.checkin(c);
                return Err(st.into_io_error());
            }
        };
        let res = f(&mut c, fd).await;
        if let Ok(fr) = c.call(proto::CLOSE, &fd.to_be_bytes()).await {
            if fr.code == 0 {
                self.checkin(c);
            }
        }
        res
    }

    /// Attributes, following symlinks.
    pub async fn metadata(&self, path: &str) -> io::Result<Metadata> {
        decode_stat(&self.call(proto::STAT, &path_body(path)).await?)
    }

    /// Reads a whole file.
    pub async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.with_open(path, OpenOptions::new().read(true), async |c, fd| {
            let mut out = Vec::new();
            loop {
                let mut w = BodyWriter::new();
                w.u32(fd).u32(proto::MAX_IO as u32);
                let b = ok(c.call(proto::READ, &w.finish()).await.map_err(rpc)?)?;
                if b.is_empty() {
                    return Ok(out);
                }
                out.extend_from_slice(&b);
            }
        })
        .await
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the file).
    pub async fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        self.with_open(path, OpenOptions::new().read(true), async |c, fd| {
            let mut out = Vec::new();
            while (out.len() as u64) < len {
                let want = (len - out.len() as u64).min(proto::MAX_IO as u64) as u32;
                let mut w = BodyWriter::new();
                w.u32(fd).u64(offset + out.len() as u64).u32(want);
                let b = ok(c.call(proto::PREAD, &w.finish()).await.map_err(rpc)?)?;
                if b.is_empty() {
                    break;
                }
                out.extend_from_slice(&b);
            }
            Ok(out)
        })
        .await
    }

    /// Creates or replaces a whole file.
    pub async fn write(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.with_open(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
            async |c, fd| {
                for chunk in data.chunks(proto::MAX_IO) {
                    let mut w = BodyWriter::with_capacity(chunk.len() + 4);
                    w.u32(fd).raw(chunk);
                    let b = ok(c.call(proto::WRITE, &w.finish()).await.map_err(rpc)?)?;
                    if decode_u32(&b)? as usize != chunk.len() {
                        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// Removes a file.
    pub async fn remove_file(&self, path: &str) -> io::Result<()> {
        self.call(proto::UNLINK, &path_body(path)).await.map(drop)
    }

    /// Renames, replacing a compatible target.
    pub async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.call(proto::RENAME, &two_paths(from, to)).await.map(drop)
    }

    /// Creates a directory and its missing parents.
    pub async fn create_dir_all(&self, path: &str) -> io::Result<()> {
        for p in ancestors(path) {
            let mut w = BodyWriter::new();
            w.str(&p).u32(0o755);
            match self.call(proto::MKDIR, &w.finish()).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub async fn sync(&self) -> io::Result<()> {
        self.call(proto::FSYNC, &[]).await.map(drop)
    }
}
