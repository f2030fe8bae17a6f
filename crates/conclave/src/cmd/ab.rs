//! `conclave ab`: arguments of the ApacheBench-compatible load generator
//! (`conclave_bench::ab`).

use anyhow::Context;
use conclave_bench::ab::{self, LoadSpec, TlsVersion, Trust};
use std::path::PathBuf;

/// Arguments (ab's letters where ab has one).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of requests to perform.
    #[arg(short = 'n', default_value_t = 1)]
    pub requests: u64,
    /// Number of requests in flight at once.
    #[arg(short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// Use HTTP keep-alive (otherwise a new connection, and a full TLS handshake, per request).
    #[arg(short = 'k')]
    pub keepalive: bool,
    /// Seconds to spend at most (implies -n 50000 unless -n is given).
    #[arg(short = 't')]
    pub time_limit: Option<f64>,
    /// Seconds to wait for each connection and response.
    #[arg(short = 's', default_value_t = 30.0)]
    pub timeout: f64,
    /// Extra header, e.g. -H 'Accept-Encoding: gzip'; repeatable.
    #[arg(short = 'H', value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Send HEAD instead of GET.
    #[arg(short = 'i')]
    pub head: bool,
    /// Write the percentage-served table (CSV, like ab -e) to this file.
    #[arg(short = 'e', value_name = "CSV")]
    pub csv: Option<PathBuf>,
    /// TLS version to offer: 1.2 or 1.3.
    #[arg(long, default_value = "1.2")]
    pub tls: TlsVersion,
    /// Allow TLS session resumption (default: every connection is a full handshake, like ab).
    #[arg(long)]
    pub resume: bool,
    /// Trust this CA file (PEM), e.g. the conclave's root.crt.
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
    /// Accept any server certificate (ab never checks certificates).
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,
    /// Print the results as JSON instead of ab's text.
    #[arg(long)]
    pub json: bool,
    /// http[s]://host[:port]/path
    pub url: String,
    /// More URLs (same scheme), e.g. the other nodes of a fleet: new
    /// connections go round robin over all, sharing one TLS session cache.
    #[arg(value_name = "MORE_URLS")]
    pub more_urls: Vec<String>,
}

/// Runs the load and prints ab's summary (or JSON).
pub fn run(a: Args) -> anyhow::Result<()> {
    let headers = a
        .headers
        .iter()
        .map(|h| ab::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let time_limit = a.time_limit.map(|t| ab::seconds("-t", t)).transpose()?;
    let requests = if a.time_limit.is_some() && a.requests == 1 {
        0
    } else {
        a.requests
    };
    let trust = match (&a.cacert, a.insecure) {
        (Some(p), _) => Some(Trust::CaFile(p.clone())),
        (None, true) => Some(Trust::Insecure),
        (None, false) => None,
    };
    let spec = LoadSpec {
        url: a.url.clone(),
        requests,
        concurrency: a.concurrency,
        keepalive: a.keepalive,
        time_limit,
        headers,
        head: a.head,
        tls: a.tls,
        resume: a.resume,
        trust,
        timeout: ab::seconds("-s", a.timeout)?,
        more_urls: a.more_urls.clone(),
    };
    spec.check()?;
    let report = super::runtime()?.block_on(ab::run_until_interrupted(&spec))?;
    if let Some(p) = &a.csv {
        std::fs::write(p, ab::percent_csv(&report)).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        super::print_line(report.to_json());
    } else {
        super::print_line(format!("Benchmarking {} (conclave ab)\n", report.host));
        super::print_line(ab::summary_text(&report));
    }
    Ok(())
}
