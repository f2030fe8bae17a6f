//! The edge's counters and histograms (Prometheus / OpenMetrics), one
//! registry per process.
//!
//! Each worker process counts what it serves in its own registry, reached
//! through [`get`]; other parts of the edge bump it through the small
//! functions here and never touch the families directly. The admin listener
//! (in the master, see [`crate::admin`]) asks every worker for its
//! exposition and adds them up with [`merge`], so a scrape sees the whole
//! edge; a worker that restarts starts again from zero, which Prometheus
//! reads as a counter reset.

pub mod keyless;
mod merge;

pub use merge::{merge, MergeError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: String,
    status: u16,
    cache: String,
}

/// The one label of per-site families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: String,
}

/// A completed TLS handshake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    version: String,
    kind: String,
}

/// A call to a kernel server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    server: String,
    op: String,
}

/// A WAF denial.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WafLabels {
    site: String,
    rule_id: String,
}

/// The kernel servers an edge calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The key server (a keyless handshake signature).
    KeyServer,
    /// The file server (nextfs storage).
    FileServer,
    /// The memory server (the shared cache index, ticket keys).
    MemServer,
}

impl Backend {
    /// Its label value.
    pub fn label(self) -> &'static str {
        match self {
            Backend::KeyServer => "keyserver",
            Backend::FileServer => "fileserver",
            Backend::MemServer => "memserver",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s: a local file read to a stalled origin.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 16,
    ))
}

/// The process's registry and its families.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sent_bytes: Family<SiteLabels, Counter>,
    request_duration: Family<SiteLabels, Histogram, fn() -> Histogram>,
    connections: Gauge,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_failures: Counter,
    backend_duration: Family<BackendLabels, Histogram, fn() -> Histogram>,
    backend_errors: Family<BackendLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    waf_denials: Family<WafLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("conclave_edge");
        let m = Metrics {
            requests: Family::default(),
            sent_bytes: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            connections: Gauge::default(),
            handshakes: Family::default(),
            handshake_failures: Counter::default(),
            backend_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            backend_errors: Family::default(),
            backend_up: Family::default(),
            waf_denials: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by site, status and cache status",
            m.requests.clone(),
        );
        registry.register(
            "sent_bytes",
            "Response body bytes sent, by site",
            m.sent_bytes.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request head to the last body byte handed to the connection",
            m.request_duration.clone(),
        );
        registry.register(
            "connections_active",
            "Client connections open now",
            m.connections.clone(),
        );
        registry.register(
            "handshakes",
            "TLS handshakes completed, by protocol version and kind (full or resumed)",
            m.handshakes.clone(),
        );
        registry.register(
            "handshake_failures",
            "TLS handshakes that failed or timed out (not those the client hung up on)",
            m.handshake_failures.clone(),
        );
        registry.register(
            "backend_call_duration_seconds",
            "Calls to the key, file and memory servers, by server and operation",
            m.backend_duration.clone(),
        );
        registry.register(
            "backend_call_errors",
            "Failed calls to the key, file and memory servers (errors and missed deadlines)",
            m.backend_errors.clone(),
        );
        registry.register(
            "backend_up",
            "1 when the last call to this server and operation succeeded, 0 when it failed",
            m.backend_up.clone(),
        );
        registry.register(
            "waf_denials",
            "Requests denied by the WAF, by site and rule id",
            m.waf_denials.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition of this process's counters.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// This process's metrics, created on first use.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// What one finished request adds.
#[derive(Debug)]
pub struct RequestDone<'a> {
    /// The site's label (its first `server_name`, else its `listen`).
    pub site: &'a str,
    /// The response status.
    pub status: u16,
    /// `X-Cache-Status` (HIT, MISS, ...), `-` when the site has no cache.
    pub cache: &'a str,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    /// From the request head to the last body byte.
    pub elapsed: Duration,
}

/// Counts one finished request.
pub fn request_done(r: &RequestDone<'_>) {
    let m = get();
    m.requests
        .get_or_create(&RequestLabels {
            site: r.site.to_string(),
            status: r.status,
            cache: r.cache.to_string(),
        })
        .inc();
    let site = SiteLabels {
        site: r.site.to_string(),
    };
    m.sent_bytes.get_or_create(&site).inc_by(r.bytes);
    m.request_duration
        .get_or_create(&site)
        .observe(r.elapsed.as_secs_f64());
}

/// Counts a connection as open until the returned guard is dropped.
pub fn connection_opened() -> ConnectionGuard {
    get().connections.inc();
    ConnectionGuard(())
}

/// An open connection in `connections_active`.
#[derive(Debug)]
pub struct ConnectionGuard(());

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        get().connections.dec();
    }
}

/// Counts a completed handshake: `version` as rustls names it ("TLSv1_3"),
/// `resumed` when a ticket or session id was accepted.
pub fn handshake(version: &str, resumed: bool) {
    get()
        .handshakes
        .get_or_create(&HandshakeLabels {
            version: version.to_string(),
            kind: if resumed { "resumed" } else { "full" }.to_string(),
        })
        .inc();
}

/// Counts a handshake that failed or timed out.
pub fn handshake_failed() {
    get().handshake_failures.inc();
}

/// Records one call to a kernel server: its duration and whether it failed.
pub fn backend_call(server: Backend, op: &'static str, elapsed: Duration, ok: bool) {
    let m = get();
    let l = BackendLabels {
        server: server.label().to_string(),
        op: op.to_string(),
    };
    m.backend_duration
        .get_or_create(&l)
        .observe(elapsed.as_secs_f64());
    if !ok {
        m.backend_errors.get_or_create(&l).inc();
    }
    m.backend_up.get_or_create(&l).set(i64::from(ok));
}

/// Times `f`, a call to `server`, and records it; `ok` tells success from its result.
pub fn time_call<T, E>(server: Backend, op: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let t = std::time::Instant::now();
    let r = f();
    backend_call(server, op, t.elapsed(), r.is_ok());
    r
}

/// [`time_call`] for I/O results: errors that are the answer about a file
/// (not found, exists, not a directory, ...) count as successful calls.
pub fn time_io<T>(
    server: Backend,
    op: &'static str,
    f: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    use std::io::ErrorKind as K;
    let t = std::time::Instant::now();
    let r = f();
    let ok = match &r {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            K::NotFound
                | K::AlreadyExists
                | K::NotADirectory
                | K::IsADirectory
                | K::DirectoryNotEmpty
                | K::PermissionDenied
                | K::InvalidInput
        ),
    };
    backend_call(server, op, t.elapsed(), ok);
    r
}

/// Counts a request the WAF denied.
pub fn waf_denied(site: &str, rule_id: &str) {
    get()
        .waf_denials
        .get_or_create(&WafLabels {
            site: site.to_string(),
            rule_id: rule_id.to_string(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_shows_in_the_exposition_with_its_labels() {
        request_done(&RequestDone {
            site: "unit.example",
            status: 200,
            cache: "HIT",
            bytes: 1024,
            elapsed: Duration::from_millis(3),
        });
        let text = get().encode();
        assert!(
            text.contains(r#"conclave_edge_requests_total{site="unit.example",status="200",cache="HIT"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"conclave_edge_sent_bytes_total{site="unit.example"} 1024"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_failed_backend_call_is_counted_and_marks_the_backend_down() {
        let r: Result<(), ()> = time_call(Backend::FileServer, "unit_read", || Err(()));
        assert!(r.is_err());
        let text = get().encode();
        assert!(
            text.contains(r#"conclave_edge_backend_up{server="fileserver",op="unit_read"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"conclave_edge_backend_call_errors_total{server="fileserver",op="unit_read"} 1"#)
        );
    }
}
