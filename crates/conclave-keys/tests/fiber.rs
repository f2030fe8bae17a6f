//! Keyless handshakes whose signing step runs on a coroutine of the runtime
//! thread (`conclave_keys::fiber`): signatures awaited over one async
//! pipelined key-server connection, a key server killed mid-pipeline, a
//! client gone while its signature is pending, and the coroutine's stack.

use conclave_keys::rustls::{self, SignatureScheme};
use conclave_keys::{fiber, KeyClient, KeyServers};
use conclave_rpc::pki::SiteKey;
use conclave_rpc::{Credentials, Role};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{start, tls_pair, Relay, Running};

/// The live-coroutine count is per process: these tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records where each signature was asked for: on a coroutine or not.
#[derive(Debug)]
struct WhereSigned {
    inner: Arc<dyn rustls::sign::SigningKey>,
    on_fiber: Arc<Mutex<Vec<bool>>>,
}

impl rustls::sign::SigningKey for WhereSigned {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(WhereSigner {
            inner,
            on_fiber: self.on_fiber.clone(),
        }))
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct WhereSigner {
    inner: Box<dyn rustls::sign::Signer>,
    on_fiber: Arc<Mutex<Vec<bool>>>,
}

impl rustls::sign::Signer for WhereSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.on_fiber.lock().unwrap().push(fiber::on_fiber());
        self.inner.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

/// A keyless TLS server and a client trusting it, over `client` (one key
/// server, signing over `lanes` = 1 async pipelined connection).
struct Keyless {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    on_fiber: Arc<Mutex<Vec<bool>>>,
}

fn keyless(
    ks: &Running,
    client: Arc<KeyClient>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Keyless {
    let chain = conclave_rpc::tls::load_certs(&ks.certs.join("site/server.crt")).unwrap();
    let servers = Arc::new(KeyServers::from_clients(vec![client]));
    let ck = conclave_keys::remote::certified_key_from(chain.clone(), servers, "server").unwrap();
    let on_fiber = Arc::new(Mutex::new(Vec::new()));
    let key = Arc::new(WhereSigned {
        inner: ck.key.clone(),
        on_fiber: on_fiber.clone(),
    });
    let ck = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
    let (server, client) = tls_pair(ck, &ks.certs, &[version]);
    Keyless {
        server,
        client,
        on_fiber,
    }
}

fn key_client(ks: &Running, at: conclave_rpc::Endpoint) -> Arc<KeyClient> {
    let creds = Credentials::from_dir(&ks.certs, Role::Edge).unwrap();
    let opts = KeyClient::default_options(&creds).unwrap();
    Arc::new(KeyClient::with_sign_lanes(at, opts, 1))
}

/// One worker: a runtime with one thread, as an edge worker's.
fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `n` handshakes at once on `k`, the server side through the coroutine
/// path; each client sends its index and reads back what the server echoes.
/// Returns each client's result and each server side's.
async fn handshakes(k: &Keyless, n: u8) -> Vec<(Result<Vec<u8>, String>, Result<(), String>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = k.server.clone();
    let srv = tokio::spawn(async move {
        let mut done = Vec::new();
        for _ in 0..n {
            let (tcp, _) = l.accept().await.unwrap();
            let server = server.clone();
            done.push(tokio::spawn(async move {
                let start =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
                let mut s = fiber::finish(start, server).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                s.write_all(&[b[0]; 4]).await?;
                s.shutdown().await
            }));
        }
        let mut out = Vec::new();
        for d in done {
            out.push(d.await.unwrap().map_err(|e| e.to_string()));
        }
        out
    });
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let client = k.client.clone();
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let c = tokio_rustls::TlsConnector::from(client);
                let mut s = c.connect("localhost".try_into().unwrap(), tcp).await?;
                s.write_all(&[i]).await?;
                let mut b = Vec::new();
                s.read_to_end(&mut b).await?;
                Ok::<_, std::io::Error>(b)
            })
        })
        .collect();
    let mut got = Vec::new();
    for c in clients {
        got.push(c.await.unwrap().map_err(|e| e.to_string()));
    }
    let served = srv.await.unwrap();
    got.into_iter().zip(served).collect()
}

/// 64 handshakes at once on one worker thread, TLS 1.2 and 1.3: every
/// signature is asked for on a coroutine and awaited over one pipelined
/// connection, and every client accepts it (rustls checks the signature
/// against the certificate) and gets its own echo.
#[test]
fn sixty_four_concurrent_handshakes_on_one_worker_sign_on_coroutines_over_one_connection() {
    let _serial = serial();
    let ks = start(SiteKey::Rsa2048);
    let mut relay = Relay::start(0, &ks.endpoint);
    let rt = one_worker();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = key_client(&ks, relay.endpoint());
        let k = keyless(&ks, client.clone(), version);
        let before = relay.conns.lock().unwrap().len() / 2;
        let results = rt.block_on(handshakes(&k, 64));
        for (i, (got, served)) in results.into_iter().enumerate() {
            assert_eq!(got, Ok(vec![i as u8; 4]), "{version:?}: client {i}");
            assert_eq!(served, Ok(()), "{version:?}: server side {i}");
        }
        assert_eq!(*k.on_fiber.lock().unwrap(), vec![true; 64], "{version:?}");
        // Counted after the setup's GET_KEY (blocking pool): every
        // signature went over one new, async pipelined connection.
        assert_eq!(relay.conns.lock().unwrap().len() / 2 - before, 1, "{version:?}");
        assert_eq!(client.signs_in_flight(), 0);
        assert_eq!(fiber::live(), 0);
    }
    relay.kill();
}

/// A key server killed while 8 handshakes wait for their signatures on its
/// pipelined connection: exactly those 8 fail, each naming the broken
/// connection and the 8 requests it held; once it is back, the next
/// handshakes succeed with no action on the edge side.
#[test]
fn a_keyserver_killed_mid_pipeline_fails_exactly_the_waiting_handshakes() {
    let _serial = serial();
    let ks = start(SiteKey::EcdsaP256);
    let mut relay = Relay::start(0, &ks.endpoint);
    let client = key_client(&ks, relay.endpoint());
    let k = Arc::new(keyless(&ks, client.clone(), &rustls::version::TLS13));
    let rt = one_worker();
    let first = rt.block_on(handshakes(&k, 1));
    assert_eq!(first[0].0, Ok(vec![0; 4]));
    relay.hold.store(true, Ordering::SeqCst);
    let pending = {
        let k = k.clone();
        rt.spawn(async move { handshakes(&k, 8).await })
    };
    assert!(conclave_testkit::wait_until(Duration::from_secs(10), || client
        .signs_in_flight()
        == 8));
    assert_eq!(fiber::live(), 8);
    relay.kill();
    let results = rt.block_on(pending).unwrap();
    for (i, (got, served)) in results.into_iter().enumerate() {
        assert!(got.is_err(), "client {i}: {got:?}");
        let e = served.unwrap_err();
        assert!(
            e.contains("keyless signature failed") && e.contains("broke with 8 requests awaiting replies"),
            "server side {i}: {e}"
        );
    }
    assert_eq!(client.signs_in_flight(), 0);
    assert_eq!(fiber::live(), 0);
    let relay = Relay::start(relay.port, &ks.endpoint);
    let after = rt.block_on(handshakes(&k, 4));
    for (i, (got, served)) in after.into_iter().enumerate() {
        assert_eq!(got, Ok(vec![i as u8; 4]), "client {i} after the restart");
        assert_eq!(served, Ok(()), "server side {i} after the restart");
    }
    drop(relay);
}

/// A handshake dropped while its signature is pending (here by the
/// handshake timeout, as when a client leaves or the worker stops) resumes
/// its coroutine with `KeysError::Abandoned` instead of leaving it
/// suspended: no coroutine is left alive, and the next handshake works.
#[test]
fn a_handshake_abandoned_while_its_signature_is_pending_leaves_no_coroutine() {
    let _serial = serial();
    let ks = start(SiteKey::EcdsaP256);
    let mut relay = Relay::start(0, &ks.endpoint);
    let client = key_client(&ks, relay.endpoint());
    let k = keyless(&ks, client.clone(), &rustls::version::TLS13);
    let rt = one_worker();
    // The pipelined connection is open before the relay holds its replies.
    assert_eq!(rt.block_on(handshakes(&k, 1))[0].0, Ok(vec![0; 4]));
    relay.hold.store(true, Ordering::SeqCst);
    let (server, tls_client, counted) = (k.server.clone(), k.client.clone(), client.clone());
    let (abandoned, live_after) = rt.block_on(async move {
        let client = counted;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(tls_client)
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .map(|_| ())
        });
        let (tcp, _) = l.accept().await.unwrap();
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .unwrap();
        let mut pending = Box::pin(fiber::finish(start, server));
        // Polled until its coroutine is suspended on the signature.
        let waited = tokio::time::timeout(Duration::from_millis(300), pending.as_mut()).await;
        assert!(waited.is_err(), "no reply can come while the relay holds it");
        assert_eq!(fiber::live(), 1);
        assert_eq!(client.signs_in_flight(), 1);
        drop(pending);
        let live_after = fiber::live();
        // The abandoned call is no longer counted, though its reply may still come.
        assert_eq!(client.signs_in_flight(), 0);
        (c.await.unwrap(), live_after)
    });
    assert_eq!(live_after, 0);
    assert!(abandoned.is_err(), "the client's handshake fails: {abandoned:?}");
    relay.kill();
    let relay = Relay::start(relay.port, &ks.endpoint);
    let after = rt.block_on(handshakes(&k, 1));
    assert_eq!(after[0].0, Ok(vec![0; 4]));
    assert_eq!(fiber::live(), 0);
    drop(relay);
}

/// The coroutine's stack: a full keyless handshake (RSA and ECDSA, TLS 1.2
/// and 1.3) uses at most a quarter of `fiber::STACK_WORDS`.
#[test]
fn a_handshake_uses_under_a_quarter_of_the_coroutine_stack() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // This test's thread is new, so is its pool of stacks: all tracked.
    fiber::track_stack_use(true);
    let mut most = 0;
    for site in [SiteKey::Rsa2048, SiteKey::EcdsaP256] {
        let ks = start(site);
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let k = keyless(&ks, key_client(&ks, ks.endpoint.clone()), version);
            let r = rt.block_on(handshakes(&k, 1));
            assert_eq!(r[0].0, Ok(vec![0; 4]));
            // The coroutine ran on this thread (a current-thread runtime),
            // so its stack is back in this thread's pool.
            let (size, used) = fiber::last_stack_usage().expect("a coroutine stack was kept");
            // Rounded up to whole pages.
            assert!(size > fiber::STACK_WORDS, "{size}");
            most = most.max(used);
        }
    }
    fiber::track_stack_use(false);
    eprintln!(
        "coroutine stack: at most {most} of {} words used",
        fiber::STACK_WORDS
    );
    assert!(most > 0 && most * 4 <= fiber::STACK_WORDS, "{most} words used");
}
