//! `conclave bench keys` (placeholder until its issue lands).

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`conclave bench keys` is not built yet")
}
