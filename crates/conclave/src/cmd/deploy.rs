//! `conclave deploy`: the fleet's tools. `deploy k8s` renders a deployment
//! file as Kubernetes manifests (the work is `conclave_eval::k8s`'s);
//! `deploy probe` is the containers' probe, so the image needs no curl and
//! the edge's admin listener stays on the pod's loopback.

use anyhow::{bail, Context};
use conclave_eval::deploy::Deployment;
use conclave_eval::k8s::{self, K8sOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// `conclave deploy ...`.
#[derive(clap::Subcommand)]
pub enum Deploy {
    /// Render a deployment file (`conclave up`'s) as Kubernetes manifests (docs/fleet.md).
    K8s(K8sArgs),
    /// Exit 0 when `http://HOST:PORT/PATH` answers 200, or `tcp://HOST:PORT` accepts.
    Probe(ProbeArgs),
}

/// `conclave deploy k8s`.
#[derive(clap::Args)]
pub struct K8sArgs {
    /// The deployment file.
    pub deploy: PathBuf,
    /// Directory to write the manifests into (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Fleet options.
    #[command(flatten)]
    pub options: K8sOptions,
}

/// `conclave deploy probe`.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// `http://HOST:PORT/PATH` or `tcp://HOST:PORT`.
    pub target: String,
    /// Give up after this long (connect, then the answer).
    #[arg(long, default_value = "2s", value_parser = conclave_units::parse_duration)]
    pub timeout: Duration,
}

/// Runs a `deploy` subcommand.
pub fn run(d: Deploy) -> anyhow::Result<()> {
    match d {
        Deploy::K8s(a) => render(a),
        Deploy::Probe(a) => probe(&a.target, a.timeout),
    }
}

fn render(a: K8sArgs) -> anyhow::Result<()> {
    let d = Deployment::load(&a.deploy)?;
    let manifests = k8s::render(&d, &a.options)?;
    for (path, fresh) in manifests.write(&a.out)? {
        if fresh {
            super::print_line(format!("wrote {}", path.display()));
        } else {
            super::print_line(format!(
                "kept {} (its secrets seal the file servers' images; remove it to make new ones)",
                path.display()
            ));
        }
    }
    super::print_line(format!(
        "apply with: kubectl apply -f {} (the secrets file holds private keys: apply it, then keep it offline)",
        a.out.display()
    ));
    Ok(())
}

fn resolve(hostport: &str) -> anyhow::Result<SocketAddr> {
    hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport}: no address"))
}

/// Checks `target` once: the exit status is the probe's verdict.
fn probe(target: &str, timeout: Duration) -> anyhow::Result<()> {
    if let Some(hostport) = target.strip_prefix("tcp://") {
        let addr = resolve(hostport)?;
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
        return Ok(());
    }
    let Some(rest) = target.strip_prefix("http://") else {
        bail!("{target}: expected http://HOST:PORT/PATH or tcp://HOST:PORT");
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let addr = resolve(hostport)?;
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: a server that answers on the first bytes sees the whole request.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())?;
    // The status line is all the verdict needs: stop reading at its end.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while head.len() < 256 && !head.windows(2).any(|w| w == b"\r\n") {
        let got = s
            .read(&mut buf)
            .with_context(|| format!("reading the answer of {target}"))?;
        if got == 0 {
            break;
        }
        head.extend_from_slice(&buf[..got]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => bail!("{target}: {line:?}"),
    }
}
