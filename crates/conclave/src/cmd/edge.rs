//! `conclave edge` (placeholder until its issue lands).

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`conclave edge` is not built yet")
}

/// Arguments of a worker process.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {}

/// Runs one worker.
pub fn run_worker(_args: WorkerArgs) -> anyhow::Result<()> {
    anyhow::bail!("`conclave edge` is not built yet")
}
