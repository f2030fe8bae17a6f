//! `conclave bench fs`: arguments of the file-server benchmark
//! (`conclave_bench::fs`).

use conclave_bd::DeviceKind;
use conclave_bd::FsType;
use conclave_bench::fs::{self, FsBenchConfig};
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
    /// File-system format of the image: ext2 (as `conclave mkfs` makes it by
    /// default), ext3 or ext4 (`mke2fs -t ext4`: extents, metadata_csum, 64bit, journal).
    #[arg(long, value_enum, default_value_t = FsType::Ext2)]
    pub format: FsType,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark in a scratch directory and prints the table (or JSON).
pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = FsBenchConfig {
        duration: Duration::from_secs_f64(a.seconds),
        file_mib: a.file_mib,
        devices: a.devices,
        workdir: Default::default(),
        certs: Default::default(),
        format: a.format,
    };
    if !a.json {
        super::print_line(fs::header());
    }
    let res = fs::run_in_scratch(&cfg, |r| {
        if !a.json {
            super::print_line(r.line());
        }
    })?;
    if a.json {
        super::print_line(serde_json::to_string_pretty(&res)?);
    }
    Ok(())
}
