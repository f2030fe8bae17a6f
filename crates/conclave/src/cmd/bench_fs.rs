//! `conclave bench fs`: sequential and random 4 KiB reads and 1 MiB writes
//! through the file server on each device, next to a plain host file.

use anyhow::Context;
use conclave_bd::DeviceKind;
use conclave_fs::bench::{self, FsBenchConfig, FsBenchResult};
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per workload and device (the original fio run: 10).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Test file size in MiB.
    #[arg(long, default_value_t = 16)]
    pub file_mib: usize,
    /// Devices (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "std,crypt,verity,vericrypt")]
    pub devices: Vec<DeviceKind>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn row(r: &FsBenchResult) -> String {
    format!(
        "{:<10} {:<13} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        r.target, r.workload, r.ops, r.iops, r.mb_per_s, r.mean_us, r.p50_us, r.p99_us
    )
}

/// Runs the benchmark in a scratch directory.
pub fn run(a: Args) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("conclave-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let certs = work.join("certs");
    conclave_rpc::pki::generate(&conclave_rpc::pki::CertsOptions {
        out: certs.clone(),
        site_key: conclave_rpc::pki::SiteKey::EcdsaP256,
        force: true,
    })
    .context("generating certificates")?;
    let cfg = FsBenchConfig {
        duration: Duration::from_secs_f64(a.seconds),
        file_mib: a.file_mib,
        devices: a.devices,
        workdir: work.clone(),
        certs,
    };
    if !a.json {
        super::print_line(format!(
            "{:<10} {:<13} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "target", "workload", "ops", "IOPS", "MB/s", "mean_us", "p50_us", "p99_us"
        ));
    }
    let json = a.json;
    let res = bench::run(&cfg, |r| {
        if !json {
            super::print_line(row(r));
        }
    });
    let _ = std::fs::remove_dir_all(&work);
    let res = res?;
    if json {
        super::print_line(serde_json::to_string_pretty(&res)?);
    }
    Ok(())
}
