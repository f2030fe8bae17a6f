//! Mutual TLS between conclave processes: every server requires a client
//! certificate chained to the conclave CA, and every client checks that the
//! server's certificate names the role it meant to reach.

use crate::identity::{Identity, Tenant};
use crate::role::Role;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why credentials could not be loaded or a TLS configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file was missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (never the file's contents).
        reason: String,
    },
    /// A private key file could not be read, or group or others may read it.
    #[error(transparent)]
    Secret(#[from] conclave_secret::SecretFileError),
    /// A certificate file held no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    /// rustls refused the configuration (for example a key that does not match).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client-certificate verifier: {0}")]
    Verifier(String),
}

/// The cryptographic provider every conclave TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// One process's TLS identity plus the conclave CA it trusts.
#[derive(Clone)]
pub struct Credentials {
    /// The role this identity was issued for (its DNS subject alternative name).
    pub role: Role,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Credentials")
            .field("role", &self.role)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Reads all certificates from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// Reads a private key from a PEM file (PKCS#8, PKCS#1 or SEC1), refusing
/// a file that group or others may read (`conclave_secret`).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = conclave_secret::read_private(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        // pem errors name the section kind, never key bytes
        reason: e.to_string(),
    })
}

/// Reads the trust anchors from a PEM file.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store.add(c)?;
    }
    Ok(Arc::new(store))
}

impl Credentials {
    /// Loads `root.crt`, `<role>.crt` and `<role>.key` from a process's
    /// identity directory (`conclave certs` writes one per identity). Given
    /// the whole `conclave certs` output instead (no `<role>.crt` in `dir`
    /// but a `<role>/<role>.crt`), it uses the default tenant's `<role>/`,
    /// so tests and configs that name the top directory keep working.
    pub fn from_dir(dir: &Path, role: Role) -> Result<Self, TlsError> {
        let sub = dir.join(role.as_str());
        let dir = if !dir.join(format!("{role}.crt")).exists() && sub.join(format!("{role}.crt")).exists() {
            sub.as_path()
        } else {
            dir
        };
        Self::load(
            &dir.join("root.crt"),
            &dir.join(format!("{role}.crt")),
            &dir.join(format!("{role}.key")),
            role,
        )
    }

    /// Loads credentials from explicit paths.
    pub fn load(ca: &Path, cert: &Path, key: &Path, role: Role) -> Result<Self, TlsError> {
        Ok(Credentials {
            role,
            roots: load_roots(ca)?,
            chain: load_certs(cert)?,
            key: Arc::new(load_key(key)?),
        })
    }

    /// The trusted roots.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// A server configuration that requires a client certificate from the CA.
    /// TLS 1.3 only: every peer is ours.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let prov = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), prov.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let cfg = ServerConfig::builder_with_provider(prov)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(cfg))
    }

    /// A client configuration that presents this identity and trusts only
    /// the conclave CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        Ok(Arc::new(cfg))
    }
}

/// The identity named by a peer's end-entity certificate: the role is its
/// first DNS subject alternative name, the tenant comes from its SPIFFE URI
/// name (`default` when it has none). `None` (no certificate, no recognised
/// role, a malformed or second SPIFFE name, or a URI whose role differs from
/// the DNS name) is the one admission rule of every server: such a peer is
/// refused (see `server::Server::serve`).
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    use x509_parser::prelude::*;
    let der = certs?.first()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let role: Role = san
        .value
        .general_names
        .iter()
        .find_map(|n| match n {
            GeneralName::DNSName(s) => Some(s.to_string()),
            _ => None,
        })?
        .parse()
        .ok()?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
        _ => None,
    });
    let tenant = match (uris.next(), uris.next()) {
        (None, _) => Tenant::default(),
        (Some(u), None) => {
            let id = Identity::from_spiffe_uri(u)?;
            if id.role != role {
                return None;
            }
            id.tenant
        }
        (Some(_), Some(_)) => return None,
    };
    Some(Identity::new(role, tenant))
}

/// The role named by a peer's end-entity certificate (see [`peer_identity`]).
pub fn peer_role(certs: Option<&[CertificateDer<'_>]>) -> Option<Role> {
    peer_identity(certs).map(|id| id.role)
}

/// A server-certificate verifier that accepts any certificate chain but
/// still checks the handshake signature, so the server must really hold the
/// key of the certificate it sent. For `proxy_ssl_verify = false` (edge) and
/// `ab` without `--cacert` (bench): never for the conclave's own RPC.
#[derive(Debug)]
pub struct SignatureOnlyVerifier(Arc<CryptoProvider>);

impl SignatureOnlyVerifier {
    /// Checks signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> SignatureOnlyVerifier {
        SignatureOnlyVerifier(provider)
    }
}

impl rustls::client::danger::ServerCertVerifier for SignatureOnlyVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, SiteKey};

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_certificate_names_role_and_tenant() {
        let (ca, _, _) = Ca::generate().unwrap();
        let id = Identity::new(Role::Edge, "acme".parse().unwrap());
        let (pem, _) = ca.issue_identity(&id).unwrap();
        assert_eq!(peer_identity(Some(&der(&pem))), Some(id));
        // Without a SPIFFE name: the default tenant.
        let (pem, _) = ca.issue(&["client"], SiteKey::EcdsaP256).unwrap();
        assert_eq!(
            peer_identity(Some(&der(&pem))),
            Some(Identity::new(Role::Client, Tenant::default()))
        );
        // No role: refused, whatever the URI says.
        let (pem, _) = ca.issue(&["localhost"], SiteKey::EcdsaP256).unwrap();
        assert_eq!(peer_identity(Some(&der(&pem))), None);
        // A URI naming another role than the DNS name: refused.
        let (pem, _) = ca
            .issue_with_uris(
                &["client"],
                &[Identity::new(Role::Edge, Tenant::default()).spiffe_uri()],
                SiteKey::EcdsaP256,
            )
            .unwrap();
        assert_eq!(peer_identity(Some(&der(&pem))), None);
        assert_eq!(peer_identity(None), None);
    }
}
