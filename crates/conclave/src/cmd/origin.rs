//! `conclave origin`: the seed's origin, plain HTTP static files with
//! `Cache-Control: public, no-transform`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `conclave origin`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to serve.
    #[arg(long)]
    pub root: PathBuf,
    /// Plain-HTTP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Append one line per request to this file.
    #[arg(long)]
    pub access_log: Option<PathBuf>,
    /// Tokio threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Serves until SIGTERM/SIGINT.
pub fn run(args: Args) -> anyhow::Result<()> {
    conclave_edge::origin::run_origin(&conclave_edge::origin::OriginConfig {
        root: args.root,
        listen: args.listen,
        access_log: args.access_log,
        threads: args.threads,
    })?;
    Ok(())
}
