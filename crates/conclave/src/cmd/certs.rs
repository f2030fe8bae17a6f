//! `conclave certs`: the CA, the role identities and the site certificate.

use anyhow::Context;
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Site key type: rsa2048 (default, like the seed) or ecdsa-p256.
    #[arg(long, default_value = "rsa2048")]
    pub site_key: SiteKey,
    /// Replace existing certificates and keys.
    #[arg(long)]
    pub force: bool,
}

/// Writes the files and lists them.
pub fn run(a: Args) -> anyhow::Result<()> {
    let written = pki::generate(&CertsOptions {
        out: a.out.clone(),
        site_key: a.site_key,
        force: a.force,
    })
    .with_context(|| format!("writing certificates to {}", a.out.display()))?;
    for p in written {
        super::print_line(p.display());
    }
    Ok(())
}
