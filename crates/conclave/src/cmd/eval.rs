//! `conclave eval`: run the evaluation matrix and write a report. The
//! arguments and the work are `conclave_eval::cli::eval`'s.

use anyhow::Context;

pub use conclave_eval::cli::eval::Args;

/// Runs the evaluation with this binary as every conclave process.
pub fn run(a: Args) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("locating the conclave binary")?;
    conclave_eval::cli::eval::run(a, &bin)?;
    Ok(())
}
