//! How a stock NGINX is pointed at a key held by the key server: the
//! OpenSSL 3 provider `libconclave_openssl.so` (crate `conclave-openssl`) is
//! loaded through an `openssl.cnf` named by `OPENSSL_CONF`, and
//! `ssl_certificate_key` names a key reference file written by
//! `conclave keyref` (docs/nginx.md, "Keyless"). NGINX itself is unchanged:
//! its master loads the config when it initialises OpenSSL, before it reads
//! nginx.conf, so the variable must be in the master's environment.

use std::path::{Path, PathBuf};

/// What an NGINX deployment needs to use a keyless key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NginxKeyless {
    /// Environment variables for the NGINX master process.
    pub env: Vec<(String, String)>,
    /// Lines for nginx.conf's main context.
    pub extra_main_conf: String,
    /// The value of `ssl_certificate_key` (without the trailing `;`).
    pub ssl_certificate_key: String,
    /// Files the caller writes before starting NGINX: (path, contents).
    /// Today one: the `openssl.cnf` that loads the provider, written next
    /// to the key reference.
    pub files: Vec<(PathBuf, String)>,
}

impl NginxKeyless {
    /// Writes [`NginxKeyless::files`].
    pub fn write_files(&self) -> std::io::Result<()> {
        for (path, contents) in &self.files {
            std::fs::write(path, contents)?;
        }
        Ok(())
    }
}

/// The `openssl.cnf` path used for a key reference: `<keyref>.openssl.cnf`.
pub fn openssl_conf_path(keyref_path: &Path) -> PathBuf {
    let mut s = keyref_path.as_os_str().to_owned();
    s.push(".openssl.cnf");
    PathBuf::from(s)
}

/// An `openssl.cnf` that activates OpenSSL's default provider and the
/// conclave provider at `so_path`. The default provider stays first: it
/// does all the TLS crypto; ours only signs with keys it decoded.
pub fn openssl_conf(so_path: &Path) -> String {
    format!(
        "# Written by conclave: loads the keyless provider (docs/nginx.md, Keyless).\n\
         openssl_conf = openssl_init\n\
         \n\
         [openssl_init]\n\
         providers = provider_sect\n\
         \n\
         [provider_sect]\n\
         default = default_sect\n\
         conclave = conclave_sect\n\
         \n\
         [default_sect]\n\
         activate = 1\n\
         \n\
         [conclave_sect]\n\
         module = {}\n\
         activate = 1\n",
        so_path.display()
    )
}

/// The NGINX settings for the provider at `so_path` and the key reference
/// at `keyref_path`.
pub fn nginx_snippet(so_path: &Path, keyref_path: &Path) -> NginxKeyless {
    let conf = openssl_conf_path(keyref_path);
    NginxKeyless {
        env: vec![("OPENSSL_CONF".to_string(), conf.display().to_string())],
        extra_main_conf: "env OPENSSL_CONF;\n".to_string(),
        ssl_certificate_key: keyref_path.display().to_string(),
        files: vec![(conf, openssl_conf(so_path))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_points_nginx_at_the_keyref_and_the_provider() {
        let k = nginx_snippet(
            Path::new("/x/libconclave_openssl.so"),
            Path::new("/d/site.keyref"),
        );
        assert_eq!(k.ssl_certificate_key, "/d/site.keyref");
        assert_eq!(
            k.env,
            vec![(
                "OPENSSL_CONF".to_string(),
                "/d/site.keyref.openssl.cnf".to_string()
            )]
        );
        assert_eq!(k.files.len(), 1);
        assert_eq!(k.files[0].0, PathBuf::from("/d/site.keyref.openssl.cnf"));
        assert!(k.files[0].1.contains("module = /x/libconclave_openssl.so\n"));
        assert!(k.files[0]
            .1
            .contains("default = default_sect\nconclave = conclave_sect\n"));
    }
}
