//! `conclave fsck`: verifies an image through its block device, then runs
//! e2fsck on it (`conclave_bd::tools::fsck`).

/// Arguments: the fsck settings of `conclave-bd`.
pub use conclave_bd::FsckSettings as Args;

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    Ok(conclave_bd::tools::fsck(&args, &mut std::io::stdout())?)
}
