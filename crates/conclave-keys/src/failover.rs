//! Several key servers holding the same keys, used as one: calls go round
//! robin over the healthy endpoints; a call that fails for want of an
//! answer (unreachable, timed out, broken connection, or `EAGAIN`) is
//! retried once on the next endpoint, and the failed endpoint is left out
//! for a back-off period. After it, the endpoint is tried again, but first
//! asked for every key in use (`GET_KEY`): a key server that came back with
//! another key is kept out instead of failing handshakes.
//!
//! A refusal (`EACCES`, `ENOENT`, `EPERM`...) is an answer, not a failure:
//! every endpoint would say the same, so it is returned at once.

use crate::client::{KeyClient, KeyInfo};
use crate::error::KeysError;
use crate::op::ticket_keys::EpochKeys;
use conclave_rpc::{Credentials, Endpoint, Status};
use rustls::SignatureScheme;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a failed endpoint is left out before it is tried again.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);

/// One endpoint and what is known of its health.
struct Member {
    client: Arc<KeyClient>,
    /// `Some(t)`: failed; left out until `t`, then checked before use.
    down_until: Mutex<Option<Instant>>,
}

impl Member {
    fn down(&self) -> Option<Instant> {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_down(&self, until: Instant) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn mark_up(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A set of key servers that hold the same keys (see the module doc).
pub struct KeyServers {
    members: Vec<Member>,
    next: AtomicUsize,
    backoff: Duration,
    /// The public key (SPKI DER) of every key looked up, by name: what a
    /// returning endpoint must still hold.
    known: Mutex<HashMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for KeyServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyServers")
            .field("endpoints", &self.endpoint_list())
            .finish_non_exhaustive()
    }
}

/// One endpoint's turn in a fail-over loop ([`KeyServers::settle`]).
enum Attempt<T> {
    /// The call's result: success, or an error another endpoint would not change.
    Done(Result<T, KeysError>),
    /// No answer worth keeping: the next endpoint is tried with this as the error so far.
    Next(KeysError),
}

/// `info`, as endpoint `m` gave it, must hold the public key `spki` the
/// other endpoints gave for its key.
fn same_key(m: &Member, spki: &[u8], info: KeyInfo) -> Result<(), KeysError> {
    if info.spki == spki {
        return Ok(());
    }
    Err(KeysError::KeyMismatch {
        name: info.name,
        reason: format!(
            "key server {} came back with a different key than the other endpoints",
            m.client.endpoint()
        ),
    })
}

/// Whether another endpoint might succeed where this one failed.
fn worth_retrying(e: &KeysError) -> bool {
    match e {
        KeysError::Rpc(_) => true,
        KeysError::Refused { status, .. } => *status == Status::EAGAIN,
        _ => false,
    }
}

impl KeyServers {
    /// Clients of `endpoints` (at least one), each with `opts`. Give each
    /// call a deadline of half the handshake's, so a retry fits in it.
    pub fn new(endpoints: Vec<Endpoint>, opts: conclave_rpc::ClientOptions) -> KeyServers {
        Self::from_clients(
            endpoints
                .into_iter()
                .map(|e| Arc::new(KeyClient::new(e, opts.clone())))
                .collect(),
        )
    }

    /// [`KeyServers::new`] signing over `lanes` pipelined connections per
    /// key server ([`KeyClient::with_sign_lanes`]); other calls use the pool.
    pub fn pipelined(
        endpoints: Vec<Endpoint>,
        opts: conclave_rpc::ClientOptions,
        lanes: usize,
    ) -> KeyServers {
        Self::from_clients(
            endpoints
                .into_iter()
                .map(|e| Arc::new(KeyClient::with_sign_lanes(e, opts.clone(), lanes)))
                .collect(),
        )
    }

    /// [`KeyServers::new`] presenting `creds`, with the keyless defaults of
    /// [`KeyClient::default_options`].
    pub fn with_credentials(endpoints: Vec<Endpoint>, creds: &Credentials) -> Result<KeyServers, KeysError> {
        Ok(Self::new(endpoints, KeyClient::default_options(creds)?))
    }

    /// A set over existing clients (one client = no fail-over).
    pub fn from_clients(clients: Vec<Arc<KeyClient>>) -> KeyServers {
        KeyServers {
            members: clients
                .into_iter()
                .map(|client| Member {
                    client,
                    down_until: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
            backoff: DEFAULT_BACKOFF,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The same set with another back-off period.
    pub fn with_backoff(mut self, backoff: Duration) -> KeyServers {
        self.backoff = backoff;
        self
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.members.iter().map(|m| m.client.endpoint())
    }

    fn endpoint_list(&self) -> String {
        self.endpoints()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The endpoints currently left out after a failure.
    pub fn down(&self) -> Vec<Endpoint> {
        let now = Instant::now();
        self.members
            .iter()
            .filter(|m| m.down().is_some_and(|t| t > now))
            .map(|m| m.client.endpoint().clone())
            .collect()
    }

    /// The order to try the members in for one call: healthy ones first,
    /// starting at the round-robin position, then those still backing off
    /// (a last resort beats failing outright).
    fn order(&self) -> Vec<&Member> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (mut up, mut out): (Vec<&Member>, Vec<&Member>) = (0..n)
            .map(|i| &self.members[(start + i) % n])
            .partition(|m| m.down().is_none_or(|t| t <= now));
        up.append(&mut out);
        up
    }

    /// Before a returning endpoint is used again: does it still hold every
    /// key in use, with the same public key?
    fn recheck(&self, m: &Member) -> Result<(), KeysError> {
        for (name, spki) in self.known_keys() {
            same_key(m, &spki, m.client.key_info(&name)?)?;
        }
        Ok(())
    }

    /// The keys in use and their public keys, copied out of the lock.
    fn known_keys(&self) -> Vec<(String, Vec<u8>)> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A returning endpoint that failed its [`KeyServers::recheck`]: left
    /// out for another back-off period; the error is what the call reports.
    fn left_out(&self, m: &Member, e: KeysError) -> KeysError {
        warn!(keyserver = %m.client.endpoint(), "still left out: {e}");
        m.mark_down(Instant::now() + self.backoff);
        e
    }

    /// What `result`, the answer of member `m` (left out before this call
    /// if `was_down`), leaves a fail-over loop with: done (success, or an
    /// error no other endpoint would change), or try the next endpoint.
    fn settle<T>(&self, m: &Member, was_down: bool, what: &str, result: Result<T, KeysError>) -> Attempt<T> {
        match result {
            Ok(v) => {
                if was_down {
                    info!(keyserver = %m.client.endpoint(), "key server is back");
                    m.mark_up();
                }
                Attempt::Done(Ok(v))
            }
            Err(e) if worth_retrying(&e) => {
                if !matches!(e, KeysError::Refused { .. }) {
                    m.mark_down(Instant::now() + self.backoff);
                }
                if self.members.len() > 1 {
                    warn!(
                        keyserver = %m.client.endpoint(),
                        "{what} failed, left out for {:?}: {e}",
                        self.backoff
                    );
                }
                Attempt::Next(e)
            }
            Err(e) => Attempt::Done(Err(e)),
        }
    }

    /// Runs `op` on one endpoint, and once more on the next if the first
    /// failed for want of an answer.
    fn call<T>(&self, what: &str, op: impl Fn(&KeyClient) -> Result<T, KeysError>) -> Result<T, KeysError> {
        let mut last = None;
        for m in self.order().into_iter().take(2) {
            let was_down = m.down().is_some();
            if was_down {
                if let Err(e) = self.recheck(m) {
                    last = Some(self.left_out(m, e));
                    continue;
                }
            }
            match self.settle(m, was_down, what, op(&m.client)) {
                Attempt::Done(r) => return r,
                Attempt::Next(e) => last = Some(e),
            }
        }
        Err(last.expect("a key-server set has at least one endpoint"))
    }

    /// [`KeyServers::recheck`], awaited.
    async fn recheck_async(&self, m: &Member) -> Result<(), KeysError> {
        for (name, spki) in self.known_keys() {
            same_key(m, &spki, m.client.key_info_async(&name).await?)?;
        }
        Ok(())
    }

    /// [`KeyServers::sign`], awaited over each client's async pipelined
    /// connections, with the same fail-over and back-off (this is
    /// `KeyServers::call` for one operation, as a future).
    pub async fn sign_async(
        &self,
        name: &str,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeysError> {
        let mut last = None;
        for m in self.order().into_iter().take(2) {
            let was_down = m.down().is_some();
            if was_down {
                if let Err(e) = self.recheck_async(m).await {
                    last = Some(self.left_out(m, e));
                    continue;
                }
            }
            let signed = m.client.sign_async(name, scheme, message).await;
            match self.settle(m, was_down, "SIGN", signed) {
                Attempt::Done(r) => return r,
                Attempt::Next(e) => last = Some(e),
            }
        }
        Err(last.expect("a key-server set has at least one endpoint"))
    }

    /// The public key of `name`, asked of every endpoint: all that answer
    /// must hold the same key (else an error naming two that differ);
    /// unreachable ones are left out for now, and checked when they return.
    pub fn key_info(&self, name: &str) -> Result<KeyInfo, KeysError> {
        let mut agreed: Option<(KeyInfo, &Endpoint)> = None;
        let mut unreachable = None;
        for m in &self.members {
            match m.client.key_info(name) {
                Ok(info) => match &agreed {
                    None => agreed = Some((info, m.client.endpoint())),
                    Some((first, at)) if first.spki != info.spki => {
                        return Err(KeysError::EndpointsDisagree {
                            name: name.to_string(),
                            endpoints: Box::new([at.to_string(), m.client.endpoint().to_string()]),
                        });
                    }
                    Some(_) => {}
                },
                Err(e) if worth_retrying(&e) && self.members.len() > 1 => {
                    warn!(keyserver = %m.client.endpoint(), "key {name:?}: unreachable at start, left out: {e}");
                    m.mark_down(Instant::now());
                    unreachable.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some((info, _)) = agreed else {
            return Err(unreachable.expect("no answer means an error was kept"));
        };
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), info.spki.clone());
        Ok(info)
    }

    /// Signs `message` with key `name` under `scheme`, failing over.
    pub fn sign(&self, name: &str, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, KeysError> {
        self.call("SIGN", |c| c.sign(name, scheme, message))
    }

    /// The fleet ticket keys of `tenant` (`""`: the caller's own), failing over.
    pub fn ticket_keys(&self, tenant: &str) -> Result<EpochKeys, KeysError> {
        self.call("TICKET_KEYS", |c| c.ticket_keys(tenant))
    }
}
