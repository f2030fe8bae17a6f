//! TLS session tickets whose keys every worker shares, so a client resumes
//! on whichever worker its next connection lands (NGINX's workers share the
//! master's ticket key the same way). With a memory server the keys live in
//! a shared memory file; with the `local` kind each worker derives them from
//! a seed the master hands it on its stdin pipe. Keys roll every
//! [`LIFETIME`] seconds; the previous key is still accepted, so a roll never
//! breaks a ticket issued just before it.

use crate::shared::{SharedError, SharedSegment, SharedState};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rustls::server::ProducesTickets;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds a ticket key is used to issue tickets (and the lifetime hinted to clients).
pub const LIFETIME: u32 = 6 * 3600;
/// How often a worker re-reads the shared keys.
const REFRESH: Duration = Duration::from_secs(30);
/// Length of the master's seed for derived keys.
pub const SEED_LEN: usize = 32;
/// Name of the memory file holding the keys.
pub const SEGMENT: &str = "TLS_TICKET_KEYS";
/// Segment layout: u64 LE epoch start (0 = none yet), current key, previous key.
const SEGMENT_SIZE: usize = 8 + 32 + 32;
const NONCE: usize = 12;
const TAG: usize = 16;
const AAD: &[u8] = b"conclave tls ticket v1";

struct Keys {
    current: [u8; 32],
    previous: [u8; 32],
    fetched: Instant,
}

/// Where the keys come from.
enum Source {
    /// A shared memory file (memory servers).
    Segment(Arc<dyn SharedSegment>),
    /// HMAC-SHA256(seed, epoch number): every holder of the seed agrees.
    Derived(zeroize::Zeroizing<[u8; SEED_LEN]>),
}

/// A `ProducesTickets` whose keys all workers share.
pub struct SharedTicketer {
    source: Source,
    keys: Mutex<Option<Keys>>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTicketer").finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SharedTicketer {
    /// Keys derived from the master's `seed` when given, else kept in the
    /// shared memory file `TLS_TICKET_KEYS` of `shared`.
    pub fn new(
        shared: &dyn SharedState,
        seed: Option<[u8; SEED_LEN]>,
    ) -> Result<SharedTicketer, SharedError> {
        let source = match seed {
            Some(s) => Source::Derived(zeroize::Zeroizing::new(s)),
            None => Source::Segment(shared.open(SEGMENT, SEGMENT_SIZE)?),
        };
        let t = SharedTicketer {
            source,
            keys: Mutex::new(None),
        };
        t.refresh()?;
        Ok(t)
    }

    fn derive(seed: &[u8; SEED_LEN], epoch: u64) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(seed).expect("any key length");
        m.update(b"conclave tls ticket key");
        m.update(&epoch.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    /// Reads the keys, rolling them (under the lock) when the epoch is over.
    fn refresh(&self) -> Result<(), SharedError> {
        let seg = match &self.source {
            Source::Derived(seed) => {
                let epoch = now_secs() / LIFETIME as u64;
                *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some(Keys {
                    current: Self::derive(seed, epoch),
                    previous: Self::derive(seed, epoch.saturating_sub(1)),
                    fetched: Instant::now(),
                });
                return Ok(());
            }
            Source::Segment(seg) => seg,
        };
        let mut out = None;
        let mut failed = None;
        seg.with_locked(&mut |seg| {
            failed = None;
            let start = u64::from_le_bytes(seg[..8].try_into().expect("8 bytes"));
            let now = now_secs();
            let roll = start == 0 || now.saturating_sub(start) >= LIFETIME as u64;
            if roll {
                let mut fresh = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut fresh) {
                    failed = Some(e.to_string());
                    return false;
                }
                let cur: [u8; 32] = seg[8..40].try_into().expect("32 bytes");
                seg[40..72].copy_from_slice(&if start == 0 { fresh } else { cur });
                seg[8..40].copy_from_slice(&fresh);
                seg[..8].copy_from_slice(&now.to_le_bytes());
            }
            out = Some(Keys {
                current: seg[8..40].try_into().expect("32 bytes"),
                previous: seg[40..72].try_into().expect("32 bytes"),
                fetched: Instant::now(),
            });
            roll
        })?;
        if let Some(e) = failed {
            return Err(SharedError::Backend {
                name: SEGMENT.into(),
                message: format!("no randomness for a ticket key: {e}"),
            });
        }
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = out;
        Ok(())
    }

    fn with_keys<T>(&self, f: impl FnOnce(&Keys) -> T) -> Option<T> {
        let stale = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|k| k.fetched.elapsed() >= REFRESH);
        if stale {
            if let Err(e) = self.refresh() {
                // Keep using the keys we have; resumption degrades, handshakes go on.
                tracing::warn!("refreshing the shared ticket keys: {e}");
            }
        }
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }
}

fn seal(key: &[u8; 32], plain: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).ok()?;
    let gcm = Aes256Gcm::new_from_slice(key).ok()?;
    let mut buf = plain.to_vec();
    let tag = gcm
        .encrypt_inout_detached(&Nonce::from(nonce), AAD, (&mut buf[..]).into())
        .ok()?;
    let mut out = Vec::with_capacity(NONCE + buf.len() + TAG);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    Some(out)
}

fn open(key: &[u8; 32], ticket: &[u8]) -> Option<Vec<u8>> {
    if ticket.len() < NONCE + TAG {
        return None;
    }
    let (nonce, rest) = ticket.split_at(NONCE);
    let (body, tag) = rest.split_at(rest.len() - TAG);
    let nonce: [u8; NONCE] = nonce.try_into().ok()?;
    let tag: [u8; TAG] = tag.try_into().ok()?;
    let gcm = Aes256Gcm::new_from_slice(key).ok()?;
    let mut buf = body.to_vec();
    gcm.decrypt_inout_detached(&Nonce::from(nonce), AAD, (&mut buf[..]).into(), &Tag::from(tag))
        .ok()?;
    Some(buf)
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.with_keys(|k| seal(&k.current, plain)).flatten()
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.with_keys(|k| open(&k.current, cipher).or_else(|| open(&k.previous, cipher)))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::LocalSharedState;

    #[test]
    fn workers_sharing_a_segment_accept_each_others_tickets() {
        let shared = LocalSharedState::new();
        let a = SharedTicketer::new(&shared, None).unwrap();
        let b = SharedTicketer::new(&shared, None).unwrap();
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        let mut bad = t.clone();
        bad[20] ^= 1;
        assert!(b.decrypt(&bad).is_none(), "a tampered ticket is refused");
        assert!(b.decrypt(&t[..10]).is_none());
        let other = SharedTicketer::new(&LocalSharedState::new(), None).unwrap();
        assert!(
            other.decrypt(&t).is_none(),
            "another conclave's key does not open it"
        );
    }

    #[test]
    fn previous_key_still_opens_after_a_roll() {
        let shared = LocalSharedState::new();
        let a = SharedTicketer::new(&shared, None).unwrap();
        let t = a.encrypt(b"x").unwrap();
        // age the epoch so the next refresh rolls the keys
        let seg = shared.open(SEGMENT, SEGMENT_SIZE).unwrap();
        seg.with_locked(&mut |s| {
            s[..8].copy_from_slice(&1u64.to_le_bytes());
            true
        })
        .unwrap();
        a.refresh().unwrap();
        let t2 = a.encrypt(b"y").unwrap();
        assert_eq!(
            a.decrypt(&t).unwrap(),
            b"x",
            "old ticket opens with the previous key"
        );
        assert_eq!(a.decrypt(&t2).unwrap(), b"y");
    }

    #[test]
    fn workers_with_the_masters_seed_agree_without_talking() {
        let seed = [9u8; SEED_LEN];
        let a = SharedTicketer::new(&LocalSharedState::new(), Some(seed)).unwrap();
        let b = SharedTicketer::new(&LocalSharedState::new(), Some(seed)).unwrap();
        let t = a.encrypt(b"resume me").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"resume me");
        let c = SharedTicketer::new(&LocalSharedState::new(), Some([8u8; SEED_LEN])).unwrap();
        assert!(c.decrypt(&t).is_none());
    }
}
