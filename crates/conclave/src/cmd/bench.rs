//! `conclave bench <what>`: the micro-benchmarks' arguments, one file each;
//! the benchmarks themselves are in `conclave_bench`.

use clap::Subcommand;

/// Which micro-benchmark.
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// RPC round trips: payload sizes × tcp/unix × TLS/plain.
    #[cfg(feature = "bench")]
    Rpc(super::bench_rpc::Args),
    /// Block devices: sequential and random reads and writes per device.
    #[cfg(all(feature = "bench", feature = "storage"))]
    Bd(super::bench_bd::Args),
    /// File server: the original's fio run, our way.
    #[cfg(all(feature = "bench", feature = "fs"))]
    Fs(super::bench_fs::Args),
    /// Memory servers: one critical section per kind and segment size.
    #[cfg(all(feature = "bench", feature = "mem"))]
    Mem(super::bench_mem::Args),
    /// Key server: signatures per second, local and remote.
    #[cfg(all(feature = "bench", feature = "keys"))]
    Keys(super::bench_keys::Args),
}

/// Runs the chosen benchmark.
pub fn run(b: Bench) -> anyhow::Result<()> {
    match b {
        #[cfg(feature = "bench")]
        Bench::Rpc(a) => super::bench_rpc::run(a),
        #[cfg(all(feature = "bench", feature = "storage"))]
        Bench::Bd(a) => super::bench_bd::run(a),
        #[cfg(all(feature = "bench", feature = "fs"))]
        Bench::Fs(a) => super::bench_fs::run(a),
        #[cfg(all(feature = "bench", feature = "mem"))]
        Bench::Mem(a) => super::bench_mem::run(a),
        #[cfg(all(feature = "bench", feature = "keys"))]
        Bench::Keys(a) => super::bench_keys::run(a),
    }
}
