//! Rate-limited logging of refusals (malformed requests, limits, timeouts,
//! failed calls to the key and file servers).
//!
//! WHY: a flood of bad peers must not fill the log, yet an operator must see
//! that refusals happen and how many. Each kind logs at most one line per
//! [`INTERVAL`], carrying the count since its previous line and the latest
//! detail (a peer address or an error: never a secret).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// At most one log line per kind in this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Starts one interval in: the first event is logged right away.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + INTERVAL.as_millis() as u64
}

/// One kind of refusal: a counter and the time of its last log line.
#[derive(Debug)]
pub struct RateLog {
    what: &'static str,
    count: AtomicU64,
    total: AtomicU64,
    last_ms: AtomicU64,
}

impl RateLog {
    /// A kind named `what` in its log lines.
    pub const fn new(what: &'static str) -> RateLog {
        RateLog {
            what,
            count: AtomicU64::new(0),
            total: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Counts one refusal; logs a line (with the count since the last line) if
    /// the interval has passed since that line.
    pub fn note(&self, detail: impl std::fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = clock_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < INTERVAL.as_millis() as u64 {
            return;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread logs this interval
        }
        let n = self.count.swap(0, Ordering::Relaxed);
        tracing::warn!(
            "{}: {n} since the last such line (at most one line per {}s); latest: {detail}",
            self.what,
            INTERVAL.as_secs()
        );
    }

    /// Refusals counted since the process started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Requests hyper refused as malformed (bad request line or headers, too large).
pub static MALFORMED: RateLog = RateLog::new("malformed requests refused");
/// HTTP/1.1 requests without exactly one `Host` header (400).
pub static BAD_HOST: RateLog =
    RateLog::new("HTTP/1.1 requests with a missing or duplicate Host refused (400)");
/// Connections closed at accept by `limit_conn`.
pub static LIMIT_CONN: RateLog = RateLog::new("connections refused by limit_conn");
/// Requests answered 503 by `limit_req`.
pub static LIMIT_REQ: RateLog = RateLog::new("requests refused by limit_req (503)");
/// Request bodies that stalled past `client_body_timeout` (408).
pub static BODY_TIMEOUT: RateLog = RateLog::new("request bodies timed out (client_body_timeout, 408)");
/// Connections closed by `send_timeout`.
pub static SEND_TIMEOUT: RateLog = RateLog::new("connections closed by send_timeout");
/// HTTP/2 connections closed by `http2_idle_timeout`.
pub static H2_IDLE: RateLog = RateLog::new("HTTP/2 connections closed by http2_idle_timeout");
/// Exchanges with an origin that failed (502) or timed out (504).
pub static UPSTREAM: RateLog = RateLog::new("origin requests failed (502/504)");
/// Request bodies refused on their way to an origin (413 past `client_max_body_size`, 408, 400).
pub static UPSTREAM_CLIENT_BODY: RateLog = RateLog::new("proxied request bodies refused (413/408/400)");
/// File-server calls that failed or passed `storage_timeout`.
pub static STORAGE: RateLog = RateLog::new("file-server reads failed (502/504)");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_all() {
        let l = RateLog::new("test");
        for i in 0..1000 {
            l.note(i);
        }
        assert_eq!(l.total(), 1000);
        // The first note logged and reset the count; the other 999 wait for the next line.
        assert_eq!(l.count.load(Ordering::Relaxed), 999);
    }
}
