//! Key algorithms the key server serves, and the TLS signature schemes each
//! may sign with. The scheme, never a padding constant, is what a client
//! names: the original passed OpenSSL's padding argument through, which made
//! the server a raw-RSA and a Bleichenbacher oracle.

use crate::error::KeysError;
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::fmt;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A key type and size the key server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

const RSA_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

impl KeyAlgorithm {
    /// Every algorithm, in wire-code order.
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
    ];

    /// The code of this algorithm on the wire.
    pub fn code(self) -> u16 {
        match self {
            KeyAlgorithm::Rsa2048 => 1,
            KeyAlgorithm::Rsa3072 => 2,
            KeyAlgorithm::Rsa4096 => 3,
            KeyAlgorithm::EcdsaP256 => 16,
            KeyAlgorithm::EcdsaP384 => 17,
            KeyAlgorithm::Ed25519 => 32,
        }
    }

    /// The algorithm of a wire code.
    pub fn from_code(c: u16) -> Option<KeyAlgorithm> {
        Self::ALL.into_iter().find(|a| a.code() == c)
    }

    /// The schemes a key of this type signs with, most preferred first.
    /// PKCS#1 v1.5 is kept for TLS 1.2 clients; rustls offers only PSS in
    /// TLS 1.3.
    pub fn schemes(self) -> &'static [SignatureScheme] {
        match self {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => RSA_SCHEMES,
            KeyAlgorithm::EcdsaP256 => &[SignatureScheme::ECDSA_NISTP256_SHA256],
            KeyAlgorithm::EcdsaP384 => &[SignatureScheme::ECDSA_NISTP384_SHA384],
            KeyAlgorithm::Ed25519 => &[SignatureScheme::ED25519],
        }
    }

    /// True if a key of this type may sign with `scheme`.
    pub fn supports(self, scheme: SignatureScheme) -> bool {
        self.schemes().contains(&scheme)
    }

    /// The algorithm family rustls asks for.
    pub fn signature_algorithm(self) -> SignatureAlgorithm {
        match self {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => SignatureAlgorithm::RSA,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::ED25519,
        }
    }

    /// The algorithm of a public key (SubjectPublicKeyInfo DER), so the
    /// edge can tell it from the certificate alone and the store can refuse
    /// sizes and curves it does not serve.
    pub fn from_spki(spki: &[u8]) -> Result<KeyAlgorithm, KeysError> {
        let unsupported = |what: String| Err(KeysError::UnsupportedKey(what));
        let (rest, info) = SubjectPublicKeyInfo::from_der(spki).map_err(|_| {
            KeysError::UnsupportedKey("public key is not valid SubjectPublicKeyInfo DER".into())
        })?;
        if !rest.is_empty() {
            return unsupported("trailing bytes after the public key".into());
        }
        let oid = &info.algorithm.algorithm;
        if *oid == OID_PKCS1_RSAENCRYPTION {
            let Ok(PublicKey::RSA(rsa)) = info.parsed() else {
                return unsupported("malformed RSA public key".into());
            };
            return match rsa.key_size() {
                2048 => Ok(KeyAlgorithm::Rsa2048),
                3072 => Ok(KeyAlgorithm::Rsa3072),
                4096 => Ok(KeyAlgorithm::Rsa4096),
                n => unsupported(format!("RSA-{n} (only 2048, 3072 and 4096 bits are served)")),
            };
        }
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = info.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            return match curve {
                Some(c) if c == OID_EC_P256 => Ok(KeyAlgorithm::EcdsaP256),
                Some(c) if c == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcdsaP384),
                Some(c) => unsupported(format!("ECDSA on curve {c} (only P-256 and P-384 are served)")),
                None => unsupported("ECDSA key without a named curve".into()),
            };
        }
        if *oid == OID_SIG_ED25519 {
            return Ok(KeyAlgorithm::Ed25519);
        }
        unsupported(format!("public key algorithm {oid}"))
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_schemes_match_family() {
        for a in KeyAlgorithm::ALL {
            assert_eq!(KeyAlgorithm::from_code(a.code()), Some(a));
            assert!(!a.schemes().is_empty());
        }
        assert_eq!(KeyAlgorithm::from_code(0), None);
        assert!(KeyAlgorithm::Rsa2048.supports(SignatureScheme::RSA_PSS_SHA256));
        assert!(!KeyAlgorithm::Rsa2048.supports(SignatureScheme::ECDSA_NISTP256_SHA256));
        assert!(!KeyAlgorithm::EcdsaP256.supports(SignatureScheme::ECDSA_NISTP384_SHA384));
    }

    #[test]
    fn garbage_spki_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x30\x00", b"\x30\x82\xff\xff", b"hello"] {
            assert!(KeyAlgorithm::from_spki(bad).is_err());
        }
    }
}
