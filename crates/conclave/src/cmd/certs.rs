//! `conclave certs`: the CA (in `ca/`, meant to go offline), one directory
//! per process identity and the site certificate (`site/`); or, with `--ca`
//! and `--issue`, one more identity directory from an existing CA.

use anyhow::Context;
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use conclave_rpc::{Identity, Tenant};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// A tenant besides `default`: also issue `edge@TENANT` and
    /// `client@TENANT` (repeatable).
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<Tenant>,
    /// Site key type: rsa2048 (default, like the seed) or ecdsa-p256.
    #[arg(long, default_value = "rsa2048")]
    pub site_key: SiteKey,
    /// Issue only this identity (`role` or `role@tenant`) into
    /// `OUT/<identity>/`, signed by the CA in `--ca`.
    #[arg(long, value_name = "IDENTITY", requires = "ca", conflicts_with = "tenants")]
    pub issue: Option<Identity>,
    /// The CA directory (`root.crt`, `root.key`) that `--issue` signs with.
    #[arg(long, value_name = "DIR", requires = "issue")]
    pub ca: Option<PathBuf>,
    /// Replace existing certificates and keys.
    #[arg(long)]
    pub force: bool,
}

/// Writes the files and lists them.
pub fn run(a: Args) -> anyhow::Result<()> {
    let written = match (&a.issue, &a.ca) {
        (Some(id), Some(ca)) => pki::issue_one(ca, id, &a.out, a.force)
            .with_context(|| format!("issuing {id} from {} into {}", ca.display(), a.out.display()))?,
        _ => pki::generate(&CertsOptions {
            out: a.out.clone(),
            tenants: a.tenants,
            site_key: a.site_key,
            force: a.force,
        })
        .with_context(|| format!("writing certificates to {}", a.out.display()))?,
    };
    for p in written {
        super::print_line(p.display());
    }
    Ok(())
}
