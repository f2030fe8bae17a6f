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
//!   single source address may hold at most `max_conns_per_addr` of them, so
//!   one host cannot even make the shedding cycle through everybody else's
//!   handshakes.
//! * **authenticated**: mTLS done and admitted. Never shed; counted per
//!   identity (the certificate's role) against `max_conns_per_identity`, so
//!   one identity cannot take every slot from the others.
//!
//! A new connection is refused only when every slot is authenticated.

use crate::role::Role;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Why a new connection got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// Its source address already holds `max_conns_per_addr` pending ones.
    PerAddr,
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
    per_identity: HashMap<Role, usize>,
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
    /// Requests being served per identity (indexed by [`role_index`]).
    inflight: [AtomicUsize; Role::ALL.len()],
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
            inflight: Default::default(),
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
        if let Some(a) = addr {
            if st.per_addr.get(&a).copied().unwrap_or(0) >= self.max_per_addr {
                return Err(NoSlot::PerAddr);
            }
        }
        if st.total >= self.max_connections {
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
        };
        Ok(slot)
    }

    /// Reserves one in-flight request for `role`; `None` when the identity
    /// already has `max_inflight_per_identity` requests being served.
    pub(crate) fn begin_request(&self, role: Role) -> Option<Inflight<'_>> {
        let c = &self.inflight[role_index(role)];
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

fn role_index(r: Role) -> usize {
    match r {
        Role::FileServer => 0,
        Role::MemServer => 1,
        Role::KeyServer => 2,
        Role::Edge => 3,
        Role::Client => 4,
    }
}

/// Identity under which an authenticated connection is counted: its role,
/// or nothing for a connection without TLS (in-process tests, UNIX sockets
/// without TLS) or whose certificate names no role (refused anyway).
pub(crate) type Identity = Option<Role>;

/// A connection's hold on a slot; freed when dropped.
pub(crate) struct Slot {
    adm: Arc<Admission>,
    id: u64,
    cancel: CancellationToken,
    /// Set once authenticated; the slot is then no longer sheddable.
    authenticated: Option<Identity>,
}

impl Slot {
    /// Fires when this pending connection is shed for a newer one.
    pub(crate) fn shed_signal(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Marks the connection authenticated as `identity`: no longer sheddable,
    /// and counted against its identity's connection limit.
    pub(crate) fn authenticate(&mut self, identity: Identity) -> Result<(), NotAdmitted> {
        let adm = self.adm.clone();
        let mut st = adm.state();
        if !st.pending.contains_key(&self.id) {
            return Err(NotAdmitted::Shed);
        }
        if let Some(r) = identity {
            let n = st.per_identity.get(&r).copied().unwrap_or(0);
            if n >= adm.max_per_identity {
                return Err(NotAdmitted::IdentityFull);
            }
            st.per_identity.insert(r, n + 1);
        }
        st.take_pending(self.id);
        self.authenticated = Some(identity);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.adm.state();
        match self.authenticated {
            Some(identity) => {
                st.total -= 1;
                if let Some(r) = identity {
                    if let Some(n) = st.per_identity.get_mut(&r) {
                        *n -= 1;
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
        a.authenticate(Some(Role::Edge)).unwrap();
        b.authenticate(Some(Role::Client)).unwrap();
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
        assert_eq!(a.authenticate(Some(Role::Edge)), Err(NotAdmitted::Shed));
        drop(a);
        assert_eq!(adm.state().total, 1);
    }

    #[test]
    fn per_address_limit_counts_pending_connections_only() {
        let adm = Admission::new(10, 2, 10, 10);
        let mut a = adm.accept(A).unwrap();
        let _b = adm.accept(A).unwrap();
        assert_eq!(adm.accept(A).err(), Some(NoSlot::PerAddr));
        assert!(adm.accept(B).is_ok());
        a.authenticate(Some(Role::Edge)).unwrap();
        assert!(adm.accept(A).is_ok());
        assert!(adm.accept(None).is_ok());
    }

    #[test]
    fn identity_limits_on_connections_and_requests() {
        let adm = Admission::new(10, 10, 1, 1);
        let mut a = adm.accept(A).unwrap();
        let mut b = adm.accept(A).unwrap();
        a.authenticate(Some(Role::Edge)).unwrap();
        assert_eq!(b.authenticate(Some(Role::Edge)), Err(NotAdmitted::IdentityFull));
        b.authenticate(Some(Role::Client)).unwrap();
        let r = adm.begin_request(Role::Edge).unwrap();
        assert!(adm.begin_request(Role::Edge).is_none());
        assert!(adm.begin_request(Role::Client).is_some());
        drop(r);
        assert!(adm.begin_request(Role::Edge).is_some());
        drop(a);
        let mut c = adm.accept(B).unwrap();
        c.authenticate(Some(Role::Edge)).unwrap();
    }
}
