//! End-to-end tests of the transport: real sockets, real mTLS, misbehaving
//! clients, shutdown with a request in flight.

use conclave_rpc::Role;
use conclave_rpc::{
    AsyncConnection, ClientOptions, Connection, ConnectionMode, Credentials, Endpoint, Frame, PeerInfo, Pool,
    Server, ServerOptions, Service, Shutdown, Status,
};
use conclave_testkit::{wait_until_async, without_client_cert};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_round_trip_over_tcp_and_unix() {
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let sock = tmp.path().join("s.sock");
    let eps = [Endpoint::Tcp("127.0.0.1:0".into()), Endpoint::Unix(sock.clone())];
    let modes = [ConnectionMode::Reactor, ConnectionMode::Threads];
    for (ep, connections) in eps.iter().flat_map(|ep| modes.map(|m| (ep.clone(), m))) {
        let opts = ServerOptions {
            connections,
            ..ServerOptions::default()
        };
        let srv = start(ep, Some(tmp.path()), opts).await;
        let mut c = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
            .await
            .unwrap();
        for size in [0usize, 1, 4096, 300_000] {
            let body: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let reply = c.call(ECHO, &body).await.unwrap();
            assert_eq!(reply.status(), Status::OK);
            assert_eq!(&reply.body[..], &body[..]);
        }
        // the blocking client too
        let ep2 = srv.endpoint.clone();
        let dir = tmp.path().to_path_buf();
        let got = tokio::task::spawn_blocking(move || {
            let mut c = Connection::connect(&ep2, &edge_opts(&dir)).unwrap();
            c.call(ECHO, b"blocking").unwrap()
        })
        .await
        .unwrap();
        assert_eq!(&got.body[..], b"blocking");
        srv.shutdown.trigger();
        srv.done.await.unwrap().unwrap();
    }
    assert!(!sock.exists(), "socket file removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_client_without_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start_mtls(tmp.path()).await;
    let opts = without_client_cert(tmp.path(), Role::FileServer);
    // TLS 1.3: the client finishes first, so the refusal shows on the first call.
    let res = match AsyncConnection::connect(&srv.endpoint, &opts).await {
        Err(e) => Err(e),
        Ok(mut c) => c.call(ECHO, b"x").await,
    };
    let err = res.expect_err("server must refuse a client without a certificate");
    assert!(
        err.to_string().contains("connection") || err.to_string().contains("connect"),
        "{err}"
    );
    // and it still serves a proper client
    let mut good = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .unwrap();
    assert_eq!(&good.call(ECHO, b"ok").await.unwrap().body[..], b"ok");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_client_certificate_from_another_ca() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    certs(theirs.path());
    let srv = start_mtls(ours.path()).await;
    // trusts our CA (so the server check passes) but presents their identity
    let creds = Credentials::load(
        &ours.path().join("ca/root.crt"),
        &theirs.path().join("edge/edge.crt"),
        &theirs.path().join("edge/edge.key"),
        Role::Edge,
    )
    .unwrap();
    let opts = ClientOptions::mtls(&creds, Role::FileServer).unwrap();
    let res = match AsyncConnection::connect(&srv.endpoint, &opts).await {
        Err(e) => Err(e),
        Ok(mut c) => c.call(ECHO, b"x").await,
    };
    assert!(res.is_err(), "a certificate from another CA must be refused");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_server_with_wrong_role_name() {
    let tmp = tempfile::tempdir().unwrap();
    // the server presents the fileserver identity; the client wants a key server
    let srv = start_mtls(tmp.path()).await;
    let opts = ClientOptions::mtls(
        &Credentials::from_dir(tmp.path(), Role::Edge).unwrap(),
        Role::KeyServer,
    )
    .unwrap();
    let err = AsyncConnection::connect(&srv.endpoint, &opts)
        .await
        .err()
        .expect("wrong server role must fail the handshake");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_refuses_a_role_it_does_not_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start_mtls(tmp.path()).await;
    let opts = ClientOptions::mtls(
        &Credentials::from_dir(tmp.path(), Role::Client).unwrap(),
        Role::FileServer,
    )
    .unwrap();
    let mut c = AsyncConnection::connect(&srv.endpoint, &opts).await.unwrap();
    assert_eq!(c.call(ECHO, b"x").await.unwrap().status(), Status::EACCES);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_truncated_frames_get_errors_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("p.sock");
    let opts = ServerOptions {
        max_body: 1024,
        ..ServerOptions::default()
    };
    let srv = start(Endpoint::Unix(sock.clone()), None, opts).await;
    let ep = srv.endpoint.clone();
    let other = tokio::spawn(async move {
        let mut c = AsyncConnection::connect(&ep, &ClientOptions::plain())
            .await
            .unwrap();
        for i in 0..50u32 {
            let r = c.call(ECHO, &i.to_be_bytes()).await.unwrap();
            assert_eq!(&r.body[..], &i.to_be_bytes());
        }
    });
    let sock2 = sock.clone();
    tokio::task::spawn_blocking(move || {
        // oversized: E2BIG, then the same connection still works
        let mut s = std::os::unix::net::UnixStream::connect(&sock2).unwrap();
        s.write_all(&Frame::new(ECHO, vec![0u8; 2000]).encode()).unwrap();
        let f = conclave_rpc::frame::read_frame_sync(&mut s, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(f.status(), Status::E2BIG);
        s.write_all(&Frame::new(ECHO, b"after".to_vec()).encode())
            .unwrap();
        let f = conclave_rpc::frame::read_frame_sync(&mut s, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(&f.body[..], b"after");
        // a 4 GiB announcement: E2BIG and the connection is closed
        s.write_all(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
        let f = conclave_rpc::frame::read_frame_sync(&mut s, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(f.status(), Status::E2BIG);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
        // truncated frame: header says 100 bytes, 10 arrive, then EOF
        let mut s = std::os::unix::net::UnixStream::connect(&sock2).unwrap();
        s.write_all(&[0, 0, 0, 0, 0, 0, 0, 100]).unwrap();
        s.write_all(&[1u8; 10]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no reply to a truncated frame, just a close");
        // short header
        let mut s = std::os::unix::net::UnixStream::connect(&sock2).unwrap();
        s.write_all(&[0, 0, 0]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
    })
    .await
    .unwrap();
    other.await.unwrap();
    let mut c = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
        .await
        .unwrap();
    // truncated field inside a well-formed frame: EPROTO; unknown opcode: ENOSYS
    let mut body = vec![0, 0, 0, 50];
    body.extend_from_slice(b"short");
    assert_eq!(c.call(NAME_LEN, &body).await.unwrap().status(), Status::EPROTO);
    assert_eq!(c.call(999, b"").await.unwrap().status(), Status::ENOSYS);
    let mut w = conclave_rpc::BodyWriter::new();
    w.str(&"n".repeat(300));
    assert_eq!(
        c.call(NAME_LEN, &w.finish()).await.unwrap().status(),
        Status::ENAMETOOLONG
    );
    srv.shutdown.trigger();
    srv.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_request_in_flight() {
    graceful_shutdown_finishes_request_in_flight_in(ConnectionMode::Reactor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_request_in_flight_with_connection_threads() {
    graceful_shutdown_finishes_request_in_flight_in(ConnectionMode::Threads).await;
}

async fn graceful_shutdown_finishes_request_in_flight_in(connections: ConnectionMode) {
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let opts = ServerOptions {
        connections,
        ..ServerOptions::default()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), Some(tmp.path()), opts).await;
    let mut c = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .unwrap();
    let mut idle = AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .unwrap();
    assert_eq!(&idle.call(ECHO, b"hi").await.unwrap().body[..], b"hi");
    let inflight = tokio::spawn(async move { c.call(SLOW_ECHO, b"in flight").await });
    let svc = srv.svc.clone();
    assert!(
        wait_until_async(PATIENCE, || svc.slow_started.load(Ordering::SeqCst) == 1).await,
        "the slow request never reached the service"
    );
    srv.shutdown.trigger();
    let reply = inflight.await.unwrap().expect("request in flight is answered");
    assert_eq!(&reply.body[..], b"in flight");
    srv.done.await.unwrap().unwrap();
    assert_eq!(
        srv.svc.closed.load(Ordering::SeqCst),
        2,
        "both connections closed"
    );
    assert!(AsyncConnection::connect(&srv.endpoint, &edge_opts(tmp.path()))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_closes_extra_connections() {
    connection_limit_closes_extra_connections_in(ConnectionMode::Reactor).await;
}

/// The connection over the cap gets what it gets in reactor mode: closed
/// at accept, unanswered; the slot a connection thread held is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_closes_extra_connections_with_connection_threads() {
    connection_limit_closes_extra_connections_in(ConnectionMode::Threads).await;
}

async fn connection_limit_closes_extra_connections_in(connections: ConnectionMode) {
    let opts = ServerOptions {
        max_connections: 1,
        connections,
        ..ServerOptions::default()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), None, opts).await;
    let mut first = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
        .await
        .unwrap();
    assert!(first.call(ECHO, b"a").await.is_ok());
    let mut second = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
        .await
        .unwrap();
    assert!(second.call(ECHO, b"b").await.is_err(), "over the limit");
    drop(first);
    // The slot is freed once the server has seen the close: wait for that,
    // retrying with fresh connections (each refused one frees nothing).
    let deadline = std::time::Instant::now() + PATIENCE;
    let reused = loop {
        let mut third = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
            .await
            .unwrap();
        let served = third.call(ECHO, b"c").await.is_ok();
        if served || std::time::Instant::now() >= deadline {
            break served;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reused, "a freed slot is reused");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_after_timeout() {
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let srv = start(Endpoint::Tcp("127.0.0.1:0".into()), None, opts).await;
    let mut c = AsyncConnection::connect(&srv.endpoint, &ClientOptions::plain())
        .await
        .unwrap();
    assert!(c.call(ECHO, b"a").await.is_ok());
    // Idle until the server has closed the connection (the 200 ms timeout).
    let svc = srv.svc.clone();
    assert!(
        wait_until_async(PATIENCE, || svc.closed.load(Ordering::SeqCst) == 1).await,
        "the idle connection was never closed"
    );
    assert!(c.call(ECHO, b"b").await.is_err(), "idle connection was closed");
    srv.stop().await;
}

#[test]
fn pool_reconnects_after_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let sock = tmp.path().join("r.sock");
    let ep = Endpoint::Unix(sock);
    let pool = Pool::new(ep.clone(), edge_opts(tmp.path()));
    for round in 0..2 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let srv = rt.block_on(start(ep.clone(), Some(tmp.path()), ServerOptions::default()));
        for i in 0..3u8 {
            let r = pool.call(ECHO, &[round, i]).unwrap();
            assert_eq!(&r.body[..], &[round, i]);
        }
        srv.shutdown.trigger();
        rt.block_on(srv.done).unwrap().unwrap();
    }
}

/// Admits every peer it is shown and counts them: only the server loop's
/// one admission rule stands between it and a certificate without a role.
struct AdmitAll {
    opened: AtomicUsize,
}

impl Service for AdmitAll {
    type Conn = ();
    fn open(&self, _peer: &PeerInfo) -> Result<(), Status> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn call(&self, _conn: &mut (), req: Frame) -> Frame {
        Frame::ok(req.body)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_a_role_is_refused_before_any_service() {
    let tmp = tempfile::tempdir().unwrap();
    certs(tmp.path());
    let tls = Credentials::from_dir(tmp.path(), Role::FileServer)
        .unwrap()
        .server_config()
        .unwrap();
    let server = Server::bind(
        &Endpoint::Tcp("127.0.0.1:0".into()),
        Some(tls),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let ep = server.local_endpoint().clone();
    let shutdown = Shutdown::new();
    let svc = Arc::new(AdmitAll {
        opened: AtomicUsize::new(0),
    });
    let done = tokio::spawn(server.serve(svc.clone(), shutdown.clone()));
    // The site certificate is signed by the conclave CA but names `localhost`,
    // no role: refused with EACCES, and the service never sees the peer.
    let site = Credentials::load(
        &tmp.path().join("ca/root.crt"),
        &tmp.path().join("site/server.crt"),
        &tmp.path().join("site/server.key"),
        Role::Client,
    )
    .unwrap();
    let opts = ClientOptions::mtls(&site, Role::FileServer).unwrap();
    let mut c = AsyncConnection::connect(&ep, &opts).await.unwrap();
    assert_eq!(c.call(0, b"x").await.unwrap().status(), Status::EACCES);
    assert_eq!(svc.opened.load(Ordering::SeqCst), 0);
    // A role identity is admitted by the same server.
    let mut c = AsyncConnection::connect(&ep, &edge_opts(tmp.path()))
        .await
        .unwrap();
    let reply = c.call(0, b"x").await.unwrap();
    assert_eq!((reply.status(), &reply.body[..]), (Status::OK, &b"x"[..]));
    assert_eq!(svc.opened.load(Ordering::SeqCst), 1);
    shutdown.trigger();
    done.await.unwrap().unwrap();
}
