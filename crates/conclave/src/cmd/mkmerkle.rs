//! `conclave mkmerkle`: rebuilds the Merkle tree of an image and prints its
//! root (`conclave_bd::tools::mkmerkle`).

/// Arguments: the mkmerkle settings of `conclave-bd`.
pub use conclave_bd::MkmerkleSettings as Args;

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    Ok(conclave_bd::tools::mkmerkle(&args, &mut std::io::stdout())?)
}
