//! `conclave eval` (placeholder until its issue lands).

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`conclave eval` is not built yet")
}
