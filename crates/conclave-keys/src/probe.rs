//! The keyless probe: a minimal HTTPS responder (TLS 1.2 and 1.3, one fixed
//! body) whose only key material is a certificate and a
//! [`RemoteSigningKey`](crate::RemoteSigningKey). It lets tests and operators
//! check a key server end to end with `curl` or `openssl s_client`, and show
//! that a process serving a site never opens the site's key file.

use crate::error::KeysError;
use conclave_rpc::{Shutdown, TlsError};
use rustls::server::ServerConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// The body every request gets.
pub const PROBE_BODY: &str = "keyless ok\n";

/// Longest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// A TLS 1.2 + 1.3 server configuration for one certified key (no client
/// certificates; ALPN `http/1.1`).
pub fn server_config(ck: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, KeysError> {
    let mut cfg = ServerConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::from)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(ck)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serves until `shutdown` fires. A failed handshake (for example because
/// the key server is down) is logged and costs only that connection.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, shutdown: Shutdown) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    warn!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 4096];
            let complete = loop {
                let n = match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => break false,
                };
                if n == 0 {
                    break false;
                }
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
                if head.len() > MAX_HEAD {
                    break false;
                }
            };
            if !complete {
                debug!(%peer, "no complete request head");
                return;
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PROBE_BODY}",
                PROBE_BODY.len()
            );
            let _ = tls.write_all(resp.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}
