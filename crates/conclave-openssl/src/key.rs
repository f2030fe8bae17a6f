//! A key held by the key server, as the provider's key objects hold it: the
//! reference, its public half (for OpenSSL's size and match queries) and a
//! client of the key server that belongs to one process.
//!
//! NGINX decodes its key in the master and signs in forked workers. A
//! connection (a TLS session over a socket) must never be shared between
//! processes: two writers would interleave records. So the client remembers
//! the pid that made it; a process that finds another pid's client makes
//! its own and leaves the inherited one alone (it is leaked, not dropped,
//! so nothing of it runs in the child). Reconnecting after a key-server
//! restart is the client pool's: a call that fails on a reused connection
//! is retried once on a fresh one.

use crate::error::ProviderError;
use conclave_keys::keyref::KeyReference;
use conclave_keys::{KeyAlgorithm, KeyClient};
use conclave_rpc::Credentials;
use rustls::SignatureScheme;
use std::sync::{Arc, Mutex};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The public half of a key, in the forms OpenSSL's parameters want.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicParts {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC point (uncompressed SEC1) on a named curve.
    Ec {
        /// OpenSSL's curve name (`prime256v1`, `secp384r1`).
        group: &'static str,
        /// The point.
        point: Vec<u8>,
    },
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

impl PublicParts {
    /// From SubjectPublicKeyInfo DER.
    pub fn from_spki(spki: &[u8], alg: KeyAlgorithm) -> Result<PublicParts, ProviderError> {
        let bad = |w: &str| ProviderError::BadReference(format!("public key: {w}"));
        let (_, info) = SubjectPublicKeyInfo::from_der(spki).map_err(|_| bad("not SubjectPublicKeyInfo"))?;
        match (info.parsed().map_err(|_| bad("does not parse"))?, alg) {
            (PublicKey::RSA(r), KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096) => {
                Ok(PublicParts::Rsa {
                    n: strip_zeros(r.modulus),
                    e: strip_zeros(r.exponent),
                })
            }
            (PublicKey::EC(p), KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384) => Ok(PublicParts::Ec {
                group: if alg == KeyAlgorithm::EcdsaP256 {
                    "prime256v1"
                } else {
                    "secp384r1"
                },
                point: p.data().to_vec(),
            }),
            _ => Err(bad(
                "only RSA and ECDSA P-256/P-384 keys are served through OpenSSL",
            )),
        }
    }
}

/// One key reached through the key server.
pub struct RemoteKey {
    reference: KeyReference,
    algorithm: KeyAlgorithm,
    public: PublicParts,
    creds: Credentials,
    client: Mutex<Option<(u32, Arc<KeyClient>)>>,
}

impl std::fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKey")
            .field("server", &self.reference.server)
            .field("name", &self.reference.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl RemoteKey {
    /// Reads a key reference (its decoded PEM body, [`KeyReference::from_body`])
    /// and loads the identity it names. No connection is made: NGINX's
    /// master decodes but never signs.
    pub fn from_body(body: &[u8]) -> Result<RemoteKey, ProviderError> {
        let reference =
            KeyReference::from_body(body).map_err(|e| ProviderError::BadReference(e.to_string()))?;
        let algorithm = reference
            .algorithm()
            .map_err(|e| ProviderError::BadReference(e.to_string()))?;
        let public = PublicParts::from_spki(&reference.spki, algorithm)?;
        let creds =
            Credentials::from_dir(&reference.certs, reference.role).map_err(|e| ProviderError::Identity {
                dir: reference.certs.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(RemoteKey {
            reference,
            algorithm,
            public,
            creds,
            client: Mutex::new(None),
        })
    }

    /// The key's type and size.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public half.
    pub fn public(&self) -> &PublicParts {
        &self.public
    }

    /// True for RSA keys.
    pub fn is_rsa(&self) -> bool {
        matches!(self.public, PublicParts::Rsa { .. })
    }

    /// Modulus bits or curve size.
    pub fn bits(&self) -> i32 {
        match self.algorithm {
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa3072 => 3072,
            KeyAlgorithm::Rsa4096 => 4096,
            KeyAlgorithm::EcdsaP256 => 256,
            KeyAlgorithm::EcdsaP384 => 384,
            KeyAlgorithm::Ed25519 => 253,
        }
    }

    /// Security strength in bits (NIST SP 800-57, as OpenSSL reports it).
    pub fn security_bits(&self) -> i32 {
        match self.algorithm {
            KeyAlgorithm::Rsa2048 => 112,
            KeyAlgorithm::Rsa3072 => 128,
            KeyAlgorithm::Rsa4096 => 152,
            KeyAlgorithm::EcdsaP256 => 128,
            KeyAlgorithm::EcdsaP384 => 192,
            KeyAlgorithm::Ed25519 => 128,
        }
    }

    /// The largest signature: the modulus size, or a DER ECDSA signature.
    pub fn max_signature_len(&self) -> usize {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => 72,
            KeyAlgorithm::EcdsaP384 => 104,
            _ => (self.bits() as usize).div_ceil(8),
        }
    }

    fn client(&self) -> Result<Arc<KeyClient>, ProviderError> {
        let pid = std::process::id();
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((owner, c)) = slot.as_ref() {
            if *owner == pid {
                return Ok(c.clone());
            }
        }
        if let Some(inherited) = slot.take() {
            // Another process's connections: never use, never close them.
            std::mem::forget(inherited);
        }
        let c = KeyClient::with_credentials(self.reference.server.clone(), &self.creds).map_err(|e| {
            ProviderError::Identity {
                dir: self.reference.certs.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let c = Arc::new(c);
        *slot = Some((pid, c.clone()));
        Ok(c)
    }

    /// Signs the whole `message` under `scheme` at the key server.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let client = self.client()?;
        client.sign(&self.reference.name, scheme, message).map_err(|e| {
            ProviderError::from_sign(self.reference.server.to_string(), self.reference.name.clone(), e)
        })
    }
}
