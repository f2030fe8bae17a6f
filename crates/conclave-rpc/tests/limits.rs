//! Issue 16, the RPC server loop: no peer can stall or exhaust a server.
//! In-process servers on loopback with real mTLS: idle TCP sockets are shed
//! for authenticated clients, one address cannot hold every pending slot,
//! and each identity is limited in connections (EMFILE) and in requests in
//! flight (EAGAIN) while other identities keep being served.

use conclave_rpc::pki::SiteKey;
use conclave_rpc::Role;
use conclave_rpc::{
    AsyncConnection, ClientOptions, ConnectionMode, Credentials, Endpoint, Frame, PeerInfo, Server,
    ServerOptions, Service, Shutdown, Status,
};
use conclave_testkit::{generate_certs, wait_until_async};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

const ECHO: u32 = 0;
/// Waits for the test to open the gate, then echoes.
const HOLD: u32 = 1;

/// A generous bound for conditions a test waits on.
const PATIENCE: Duration = Duration::from_secs(30);

/// Serves every role; HOLD requests wait on `gate`.
struct Gate {
    gate: Semaphore,
    held: AtomicUsize,
}

impl Service for Gate {
    type Conn = ();
    fn open(&self, _peer: &PeerInfo) -> Result<(), Status> {
        Ok(())
    }
    async fn call(&self, _conn: &mut (), req: Frame) -> Frame {
        if req.code == HOLD {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.acquire().await.map(|p| p.forget());
        }
        Frame::ok(req.body)
    }
}

struct Running {
    endpoint: Endpoint,
    addr: String,
    shutdown: Shutdown,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    svc: Arc<Gate>,
}

impl Running {
    async fn start(dir: &Path, opts: ServerOptions) -> Running {
        generate_certs(dir, SiteKey::EcdsaP256);
        let tls = Credentials::from_dir(dir, Role::KeyServer)
            .unwrap()
            .server_config()
            .unwrap();
        let server = Server::bind(&Endpoint::Tcp("127.0.0.1:0".into()), Some(tls), opts)
            .await
            .unwrap();
        let endpoint = server.local_endpoint().clone();
        let Endpoint::Tcp(addr) = endpoint.clone() else {
            unreachable!()
        };
        let shutdown = Shutdown::new();
        let svc = Arc::new(Gate {
            gate: Semaphore::new(0),
            held: AtomicUsize::new(0),
        });
        let done = tokio::spawn(server.serve(svc.clone(), shutdown.clone()));
        Running {
            endpoint,
            addr,
            shutdown,
            done,
            svc,
        }
    }

    async fn connect(&self, dir: &Path, role: Role) -> AsyncConnection {
        let opts = ClientOptions::mtls(&Credentials::from_dir(dir, role).unwrap(), Role::KeyServer).unwrap();
        AsyncConnection::connect(&self.endpoint, &opts).await.unwrap()
    }

    async fn stop(self) {
        self.svc.gate.add_permits(1_000);
        self.shutdown.trigger();
        self.done.await.unwrap().expect("the server loop ends cleanly");
    }
}

async fn echo(c: &mut AsyncConnection) -> Status {
    c.call(ECHO, b"x").await.unwrap().status()
}

/// True once the server has closed `s` (EOF or reset), within PATIENCE.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// An idle TCP socket from source address `from` (any 127.0.0.0/8 address
/// is loopback on Linux; a second one lets a test tell "the attacker's
/// address" from the legitimate client's 127.0.0.1).
async fn idle_socket(from: &str, to: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_shed_oldest_first_for_authenticated_clients() {
    idle_sockets_are_shed_oldest_first_for_authenticated_clients_in(ConnectionMode::Reactor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_shed_oldest_first_for_authenticated_clients_with_connection_threads() {
    idle_sockets_are_shed_oldest_first_for_authenticated_clients_in(ConnectionMode::Threads).await;
}

async fn idle_sockets_are_shed_oldest_first_for_authenticated_clients_in(connections: ConnectionMode) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        connections,
        max_connections: 8,
        handshake_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
    let srv = Running::start(tmp.path(), opts).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(idle_socket("127.0.0.2", &srv.addr).await);
    }
    // The two oldest were shed for the two newest: slots are full of idle peers.
    assert!(
        closed_by_server(&mut idle[0]).await,
        "oldest idle socket not shed"
    );
    assert!(
        closed_by_server(&mut idle[1]).await,
        "second oldest idle socket not shed"
    );
    let t = Instant::now();
    let mut edge = srv.connect(tmp.path(), Role::Edge).await;
    assert_eq!(echo(&mut edge).await, Status(0));
    let elapsed = t.elapsed();
    assert!(elapsed < Duration::from_secs(1), "served in {elapsed:?}");
    assert!(
        closed_by_server(&mut idle[2]).await,
        "the edge's slot came from the oldest"
    );
    // With every slot authenticated, a new connection is refused at accept
    // and the authenticated ones are untouched.
    let mut more = Vec::new();
    for _ in 0..7 {
        let mut c = srv.connect(tmp.path(), Role::Client).await;
        assert_eq!(echo(&mut c).await, Status(0));
        more.push(c);
    }
    let mut late = idle_socket("127.0.0.2", &srv.addr).await;
    assert!(
        closed_by_server(&mut late).await,
        "a connection over full authenticated slots is closed"
    );
    assert_eq!(echo(&mut edge).await, Status(0));
    for c in &mut more {
        assert_eq!(echo(c).await, Status(0));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_pending_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        max_conns_per_addr: 3,
        handshake_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
    let srv = Running::start(tmp.path(), opts).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(idle_socket("127.0.0.2", &srv.addr).await);
    }
    // A 4th pending socket from the same address takes the slot of that
    // address's oldest one: the address never holds more than 3.
    let mut fourth = idle_socket("127.0.0.2", &srv.addr).await;
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the oldest pending socket of the address is shed"
    );
    // Another address is served, and the address's newer sockets stay open.
    let mut edge = srv.connect(tmp.path(), Role::Edge).await;
    assert_eq!(echo(&mut edge).await, Status(0));
    for s in idle[1..].iter_mut().chain(std::iter::once(&mut fourth)) {
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.read(&mut b))
                .await
                .is_err(),
            "a pending socket within the limit was closed"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sharing_the_attackers_address_still_gets_in() {
    // On loopback the attacker and the edge share 127.0.0.1: an address at
    // its pending limit sheds its own oldest socket, not the newcomer, so the
    // legitimate client's handshake gets a slot.
    let tmp = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        max_conns_per_addr: 4,
        handshake_timeout: Duration::from_secs(60),
        ..ServerOptions::default()
    };
    let srv = Running::start(tmp.path(), opts).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(idle_socket("127.0.0.1", &srv.addr).await);
    }
    let mut edge = srv.connect(tmp.path(), Role::Edge).await;
    assert_eq!(echo(&mut edge).await, Status(0));
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the oldest idle socket was shed"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_identity_limits_refuse_with_emfile_and_eagain() {
    per_identity_limits_refuse_with_emfile_and_eagain_in(ConnectionMode::Reactor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_identity_limits_refuse_with_emfile_and_eagain_with_connection_threads() {
    per_identity_limits_refuse_with_emfile_and_eagain_in(ConnectionMode::Threads).await;
}

async fn per_identity_limits_refuse_with_emfile_and_eagain_in(connections: ConnectionMode) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        connections,
        max_conns_per_identity: 2,
        max_inflight_per_identity: 1,
        ..ServerOptions::default()
    };
    let srv = Running::start(tmp.path(), opts).await;
    let dir = tmp.path();
    let mut e1 = srv.connect(dir, Role::Edge).await;
    let mut e2 = srv.connect(dir, Role::Edge).await;
    assert_eq!(echo(&mut e1).await, Status(0));
    assert_eq!(echo(&mut e2).await, Status(0));
    // A third connection of the same identity: EMFILE, then closed.
    let mut e3 = srv.connect(dir, Role::Edge).await;
    assert_eq!(echo(&mut e3).await, Status::EMFILE);
    assert!(
        e3.call(ECHO, b"x").await.is_err(),
        "the refused connection is closed"
    );
    // Another identity is not affected.
    let mut c1 = srv.connect(dir, Role::Client).await;
    assert_eq!(echo(&mut c1).await, Status(0));

    // One request of the edge in flight: the edge's next one gets EAGAIN on
    // a connection that stays usable; the client's requests are served.
    let hold = tokio::spawn(async move {
        let st = e1.call(HOLD, b"h").await.unwrap().status();
        (st, e1)
    });
    let svc = srv.svc.clone();
    assert!(wait_until_async(PATIENCE, || svc.held.load(Ordering::SeqCst) == 1).await);
    assert_eq!(echo(&mut e2).await, Status::EAGAIN);
    assert_eq!(echo(&mut c1).await, Status(0));
    srv.svc.gate.add_permits(1);
    let (st, mut e1) = hold.await.unwrap();
    assert_eq!(st, Status(0));
    assert_eq!(echo(&mut e2).await, Status(0));

    // A closed connection frees its identity's place.
    drop(e2);
    let deadline = Instant::now() + PATIENCE;
    let served = loop {
        let mut e = srv.connect(dir, Role::Edge).await;
        let st = echo(&mut e).await;
        if st == Status(0) || Instant::now() >= deadline {
            break st;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(served, Status(0));
    assert_eq!(echo(&mut e1).await, Status(0));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_at_the_handshake_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let srv = Running::start(tmp.path(), opts).await;
    let t = Instant::now();
    let mut s = idle_socket("127.0.0.1", &srv.addr).await;
    assert!(closed_by_server(&mut s).await);
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(10),
        "closed after {elapsed:?}"
    );
    srv.stop().await;
}
