//! The TLS server configuration of a site (rustls, aws-lc-rs provider):
//! protocols, cipher suites, key-exchange groups, its certificates (one per
//! key type, chosen by the client's signature algorithms) and their stapled
//! OCSP responses.

use crate::config::{CertConfig, TlsConfig};
use crate::keysource::{KeyError, KeySource};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Builds the rustls config: protocols, suites, groups, ALPN h2 + http/1.1,
/// resumption, and the certificates of `keys` (the site's, in order, each
/// with the config it came from for its OCSP response).
pub fn server_config(
    tls: &TlsConfig,
    keys: &[(CertConfig, Box<dyn KeySource>)],
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Arc<ServerConfig>, KeyError> {
    let provider = Arc::new(provider(tls));
    let certified = keys
        .iter()
        .map(|(cert, source)| {
            let ck = source.certified_key(&provider)?;
            match &cert.ocsp_staple {
                Some(p) => with_ocsp(&ck, p),
                None => Ok(ck),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
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
        .with_cert_resolver(Arc::new(BySignatureScheme(certified)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ignore_client_order = tls.prefer_server_ciphers;
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

/// aws-lc-rs with the site's `ciphers` and `curves`, in its order of
/// preference (validation made sure every name is known).
fn provider(tls: &TlsConfig) -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if !tls.ciphers.is_empty() {
        p.cipher_suites = tls
            .ciphers
            .iter()
            .filter_map(|want| {
                rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .find(|s| s.suite() == *want)
                    .copied()
            })
            .collect();
    }
    if !tls.curves.is_empty() {
        p.kx_groups = tls
            .curves
            .iter()
            .filter_map(|want| {
                rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
                    .iter()
                    .find(|g| g.name() == *want)
                    .copied()
            })
            .collect();
    }
    p
}

/// `ck` with the DER OCSP response in `path` stapled. Read once per worker
/// start, so a reload (new workers) serves a refreshed file.
fn with_ocsp(ck: &CertifiedKey, path: &Path) -> Result<Arc<CertifiedKey>, KeyError> {
    let der = read_ocsp(path)?;
    let mut ck = ck.clone();
    ck.ocsp = Some(der);
    Ok(Arc::new(ck))
}

/// The bytes of a DER OCSP response file: refused when empty or not a DER
/// SEQUENCE (a PEM or text file stapled would break every client that asked).
pub fn read_ocsp(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bad = |message: String| KeyError::Ocsp {
        path: path.into(),
        message,
    };
    let der = std::fs::read(path).map_err(|e| bad(format!("cannot read the OCSP response: {e}")))?;
    if der.first() != Some(&0x30) || der.len() < 8 {
        return Err(bad(
            "not a DER OCSP response (make it with `openssl ocsp ... -respout FILE`)".into(),
        ));
    }
    Ok(der)
}

/// The site's certificates, the first one whose key signs with a scheme the
/// client offers (rustls has already narrowed the offer to what the
/// client's TLS 1.2 suites allow); the first certificate when none does,
/// so the handshake fails with rustls' own error.
#[derive(Debug)]
struct BySignatureScheme(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for BySignatureScheme {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = hello.signature_schemes();
        self.0
            .iter()
            .find(|ck| ck.key.choose_scheme(offered).is_some())
            .or(self.0.first())
            .cloned()
    }
}
