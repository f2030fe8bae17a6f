//! The TLS server configuration of a site (rustls, aws-lc-rs provider).

use crate::config::TlsConfig;
use crate::keysource::{KeyError, KeySource};
use rustls::server::{ServerConfig, ServerSessionMemoryCache};
use rustls::sign::SingleCertAndKey;
use std::sync::Arc;

/// Builds the rustls config: protocols, ALPN h2 + http/1.1, resumption, the key source.
pub fn server_config(
    tls: &TlsConfig,
    keys: &dyn KeySource,
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Arc<ServerConfig>, KeyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ck = keys.certified_key(&provider)?;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if tls.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(ck)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if tls.session_resumption {
        // Session IDs stay per worker; tickets use keys shared by every
        // worker through SharedState, so resumption works across workers.
        cfg.session_storage = ServerSessionMemoryCache::new(16 * 1024);
        cfg.ticketer = match tickets {
            Some(t) => t,
            None => rustls::crypto::aws_lc_rs::Ticketer::new()?,
        };
    } else {
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(Arc::new(cfg))
}
