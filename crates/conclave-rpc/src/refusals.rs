//! Refusals, counted and logged at most once per kind per interval.
//!
//! A flood of refused connections must not become a flood of log lines (the
//! log would fill the disk and hide everything else), yet an operator must
//! still see that refusals happen, why, and how many. [`RateLog`] is that
//! mechanism for the whole conclave: each refusal bumps a counter, the first
//! one is written at once, later ones at most once per interval with the
//! count since the previous line. Each crate words its own kinds
//! ([`Wording`]) and picks its own interval: the RPC servers here use
//! [`LOG_INTERVAL`] (1 s, with one [`RateLog`] per [`Kind`] of each server);
//! the edge keeps its own statics and 10 s (`conclave_edge::refusals`).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::warn;

/// How often an RPC server writes counted refusals, at most, per kind.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// `last_line_ms` before any line: the first refusal is written at once.
const NEVER: u64 = u64::MAX;

/// Milliseconds on one monotonic clock shared by every [`RateLog`] (a
/// `static` cannot hold an `Instant`, so they count from its first use).
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What one log line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Refusals since the previous line (at least 1).
    pub n: u64,
    /// The detail of the latest of them (a peer, an error: never a secret).
    pub latest: &'a str,
    /// Time since the previous line of this kind; `None` for the first.
    pub since: Option<Duration>,
    /// The most often a line of this kind is written.
    pub interval: Duration,
}

/// How a kind's log line reads: each crate words its own kinds.
pub trait Wording {
    /// Writes `line` to the log.
    fn write(&self, line: &Line<'_>);
}

/// A bare description (`"malformed requests refused"`) reads as
/// `WHAT: N since the last such line (at most one line per 10s); latest: DETAIL`.
impl Wording for &'static str {
    fn write(&self, l: &Line<'_>) {
        warn!(
            "{self}: {} since the last such line (at most one line per {}); latest: {}",
            l.n,
            conclave_units::Dur(l.interval),
            l.latest
        );
    }
}

/// One kind of refusal: counted always, written at most once per interval.
///
/// Lock-free on the count; the latest detail sits behind a mutex only so a
/// deferred line ([`RateLog::flush`]) can still name it.
#[derive(Debug)]
pub struct RateLog<W = &'static str> {
    wording: W,
    interval_ms: u64,
    /// Refusals not yet written.
    count: AtomicU64,
    /// Refusals since the process started.
    total: AtomicU64,
    /// [`clock_ms`] of the last line, or [`NEVER`].
    last_line_ms: AtomicU64,
    latest: Mutex<String>,
}

impl<W: Wording> RateLog<W> {
    /// A kind worded by `wording`, written at most once per `interval`.
    pub const fn new(wording: W, interval: Duration) -> RateLog<W> {
        RateLog {
            wording,
            interval_ms: interval.as_millis() as u64,
            count: AtomicU64::new(0),
            total: AtomicU64::new(0),
            last_line_ms: AtomicU64::new(NEVER),
            latest: Mutex::new(String::new()),
        }
    }

    /// Counts one refusal concerning `detail`; writes a line (with the count
    /// since the previous one) if none was written in the last interval.
    pub fn note(&self, detail: impl fmt::Display) {
        self.note_at(clock_ms(), detail);
    }

    /// Writes the refusals not yet written, if a line is due; returns
    /// whether it wrote one. Call it periodically (more often than the
    /// interval) so the last refusals of a burst are not left unreported.
    pub fn flush(&self) -> bool {
        self.flush_at(clock_ms(), false)
    }

    /// Writes the refusals not yet written whatever the time (at shutdown);
    /// returns whether it wrote a line.
    pub fn drain(&self) -> bool {
        self.flush_at(clock_ms(), true)
    }

    /// Refusals counted since the process started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn note_at(&self, now: u64, detail: impl fmt::Display) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            latest.clear();
            let _ = write!(latest, "{detail}");
            // Counted under the lock so a line never takes a count whose
            // detail is not written yet.
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.flush_at(now, false);
    }

    fn flush_at(&self, now: u64, force: bool) -> bool {
        let last = self.last_line_ms.load(Ordering::Relaxed);
        let due = last == NEVER || now.saturating_sub(last) >= self.interval_ms;
        if !(due || force) || self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        if self
            .last_line_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false; // another thread writes this interval's line
        }
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.count.swap(0, Ordering::Relaxed);
        if n == 0 {
            return false; // taken by a forced line in between
        }
        self.wording.write(&Line {
            n,
            latest: &latest,
            since: (last != NEVER).then(|| Duration::from_millis(now.saturating_sub(last))),
            interval: Duration::from_millis(self.interval_ms),
        });
        true
    }
}

/// What an RPC server refused, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A new connection while every slot held an authenticated client.
    AllAuthenticated,
    /// A pending (unauthenticated) connection dropped to make room.
    Shed,
    /// A TLS handshake that failed.
    HandshakeFailed,
    /// A TLS handshake not done within `handshake_timeout`.
    HandshakeTimeout,
    /// A peer whose role the server (or the service) does not serve.
    Role,
    /// A peer whose identity already had `max_conns_per_identity` connections.
    IdentityConns,
    /// A request over its identity's `max_inflight_per_identity`.
    IdentityInflight,
}

const KINDS: usize = 7;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::AllAuthenticated,
        Kind::Shed,
        Kind::HandshakeFailed,
        Kind::HandshakeTimeout,
        Kind::Role,
        Kind::IdentityConns,
        Kind::IdentityInflight,
    ];

    /// The line's wording: what happened `n` times, and why.
    fn describe(self, n: u64) -> (String, &'static str) {
        match self {
            Kind::AllAuthenticated => (
                format!("refused {n} connections"),
                "every slot holds an authenticated client (--max-connections)",
            ),
            Kind::Shed => (
                format!("shed {n} unauthenticated connections"),
                "oldest unauthenticated connection dropped for a new one (slots full: --max-connections, \
                 or its address over --max-conns-per-addr)",
            ),
            Kind::HandshakeFailed => (format!("refused {n} connections"), "TLS handshake failed"),
            Kind::HandshakeTimeout => (
                format!("refused {n} connections"),
                "TLS handshake not done in time (--handshake-timeout)",
            ),
            Kind::Role => (
                format!("refused {n} clients"),
                "certificate role not served here (EACCES)",
            ),
            Kind::IdentityConns => (
                format!("refused {n} clients"),
                "too many connections for one identity (EMFILE, --max-conns-per-identity)",
            ),
            Kind::IdentityInflight => (
                format!("refused {n} requests"),
                "too many requests in flight for one identity (EAGAIN, --max-inflight-per-identity)",
            ),
        }
    }
}

/// One kind of refusal at one server's endpoint.
struct ServerKind {
    kind: Kind,
    endpoint: String,
}

/// `WARN shed 517 unauthenticated connections in the last 1s: WHY endpoint=.. last=PEER`.
impl Wording for ServerKind {
    fn write(&self, l: &Line<'_>) {
        let (what, why) = self.kind.describe(l.n);
        match l.since {
            Some(since) => warn!(
                endpoint = %self.endpoint,
                last = %l.latest,
                "{what} in the last {}: {why}",
                conclave_units::Dur(since)
            ),
            None => warn!(endpoint = %self.endpoint, last = %l.latest, "{what}: {why}"),
        }
    }
}

/// Refusal logs of one RPC server, one [`RateLog`] per [`Kind`].
pub(crate) struct Refusals {
    logs: [RateLog<ServerKind>; KINDS],
}

impl Refusals {
    pub(crate) fn new(endpoint: &dyn fmt::Display) -> Refusals {
        let endpoint = endpoint.to_string();
        Refusals {
            logs: Kind::ALL.map(|kind| {
                RateLog::new(
                    ServerKind {
                        kind,
                        endpoint: endpoint.clone(),
                    },
                    LOG_INTERVAL,
                )
            }),
        }
    }

    /// Counts one refusal of `kind` concerning `peer`; `detail` (a failed
    /// handshake's or a refused role's reason) may be empty.
    pub(crate) fn note(&self, kind: Kind, peer: &str, detail: &dyn fmt::Display) {
        let detail = detail.to_string();
        let log = &self.logs[kind as usize];
        if detail.is_empty() {
            log.note(peer);
        } else {
            log.note(format_args!("{peer} ({detail})"));
        }
    }

    /// Writes the lines that are due; returns how many it wrote.
    pub(crate) fn flush(&self) -> usize {
        self.logs.iter().filter(|l| l.flush()).count()
    }

    /// Writes every count not yet written (at shutdown); returns how many lines.
    pub(crate) fn drain(&self) -> usize {
        self.logs.iter().filter(|l| l.drain()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// Records lines instead of logging them.
    #[derive(Default)]
    struct Recorded(StdMutex<Vec<(u64, String, Option<Duration>)>>);

    impl Wording for &Recorded {
        fn write(&self, l: &Line<'_>) {
            self.0.lock().unwrap().push((l.n, l.latest.to_string(), l.since));
        }
    }

    impl Recorded {
        fn lines(&self) -> Vec<(u64, String, Option<Duration>)> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn first_refusal_is_written_at_once_later_ones_once_per_interval_with_counts() {
        let rec = Recorded::default();
        let log = RateLog::new(&rec, Duration::from_secs(10));
        log.note_at(5, "a");
        assert_eq!(rec.lines(), vec![(1, "a".to_string(), None)]);
        // Inside the interval: counted, not written.
        for i in 0..999 {
            log.note_at(6 + i, format_args!("b{i}"));
        }
        assert!(rec.lines().is_empty());
        assert!(!log.flush_at(10_004, false), "one ms short of the interval");
        // The first refusal after the interval writes everything since.
        log.note_at(10_005, "c");
        assert_eq!(
            rec.lines(),
            vec![(1000, "c".to_string(), Some(Duration::from_secs(10)))]
        );
        assert_eq!(log.total(), 1001);
    }

    #[test]
    fn flush_writes_the_tail_of_a_burst_once_due() {
        let rec = Recorded::default();
        let log = RateLog::new(&rec, Duration::from_secs(1));
        assert!(!log.flush_at(0, false), "nothing to write");
        log.note_at(0, "a");
        log.note_at(100, "b");
        log.note_at(200, "c");
        assert!(!log.flush_at(999, false));
        assert!(log.flush_at(1500, false));
        assert!(!log.flush_at(3000, false), "nothing new");
        assert_eq!(
            rec.lines(),
            vec![
                (1, "a".to_string(), None),
                (2, "c".to_string(), Some(Duration::from_millis(1500)))
            ]
        );
        // A quiet interval later the next refusal is written at once; at
        // shutdown the rest are, whatever the time.
        log.note_at(3001, "d");
        log.note_at(3002, "e");
        log.note_at(3003, "f");
        assert!(log.flush_at(3004, true));
        assert_eq!(
            rec.lines(),
            vec![
                (1, "d".to_string(), Some(Duration::from_millis(1501))),
                (2, "f".to_string(), Some(Duration::from_millis(3)))
            ]
        );
        assert_eq!(log.total(), 6);
    }

    #[test]
    fn counts_from_many_threads_are_all_written_once() {
        let rec = Recorded::default();
        let log = RateLog::new(&rec, Duration::from_secs(1));
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..1000 {
                        log.note_at(i, t);
                    }
                });
            }
        });
        log.flush_at(5000, true);
        let lines = rec.lines();
        assert_eq!(lines.iter().map(|l| l.0).sum::<u64>(), 4000);
        assert_eq!(lines.len(), 2, "the first at once, the rest at the flush");
        assert_eq!(log.total(), 4000);
    }

    #[test]
    fn each_server_kind_is_one_line_however_many_refusals() {
        let r = Refusals::new(&"tcp://x");
        for i in 0..500 {
            r.note(Kind::AllAuthenticated, &format!("127.0.0.1:{i}"), &"");
        }
        r.note(Kind::HandshakeFailed, "127.0.0.1:1", &"no certificate");
        // The first of each kind was written at once; 499 wait.
        assert_eq!(r.flush(), 0);
        assert_eq!(r.drain(), 1);
        assert_eq!(r.drain(), 0);
        assert_eq!(r.logs[Kind::AllAuthenticated as usize].total(), 500);
        assert_eq!(
            Kind::describe(Kind::AllAuthenticated, 517).0,
            "refused 517 connections"
        );
    }
}
