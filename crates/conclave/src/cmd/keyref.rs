//! `conclave keyref`: writes a key reference file (PEM `CONCLAVE KEY
//! REFERENCE`) for a key held by a key server, which OpenSSL programs
//! (stock NGINX's `ssl_certificate_key`, `openssl s_server -key`) read
//! through the conclave provider (docs/nginx.md, "Keyless"). It asks the key
//! server for the key's public half (`GET_KEY`), so a reference is only
//! written for a key the identity may use.

use anyhow::Context;
use conclave_keys::keyref::KeyReference;
use conclave_keys::KeyClient;
use conclave_rpc::{Credentials, Endpoint, Role};
use std::path::PathBuf;

/// Arguments of `conclave keyref`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The key server (`tcp://HOST:PORT` or `unix:///PATH`).
    #[arg(long)]
    pub server: Endpoint,
    /// The identity directory the OpenSSL program presents (root.crt,
    /// ROLE.crt, ROLE.key); stored as an absolute path.
    #[arg(long)]
    pub certs: PathBuf,
    /// A further key server holding the same key, tried when the ones
    /// before it do not answer (repeat for several, in order). Each is
    /// asked for the key now, and must hold the same public key.
    #[arg(long = "fallback", value_name = "ENDPOINT")]
    pub fallbacks: Vec<Endpoint>,
    /// The key's name on the key server.
    #[arg(long)]
    pub name: String,
    /// The role of that identity.
    #[arg(long, default_value = "edge")]
    pub role: Role,
    /// Where to write the reference (it holds no secret).
    #[arg(long)]
    pub out: PathBuf,
}

/// Fetches the public key and writes the reference.
pub fn run(a: Args) -> anyhow::Result<()> {
    let certs = std::fs::canonicalize(&a.certs).with_context(|| format!("{}", a.certs.display()))?;
    let creds = Credentials::from_dir(&certs, a.role)?;
    let client = KeyClient::with_credentials(a.server.clone(), &creds)?;
    let info = client.key_info(&a.name)?;
    for fallback in &a.fallbacks {
        let other = KeyClient::with_credentials(fallback.clone(), &creds)?
            .key_info(&a.name)
            .with_context(|| format!("fallback key server {fallback}"))?;
        anyhow::ensure!(
            other.spki == info.spki,
            "fallback key server {fallback} holds another key named {:?} than {}: a fallback must hold the same key",
            a.name,
            a.server
        );
    }
    let reference = KeyReference {
        server: a.server,
        fallbacks: a.fallbacks,
        name: a.name,
        certs,
        role: a.role,
        spki: info.spki,
    };
    let pem = reference.to_pem()?;
    std::fs::write(&a.out, pem).with_context(|| format!("writing {}", a.out.display()))?;
    let servers: Vec<String> = reference.servers().map(|s| s.to_string()).collect();
    println!(
        "wrote key reference {} (key {:?}, {:?}, at {})",
        a.out.display(),
        reference.name,
        info.algorithm,
        servers.join(", then ")
    );
    Ok(())
}
