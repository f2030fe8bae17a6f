//! `conclave edge`: the HTTPS edge (master + workers), and the hidden
//! `conclave edge-worker` the master re-executes for each worker. The work
//! is `conclave_edge::launch`'s.

use anyhow::Context;

pub use conclave_edge::launch::{EdgeArgs as Args, WorkerArgs};

/// Validates the config, then runs the master, which starts the workers.
pub fn run(args: Args) -> anyhow::Result<()> {
    conclave_edge::launch::run_edge(&args)?;
    Ok(())
}

/// Runs one worker until SIGTERM/SIGINT or EOF on stdin (the master is gone).
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    conclave_edge::launch::run_worker(&args).with_context(|| format!("worker {}", args.index))?;
    Ok(())
}
