//! `conclave mkfs`: an ext2 image from a directory, for one block device
//! (`conclave_bd::tools::mkfs`).

/// Arguments: the mkfs settings of `conclave-bd`.
pub use conclave_bd::MkfsSettings as Args;

/// The KDF flags, shared with `conclave bench bd`.
pub use conclave_bd::KdfSettings as KdfArgs;

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    Ok(conclave_bd::tools::mkfs(&args, &mut std::io::stdout())?)
}
