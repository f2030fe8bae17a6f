//! `conclave bench keys`: arguments of the key-server benchmark
//! (`conclave_bench::keys`).

use anyhow::{bail, Context};
use conclave_bench::keys::{self, KeysBenchConfig};
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub clients: Vec<usize>,
    /// Key types, comma-separated: rsa2048, ecdsa-p256.
    #[arg(long, value_delimiter = ',', default_value = "rsa2048,ecdsa-p256")]
    pub keys: Vec<String>,
    /// Skip the in-process measurements.
    #[arg(long)]
    pub remote_only: bool,
    /// Signing threads of the key server; non-zero runs it with its signing
    /// pool (`--sign-pool`), 0 keeps its default (inline signing).
    #[arg(long, default_value_t = 0)]
    pub server_threads: usize,
    /// The binary started as the key server (default: this one); with
    /// `--keyserver-arg`, lets one run compare key-server builds or modes
    /// against the same client, alternately.
    #[arg(long)]
    pub keyserver_bin: Option<std::path::PathBuf>,
    /// An extra argument for the key server (repeatable), e.g.
    /// `--keyserver-arg=--sign-pool`.
    #[arg(long, allow_hyphen_values = true)]
    pub keyserver_arg: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not run `openssl speed` after the measurements (by default it
    /// runs for each key type, alone and with `-multi` one per core, for
    /// `--seconds` rounded up, as the reference for the key server's CPU
    /// per signature and throughput).
    #[arg(long)]
    pub no_openssl: bool,
}

/// Runs the benchmark and prints the table (or JSON); rows go to stderr as
/// they are measured.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.seconds.is_nan() || a.seconds <= 0.0 {
        bail!("--seconds must be positive and --clients a list of numbers ≥ 1");
    }
    let cfg = KeysBenchConfig {
        duration: Duration::from_secs_f64(a.seconds),
        clients: a.clients,
        keys: a.keys,
        remote_only: a.remote_only,
        server_threads: a.server_threads,
        conclave: match a.keyserver_bin {
            Some(p) => p,
            None => std::env::current_exe().context("locating the conclave binary")?,
        },
        server_args: a.keyserver_arg,
    };
    let rows = keys::run(&cfg, |r| {
        if !a.json {
            eprintln!("{}", r.line());
        }
    })?;
    // After the key server's rows, so openssl has the cores to itself.
    let reference = (!a.no_openssl).then(|| keys::compare_with_openssl(&rows, a.seconds.ceil() as u32));
    if let Some(Err(e)) = reference.as_ref().map(|r| &r.result) {
        eprintln!("WARNING: {e}");
    }
    super::print_line(if a.json {
        keys::json(&rows, reference.as_ref())
    } else {
        keys::table(&rows, reference.as_ref())
    });
    Ok(())
}
