//! `conclave eval`: run the evaluation matrix and write `results/<run>/`
//! (cells.csv, cells.json, report.md, plots, report.html). With no flags it
//! is a small run that finishes in a few minutes on 2 cores; `--full` is the
//! seed's whole matrix.

use super::{print_line, runtime, stop_on_signals};
use crate::ab::TlsVersion;
use crate::availability::Availability;
use crate::matrix::{self, MatrixOptions};
use crate::{preset, report, EvalError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The seed's complete matrix: -n 10000 -c 128, 1k/10k/100k/1m, workers 1/2/4/8, tenants 1..6.
    #[arg(long)]
    pub full: bool,
    /// Configurations to run (repeatable); default: every preset (those not built yet are listed as such).
    #[arg(long = "preset", value_name = "NAME")]
    pub presets: Vec<String>,
    /// Files to request, comma-separated (1k, 10k, 100k, 1m or file names).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// Edge worker counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<u32>,
    /// Tenant counts for the multi-tenant cells, comma-separated (1 = none).
    #[arg(long, value_delimiter = ',')]
    pub tenants: Vec<u32>,
    /// Presets used for the multi-tenant cells (default: linux and nginx).
    #[arg(long = "tenant-preset", value_name = "NAME")]
    pub tenant_presets: Vec<String>,
    /// Requests per load.
    #[arg(short = 'n')]
    pub requests: Option<u64>,
    /// Concurrency per load.
    #[arg(short = 'c')]
    pub concurrency: Option<usize>,
    /// HTTP keep-alive (default: a new connection and full TLS handshake per request, like the seed).
    #[arg(short = 'k')]
    pub keepalive: bool,
    /// TLS version: 1.2 (the seed's) or 1.3.
    #[arg(long, default_value = "1.2")]
    pub tls: TlsVersion,
    /// Allow TLS session resumption.
    #[arg(long)]
    pub resume: bool,
    /// First port: edges on BASE+i, origin BASE+20, key servers BASE+30+i, memory servers BASE+50+i,
    /// file servers BASE+70+i.
    #[arg(long, default_value_t = 8440)]
    pub base_port: u16,
    /// Parent directory of the run directory.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Name of the run directory (default: UTC time).
    #[arg(long)]
    pub run_id: Option<String>,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Only redraw report.md, the plots and report.html of an existing run directory.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "full")]
    pub report_only: Option<PathBuf>,
    /// List the presets and whether each can run here, then exit.
    #[arg(long)]
    pub list: bool,
}

/// `1k` → `1k.txt`; a name with a dot is kept.
fn file_name(s: &str) -> Result<String, EvalError> {
    let s = s.trim();
    if s.is_empty() || s.contains('/') || s.starts_with('.') {
        return Err(EvalError::Config(format!(
            "--sizes {s:?}: expected 1k, 10k, 100k, 1m or a plain file name"
        )));
    }
    Ok(if s.contains('.') {
        s.to_string()
    } else {
        format!("{}.txt", s.to_lowercase())
    })
}

/// Runs the evaluation (or redraws a report, or lists the presets); `bin`
/// is the `conclave` binary every conclave process runs.
pub fn run(a: Args, bin: &Path) -> Result<(), EvalError> {
    if let Some(dir) = &a.report_only {
        let r = report::read_data(dir)?;
        let files = report::write_report(dir, &r)?;
        print_line(format!("report: {}", files.markdown.display()));
        print_line(format!("html:   {}", files.html.display()));
        return Ok(());
    }
    if a.list {
        let avail = Availability::probe(bin);
        for p in preset::PRESETS {
            let status = match avail.check(p) {
                Ok(()) => "available".to_string(),
                Err(e) => format!("not available yet: {e}"),
            };
            print_line(format!("{:<20} {:<52} {status}", p.name, p.about));
        }
        return Ok(());
    }
    let (n, c, sizes, workers, tenants): (u64, usize, &[&str], &[u32], &[u32]) = if a.full {
        (
            10_000,
            128,
            &["1k", "10k", "100k", "1m"],
            &[1, 2, 4, 8],
            &[2, 3, 4, 5, 6],
        )
    } else {
        (1000, 32, &["1k", "10k", "100k"], &[1, 2], &[2])
    };
    let pick = |given: &[String], default: &[&str]| -> Vec<String> {
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        }
    };
    let all: Vec<&str> = preset::PRESETS.iter().map(|p| p.name).collect();
    let presets = pick(&a.presets, &all);
    let files = pick(&a.sizes, sizes)
        .iter()
        .map(|s| file_name(s))
        .collect::<Result<Vec<_>, _>>()?;
    let run_id = a.run_id.clone().unwrap_or_else(matrix::run_id_now);
    if run_id.is_empty() || run_id.contains('/') || run_id.starts_with('.') {
        return Err(EvalError::Config(format!(
            "--run-id {run_id:?}: expected a plain directory name"
        )));
    }
    let opts = MatrixOptions {
        bin: bin.to_path_buf(),
        out: a.out.join(&run_id),
        run_id,
        presets,
        files,
        workers: if a.workers.is_empty() {
            workers.to_vec()
        } else {
            a.workers.clone()
        },
        tenants: if a.tenants.is_empty() {
            tenants.to_vec()
        } else {
            a.tenants.clone()
        },
        tenant_presets: pick(&a.tenant_presets, &["linux", "nginx"]),
        requests: a.requests.unwrap_or(n),
        concurrency: a.concurrency.unwrap_or(c),
        keepalive: a.keepalive,
        tls: a.tls,
        resume: a.resume,
        base_port: a.base_port,
        progress: !a.quiet && std::io::stderr().is_terminal(),
    };
    if opts.requests == 0 || opts.concurrency == 0 || opts.workers.contains(&0) {
        return Err(EvalError::Config(
            "-n, -c and --workers must be at least 1".into(),
        ));
    }
    if opts.concurrency as u64 > opts.requests {
        return Err(EvalError::Config(format!(
            "-c {} is more than -n {}",
            opts.concurrency, opts.requests
        )));
    }
    let rt = runtime()?;
    let cancel = Arc::new(AtomicBool::new(false));
    stop_on_signals(&rt, cancel.clone())?;
    print_line(format!("conclave eval: writing {}", opts.out.display()));
    let results = matrix::run(&opts, cancel.clone())?;
    let files = report::write_report(&opts.out, &results)?;
    print_line(report::first_line(&results));
    for u in &results.unavailable {
        print_line(format!("  {}: not available yet: {}", u.preset, u.missing));
    }
    let bad = results.cells.iter().filter(|c| !c.status.is_ok()).count();
    print_line(format!(
        "{} loads measured, {} with errors or failed requests{}",
        results.cells.len(),
        bad,
        if cancel.load(Ordering::SeqCst) {
            " (interrupted: partial results kept)"
        } else {
            ""
        }
    ));
    print_line(format!("report: {}", files.markdown.display()));
    print_line(format!("html:   {}", files.html.display()));
    print_line(format!("data:   {}", opts.out.join("cells.csv").display()));
    Ok(())
}
