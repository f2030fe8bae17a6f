//! `conclave keyserver`: holds the sites' private keys and signs TLS
//! handshakes for the edge over mTLS. Also the hidden `conclave
//! keyless-probe`, an HTTPS responder that holds only a certificate and signs
//! through the key server (for tests and for checking a deployment). The work
//! is `conclave_keys::{run, run_probe}`.

/// Arguments of `conclave keyserver`: its settings in `conclave-keys`.
pub use conclave_keys::KeyServerSettings as Args;

/// Arguments of the hidden `conclave keyless-probe`.
pub use conclave_keys::KeylessProbeSettings as ProbeArgs;

/// Loads the keys and serves until SIGINT or SIGTERM.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_keys::run(&a, &mut std::io::stdout())?)
}

/// Serves HTTPS with a remote key until SIGINT or SIGTERM.
pub fn run_probe(a: ProbeArgs) -> anyhow::Result<()> {
    Ok(conclave_keys::run_probe(&a, &mut std::io::stdout())?)
}
