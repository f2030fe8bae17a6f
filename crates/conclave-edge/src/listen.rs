//! The edge's listening sockets. The master binds each address once,
//! without SO_REUSEPORT, so a port held by any other process is an error at
//! start and no unrelated process can join the port later; every worker (of
//! every generation, across reloads) and a new master after a binary upgrade
//! inherit the master's sockets as file descriptors named in
//! [`LISTEN_FDS_ENV`]. Nothing else in the edge binds a listening socket:
//! workers call [`take_or_bind`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// The environment variable naming inherited listening sockets:
/// `ADDR=FD` pairs separated by commas, e.g. `127.0.0.1:8443=5,[::1]:8443=6`.
pub const LISTEN_FDS_ENV: &str = "CONCLAVE_LISTEN_FDS";

/// Accept queue length of each listening socket.
const BACKLOG: i32 = 4096;

/// Why a listening socket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process holds the port (a second edge, or anything else).
    #[error("{0} is already in use (by another process)")]
    InUse(SocketAddr),
    /// Binding failed otherwise (address not local, permission).
    #[error("listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// [`LISTEN_FDS_ENV`] is malformed or names something that is not our
    /// listening socket.
    #[error("{LISTEN_FDS_ENV}: {0}")]
    Inherited(String),
}

/// The sockets a master holds, one per listening address.
#[derive(Debug, Default)]
pub struct ListenSet {
    sockets: BTreeMap<SocketAddr, std::net::TcpListener>,
}

impl ListenSet {
    /// Holds a socket for each of `addrs`: the one a previous master handed
    /// down (binary upgrade) or a new one. On error none of the new ones is kept.
    pub fn open(addrs: impl IntoIterator<Item = SocketAddr>) -> Result<ListenSet, ListenError> {
        let mut set = ListenSet::default();
        set.ensure(addrs)?;
        Ok(set)
    }

    /// Adds sockets for the addresses of `addrs` not held yet (a reload that
    /// adds a site). On error nothing is added.
    pub fn ensure(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<(), ListenError> {
        let mut added = BTreeMap::new();
        for addr in addrs {
            if self.sockets.contains_key(&addr) || added.contains_key(&addr) {
                continue;
            }
            let l = match take_inherited(addr)? {
                Some(l) => l,
                None => bind_exclusive(addr)?,
            };
            inheritable(&l).map_err(|source| ListenError::Bind { addr, source })?;
            added.insert(addr, l);
        }
        self.sockets.append(&mut added);
        Ok(())
    }

    /// Closes the master's sockets for addresses not in `keep` (a reload that
    /// dropped a site; workers still draining keep their own copies).
    pub fn retain(&mut self, keep: &BTreeSet<SocketAddr>) {
        self.sockets.retain(|a, _| keep.contains(a));
    }

    /// The value of [`LISTEN_FDS_ENV`] that hands these sockets to a child.
    pub fn env_value(&self) -> String {
        self.sockets
            .iter()
            .map(|(a, l)| format!("{a}={}", l.as_raw_fd()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A second handle on the socket held for `addr` (the master's admin
    /// listener serves one the set holds, so an upgrade hands it down too).
    pub fn listener(&self, addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
        let l = self
            .sockets
            .get(&addr)
            .ok_or_else(|| ListenError::Inherited(format!("no socket is held for {addr}")))?;
        l.try_clone().map_err(|source| ListenError::Bind { addr, source })
    }

    /// The addresses held.
    pub fn addrs(&self) -> BTreeSet<SocketAddr> {
        self.sockets.keys().copied().collect()
    }
}

/// The listening socket for `addr` in a worker: the one inherited from the
/// master, or (a worker started by hand, without a master) a new one.
pub fn take_or_bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    let l = match take_inherited(addr)? {
        Some(l) => l,
        None if inherited().is_some() => {
            return Err(ListenError::Inherited(format!(
                "the master handed down no socket for {addr}"
            )))
        }
        None => bind_exclusive(addr)?,
    };
    let bind = |source| ListenError::Bind { addr, source };
    l.set_nonblocking(true).map_err(bind)?;
    tokio::net::TcpListener::from_std(l).map_err(bind)
}

/// Closes the inherited sockets nobody took (addresses this process's
/// configuration does not listen on), so a port a reload removed is freed
/// once the master and the old workers let go of it.
pub fn close_unused() {
    if let Some(m) = inherited() {
        let fds = std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()));
        for (addr, fd) in fds {
            // Adopted, then dropped: closed.
            let _ = adopt::listener(fd).map(|l| drop(checked(l, addr)));
        }
    }
}

/// A socket for `addr` that only this process (and its children) can
/// listen on: SO_REUSEADDR (restarts while old connections linger in
/// TIME_WAIT) but not SO_REUSEPORT.
fn bind_exclusive(addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ListenError::InUse(addr)
        } else {
            ListenError::Bind { addr, source }
        }
    };
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(BACKLOG).map_err(err)?;
    Ok(s.into())
}

/// Lets `l` survive `exec`, so workers and a new master inherit it (Rust
/// opens every descriptor close-on-exec).
fn inheritable(l: &std::net::TcpListener) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(l, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
    Ok(())
}

/// The sockets named in [`LISTEN_FDS_ENV`] not taken yet; `None` when the
/// variable is absent (read once: only this module reads it).
fn inherited() -> Option<&'static Mutex<BTreeMap<SocketAddr, RawFd>>> {
    static FDS: OnceLock<Option<Mutex<BTreeMap<SocketAddr, RawFd>>>> = OnceLock::new();
    FDS.get_or_init(|| {
        let v = std::env::var(LISTEN_FDS_ENV).ok()?;
        match parse_env(&v) {
            Ok(m) => Some(Mutex::new(m)),
            Err(e) => {
                tracing::warn!("{LISTEN_FDS_ENV}: {e}; ignoring it");
                Some(Mutex::new(BTreeMap::new()))
            }
        }
    })
    .as_ref()
}

/// Parses `ADDR=FD,ADDR=FD`.
fn parse_env(v: &str) -> Result<BTreeMap<SocketAddr, RawFd>, String> {
    let mut m = BTreeMap::new();
    for pair in v.split(',').filter(|p| !p.is_empty()) {
        let (a, fd) = pair
            .rsplit_once('=')
            .ok_or_else(|| format!("{pair:?} is not ADDR=FD"))?;
        let addr: SocketAddr = a.parse().map_err(|e| format!("{a:?}: {e}"))?;
        let fd: RawFd = fd.parse().map_err(|e| format!("{fd:?}: {e}"))?;
        if fd <= 2 {
            return Err(format!("fd {fd} is a standard stream"));
        }
        m.insert(addr, fd);
    }
    Ok(m)
}

/// The inherited socket for `addr`, taken out of the set (so adopted once).
fn take_inherited(addr: SocketAddr) -> Result<Option<std::net::TcpListener>, ListenError> {
    let Some(m) = inherited() else {
        return Ok(None);
    };
    let fd = m.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
    match fd {
        None => Ok(None),
        Some(fd) => {
            let l = adopt::listener(fd).map_err(|e| ListenError::Inherited(format!("fd {fd}: {e}")))?;
            checked(l, addr).map(Some)
        }
    }
}

/// `l` if it listens on `addr`.
fn checked(l: std::net::TcpListener, addr: SocketAddr) -> Result<std::net::TcpListener, ListenError> {
    let listening = socket2::SockRef::from(&l).is_listener().unwrap_or(false);
    match l.local_addr() {
        Ok(a) if a == addr && listening => Ok(l),
        Ok(a) => Err(ListenError::Inherited(format!(
            "fd {} is {a}, not a socket listening on {addr}",
            l.as_raw_fd()
        ))),
        Err(e) => Err(ListenError::Inherited(format!("fd {}: {e}", l.as_raw_fd()))),
    }
}

/// The one `unsafe` of the edge: owning a descriptor by number.
mod adopt {
    #![allow(unsafe_code)]

    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::FileTypeExt;

    /// Takes ownership of socket `fd`, which our parent handed down.
    pub(super) fn listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
        // Checked without owning it: open, and a socket.
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))?;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket"));
        }
        // SAFETY: `fd` is open and a socket (just checked). Our parent named
        // it in CONCLAVE_LISTEN_FDS for us to own; the caller took it out of
        // the parsed set first, so it is adopted once and nothing else in
        // this process owns or closes it (Rust's own descriptors are
        // close-on-exec, so none of them came across exec at that number).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(std::net::TcpListener::from(owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fd_list_and_refuses_standard_streams() {
        let m = parse_env("127.0.0.1:8443=5,[::1]:443=6").unwrap();
        assert_eq!(m[&"127.0.0.1:8443".parse().unwrap()], 5);
        assert_eq!(m[&"[::1]:443".parse().unwrap()], 6);
        assert!(parse_env("").unwrap().is_empty());
        assert!(parse_env("127.0.0.1:1=2")
            .unwrap_err()
            .contains("standard stream"));
        assert!(parse_env("127.0.0.1:1").is_err());
    }

    #[test]
    fn a_held_port_is_named_as_in_use() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = bind_exclusive(addr).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{addr} is already in use (by another process)")
        );
    }

    #[test]
    fn env_value_names_each_socket_once() {
        let set = ListenSet::open(["127.0.0.1:0".parse().unwrap()]).unwrap();
        // Port 0 binds an ephemeral port; the set keys it by the asked address.
        let v = set.env_value();
        assert!(v.starts_with("127.0.0.1:0="), "{v}");
        assert_eq!(parse_env(&v).unwrap().len(), 1);
    }
}
