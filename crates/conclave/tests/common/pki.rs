//! Certificates made with the `openssl` command, as an operator makes them:
//! a CA, leaf certificates for any names with RSA or ECDSA keys, and OCSP
//! responses for them (`openssl ocsp`). For the TLS feature tests (SNI, dual
//! certificates, stapling) and `--check`, which need names and key types
//! `conclave certs` does not make.
#![allow(dead_code)]

use super::run_ok;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The key type of a leaf.
#[derive(Clone, Copy, Debug)]
pub enum KeyType {
    /// RSA 2048.
    Rsa,
    /// ECDSA P-256.
    Ecdsa,
    /// ECDSA P-384.
    EcdsaP384,
}

/// A CA (`ca.crt`, `ca.key`) in `dir`, which issues leaves there.
pub struct Pki {
    pub dir: PathBuf,
}

/// `openssl ARGS` in `dir`, which must succeed; its standard output.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = run_ok(Command::new("openssl").current_dir(dir).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn key_args(kind: KeyType) -> &'static [&'static str] {
    match kind {
        KeyType::Rsa => &["-newkey", "rsa:2048"],
        KeyType::Ecdsa => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        KeyType::EcdsaP384 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    }
}

/// Private key files as conclave wants them: mode 0600.
fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Pki {
    /// A new ECDSA CA "Test CA" in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=Test CA"];
        args.extend_from_slice(key_args(KeyType::Ecdsa));
        args.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.crt"]);
        openssl(dir, &args);
        private(&dir.join("ca.key"));
        Pki { dir: dir.into() }
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues `STEM.crt` and `STEM.key` (mode 0600): subject `CN=cn`, the
    /// DNS names `names`, a `kind` key. Returns (certificate, key).
    pub fn leaf(&self, stem: &str, cn: &str, names: &[&str], kind: KeyType) -> (PathBuf, PathBuf) {
        let (crt, key, csr, ext) = (
            format!("{stem}.crt"),
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.ext"),
        );
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-new", "-nodes", "-subj", &subj];
        args.extend_from_slice(key_args(kind));
        args.extend_from_slice(&["-keyout", &key, "-out", &csr]);
        openssl(&self.dir, &args);
        private(&self.dir.join(&key));
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={}\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
                san.join(",")
            ),
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        );
        (self.dir.join(crt), self.dir.join(key))
    }

    /// A "good" OCSP response for the leaf `cert`, signed by the CA, written
    /// to `STEM.ocsp` (DER), made as `openssl ocsp` makes one for a responder.
    pub fn ocsp(&self, cert: &Path, stem: &str) -> PathBuf {
        let serial = openssl(
            &self.dir,
            &["x509", "-in", &cert.display().to_string(), "-noout", "-serial"],
        );
        let serial = serial.trim().trim_start_matches("serial=").to_string();
        let subject = openssl(
            &self.dir,
            &[
                "x509",
                "-in",
                &cert.display().to_string(),
                "-noout",
                "-subject",
                "-nameopt",
                "compat",
            ],
        );
        let subject = subject.trim().trim_start_matches("subject=").to_string();
        let index = format!("{stem}.index");
        std::fs::write(
            self.dir.join(&index),
            format!("V\t301231235959Z\t\t{serial}\tunknown\t{subject}\n"),
        )
        .unwrap();
        let (req, resp) = (format!("{stem}.req"), format!("{stem}.ocsp"));
        let cert = cert.display().to_string();
        openssl(
            &self.dir,
            &[
                "ocsp",
                "-issuer",
                "ca.crt",
                "-cert",
                &cert,
                "-no_nonce",
                "-reqout",
                &req,
            ],
        );
        openssl(
            &self.dir,
            &[
                "ocsp", "-index", &index, "-rsigner", "ca.crt", "-rkey", "ca.key", "-CA", "ca.crt", "-reqin",
                &req, "-respout", &resp, "-ndays", "1",
            ],
        );
        self.dir.join(resp)
    }
}

/// What `openssl s_client` printed (stdout and stderr) connecting to
/// 127.0.0.1:`port` with SNI `sni` (`None`: no SNI) and `args`.
pub fn s_client(port: u16, sni: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl must be installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
