//! `conclave memserver`: an smdish or smuf memory server over mTLS; the
//! work is `conclave_mem::run`.

/// Arguments: the memory server settings of `conclave-mem`.
pub use conclave_mem::MemServerSettings as Args;

/// Serves until SIGTERM or SIGINT. Prints `listening on ENDPOINT` once bound.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_mem::run(&a, &mut std::io::stdout())?)
}
