//! `conclave bench bd` (placeholder until its issue lands).

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`conclave bench bd` is not built yet")
}
