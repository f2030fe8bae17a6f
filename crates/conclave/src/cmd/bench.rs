//! `conclave bench <what>`: the micro-benchmarks, one file each.

use clap::Subcommand;

/// Which micro-benchmark.
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// RPC round trips: payload sizes × tcp/unix × TLS/plain.
    #[cfg(feature = "bench")]
    Rpc(super::bench_rpc::Args),
    /// Block devices: sequential and random reads and writes per device.
    #[cfg(feature = "storage")]
    Bd(super::bench_bd::Args),
    /// File server: the original's fio run, our way.
    #[cfg(feature = "fs")]
    Fs(super::bench_fs::Args),
    /// Memory servers: one critical section per kind and segment size.
    #[cfg(feature = "mem")]
    Mem(super::bench_mem::Args),
    /// Key server: signatures per second, local and remote.
    #[cfg(feature = "keys")]
    Keys(super::bench_keys::Args),
}

/// Runs the chosen benchmark.
pub fn run(b: Bench) -> anyhow::Result<()> {
    match b {
        #[cfg(feature = "bench")]
        Bench::Rpc(a) => super::bench_rpc::run(a),
        #[cfg(feature = "storage")]
        Bench::Bd(a) => super::bench_bd::run(a),
        #[cfg(feature = "fs")]
        Bench::Fs(a) => super::bench_fs::run(a),
        #[cfg(feature = "mem")]
        Bench::Mem(a) => super::bench_mem::run(a),
        #[cfg(feature = "keys")]
        Bench::Keys(a) => super::bench_keys::run(a),
    }
}
