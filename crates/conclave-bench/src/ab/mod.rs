//! An ApacheBench-compatible HTTP(S) load generator.
//!
//! Like `ab`, every request opens a new connection (a full TLS handshake,
//! session resumption off) unless keep-alive is asked for, every response's
//! status and length are checked, and failures are counted in ab's
//! categories. Unlike `ab` it runs on all cores (tokio multi-thread), so the
//! client is not the bottleneck, and it keeps HDR histograms for tail
//! percentiles. Each report records the TLS version and whether
//! resumption was allowed, since full and resumed handshakes measure
//! different things.

mod http;
mod options;
mod run;
mod stats;
mod summary;
mod target;
mod tls;

pub use options::{parse_header, run_until_interrupted, seconds};
pub use run::run;
pub use stats::{Failures, Percentiles, TimeStats};
pub use summary::{percent_csv, summary_text};
pub use target::{Scheme, Target};
pub use tls::{TlsVersion, Trust};

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
pub enum AbError {
    /// The URL is not one ab accepts.
    #[error("bad URL {0}")]
    Url(String),
    /// An option is out of range or missing.
    #[error("{0}")]
    Usage(String),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// A bug: a worker task died.
    #[error("{0}")]
    Internal(String),
}

/// What to run: ab's options.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// `http[s]://host[:port]/path`.
    pub url: String,
    /// `-n`: number of requests (0 with a time limit means ab's 50000 cap).
    pub requests: u64,
    /// `-c`: requests in flight.
    pub concurrency: usize,
    /// `-k`: HTTP keep-alive.
    pub keepalive: bool,
    /// `-t`: stop after this long.
    pub time_limit: Option<Duration>,
    /// `-H`: extra headers.
    pub headers: Vec<(String, String)>,
    /// `-i`: HEAD instead of GET.
    pub head: bool,
    /// `--tls`: protocol version for https.
    pub tls: TlsVersion,
    /// `--resume`: allow TLS session resumption.
    pub resume: bool,
    /// How to check the server certificate (required for https).
    pub trust: Option<Trust>,
    /// `-s`: per-request timeout.
    pub timeout: Duration,
    /// More targets (same scheme), served round robin with `url`: each new
    /// connection goes to the next. One TLS session cache serves them all,
    /// so with `--resume` a session made on one node is offered to the
    /// others (a fleet sharing ticket keys resumes it).
    pub more_urls: Vec<String>,
}

impl LoadSpec {
    /// ab's defaults for a URL: one request, no concurrency, TLS 1.2, 30 s timeout.
    pub fn new(url: impl Into<String>) -> LoadSpec {
        LoadSpec {
            url: url.into(),
            requests: 1,
            concurrency: 1,
            keepalive: false,
            time_limit: None,
            headers: Vec::new(),
            head: false,
            tls: TlsVersion::Tls12,
            resume: false,
            trust: None,
            timeout: Duration::from_secs(30),
            more_urls: Vec::new(),
        }
    }
}

/// Lets a caller watch progress and stop a run early (Ctrl-C); finished
/// requests are still reported.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Set to stop taking new requests.
    pub cancel: Arc<AtomicBool>,
    /// Requests finished so far.
    pub completed: Arc<AtomicU64>,
    /// Requests started so far.
    pub started: Arc<AtomicU64>,
}

/// TLS facts of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// Version offered.
    pub version: TlsVersion,
    /// Version negotiated (e.g. `TLSv1_2`).
    pub protocol: String,
    /// Cipher suite negotiated.
    pub cipher: String,
    /// Whether session resumption was allowed (`--resume`).
    pub resumption: bool,
    /// Full handshakes done.
    pub handshakes_full: u64,
    /// Resumed handshakes done.
    pub handshakes_resumed: u64,
}

/// Everything ab prints, as data (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The URL.
    pub url: String,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Path requested.
    pub path: String,
    /// The `Server:` header of a response.
    pub server_software: Option<String>,
    /// TLS facts (None for http).
    pub tls: Option<TlsInfo>,
    /// `-k` was given.
    pub keepalive: bool,
    /// `-c`.
    pub concurrency: usize,
    /// `-n` (or ab's cap with `-t`).
    pub requests_asked: u64,
    /// Body length of the first response.
    pub document_length: u64,
    /// Wall time of the run, seconds.
    pub time_taken_s: f64,
    /// Requests finished (good or failed).
    pub complete: u64,
    /// Failed requests.
    pub failed: u64,
    /// Failures by category.
    pub failures: Failures,
    /// Responses outside 2xx.
    pub non_2xx: u64,
    /// Requests on reused connections.
    pub keepalive_requests: u64,
    /// All bytes received.
    pub total_transferred: u64,
    /// Body bytes received.
    pub html_transferred: u64,
    /// Complete requests per second.
    pub requests_per_sec: f64,
    /// Mean time per request (ms), i.e. concurrency / throughput.
    pub time_per_request_ms: f64,
    /// Mean time per request across all concurrent requests (ms).
    pub time_per_request_all_ms: f64,
    /// KiB/s received.
    pub transfer_rate_kib_s: f64,
    /// Connect times.
    pub connect: TimeStats,
    /// Processing times.
    pub processing: TimeStats,
    /// Waiting times.
    pub waiting: TimeStats,
    /// Total times.
    pub total: TimeStats,
    /// Total-time percentiles from the HDR histogram.
    pub latency: Percentiles,
    /// ms within which 0..=100 % of requests were served (ab `-e`).
    pub percent_served_ms: Vec<f64>,
    /// The first failure's cause, to name it in errors.
    pub first_error: Option<String>,
    /// Whether the run was cut short by the caller.
    pub cancelled: bool,
}

impl LoadReport {
    /// The report as pretty JSON (`--json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        spec: &LoadSpec,
        target: &Target,
        server_software: Option<String>,
        document_length: u64,
        tls: Option<TlsInfo>,
        elapsed: Duration,
        rec: &stats::Recorder,
        first_error: Option<String>,
    ) -> LoadReport {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let failed = rec.failures.total();
        // Length failures still got a response and are recorded; the others are not.
        let complete = rec.recorded() + rec.failures.connect + rec.failures.receive + rec.failures.exceptions;
        let rps = complete as f64 / secs;
        LoadReport {
            url: spec.url.clone(),
            host: target.host.clone(),
            port: target.port,
            path: target.path.clone(),
            server_software,
            tls,
            keepalive: spec.keepalive,
            concurrency: spec.concurrency,
            requests_asked: spec.requests,
            document_length,
            time_taken_s: secs,
            complete,
            failed,
            failures: rec.failures,
            non_2xx: rec.non_2xx,
            keepalive_requests: rec.keepalive_requests,
            total_transferred: rec.total_bytes,
            html_transferred: rec.html_bytes,
            requests_per_sec: rps,
            time_per_request_ms: if rps > 0.0 {
                spec.concurrency as f64 * 1000.0 / rps
            } else {
                0.0
            },
            time_per_request_all_ms: if rps > 0.0 { 1000.0 / rps } else { 0.0 },
            transfer_rate_kib_s: rec.total_bytes as f64 / 1024.0 / secs,
            connect: TimeStats::of(&rec.connect),
            processing: TimeStats::of(&rec.processing),
            waiting: TimeStats::of(&rec.waiting),
            total: TimeStats::of(&rec.total),
            latency: Percentiles::of(&rec.total),
            percent_served_ms: stats::percent_table(&rec.total),
            first_error,
            cancelled: false,
        }
    }
}
