//! `conclave`: the one binary. Thin: it parses arguments and calls the
//! crates; each subcommand lives in `cmd/<name>.rs`.
#![forbid(unsafe_code)]

mod cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// conclave: a keyless CDN edge built as mutually distrusting processes.
#[derive(Parser)]
#[command(name = "conclave", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the conclave CA, one identity per role and the site certificate.
    Certs(cmd::certs::Args),
    /// Write the seed's web content (1k.txt ... 1m.txt, index.html, 50x.html).
    #[cfg(feature = "bench")]
    Content(cmd::content::Args),
    /// Micro-benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
    /// ApacheBench-compatible HTTP(S) load generator.
    #[cfg(feature = "bench")]
    Ab(cmd::ab::Args),
    /// The HTTPS edge (static server or caching reverse proxy).
    #[cfg(feature = "edge")]
    Edge(cmd::edge::Args),
    /// The origin: a plain HTTP static server that marks responses cacheable.
    #[cfg(feature = "edge")]
    Origin(cmd::origin::Args),
    /// The key server: holds private keys and signs TLS handshakes.
    #[cfg(feature = "keys")]
    Keyserver(cmd::keyserver::Args),
    /// HTTPS with only a certificate, signing through a key server (tests, checks).
    #[cfg(feature = "keys")]
    #[command(hide = true)]
    KeylessProbe(cmd::keyserver::ProbeArgs),
    /// Write a key reference file for OpenSSL programs (NGINX) to use a key server's key.
    #[cfg(feature = "keys")]
    Keyref(cmd::keyref::Args),
    /// A client of memory files (lock, read, write, increment), for scripts and tests.
    #[cfg(feature = "mem")]
    Mem(cmd::mem::Args),
    /// A memory server (smdish or smuf).
    #[cfg(feature = "mem")]
    Memserver(cmd::memserver::Args),
    /// The file server (nextfs): an ext2 image behind a protected block device.
    #[cfg(feature = "fs")]
    Fileserver(cmd::fileserver::Args),
    /// A small client for a running file server.
    #[cfg(feature = "fs")]
    Fs(cmd::fs::Args),
    /// Present a file server's tree as a local directory (FUSE), for stock programs such as NGINX.
    #[cfg(feature = "mount")]
    Mount(cmd::mount::Args),
    /// Build a file-system image from a directory, for a block device.
    #[cfg(feature = "storage")]
    Mkfs(cmd::mkfs::Args),
    /// Build or rebuild the Merkle tree of an image and print its root.
    #[cfg(feature = "storage")]
    Mkmerkle(cmd::mkmerkle::Args),
    /// Verify an image through its block device.
    #[cfg(feature = "storage")]
    Fsck(cmd::fsck::Args),
    /// Start every process of a deployment and stop them all together.
    #[cfg(feature = "eval")]
    Up(cmd::up::Args),
    /// Fleet tools: Kubernetes manifests, container probes (docs/fleet.md).
    #[cfg(feature = "eval")]
    #[command(subcommand)]
    Deploy(cmd::deploy::Deploy),
    /// Run the evaluation matrix and write a report.
    #[cfg(feature = "eval")]
    Eval(cmd::eval::Args),
    /// Write the seed's WAF rule sets.
    #[cfg(feature = "waf")]
    WafRules(cmd::waf_rules::Args),
    /// Print the subcommands this binary was built with, as JSON (read by `conclave eval`).
    #[command(hide = true)]
    BuildInfo,
    /// Run a worker of `conclave edge` (started by the edge master).
    #[cfg(feature = "edge")]
    #[command(hide = true)]
    EdgeWorker(cmd::edge::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The edge sets up its own log (`error_log`, `error_log_level`) once its
    // configuration is read.
    #[cfg(feature = "edge")]
    let edge = matches!(cli.command, Command::Edge(_) | Command::EdgeWorker(_));
    #[cfg(not(feature = "edge"))]
    let edge = false;
    if !edge {
        cmd::init_logging();
    }
    let res = match cli.command {
        Command::Certs(a) => cmd::certs::run(a),
        #[cfg(feature = "bench")]
        Command::Content(a) => cmd::content::run(a),
        Command::Bench(b) => cmd::bench::run(b),
        Command::BuildInfo => cmd::build_info::run(&Cli::command()),
        #[cfg(feature = "bench")]
        Command::Ab(a) => cmd::ab::run(a),
        #[cfg(feature = "edge")]
        Command::Edge(a) => cmd::edge::run(a),
        #[cfg(feature = "edge")]
        Command::EdgeWorker(a) => cmd::edge::run_worker(a),
        #[cfg(feature = "edge")]
        Command::Origin(a) => cmd::origin::run(a),
        #[cfg(feature = "keys")]
        Command::Keyserver(a) => cmd::keyserver::run(a),
        #[cfg(feature = "keys")]
        Command::KeylessProbe(a) => cmd::keyserver::run_probe(a),
        #[cfg(feature = "keys")]
        Command::Keyref(a) => cmd::keyref::run(a),
        #[cfg(feature = "mem")]
        Command::Mem(a) => cmd::mem::run(a),
        #[cfg(feature = "mem")]
        Command::Memserver(a) => cmd::memserver::run(a),
        #[cfg(feature = "fs")]
        Command::Fileserver(a) => cmd::fileserver::run(a),
        #[cfg(feature = "fs")]
        Command::Fs(a) => cmd::fs::run(a),
        #[cfg(feature = "mount")]
        Command::Mount(a) => cmd::mount::run(a),
        #[cfg(feature = "storage")]
        Command::Mkfs(a) => cmd::mkfs::run(a),
        #[cfg(feature = "storage")]
        Command::Mkmerkle(a) => cmd::mkmerkle::run(a),
        #[cfg(feature = "storage")]
        Command::Fsck(a) => cmd::fsck::run(a),
        #[cfg(feature = "eval")]
        Command::Up(a) => cmd::up::run(a),
        #[cfg(feature = "eval")]
        Command::Deploy(d) => cmd::deploy::run(d),
        #[cfg(feature = "eval")]
        Command::Eval(a) => cmd::eval::run(a),
        #[cfg(feature = "waf")]
        Command::WafRules(a) => cmd::waf_rules::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
