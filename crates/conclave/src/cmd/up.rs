//! `conclave up deploy.toml`: start every process of a deployment and stop
//! them all together. The arguments and the work are `conclave_eval::cli::up`'s.

use anyhow::Context;

pub use conclave_eval::cli::up::Args;

/// Runs the deployment with this binary as every conclave process.
pub fn run(a: Args) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the conclave binary")?;
    conclave_eval::cli::up::run(a, &bin)?;
    Ok(())
}
