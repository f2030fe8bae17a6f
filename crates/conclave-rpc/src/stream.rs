//! Byte streams under the frames: TCP or UNIX, with or without TLS, async
//! (tokio) or blocking (std), boxed so the rest of the crate ignores which.

use crate::endpoint::Endpoint;
use rustls::pki_types::ServerName;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// An async byte stream.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A blocking byte stream.
pub trait SyncStream: Read + Write + Send {}
impl<T: Read + Write + Send> SyncStream for T {}

/// Client-side TLS: configuration and the name the server must carry.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The expected server name (the server's role).
    pub name: ServerName<'static>,
}

/// Opens an async stream to `ep`, with TLS if given.
pub async fn connect_async(
    ep: &Endpoint,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> io::Result<Box<dyn AsyncStream>> {
    let fut = async {
        let raw: Box<dyn AsyncStream> = match ep {
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        };
        match tls {
            None => Ok(raw),
            Some(t) => {
                let c = tokio_rustls::TlsConnector::from(t.config.clone());
                let s = c.connect(t.name.clone(), raw).await?;
                Ok(Box::new(s) as Box<dyn AsyncStream>)
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect or TLS handshake timed out"))?
}

/// Opens a blocking stream to `ep`, with TLS if given; the handshake is
/// finished before returning so certificate errors surface here.
pub fn connect_sync(
    ep: &Endpoint,
    tls: Option<&ClientTls>,
    timeout: Duration,
    io_timeout: Duration,
) -> io::Result<Box<dyn SyncStream>> {
    fn wrap<S: Read + Write + Send + 'static>(
        sock: S,
        tls: Option<&ClientTls>,
    ) -> io::Result<Box<dyn SyncStream>> {
        match tls {
            None => Ok(Box::new(sock)),
            Some(t) => {
                let conn = rustls::ClientConnection::new(t.config.clone(), t.name.clone())
                    .map_err(io::Error::other)?;
                let mut s = rustls::StreamOwned::new(conn, crate::socket::SendOne(sock));
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Box::new(s))
            }
        }
    }
    match ep {
        Endpoint::Tcp(addr) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to no address"));
            for a in addr.to_socket_addrs()? {
                match std::net::TcpStream::connect_timeout(&a, timeout) {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(io_timeout))?;
                        s.set_write_timeout(Some(io_timeout))?;
                        let s = wrap(s, tls)?;
                        return Ok(s);
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Endpoint::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(Some(io_timeout))?;
            s.set_write_timeout(Some(io_timeout))?;
            wrap(s, tls)
        }
    }
}
