//! The client side of smdish and smuf: a protocol core shared by the
//! blocking and async clients (requests in, replies out, smuf sealing), and
//! the blocking segment. Each open memory file has its own connection, so
//! a thread waiting for one lock never stalls another file's unlock, and a
//! crashed process's locks are released when its connections drop.

use crate::client::{MemoryFile, MemoryStore, Segment};
use crate::proto::{self, lock, open, peek, renew, unlock, KEY_LEN};
use crate::{name, segment_seal, MemError, MAX_SEGMENT};
use conclave_rpc::{ClientOptions, Connection, Endpoint, Frame, Status};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Whether segments travel in the RPC (smdish) or sealed host files (smuf).
#[derive(Clone, Debug)]
pub(crate) enum Sealing {
    None,
    Uf { dir: PathBuf },
}

/// Fixed nonce of smuf: every grant key seals at most one version.
const SMUF_NONCE: [u8; segment_seal::NONCE_LEN] = [0; segment_seal::NONCE_LEN];

/// Protocol state of one open memory file on a memory server.
pub(crate) struct RemoteCore {
    pub name: String,
    pub handle: u32,
    pub size: usize,
    /// The server's lock lease (from OPEN): renew within it.
    pub lease: Duration,
    sealing: Sealing,
    stem: String,
    /// smuf: the key for sealing the next version, and that version.
    write: Option<(Zeroizing<[u8; KEY_LEN]>, u64)>,
    /// The contents of a version this client received, verified or
    /// published itself. The server's version number names one content (a
    /// connection never outlives its server), so when LOCK or PEEK reports
    /// that same version the host file need not be read and opened again,
    /// nor (PEEK, smdish) the segment sent (the hot path of a read-mostly
    /// segment such as the cache index). Lives in this process's memory,
    /// which is inside the enclave.
    known: Option<(u64, Zeroizing<Vec<u8>>)>,
    /// What an UNLOCK in flight publishes, kept as `known` once the server
    /// accepts it.
    publishing: Option<(u64, Zeroizing<Vec<u8>>)>,
    /// The version the last LOCK granted.
    granted: u64,
}

fn server_err(op: &'static str, name: &str, status: Status) -> MemError {
    MemError::Server {
        op,
        name: name.to_string(),
        status,
    }
}

impl RemoteCore {
    pub fn check(name: &str, size: usize) -> Result<(), MemError> {
        name::validate(name)?;
        if size > MAX_SEGMENT {
            return Err(MemError::TooLarge {
                requested: size as u64,
                max: MAX_SEGMENT as u64,
            });
        }
        Ok(())
    }

    pub fn open_request(name: &str, size: usize) -> Vec<u8> {
        open::Request {
            name,
            size: size as u64,
        }
        .encode()
    }

    pub fn open_finish(name: &str, size: usize, sealing: Sealing, reply: Frame) -> Result<Self, MemError> {
        match reply.status() {
            Status::OK => {}
            Status::ENAMETOOLONG => {
                return Err(MemError::NameTooLong {
                    len: name.len(),
                    max: crate::MAX_NAME,
                })
            }
            Status::EINVAL => {
                return Err(match open::decode_existing_size(&reply.body) {
                    Some(existing) => MemError::SizeMismatch {
                        name: name.to_string(),
                        requested: size as u64,
                        existing,
                    },
                    None => server_err("open", name, Status::EINVAL),
                })
            }
            Status::E2BIG => {
                return Err(MemError::TooLarge {
                    requested: size as u64,
                    max: MAX_SEGMENT as u64,
                })
            }
            Status::EDQUOT => {
                return Err(MemError::OverQuota {
                    name: name.to_string(),
                    requested: size as u64,
                })
            }
            Status::ENOSPC => {
                return Err(MemError::NoSpace {
                    name: name.to_string(),
                    requested: size as u64,
                })
            }
            Status::EACCES => {
                return Err(MemError::Denied {
                    op: "open",
                    name: name.to_string(),
                })
            }
            s => return Err(server_err("open", name, s)),
        }
        let r = open::Reply::decode(&reply.body).map_err(|_| MemError::BadReply { op: "open" })?;
        if r.size != size as u64 {
            return Err(MemError::BadReply { op: "open" });
        }
        // smuf's server names the host files (per tenant); without its
        // answer there is no file to read.
        let stem = match (&sealing, r.host_id) {
            (Sealing::Uf { .. }, Some(id)) => hex::encode(id),
            (Sealing::Uf { .. }, None) => return Err(MemError::BadReply { op: "open" }),
            (Sealing::None, _) => String::new(),
        };
        Ok(RemoteCore {
            name: name.to_string(),
            handle: r.handle,
            size,
            lease: Duration::from_millis(r.lease_ms as u64),
            sealing,
            stem,
            write: None,
            known: None,
            publishing: None,
            granted: 0,
        })
    }

    pub fn lock_request(&self, timeout: Option<Duration>) -> Vec<u8> {
        let timeout_ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32);
        lock::Request {
            handle: self.handle,
            timeout_ms,
        }
        .encode()
    }

    pub fn lock_finish(
        &mut self,
        timeout: Option<Duration>,
        reply: Frame,
        buf: &mut [u8],
    ) -> Result<u64, MemError> {
        match reply.status() {
            Status::OK => {}
            Status::ETIMEDOUT => {
                return Err(MemError::Timeout {
                    name: self.name.clone(),
                    ms: timeout.map_or(0, |t| t.as_millis() as u64),
                })
            }
            Status::EDEADLK => return Err(MemError::AlreadyHeld(self.name.clone())),
            s => return Err(server_err("lock", &self.name, s)),
        }
        let r =
            lock::Reply::decode(&reply.body, MAX_SEGMENT).map_err(|_| MemError::BadReply { op: "lock" })?;
        match (r, &self.sealing) {
            (lock::Reply::Dish { version, data }, Sealing::None) if data.len() == buf.len() => {
                buf.copy_from_slice(&data);
                self.known = Some((version, Zeroizing::new(data.to_vec())));
                self.granted = version;
                Ok(version)
            }
            (
                lock::Reply::Uf {
                    version,
                    read_key,
                    tag,
                    write_key,
                },
                Sealing::Uf { dir },
            ) => {
                let read_key = Zeroizing::new(read_key);
                self.write = Some((Zeroizing::new(write_key), version + 1));
                if version == 0 || buf.is_empty() {
                    buf.fill(0);
                    return Ok(version);
                }
                if self.recall(version, buf) {
                    return Ok(version);
                }
                let dir = dir.clone();
                self.open_host_file(&dir, version, &read_key, &tag, buf)?;
                Ok(version)
            }
            _ => Err(MemError::BadReply { op: "lock" }),
        }
    }

    /// Copies the known contents of `version` into `buf`, if known.
    fn recall(&self, version: u64, buf: &mut [u8]) -> bool {
        match &self.known {
            Some((v, plain)) if *v == version && plain.len() == buf.len() => {
                buf.copy_from_slice(plain);
                true
            }
            _ => false,
        }
    }

    /// smuf: reads `<stem>.seg` into `buf` and opens it as `version`.
    fn open_host_file(
        &mut self,
        dir: &std::path::Path,
        version: u64,
        read_key: &[u8; KEY_LEN],
        tag: &[u8; proto::TAG_LEN],
        buf: &mut [u8],
    ) -> Result<(), MemError> {
        self.known = None;
        let path = dir.join(format!("{}.seg", self.stem));
        let ct = std::fs::read(&path).map_err(|e| MemError::io(&path, e))?;
        if ct.len() != buf.len() {
            return Err(MemError::Tampered {
                name: self.name.clone(),
                version,
            });
        }
        buf.copy_from_slice(&ct);
        let aad = segment_seal::aad(b"smuf", &self.name, version, buf.len() as u64);
        segment_seal::open(read_key, &SMUF_NONCE, &aad, buf, tag).map_err(|_| MemError::Tampered {
            name: self.name.clone(),
            version,
        })?;
        self.known = Some((version, Zeroizing::new(buf.to_vec())));
        Ok(())
    }

    pub fn peek_request(&self) -> Vec<u8> {
        peek::Request {
            handle: self.handle,
            known_version: self.known.as_ref().map_or(0, |(v, _)| *v),
        }
        .encode()
    }

    /// Fills `buf` with the snapshot a PEEK reply names. `Ok(None)`: no
    /// snapshot this time (the host file did not open as the version the
    /// server named: a publish raced us, or tampering, which LOCK reports).
    pub fn peek_finish(&mut self, reply: Frame, buf: &mut [u8]) -> Result<Option<u64>, MemError> {
        match reply.status() {
            Status::OK => {}
            s => return Err(server_err("peek", &self.name, s)),
        }
        let r =
            peek::Reply::decode(&reply.body, MAX_SEGMENT).map_err(|_| MemError::BadReply { op: "peek" })?;
        let bad = || MemError::BadReply { op: "peek" };
        match (r, &self.sealing) {
            (peek::Reply::Dish { version, data }, Sealing::None) => match data {
                Some(d) if d.len() == buf.len() => {
                    buf.copy_from_slice(&d);
                    self.known = Some((version, Zeroizing::new(d.to_vec())));
                    Ok(Some(version))
                }
                Some(_) => Err(bad()),
                None if version == 0 => {
                    buf.fill(0);
                    Ok(Some(0))
                }
                None if self.recall(version, buf) => Ok(Some(version)),
                None => Err(bad()),
            },
            (
                peek::Reply::Uf {
                    version,
                    read_key,
                    tag,
                },
                Sealing::Uf { dir },
            ) => {
                let read_key = Zeroizing::new(read_key);
                if version == 0 || buf.is_empty() {
                    buf.fill(0);
                    return Ok(Some(version));
                }
                if self.recall(version, buf) {
                    return Ok(Some(version));
                }
                let dir = dir.clone();
                match self.open_host_file(&dir, version, &read_key, &tag, buf) {
                    Ok(()) => Ok(Some(version)),
                    Err(MemError::Tampered { .. } | MemError::Io { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            _ => Err(bad()),
        }
    }

    /// Builds the UNLOCK body; for smuf this seals `data` into `<stem>.new`.
    pub fn unlock_request(&mut self, data: Option<&[u8]>) -> Result<Vec<u8>, MemError> {
        self.publishing = None;
        let data = data.filter(|_| self.size > 0);
        let publish = match (data, &self.sealing) {
            (None, _) => unlock::Publish::Nothing,
            (Some(d), Sealing::None) => {
                self.publishing = Some((self.granted + 1, Zeroizing::new(d.to_vec())));
                unlock::Publish::Data(d)
            }
            (Some(d), Sealing::Uf { dir }) => {
                // take(): a grant key seals once, even if this publish fails.
                let (key, version) = self
                    .write
                    .take()
                    .ok_or_else(|| MemError::NotHolder(self.name.clone()))?;
                self.publishing = Some((version, Zeroizing::new(d.to_vec())));
                let mut ct = d.to_vec();
                let aad = segment_seal::aad(b"smuf", &self.name, version, ct.len() as u64);
                let tag = segment_seal::seal(&key, &SMUF_NONCE, &aad, &mut ct);
                let path = dir.join(format!("{}.new", self.stem));
                let mut f = std::fs::File::create(&path).map_err(|e| MemError::io(&path, e))?;
                f.write_all(&ct).map_err(|e| MemError::io(&path, e))?;
                unlock::Publish::Tag(tag)
            }
        };
        Ok(unlock::Request {
            handle: self.handle,
            publish,
        }
        .encode())
    }

    pub fn unlock_finish(&mut self, reply: Frame) -> Result<(), MemError> {
        match reply.status() {
            Status::OK => {
                self.write = None;
                if let Some(p) = self.publishing.take() {
                    self.known = Some(p);
                }
                Ok(())
            }
            Status::EPERM => {
                self.publishing = None;
                Err(MemError::NotHolder(self.name.clone()))
            }
            Status::ETIMEDOUT => {
                self.publishing = None;
                self.write = None;
                Err(self.lease_expired())
            }
            Status::EACCES => {
                // The server released the lock, publishing nothing.
                self.publishing = None;
                self.write = None;
                Err(MemError::Denied {
                    op: "publish",
                    name: self.name.clone(),
                })
            }
            s => {
                self.publishing = None;
                Err(server_err("unlock", &self.name, s))
            }
        }
    }

    fn lease_expired(&self) -> MemError {
        MemError::LeaseExpired {
            name: self.name.clone(),
            lease_ms: self.lease.as_millis() as u64,
        }
    }

    pub fn renew_request(&self) -> Vec<u8> {
        renew::encode(self.handle)
    }

    pub fn renew_finish(&mut self, reply: Frame) -> Result<(), MemError> {
        match reply.status() {
            Status::OK => {
                let ms = renew::decode_reply(&reply.body).map_err(|_| MemError::BadReply { op: "renew" })?;
                self.lease = Duration::from_millis(ms as u64);
                Ok(())
            }
            Status::EPERM => Err(MemError::NotHolder(self.name.clone())),
            Status::ETIMEDOUT => {
                self.write = None;
                Err(self.lease_expired())
            }
            s => Err(server_err("renew", &self.name, s)),
        }
    }

    pub fn close_request(&self) -> Vec<u8> {
        proto::close::encode(self.handle)
    }

    pub fn close_finish(&self, reply: Frame) -> Result<(), MemError> {
        match reply.status() {
            Status::OK => Ok(()),
            s => Err(server_err("close", &self.name, s)),
        }
    }
}

/// A memory server reached over blocking connections.
pub(crate) struct RemoteStore {
    endpoint: Endpoint,
    opts: ClientOptions,
    sealing: Sealing,
}

impl RemoteStore {
    pub fn new(endpoint: Endpoint, opts: ClientOptions, sealing: Sealing) -> Self {
        RemoteStore {
            endpoint,
            opts,
            sealing,
        }
    }
}

impl MemoryStore for RemoteStore {
    fn open(&self, name: &str, size: usize) -> Result<MemoryFile, MemError> {
        RemoteCore::check(name, size)?;
        let mut conn = Connection::connect(&self.endpoint, &self.opts)?;
        let reply = conn.call(proto::OPEN, &RemoteCore::open_request(name, size))?;
        let core = RemoteCore::open_finish(name, size, self.sealing.clone(), reply)?;
        Ok(MemoryFile::new(
            name,
            size,
            Box::new(RemoteSegment { conn, core }),
        ))
    }

    fn kind(&self) -> &'static str {
        match self.sealing {
            Sealing::None => "smdish",
            Sealing::Uf { .. } => "smuf",
        }
    }
}

struct RemoteSegment {
    conn: Connection,
    core: RemoteCore,
}

impl Segment for RemoteSegment {
    fn lock(&mut self, timeout: Option<Duration>, buf: &mut [u8]) -> Result<u64, MemError> {
        let reply = self.conn.call(proto::LOCK, &self.core.lock_request(timeout))?;
        self.core.lock_finish(timeout, reply, buf)
    }

    fn peek(&mut self, buf: &mut [u8]) -> Result<Option<u64>, MemError> {
        let reply = self.conn.call(proto::PEEK, &self.core.peek_request())?;
        self.core.peek_finish(reply, buf)
    }

    fn unlock(&mut self, publish: Option<&[u8]>) -> Result<(), MemError> {
        let body = self.core.unlock_request(publish)?;
        let reply = self.conn.call(proto::UNLOCK, &body)?;
        self.core.unlock_finish(reply)
    }

    fn close(&mut self) -> Result<(), MemError> {
        let reply = self.conn.call(proto::CLOSE, &self.core.close_request())?;
        self.core.close_finish(reply)
    }

    fn renew(&mut self) -> Result<(), MemError> {
        let reply = self.conn.call(proto::RENEW, &self.core.renew_request())?;
        self.core.renew_finish(reply)
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.core.lease)
    }
}
