//! The memory server in-process over a UNIX socket with real mTLS: queueing,
//! timeouts, holder checks, malformed requests, refused clients, smuf
//! tamper detection, and the async client.

use conclave_mem::proto::{self, lock, open, peek, unlock};
use conclave_mem::{connect, AsyncMemoryStore, MemError, MemOptions, MemSpec, MemoryStore};
use conclave_rpc::Role;
use conclave_rpc::{ClientOptions, Connection, Credentials, Status};
use conclave_testkit::{
    certs, edge_and_client_grants, file_with_extension, flip_bit_in, wait_until, within, MemFixture,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The in-process server, with this file's client helpers.
struct Fixture(MemFixture);

impl std::ops::Deref for Fixture {
    type Target = MemFixture;
    fn deref(&self) -> &MemFixture {
        &self.0
    }
}

/// A generous bound for what a test waits on.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server whose `client` may use every name too (a second process).
fn start(sealed: bool) -> Fixture {
    Fixture(MemFixture::start_granted(
        sealed,
        conclave_mem::MemLimits::default(),
        edge_and_client_grants(),
    ))
}

impl Fixture {
    fn store(&self, role: Role) -> Arc<dyn MemoryStore> {
        connect(&self.spec, &self.options(role)).unwrap()
    }

    fn raw(&self) -> Connection {
        let ep = match &self.spec {
            MemSpec::Smdish { endpoint } | MemSpec::Smuf { endpoint, .. } => endpoint.clone(),
            _ => unreachable!(),
        };
        let creds = Credentials::from_dir(&self.certs, Role::Client).unwrap();
        Connection::connect(&ep, &ClientOptions::mtls(&creds, Role::MemServer).unwrap()).unwrap()
    }

    fn host_file(&self, ext: &str) -> PathBuf {
        file_with_extension(&self.dir.path().join("host"), ext)
    }
}

/// OPEN on a raw connection; the handle.
fn raw_open(c: &mut Connection, name: &str, size: u64) -> u32 {
    let r = c
        .call(proto::OPEN, &open::Request { name, size }.encode())
        .unwrap();
    open::Reply::decode(&r.into_result().unwrap()).unwrap().handle
}

/// LOCK (waiting forever) on a raw connection; the reply's status.
fn raw_lock(c: &mut Connection, handle: u32) -> Status {
    c.call(
        proto::LOCK,
        &lock::Request {
            handle,
            timeout_ms: 0,
        }
        .encode(),
    )
    .unwrap()
    .status()
}

#[test]
fn publishes_segment_between_clients_and_removes_file_on_last_close() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let s = fx.store(Role::Edge);
        let mut a = s.open("zone", 4096).unwrap();
        let mut b = s.open("zone", 4096).unwrap();
        {
            let mut g = a.lock().unwrap();
            assert_eq!(g.version(), 0);
            assert!(g.iter().all(|&x| x == 0));
            g[..5].copy_from_slice(b"hello");
            g[4095] = 9;
        }
        let g = b.lock().unwrap();
        assert_eq!(g.version(), 1);
        assert_eq!(&g[..5], b"hello");
        assert_eq!(g[4095], 9);
        g.release().unwrap();
        assert_eq!(fx.server.file_count(), 1);
        a.close().unwrap();
        b.close().unwrap();
        assert_eq!(fx.server.file_count(), 0);
        if sealed {
            let left: Vec<_> = std::fs::read_dir(fx.dir.path().join("host")).unwrap().collect();
            assert!(left.is_empty(), "host files left behind: {left:?}");
        }
    }
}

/// Whether thread `tid` of this process is asleep in the kernel (state S),
/// as a blocking client is while it waits for a reply.
fn thread_is_blocked(tid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
    })
}

#[test]
fn waiter_is_granted_on_unlock_and_times_out_while_held() {
    let fx = start(false);
    let s = fx.store(Role::Client);
    let mut a = s.open("q", 8).unwrap();
    let mut b = s.open("q", 8).unwrap();
    let g = a.lock().unwrap();
    match b.lock_timeout(Some(Duration::from_millis(100))) {
        Err(MemError::Timeout { ms: 100, .. }) => {}
        other => panic!("expected a timeout, got {:?}", other.map(|g| g.version())),
    }
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid()).unwrap();
        let mut g = b.lock().unwrap();
        g[0] += 1;
        g.unlock().unwrap();
        b
    });
    // Unlock once the waiter has sent its LOCK and sleeps waiting for the
    // grant (its thread blocked in the kernel), not after a guessed delay.
    let tid = tid_rx.recv_timeout(PATIENCE).unwrap();
    assert!(
        wait_until(PATIENCE, || thread_is_blocked(tid)),
        "the waiter never blocked on its LOCK"
    );
    let mut g = g;
    g[0] = 41;
    g.unlock().unwrap();
    let mut b = waiter.join().unwrap();
    let g = b.lock().unwrap();
    assert_eq!(g[0], 42);
    assert_eq!(g.version(), 2);
}

#[test]
fn disconnect_releases_the_lock_and_the_queue_moves_on() {
    let fx = start(true);
    let s = fx.store(Role::Edge);
    let mut keep = s.open("crash", 8).unwrap();
    let mut holder = s.open("crash", 8).unwrap();
    let g = holder.lock().unwrap();
    std::mem::forget(g); // never unlocked: the "crash" is dropping the connection
    drop(holder);
    let g = keep.lock_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(g.version(), 0);
}

#[test]
fn refuses_unlock_by_non_holder_second_lock_and_bad_sizes() {
    let fx = start(false);
    let s = fx.store(Role::Edge);
    let mut a = s.open("x", 16).unwrap();
    assert!(matches!(a.unlock_unheld(), Err(MemError::NotHolder(n)) if n == "x"));
    match s.open("x", 32) {
        Err(MemError::SizeMismatch {
            requested: 32,
            existing: 16,
            ..
        }) => {}
        other => panic!("expected a size mismatch, got {other:?}"),
    }
    assert!(matches!(
        s.open(&"n".repeat(256), 8),
        Err(MemError::NameTooLong { len: 256, max: 255 })
    ));
    let _g = a.lock().unwrap();
    // Raw protocol: a second lock on the same handle, an unlock with the
    // wrong segment length, a name over 255 bytes, unknown opcodes.
    let mut c = fx.raw();
    let h = raw_open(&mut c, "y", 8);
    assert_eq!(raw_lock(&mut c, h), Status::OK);
    assert_eq!(raw_lock(&mut c, h), Status::EDEADLK);
    let short = [1u8; 4];
    let bad = unlock::Request {
        handle: h,
        publish: unlock::Publish::Data(&short),
    };
    assert_eq!(
        c.call(proto::UNLOCK, &bad.encode()).unwrap().status(),
        Status::EINVAL
    );
    // Still the holder after the refused unlock.
    let good = unlock::Request {
        handle: h,
        publish: unlock::Publish::Data(&[7u8; 8]),
    };
    assert_eq!(
        c.call(proto::UNLOCK, &good.encode()).unwrap().status(),
        Status::OK
    );
    let long = "z".repeat(300);
    let mut body = (long.len() as u32).to_be_bytes().to_vec();
    body.extend_from_slice(long.as_bytes());
    body.extend_from_slice(&8u64.to_be_bytes());
    assert_eq!(c.call(proto::OPEN, &body).unwrap().status(), Status::ENAMETOOLONG);
    for op in [proto::FORK, proto::MMAP, 99] {
        assert_eq!(c.call(op, &[]).unwrap().status(), Status::ENOSYS);
    }
    assert_eq!(c.call(proto::LOCK, &[1, 2]).unwrap().status(), Status::EPROTO);
    assert_eq!(
        c.call(proto::CLOSE, &77u32.to_be_bytes()).unwrap().status(),
        Status::EBADF
    );
}

#[test]
fn refuses_clients_without_certificate_or_with_wrong_role() {
    let fx = start(false);
    // A server's own identity is not a client role.
    let s = fx.store(Role::FileServer);
    match s.open("x", 8) {
        Err(MemError::Denied { op: "open", name }) => assert_eq!(name, "x"),
        other => panic!("expected EACCES, got {other:?}"),
    }
    // No client certificate at all: the TLS handshake is refused.
    let roots = conclave_rpc::tls::load_roots(&fx.certs.join("ca/root.crt")).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut opts = ClientOptions::plain();
    opts.tls = Some(conclave_rpc::stream::ClientTls {
        config: Arc::new(cfg),
        name: Role::MemServer.server_name(),
    });
    let ep = match &fx.spec {
        MemSpec::Smdish { endpoint } => endpoint.clone(),
        _ => unreachable!(),
    };
    let res = Connection::connect(&ep, &opts)
        .and_then(|mut c| c.call(proto::OPEN, &open::Request { name: "x", size: 8 }.encode()));
    assert!(res.is_err(), "a client without a certificate was served");
    // A certificate from another conclave's CA (trusting ours) is refused too.
    let foreign = certs(&fx.dir.path().join("foreign"));
    let mixed = Credentials::load(
        &fx.certs.join("ca/root.crt"),
        &foreign.join("edge/edge.crt"),
        &foreign.join("edge/edge.key"),
        Role::Edge,
    )
    .unwrap();
    let res = Connection::connect(&ep, &ClientOptions::mtls(&mixed, Role::MemServer).unwrap())
        .and_then(|mut c| c.call(proto::OPEN, &open::Request { name: "x", size: 8 }.encode()));
    assert!(res.is_err(), "a client with a foreign certificate was served");
    // And the client library says what is missing.
    match connect(&fx.spec, &MemOptions::default()) {
        Err(MemError::Config(m)) => assert!(m.contains("client certificate"), "{m}"),
        other => panic!("expected a config error, got {:?}", other.map(|s| s.kind())),
    }
}

/// An smuf memory file "counter" of 64 bytes, published once with byte 0 = 5:
/// the store, the publisher's handle and the sealed host file.
fn counter_at_5(fx: &Fixture) -> (Arc<dyn MemoryStore>, conclave_mem::MemoryFile, PathBuf) {
    let s = fx.store(Role::Edge);
    let mut f = s.open("counter", 64).unwrap();
    let mut g = f.lock().unwrap();
    g[0] = 5;
    g.unlock().unwrap();
    let seg = fx.host_file("seg");
    (s, f, seg)
}

#[test]
fn smuf_detects_flipped_bit_and_replayed_file_and_stays_up() {
    let fx = start(true);
    let (s, mut f, seg) = counter_at_5(&fx);
    let v1 = std::fs::read(&seg).unwrap();
    let mut plain = vec![0u8; 64];
    plain[0] = 5;
    assert_ne!(v1, plain, "the host file must not hold the plaintext");
    // A second opener has no plaintext of its own and reads the host file.
    let mut reader = s.open("counter", 64).unwrap();
    // Flip one bit: detected at the next lock, and the lock is given back.
    let mut bad = v1.clone();
    flip_bit_in(&mut bad, 10 * 8 + 2);
    std::fs::write(&seg, &bad).unwrap();
    assert!(matches!(
        reader.lock(),
        Err(MemError::Tampered { version: 1, .. })
    ));
    // The publisher knows version 1's plaintext and never reads the
    // tampered file: it sees its own value.
    let g = f.lock().unwrap();
    assert_eq!((g.version(), g[0]), (1, 5));
    g.release().unwrap();
    std::fs::write(&seg, &v1).unwrap();
    let mut g = reader.lock().unwrap();
    assert_eq!(g[0], 5);
    g[0] = 6;
    g.unlock().unwrap();
    // The publisher's plaintext is of version 1; version 2 is read and checked.
    let g = f.lock().unwrap();
    assert_eq!((g.version(), g[0]), (2, 6));
    g.release().unwrap();
    // Put the older copy back: a replay, detected by a fresh opener.
    let mut fresh = s.open("counter", 64).unwrap();
    std::fs::write(&seg, &v1).unwrap();
    assert!(matches!(fresh.lock(), Err(MemError::Tampered { version: 2, .. })));
    // A truncated file too.
    std::fs::write(&seg, &v1[..10]).unwrap();
    assert!(matches!(fresh.lock(), Err(MemError::Tampered { .. })));
    // The server is still up and serves other memory files.
    let mut other = s.open("other", 8).unwrap();
    let mut g = other.lock().unwrap();
    g[0] = 1;
    g.unlock().unwrap();
}

#[test]
fn async_client_shares_segments_with_blocking_clients() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let blocking = fx.store(Role::Client);
        let mut b = blocking.open("shared", 8).unwrap();
        let spec = fx.spec.clone();
        let certs = fx.certs.clone();
        fx.rt.block_on(async move {
            let store = AsyncMemoryStore::new(
                &spec,
                &MemOptions {
                    creds: Some(Credentials::from_dir(&certs, Role::Edge).unwrap()),
                    secret_file: None,
                },
            )
            .unwrap();
            let mut f = store.open("shared", 8).await.unwrap();
            for _ in 0..10 {
                let mut g = f.lock().await.unwrap();
                g[0] += 1;
                g.unlock().await.unwrap();
            }
            let (v, snap) = f.peek().await.unwrap().expect("a snapshot");
            assert_eq!((v, snap[0]), (10, 10), "sealed={sealed}");
            {
                // Dropped without unlock: published at the next operation.
                let mut g = f.lock().await.unwrap();
                g[0] += 1;
            }
            // The peek settles the pending publish first, then sees it.
            let (v, snap) = f.peek().await.unwrap().expect("a snapshot");
            assert_eq!((v, snap[0]), (11, 11), "sealed={sealed}");
            f.close().await.unwrap();
        });
        let g = b.lock().unwrap();
        assert_eq!(g[0], 11);
    }
}

#[test]
fn peek_reads_the_last_published_version_without_the_lock() {
    for sealed in [false, true] {
        let fx = start(sealed);
        let s = fx.store(Role::Edge);
        let mut writer = s.open("zone", 32).unwrap();
        let mut reader = s.open("zone", 32).unwrap();
        let (v, snap) = reader.peek().unwrap().expect("a snapshot");
        assert_eq!((v, snap.to_vec()), (0, vec![0; 32]), "sealed={sealed}");
        let mut g = writer.lock().unwrap();
        g[0] = 7;
        g.unlock().unwrap();
        // The writer holds the lock again with an unpublished change: a
        // peek neither waits for it nor sees the change.
        let mut g = writer.lock().unwrap();
        g[0] = 99;
        // Bounded: a peek that waited for the lock would never return.
        let (mut reader, v, first) = within(PATIENCE, move || {
            let (v, snap) = reader.peek().unwrap().expect("a snapshot");
            let first = snap[0];
            // Scribbling on a snapshot publishes nothing.
            snap[1] = 55;
            (reader, v, first)
        });
        assert_eq!((v, first), (1, 7), "sealed={sealed}");
        g.unlock().unwrap();
        let (v, snap) = reader.peek().unwrap().expect("a snapshot");
        assert_eq!((v, snap[0], snap[1]), (2, 99, 0), "sealed={sealed}");
        // Known version, asked again: the same bytes (smdish: not resent).
        let (v, snap) = reader.peek().unwrap().expect("a snapshot");
        assert_eq!((v, snap[0]), (2, 99), "sealed={sealed}");
    }
}

#[test]
fn peek_on_the_wire_leaves_out_a_known_segment_and_refuses_bad_input() {
    let fx = start(false);
    let mut c = fx.raw();
    let h = raw_open(&mut c, "z", 4);
    assert_eq!(raw_lock(&mut c, h), Status::OK);
    let r = c
        .call(
            proto::UNLOCK,
            &unlock::Request {
                handle: h,
                publish: unlock::Publish::Data(b"abcd"),
            }
            .encode(),
        )
        .unwrap();
    assert_eq!(r.status(), Status::OK);
    let peek = |c: &mut Connection, known| {
        let r = c
            .call(
                proto::PEEK,
                &peek::Request {
                    handle: h,
                    known_version: known,
                }
                .encode(),
            )
            .unwrap();
        peek::Reply::decode(&r.body, 64).unwrap()
    };
    assert!(
        peek(&mut c, 0)
            == peek::Reply::Dish {
                version: 1,
                data: Some(bytes::Bytes::from_static(b"abcd"))
            }
    );
    assert!(
        peek(&mut c, 1)
            == peek::Reply::Dish {
                version: 1,
                data: None
            }
    );
    // A bad handle is EBADF, a short body EPROTO; the server stays up.
    let r = c
        .call(
            proto::PEEK,
            &peek::Request {
                handle: 999,
                known_version: 0,
            }
            .encode(),
        )
        .unwrap();
    assert_eq!(r.status(), Status::EBADF);
    let r = c.call(proto::PEEK, &[1, 2]).unwrap();
    assert_eq!(r.status(), Status::EPROTO);
    assert!(matches!(peek(&mut c, 0), peek::Reply::Dish { version: 1, .. }));
}

#[test]
fn a_peek_at_a_tampered_smuf_file_gives_no_snapshot_and_the_lock_reports_it() {
    let fx = start(true);
    let (s, mut f, seg) = counter_at_5(&fx);
    let mut bad = std::fs::read(&seg).unwrap();
    flip_bit_in(&mut bad, 3 * 8);
    std::fs::write(&seg, &bad).unwrap();
    let mut other = s.open("counter", 64).unwrap();
    assert!(other.peek().unwrap().is_none());
    assert!(matches!(other.lock(), Err(MemError::Tampered { version: 1, .. })));
    // The publisher knows version 1 and never needs the host file.
    let (v, snap) = f.peek().unwrap().expect("a snapshot");
    assert_eq!((v, snap[0]), (1, 5));
}
