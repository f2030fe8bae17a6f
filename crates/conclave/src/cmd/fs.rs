//! `conclave fs`: a small client for poking at a running file server
//! (`conclave_fs::cli`).

/// Arguments: the file server client's, in `conclave-fs`.
pub use conclave_fs::cli::FsClientArgs as Args;

/// Runs one operation.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_fs::cli::run(&a, &mut std::io::stdout())?)
}
