//! Key reference files: a small PEM document (`CONCLAVE KEY REFERENCE`) that
//! names a key held by a key server, for programs that take a key *file*
//! (stock NGINX, `openssl s_server`, through the `conclave-openssl`
//! provider). It holds no secret: the key server's endpoint, the key's
//! name, the directory of the mTLS identity used to reach it (paths only),
//! and the key's public half, so a program can match it against its
//! certificate without a round trip. `conclave keyref` writes one.
//!
//! The PEM body is base64 of UTF-8 lines `FIELD VALUE`, first line
//! `conclave-key-reference 1`. No PEM headers: OpenSSL's own PEM decoder
//! treats any header longer than `Proc-Type:` as an encryption header and
//! would stop every decoder after it with an error.

use crate::algorithm::KeyAlgorithm;
use base64::Engine as _;
use conclave_rpc::{Endpoint, Role};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The PEM label of a key reference.
pub const PEM_LABEL: &str = "CONCLAVE KEY REFERENCE";
const MAGIC: &str = "conclave-key-reference 1";

/// Why a key reference could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRefError {
    /// Not a PEM `CONCLAVE KEY REFERENCE` block.
    #[error("not a conclave key reference (no -----BEGIN {PEM_LABEL}----- block)")]
    NotAKeyReference,
    /// The PEM body is not base64 or not UTF-8.
    #[error("key reference body is not base64 of UTF-8 text")]
    Encoding,
    /// The first line is not `conclave-key-reference 1`.
    #[error("unsupported key reference version (want {MAGIC:?})")]
    Version,
    /// A field is missing, repeated, unknown or invalid.
    #[error("key reference field {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A key held by a key server, as named in a key reference file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReference {
    /// The key server.
    pub server: Endpoint,
    /// Further key servers holding the same key (`fallback` lines), tried in
    /// order when the one before does not answer.
    pub fallbacks: Vec<Endpoint>,
    /// The key's name on the key server.
    pub name: String,
    /// The identity directory (`root.crt`, `<role>.crt`, `<role>.key`).
    pub certs: PathBuf,
    /// The role whose identity is presented (normally `edge`).
    pub role: Role,
    /// The public key, SubjectPublicKeyInfo DER, as the key server gave it.
    pub spki: Vec<u8>,
}

fn field_err(field: &'static str, reason: impl Into<String>) -> KeyRefError {
    KeyRefError::Field {
        field,
        reason: reason.into(),
    }
}

impl KeyReference {
    /// Every key server of the reference: `server`, then the fallbacks.
    pub fn servers(&self) -> impl Iterator<Item = &Endpoint> {
        std::iter::once(&self.server).chain(&self.fallbacks)
    }

    /// The key's algorithm, from its public key.
    pub fn algorithm(&self) -> Result<KeyAlgorithm, crate::KeysError> {
        KeyAlgorithm::from_spki(&self.spki)
    }

    /// The PEM text of this reference. Refuses values that would not read
    /// back (a newline in a path or name).
    pub fn to_pem(&self) -> Result<String, KeyRefError> {
        let certs = self
            .certs
            .to_str()
            .ok_or_else(|| field_err("certs", "path is not UTF-8"))?;
        for (field, v) in [("name", self.name.as_str()), ("certs", certs)] {
            if v.is_empty() || v.contains(['\n', '\r']) {
                return Err(field_err(field, "empty or holds a line break"));
            }
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let fallbacks: String = self.fallbacks.iter().map(|e| format!("fallback {e}\n")).collect();
        let body = format!(
            "{MAGIC}\nserver {}\n{fallbacks}name {}\ncerts {}\nrole {}\nspki {}\n",
            self.server,
            self.name,
            certs,
            self.role,
            b64.encode(&self.spki)
        );
        let enc = b64.encode(body.as_bytes());
        let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
        for chunk in enc.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        let _ = writeln!(out, "-----END {PEM_LABEL}-----");
        Ok(out)
    }

    /// True if `text` starts (after blank lines) with our PEM label, so a
    /// decoder can tell "not mine" (let others try) from "mine but broken".
    pub fn looks_like(text: &[u8]) -> bool {
        let begin = format!("-----BEGIN {PEM_LABEL}-----");
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(text.len());
        text[start..].starts_with(begin.as_bytes())
    }

    /// The decoded PEM body (the `FIELD VALUE` lines) of a reference.
    pub fn body_from_pem(text: &[u8]) -> Result<Vec<u8>, KeyRefError> {
        let text = std::str::from_utf8(text).map_err(|_| KeyRefError::NotAKeyReference)?;
        let begin = format!("-----BEGIN {PEM_LABEL}-----");
        let end = format!("-----END {PEM_LABEL}-----");
        let start = text.find(&begin).ok_or(KeyRefError::NotAKeyReference)? + begin.len();
        let stop = text[start..].find(&end).ok_or(KeyRefError::NotAKeyReference)? + start;
        let b64: String = text[start..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| KeyRefError::Encoding)
    }

    /// True if `body` is a decoded reference body (starts with the version line).
    pub fn is_body(body: &[u8]) -> bool {
        body.starts_with(MAGIC.as_bytes())
    }

    /// Reads a reference from its PEM text.
    pub fn from_pem(text: &[u8]) -> Result<KeyReference, KeyRefError> {
        Self::from_body(&Self::body_from_pem(text)?)
    }

    /// Reads a reference from its decoded PEM body.
    pub fn from_body(body: &[u8]) -> Result<KeyReference, KeyRefError> {
        let b64e = base64::engine::general_purpose::STANDARD;
        let body = std::str::from_utf8(body).map_err(|_| KeyRefError::Encoding)?;
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err(KeyRefError::Version);
        }
        let (mut server, mut name, mut certs, mut role, mut spki) = (None, None, None, None, None);
        let mut fallbacks = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            if k == "fallback" {
                // The one field that may repeat: one line per key server, in order.
                fallbacks.push(
                    v.parse::<Endpoint>()
                        .map_err(|e| field_err("fallback", e.to_string()))?,
                );
                continue;
            }
            let slot = match k {
                "server" => &mut server,
                "name" => &mut name,
                "certs" => &mut certs,
                "role" => &mut role,
                "spki" => &mut spki,
                other => return Err(field_err("(unknown)", format!("unknown field {other:?}"))),
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(field_err("(repeated)", format!("field {k:?} given twice")));
            }
        }
        let need = |v: Option<String>, f: &'static str| v.ok_or_else(|| field_err(f, "missing"));
        let server = need(server, "server")?
            .parse::<Endpoint>()
            .map_err(|e| field_err("server", e.to_string()))?;
        let name = need(name, "name")?;
        crate::name::KeyName::new(&name).map_err(|e| field_err("name", e.to_string()))?;
        let role = need(role, "role")?
            .parse::<Role>()
            .map_err(|e| field_err("role", e.to_string()))?;
        let spki = b64e
            .decode(need(spki, "spki")?.as_bytes())
            .map_err(|_| field_err("spki", "not base64"))?;
        KeyAlgorithm::from_spki(&spki).map_err(|e| field_err("spki", e.to_string()))?;
        Ok(KeyReference {
            server,
            fallbacks,
            name,
            certs: PathBuf::from(need(certs, "certs")?),
            role,
            spki,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki() -> Vec<u8> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::PublicKeyData::subject_public_key_info(&kp)
    }

    fn sample() -> KeyReference {
        KeyReference {
            server: "tcp://127.0.0.1:9000".parse().unwrap(),
            fallbacks: Vec::new(),
            name: "server".into(),
            certs: PathBuf::from("/etc/conclave/certs dir"),
            role: Role::Edge,
            spki: spki(),
        }
    }

    #[test]
    fn round_trips_through_pem() {
        let r = sample();
        let pem = r.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CONCLAVE KEY REFERENCE-----\n"));
        assert!(KeyReference::looks_like(pem.as_bytes()));
        assert_eq!(KeyReference::from_pem(pem.as_bytes()).unwrap(), r);
        assert_eq!(r.algorithm().unwrap(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn fallbacks_round_trip_in_order_and_a_reference_without_them_still_reads() {
        let mut r = sample();
        r.fallbacks = vec![
            "unix:///run/conclave/ks2.sock".parse().unwrap(),
            "tcp://127.0.0.1:9002".parse().unwrap(),
        ];
        let back = KeyReference::from_pem(r.to_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            back.servers().map(|e| e.to_string()).collect::<Vec<_>>(),
            [
                "tcp://127.0.0.1:9000",
                "unix:///run/conclave/ks2.sock",
                "tcp://127.0.0.1:9002"
            ]
        );
        // What session 7's `conclave keyref` wrote: no fallback line.
        let old = sample().to_pem().unwrap();
        assert!(
            !String::from_utf8(KeyReference::body_from_pem(old.as_bytes()).unwrap())
                .unwrap()
                .contains("fallback")
        );
        assert_eq!(KeyReference::from_pem(old.as_bytes()).unwrap().fallbacks, []);
        let b64 = base64::engine::general_purpose::STANDARD;
        let bad = format!(
            "{MAGIC}\nserver tcp://127.0.0.1:1\nfallback nowhere\nname n\ncerts /c\nrole edge\nspki {}\n",
            b64.encode(spki())
        );
        assert!(matches!(
            KeyReference::from_body(bad.as_bytes()),
            Err(KeyRefError::Field {
                field: "fallback",
                ..
            })
        ));
    }

    #[test]
    fn other_pem_is_not_a_key_reference() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(!KeyReference::looks_like(pem));
        assert_eq!(KeyReference::from_pem(pem), Err(KeyRefError::NotAKeyReference));
    }

    #[test]
    fn refuses_a_missing_field_and_a_bad_name() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let wrap = |body: &str| {
            format!(
                "-----BEGIN {PEM_LABEL}-----\n{}\n-----END {PEM_LABEL}-----\n",
                b64.encode(body)
            )
        };
        let no_name = wrap(&format!(
            "{MAGIC}\nserver tcp://127.0.0.1:1\ncerts /c\nrole edge\nspki {}\n",
            b64.encode(spki())
        ));
        assert_eq!(
            KeyReference::from_pem(no_name.as_bytes()),
            Err(field_err("name", "missing"))
        );
        let bad = wrap(&format!(
            "{MAGIC}\nserver tcp://127.0.0.1:1\nname ../x\ncerts /c\nrole edge\nspki {}\n",
            b64.encode(spki())
        ));
        assert!(matches!(
            KeyReference::from_pem(bad.as_bytes()),
            Err(KeyRefError::Field { field: "name", .. })
        ));
        assert_eq!(
            KeyReference::from_pem(wrap("v2\n").as_bytes()),
            Err(KeyRefError::Version)
        );
    }

    #[test]
    fn refuses_a_line_break_in_a_path() {
        let mut r = sample();
        r.certs = PathBuf::from("/a\nb");
        assert!(matches!(
            r.to_pem(),
            Err(KeyRefError::Field { field: "certs", .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = KeyReference::from_body(&bytes);
            let _ = KeyReference::from_pem(&bytes);
            let _ = KeyReference::looks_like(&bytes);
        }

        #[test]
        fn arbitrary_fields_never_panic(lines in proptest::collection::vec("(server|fallback|name|certs|role|spki|x)( [ -~]{0,40})?", 0..8)) {
            let body = format!("{MAGIC}\n{}", lines.join("\n"));
            let _ = KeyReference::from_body(body.as_bytes());
        }
    }
}
