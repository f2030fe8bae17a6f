//! Lock leases and byte quotas of the memory servers (issue 16), in-process
//! over a UNIX socket with real mTLS: a holder that never unlocks loses the
//! lock within its lease and its late UNLOCK publishes nothing; a holder
//! that renews keeps it; OPENs past a quota get EDQUOT / ENOSPC while the
//! memory files already open keep working.

use conclave_mem::proto::{self, open, unlock};
use conclave_mem::{connect, MemError, MemLimits, MemSpec, MemoryStore};
use conclave_rpc::{ClientOptions, Connection, Credentials, Role, Status};
use conclave_testkit::{edge_and_client_grants, within, MemFixture};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_millis(300);
/// Scheduling slack on a shared 2-core machine.
const MARGIN: Duration = Duration::from_millis(700);
const PATIENCE: Duration = Duration::from_secs(30);

fn limits() -> MemLimits {
    MemLimits {
        lease: LEASE,
        max_bytes: 64 << 10,
        max_bytes_per_identity: 40 << 10,
    }
}

/// A server with [`limits`] whose `client` may use every name too.
fn start(sealed: bool) -> MemFixture {
    MemFixture::start_granted(sealed, limits(), edge_and_client_grants())
}

fn store(fx: &MemFixture, role: Role) -> Arc<dyn MemoryStore> {
    connect(&fx.spec, &fx.options(role)).unwrap()
}

fn raw(fx: &MemFixture, role: Role) -> Connection {
    let ep = match &fx.spec {
        MemSpec::Smdish { endpoint } | MemSpec::Smuf { endpoint, .. } => endpoint.clone(),
        _ => unreachable!(),
    };
    let creds = Credentials::from_dir(&fx.certs, role).unwrap();
    Connection::connect(&ep, &ClientOptions::mtls(&creds, Role::MemServer).unwrap()).unwrap()
}

#[test]
fn an_expired_lease_is_broken_for_the_next_waiter_and_the_late_unlock_publishes_nothing() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let (a, b) = (store(&fx, Role::Client), store(&fx, Role::Client));
        let mut fa = a.open("zone", 8).unwrap();
        let mut fb = b.open("zone", 8).unwrap();
        let mut held = fa.lock().unwrap();
        let taken = Instant::now();
        held[0] = 7;
        // B waits (no timeout of its own): the server breaks A's lease.
        let gb = within(PATIENCE, move || {
            let g = fb.lock_timeout(Some(Duration::from_secs(20))).map(|g| {
                let seen = (g.version(), g[0]);
                g.release().unwrap();
                seen
            });
            (g.map_err(|e| e.to_string()), fb)
        });
        let waited = taken.elapsed();
        assert_eq!(gb.0, Ok((0, 0)), "sealed={sealed}: B sees nothing of A's changes");
        assert!(
            waited < LEASE + MARGIN,
            "sealed={sealed}: lock granted {waited:?} after A took it; lease {LEASE:?}"
        );
        // A's late unlock fails with the typed error naming the lease and
        // publishes nothing.
        match held.unlock() {
            Err(MemError::LeaseExpired { name, lease_ms }) => {
                assert_eq!((name.as_str(), lease_ms), ("zone", 300), "sealed={sealed}");
            }
            other => panic!("sealed={sealed}: late unlock gave {other:?}"),
        }
        let mut fc = store(&fx, Role::Client).open("zone", 8).unwrap();
        let g = fc.lock().unwrap();
        assert_eq!(
            (g.version(), g[0]),
            (0, 0),
            "sealed={sealed}: nothing was published"
        );
        g.release().unwrap();
    }
}

#[test]
fn a_late_unlock_on_the_wire_gets_etimedout_and_a_second_one_eperm() {
    let fx = start(false);
    let mut c = raw(&fx, Role::Client);
    let r = c
        .call(proto::OPEN, &open::Request { name: "w", size: 4 }.encode())
        .unwrap();
    let reply = open::Reply::decode(&r.into_result().unwrap()).unwrap();
    assert_eq!(reply.lease_ms, 300, "OPEN tells the lease");
    let h = reply.handle;
    let lock = conclave_mem::proto::lock::Request {
        handle: h,
        timeout_ms: 0,
    };
    assert_eq!(c.call(proto::LOCK, &lock.encode()).unwrap().status(), Status::OK);
    let renew = proto::renew::encode(h);
    let r = c.call(proto::RENEW, &renew).unwrap();
    assert_eq!(
        (r.status(), proto::renew::decode_reply(&r.body)),
        (Status::OK, Ok(300))
    );
    // Another client's LOCK breaks the lease once it runs out.
    let mut other = raw(&fx, Role::Client);
    let r = other
        .call(proto::OPEN, &open::Request { name: "w", size: 4 }.encode())
        .unwrap();
    let h2 = open::Reply::decode(&r.into_result().unwrap()).unwrap().handle;
    let lock2 = conclave_mem::proto::lock::Request {
        handle: h2,
        timeout_ms: 20_000,
    };
    let t = Instant::now();
    assert_eq!(
        other.call(proto::LOCK, &lock2.encode()).unwrap().status(),
        Status::OK
    );
    assert!(t.elapsed() < LEASE + MARGIN, "granted after {:?}", t.elapsed());
    let publish = unlock::Request {
        handle: h,
        publish: unlock::Publish::Data(&[1, 2, 3, 4]),
    };
    assert_eq!(
        c.call(proto::UNLOCK, &publish.encode()).unwrap().status(),
        Status::ETIMEDOUT
    );
    // Told once; after that it is simply not the holder.
    assert_eq!(
        c.call(proto::UNLOCK, &publish.encode()).unwrap().status(),
        Status::EPERM
    );
    assert_eq!(c.call(proto::RENEW, &renew).unwrap().status(), Status::EPERM);
    assert_eq!(fx.server.file_count(), 1);
}

#[test]
fn a_holder_that_renews_keeps_the_lock_past_its_lease() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let mut fa = store(&fx, Role::Client).open("long", 8).unwrap();
        let mut fb = store(&fx, Role::Client).open("long", 8).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // Starts once A holds the lock.
            rx.recv().unwrap();
            let r = fb.lock_timeout(Some(LEASE * 3)).map(|g| g.version());
            (r.map_err(|e| e.to_string()), fb)
        });
        let out = fa
            .with_locked(None, |seg| {
                tx.send(()).unwrap();
                // Work for five leases; with_locked renews meanwhile.
                std::thread::sleep(LEASE * 5);
                seg[0] = 9;
                (true, "done")
            })
            .unwrap();
        assert_eq!(out, "done");
        let (r, mut fb) = waiter.join().unwrap();
        assert_eq!(
            r,
            Err(format!(
                "lock of \"long\" not granted within {} ms",
                (LEASE * 3).as_millis()
            )),
            "sealed={sealed}"
        );
        let g = fb.lock().unwrap();
        assert_eq!(
            (g.version(), g[0]),
            (1, 9),
            "sealed={sealed}: the renewed holder published"
        );
        g.release().unwrap();
    }
}

#[test]
fn quotas_refuse_with_edquot_and_enospc_and_open_files_keep_working() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let tool = store(&fx, Role::Client);
        let edge = store(&fx, Role::Edge);
        let mut a = tool.open("a", 32 << 10).unwrap();
        match tool.open("b", 16 << 10) {
            Err(MemError::OverQuota { name, requested }) => {
                assert_eq!((name.as_str(), requested), ("b", 16 << 10), "sealed={sealed}")
            }
            other => panic!("sealed={sealed}: {other:?}"),
        }
        // Joining an existing memory file costs nothing.
        let a2 = tool.open("a", 32 << 10).unwrap();
        let c = edge.open("c", 24 << 10).unwrap();
        assert_eq!(fx.server.bytes_used(), 56 << 10);
        match edge.open("d", 16 << 10) {
            Err(MemError::NoSpace { name, requested }) => {
                assert_eq!((name.as_str(), requested), ("d", 16 << 10), "sealed={sealed}")
            }
            other => panic!("sealed={sealed}: {other:?}"),
        }
        // The exact statuses on the wire.
        let mut r = raw(&fx, Role::Client);
        let st = r
            .call(
                proto::OPEN,
                &open::Request {
                    name: "b",
                    size: 16 << 10,
                }
                .encode(),
            )
            .unwrap()
            .status();
        assert_eq!(st, Status::EDQUOT);
        let mut r = raw(&fx, Role::Edge);
        let st = r
            .call(
                proto::OPEN,
                &open::Request {
                    name: "d",
                    size: 16 << 10,
                }
                .encode(),
            )
            .unwrap()
            .status();
        assert_eq!(st, Status::ENOSPC);
        // Existing segments keep working.
        let mut g = a.lock().unwrap();
        g[0] = 1;
        g.unlock().unwrap();
        // Closing frees the bytes for the identity again.
        a.close().unwrap();
        a2.close().unwrap();
        assert_eq!(fx.server.bytes_used(), 24 << 10);
        tool.open("b", 16 << 10).unwrap();
        drop(c);
    }
}
