//! Several key servers used as one ([`KeyServers`]) and the fleet ticket
//! keys (`TICKET_KEYS`), against in-process key servers that share one CA:
//! endpoints holding different keys are refused naming both, an endpoint
//! that does not answer is left out without failing a call, and two key
//! servers with the same ticket secret hand out the same keys, each tenant
//! only its own.

use conclave_keys::op::ticket_keys::{TicketGrants, TicketKeySource};
use conclave_keys::rustls::SignatureScheme;
use conclave_keys::shape::tls13_certificate_verify;
use conclave_keys::{KeyServer, KeyServerOptions, KeyServers, KeyStore, KeysError};
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use conclave_rpc::{Credentials, Endpoint, Role, Server, Shutdown, Status};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A key server on a background runtime; stops on drop.
struct Running {
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
    endpoint: Endpoint,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the keys in `keys` with the key-server identity of `certs`.
fn serve(certs: &Path, keys: &Path, tickets: Option<TicketKeySource>) -> Running {
    let store = KeyStore::load_dir(keys).unwrap();
    let opts = KeyServerOptions {
        tickets: tickets.map(Arc::new),
        ..KeyServerOptions::default()
    };
    let svc = Arc::new(KeyServer::new(store, &opts).unwrap());
    let creds = Credentials::from_dir(certs, Role::KeyServer).unwrap();
    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let sd = shutdown.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::bind(
                &"tcp://127.0.0.1:0".parse().unwrap(),
                Some(creds.server_config().unwrap()),
                KeyServer::server_options(),
            )
            .await
            .unwrap();
            tx.send(server.local_endpoint().clone()).unwrap();
            let _ = server.serve(svc, sd).await;
        });
    });
    Running {
        shutdown,
        thread: Some(thread),
        endpoint: rx.recv().unwrap(),
    }
}

/// One CA with identities for tenants `default`, `a` and `b`, and two key
/// directories: `keys1/server.key` (the site key) and `keys2/server.key`
/// (another key under the same name).
fn world() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    pki::generate(&CertsOptions {
        tenants: vec!["a".parse().unwrap(), "b".parse().unwrap()],
        out: certs.clone(),
        site_key: SiteKey::EcdsaP256,
        force: true,
    })
    .unwrap();
    let other = dir.path().join("other");
    conclave_testkit::generate_certs(&other, SiteKey::EcdsaP256);
    for (d, from) in [("keys1", &certs), ("keys2", &other)] {
        let k = dir.path().join(d);
        std::fs::create_dir(&k).unwrap();
        std::fs::copy(from.join("site/server.key"), k.join("server.key")).unwrap();
    }
    (dir, certs)
}

fn edge_of(certs: &Path, tenant: &str) -> Credentials {
    let id = conclave_rpc::Identity::new(Role::Edge, tenant.parse().unwrap());
    Credentials::from_dir(&pki::CertsLayout::new(certs).identity_dir(&id), Role::Edge).unwrap()
}

#[test]
fn endpoints_with_different_keys_are_refused_naming_both() {
    let (dir, certs) = world();
    let a = serve(&certs, &dir.path().join("keys1"), None);
    let b = serve(&certs, &dir.path().join("keys2"), None);
    let set = KeyServers::with_credentials(
        vec![a.endpoint.clone(), b.endpoint.clone()],
        &Credentials::from_dir(&certs, Role::Edge).unwrap(),
    )
    .unwrap();
    let err = set.key_info("server").unwrap_err();
    assert!(matches!(err, KeysError::EndpointsDisagree { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "key \"server\" differs between key servers {} and {}: every endpoint of a site must hold the same key",
            a.endpoint, b.endpoint
        )
    );
}

#[test]
fn an_endpoint_that_does_not_answer_is_left_out_and_no_signature_fails() {
    let (dir, certs) = world();
    let a = serve(&certs, &dir.path().join("keys1"), None);
    let dead: Endpoint = format!("tcp://127.0.0.1:{}", conclave_testkit::free_port())
        .parse()
        .unwrap();
    let set = KeyServers::with_credentials(
        vec![dead.clone(), a.endpoint.clone()],
        &Credentials::from_dir(&certs, Role::Edge).unwrap(),
    )
    .unwrap()
    .with_backoff(Duration::from_secs(60));
    let info = set.key_info("server").unwrap();
    let msg = tls13_certificate_verify(&[7u8; 32]);
    for _ in 0..6 {
        // Round robin would send every other call to the dead endpoint: each
        // is retried on the live one, and the dead one stays out.
        let sig = set
            .sign("server", SignatureScheme::ECDSA_NISTP256_SHA256, &msg)
            .unwrap();
        assert!(!sig.is_empty());
    }
    assert_eq!(set.down(), vec![dead]);
    assert_eq!(info.name, "server");
    // A refusal is an answer, not a failure: returned, not retried elsewhere.
    let err = set
        .sign("nokey", SignatureScheme::ECDSA_NISTP256_SHA256, &msg)
        .unwrap_err();
    assert_eq!(err.status(), Some(Status::ENOENT), "{err}");
}

#[test]
fn two_key_servers_with_one_secret_hand_out_the_same_ticket_keys_each_tenant_its_own() {
    let (dir, certs) = world();
    let secret = [42u8; 32];
    let source =
        || Some(TicketKeySource::new(&secret, Duration::from_secs(3600), TicketGrants::default()).unwrap());
    let k1 = serve(&certs, &dir.path().join("keys1"), source());
    let k2 = serve(&certs, &dir.path().join("keys1"), source());
    let b = edge_of(&certs, "b");
    let from =
        |ep: &Endpoint, creds: &Credentials| KeyServers::with_credentials(vec![ep.clone()], creds).unwrap();
    let one = from(&k1.endpoint, &b).ticket_keys("").unwrap();
    let two = from(&k2.endpoint, &b).ticket_keys("").unwrap();
    assert_eq!(one.epoch, two.epoch);
    assert_eq!(
        (one.current, one.previous, one.next),
        (two.current, two.previous, two.next)
    );
    let a_keys = from(&k1.endpoint, &edge_of(&certs, "a")).ticket_keys("").unwrap();
    assert_ne!(a_keys.current, one.current, "tenants get different keys");
    let err = from(&k1.endpoint, &b).ticket_keys("a").unwrap_err();
    assert_eq!(err.status(), Some(Status::EACCES), "{err}");
    let plain = serve(&certs, &dir.path().join("keys1"), None);
    let err = from(&plain.endpoint, &b).ticket_keys("").unwrap_err();
    assert_eq!(
        err.status(),
        Some(Status::EACCES),
        "without --ticket-keys, tenant b's edge (no key grant) is refused at connect: {err}"
    );
    let err = from(
        &plain.endpoint,
        &Credentials::from_dir(&certs, Role::Edge).unwrap(),
    )
    .ticket_keys("")
    .unwrap_err();
    assert_eq!(err.status(), Some(Status::ENOTSUP), "{err}");
}
