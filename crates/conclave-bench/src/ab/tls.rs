//! The client TLS configuration: which protocol version, which roots, and
//! whether sessions may be resumed (they may not by default, so every new
//! connection costs a full handshake, as with `ab`).

use super::AbError;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which TLS protocol version to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 only (the seed's nginx 1.14 negotiated TLS 1.2).
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" | "tls1.2" | "TLSv1.2" => Ok(TlsVersion::Tls12),
            "1.3" | "tls1.3" | "TLSv1.3" => Ok(TlsVersion::Tls13),
            _ => Err(format!("unknown TLS version {s:?} (expected 1.2 or 1.3)")),
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// How the server certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Verify against the CA certificates in this PEM file (e.g. the conclave's `root.crt`).
    CaFile(PathBuf),
    /// Accept any certificate (like `ab`, which never verifies).
    Insecure,
}

/// Builds the client configuration. Resumption is disabled unless `resume`.
pub fn client_config(version: TlsVersion, trust: &Trust, resume: bool) -> Result<ClientConfig, AbError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| AbError::Tls(format!("protocol versions: {e}")))?;
    let mut cfg = match trust {
        Trust::CaFile(path) => {
            let roots = load_roots(path)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(conclave_rpc::tls::SignatureOnlyVerifier::new(
                provider,
            )))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = Resumption::disabled();
    }
    Ok(cfg)
}

fn load_roots(path: &Path) -> Result<RootCertStore, AbError> {
    let bad = |why: String| AbError::Tls(format!("--cacert {}: {why}", path.display()));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for c in certs {
        let c = c.map_err(|e| bad(e.to_string()))?;
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}
