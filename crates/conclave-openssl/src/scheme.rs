//! From what OpenSSL asks for (a digest name, an RSA padding mode and a PSS
//! salt length) to the one TLS signature scheme the key server signs with.
//! Anything a TLS scheme does not use is refused here, before the key
//! server is asked: libssl probes digests with `DigestSignInit` to pick its
//! signature algorithms, so a refusal at init steers it to one that works.

use crate::error::ProviderError;
use conclave_keys::KeyAlgorithm;
use rustls::SignatureScheme;

/// A digest the key server's schemes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    /// Parses OpenSSL's names (`SHA256`, `SHA2-256`, `SHA-256`, any case).
    pub fn parse(name: &str) -> Option<Digest> {
        match name.to_ascii_uppercase().as_str() {
            "SHA256" | "SHA2-256" | "SHA-256" | "2.16.840.1.101.3.4.2.1" => Some(Digest::Sha256),
            "SHA384" | "SHA2-384" | "SHA-384" | "2.16.840.1.101.3.4.2.2" => Some(Digest::Sha384),
            "SHA512" | "SHA2-512" | "SHA-512" | "2.16.840.1.101.3.4.2.3" => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes (the PSS salt length TLS uses).
    pub fn output_len(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
            Digest::Sha512 => 64,
        }
    }

    /// OpenSSL's name.
    pub fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "SHA256",
            Digest::Sha384 => "SHA384",
            Digest::Sha512 => "SHA512",
        }
    }
}

/// RSA padding as OpenSSL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// PKCS#1 v1.5 (`RSA_PKCS1_PADDING`, 1).
    Pkcs1,
    /// PSS (`RSA_PKCS1_PSS_PADDING`, 6).
    Pss,
}

impl Padding {
    /// From OpenSSL's integer.
    pub fn from_int(v: i32) -> Option<Padding> {
        match v {
            1 => Some(Padding::Pkcs1),
            6 => Some(Padding::Pss),
            _ => None,
        }
    }

    /// From OpenSSL's string.
    pub fn from_name(s: &str) -> Option<Padding> {
        match s {
            "pkcs1" => Some(Padding::Pkcs1),
            "pss" => Some(Padding::Pss),
            _ => None,
        }
    }
}

/// PSS salt length as OpenSSL names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaltLen {
    /// `RSA_PSS_SALTLEN_DIGEST` (-1, "digest"): what TLS uses.
    Digest,
    /// Anything else (`auto`, `max`, or a number).
    Other(i64),
}

impl SaltLen {
    /// From OpenSSL's integer.
    pub fn from_int(v: i32) -> SaltLen {
        if v == -1 {
            SaltLen::Digest
        } else {
            SaltLen::Other(v.into())
        }
    }

    /// From OpenSSL's string.
    pub fn from_name(s: &str) -> SaltLen {
        match s {
            "digest" => SaltLen::Digest,
            "auto" => SaltLen::Other(-2),
            "max" => SaltLen::Other(-3),
            n => SaltLen::Other(n.parse().unwrap_or(i64::MIN)),
        }
    }
}

/// Is `md` usable with a key of `alg` at all (the init-time check)?
pub fn digest_allowed(alg: KeyAlgorithm, md: Digest) -> bool {
    match alg {
        KeyAlgorithm::EcdsaP256 => md == Digest::Sha256,
        KeyAlgorithm::EcdsaP384 => md == Digest::Sha384,
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => true,
        KeyAlgorithm::Ed25519 => false,
    }
}

/// The TLS scheme for these parameters, or why there is none.
pub fn scheme(
    alg: KeyAlgorithm,
    md: Digest,
    pad: Padding,
    salt: SaltLen,
    mgf1: Option<Digest>,
) -> Result<SignatureScheme, ProviderError> {
    use SignatureScheme as S;
    let unsupported = |why: String| Err(ProviderError::Unsupported(why));
    match alg {
        KeyAlgorithm::EcdsaP256 if md == Digest::Sha256 => Ok(S::ECDSA_NISTP256_SHA256),
        KeyAlgorithm::EcdsaP384 if md == Digest::Sha384 => Ok(S::ECDSA_NISTP384_SHA384),
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => match pad {
            Padding::Pkcs1 => Ok(match md {
                Digest::Sha256 => S::RSA_PKCS1_SHA256,
                Digest::Sha384 => S::RSA_PKCS1_SHA384,
                Digest::Sha512 => S::RSA_PKCS1_SHA512,
            }),
            Padding::Pss => {
                let salt_ok = match salt {
                    SaltLen::Digest => true,
                    SaltLen::Other(n) => n == md.output_len() as i64,
                };
                if !salt_ok {
                    return unsupported(format!("PSS salt length {salt:?} (TLS uses the digest length)"));
                }
                if mgf1.is_some_and(|m| m != md) {
                    return unsupported("PSS with an MGF1 digest other than the message digest".into());
                }
                Ok(match md {
                    Digest::Sha256 => S::RSA_PSS_SHA256,
                    Digest::Sha384 => S::RSA_PSS_SHA384,
                    Digest::Sha512 => S::RSA_PSS_SHA512,
                })
            }
        },
        _ => unsupported(format!("{} with a {alg:?} key", md.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SignatureScheme as S;

    #[test]
    fn maps_tls_parameters_to_schemes() {
        let rsa = KeyAlgorithm::Rsa2048;
        let p = |md, pad, salt| scheme(rsa, md, pad, salt, None).unwrap();
        assert_eq!(
            p(Digest::Sha256, Padding::Pkcs1, SaltLen::Digest),
            S::RSA_PKCS1_SHA256
        );
        assert_eq!(
            p(Digest::Sha384, Padding::Pss, SaltLen::Digest),
            S::RSA_PSS_SHA384
        );
        assert_eq!(
            p(Digest::Sha512, Padding::Pss, SaltLen::Other(64)),
            S::RSA_PSS_SHA512
        );
        let ec = scheme(
            KeyAlgorithm::EcdsaP256,
            Digest::Sha256,
            Padding::Pkcs1,
            SaltLen::Digest,
            None,
        );
        assert_eq!(ec.unwrap(), S::ECDSA_NISTP256_SHA256);
        let ec = scheme(
            KeyAlgorithm::EcdsaP384,
            Digest::Sha384,
            Padding::Pkcs1,
            SaltLen::Digest,
            None,
        );
        assert_eq!(ec.unwrap(), S::ECDSA_NISTP384_SHA384);
    }

    #[test]
    fn refuses_what_tls_does_not_use() {
        let r = scheme(
            KeyAlgorithm::EcdsaP256,
            Digest::Sha384,
            Padding::Pkcs1,
            SaltLen::Digest,
            None,
        );
        assert!(matches!(r, Err(ProviderError::Unsupported(_))));
        let r = scheme(
            KeyAlgorithm::Rsa2048,
            Digest::Sha256,
            Padding::Pss,
            SaltLen::Other(-3),
            None,
        );
        assert!(matches!(r, Err(ProviderError::Unsupported(_))));
        let r = scheme(
            KeyAlgorithm::Rsa2048,
            Digest::Sha256,
            Padding::Pss,
            SaltLen::Digest,
            Some(Digest::Sha512),
        );
        assert!(matches!(r, Err(ProviderError::Unsupported(_))));
        assert!(!digest_allowed(KeyAlgorithm::EcdsaP256, Digest::Sha512));
        assert_eq!(Digest::parse("sha2-256"), Some(Digest::Sha256));
        assert_eq!(Digest::parse("SHA1"), None);
    }
}
