//! `conclave mem`: a client of memory files for scripts and the
//! multi-process tests (`conclave_mem::cli`).

/// Arguments: the memory-file client's, in `conclave-mem`.
pub use conclave_mem::cli::MemClientArgs as Args;

/// Runs one operation.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_mem::cli::run(&a, &mut std::io::stdout())?)
}
