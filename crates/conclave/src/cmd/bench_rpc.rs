//! `conclave bench rpc`: time per RPC and throughput for payloads of 0 B to
//! 1 MiB, over unix and tcp, with and without mutual TLS.

use anyhow::Context;
use conclave_bench::rpc::{self, RpcBenchConfig, RpcResult};
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
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn row(r: &RpcResult) -> String {
    format!(
        "{:<5} {:<4} {:<9} {:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        format!("{:?}", r.transport).to_lowercase(),
        if r.tls { "tls" } else { "none" },
        format!("{:?}", r.op).to_lowercase(),
        r.payload,
        r.rpcs,
        r.mean_us,
        r.p50_us,
        r.p99_us,
        r.mb_per_s
    )
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(big) = a.sizes.iter().find(|&&s| s > rpc::MAX_PAYLOAD) {
        anyhow::bail!(
            "payload {big} exceeds the benchmark's maximum of {} bytes",
            rpc::MAX_PAYLOAD
        );
    }
    let tmp;
    let certs = match a.certs {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("conclave-bench-certs-{}", std::process::id()));
            conclave_rpc::pki::generate(&conclave_rpc::pki::CertsOptions {
                out: tmp.clone(),
                site_key: conclave_rpc::pki::SiteKey::EcdsaP256,
                force: true,
            })
            .context("generating certificates for the TLS cells")?;
            tmp
        }
    };
    let cfg = RpcBenchConfig {
        sizes: a.sizes,
        duration: Duration::from_secs_f64(a.seconds),
        max_rpcs: a.max_rpcs,
        certs: Some(certs),
    };
    let json = a.json;
    if !json {
        super::print_line(format!(
            "{:<5} {:<4} {:<9} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "net", "tls", "op", "bytes", "rpcs", "mean_us", "p50_us", "p99_us", "MB/s"
        ));
    }
    let res = rpc::run(&cfg, |r| {
        if !json {
            super::print_line(row(r));
        }
    })?;
    if json {
        super::print_line(serde_json::to_string_pretty(&res)?);
    }
    Ok(())
}
