//! Keyless TLS: a `rustls::sign::SigningKey` whose private half stays in the
//! key server. The edge builds a `CertifiedKey` from its certificate and a
//! [`RemoteSigningKey`]; each handshake's signature is one `SIGN` call.
//!
//! rustls' signer is synchronous. On a handshake coroutine
//! ([`crate::fiber`]) it suspends the handshake and its task awaits the
//! signature. Elsewhere the call blocks: through
//! [`conclave_rpc::run_blocking`]. On a multi-thread tokio
//! runtime it runs inside `block_in_place` (tokio moves other tasks off the
//! thread); on a current-thread runtime or outside tokio it simply blocks,
//! because `block_in_place` would panic there. A key server that is down or
//! slow fails that one handshake, with the reason logged; the pool reconnects
//! on the next handshake, so the edge recovers by itself.

use crate::algorithm::KeyAlgorithm;
use crate::client::{KeyClient, KeyInfo};
use crate::error::KeysError;
use crate::failover::KeyServers;
use crate::name::KeyName;
use conclave_rpc::{run_blocking, Credentials, Endpoint};
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use std::fmt;
use std::sync::Arc;
use tracing::warn;

/// A signing key held by a key server, known here by name and public key.
#[derive(Clone)]
pub struct RemoteSigningKey {
    client: Arc<KeyServers>,
    name: Arc<str>,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    schemes: Vec<SignatureScheme>,
}

impl fmt::Debug for RemoteSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSigningKey")
            .field("keyservers", &self.client)
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl RemoteSigningKey {
    /// A key described by `info` (from [`KeyClient::key_info`]). Only the
    /// schemes both the key server lists and the key type allows are offered.
    pub fn new(client: Arc<KeyClient>, info: KeyInfo) -> RemoteSigningKey {
        Self::with_servers(Arc::new(KeyServers::from_clients(vec![client])), info)
    }

    /// [`RemoteSigningKey::new`] over a set of key servers holding the same
    /// key ([`KeyServers`]): each signature fails over between them.
    pub fn with_servers(client: Arc<KeyServers>, info: KeyInfo) -> RemoteSigningKey {
        let schemes = info
            .schemes
            .iter()
            .copied()
            .filter(|s| info.algorithm.supports(*s))
            .collect();
        RemoteSigningKey {
            client,
            name: info.name.into(),
            algorithm: info.algorithm,
            spki: info.spki,
            schemes,
        }
    }

    /// Asks the key server for key `name` (blocking).
    pub fn fetch(client: Arc<KeyClient>, name: &str) -> Result<RemoteSigningKey, KeysError> {
        let info = run_blocking(|| client.key_info(name))?;
        Ok(Self::new(client, info))
    }

    /// Asks every endpoint of `servers` for key `name` (blocking); they must
    /// agree ([`KeyServers::key_info`]).
    pub fn fetch_from(servers: Arc<KeyServers>, name: &str) -> Result<RemoteSigningKey, KeysError> {
        let info = run_blocking(|| servers.key_info(name))?;
        Ok(Self::with_servers(servers, info))
    }

    /// The key's name on the key server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Type and size.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
}

impl SigningKey for RemoteSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.schemes.iter().copied().find(|s| offered.contains(s))?;
        Some(Box::new(RemoteSigner {
            client: self.client.clone(),
            name: self.name.clone(),
            scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm.signature_algorithm()
    }
}

/// One handshake's signer.
struct RemoteSigner {
    client: Arc<KeyServers>,
    name: Arc<str>,
    scheme: SignatureScheme,
}

impl fmt::Debug for RemoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSigner")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl Signer for RemoteSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // On a handshake coroutine the signature is awaited by its task
        // (crate::fiber); anywhere else (`edge --check`, handshake threads,
        // tests) this thread waits for it.
        let signed = if crate::fiber::on_fiber() {
            crate::fiber::sign_here(self.client.clone(), self.name.clone(), self.scheme, message)
        } else {
            run_blocking(|| self.client.sign(&self.name, self.scheme, message))
        };
        signed.map_err(|e| {
            warn!(
                keyservers = ?self.client,
                key = %self.name,
                scheme = ?self.scheme,
                "keyless signature failed, handshake aborted: {e}"
            );
            rustls::Error::General(format!("keyless signature failed: {e}"))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The `CertifiedKey` of a keyless site: `cert_chain` (leaf first) with its
/// private key `key_name` on the key server at `keyserver`, reached with
/// `creds` (the `edge` identity). Checks that the key server's key is the
/// certificate's key, so a misconfiguration fails at start, not per handshake.
pub fn certified_key(
    cert_chain: Vec<CertificateDer<'static>>,
    keyserver: &Endpoint,
    key_name: &str,
    creds: &Credentials,
) -> Result<Arc<CertifiedKey>, KeysError> {
    KeyName::new(key_name)?;
    let client = Arc::new(KeyClient::with_credentials(keyserver.clone(), creds)?);
    certified_key_with(cert_chain, client, key_name)
}

/// [`certified_key`] over an existing client (shared by several sites).
pub fn certified_key_with(
    cert_chain: Vec<CertificateDer<'static>>,
    client: Arc<KeyClient>,
    key_name: &str,
) -> Result<Arc<CertifiedKey>, KeysError> {
    certified_key_from(
        cert_chain,
        Arc::new(KeyServers::from_clients(vec![client])),
        key_name,
    )
}

/// [`certified_key`] over a set of key servers that must all hold the
/// certificate's key ([`KeyServers`]).
pub fn certified_key_from(
    cert_chain: Vec<CertificateDer<'static>>,
    client: Arc<KeyServers>,
    key_name: &str,
) -> Result<Arc<CertifiedKey>, KeysError> {
    let mismatch = |reason: String| KeysError::KeyMismatch {
        name: key_name.to_string(),
        reason,
    };
    let leaf = cert_chain
        .first()
        .ok_or_else(|| mismatch("the certificate chain is empty".into()))?;
    let cert_spki = ParsedCertificate::try_from(leaf)
        .map_err(|e| mismatch(format!("cannot parse the certificate: {e}")))?
        .subject_public_key_info()
        .as_ref()
        .to_vec();
    let key = RemoteSigningKey::fetch_from(client, key_name)?;
    if key.spki != cert_spki {
        let cert_alg = KeyAlgorithm::from_spki(&cert_spki)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "an unsupported key".into());
        return Err(mismatch(format!(
            "the certificate holds {cert_alg}, the key server's key is a different {} key",
            key.algorithm
        )));
    }
    let ck = CertifiedKey::new(cert_chain, Arc::new(key));
    ck.keys_match().map_err(|e| mismatch(e.to_string()))?;
    Ok(Arc::new(ck))
}
