//! `conclave edge`: the HTTPS edge (master + workers), and the hidden
//! `conclave edge-worker` the master re-executes for each worker.

use anyhow::Context;
use conclave_edge::EdgeConfig;
use std::path::PathBuf;

/// Arguments of `conclave edge`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The edge configuration file (see docs/edge.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Only validate the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

/// Validates the config, then runs the master, which starts the workers.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = EdgeConfig::load(&args.config)?;
    if args.check {
        super::print_line(format_args!(
            "{}: ok ({} site(s), {} worker(s))",
            args.config.display(),
            cfg.servers.len(),
            cfg.workers
        ));
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the conclave binary")?;
    let config = std::path::absolute(&args.config).context("resolving the config path")?;
    for s in &cfg.servers {
        tracing::info!("edge: {:?} site on https://{}", s.mode, s.listen);
    }
    conclave_edge::master::run_master(cfg.workers, cfg.graceful_timeout, move |i| {
        let mut c = std::process::Command::new(&exe);
        c.arg("edge-worker")
            .arg("--config")
            .arg(&config)
            .arg("--index")
            .arg(i.to_string());
        c
    })?;
    Ok(())
}

/// Arguments of a worker process.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The edge configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Which worker this is (for logs).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
}

/// Runs one worker until SIGTERM/SIGINT or EOF on stdin (the master is gone).
pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let cfg = EdgeConfig::load(&args.config)?;
    conclave_edge::worker::run_worker(&cfg, true).with_context(|| format!("worker {}", args.index))?;
    Ok(())
}
