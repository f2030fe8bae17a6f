//! The conclave's certificates: a CA, one identity per process (role and
//! tenant, usable as TLS server and client), and a site certificate for the
//! edge. Keys are written 0600 and nothing is overwritten without `force`.
//!
//! The layout (docs/protocol.md, "Certificates") keeps every secret where it
//! is used: the CA key only in `ca/` (meant to go offline), each process's
//! key only in that process's directory, the site key in `site/` until a
//! deployment moves it to the one process that signs with it.

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
    /// The CA key could not be read, or group or others may read it.
    #[error(transparent)]
    Secret(#[from] conclave_secret::SecretFileError),
    /// rcgen could not build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What `conclave certs` writes.
#[derive(Clone, Debug)]
pub struct CertsOptions {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Tenants besides `default` that get an `edge@T` and a `client@T`.
    pub tenants: Vec<Tenant>,
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
        let key_pem = conclave_secret::read_private(&dir.join(CertsLayout::CA_KEY))?;
        let key_pem = std::str::from_utf8(&key_pem).map_err(|_| PkiError::Io {
            path: dir.join(CertsLayout::CA_KEY),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not PEM text"),
        })?;
        let key = KeyPair::from_pem(key_pem)?;
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

/// Creates `dir` (and parents) and makes it 0700: it holds a private key.
pub fn private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Where `conclave certs` puts each file under its output directory: one
/// place that knows the layout, for the command, deployments and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertsLayout {
    root: PathBuf,
}

impl CertsLayout {
    /// The CA's directory name (certificate and private key).
    pub const CA_DIR: &'static str = "ca";
    /// The site certificate's directory name.
    pub const SITE_DIR: &'static str = "site";
    /// The CA certificate's file name, in `ca/` and in every process directory.
    pub const CA_CERT: &'static str = "root.crt";
    /// The CA key's file name (only in `ca/`).
    pub const CA_KEY: &'static str = "root.key";
    /// The site certificate's file name.
    pub const SITE_CERT: &'static str = "server.crt";
    /// The site key's file name.
    pub const SITE_KEY: &'static str = "server.key";

    /// The layout under `root` (a `conclave certs --out` directory).
    pub fn new(root: impl Into<PathBuf>) -> CertsLayout {
        CertsLayout { root: root.into() }
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ca/`: the CA certificate and key, the only copy of the key.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join(Self::CA_DIR)
    }

    /// `ca/root.crt`: what a client outside the conclave trusts (for
    /// example `conclave ab --cacert`).
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join(Self::CA_CERT)
    }

    /// The directory name of a process identity: `edge` for `edge@default`,
    /// `edge@acme` otherwise.
    pub fn identity_dir_name(id: &Identity) -> String {
        if id.tenant.as_str() == Tenant::DEFAULT {
            id.role.to_string()
        } else {
            id.to_string()
        }
    }

    /// The directory of one process identity (`root.crt`, `<role>.crt`,
    /// `<role>.key`): what that process is given, and nothing else.
    pub fn identity_dir(&self, id: &Identity) -> PathBuf {
        self.root.join(Self::identity_dir_name(id))
    }

    /// The directory of the default tenant's `role`.
    pub fn role_dir(&self, role: Role) -> PathBuf {
        self.identity_dir(&Identity::new(role, Tenant::default()))
    }

    /// `site/`: the site certificate and key.
    pub fn site_dir(&self) -> PathBuf {
        self.root.join(Self::SITE_DIR)
    }

    /// `site/server.crt`.
    pub fn site_cert(&self) -> PathBuf {
        self.site_dir().join(Self::SITE_CERT)
    }

    /// `site/server.key`, until a deployment moves it.
    pub fn site_key(&self) -> PathBuf {
        self.site_dir().join(Self::SITE_KEY)
    }

    /// The identities `conclave certs` issues: every role of the default
    /// tenant, then `edge` and `client` of each extra tenant.
    pub fn identities(tenants: &[Tenant]) -> Vec<Identity> {
        let mut ids: Vec<Identity> = Role::ALL
            .into_iter()
            .map(|r| Identity::new(r, Tenant::default()))
            .collect();
        for t in tenants.iter().filter(|t| t.as_str() != Tenant::DEFAULT) {
            for r in [Role::Edge, Role::Client] {
                let id = Identity::new(r, t.clone());
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// The files of one identity directory, relative to it.
    pub fn identity_files(role: Role) -> [String; 3] {
        [
            Self::CA_CERT.to_string(),
            format!("{role}.crt"),
            format!("{role}.key"),
        ]
    }
}

/// The files `conclave certs` writes for `tenants`, relative to its output
/// directory.
pub fn file_names_for(tenants: &[Tenant]) -> Vec<PathBuf> {
    let ca = Path::new(CertsLayout::CA_DIR);
    let site = Path::new(CertsLayout::SITE_DIR);
    let mut v = vec![ca.join(CertsLayout::CA_CERT), ca.join(CertsLayout::CA_KEY)];
    for id in CertsLayout::identities(tenants) {
        let d = PathBuf::from(CertsLayout::identity_dir_name(&id));
        v.extend(CertsLayout::identity_files(id.role).map(|f| d.join(f)));
    }
    v.push(site.join(CertsLayout::SITE_CERT));
    v.push(site.join(CertsLayout::SITE_KEY));
    v
}

/// The files `conclave certs` writes without `--tenant`, relative to its
/// output directory.
pub fn file_names() -> Vec<PathBuf> {
    file_names_for(&[])
}

/// Writes one identity directory (0700: the CA certificate, the identity's
/// certificate, its key 0600) under `out`. Returns the paths written.
pub fn write_identity(
    ca: &Ca,
    ca_pem: &str,
    out: &CertsLayout,
    id: &Identity,
    force: bool,
) -> Result<Vec<PathBuf>, PkiError> {
    let dir = out.identity_dir(id);
    if !force {
        for f in CertsLayout::identity_files(id.role) {
            let p = dir.join(f);
            if p.exists() {
                return Err(PkiError::Exists(p));
            }
        }
    }
    private_dir(&dir)?;
    let (c, k) = ca.issue_identity(id)?;
    let [root, crt, key] = CertsLayout::identity_files(id.role).map(|f| dir.join(f));
    write_file(&root, ca_pem, false, true)?;
    write_file(&crt, &c, false, true)?;
    write_file(&key, &k, true, true)?;
    Ok(vec![root, crt, key])
}

/// Writes the CA (`ca/`), every identity's directory and the site
/// certificate (`site/`). Returns the paths written.
pub fn generate(opts: &CertsOptions) -> Result<Vec<PathBuf>, PkiError> {
    fs::create_dir_all(&opts.out).map_err(|source| PkiError::Io {
        path: opts.out.clone(),
        source,
    })?;
    if !opts.force {
        for n in file_names_for(&opts.tenants) {
            let p = opts.out.join(n);
            if p.exists() {
                return Err(PkiError::Exists(p));
            }
        }
    }
    let layout = CertsLayout::new(&opts.out);
    let mut written = Vec::new();
    let (ca, ca_pem, ca_key) = Ca::generate()?;
    private_dir(&layout.ca_dir())?;
    for (p, text, private) in [
        (layout.ca_cert(), &ca_pem, false),
        (layout.ca_dir().join(CertsLayout::CA_KEY), &ca_key, true),
    ] {
        write_file(&p, text, private, true)?;
        written.push(p);
    }
    for id in CertsLayout::identities(&opts.tenants) {
        written.extend(write_identity(&ca, &ca_pem, &layout, &id, true)?);
    }
    private_dir(&layout.site_dir())?;
    let (c, k) = ca.issue(&["localhost", "127.0.0.1", "::1"], opts.site_key)?;
    write_file(&layout.site_cert(), &c, false, true)?;
    write_file(&layout.site_key(), &k, true, true)?;
    written.push(layout.site_cert());
    written.push(layout.site_key());
    Ok(written)
}

/// Issues one more identity directory under `out` from the CA in `ca_dir`
/// (`conclave certs --ca DIR/ca --issue edge@acme --out DIR`). Returns the
/// paths written.
pub fn issue_one(ca_dir: &Path, id: &Identity, out: &Path, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    let ca = Ca::load(ca_dir)?;
    let cert = ca_dir.join(CertsLayout::CA_CERT);
    let ca_pem = fs::read_to_string(&cert).map_err(|source| PkiError::Io { path: cert, source })?;
    fs::create_dir_all(out).map_err(|source| PkiError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    write_identity(&ca, &ca_pem, &CertsLayout::new(out), id, force)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn layout_keeps_each_secret_in_one_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let acme: Tenant = "acme".parse().unwrap();
        let written = generate(&CertsOptions {
            out: tmp.path().to_path_buf(),
            tenants: vec![acme.clone()],
            site_key: SiteKey::EcdsaP256,
            force: false,
        })
        .unwrap();
        let mut expect: Vec<PathBuf> = file_names_for(std::slice::from_ref(&acme))
            .iter()
            .map(|f| tmp.path().join(f))
            .collect();
        let mut got = written.clone();
        expect.sort();
        got.sort();
        assert_eq!(got, expect);
        let l = CertsLayout::new(tmp.path());
        assert_eq!(mode(&l.ca_dir()), 0o700);
        assert_eq!(mode(&l.site_dir()), 0o700);
        for id in CertsLayout::identities(std::slice::from_ref(&acme)) {
            let d = l.identity_dir(&id);
            assert_eq!(mode(&d), 0o700, "{}", d.display());
            let mut names: Vec<String> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            let mut want = CertsLayout::identity_files(id.role).to_vec();
            want.sort();
            assert_eq!(names, want);
            assert_eq!(mode(&d.join(format!("{}.key", id.role))), 0o600);
        }
        assert!(l
            .identity_dir(&Identity::new(Role::Edge, acme))
            .ends_with("edge@acme"));
        // A second run refuses; one more identity from the offline CA works.
        assert!(matches!(
            generate(&CertsOptions {
                out: tmp.path().to_path_buf(),
                tenants: vec![],
                site_key: SiteKey::EcdsaP256,
                force: false,
            }),
            Err(PkiError::Exists(_))
        ));
        let beta = Identity::new(Role::Edge, "beta".parse().unwrap());
        let out2 = tmp.path().join("more");
        let w = issue_one(&l.ca_dir(), &beta, &out2, false).unwrap();
        assert_eq!(w.len(), 3);
        assert!(out2.join("edge@beta/edge.key").exists());
        assert!(matches!(
            issue_one(&l.ca_dir(), &beta, &out2, false),
            Err(PkiError::Exists(_))
        ));
    }
}
