//! What the key-server integration tests share: an in-process key server
//! with a site key, a relay that can hold or cut its connections, and a
//! signature check as a TLS peer makes it.
#![allow(dead_code)]

use conclave_keys::rustls::{self, SignatureScheme};
use conclave_keys::{KeyServer, KeyServerOptions, KeyStore};
use conclave_rpc::pki::SiteKey;
use conclave_rpc::Role;
use conclave_rpc::{ConnectionMode, Credentials, Endpoint, Server, ServerOptions, Shutdown};
use conclave_testkit::generate_certs;
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::FromDer;

/// Verifies `sig` over `msg` with the public key `spki` as a TLS peer would.
pub fn verify(spki: &[u8], scheme: SignatureScheme, msg: &[u8], sig: &[u8]) -> bool {
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).unwrap();
    let raw = &info.subject_public_key.data;
    let prov = rustls::crypto::aws_lc_rs::default_provider();
    let algs = prov
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("no verifier for {scheme:?}"));
    algs.iter().any(|a| a.verify_signature(raw, msg, sig).is_ok())
}

/// A TLS server config that signs with `ck` and a client config trusting the
/// conclave CA in `certs`, both limited to `versions`; the client never
/// resumes, so every handshake is a full one (and signs).
pub fn tls_pair(
    ck: Arc<rustls::sign::CertifiedKey>,
    certs: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck))),
    );
    let mut roots = rustls::RootCertStore::empty();
    for c in conclave_rpc::tls::load_certs(&certs.join("ca/root.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    (server, Arc::new(client))
}

/// A key server on a background multi-thread runtime; stops on drop.
pub struct Running {
    pub shutdown: Shutdown,
    pub thread: Option<std::thread::JoinHandle<()>>,
    pub endpoint: Endpoint,
    pub _dir: tempfile::TempDir,
    pub certs: std::path::PathBuf,
    /// How it was started (a restart keeps them).
    pub opts: KeyServerOptions,
    /// Its connection mode (a restart keeps it).
    pub connections: ConnectionMode,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let served = t.join();
            // The server loop must end cleanly (unless the test already failed).
            if !std::thread::panicking() {
                served.expect("the key server ended with an error");
            }
        }
    }
}

pub fn start(site_key: SiteKey) -> Running {
    start_with(site_key, KeyServerOptions::default())
}

/// [`start`] with the key server's options (e.g. its signing pool).
pub fn start_with(site_key: SiteKey, opts: KeyServerOptions) -> Running {
    start_in(site_key, opts, KeyServer::server_options().connections)
}

/// [`start_with`] serving connections in `connections` mode.
pub fn start_in(site_key: SiteKey, opts: KeyServerOptions, connections: ConnectionMode) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    generate_certs(&certs, site_key);
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::rename(certs.join("site/server.key"), keys.join("server.key")).unwrap();
    let at = "tcp://127.0.0.1:0".parse().unwrap();
    let (shutdown, thread, endpoint) = serve_in(&keys, &certs, &at, &opts, connections);
    Running {
        shutdown,
        thread: Some(thread),
        endpoint,
        _dir: dir,
        certs,
        opts,
        connections,
    }
}

/// A key server over the keys of `keys` on `at`, on its own thread.
pub fn serve(keys: &Path, certs: &Path, at: &Endpoint) -> (Shutdown, std::thread::JoinHandle<()>, Endpoint) {
    serve_with(keys, certs, at, &KeyServerOptions::default())
}

/// [`serve`] with the key server's options.
pub fn serve_with(
    keys: &Path,
    certs: &Path,
    at: &Endpoint,
    opts: &KeyServerOptions,
) -> (Shutdown, std::thread::JoinHandle<()>, Endpoint) {
    serve_in(keys, certs, at, opts, KeyServer::server_options().connections)
}

/// [`serve_with`] serving connections in `connections` mode.
pub fn serve_in(
    keys: &Path,
    certs: &Path,
    at: &Endpoint,
    opts: &KeyServerOptions,
    connections: ConnectionMode,
) -> (Shutdown, std::thread::JoinHandle<()>, Endpoint) {
    let store = KeyStore::load_dir(keys).unwrap();
    let svc = Arc::new(KeyServer::new(store, opts).unwrap());
    let creds = Credentials::from_dir(certs, Role::KeyServer).unwrap();
    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let (sd, at) = (shutdown.clone(), at.clone());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server_opts = ServerOptions {
                connections,
                ..KeyServer::server_options()
            };
            let server = Server::bind(&at, Some(creds.server_config().unwrap()), server_opts)
                .await
                .unwrap();
            tx.send(server.local_endpoint().clone()).unwrap();
            server.serve(svc, sd).await.unwrap();
        });
    });
    let endpoint = rx.recv().unwrap();
    (shutdown, thread, endpoint)
}

impl Running {
    /// Stops the key server (in-flight requests finish), then starts it again
    /// on the same address once `between` has run.
    pub fn restart(&mut self, between: impl FnOnce()) {
        self.shutdown.trigger();
        self.thread.take().unwrap().join().unwrap();
        between();
        let keys = self._dir.path().join("keys");
        let (shutdown, thread, endpoint) =
            serve_in(&keys, &self.certs, &self.endpoint, &self.opts, self.connections);
        assert_eq!(endpoint, self.endpoint);
        self.shutdown = shutdown;
        self.thread = Some(thread);
    }
}

/// A TCP relay between a client and a key server that can stop passing
/// replies on (`hold`) and be cut like a killed key server (`kill`).
pub struct Relay {
    pub port: u16,
    pub hold: Arc<std::sync::atomic::AtomicBool>,
    pub conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    pub acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(port: u16, upstream: &Endpoint) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let Endpoint::Tcp(up) = upstream else {
            panic!("a TCP key server")
        };
        let up = up.clone();
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, s, cs) = (hold.clone(), stop.clone(), conns.clone());
        let acceptor = std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let c = c.unwrap();
                let u = std::net::TcpStream::connect(&up).unwrap();
                cs.lock()
                    .unwrap()
                    .extend([c.try_clone().unwrap(), u.try_clone().unwrap()]);
                let (mut c2, mut u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                });
                let (mut u, mut c, h) = (u, c, h.clone());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut b = [0u8; 16384];
                    loop {
                        match u.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            // Held replies are dropped: the client waits until the kill.
                            Ok(_) if h.load(Ordering::SeqCst) => {}
                            Ok(n) => {
                                if c.write_all(&b[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Relay {
            port,
            hold,
            conns,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Tcp(format!("127.0.0.1:{}", self.port))
    }

    /// Refuses new connections, then cuts every relayed one.
    pub fn kill(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        self.acceptor.take().unwrap().join().unwrap();
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}
