//! Rate-limited logging of refusals (malformed requests, limits, timeouts,
//! failed calls to the key and file servers).
//!
//! WHY: a flood of bad peers must not fill the log, yet an operator must see
//! that refusals happen and how many. Each kind logs at most one line per
//! [`INTERVAL`], carrying the count since its previous line and the latest
//! detail (a peer address or an error: never a secret). The mechanism is
//! the RPC servers' [`RateLog`]; only the kinds and the interval are the edge's.

use std::time::Duration;

pub use conclave_rpc::refusals::RateLog;

/// At most one log line per kind in this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Requests hyper refused as malformed (bad request line or headers, too large).
pub static MALFORMED: RateLog = RateLog::new("malformed requests refused", INTERVAL);
/// HTTP/1.1 requests without exactly one `Host` header (400).
pub static BAD_HOST: RateLog = RateLog::new(
    "HTTP/1.1 requests with a missing or duplicate Host refused (400)",
    INTERVAL,
);
/// Connections closed at accept by `limit_conn`.
pub static LIMIT_CONN: RateLog = RateLog::new("connections refused by limit_conn", INTERVAL);
/// Requests answered 503 by `limit_req`.
pub static LIMIT_REQ: RateLog = RateLog::new("requests refused by limit_req (503)", INTERVAL);
/// Request bodies that stalled past `client_body_timeout` (408).
pub static BODY_TIMEOUT: RateLog =
    RateLog::new("request bodies timed out (client_body_timeout, 408)", INTERVAL);
/// Connections closed by `send_timeout`.
pub static SEND_TIMEOUT: RateLog = RateLog::new("connections closed by send_timeout", INTERVAL);
/// HTTP/2 connections closed by `http2_idle_timeout`.
pub static H2_IDLE: RateLog = RateLog::new("HTTP/2 connections closed by http2_idle_timeout", INTERVAL);
/// Exchanges with an origin that failed (502) or timed out (504).
pub static UPSTREAM: RateLog = RateLog::new("origin requests failed (502/504)", INTERVAL);
/// Request bodies refused on their way to an origin (413 past `client_max_body_size`, 408, 400).
pub static UPSTREAM_CLIENT_BODY: RateLog =
    RateLog::new("proxied request bodies refused (413/408/400)", INTERVAL);
/// File-server calls that failed or passed `storage_timeout`.
pub static STORAGE: RateLog = RateLog::new("file-server reads failed (502/504)", INTERVAL);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_kinds_count_every_refusal() {
        let l: RateLog = RateLog::new("test", INTERVAL);
        for i in 0..1000 {
            l.note(i);
        }
        assert_eq!(l.total(), 1000);
    }
}
