//! `conclave mkmerkle`: builds or rebuilds the Merkle tree of an existing
//! verity or vericrypt image from its current contents and prints the root.

use super::mkfs::{spec_from, KdfArgs};
use anyhow::Context;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device: verity or vericrypt.
    #[arg(long)]
    pub device: String,
    /// File holding the secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Tree file to write; default IMAGE.tree.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// The image whose contents the tree will vouch for.
    pub image: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let spec = spec_from(
        &args.device,
        &args.image,
        args.tree.as_deref(),
        args.secret_file.as_deref(),
    )?;
    let root = conclave_bd::rebuild_tree(&spec, &args.kdf.options())
        .with_context(|| format!("building the tree of {}", spec.image.display()))?;
    super::print_line(root.hex());
    Ok(())
}
