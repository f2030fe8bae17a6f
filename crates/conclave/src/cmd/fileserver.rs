//! `conclave fileserver`: serves one ext2 image through one protected block
//! device over mutual TLS (role `fileserver`); the work is `conclave_fs::run`.

/// Arguments: the file server settings of `conclave-fs`.
pub use conclave_fs::FileServerSettings as Args;

/// Runs the server until SIGTERM/SIGINT, then syncs and prints the root.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_fs::run(&a, &mut std::io::stdout())?)
}
