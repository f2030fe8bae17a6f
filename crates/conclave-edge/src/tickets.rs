//! TLS session tickets whose keys every worker shares, so a client resumes
//! on whichever worker its next connection lands (NGINX's workers share the
//! master's ticket key the same way). With a memory store the keys live in
//! the shared memory file `TLS_TICKET_KEYS`, **sealed by the edge**: the
//! segment holds AES-256-GCM ciphertext under a key only edges hold (from
//! `[shared] ticket_secret_file`, else from the master's seed), so neither
//! the memory server, its operator, nor another identity granted the name
//! sees a ticket key. With the `local` kind each worker derives the keys
//! from the seed the master hands it on its stdin pipe. Keys roll every
//! [`LIFETIME`] seconds; the previous key is still accepted, so a roll never
//! breaks a ticket issued just before it.

pub mod fleet;

use crate::shared::{SharedError, SharedSegment, SharedState};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rustls::server::ProducesTickets;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Seconds a ticket key is used to issue tickets (and the lifetime hinted to clients).
pub const LIFETIME: u32 = 6 * 3600;
/// How often a worker re-reads the shared keys.
const REFRESH: Duration = Duration::from_secs(30);
/// Length of the master's seed for derived keys.
pub const SEED_LEN: usize = 32;
/// Name of the memory file holding the keys.
pub const SEGMENT: &str = "TLS_TICKET_KEYS";
/// What the sealed segment holds: u64 LE epoch start, current key, previous key.
const PLAIN_LEN: usize = 8 + 32 + 32;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Segment layout: `nonce[12] ‖ AES-256-GCM(plain[72]) ‖ tag[16]`; all
/// zeros = no keys yet.
pub const SEGMENT_SIZE: usize = NONCE + PLAIN_LEN + TAG;
const AAD: &[u8] = b"conclave tls ticket v1";
/// Binds the sealed segment to its name and layout.
const SEGMENT_AAD: &[u8] = b"conclave TLS_TICKET_KEYS sealed v1";
/// Shortest `ticket_secret_file`: 32 bytes, a key's worth of entropy.
pub const MIN_SECRET_LEN: usize = 32;

/// The ticket keys at one moment.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKeys {
    /// When the current key started (Unix seconds).
    pub epoch_start: u64,
    /// Seals new tickets.
    pub current: [u8; 32],
    /// Still opens tickets of the last epoch.
    pub previous: [u8; 32],
}

impl Drop for TicketKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.current.zeroize();
        self.previous.zeroize();
    }
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        f.debug_struct("TicketKeys")
            .field("epoch_start", &self.epoch_start)
            .finish_non_exhaustive()
    }
}

/// Why the ticket secret did not load.
#[derive(Debug, thiserror::Error)]
pub enum TicketSecretError {
    /// Unreadable, or readable by group or others (the message names the
    /// file and the `chmod` that fixes it).
    #[error(transparent)]
    File(#[from] conclave_secret::SecretFileError),
    /// Too short to be a key.
    #[error("ticket secret {}: {len} bytes; at least {MIN_SECRET_LEN} random bytes are needed (e.g. head -c 32 /dev/urandom)", .path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// No randomness for a per-process key.
    #[error("no randomness for the ticket sealing key: {0}")]
    Random(String),
}

/// The key that seals `TLS_TICKET_KEYS` before it leaves the edge:
/// HKDF-SHA256 of a secret only edges hold.
pub struct TicketSeal(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for TicketSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSeal(..)")
    }
}

impl TicketSeal {
    /// The sealing key derived from `secret` (every edge with the same
    /// secret derives the same key).
    pub fn from_secret(secret: &[u8]) -> TicketSeal {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"conclave edge ticket seal"), secret);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(SEGMENT_AAD, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        TicketSeal(key)
    }

    /// The sealing key of the secret file `path` (`[shared]
    /// ticket_secret_file`), which must be private to its owner (no group
    /// or other permission bits) and hold at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_file(path: &Path) -> Result<TicketSeal, TicketSecretError> {
        let secret = conclave_secret::read_private(path)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(TicketSecretError::TooShort {
                path: path.to_path_buf(),
                len: secret.len(),
            });
        }
        Ok(Self::from_secret(&secret))
    }

    /// The edge's sealing key: from `secret_file` when set (edges that
    /// share a memory server must share it), else from the master's `seed`
    /// (the workers of one edge agree), else random (one process).
    pub fn for_edge(
        secret_file: Option<&Path>,
        seed: Option<&[u8; SEED_LEN]>,
    ) -> Result<TicketSeal, TicketSecretError> {
        match (secret_file, seed) {
            (Some(p), _) => Self::from_file(p),
            (None, Some(seed)) => Ok(Self::from_secret(seed)),
            (None, None) => {
                let mut r = Zeroizing::new([0u8; SEED_LEN]);
                getrandom::fill(r.as_mut()).map_err(|e| TicketSecretError::Random(e.to_string()))?;
                Ok(Self::from_secret(r.as_ref()))
            }
        }
    }

    /// The segment that holds `keys`, sealed under a fresh random nonce.
    pub fn seal(&self, keys: &TicketKeys) -> Option<[u8; SEGMENT_SIZE]> {
        let mut plain = Zeroizing::new([0u8; PLAIN_LEN]);
        plain[..8].copy_from_slice(&keys.epoch_start.to_le_bytes());
        plain[8..40].copy_from_slice(&keys.current);
        plain[40..].copy_from_slice(&keys.previous);
        let sealed = seal_with(&self.0, SEGMENT_AAD, plain.as_ref())?;
        sealed.try_into().ok()
    }

    /// The keys in a sealed segment; `None` if it is not one this key
    /// sealed (another secret, tampered, or empty).
    pub fn open(&self, segment: &[u8]) -> Option<TicketKeys> {
        let plain = Zeroizing::new(open_with(&self.0, SEGMENT_AAD, segment)?);
        if plain.len() != PLAIN_LEN {
            return None;
        }
        Some(TicketKeys {
            epoch_start: u64::from_le_bytes(plain[..8].try_into().ok()?),
            current: plain[8..40].try_into().ok()?,
            previous: plain[40..72].try_into().ok()?,
        })
    }
}

struct Keys {
    current: [u8; 32],
    previous: [u8; 32],
    fetched: Instant,
}

impl Drop for Keys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.current.zeroize();
        self.previous.zeroize();
    }
}

/// Where the keys come from.
enum Source {
    /// A shared memory file (memory stores), sealed with this key.
    Segment(Arc<dyn SharedSegment>, TicketSeal),
    /// HMAC-SHA256(seed, epoch number): every holder of the seed agrees.
    Derived(Zeroizing<[u8; SEED_LEN]>),
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
    /// Keys derived from the master's `seed` (the `local` kind): the
    /// workers of one master agree without talking.
    pub fn derived(seed: [u8; SEED_LEN]) -> SharedTicketer {
        let t = SharedTicketer {
            source: Source::Derived(Zeroizing::new(seed)),
            keys: Mutex::new(None),
        };
        t.refresh_derived();
        t
    }

    /// Keys kept in the memory file `TLS_TICKET_KEYS` of `shared`, sealed
    /// with `seal`.
    pub fn in_segment(shared: &dyn SharedState, seal: TicketSeal) -> Result<SharedTicketer, SharedError> {
        let t = SharedTicketer {
            source: Source::Segment(shared.open(SEGMENT, SEGMENT_SIZE)?, seal),
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

    fn refresh_derived(&self) {
        if let Source::Derived(seed) = &self.source {
            let epoch = now_secs() / LIFETIME as u64;
            *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some(Keys {
                current: Self::derive(seed, epoch),
                previous: Self::derive(seed, epoch.saturating_sub(1)),
                fetched: Instant::now(),
            });
        }
    }

    /// Reads the keys, rolling them (under the lock) when the epoch is
    /// over, or when the segment is empty or not sealed with our key
    /// (another edge's secret: taken over, with a warning).
    fn refresh(&self) -> Result<(), SharedError> {
        let (seg, seal) = match &self.source {
            Source::Derived(_) => {
                self.refresh_derived();
                return Ok(());
            }
            Source::Segment(seg, seal) => (seg, seal),
        };
        let mut out = None;
        let mut failed = None;
        let mut foreign = false;
        seg.with_locked(&mut |seg| {
            failed = None;
            let now = now_secs();
            let existing = if seg.iter().all(|b| *b == 0) {
                None
            } else {
                let k = seal.open(seg);
                foreign = k.is_none();
                k
            };
            let roll = existing
                .as_ref()
                .is_none_or(|k| now.saturating_sub(k.epoch_start) >= LIFETIME as u64);
            let keys = if roll {
                let mut fresh = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut fresh) {
                    failed = Some(e.to_string());
                    return false;
                }
                let k = TicketKeys {
                    epoch_start: now,
                    current: fresh,
                    previous: existing.as_ref().map_or(fresh, |k| k.current),
                };
                let Some(sealed) = seal.seal(&k) else {
                    failed = Some("sealing the ticket keys failed".into());
                    return false;
                };
                seg.copy_from_slice(&sealed);
                k
            } else {
                existing.expect("not rolled, so present")
            };
            out = Some(Keys {
                current: keys.current,
                previous: keys.previous,
                fetched: Instant::now(),
            });
            roll
        })?;
        if let Some(e) = failed {
            return Err(SharedError::Backend {
                name: SEGMENT.into(),
                message: format!("no ticket key: {e}"),
            });
        }
        if foreign {
            tracing::warn!(
                "{SEGMENT} was not sealed with this edge's ticket secret: replaced with fresh keys \
                 (edges sharing a memory server need the same [shared] ticket_secret_file)"
            );
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

/// `nonce[12] ‖ AES-256-GCM(plain) ‖ tag[16]` under a fresh random nonce.
fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).ok()?;
    let gcm = Aes256Gcm::new_from_slice(key).ok()?;
    let mut buf = plain.to_vec();
    let tag = gcm
        .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut buf[..]).into())
        .ok()?;
    let mut out = Vec::with_capacity(NONCE + buf.len() + TAG);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    Some(out)
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE + TAG {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE);
    let (body, tag) = rest.split_at(rest.len() - TAG);
    let nonce: [u8; NONCE] = nonce.try_into().ok()?;
    let tag: [u8; TAG] = tag.try_into().ok()?;
    let gcm = Aes256Gcm::new_from_slice(key).ok()?;
    let mut buf = body.to_vec();
    gcm.decrypt_inout_detached(&Nonce::from(nonce), aad, (&mut buf[..]).into(), &Tag::from(tag))
        .ok()?;
    Some(buf)
}

fn seal(key: &[u8; 32], plain: &[u8]) -> Option<Vec<u8>> {
    seal_with(key, AAD, plain)
}

/// Opens a session ticket this edge issued with ticket key `key`; `None`
/// if that key did not seal it. (Public for the tests that show what a
/// stolen segment does and does not yield.)
pub fn open_ticket(key: &[u8; 32], ticket: &[u8]) -> Option<Vec<u8>> {
    open_with(key, AAD, ticket)
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
        self.with_keys(|k| open_ticket(&k.current, cipher).or_else(|| open_ticket(&k.previous, cipher)))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::LocalSharedState;

    fn sealed(shared: &LocalSharedState, secret: &[u8]) -> SharedTicketer {
        SharedTicketer::in_segment(shared, TicketSeal::from_secret(secret)).unwrap()
    }

    #[test]
    fn workers_sharing_a_segment_accept_each_others_tickets() {
        let shared = LocalSharedState::new();
        let a = sealed(&shared, b"edge secret");
        let b = sealed(&shared, b"edge secret");
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        let mut bad = t.clone();
        bad[20] ^= 1;
        assert!(b.decrypt(&bad).is_none(), "a tampered ticket is refused");
        assert!(b.decrypt(&t[..10]).is_none());
        let other = sealed(&LocalSharedState::new(), b"edge secret");
        assert!(
            other.decrypt(&t).is_none(),
            "another conclave's key does not open it"
        );
    }

    #[test]
    fn the_segment_holds_only_ciphertext_of_the_keys() {
        let shared = LocalSharedState::new();
        let a = sealed(&shared, b"edge secret");
        let ticket = a.encrypt(b"master secret").unwrap();
        let seg = shared.open(SEGMENT, SEGMENT_SIZE).unwrap();
        let mut stored = Vec::new();
        seg.with_locked(&mut |s| {
            stored = s.to_vec();
            false
        })
        .unwrap();
        assert_eq!(stored.len(), SEGMENT_SIZE);
        // No 32-byte window of the stored bytes is the key that opens the ticket.
        for w in stored.windows(32) {
            assert!(open_ticket(w.try_into().unwrap(), &ticket).is_none());
        }
        // The edge's secret opens the segment, and its key opens the ticket.
        let keys = TicketSeal::from_secret(b"edge secret").open(&stored).unwrap();
        assert_eq!(open_ticket(&keys.current, &ticket).unwrap(), b"master secret");
        assert!(TicketSeal::from_secret(b"other secret").open(&stored).is_none());
    }

    #[test]
    fn a_segment_sealed_under_another_secret_is_taken_over() {
        let shared = LocalSharedState::new();
        let a = sealed(&shared, b"first secret");
        let t = a.encrypt(b"x").unwrap();
        let b = sealed(&shared, b"second secret");
        assert!(b.decrypt(&t).is_none(), "b rolled fresh keys");
        let t2 = b.encrypt(b"y").unwrap();
        assert_eq!(sealed(&shared, b"second secret").decrypt(&t2).unwrap(), b"y");
    }

    #[test]
    fn previous_key_still_opens_after_a_roll() {
        let shared = LocalSharedState::new();
        let a = sealed(&shared, b"s");
        let t = a.encrypt(b"x").unwrap();
        // age the epoch so the next refresh rolls the keys
        let seg = shared.open(SEGMENT, SEGMENT_SIZE).unwrap();
        let seal = TicketSeal::from_secret(b"s");
        seg.with_locked(&mut |s| {
            let mut k = seal.open(s).unwrap();
            k.epoch_start = 1;
            s.copy_from_slice(&seal.seal(&k).unwrap());
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
        let a = SharedTicketer::derived(seed);
        let b = SharedTicketer::derived(seed);
        let t = a.encrypt(b"resume me").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"resume me");
        let c = SharedTicketer::derived([8u8; SEED_LEN]);
        assert!(c.decrypt(&t).is_none());
    }

    #[test]
    fn the_ticket_secret_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ticket.secret");
        std::fs::write(&p, [7u8; 32]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TicketSeal::from_file(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "refusing {0}: mode 0644 lets group or others read it (run: chmod 600 {0})",
                p.display()
            )
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let from_file = TicketSeal::from_file(&p).unwrap();
        assert_eq!(from_file.0, TicketSeal::from_secret(&[7u8; 32]).0);
        std::fs::write(&p, [7u8; 31]).unwrap();
        assert!(matches!(
            TicketSeal::from_file(&p),
            Err(TicketSecretError::TooShort { len: 31, .. })
        ));
    }
}
