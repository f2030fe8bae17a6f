//! `conclave mkfs`: an ext2 image from a directory, for one block device
//! (`conclave_bd::tools::mkfs`).

/// Arguments: the mkfs settings of `conclave-bd`.
pub use conclave_bd::MkfsSettings as Args;

/// The KDF flags, shared with `conclave bench bd`.
pub use conclave_bd::KdfSettings as KdfArgs;

/// Parses and checks an image size (`conclave bench bd --size`).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    Ok(conclave_bd::settings::parse_image_size(s)?.bytes())
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    Ok(conclave_bd::tools::mkfs(&args, &mut std::io::stdout())?)
}
