//! Per-identity signing rate limits: a token bucket per identity (role +
//! tenant), shared by all of that identity's connections, so a stolen edge
//! certificate cannot turn the key server into a bulk signer or starve the
//! other tenants' handshakes. Over the limit a `SIGN` gets `EAGAIN`, and the
//! server logs it at most once a second per identity, naming the identity
//! and how many it refused since the last line.

use conclave_rpc::Identity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// Signatures per second per identity unless told otherwise: far above what
/// one edge's handshakes need on the machines we run on (a core signs about
/// 2,700 RSA-2048 signatures a second), low enough to bound an abuser.
pub const DEFAULT_MAX_SIGNS_PER_SEC: u32 = 20_000;

/// Least time between two "rate limited" log lines of one identity.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// One identity's bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    refused_unlogged: u64,
    last_log: Option<Instant>,
}

/// The limit of one identity; every connection of that identity holds the
/// same one.
#[derive(Debug, Clone)]
pub struct IdentityLimit {
    id: Arc<Identity>,
    rate: u32,
    bucket: Option<Arc<Mutex<Bucket>>>,
}

impl IdentityLimit {
    /// Takes one signature's token; `false` when the identity is over its
    /// rate (logged here, rate-limited).
    pub fn try_sign(&self) -> bool {
        self.try_sign_at(Instant::now())
    }

    fn try_sign_at(&self, now: Instant) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(self.rate);
        // A burst of up to one second's worth; never more.
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        b.refused_unlogged += 1;
        if b.last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY)
        {
            warn!(
                identity = %self.id,
                limit = self.rate,
                refused = b.refused_unlogged,
                "signing rate limit reached for {}: refused {} SIGN with EAGAIN (--max-signs-per-sec {})",
                self.id,
                b.refused_unlogged,
                self.rate
            );
            b.refused_unlogged = 0;
            b.last_log = Some(now);
        }
        false
    }
}

/// Every identity's bucket.
#[derive(Debug)]
pub struct RateLimits {
    rate: u32,
    buckets: Mutex<HashMap<Identity, Arc<Mutex<Bucket>>>>,
}

impl RateLimits {
    /// `rate` signatures per second per identity; 0 = no limit.
    pub fn new(rate: u32) -> RateLimits {
        RateLimits {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit of `id` (created full on first use). Identities come from
    /// CA-signed certificates the grants admit, so the map stays small.
    pub fn for_identity(&self, id: &Identity) -> IdentityLimit {
        let bucket = (self.rate != 0).then(|| {
            let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Bucket {
                        tokens: f64::from(self.rate),
                        last: Instant::now(),
                        refused_unlogged: 0,
                        last_log: None,
                    }))
                })
                .clone()
        });
        IdentityLimit {
            id: Arc::new(id.clone()),
            rate: self.rate,
            bucket,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    #[test]
    fn allows_a_seconds_burst_then_refills_at_the_rate() {
        let limits = RateLimits::new(4);
        let a = limits.for_identity(&id("edge@a"));
        let t0 = Instant::now();
        assert_eq!(
            (0..6).map(|_| a.try_sign_at(t0)).collect::<Vec<_>>(),
            [true, true, true, true, false, false]
        );
        // A quarter second later: one token back.
        let t1 = t0 + Duration::from_millis(250);
        assert!(a.try_sign_at(t1));
        assert!(!a.try_sign_at(t1));
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..5).filter(|_| a.try_sign_at(t2)).count(), 4);
    }

    #[test]
    fn identities_have_separate_buckets_shared_by_their_connections() {
        let limits = RateLimits::new(1);
        let t = Instant::now() + Duration::from_millis(10);
        let a1 = limits.for_identity(&id("edge@a"));
        let a2 = limits.for_identity(&id("edge@a"));
        let b = limits.for_identity(&id("edge@b"));
        assert!(a1.try_sign_at(t));
        assert!(
            !a2.try_sign_at(t),
            "a second connection of edge@a shares its bucket"
        );
        assert!(b.try_sign_at(t), "edge@b is not slowed by edge@a");
    }

    #[test]
    fn zero_means_no_limit() {
        let a = RateLimits::new(0).for_identity(&id("edge"));
        assert!((0..100_000).all(|_| a.try_sign()));
    }
}
