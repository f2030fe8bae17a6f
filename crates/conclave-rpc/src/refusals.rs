//! Refusals, counted and logged at most once per kind per interval.
//!
//! A flood of refused connections must not become a flood of log lines (the
//! log would fill the disk and hide everything else), yet an operator must
//! still see that refusals happen, why, and how many. So each refusal only
//! bumps a counter; the server loop calls [`Refusals::flush`] every
//! [`LOG_INTERVAL`] and writes one line per kind that happened, with its
//! count and the last peer it concerned.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;
use tracing::warn;

/// How often counted refusals are written out.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What was refused, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A new connection while every slot held an authenticated client.
    AllAuthenticated,
    /// A new connection from an address over `max_conns_per_addr`.
    PerAddr,
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

const KINDS: usize = 8;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    /// The line's wording: what happened `n` times, and why.
    fn describe(self, n: u64) -> (String, &'static str) {
        match self {
            Kind::AllAuthenticated => (
                format!("refused {n} connections"),
                "every slot holds an authenticated client (--max-connections)",
            ),
            Kind::PerAddr => (
                format!("refused {n} connections"),
                "too many unauthenticated connections from one address (--max-conns-per-addr)",
            ),
            Kind::Shed => (
                format!("shed {n} unauthenticated connections"),
                "slots full, oldest unauthenticated connection dropped for a new one (--max-connections)",
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

    const ALL: [Kind; KINDS] = [
        Kind::AllAuthenticated,
        Kind::PerAddr,
        Kind::Shed,
        Kind::HandshakeFailed,
        Kind::HandshakeTimeout,
        Kind::Role,
        Kind::IdentityConns,
        Kind::IdentityInflight,
    ];
}

#[derive(Default, Clone)]
struct Count {
    n: u64,
    /// The last peer (and detail) it concerned: an address and, for failed
    /// handshakes or role refusals, the reason. Never a secret.
    last: String,
}

/// Refusal counters of one server since the last flush.
pub(crate) struct Refusals {
    counts: Mutex<[Count; KINDS]>,
}

impl Refusals {
    pub(crate) fn new() -> Refusals {
        Refusals {
            counts: Mutex::new(Default::default()),
        }
    }

    /// Counts one refusal of `kind` concerning `peer` (`detail` may be empty).
    pub(crate) fn note(&self, kind: Kind, peer: &str, detail: &dyn std::fmt::Display) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let e = &mut c[kind.index()];
        e.n += 1;
        e.last.clear();
        let _ = write!(e.last, "{peer}");
        let before = e.last.len();
        let _ = write!(e.last, "{detail}");
        if e.last.len() > before {
            e.last.insert_str(before, " (");
            e.last.push(')');
        }
    }

    /// Writes one line per kind counted since the last flush, `interval`
    /// being the time that covers; returns how many lines were written.
    pub(crate) fn flush(&self, endpoint: &dyn std::fmt::Display, interval: Duration) -> usize {
        let taken: [Count; KINDS] = {
            let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *c)
        };
        let mut lines = 0;
        for (kind, c) in Kind::ALL.into_iter().zip(taken) {
            if c.n == 0 {
                continue;
            }
            let (what, why) = kind.describe(c.n);
            warn!(
                endpoint = %endpoint,
                last = %c.last,
                "{what} in the last {}: {why}",
                conclave_units::Dur(interval)
            );
            lines += 1;
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_one_line_however_many_refusals() {
        let r = Refusals::new();
        for i in 0..500 {
            r.note(Kind::PerAddr, &format!("127.0.0.1:{i}"), &"");
        }
        r.note(Kind::HandshakeFailed, "127.0.0.1:1", &"no certificate");
        assert_eq!(r.flush(&"tcp://x", LOG_INTERVAL), 2);
        assert_eq!(r.flush(&"tcp://x", LOG_INTERVAL), 0);
        assert_eq!(Kind::describe(Kind::PerAddr, 517).0, "refused 517 connections");
    }
}
