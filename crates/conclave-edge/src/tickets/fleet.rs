//! Fleet ticket keys (`[shared] ticket_source = "keyserver"`): every edge
//! of a fleet fetches the same per-epoch keys from the key servers
//! (`TICKET_KEYS`), so a ticket one node issued opens on any other.
//!
//! A ticket is `u64 epoch ‖ nonce ‖ AES-256-GCM(state) ‖ tag`, the epoch
//! bound in as associated data. New tickets are sealed with the key of the
//! epoch the clock is in; tickets of that epoch, the one before (issued
//! just before a roll) and the one after (from a node whose clock is a
//! little ahead) open. The epoch follows the clock, not the last fetch, so
//! every node rolls at the same moment even if a fetch is late: the keys
//! of the next epoch are already held.
//!
//! The edge never holds the master secret, only the three epoch keys: a
//! node that leaks its memory leaks tickets of those epochs, not the keys
//! of the epochs to come.

use super::{open_with, seal_with};
use crate::config::FleetTicketsConfig;
use conclave_keys::op::ticket_keys::EpochKeys;
use conclave_keys::{KeyServers, KeysError};
use conclave_rpc::Role;
use rustls::server::ProducesTickets;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Associated data of a fleet ticket (with its epoch appended).
const AAD: &[u8] = b"conclave fleet tls ticket v1";
/// After a failed fetch, the next try comes this soon.
const RETRY: Duration = Duration::from_secs(1);
/// A fetch right after an epoch change waits this much past it, so a key
/// server whose clock is slightly behind already answers the new epoch.
const PAST_ROLL: Duration = Duration::from_millis(200);

/// Why the fleet ticket keys are not available at start.
#[derive(Debug, thiserror::Error)]
pub enum FleetTicketError {
    /// The edge identity in `[shared] certs` did not load.
    #[error("[shared] certs: {0}")]
    Identity(#[from] conclave_rpc::TlsError),
    /// No key server answered, or one refused.
    #[error("fetching ticket keys from {endpoints}: {source}")]
    Fetch {
        /// The key servers asked.
        endpoints: String,
        /// Cause.
        #[source]
        source: KeysError,
    },
    /// The refresher thread could not start.
    #[error("starting the ticket-key refresher: {0}")]
    Thread(std::io::Error),
}

/// A `ProducesTickets` over the fleet's epoch keys.
pub struct FleetTicketer {
    keys: Arc<Mutex<EpochKeys>>,
    lifetime: u32,
}

impl std::fmt::Debug for FleetTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTicketer").finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn aad(epoch: u64) -> Vec<u8> {
    let mut a = AAD.to_vec();
    a.extend_from_slice(&epoch.to_be_bytes());
    a
}

impl FleetTicketer {
    /// Fetches the keys (blocking; an error stops the worker at setup) and
    /// starts the thread that fetches them again every `refresh` and after
    /// each epoch change.
    pub fn start(cfg: &FleetTicketsConfig) -> Result<FleetTicketer, FleetTicketError> {
        let creds = conclave_rpc::Credentials::from_dir(&cfg.certs, Role::Edge)?;
        let mut opts =
            conclave_keys::KeyClient::default_options(&creds).map_err(|source| FleetTicketError::Fetch {
                endpoints: list(&cfg.endpoints),
                source,
            })?;
        opts.io_timeout = cfg.timeout;
        opts.connect_timeout = opts.connect_timeout.min(cfg.timeout);
        let servers = Arc::new(KeyServers::new(cfg.endpoints.clone(), opts));
        let keys = conclave_rpc::run_blocking(|| servers.ticket_keys("")).map_err(|source| {
            FleetTicketError::Fetch {
                endpoints: list(&cfg.endpoints),
                source,
            }
        })?;
        tracing::info!(
            epoch = keys.epoch,
            period_ms = keys.period_ms,
            "fleet ticket keys fetched"
        );
        let t = Self::from_keys(keys);
        let weak = Arc::downgrade(&t.keys);
        let refresh = cfg.refresh;
        std::thread::Builder::new()
            .name("ticket-keys".into())
            .spawn(move || refresher(servers, weak, refresh))
            .map_err(FleetTicketError::Thread)?;
        Ok(t)
    }

    /// A ticketer over keys already held (no fetching): for tests, and the
    /// start of [`FleetTicketer::start`].
    pub fn from_keys(keys: EpochKeys) -> FleetTicketer {
        // A ticket opens until the end of the epoch after its own: up to
        // two periods after it was issued. A shorter hint would make clients
        // drop tickets the fleet still accepts.
        let lifetime = u32::try_from((keys.period_ms.saturating_mul(2) / 1000).max(1)).unwrap_or(u32::MAX);
        FleetTicketer {
            keys: Arc::new(Mutex::new(keys)),
            lifetime,
        }
    }

    /// The epoch at `now_ms` (by the period of the keys held).
    fn epoch_at(keys: &EpochKeys, now_ms: u64) -> u64 {
        now_ms / keys.period_ms
    }

    /// A ticket sealed at time `now_ms`; `None` when the keys held do not
    /// cover that epoch (fetches have failed for more than an epoch).
    pub fn encrypt_at(&self, now_ms: u64, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = Self::epoch_at(&keys, now_ms);
        let key = keys.key_of(epoch)?;
        let sealed = seal_with(key, &aad(epoch), plain)?;
        let mut out = Vec::with_capacity(8 + sealed.len());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// The state in `ticket` if it was sealed in the epoch of `now_ms`, the
    /// one before or the one after, by the fleet's keys.
    pub fn decrypt_at(&self, now_ms: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        let (epoch, sealed) = ticket.split_first_chunk::<8>()?;
        let epoch = u64::from_be_bytes(*epoch);
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let now = Self::epoch_at(&keys, now_ms);
        if epoch.saturating_add(1) < now || epoch > now.saturating_add(1) {
            return None;
        }
        open_with(keys.key_of(epoch)?, &aad(epoch), sealed)
    }
}

fn list(endpoints: &[conclave_rpc::Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fetches the keys again every `refresh`, and just after each epoch
/// change, until the ticketer is gone.
fn refresher(servers: Arc<KeyServers>, keys: Weak<Mutex<EpochKeys>>, refresh: Duration) {
    let mut wait = refresh;
    loop {
        let Some(held) = keys.upgrade() else { return };
        let until_roll = {
            let k = held.lock().unwrap_or_else(|p| p.into_inner());
            let next_start = (k.epoch.saturating_add(1)).saturating_mul(k.period_ms);
            Duration::from_millis(next_start.saturating_sub(now_ms())) + PAST_ROLL
        };
        drop(held);
        std::thread::sleep(wait.min(until_roll));
        let Some(held) = keys.upgrade() else { return };
        match servers.ticket_keys("") {
            Ok(fresh) => {
                let mut k = held.lock().unwrap_or_else(|p| p.into_inner());
                if fresh.epoch != k.epoch {
                    tracing::debug!(epoch = fresh.epoch, "fleet ticket keys rolled");
                }
                *k = fresh;
                wait = refresh;
            }
            Err(e) => {
                // The keys held still cover the next epoch; resumption
                // degrades only if fetches fail for longer than that.
                tracing::warn!("fetching fleet ticket keys: {e}");
                wait = RETRY;
            }
        }
    }
}

impl ProducesTickets for FleetTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(now_ms(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(now_ms(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_keys::op::ticket_keys::{TicketGrants, TicketKeySource};

    const PERIOD: u64 = 10_000;

    fn keys_at(secret: u8, tenant: &str, now_ms: u64) -> EpochKeys {
        let src = TicketKeySource::new(
            &[secret; 32],
            Duration::from_millis(PERIOD),
            TicketGrants::default(),
        )
        .unwrap();
        src.keys_at(
            &tenant.parse().unwrap(),
            UNIX_EPOCH + Duration::from_millis(now_ms),
        )
    }

    #[test]
    fn nodes_with_the_same_source_open_each_others_tickets() {
        let t0 = 100 * PERIOD + 5;
        let a = FleetTicketer::from_keys(keys_at(1, "acme", t0));
        let b = FleetTicketer::from_keys(keys_at(1, "acme", t0));
        let ticket = a.encrypt_at(t0, b"session").unwrap();
        assert_eq!(&ticket[..8], &100u64.to_be_bytes());
        assert_eq!(b.decrypt_at(t0, &ticket).unwrap(), b"session");
        let mut bad = ticket.clone();
        bad[20] ^= 1;
        assert_eq!(b.decrypt_at(t0, &bad), None, "tampered");
        let mut relabelled = ticket.clone();
        relabelled[7] ^= 1;
        assert_eq!(b.decrypt_at(t0, &relabelled), None, "the epoch is bound in");
        assert_eq!(b.decrypt_at(t0, &ticket[..7]), None);
        let other_tenant = FleetTicketer::from_keys(keys_at(1, "other", t0));
        assert_eq!(other_tenant.decrypt_at(t0, &ticket), None);
        let other_secret = FleetTicketer::from_keys(keys_at(2, "acme", t0));
        assert_eq!(other_secret.decrypt_at(t0, &ticket), None);
    }

    #[test]
    fn a_ticket_of_the_previous_epoch_opens_after_the_roll_but_not_two_rolls_later() {
        let t0 = 100 * PERIOD + 5;
        let a = FleetTicketer::from_keys(keys_at(1, "acme", t0));
        let old = a.encrypt_at(t0, b"old").unwrap();
        // Without a new fetch, the clock alone moves the node to epoch 101.
        let t1 = t0 + PERIOD;
        let new = a.encrypt_at(t1, b"new").unwrap();
        assert_eq!(&new[..8], &101u64.to_be_bytes());
        assert_eq!(a.decrypt_at(t1, &old).unwrap(), b"old");
        // A node that fetched in epoch 101 opens both.
        let b = FleetTicketer::from_keys(keys_at(1, "acme", t1));
        assert_eq!(b.decrypt_at(t1, &old).unwrap(), b"old");
        assert_eq!(b.decrypt_at(t1, &new).unwrap(), b"new");
        // A node still holding epoch 100's keys opens epoch 101's tickets.
        assert_eq!(a.decrypt_at(t0, &new).unwrap(), b"new");
        let t2 = t0 + 2 * PERIOD;
        let c = FleetTicketer::from_keys(keys_at(1, "acme", t2));
        assert_eq!(c.decrypt_at(t2, &old), None, "two epochs old");
        assert_eq!(c.decrypt_at(t2, &new).unwrap(), b"new");
        assert_eq!(a.encrypt_at(t0 + 3 * PERIOD, b"x"), None, "keys too old to seal");
    }
}
