//! Certificates for in-process servers: `pki::generate`, as `conclave certs` does.

use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use conclave_rpc::stream::ClientTls;
use conclave_rpc::{ClientOptions, Credentials, Role};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes a fresh CA, every role's certificate and a site key of `site_key`
/// into `out` (overwriting): the identities an in-process server and its clients need.
pub fn generate_certs(out: &Path, site_key: SiteKey) {
    pki::generate(&CertsOptions {
        tenants: Vec::new(),
        out: out.to_path_buf(),
        site_key,
        force: true,
    })
    .unwrap_or_else(|e| panic!("cannot generate certificates in {}: {e}", out.display()));
}

/// TLS 1.3 client options that trust the CA in `certs` and expect a `server`
/// but present no certificate: the client every server must refuse.
pub fn without_client_cert(certs: &Path, server: Role) -> ClientOptions {
    let roots = Credentials::from_dir(certs, Role::Client)
        .expect("client credentials")
        .roots();
    let cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientOptions {
        tls: Some(ClientTls {
            config: Arc::new(cfg),
            name: server.server_name(),
        }),
        ..ClientOptions::plain()
    }
}

/// [`generate_certs`] into `dir/certs` with an ECDSA P-256 site key (the
/// cheapest); returns that directory.
pub fn certs(dir: &Path) -> PathBuf {
    let out = dir.join("certs");
    generate_certs(&out, SiteKey::EcdsaP256);
    out
}
