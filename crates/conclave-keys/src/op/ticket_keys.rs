//! `TICKET_KEYS` (10): the fleet's TLS session-ticket keys, one epoch at a
//! time, so a client resumes on any edge that asks the same key servers.
//!
//! The key server holds one master secret (`--ticket-keys FILE`) and hands
//! out only *epoch keys*: HKDF-SHA256 of the secret, the tenant, the epoch
//! number and the rotation period. Two key servers given the same file hand
//! out the same keys (replication without state), and an edge that leaks its
//! keys leaks at most the epochs it held, never the secret that makes the
//! next ones.
//!
//! Request: `str tenant` (empty = the caller's own tenant). Reply: `u64
//! epoch`, `u64 period_ms`, then three 32-byte keys: the previous, the
//! current and the next epoch's. Errors: `EPROTO` malformed, `EINVAL` not a
//! tenant name, `EACCES` the caller is not granted ticket keys
//! (`--ticket-grant`, default `edge@*`) or asked for another tenant's,
//! `ENOTSUP` this key server has no `--ticket-keys`.

use conclave_rpc::identity::IdentityPattern;
use conclave_rpc::{BodyReader, BodyWriter, Identity, Role, Status, Tenant};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Length of one epoch key (AES-256).
pub const KEY_LEN: usize = 32;
/// Shortest master secret: a key's worth of entropy.
pub const MIN_SECRET_LEN: usize = 32;
/// Rotation period unless `--ticket-rotation` says otherwise.
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(3600);
/// Shortest rotation period (tests use a few seconds; less would make an
/// edge's fetch race the epoch it fetched).
pub const MIN_ROTATION: Duration = Duration::from_secs(1);
/// Longest tenant name a request may carry.
const MAX_TENANT: usize = 64;
/// HKDF salt: binds the keys to this use and layout.
const SALT: &[u8] = b"conclave fleet ticket keys v1";

/// The keys of three consecutive epochs, as an edge holds them. Never
/// printed; zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochKeys {
    /// The current epoch number (`unix_ms / period_ms` on the key server).
    pub epoch: u64,
    /// The rotation period, milliseconds.
    pub period_ms: u64,
    /// Key of `epoch - 1`: still opens tickets issued just before the roll.
    pub previous: [u8; KEY_LEN],
    /// Key of `epoch`: seals new tickets.
    pub current: [u8; KEY_LEN],
    /// Key of `epoch + 1`: an edge whose clock (or fetch) is a little behind
    /// another's still opens that edge's first tickets of the next epoch.
    pub next: [u8; KEY_LEN],
}

impl Drop for EpochKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.previous.zeroize();
        self.current.zeroize();
        self.next.zeroize();
    }
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKeys")
            .field("epoch", &self.epoch)
            .field("period_ms", &self.period_ms)
            .finish_non_exhaustive()
    }
}

impl EpochKeys {
    /// The key of epoch `e` if these keys cover it (previous, current or next).
    pub fn key_of(&self, e: u64) -> Option<&[u8; KEY_LEN]> {
        if e == self.epoch {
            Some(&self.current)
        } else if e.checked_add(1) == Some(self.epoch) {
            Some(&self.previous)
        } else if self.epoch.checked_add(1) == Some(e) {
            Some(&self.next)
        } else {
            None
        }
    }
}

/// Why the ticket-key secret did not load.
#[derive(Debug, thiserror::Error)]
pub enum TicketSecretError {
    /// Unreadable, or readable by group or others (the message names the
    /// file and the `chmod` that fixes it).
    #[error(transparent)]
    File(#[from] conclave_secret::SecretFileError),
    /// Too short to be a key.
    #[error("--ticket-keys {}: {len} bytes; at least {MIN_SECRET_LEN} random bytes are needed (e.g. head -c 32 /dev/urandom)", .path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// A rotation period under [`MIN_ROTATION`] or not whole milliseconds.
    #[error("--ticket-rotation {0:?}: must be at least 1s")]
    Rotation(Duration),
}

/// Who may fetch ticket keys: identities matching one of these patterns,
/// each for its *own* tenant only (no grant reaches another tenant's keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketGrants(Vec<IdentityPattern>);

impl TicketGrants {
    /// The given patterns, or [`TicketGrants::default`] (`edge@*`) when empty.
    pub fn new(patterns: Vec<IdentityPattern>) -> TicketGrants {
        if patterns.is_empty() {
            return TicketGrants::default();
        }
        TicketGrants(patterns)
    }

    /// True if `id` may fetch its own tenant's ticket keys.
    pub fn admits(&self, id: &Identity) -> bool {
        self.0.iter().any(|p| p.matches(id))
    }
}

/// By default every tenant's edge fetches its own tenant's keys.
impl Default for TicketGrants {
    fn default() -> Self {
        TicketGrants(vec![IdentityPattern::any_tenant(Role::Edge)])
    }
}

/// The master secret, the rotation period and the grants: everything a key
/// server needs to answer `TICKET_KEYS`.
pub struct TicketKeySource {
    secret: Zeroizing<Vec<u8>>,
    period_ms: u64,
    grants: TicketGrants,
}

impl std::fmt::Debug for TicketKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeySource")
            .field("period_ms", &self.period_ms)
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

impl TicketKeySource {
    /// A source over `secret` (at least [`MIN_SECRET_LEN`] bytes is the
    /// caller's to check; [`Self::from_file`] does).
    pub fn new(
        secret: &[u8],
        rotation: Duration,
        grants: TicketGrants,
    ) -> Result<TicketKeySource, TicketSecretError> {
        let period_ms = u64::try_from(rotation.as_millis()).unwrap_or(u64::MAX);
        if rotation < MIN_ROTATION {
            return Err(TicketSecretError::Rotation(rotation));
        }
        Ok(TicketKeySource {
            secret: Zeroizing::new(secret.to_vec()),
            period_ms,
            grants,
        })
    }

    /// The secret file `path` (mode 0600 or stricter, at least
    /// [`MIN_SECRET_LEN`] bytes).
    pub fn from_file(
        path: &Path,
        rotation: Duration,
        grants: TicketGrants,
    ) -> Result<TicketKeySource, TicketSecretError> {
        let secret = conclave_secret::read_private(path)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(TicketSecretError::TooShort {
                path: path.to_path_buf(),
                len: secret.len(),
            });
        }
        Self::new(&secret, rotation, grants)
    }

    /// The rotation period.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// Who may fetch keys.
    pub fn grants(&self) -> &TicketGrants {
        &self.grants
    }

    /// The epoch at `now`.
    pub fn epoch_at(&self, now: SystemTime) -> u64 {
        let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        u64::try_from(ms / u128::from(self.period_ms)).unwrap_or(u64::MAX)
    }

    /// The key of `tenant` for `epoch`: HKDF-SHA256(salt, secret) expanded
    /// over the tenant, the epoch and the period, so keys differ per tenant
    /// and per epoch and a changed period never repeats a key.
    pub fn epoch_key(&self, tenant: &Tenant, epoch: u64) -> [u8; KEY_LEN] {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(SALT), &self.secret);
        let mut info = Vec::with_capacity(64 + MAX_TENANT);
        info.extend_from_slice(tenant.as_str().as_bytes());
        info.push(0);
        info.extend_from_slice(&epoch.to_be_bytes());
        info.extend_from_slice(&self.period_ms.to_be_bytes());
        let mut key = [0u8; KEY_LEN];
        hk.expand(&info, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        key
    }

    /// The previous, current and next keys of `tenant` at `now`.
    pub fn keys_at(&self, tenant: &Tenant, now: SystemTime) -> EpochKeys {
        let epoch = self.epoch_at(now);
        EpochKeys {
            epoch,
            period_ms: self.period_ms,
            previous: self.epoch_key(tenant, epoch.saturating_sub(1)),
            current: self.epoch_key(tenant, epoch),
            next: self.epoch_key(tenant, epoch.saturating_add(1)),
        }
    }
}

/// Client side: the request body (`""` = the caller's own tenant).
pub fn encode_request(tenant: &str) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(tenant);
    w.finish()
}

/// Server side: the keys of the tenant asked for, if `caller` may have them.
pub fn handle(source: Option<&TicketKeySource>, caller: &Identity, body: &[u8]) -> Result<Vec<u8>, Status> {
    let mut r = BodyReader::new(body);
    let asked = r.name(MAX_TENANT)?;
    r.finish()?;
    let tenant = if asked.is_empty() {
        caller.tenant.clone()
    } else {
        asked.parse::<Tenant>().map_err(|_| Status::EINVAL)?
    };
    let source = source.ok_or(Status::ENOTSUP)?;
    if tenant != caller.tenant || !source.grants.admits(caller) {
        return Err(Status::EACCES);
    }
    let k = source.keys_at(&tenant, SystemTime::now());
    let mut w = BodyWriter::with_capacity(16 + 3 * KEY_LEN);
    w.u64(k.epoch)
        .u64(k.period_ms)
        .raw(&k.previous)
        .raw(&k.current)
        .raw(&k.next);
    Ok(w.finish())
}

/// Client side: decodes the reply.
pub fn decode_reply(body: &[u8]) -> Result<EpochKeys, Status> {
    let mut r = BodyReader::new(body);
    let epoch = r.u64()?;
    let period_ms = r.u64()?;
    if period_ms == 0 {
        return Err(Status::EPROTO);
    }
    let mut key =
        || -> Result<[u8; KEY_LEN], Status> { r.bytes(KEY_LEN)?.try_into().map_err(|_| Status::EPROTO) };
    let previous = key()?;
    let current = key()?;
    let next = key()?;
    r.finish()?;
    Ok(EpochKeys {
        epoch,
        period_ms,
        previous,
        current,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(secret: &[u8], secs: u64) -> TicketKeySource {
        TicketKeySource::new(secret, Duration::from_secs(secs), TicketGrants::default()).unwrap()
    }

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    fn tenant(s: &str) -> Tenant {
        s.parse().unwrap()
    }

    #[test]
    fn epoch_keys_are_deterministic_and_differ_per_epoch_and_tenant() {
        let a = source(&[7; 32], 3600);
        let b = source(&[7; 32], 3600);
        let t = tenant("acme");
        assert_eq!(a.epoch_key(&t, 5), b.epoch_key(&t, 5), "same secret, same key");
        assert_ne!(a.epoch_key(&t, 5), a.epoch_key(&t, 6));
        assert_ne!(a.epoch_key(&t, 5), a.epoch_key(&tenant("other"), 5));
        assert_ne!(a.epoch_key(&t, 5), source(&[8; 32], 3600).epoch_key(&t, 5));
        assert_ne!(
            a.epoch_key(&t, 5),
            source(&[7; 32], 60).epoch_key(&t, 5),
            "period is bound in"
        );
        let at = UNIX_EPOCH + Duration::from_secs(3600 * 10 + 5);
        let k = a.keys_at(&t, at);
        assert_eq!(k.epoch, 10);
        assert_eq!(k.previous, a.epoch_key(&t, 9));
        assert_eq!(k.current, a.epoch_key(&t, 10));
        assert_eq!(k.next, a.epoch_key(&t, 11));
        assert_eq!(k.key_of(9), Some(&k.previous));
        assert_eq!(k.key_of(11), Some(&k.next));
        assert_eq!(k.key_of(8), None);
        assert_eq!(k.key_of(12), None);
        assert_eq!(
            format!("{k:?}"),
            "EpochKeys { epoch: 10, period_ms: 3600000, .. }"
        );
    }

    #[test]
    fn a_reply_round_trips_and_truncation_is_refused() {
        let s = source(&[1; 32], 10);
        let body = handle(Some(&s), &id("edge@acme"), &encode_request("")).unwrap();
        let k = decode_reply(&body).unwrap();
        assert_eq!(k.period_ms, 10_000);
        assert_eq!(k.current, s.epoch_key(&tenant("acme"), k.epoch));
        assert_eq!(decode_reply(&body[..body.len() - 1]).unwrap_err(), Status::EPROTO);
        let mut long = body.clone();
        long.push(0);
        assert_eq!(decode_reply(&long).unwrap_err(), Status::EPROTO);
    }

    #[test]
    fn an_edge_of_tenant_b_cannot_fetch_tenant_a_keys() {
        let s = source(&[1; 32], 10);
        let b = id("edge@b");
        assert_eq!(
            handle(Some(&s), &b, &encode_request("a")).unwrap_err(),
            Status::EACCES
        );
        let own = decode_reply(&handle(Some(&s), &b, &encode_request("b")).unwrap()).unwrap();
        assert_eq!(own.current, s.epoch_key(&tenant("b"), own.epoch));
        assert_eq!(
            handle(Some(&s), &id("client@b"), &encode_request("")).unwrap_err(),
            Status::EACCES,
            "only granted roles"
        );
        let only_a = TicketKeySource::new(
            &[1; 32],
            Duration::from_secs(10),
            TicketGrants::new(vec!["edge@a".parse().unwrap()]),
        )
        .unwrap();
        assert_eq!(
            handle(Some(&only_a), &b, &encode_request("")).unwrap_err(),
            Status::EACCES
        );
        assert!(handle(Some(&only_a), &id("edge@a"), &encode_request("")).is_ok());
        assert_eq!(
            handle(None, &b, &encode_request("")).unwrap_err(),
            Status::ENOTSUP
        );
        assert_eq!(
            handle(Some(&s), &b, &encode_request("B!")).unwrap_err(),
            Status::EINVAL
        );
        assert_eq!(handle(Some(&s), &b, b"").unwrap_err(), Status::EPROTO);
    }

    #[test]
    fn the_secret_file_must_be_private_and_long_enough_and_the_period_sane() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tickets.secret");
        std::fs::write(&p, [7u8; 31]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = TicketKeySource::from_file(&p, DEFAULT_ROTATION, TicketGrants::default()).unwrap_err();
        assert!(
            matches!(err, TicketSecretError::TooShort { len: 31, .. }),
            "{err}"
        );
        std::fs::write(&p, [7u8; 32]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = TicketKeySource::from_file(&p, DEFAULT_ROTATION, TicketGrants::default()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = TicketKeySource::from_file(&p, DEFAULT_ROTATION, TicketGrants::default()).unwrap();
        assert_eq!(
            s.epoch_key(&tenant("x"), 1),
            source(&[7; 32], 3600).epoch_key(&tenant("x"), 1)
        );
        let err =
            TicketKeySource::new(&[7; 32], Duration::from_millis(500), TicketGrants::default()).unwrap_err();
        assert_eq!(err.to_string(), "--ticket-rotation 500ms: must be at least 1s");
    }
}
