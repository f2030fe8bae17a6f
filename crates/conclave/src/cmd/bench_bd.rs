//! `conclave bench bd`: arguments of the block-device benchmark
//! (`conclave_bench::bd`).

use conclave_bench::bd::{self, BdBenchConfig};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device size.
    #[arg(long, default_value = "64M", value_parser = conclave_units::parse_size)]
    pub size: u64,
    /// Random operations per random phase.
    #[arg(long, default_value_t = 20000)]
    pub ops: u64,
    /// Devices to measure (comma-separated; `file` is the baseline).
    #[arg(long, default_value = "file,std,crypt,verity,vericrypt")]
    pub devices: String,
    /// Directory for the images (default: a new temp dir, removed afterwards).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kdf: super::mkfs::KdfArgs,
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(a: Args) -> anyhow::Result<()> {
    let report = bd::run(&BdBenchConfig {
        size: a.size,
        ops: a.ops,
        devices: a.devices.split(',').map(str::to_string).collect(),
        dir: a.dir,
        create: a.kdf.options(),
    })?;
    super::print_line(if a.json { report.json() } else { report.table() });
    Ok(())
}
