//! `conclave bench rpc`: arguments of the RPC benchmark
//! (`conclave_bench::rpc`).

use conclave_bench::rpc::{self, RpcBenchConfig};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to measure each cell.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Cap on RPCs per cell.
    #[arg(long, default_value_t = 100_000)]
    pub max_rpcs: u64,
    /// Payload sizes in bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1024,10240,102400,1048576")]
    pub sizes: Vec<usize>,
    /// Certificates for the TLS cells; generated in a temp dir when absent.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Server connection modes to measure, each transport in every mode
    /// back to back: reactor (a task per connection), threads (a thread per
    /// connection).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "reactor,threads")]
    pub connections: Vec<conclave_rpc::ConnectionMode>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = RpcBenchConfig {
        sizes: a.sizes,
        duration: Duration::from_secs_f64(a.seconds),
        max_rpcs: a.max_rpcs,
        certs: a.certs,
        connections: a.connections,
    };
    let json = a.json;
    let mut header = !json;
    let res = rpc::run_with_certs(cfg, |r| {
        if !json {
            if std::mem::take(&mut header) {
                super::print_line(rpc::header());
            }
            super::print_line(r.line());
        }
    })?;
    if json {
        super::print_line(serde_json::to_string_pretty(&res)?);
    }
    Ok(())
}
