//! One module per subcommand: its arguments (`Args`) and its `run`.

pub mod bench;
pub mod build_info;
pub mod certs;

#[cfg(feature = "bench")]
pub mod ab;
#[cfg(all(feature = "bench", feature = "storage"))]
pub mod bench_bd;
#[cfg(all(feature = "bench", feature = "fs"))]
pub mod bench_fs;
#[cfg(all(feature = "bench", feature = "keys"))]
pub mod bench_keys;
#[cfg(all(feature = "bench", feature = "mem"))]
pub mod bench_mem;
#[cfg(feature = "bench")]
pub mod bench_rpc;
#[cfg(feature = "bench")]
pub mod content;
#[cfg(feature = "eval")]
pub mod deploy;
#[cfg(feature = "edge")]
pub mod edge;
#[cfg(feature = "eval")]
pub mod eval;
#[cfg(feature = "fs")]
pub mod fileserver;
#[cfg(feature = "fs")]
pub mod fs;
#[cfg(feature = "storage")]
pub mod fsck;
#[cfg(feature = "keys")]
pub mod keyref;
#[cfg(feature = "keys")]
pub mod keyserver;
#[cfg(feature = "mem")]
pub mod mem;
#[cfg(feature = "mem")]
pub mod memserver;
#[cfg(feature = "storage")]
pub mod mkfs;
#[cfg(feature = "storage")]
pub mod mkmerkle;
#[cfg(feature = "mount")]
pub mod mount;
#[cfg(feature = "edge")]
pub mod origin;
#[cfg(feature = "eval")]
pub mod up;
#[cfg(feature = "waf")]
pub mod waf_rules;

/// Logs to stderr; `RUST_LOG` selects the level (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints one line of a listing; a closed stdout (`| head`) ends the
/// listing quietly instead of panicking.
pub fn print_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A multi-threaded tokio runtime for servers.
#[cfg_attr(
    not(any(feature = "bench", feature = "edge", feature = "eval")),
    allow(dead_code)
)]
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
