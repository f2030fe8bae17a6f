//! What one load run measured: counters in `ab`'s categories and HDR
//! histograms of the connect, waiting, processing and total times.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable time: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

/// Times of one completed request, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// TCP connect + TLS handshake (0 on a reused keep-alive connection).
    pub connect_us: u64,
    /// Request written to the first response byte.
    pub waiting_us: u64,
    /// Connection ready to response complete.
    pub processing_us: u64,
    /// Start to response complete.
    pub total_us: u64,
}

/// Per-worker accumulator; merged once at the end so workers never contend.
pub struct Recorder {
    pub(crate) connect: Histogram<u64>,
    pub(crate) waiting: Histogram<u64>,
    pub(crate) processing: Histogram<u64>,
    pub(crate) total: Histogram<u64>,
    /// Failures by category.
    pub failures: Failures,
    /// Responses with a status outside 200..=299.
    pub non_2xx: u64,
    /// Requests answered on a reused connection.
    pub keepalive_requests: u64,
    /// All response bytes.
    pub total_bytes: u64,
    /// Body bytes.
    pub html_bytes: u64,
    /// Full TLS handshakes.
    pub handshakes_full: u64,
    /// Resumed TLS handshakes.
    pub handshakes_resumed: u64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            connect: hist(),
            waiting: hist(),
            processing: hist(),
            total: hist(),
            failures: Failures::default(),
            non_2xx: 0,
            keepalive_requests: 0,
            total_bytes: 0,
            html_bytes: 0,
            handshakes_full: 0,
            handshakes_resumed: 0,
        }
    }
}

impl Recorder {
    /// Records the times of a completed request.
    pub fn record(&mut self, s: Sample) {
        for (h, v) in [
            (&mut self.connect, s.connect_us),
            (&mut self.waiting, s.waiting_us),
            (&mut self.processing, s.processing_us),
            (&mut self.total, s.total_us),
        ] {
            h.saturating_record(v.clamp(1, MAX_US));
        }
    }

    /// Adds another worker's counts and histograms.
    pub fn merge(&mut self, o: &Recorder) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.connect.add(&o.connect);
        let _ = self.waiting.add(&o.waiting);
        let _ = self.processing.add(&o.processing);
        let _ = self.total.add(&o.total);
        self.failures.connect += o.failures.connect;
        self.failures.receive += o.failures.receive;
        self.failures.length += o.failures.length;
        self.failures.exceptions += o.failures.exceptions;
        self.non_2xx += o.non_2xx;
        self.keepalive_requests += o.keepalive_requests;
        self.total_bytes += o.total_bytes;
        self.html_bytes += o.html_bytes;
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
    }

    /// Requests whose times were recorded.
    pub fn recorded(&self) -> u64 {
        self.total.len()
    }
}

/// Failed requests in `ab`'s categories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// TCP connect or TLS handshake failed.
    pub connect: u64,
    /// The connection broke or closed before the response was complete.
    pub receive: u64,
    /// The body length differed from the first response's.
    pub length: u64,
    /// Anything else: write errors, malformed responses, timeouts.
    pub exceptions: u64,
}

impl Failures {
    /// All failures.
    pub fn total(&self) -> u64 {
        self.connect + self.receive + self.length + self.exceptions
    }
}

/// ab's "Connection Times" row, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeStats {
    /// Minimum.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Median.
    pub median: f64,
    /// Maximum.
    pub max: f64,
}

impl TimeStats {
    pub(crate) fn of(h: &Histogram<u64>) -> TimeStats {
        if h.is_empty() {
            return TimeStats::default();
        }
        TimeStats {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            sd: h.stdev() / 1000.0,
            median: ms(h.value_at_quantile(0.5)),
            max: ms(h.max()),
        }
    }
}

/// Latency percentiles of the total time, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// 50th.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
        }
    }
}

/// `ab -e`'s table: for each whole percentage 0..=100, the time (ms) within
/// which that share of requests was served.
pub(crate) fn percent_table(h: &Histogram<u64>) -> Vec<f64> {
    (0..=100)
        .map(|p| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(p as f64 / 100.0))
            }
        })
        .collect()
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_samples() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        a.record(Sample {
            connect_us: 10,
            waiting_us: 20,
            processing_us: 30,
            total_us: 1000,
        });
        b.record(Sample {
            connect_us: 10,
            waiting_us: 20,
            processing_us: 30,
            total_us: 3000,
        });
        b.failures.length = 2;
        b.non_2xx = 1;
        a.merge(&b);
        assert_eq!(a.recorded(), 2);
        assert_eq!(a.failures.total(), 2);
        assert_eq!(a.non_2xx, 1);
        let t = TimeStats::of(&a.total);
        assert!((t.mean - 2.0).abs() < 0.01, "{t:?}");
        let table = percent_table(&a.total);
        assert_eq!(table.len(), 101);
        assert!((table[100] - 3.0).abs() < 0.01);
    }
}
