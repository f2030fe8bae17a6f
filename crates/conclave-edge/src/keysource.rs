//! The `KeySource` seam: how a site's TLS handshakes get signed.
//!
//! A key source yields the `CertifiedKey` (chain + `SigningKey`) of a site. The
//! local implementation loads a PEM key file; a key-server implementation returns a
//! `RemoteSigningKey` whose `sign` is an RPC, and the HTTP code does not change.

use conclave_rpc::Role;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A key-source failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// An OCSP response file (`ocsp_staple`) could not be read or is not DER.
    #[error("{path}: {message}")]
    Ocsp {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the key or the pair.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The key server could not be reached or refused the key.
    #[error("key server {endpoint}: {message}")]
    Remote {
        /// The key server.
        endpoint: String,
        /// What failed.
        message: String,
    },
}

/// Produces the certified key of one site.
pub trait KeySource: Send + Sync {
    /// The chain and signing key the TLS server presents.
    fn certified_key(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, KeyError>;
}

/// Reads a PEM certificate chain.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let pem = |message: String| KeyError::Pem {
        path: path.into(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(pem("no certificate in file".into()));
    }
    Ok(chain)
}

/// A certificate chain and a PEM private-key file on the host (`key = "FILE"`).
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl KeySource for KeyFile {
    fn certified_key(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, KeyError> {
        let chain = load_chain(&self.certificate)?;
        // Refused when group or others may read it (conclave_secret).
        let pem = conclave_secret::read_private(&self.key).map_err(|e| KeyError::Pem {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| KeyError::Pem {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let key = provider.key_provider.load_private_key(der)?;
        let ck = CertifiedKey::new(chain, key);
        ck.keys_match()?;
        Ok(Arc::new(ck))
    }
}

/// A certificate on the host and a key that stays in the key server
/// (`keyserver = "..."`): every handshake's signature is an RPC.
#[derive(Debug, Clone)]
pub struct KeyServerKey {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// Key server endpoint.
    pub endpoint: conclave_rpc::Endpoint,
    /// Name of the key in the key server.
    pub key_name: String,
    /// `conclave certs` directory with the edge identity.
    pub certs: PathBuf,
    /// Deadline of one call (`keyserver_timeout`): a handshake whose signature
    /// does not come in time fails, that handshake only.
    pub timeout: Duration,
    /// More key servers holding the same key (`keyservers`): a failed call
    /// is retried once on the next, each attempt given half of `timeout`.
    pub fallbacks: Vec<conclave_rpc::Endpoint>,
    /// Pipelined connections per key server that signatures share
    /// ([`conclave_keys::client::sign_lanes`]).
    pub lanes: usize,
}

impl KeyServerKey {
    /// Every endpoint, `endpoint` first, as one text for errors.
    fn endpoint_list(&self) -> String {
        std::iter::once(&self.endpoint)
            .chain(&self.fallbacks)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl KeySource for KeyServerKey {
    fn certified_key(&self, _provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, KeyError> {
        let chain = load_chain(&self.certificate)?;
        let remote = |message: String| KeyError::Remote {
            endpoint: self.endpoint_list(),
            message,
        };
        let creds = conclave_rpc::Credentials::from_dir(&self.certs, Role::Edge)
            .map_err(|e| remote(e.to_string()))?;
        let mut opts =
            conclave_keys::KeyClient::default_options(&creds).map_err(|e| remote(e.to_string()))?;
        // With fail-over, two attempts must fit in the handshake's deadline.
        let per_call = if self.fallbacks.is_empty() {
            self.timeout
        } else {
            self.timeout / 2
        };
        opts.io_timeout = per_call;
        opts.connect_timeout = opts.connect_timeout.min(per_call);
        let endpoints = std::iter::once(self.endpoint.clone())
            .chain(self.fallbacks.iter().cloned())
            .collect();
        let servers = Arc::new(conclave_keys::KeyServers::pipelined(endpoints, opts, self.lanes));
        conclave_keys::remote::certified_key_from(chain, servers, &self.key_name)
            .map(crate::metrics::keyless::observe)
            .map_err(|e| remote(e.to_string()))
    }
}
