//! `conclave origin`: the seed's origin, plain HTTP static files with
//! `Cache-Control: public, no-transform`. The work is `conclave_edge::origin`'s.

pub use conclave_edge::origin::OriginSettings as Args;

/// Serves until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    conclave_edge::origin::run_origin(&args)?;
    Ok(())
}
