//! The conclave's certificates: a CA, one identity per role (usable as TLS
//! server and client), and a site certificate for the edge. Keys are written
//! 0600 and nothing is overwritten without `force`.

use crate::identity::{Identity, Tenant};
use crate::role::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Key type of the site certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKey {
    /// RSA-2048, like the seed's `server.key`.
    Rsa2048,
    /// ECDSA on P-256.
    EcdsaP256,
}

impl std::str::FromStr for SiteKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rsa2048" | "rsa-2048" | "rsa" => Ok(SiteKey::Rsa2048),
            "ecdsa-p256" | "ecdsa" | "p256" => Ok(SiteKey::EcdsaP256),
            _ => Err(format!(
                "unknown site key type {s:?} (expected rsa2048 or ecdsa-p256)"
            )),
        }
    }
}

/// Why certificates could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file would be overwritten.
    #[error("{0} already exists (use --force to replace the conclave's certificates)")]
    Exists(PathBuf),
    /// Writing or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rcgen could not build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What `conclave certs` writes.
#[derive(Clone, Debug)]
pub struct CertsOptions {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Site key type.
    pub site_key: SiteKey,
    /// Replace existing files.
    pub force: bool,
}

/// A loaded CA that can issue more certificates (for example per tenant).
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(days);
}

impl Ca {
    /// A fresh CA with an ECDSA P-256 key.
    pub fn generate() -> Result<(Ca, String, String), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "conclave CA");
        p.distinguished_name.push(DnType::OrganizationName, "conclave");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p, 3650);
        let cert = p.self_signed(&key)?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        Ok((
            Ca {
                issuer: Issuer::new(p, key),
            },
            cert_pem,
            key_pem,
        ))
    }

    /// Loads the CA written by `conclave certs` (`root.crt`, `root.key`).
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        let key = KeyPair::from_pem(&read("root.key")?)?;
        let issuer = Issuer::from_ca_cert_pem(&read("root.crt")?, key)?;
        Ok(Ca { issuer })
    }

    /// Issues a leaf for `names` (DNS names or IP addresses), usable for TLS
    /// server and client authentication. Returns (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str], key: SiteKey) -> Result<(String, String), PkiError> {
        self.issue_with_uris(names, &[], key)
    }

    /// Issues a process identity: the role as its DNS name (what clients
    /// check as the server name) and the identity's SPIFFE URI (the tenant).
    /// ECDSA P-256. Returns (certificate PEM, key PEM).
    pub fn issue_identity(&self, id: &Identity) -> Result<(String, String), PkiError> {
        self.issue_with_uris(&[id.role.as_str()], &[id.spiffe_uri()], SiteKey::EcdsaP256)
    }

    pub(crate) fn issue_with_uris(
        &self,
        names: &[&str],
        uris: &[String],
        key: SiteKey,
    ) -> Result<(String, String), PkiError> {
        let alg = match key {
            SiteKey::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            SiteKey::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let kp = KeyPair::generate_for(alg)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            p.subject_alt_names.push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into()?),
            });
        }
        for u in uris {
            p.subject_alt_names.push(SanType::URI(u.as_str().try_into()?));
        }
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("conclave"));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, 825);
        let cert = p.signed_by(&kp, &self.issuer)?;
        Ok((cert.pem(), kp.serialize_pem()))
    }
}

/// Writes `contents` to `path`; private files get mode 0600 from creation on.
pub fn write_file(path: &Path, contents: &str, private: bool, force: bool) -> Result<(), PkiError> {
    if !force && path.exists() {
        return Err(PkiError::Exists(path.to_path_buf()));
    }
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Write a sibling then rename, so a reader never sees half a key.
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// The files `conclave certs` writes, relative to its output directory.
pub fn file_names() -> Vec<String> {
    let mut v = vec!["root.crt".to_string(), "root.key".to_string()];
    for r in Role::ALL {
        v.push(format!("{r}.crt"));
        v.push(format!("{r}.key"));
    }
    v.push("server.crt".into());
    v.push("server.key".into());
    v
}

/// Writes the CA, every role identity and the site certificate. Returns the
/// paths written.
pub fn generate(opts: &CertsOptions) -> Result<Vec<PathBuf>, PkiError> {
    fs::create_dir_all(&opts.out).map_err(|source| PkiError::Io {
        path: opts.out.clone(),
        source,
    })?;
    if !opts.force {
        for n in file_names() {
            let p = opts.out.join(n);
            if p.exists() {
                return Err(PkiError::Exists(p));
            }
        }
    }
    let mut written = Vec::new();
    let mut put = |name: String, contents: &str, private: bool| -> Result<(), PkiError> {
        let p = opts.out.join(name);
        write_file(&p, contents, private, true)?;
        written.push(p);
        Ok(())
    };
    let (ca, ca_pem, ca_key) = Ca::generate()?;
    put("root.crt".into(), &ca_pem, false)?;
    put("root.key".into(), &ca_key, true)?;
    for role in Role::ALL {
        let (c, k) = ca.issue_identity(&Identity::new(role, Tenant::default()))?;
        put(format!("{role}.crt"), &c, false)?;
        put(format!("{role}.key"), &k, true)?;
    }
    let (c, k) = ca.issue(&["localhost", "127.0.0.1", "::1"], opts.site_key)?;
    put("server.crt".into(), &c, false)?;
    put("server.key".into(), &k, true)?;
    Ok(written)
}
