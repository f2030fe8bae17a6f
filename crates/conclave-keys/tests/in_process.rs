//! The key store with every supported key type (made by `openssl genpkey`),
//! signatures checked against the public key with rustls' verifiers, and the
//! remote signer called from a plain thread, a current-thread runtime and a
//! multi-thread runtime against an in-process key server.

use conclave_keys::rustls::{self, SignatureScheme};
use conclave_keys::shape::tls13_certificate_verify;
use conclave_keys::{KeyAlgorithm, KeyClient, KeyStore, KeysError, RemoteSigningKey};
use conclave_rpc::pki::{self, SiteKey};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Endpoint};
use rustls::sign::SigningKey;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

mod support;
use support::{start, tls_pair, verify, Relay};

fn genpkey(dir: &Path, name: &str, args: &[&str]) {
    let out = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(dir.join(format!("{name}.key")))
        .output()
        .expect("this test needs `openssl` on PATH");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn loads_every_supported_type_and_signs_with_each_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    genpkey(
        d,
        "rsa2048",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    genpkey(
        d,
        "rsa3072",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    );
    genpkey(
        d,
        "rsa4096",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
    );
    genpkey(
        d,
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    genpkey(
        d,
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    genpkey(d, "ed25519", &["-algorithm", "ED25519"]);
    let store = KeyStore::load_dir(d).unwrap();
    let expect = [
        ("ed25519", KeyAlgorithm::Ed25519),
        ("p256", KeyAlgorithm::EcdsaP256),
        ("p384", KeyAlgorithm::EcdsaP384),
        ("rsa2048", KeyAlgorithm::Rsa2048),
        ("rsa3072", KeyAlgorithm::Rsa3072),
        ("rsa4096", KeyAlgorithm::Rsa4096),
    ];
    assert_eq!(store.len(), expect.len());
    let msg = b"known answer: the message TLS would sign";
    for (name, alg) in expect {
        let k = store.get(name).unwrap();
        assert_eq!(k.algorithm, alg, "{name}");
        for &scheme in alg.schemes() {
            let sig = k.key.choose_scheme(&[scheme]).unwrap().sign(msg).unwrap();
            assert!(verify(&k.spki, scheme, msg, &sig), "{name} {scheme:?}");
            assert!(
                !verify(&k.spki, scheme, b"another message", &sig),
                "{name} {scheme:?}"
            );
        }
    }
}

#[test]
fn refuses_unsupported_sizes_curves_and_names() {
    for (name, args) in [
        (
            "rsa1024",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..],
        ),
        (
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        genpkey(dir.path(), name, args);
        let err = KeyStore::load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, KeysError::Load { .. }), "{name}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    genpkey(dir.path(), "has space", &["-algorithm", "ED25519"]);
    let err = KeyStore::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("invalid key name"), "{err}");
    // Files that are not *.key are ignored.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.crt"), "not a key").unwrap();
    assert!(KeyStore::load_dir(dir.path()).unwrap().is_empty());
}

#[test]
fn remote_key_signs_from_any_thread_or_runtime_and_matches_the_certificate() {
    for site in [SiteKey::Rsa2048, SiteKey::EcdsaP256] {
        let ks = start(site);
        let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
        let chain = conclave_rpc::tls::load_certs(&ks.certs.join("site/server.crt")).unwrap();
        let ck = conclave_keys::certified_key(chain, &ks.endpoint, "server", &creds).unwrap();
        ck.keys_match().unwrap();
        let key: Arc<dyn SigningKey> = ck.key.clone();
        let spki = key.public_key().unwrap().as_ref().to_vec();
        let offered = [
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
        ];
        // The key server signs only handshake content by default.
        let hello = tls13_certificate_verify(&[0x11; 32]);
        let sign_and_check = |key: &Arc<dyn SigningKey>| {
            let signer = key.choose_scheme(&offered).unwrap();
            let scheme = signer.scheme();
            let sig = signer.sign(&hello).unwrap();
            assert!(verify(&spki, scheme, &hello, &sig), "{site:?} {scheme:?}");
            scheme
        };
        // Plain thread, outside tokio.
        let scheme = sign_and_check(&key);
        match site {
            SiteKey::Rsa2048 => assert_eq!(scheme, SignatureScheme::RSA_PSS_SHA256),
            SiteKey::EcdsaP256 => assert_eq!(scheme, SignatureScheme::ECDSA_NISTP256_SHA256),
        }
        // A current-thread runtime (block_in_place would panic there).
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { sign_and_check(&key) });
        // A task on a multi-thread runtime (block_in_place path).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let k2 = key.clone();
        let sp = spki.clone();
        let task = tls13_certificate_verify(&[0x22; 48]);
        rt.block_on(async move {
            tokio::spawn(async move {
                let s = k2.choose_scheme(&offered).unwrap();
                let sig = s.sign(&task).unwrap();
                assert!(verify(&sp, s.scheme(), &task, &sig));
            })
            .await
            .unwrap();
        });
        // Nothing the key cannot do is offered.
        assert!(key.choose_scheme(&[SignatureScheme::ED25519]).is_none());
    }
}

#[test]
fn certified_key_refuses_a_certificate_of_another_key() {
    let ks = start(SiteKey::Rsa2048);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    // A fresh certificate for a different key, from the same CA.
    let ca = pki::Ca::load(&ks.certs.join("ca")).unwrap();
    let (pem, _) = ca.issue(&["localhost"], SiteKey::Rsa2048).unwrap();
    let other = ks.certs.join("other.crt");
    std::fs::write(&other, pem).unwrap();
    let chain = conclave_rpc::tls::load_certs(&other).unwrap();
    let err = conclave_keys::certified_key(chain, &ks.endpoint, "server", &creds).unwrap_err();
    assert!(matches!(err, KeysError::KeyMismatch { .. }), "{err}");
    // Path-like names are refused before any call.
    let chain = conclave_rpc::tls::load_certs(&ks.certs.join("site/server.crt")).unwrap();
    let err = conclave_keys::certified_key(chain, &ks.endpoint, "../server", &creds).unwrap_err();
    assert!(matches!(err, KeysError::BadName { .. }), "{err}");
    // And a client reaching nothing gets an RPC error, not a hang or a panic.
    let dead = KeyClient::with_credentials("tcp://127.0.0.1:1".parse().unwrap(), &creds).unwrap();
    assert!(matches!(dead.list(), Err(KeysError::Rpc(_))));
    let _ = RemoteSigningKey::fetch(Arc::new(dead), "server").unwrap_err();
}

/// A key server that accepts but never answers fails the signature within
/// the client's timeouts instead of hanging the handshake.
#[test]
fn a_stuck_keyserver_fails_the_signature_in_bounded_time() {
    let ks = start(SiteKey::EcdsaP256);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let info = KeyClient::with_credentials(ks.endpoint.clone(), &creds)
        .unwrap()
        .key_info("server")
        .unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep: Endpoint = format!("tcp://{}", silent.local_addr().unwrap()).parse().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // Accept and hold the connection, never answering, until the signer
        // has given up: if the timeout did not work, the test would hang here.
        let conn = silent.accept();
        let _ = done_rx.recv();
        drop(conn);
    });
    let mut opts = KeyClient::default_options(&creds).unwrap();
    opts.io_timeout = std::time::Duration::from_millis(300);
    let key = RemoteSigningKey::new(Arc::new(KeyClient::new(ep, opts)), info);
    let signer = key
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    let err = signer.sign(&tls13_certificate_verify(&[0; 32])).unwrap_err();
    assert!(err.to_string().contains("keyless signature failed"), "{err}");
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

/// Records the thread each signature is made on (the keyless key inside).
#[derive(Debug)]
struct WhereSigned {
    inner: Arc<dyn SigningKey>,
    threads: Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct WhereSigner {
    inner: Box<dyn rustls::sign::Signer>,
    threads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SigningKey for WhereSigned {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        Some(Box::new(WhereSigner {
            inner: self.inner.choose_scheme(offered)?,
            threads: self.threads.clone(),
        }))
    }
    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.inner.algorithm()
    }
}

impl rustls::sign::Signer for WhereSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.threads.lock().unwrap().push(name);
        self.inner.sign(message)
    }
    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

/// The edge's keyless handshakes: with `HandshakeThreads`, the signature
/// (a key-server round trip) is made on a handshake thread, never on a
/// runtime thread, and full TLS 1.2 and 1.3 handshakes complete and carry data.
#[test]
fn keyless_handshake_signs_on_a_handshake_thread_not_the_runtime() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ks = start(SiteKey::Rsa2048);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let chain = conclave_rpc::tls::load_certs(&ks.certs.join("site/server.crt")).unwrap();
    let ck = conclave_keys::certified_key(chain.clone(), &ks.endpoint, "server", &creds).unwrap();
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let key = Arc::new(WhereSigned {
        inner: ck.key.clone(),
        threads: threads.clone(),
    });
    let ck = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in conclave_rpc::tls::load_certs(&ks.certs.join("ca/root.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let roots = Arc::new(roots);
    let hs = Arc::new(conclave_keys::HandshakeThreads::new(2).unwrap());
    assert_eq!(hs.threads(), 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck.clone()))),
        );
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        let client = Arc::new(client);
        let hs = hs.clone();
        let echoed = rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // Several handshakes at once, more than there are handshake threads.
            let srv = tokio::spawn(async move {
                let mut done = Vec::new();
                for _ in 0..4 {
                    let (tcp, _) = l.accept().await.unwrap();
                    let (hs, server) = (hs.clone(), server.clone());
                    done.push(tokio::spawn(async move {
                        let mut s = hs.accept(tcp, server).await.unwrap();
                        let mut b = [0u8; 4];
                        s.read_exact(&mut b).await.unwrap();
                        s.write_all(&b).await.unwrap();
                        s.shutdown().await.unwrap();
                    }));
                }
                for d in done {
                    d.await.unwrap();
                }
            });
            let mut got = Vec::new();
            let clients: Vec<_> = (0..4u8)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                        let c = tokio_rustls::TlsConnector::from(client);
                        let mut s = c.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
                        s.write_all(&[i; 4]).await.unwrap();
                        let mut b = Vec::new();
                        s.read_to_end(&mut b).await.unwrap();
                        b
                    })
                })
                .collect();
            for c in clients {
                got.push(c.await.unwrap());
            }
            srv.await.unwrap();
            got
        });
        assert_eq!(
            echoed,
            (0..4u8).map(|i| vec![i; 4]).collect::<Vec<_>>(),
            "{version:?}"
        );
        let mut seen = std::mem::take(&mut *threads.lock().unwrap());
        assert_eq!(seen.len(), 4, "{version:?}: one signature per full handshake");
        seen.sort();
        seen.dedup();
        assert!(
            !seen.is_empty() && seen.iter().all(|t| t.starts_with("handshake-")),
            "{version:?}: signed on {seen:?}"
        );
    }
}

/// A keyless site served through `HandshakeThreads` survives a key-server
/// restart: while the key server is down its handshakes fail (promptly, with
/// the threads free again), and once it is back they succeed without any
/// action on the edge side (the client pool reconnects).
#[test]
fn handshake_threads_survive_a_keyserver_restart() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut ks = start(SiteKey::EcdsaP256);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let chain = conclave_rpc::tls::load_certs(&ks.certs.join("site/server.crt")).unwrap();
    let ck = conclave_keys::certified_key(chain, &ks.endpoint, "server", &creds).unwrap();
    let (server, client) = tls_pair(ck, &ks.certs, rustls::DEFAULT_VERSIONS);
    // One thread: a handshake stuck on a dead key server would block the next.
    let hs = Arc::new(conclave_keys::HandshakeThreads::new(1).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handshake = || -> Result<Vec<u8>, String> {
        let (hs, server, client) = (hs.clone(), server.clone(), client.clone());
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let srv = tokio::spawn(async move {
                let (tcp, _) = l.accept().await.unwrap();
                let mut s = hs.accept(tcp, server).await?;
                s.write_all(b"up").await?;
                s.shutdown().await
            });
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let got = async {
                let c = tokio_rustls::TlsConnector::from(client);
                let mut s = c.connect("localhost".try_into().unwrap(), tcp).await?;
                let mut b = Vec::new();
                s.read_to_end(&mut b).await?;
                Ok::<_, std::io::Error>(b)
            }
            .await;
            let served = srv.await.unwrap();
            match (got, served) {
                (Ok(b), Ok(())) => Ok(b),
                (c, s) => Err(format!("client: {c:?}, server: {s:?}")),
            }
        })
    };
    assert_eq!(handshake().unwrap(), b"up");
    ks.restart(|| {
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let err = handshake().unwrap_err();
            assert!(err.contains("server: Err"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{err}");
        }
    });
    assert_eq!(handshake().unwrap(), b"up");
}

/// 64 signatures asked at once by 64 threads over one pipelined key-server
/// connection (`KeyClient::with_sign_lanes(.., 1)`): each caller gets the
/// signature of its own message, valid under the certificate's key.
#[test]
fn sixty_four_concurrent_signatures_over_one_pipelined_connection() {
    let ks = start(SiteKey::EcdsaP256);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let opts = KeyClient::default_options(&creds).unwrap();
    let client = Arc::new(KeyClient::with_sign_lanes(ks.endpoint.clone(), opts, 1));
    let key = Arc::new(RemoteSigningKey::fetch(client.clone(), "server").unwrap());
    let spki = key.public_key().unwrap().as_ref().to_vec();
    let barrier = Arc::new(std::sync::Barrier::new(64));
    let callers: Vec<_> = (0..64u8)
        .map(|i| {
            let (key, spki, barrier) = (key.clone(), spki.clone(), barrier.clone());
            std::thread::spawn(move || {
                let msg = tls13_certificate_verify(&[i; 32]);
                let signer = key
                    .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
                    .unwrap();
                barrier.wait();
                let sig = signer.sign(&msg).unwrap();
                verify(&spki, signer.scheme(), &msg, &sig)
            })
        })
        .collect();
    let valid: Vec<bool> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(valid, vec![true; 64]);
    assert_eq!(client.signs_in_flight(), 0);
}

/// A key server killed while signatures are pipelined on its connection:
/// exactly those in flight fail, with `RpcError::Aborted` naming how many
/// were waiting; once it is back, the next signatures succeed with no action
/// on the client side (a new connection is opened).
#[test]
fn a_keyserver_killed_mid_pipeline_fails_the_waiting_signatures_and_the_next_succeed() {
    use std::sync::atomic::Ordering;
    let ks = start(SiteKey::EcdsaP256);
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let mut relay = Relay::start(0, &ks.endpoint);
    let opts = KeyClient::default_options(&creds).unwrap();
    let client = Arc::new(KeyClient::with_sign_lanes(relay.endpoint(), opts, 1));
    let msg = tls13_certificate_verify(&[7; 32]);
    let scheme = SignatureScheme::ECDSA_NISTP256_SHA256;
    client.sign("server", scheme, &msg).unwrap();
    relay.hold.store(true, Ordering::SeqCst);
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let (client, msg) = (client.clone(), msg.clone());
            std::thread::spawn(move || client.sign("server", scheme, &msg))
        })
        .collect();
    assert!(conclave_testkit::wait_until(
        std::time::Duration::from_secs(10),
        || { client.signs_in_flight() == 8 }
    ));
    relay.kill();
    for w in waiting {
        match w.join().unwrap() {
            Err(KeysError::Rpc(conclave_rpc::RpcError::Aborted { in_flight, .. })) => {
                assert_eq!(in_flight, 8)
            }
            other => panic!("expected Aborted, got {other:?}"),
        }
    }
    assert_eq!(client.signs_in_flight(), 0);
    // Back on the same port: the next signature opens a new connection.
    let relay = Relay::start(relay.port, &ks.endpoint);
    assert_eq!(relay.endpoint(), client.endpoint().clone());
    let sig = client.sign("server", scheme, &msg).unwrap();
    let spki = client.key_info("server").unwrap().spki;
    assert!(verify(&spki, scheme, &msg, &sig));
}
