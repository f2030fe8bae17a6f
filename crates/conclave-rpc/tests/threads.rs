//! The threaded connection mode (`ConnectionMode::Threads`) against real
//! sockets: pipelining, errors in place, the idle and write timeouts, a
//! stalled peer, graceful shutdown with idle connections, the identity's
//! connection limit; the write timeout also on the reactor. (The connection cap, the same in both modes, is
//! `connection_limit_closes_extra_connections*` in rpc.rs.)
//!
//! Every test holds [`SERIAL`]: one of them counts the process's connection
//! threads by name, which the others' threads would disturb.

use conclave_rpc::frame::read_frame_sync;
use conclave_rpc::pki::SiteKey;
use conclave_rpc::stream::connect_sync;
use conclave_rpc::{
    AsyncConnection, BodyWriter, ClientOptions, Connection, ConnectionMode, Endpoint, Frame, ServerOptions,
    Status, CONNECTION_THREAD_NAME,
};
use conclave_testkit::{generate_certs, wait_until, wait_until_async};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod support;
use support::{edge_opts, start, ECHO, NAME_LEN, PATIENCE};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn threaded() -> ServerOptions {
    ServerOptions {
        connections: ConnectionMode::Threads,
        ..ServerOptions::default()
    }
}

/// Connection threads alive in this process.
fn connection_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == CONNECTION_THREAD_NAME)
        .count()
}

/// Reads `n` replies off a blocking stream.
fn replies(s: &mut impl Read, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|_| read_frame_sync(s, 4 << 20).unwrap().expect("a reply"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_answer_64_pipelined_frames_in_order_over_mtls() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    generate_certs(tmp.path(), SiteKey::EcdsaP256);
    let ep = Endpoint::Unix(tmp.path().join("p.sock"));
    let srv = start(ep, Some(tmp.path()), threaded()).await;
    let (ep, client) = (srv.endpoint.clone(), edge_opts(tmp.path()));
    let got = tokio::task::spawn_blocking(move || {
        let tls = client.tls.as_ref().unwrap();
        let mut s = connect_sync(&ep, Some(tls), PATIENCE, PATIENCE).unwrap();
        let burst: Vec<u8> = (0..64u32)
            .flat_map(|i| Frame::new(ECHO, i.to_be_bytes().to_vec()).encode())
            .collect();
        s.write_all(&burst).unwrap();
        s.flush().unwrap();
        replies(&mut s, 64)
    })
    .await
    .unwrap();
    let bodies: Vec<u32> = got
        .iter()
        .map(|f| u32::from_be_bytes(f.body[..].try_into().unwrap()))
        .collect();
    assert_eq!(bodies, (0..64).collect::<Vec<u32>>());
    assert!(got.iter().all(|f| f.status() == Status::OK));
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_answer_malformed_frames_in_place_within_a_pipeline() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("m.sock");
    let opts = ServerOptions {
        max_body: 1024,
        ..threaded()
    };
    let srv = start(Endpoint::Unix(sock.clone()), None, opts).await;
    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let mut truncated = vec![0, 0, 0, 50];
        truncated.extend_from_slice(b"short");
        let mut burst = Frame::new(ECHO, b"a".to_vec()).encode();
        burst.extend(Frame::new(NAME_LEN, truncated).encode());
        burst.extend(Frame::new(ECHO, vec![0u8; 2000]).encode());
        burst.extend(Frame::new(ECHO, b"b".to_vec()).encode());
        burst.extend(Frame::new(999, Vec::new()).encode());
        s.write_all(&burst).unwrap();
        let got = replies(&mut s, 5);
        // A body too large to drop closes the connection after its E2BIG.
        s.write_all(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
        let last = replies(&mut s, 1);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (got, last, rest)
    })
    .await
    .unwrap();
    let (got, last, rest) = got;
    let statuses: Vec<Status> = got.iter().map(Frame::status).collect();
    assert_eq!(
        statuses,
        [
            Status::OK,
            Status::EPROTO,
            Status::E2BIG,
            Status::OK,
            Status::ENOSYS
        ]
    );
    assert_eq!(&got[0].body[..], b"a");
    assert_eq!(&got[3].body[..], b"b");
    assert_eq!(last[0].status(), Status::E2BIG);
    assert!(rest.is_empty(), "closed after the E2BIG, got {rest:?}");
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_close_an_idle_connection_after_the_timeout() {
    let _serial = SERIAL.lock().await;
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(200),
        ..threaded()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), None, opts).await;
    let mut c = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
        .await
        .unwrap();
    assert_eq!(&c.call(ECHO, b"a").await.unwrap().body[..], b"a");
    let svc = srv.svc.clone();
    assert!(
        wait_until_async(PATIENCE, || svc.closed.load(Ordering::SeqCst) == 1).await,
        "the idle connection was never closed"
    );
    assert!(c.call(ECHO, b"b").await.is_err(), "idle connection was closed");
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stalled_inside_a_frame_blocks_no_one_and_is_closed_at_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let idle = Duration::from_millis(500);
    let opts = ServerOptions {
        idle_timeout: idle,
        ..threaded()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), None, opts).await;
    let Endpoint::Tcp(addr) = srv.endpoint.clone() else {
        unreachable!()
    };
    let staller = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr.as_str()).unwrap();
        let t0 = Instant::now();
        s.write_all(&[0, 0, 0, 0, 0, 0, 0, 100]).unwrap();
        s.write_all(&[1u8; 10]).unwrap();
        // One more byte half way through the timeout: a drip does not
        // restart the clock.
        std::thread::sleep(idle / 2);
        s.write_all(&[1u8]).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (rest, t0.elapsed())
    });
    let ep = srv.endpoint.clone();
    let served = tokio::task::spawn_blocking(move || {
        let mut c = Connection::connect(&ep, &ClientOptions::plain()).unwrap();
        (0..50u32)
            .filter(|i| c.call(ECHO, &i.to_be_bytes()).unwrap().body[..] == i.to_be_bytes())
            .count()
    })
    .await
    .unwrap();
    assert_eq!(served, 50);
    let (rest, after) = staller.await.unwrap();
    assert!(rest.is_empty(), "no reply to half a frame, just a close");
    assert!(after >= idle, "closed after {after:?}, before the idle timeout");
    assert!(
        after < idle * 4,
        "closed after {after:?}, long past the idle timeout"
    );
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_dropped_at_the_write_timeout() {
    never_reading_peer_is_dropped(ConnectionMode::Threads).await;
}

/// The reactor's connection tasks have the same write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_dropped_at_the_write_timeout_on_the_reactor() {
    never_reading_peer_is_dropped(ConnectionMode::Reactor).await;
}

async fn never_reading_peer_is_dropped(connections: ConnectionMode) {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("w.sock");
    let opts = ServerOptions {
        write_timeout: Duration::from_millis(300),
        connections,
        ..ServerOptions::default()
    };
    let srv = start(Endpoint::Unix(sock.clone()), None, opts).await;
    // 32 MiB of echoes, never read: far more than both socket buffers.
    let writer = std::thread::spawn(move || {
        let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        let req = Frame::new(ECHO, vec![7u8; 1 << 20]).encode();
        let mut w = &s;
        for _ in 0..32 {
            if w.write_all(&req).is_err() {
                break;
            }
        }
        s
    });
    let svc = srv.svc.clone();
    let t0 = Instant::now();
    assert!(
        wait_until_async(PATIENCE, || svc.closed.load(Ordering::SeqCst) == 1).await,
        "a peer that never reads held its connection ({connections:?})"
    );
    assert!(t0.elapsed() < PATIENCE);
    let _held = writer.join().unwrap();
    // The server is free: shutdown does not wait for that peer.
    srv.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), srv.done)
        .await
        .expect("shutdown is prompt")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_idle_connection_threads_is_prompt_and_leaves_no_thread() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    generate_certs(tmp.path(), SiteKey::EcdsaP256);
    // The default idle timeout (300 s): only shutdown ends these connections.
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), Some(tmp.path()), threaded()).await;
    let mut clients = Vec::new();
    for i in 0..3u8 {
        let mut c = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
            .await
            .unwrap();
        assert_eq!(&c.call(ECHO, &[i]).await.unwrap().body[..], &[i]);
        clients.push(c);
    }
    assert!(
        wait_until_async(PATIENCE, || connection_threads() == 3).await,
        "one thread per connection: {}",
        connection_threads()
    );
    let t0 = Instant::now();
    srv.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), srv.done)
        .await
        .expect("shutdown with idle connections is prompt")
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(
        srv.svc.closed.load(Ordering::SeqCst),
        3,
        "every connection closed"
    );
    // The server waited for its threads; they are gone or going.
    assert!(
        wait_until(PATIENCE, || connection_threads() == 0),
        "connection threads outlived the server: {}",
        connection_threads()
    );
    for mut c in clients {
        assert!(c.call(ECHO, b"late").await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_refuse_an_identity_over_its_connection_limit_with_emfile() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    generate_certs(tmp.path(), SiteKey::EcdsaP256);
    let opts = ServerOptions {
        max_conns_per_identity: 1,
        ..threaded()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), Some(tmp.path()), opts).await;
    let mut first = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .unwrap();
    let mut w = BodyWriter::new();
    w.str("name");
    assert_eq!(
        &first.call(NAME_LEN, &w.finish()).await.unwrap().body[..],
        &4u32.to_be_bytes()
    );
    // The identity's second connection: EMFILE, as in reactor mode.
    let mut second = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .unwrap();
    assert_eq!(second.call(ECHO, b"x").await.unwrap().status(), Status::EMFILE);
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}
