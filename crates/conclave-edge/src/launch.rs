//! Starting an edge from its configuration file: `conclave edge` (check, or
//! run the master, which re-executes `conclave edge-worker` per worker) and
//! the worker processes. The binary only parses these arguments and calls in.

use crate::config::EdgeConfig;
use crate::EdgeError;
use std::path::PathBuf;

/// Arguments of `conclave edge`.
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeArgs {
    /// The edge configuration file (see docs/edge.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Check everything a start would (config, certificates and keys, key
    /// servers, WAF rules, ports) without serving; list every problem, exit 1.
    #[arg(long)]
    pub check: bool,
}

impl EdgeArgs {
    /// The argument list after the binary, `["edge", "--config", ..]`, that
    /// `conclave` parses back into these arguments (for `conclave eval`).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "edge".to_string(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        if self.check {
            a.push("--check".into());
        }
        a
    }
}

/// Arguments of a worker process (`conclave edge-worker`).
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The edge configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Which worker this is (for logs).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// The master's private directory where this worker answers metrics
    /// scrapes (`[admin]` on; see `conclave_edge::admin`).
    #[arg(long)]
    pub metrics_dir: Option<PathBuf>,
}

/// The line `--check` prints for a valid configuration.
pub fn check_summary(args: &EdgeArgs, cfg: &EdgeConfig) -> String {
    format!(
        "{}: ok ({} site(s), {} worker(s))",
        args.config.display(),
        cfg.servers.len(),
        cfg.workers
    )
}

/// Validates the config; with `--check` prints the summary, else runs the
/// master, which starts the workers (this same binary as `edge-worker`).
pub fn run_edge(args: &EdgeArgs) -> Result<(), EdgeError> {
    if args.check {
        // Everything a start would do but serve, every problem listed.
        let cfg = crate::check::check(&args.config)?;
        use std::io::Write;
        // A closed stdout is not an error of the check.
        let _ = writeln!(std::io::stdout().lock(), "{}", check_summary(args, &cfg));
        return Ok(());
    }
    let cfg = EdgeConfig::load(&args.config)?;
    if !args.check {
        crate::access_log::init_error_log(&cfg)?;
    }
    // Every worker reads the ticket secret; a bad one is refused here, once,
    // naming the file, instead of as a worker failing to start.
    if let crate::config::SharedConfig::Mem {
        ticket_secret_file: Some(p),
        ..
    } = &cfg.shared
    {
        crate::tickets::TicketSeal::from_file(p)
            .map_err(|e| EdgeError::Setup(format!("[shared] ticket_secret_file: {e}")))?;
    }
    let exe = std::env::current_exe().map_err(|e| EdgeError::io("locating the conclave binary", e))?;
    let config =
        std::path::absolute(&args.config).map_err(|e| EdgeError::io("resolving the config path", e))?;
    for s in &cfg.servers {
        tracing::info!("edge: {:?} site on https://{}", s.site.mode(), s.listen);
    }
    // The admin listener lives in the master for the whole run (dropped last).
    let metrics_dir = cfg
        .admin
        .as_ref()
        .map(|_| crate::admin::SocketDir::create())
        .transpose()?;
    let _admin = match (&cfg.admin, &metrics_dir) {
        (Some(a), Some(d)) => Some(crate::admin::start(a, d.path(), cfg.workers)?),
        _ => None,
    };
    let dir = metrics_dir.as_ref().map(|d| d.path().to_path_buf());
    crate::master::run_master(cfg.workers, cfg.graceful_timeout, move |i| {
        let mut c = std::process::Command::new(&exe);
        c.arg("edge-worker")
            .arg("--config")
            .arg(&config)
            .arg("--index")
            .arg(i.to_string());
        if let Some(d) = &dir {
            c.arg("--metrics-dir").arg(d);
        }
        c
    })
}

/// Runs one worker until SIGTERM/SIGINT or EOF on stdin (the master is gone).
pub fn run_worker(args: &WorkerArgs) -> Result<(), EdgeError> {
    let cfg = EdgeConfig::load(&args.config)?;
    crate::access_log::init_error_log(&cfg)?;
    crate::worker::run_worker_with(&cfg, true, args.metrics_dir.as_deref())
}
