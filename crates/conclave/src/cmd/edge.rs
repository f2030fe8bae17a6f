//! `conclave edge`: the HTTPS edge (master + workers), and the hidden
//! `conclave edge-worker` the master re-executes for each worker. The work
//! is `conclave_edge::launch`'s.

use conclave_edge::master::EX_CONFIG;
use conclave_edge::EdgeError;

pub use conclave_edge::launch::{EdgeArgs as Args, WorkerArgs};

/// Validates the config, then runs the master, which starts the workers;
/// or signals a running master (`--reload`, `--stop`, ...). A worker that
/// could not set up stops the edge with exit code 78 (EX_CONFIG), so a
/// supervisor does not restart it in a loop.
pub fn run(args: Args) -> anyhow::Result<()> {
    match conclave_edge::launch::run_edge(&args) {
        Err(e @ EdgeError::WorkerSetup { .. }) => {
            eprintln!("conclave: error: {e}");
            std::process::exit(EX_CONFIG);
        }
        r => Ok(r?),
    }
}

/// Runs one worker until SIGTERM/SIGINT/SIGQUIT or EOF on stdin (the master
/// drains it, or is gone). One that cannot run tells the master why and
/// exits with 78.
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    if let Err(e) = conclave_edge::launch::run_worker(&args) {
        conclave_edge::launch::report_worker_failure(&e);
        std::process::exit(EX_CONFIG);
    }
    Ok(())
}
