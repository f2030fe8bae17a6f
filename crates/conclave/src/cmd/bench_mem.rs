//! `conclave bench mem`: arguments of the memory-server benchmark
//! (`conclave_bench::mem`), and its hidden client-process mode.

use anyhow::Context;
use conclave_bench::mem::{self, MemBenchConfig, WorkerConfig};
use conclave_mem::MemSpec;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kinds, comma-separated: mutex (a bare std Mutex), local, smdish, smuf, smc.
    #[arg(long, default_value = "mutex,local,smdish,smuf,smc")]
    pub kinds: String,
    /// Segment sizes, comma-separated (k = KiB, m = MiB).
    #[arg(long, default_value = "1k,10k,100k,1m")]
    pub sizes: String,
    /// Numbers of concurrent clients, comma-separated.
    #[arg(long, default_value = "1,2,4,8")]
    pub procs: String,
    /// Critical sections per client for segments under 1 MiB.
    #[arg(long, default_value_t = 400)]
    pub iters: u64,
    /// Critical sections per client for segments of 1 MiB and more.
    #[arg(long, default_value_t = 100)]
    pub iters_large: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the servers' sockets, the certificates and the smuf/smc host
    /// files go (a fresh subdirectory, removed afterwards); tmpfs
    /// (/dev/shm) suits non-persistent memory files. Default: the temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Internal: run as one client process of a cell.
    #[arg(long, hide = true)]
    pub worker: Option<MemSpec>,
    #[arg(long, hide = true)]
    pub worker_name: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    pub worker_size: usize,
    #[arg(long, hide = true)]
    pub worker_certs: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub worker_secret: Option<PathBuf>,
}

/// Runs the benchmark (or one client process of it) and prints the table
/// (or JSON); cells go to stderr as they are measured.
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(spec) = a.worker {
        let w = WorkerConfig {
            spec,
            name: a.worker_name.context("--worker-name missing")?,
            size: a.worker_size,
            certs: a.worker_certs,
            secret: a.worker_secret,
        };
        return Ok(mem::worker(
            &w,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )?);
    }
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let sizes = a
        .sizes
        .split(',')
        .map(|s| conclave_units::parse_size(s).map(|n| n as usize))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let procs = a
        .procs
        .split(',')
        .map(|s| s.trim().parse::<usize>().context("bad --procs"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = MemBenchConfig {
        kinds: list(&a.kinds),
        sizes,
        procs,
        iters: a.iters,
        iters_large: a.iters_large,
        dir: a.dir.unwrap_or_else(std::env::temp_dir),
        conclave: std::env::current_exe()?,
    };
    let cells = mem::run(&cfg, |c| {
        if !a.json {
            eprintln!("{}", c.progress_line());
        }
    })?;
    super::print_line(if a.json {
        mem::json(&cells)
    } else {
        mem::table(&cells)
    });
    Ok(())
}
