//! `conclave bench fs` (placeholder until its issue lands).

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`conclave bench fs` is not built yet")
}
