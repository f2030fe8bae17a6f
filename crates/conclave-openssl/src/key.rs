//! A key held by the key server, as the provider's key objects hold it: the
//! reference, its public half (for OpenSSL's size and match queries) and the
//! one connection to the key server of the process that signs with it.
//!
//! NGINX decodes its key in the master and signs in forked workers, each a
//! single-threaded event loop that waits out every signature (a provider's
//! `digest_sign` is synchronous). So a worker needs exactly one connection,
//! not a pool: one SIGN in flight at a time, one write and one read per
//! signature, no lock contention, nothing allocated but the request and the
//! reply. A connection (a TLS session over a socket) must never be shared
//! between processes: two writers would interleave records. So the
//! connection remembers the pid that opened it; a process that finds
//! another pid's connection opens its own and leaves the inherited one
//! alone (it is leaked, not dropped, so nothing of it runs in the child).
//!
//! The client options (the rustls configuration, whose session cache lets
//! a reconnect resume its TLS 1.3 session) are built once, when the key is
//! decoded. A SIGN that fails on a reused connection (the key server was
//! restarted) is retried once on a fresh one, so a restart costs one
//! reconnect and no failed handshake. A reference may name fallback key
//! servers: a SIGN that gets no answer (connect, TLS, timeout, broken
//! stream; not a refusal) from one goes to the next, each tried once per
//! SIGN, and the process keeps the connection that answered until it fails.

use crate::error::ProviderError;
use conclave_keys::keyref::KeyReference;
use conclave_keys::op::{self, sign::SignRequest};
use conclave_keys::{KeyAlgorithm, KeyClient, KeysError};
use conclave_rpc::{ClientOptions, Connection, Frame, RpcError};
use rustls::SignatureScheme;
use std::sync::Mutex;
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
    opts: ClientOptions,
    conn: Mutex<Option<ProcessConnection>>,
}

/// A connection, the process that opened it, and which of the reference's
/// key servers ([`KeyReference::servers`]) it goes to.
struct ProcessConnection {
    pid: u32,
    conn: Connection,
    server: usize,
}

impl std::fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKey")
            .field("servers", &self.reference.servers().collect::<Vec<_>>())
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
        let identity = |reason: String| ProviderError::Identity {
            dir: reference.certs.display().to_string(),
            reason,
        };
        let creds = conclave_rpc::Credentials::from_dir(&reference.certs, reference.role)
            .map_err(|e| identity(e.to_string()))?;
        let opts = KeyClient::default_options(&creds).map_err(|e| identity(e.to_string()))?;
        Ok(RemoteKey {
            reference,
            algorithm,
            public,
            opts,
            conn: Mutex::new(None),
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

    /// Signs the whole `message` under `scheme` at the key server.
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let request = SignRequest::encode(&self.reference.name, scheme, message);
        let (reply, server) = self.call(&request).map_err(|e| {
            // No key server answered: name every one tried.
            let all: Vec<String> = self.reference.servers().map(|s| s.to_string()).collect();
            self.error(all.join(", "), e.into())
        })?;
        let at = || self.server_name(server);
        let body = reply
            .into_result()
            .map_err(|status| self.error(at(), KeysError::Refused { op: "SIGN", status }))?;
        op::sign::decode_reply(&body).map_err(|_| self.error(at(), KeysError::Malformed { op: "SIGN" }))
    }

    fn server_name(&self, i: usize) -> String {
        self.reference
            .servers()
            .nth(i)
            .map_or_else(String::new, |s| s.to_string())
    }

    fn error(&self, endpoint: String, e: KeysError) -> ProviderError {
        ProviderError::from_sign(endpoint, self.reference.name.clone(), e)
    }

    /// One SIGN round trip on this process's connection, opened on first
    /// use; if a reused one fails, on a fresh connection to the same key
    /// server, then to each other one in the reference's order. Returns the
    /// reply and the index of the key server that gave it.
    fn call(&self, request: &[u8]) -> Result<(Frame, usize), RpcError> {
        let pid = std::process::id();
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|c| c.pid != pid) {
            // Another process's connection: never use, never close it.
            std::mem::forget(slot.take());
        }
        let mut first = 0;
        if let Some(c) = slot.as_mut() {
            first = c.server;
            match c.conn.call(op::SIGN, request) {
                Ok(reply) => return Ok((reply, c.server)),
                // Stale (the key server restarted, or timed out): reconnect.
                Err(_) => *slot = None,
            }
        }
        let servers: Vec<&conclave_rpc::Endpoint> = self.reference.servers().collect();
        let n = servers.len();
        let mut k = first;
        loop {
            let attempt = Connection::connect(servers[k], &self.opts).and_then(|mut conn| {
                let reply = conn.call(op::SIGN, request)?;
                Ok((conn, reply))
            });
            match attempt {
                Ok((conn, reply)) => {
                    *slot = Some(ProcessConnection { pid, conn, server: k });
                    return Ok((reply, k));
                }
                Err(e) if (k + 1) % n == first => return Err(e),
                Err(_) => k = (k + 1) % n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_parts_of_an_ecdsa_p256_key() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
        let alg = KeyAlgorithm::from_spki(&spki).unwrap();
        assert_eq!(alg, KeyAlgorithm::EcdsaP256);
        match PublicParts::from_spki(&spki, alg).unwrap() {
            PublicParts::Ec { group, point } => {
                assert_eq!(group, "prime256v1");
                assert_eq!(point.len(), 65);
                assert_eq!(point[0], 4);
            }
            other => panic!("not EC: {other:?}"),
        }
    }

    #[test]
    fn refuses_a_key_of_another_type_than_its_algorithm() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
        let r = PublicParts::from_spki(&spki, KeyAlgorithm::Rsa2048);
        assert!(matches!(r, Err(ProviderError::BadReference(_))));
        assert!(matches!(
            PublicParts::from_spki(b"junk", KeyAlgorithm::EcdsaP256),
            Err(ProviderError::BadReference(_))
        ));
    }

    #[test]
    fn strips_leading_zeros() {
        assert_eq!(strip_zeros(&[0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(strip_zeros(&[0]), Vec::<u8>::new());
    }
}
