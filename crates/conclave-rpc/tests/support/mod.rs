//! What the transport's integration tests share: an echo service and an
//! in-process server of it.
#![allow(dead_code)]

use conclave_rpc::pki::SiteKey;
use conclave_rpc::Role;
use conclave_rpc::{
    BodyReader, ClientOptions, Credentials, Endpoint, Frame, PeerInfo, Server, ServerOptions, Service,
    Shutdown, Status,
};
use conclave_testkit::generate_certs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const ECHO: u32 = 0;
pub const SLOW_ECHO: u32 = 1;
pub const NAME_LEN: u32 = 2;

/// Echoes bodies; refuses clients whose role is not `edge`.
pub struct Echo {
    pub closed: AtomicUsize,
    /// SLOW_ECHO requests received (so a test knows one is in flight).
    pub slow_started: AtomicUsize,
}

impl Service for Echo {
    type Conn = ();
    fn open(&self, peer: &PeerInfo) -> Result<(), Status> {
        if peer.role.is_some() {
            peer.require_role(&[Role::Edge])?;
        }
        Ok(())
    }
    async fn call(&self, _conn: &mut (), req: Frame) -> Frame {
        match req.code {
            ECHO => Frame::ok(req.body),
            SLOW_ECHO => {
                self.slow_started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await;
                Frame::ok(req.body)
            }
            NAME_LEN => {
                let mut r = BodyReader::new(&req.body);
                match r.name(255).and_then(|n| r.finish().map(|_| n.len())) {
                    Ok(n) => Frame::ok((n as u32).to_be_bytes().to_vec()),
                    Err(st) => Frame::error(st),
                }
            }
            _ => Frame::error(Status::ENOSYS),
        }
    }
    fn close(&self, _conn: ()) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn certs(dir: &Path) {
    generate_certs(dir, SiteKey::EcdsaP256);
}

/// A generous bound for conditions a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Running {
    pub endpoint: Endpoint,
    pub shutdown: Shutdown,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
    pub svc: Arc<Echo>,
}

pub async fn start(ep: Endpoint, certdir: Option<&Path>, opts: ServerOptions) -> Running {
    let tls = certdir.map(|d| {
        Credentials::from_dir(d, Role::FileServer)
            .unwrap()
            .server_config()
            .unwrap()
    });
    let server = Server::bind(&ep, tls, opts).await.unwrap();
    let endpoint = server.local_endpoint().clone();
    let shutdown = Shutdown::new();
    let svc = Arc::new(Echo {
        closed: AtomicUsize::new(0),
        slow_started: AtomicUsize::new(0),
    });
    let done = tokio::spawn(server.serve(svc.clone(), shutdown.clone()));
    Running {
        endpoint,
        shutdown,
        done,
        svc,
    }
}

/// Certificates in `dir` and a server on a loopback TCP port presenting the
/// file-server identity from them: the mTLS setup most tests need.
pub async fn start_mtls(dir: &Path) -> Running {
    certs(dir);
    start(
        Endpoint::Tcp("127.0.0.1:0".into()),
        Some(dir),
        ServerOptions::default(),
    )
    .await
}

impl Running {
    /// Shuts the server down and checks that serving ended without error.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.done.await.unwrap().expect("the server loop ends cleanly");
    }
}

pub fn edge_opts(dir: &Path) -> ClientOptions {
    ClientOptions::mtls(&Credentials::from_dir(dir, Role::Edge).unwrap(), Role::FileServer).unwrap()
}
