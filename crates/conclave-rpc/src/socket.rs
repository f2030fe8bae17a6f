//! The server's accepted sockets, concrete (not boxed) so an admitted
//! connection can leave the runtime: [`Accepted`] is the tokio socket the
//! handshake runs on, [`SharedSocket`] the same socket made blocking for a
//! connection thread (`conn_thread`), shared with the server's registry of
//! live sockets (which wakes the thread at shutdown) without a second
//! descriptor.

use std::io::{self, Read, Write};
use std::net::Shutdown as How;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket accepted by the server loop.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Accepted {
    /// The same socket, out of the reactor and blocking.
    pub(crate) fn into_shared(self) -> io::Result<SharedSocket> {
        let s = match self {
            Accepted::Tcp(s) => StdSocket::Tcp(s.into_std()?),
            Accepted::Unix(s) => StdSocket::Unix(s.into_std()?),
        };
        match &s {
            StdSocket::Tcp(t) => t.set_nonblocking(false)?,
            StdSocket::Unix(u) => u.set_nonblocking(false)?,
        }
        Ok(SharedSocket(Arc::new(s)))
    }
}

impl AsyncRead for Accepted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Accepted::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Accepted::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Accepted::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Tcp(s) => Pin::new(s).poll_flush(cx),
            Accepted::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Accepted::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A blocking socket, as std has it.
pub(crate) enum StdSocket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// A connection thread's blocking socket; clones share the one descriptor
/// (std reads and writes through a shared reference: `Read for &TcpStream`).
#[derive(Clone)]
pub(crate) struct SharedSocket(Arc<StdSocket>);

impl SharedSocket {
    /// Bounds each blocking read (`SO_RCVTIMEO`).
    pub(crate) fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match &*self.0 {
            StdSocket::Tcp(s) => s.set_read_timeout(Some(d)),
            StdSocket::Unix(s) => s.set_read_timeout(Some(d)),
        }
    }

    /// Bounds each blocking write (`SO_SNDTIMEO`).
    pub(crate) fn set_write_timeout(&self, d: Duration) -> io::Result<()> {
        match &*self.0 {
            StdSocket::Tcp(s) => s.set_write_timeout(Some(d)),
            StdSocket::Unix(s) => s.set_write_timeout(Some(d)),
        }
    }

    /// `shutdown(2)`: also wakes a thread blocked on this socket.
    pub(crate) fn shutdown(&self, how: How) -> io::Result<()> {
        match &*self.0 {
            StdSocket::Tcp(s) => s.shutdown(how),
            StdSocket::Unix(s) => s.shutdown(how),
        }
    }
}

impl SharedSocket {
    /// Runs `f` on the socket as a byte stream (std reads and writes
    /// through a shared reference).
    fn io<T>(&self, f: impl FnOnce(&mut dyn ReadWrite) -> T) -> T {
        match &*self.0 {
            StdSocket::Tcp(s) => f(&mut { s }),
            StdSocket::Unix(s) => f(&mut { s }),
        }
    }
}

/// What [`SharedSocket::io`] hands out.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Read for SharedSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(|s| s.read(buf))
    }
}

impl Write for SharedSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io(|s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.io(|s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking socket under a rustls stream, whose writes of one buffer go
/// out with `write` (`send(2)`) rather than `write_vectored` (`writev(2)`):
/// rustls writes its pending records vectored, and a small RPC has one, for
/// which `writev`'s copy-in of the iovec array is pure cost (~0.3 µs of a
/// round trip, docs/benchmarks.md).
pub(crate) struct SendOne<S>(pub(crate) S);

impl<S: Read> Read for SendOne<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for SendOne<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match bufs {
            [one] => self.0.write(one),
            _ => self.0.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
