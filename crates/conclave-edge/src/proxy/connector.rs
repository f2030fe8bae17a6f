//! Connections to origin servers: TCP (no Nagle), then TLS for HTTPS origins,
//! both within `proxy_connect_timeout`; the connector of the pooled client.

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a connection to a server could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect failed.
    #[error("{0}")]
    Tcp(io::Error),
    /// Connect and handshake did not finish within `proxy_connect_timeout`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(io::Error),
    /// The URI has no host or port (a bug: upstreams build their URIs).
    #[error("no host:port in {0}")]
    BadUri(String),
}

/// TLS to an HTTPS origin: the client config and the name to verify.
#[derive(Clone)]
pub struct OriginTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// A TLS setup error (the CA file).
#[derive(Debug, thiserror::Error)]
pub enum OriginTlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("proxy_ssl_trusted_certificate {path}: {why}")]
    TrustedCertificate {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS to the origin: {0}")]
    Rustls(#[from] rustls::Error),
    /// `proxy_ssl_name` is not a DNS name or address.
    #[error("proxy_ssl_name {0:?} is not a DNS name or IP address")]
    Name(String),
}

impl OriginTls {
    /// TLS verifying the origin against the CAs in `trusted` (PEM), for
    /// `name`; with `verify` off any certificate is accepted (NGINX
    /// `proxy_ssl_verify off`, for origins on a trusted network only).
    pub fn new(trusted: Option<&Path>, name: &str, verify: bool) -> Result<OriginTls, OriginTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder =
            ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let mut cfg = if verify {
            let mut roots = RootCertStore::empty();
            if let Some(p) = trusted {
                let bad = |why: String| OriginTlsError::TrustedCertificate {
                    path: p.display().to_string(),
                    why,
                };
                let certs = CertificateDer::pem_file_iter(p)
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("no certificate in it".into()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| bad(e.to_string()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(conclave_rpc::tls::SignatureOnlyVerifier::new(
                    provider,
                )))
                .with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(name.to_string()).map_err(|_| OriginTlsError::Name(name.into()))?;
        Ok(OriginTls {
            connector: TlsConnector::from(Arc::new(cfg)),
            name,
        })
    }
}

/// The connector of an upstream's pooled client.
#[derive(Clone)]
pub struct OriginConnector {
    timeout: Duration,
    tls: Option<OriginTls>,
}

impl OriginConnector {
    /// Connects within `timeout`, then TLS when `tls` is set.
    pub fn new(timeout: Duration, tls: Option<OriginTls>) -> OriginConnector {
        OriginConnector { timeout, tls }
    }

    async fn connect(self, uri: http::Uri) -> Result<OriginStream, ConnectError> {
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let (Some(host), Some(port)) = (host, uri.port_u16()) else {
            return Err(ConnectError::BadUri(uri.to_string()));
        };
        let work = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(ConnectError::Tcp)?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some(t) => t
                    .connector
                    .connect(t.name.clone(), tcp)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(ConnectError::Tls),
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r.map(|s| OriginStream(TokioIo::new(s))),
            Err(_) => Err(ConnectError::Timeout(self.timeout)),
        }
    }
}

impl tower_service::Service<http::Uri> for OriginConnector {
    type Response = OriginStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<OriginStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A connection to an origin server, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A pooled connection to an origin server (hyper's I/O traits over tokio's).
pub struct OriginStream(TokioIo<Stream>);

impl Connection for OriginStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for OriginStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for OriginStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}
