//! Who gets a connection slot, and who loses one.
//!
//! A TCP peer costs nothing to connect and may then sit in the TLS handshake
//! doing nothing; if every slot could be held that way, one host with a few
//! thousand sockets would lock every real client out (issue 16). So slots are
//! split in two by what we know of the peer:
//!
//! * **pending**: accepted, not yet authenticated (TLS handshake or admission
//!   still running). Pending connections are kept oldest first and are *shed*,
//!   oldest first, whenever a new connection needs a slot and none is free. A
//!   single source address may hold at most `max_conns_per_addr` of them: a
//!   new connection from an address at its limit sheds that address's own
//!   oldest pending one, so one host cannot make the shedding cycle through
//!   everybody else's handshakes, and cannot lock out a legitimate client
//!   that shares its address either (on loopback every peer does).
//! * **authenticated**: mTLS done and admitted. Never shed; counted per
//!   identity (the certificate's role *and* tenant, so one tenant's edge
//!   cannot starve another's) against `max_conns_per_identity`, so one
//!   identity cannot take every slot from the others.
//!
//! A new connection is refused only when every slot is authenticated.

use crate::identity::Identity;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Why a new connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// Every slot holds an authenticated connection.
    AllAuthenticated,
}

/// Why an authenticated peer is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotAdmitted {
    /// Its connection was shed while it was finishing the handshake.
    Shed,
    /// Its identity already holds `max_conns_per_identity` connections.
    IdentityFull,
}

/// One pending connection, as the shedder sees it.
struct Pending {
    addr: Option<IpAddr>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Connections holding a slot, pending or authenticated.
    total: usize,
    next_id: u64,
    /// Pending connections by accept order (ids only grow): the first entry
    /// is the oldest, the first to shed.
    pending: BTreeMap<u64, Pending>,
    /// Pending connections per TCP source address.
    per_addr: HashMap<IpAddr, usize>,
    /// Authenticated connections per identity.
    per_identity: HashMap<Identity, usize>,
    /// Requests being served per identity: one counter per identity ever
    /// admitted (identities are certificates from the CA, so few), shared
    /// by its connections so a request costs no lock.
    inflight: HashMap<Identity, Arc<AtomicUsize>>,
}

impl State {
    /// Forgets pending connection `id` (if it still is pending) and returns
    /// it; the caller decides whether its slot is freed or handed on.
    fn take_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(a) = p.addr {
            if let Some(n) = self.per_addr.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    self.per_addr.remove(&a);
                }
            }
        }
        Some(p)
    }
}

/// The slot table of one server.
pub(crate) struct Admission {
    max_connections: usize,
    max_per_addr: usize,
    max_per_identity: usize,
    max_inflight: usize,
    state: Mutex<State>,
}

impl Admission {
    pub(crate) fn new(
        max_connections: usize,
        max_per_addr: usize,
        max_per_identity: usize,
        max_inflight: usize,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections,
            max_per_addr,
            max_per_identity,
            max_inflight,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half way; take the data anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pending slot for a connection just accepted from `addr` (None for
    /// UNIX sockets, which have no source address to limit). If the oldest
    /// pending connection is shed to make room, its shed signal fires.
    pub(crate) fn accept(self: &Arc<Self>, addr: Option<IpAddr>) -> Result<Slot, NoSlot> {
        let mut st = self.state();
        let at_addr_limit =
            addr.is_some_and(|a| st.per_addr.get(&a).copied().unwrap_or(0) >= self.max_per_addr);
        // At its limit, the address's own oldest pending connection gives
        // its slot to the new one (a linear scan, only for such an address).
        let same_addr = match at_addr_limit {
            true => st.pending.iter().find(|(_, p)| p.addr == addr).map(|(&id, _)| id),
            false => None,
        };
        if let Some(p) = same_addr.and_then(|id| st.take_pending(id)) {
            p.cancel.cancel();
        } else if st.total >= self.max_connections {
            let Some(&oldest) = st.pending.keys().next() else {
                return Err(NoSlot::AllAuthenticated);
            };
            // The shed connection's slot passes to the new one: `total`
            // stays, and the shed task finds itself gone when it wakes.
            if let Some(p) = st.take_pending(oldest) {
                p.cancel.cancel();
            }
        } else {
            st.total += 1;
        }
        let id = st.next_id;
        st.next_id += 1;
        let cancel = CancellationToken::new();
        st.pending.insert(
            id,
            Pending {
                addr,
                cancel: cancel.clone(),
            },
        );
        if let Some(a) = addr {
            *st.per_addr.entry(a).or_insert(0) += 1;
        }
        let slot = Slot {
            adm: self.clone(),
            id,
            cancel,
            authenticated: None,
            inflight: None,
        };
        Ok(slot)
    }

    /// Reserves one in-flight request on an identity's counter (from
    /// [`Slot::inflight_counter`]); `None` when the identity already has
    /// `max_inflight_per_identity` requests being served.
    pub(crate) fn begin_request<'a>(&self, c: &'a AtomicUsize) -> Option<Inflight<'a>> {
        if c.fetch_add(1, Ordering::AcqRel) >= self.max_inflight {
            c.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Inflight(c))
    }
}

/// One request counted against its identity's in-flight limit until dropped.
pub(crate) struct Inflight<'a>(&'a AtomicUsize);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Identity under which an authenticated connection is counted: its role
/// and tenant, or nothing for a connection without TLS (in-process tests,
/// UNIX sockets without TLS) or whose certificate names no role (refused
/// anyway).
pub(crate) type Counted = Option<Identity>;

/// A connection's hold on a slot; freed when dropped.
pub(crate) struct Slot {
    adm: Arc<Admission>,
    id: u64,
    cancel: CancellationToken,
    /// Set once authenticated; the slot is then no longer sheddable.
    authenticated: Option<Counted>,
    /// The identity's in-flight counter, once authenticated with one.
    inflight: Option<Arc<AtomicUsize>>,
}

impl Slot {
    /// The in-flight counter of the identity this connection authenticated
    /// as (`None` before, or without an identity).
    pub(crate) fn inflight_counter(&self) -> Option<Arc<AtomicUsize>> {
        self.inflight.clone()
    }

    /// Fires when this pending connection is shed for a newer one.
    pub(crate) fn shed_signal(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Marks the connection authenticated as `identity`: no longer sheddable,
    /// and counted against its identity's connection limit.
    pub(crate) fn authenticate(&mut self, identity: Counted) -> Result<(), NotAdmitted> {
        let adm = self.adm.clone();
        let mut st = adm.state();
        if !st.pending.contains_key(&self.id) {
            return Err(NotAdmitted::Shed);
        }
        if let Some(r) = &identity {
            let n = st.per_identity.get(r).copied().unwrap_or(0);
            if n >= adm.max_per_identity {
                return Err(NotAdmitted::IdentityFull);
            }
            st.per_identity.insert(r.clone(), n + 1);
            self.inflight = Some(st.inflight.entry(r.clone()).or_default().clone());
        }
        st.take_pending(self.id);
        self.authenticated = Some(identity);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.adm.state();
        match &self.authenticated {
            Some(identity) => {
                st.total -= 1;
                if let Some(r) = identity {
                    if let Some(n) = st.per_identity.get_mut(r) {
                        *n -= 1;
                        if *n == 0 {
                            st.per_identity.remove(r);
                        }
                    }
                }
            }
            None => {
                // A shed connection's slot already went to its replacement.
                if st.take_pending(self.id).is_some() {
                    st.total -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Counted {
        Some(s.parse().unwrap())
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn full_slots_shed_the_oldest_pending_connection_first() {
        let adm = Admission::new(2, 10, 10, 10);
        let first = adm.accept(A).unwrap();
        let second = adm.accept(B).unwrap();
        let _third = adm.accept(B).unwrap();
        assert!(first.shed_signal().is_cancelled());
        assert!(!second.shed_signal().is_cancelled());
        drop(first);
        assert_eq!(adm.state().total, 2);
        assert_eq!(adm.state().per_addr.get(&A.unwrap()), None);
    }

    #[test]
    fn authenticated_connections_are_never_shed() {
        let adm = Admission::new(2, 10, 10, 10);
        let mut a = adm.accept(A).unwrap();
        let mut b = adm.accept(A).unwrap();
        a.authenticate(id("edge")).unwrap();
        b.authenticate(id("client")).unwrap();
        assert_eq!(adm.accept(B).err(), Some(NoSlot::AllAuthenticated));
        drop(b);
        let c = adm.accept(B).unwrap();
        assert!(!c.shed_signal().is_cancelled());
        assert!(!a.shed_signal().is_cancelled());
    }

    #[test]
    fn a_shed_connection_cannot_authenticate() {
        let adm = Admission::new(1, 10, 10, 10);
        let mut a = adm.accept(A).unwrap();
        let _b = adm.accept(B).unwrap();
        assert_eq!(a.authenticate(id("edge")), Err(NotAdmitted::Shed));
        drop(a);
        assert_eq!(adm.state().total, 1);
    }

    #[test]
    fn per_address_limit_sheds_that_address_oldest_pending_connection() {
        let adm = Admission::new(10, 2, 10, 10);
        let a = adm.accept(A).unwrap();
        let mut b = adm.accept(A).unwrap();
        let _other = adm.accept(B).unwrap();
        let c = adm.accept(A).unwrap();
        assert!(a.shed_signal().is_cancelled(), "A's oldest pending is shed");
        assert!(!b.shed_signal().is_cancelled() && !c.shed_signal().is_cancelled());
        assert!(
            !_other.shed_signal().is_cancelled(),
            "another address is untouched"
        );
        assert_eq!(adm.state().per_addr.get(&A.unwrap()), Some(&2));
        assert_eq!(adm.state().total, 4 - 1);
        // Authenticated connections no longer count against the address.
        b.authenticate(id("edge")).unwrap();
        let d = adm.accept(A).unwrap();
        assert!(!c.shed_signal().is_cancelled() && !d.shed_signal().is_cancelled());
        assert!(adm.accept(None).is_ok());
    }

    #[test]
    fn identity_limits_on_connections_and_requests() {
        let adm = Admission::new(10, 10, 1, 1);
        let mut a = adm.accept(A).unwrap();
        let mut b = adm.accept(A).unwrap();
        a.authenticate(id("edge")).unwrap();
        assert_eq!(b.authenticate(id("edge")), Err(NotAdmitted::IdentityFull));
        b.authenticate(id("client")).unwrap();
        let (ea, cb) = (a.inflight_counter().unwrap(), b.inflight_counter().unwrap());
        let r = adm.begin_request(&ea).unwrap();
        assert!(adm.begin_request(&ea).is_none());
        assert!(adm.begin_request(&cb).is_some());
        drop(r);
        assert!(adm.begin_request(&ea).is_some());
        drop(a);
        let mut c = adm.accept(B).unwrap();
        c.authenticate(id("edge")).unwrap();
    }

    #[test]
    fn limits_count_role_and_tenant_together() {
        let adm = Admission::new(10, 10, 1, 1);
        let mut a = adm.accept(A).unwrap();
        let mut b = adm.accept(A).unwrap();
        let mut c = adm.accept(A).unwrap();
        a.authenticate(id("edge@acme")).unwrap();
        // Another tenant's edge has its own connection and request budget.
        b.authenticate(id("edge@beta")).unwrap();
        assert_eq!(c.authenticate(id("edge@acme")), Err(NotAdmitted::IdentityFull));
        let acme = a.inflight_counter().unwrap();
        let _busy = adm.begin_request(&acme).unwrap();
        assert!(adm.begin_request(&b.inflight_counter().unwrap()).is_some());
        // Connections of one identity share one in-flight budget.
        drop(a);
        c.authenticate(id("edge@acme")).unwrap();
        assert!(adm.begin_request(&c.inflight_counter().unwrap()).is_none());
    }
}
