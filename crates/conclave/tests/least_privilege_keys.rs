//! Issue 15, point 4, with real processes: the key server grants keys per
//! identity (role + tenant), signs only TLS handshake content by default,
//! and rate-limits each identity. Tenant B's edge neither sees nor uses
//! tenant A's key; arbitrary bytes are refused with `EPERM`; keyless edges
//! of two tenants still complete TLS 1.2 (ECDHE-RSA and ECDHE-ECDSA, on
//! X25519, P-256 and P-384) and TLS 1.3 handshakes through the same key
//! server; an identity over its rate gets `EAGAIN` and a log line naming it.
//! Needs curl and openssl on PATH.
#![cfg(all(feature = "keys", feature = "edge"))]

use conclave_keys::rustls::SignatureScheme;
use conclave_keys::shape::{tls12_server_key_exchange, tls13_certificate_verify};
use conclave_keys::{KeyClient, KeysError};
use conclave_rpc::pki::{self, Ca, SiteKey};
use conclave_rpc::{Credentials, Endpoint, Identity, Role, Status};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{conclave_ok, free_port, on_path, start_logged, wait_port, wait_until, Proc};

const RSA_PSS: SignatureScheme = SignatureScheme::RSA_PSS_SHA256;
const ECDSA: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

/// A conclave of two tenants, `a` and `b`, made with the library (the CA's
/// key never touches the disk): one directory per process identity
/// (`root.crt`, `ROLE.crt`, `ROLE.key`), site `a` with an RSA-2048 key and
/// site `b` with an ECDSA P-256 key, both keys only in `keys/`.
struct Conclave {
    tmp: tempfile::TempDir,
    ca: Ca,
}

impl Conclave {
    fn new() -> Conclave {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, root_pem, _ca_key) = Ca::generate().unwrap();
        let c = Conclave { tmp, ca };
        std::fs::write(c.p("root.crt"), &root_pem).unwrap();
        for id in ["keyserver", "edge", "edge@a", "edge@b", "client@a"] {
            c.identity(id);
        }
        std::fs::create_dir(c.p("keys")).unwrap();
        std::fs::create_dir(c.p("sites")).unwrap();
        for (site, kind) in [("a", SiteKey::Rsa2048), ("b", SiteKey::EcdsaP256)] {
            let (cert, key) = c.ca.issue(&["localhost", "127.0.0.1"], kind).unwrap();
            pki::write_file(&c.p(&format!("sites/{site}.crt")), &cert, false, false).unwrap();
            pki::write_file(&c.p(&format!("keys/{site}.key")), &key, true, false).unwrap();
        }
        conclave_ok(&["content", "--out", c.s("html").as_str()]);
        c
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }

    /// `ids/<identity>/` with the CA certificate and that identity only.
    fn identity(&self, text: &str) -> PathBuf {
        let id: Identity = text.parse().unwrap();
        let dir = self.p(&format!("ids/{text}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.p("root.crt"), dir.join("root.crt")).unwrap();
        let (cert, key) = self.ca.issue_identity(&id).unwrap();
        pki::write_file(&dir.join(format!("{}.crt", id.role)), &cert, false, false).unwrap();
        pki::write_file(&dir.join(format!("{}.key", id.role)), &key, true, false).unwrap();
        dir
    }

    /// `conclave keyserver` over `keys/` with `extra` flags; its log is
    /// `DIR/keyserver-TAG.log`.
    fn keyserver(&self, tag: &str, extra: &[&str]) -> (Proc, Endpoint) {
        let port = free_port();
        let listen = format!("tcp://127.0.0.1:{port}");
        let mut args = vec![
            "keyserver".to_string(),
            "--keys".into(),
            self.s("keys"),
            "--certs".into(),
            self.s("ids/keyserver"),
            "--listen".into(),
            listen.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = start_logged(self.tmp.path(), &format!("keyserver-{tag}"), &args);
        wait_port(port);
        (p, listen.parse().unwrap())
    }

    /// A key-server client presenting identity `id`.
    fn client(&self, ep: &Endpoint, id: &str) -> KeyClient {
        let role = id.split('@').next().unwrap().parse::<Role>().unwrap();
        let creds = Credentials::from_dir(&self.p(&format!("ids/{id}")), role).unwrap();
        KeyClient::with_credentials(ep.clone(), &creds).unwrap()
    }

    /// A keyless edge serving `html/` with site `site`'s certificate, its
    /// key named `site` on the key server, as identity `id`.
    fn edge(&self, id: &str, site: &str, ks: &Endpoint) -> (Proc, u16) {
        let port = free_port();
        let toml = format!(
            "workers = 1\nworker_threads = 2\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\n\
             root = \"{html}\"\n[server.tls]\ncertificate = \"{cert}\"\nkeyserver = \"{ks}\"\n\
             key_name = \"{site}\"\ncerts = \"{certs}\"\n",
            html = self.s("html"),
            cert = self.s(&format!("sites/{site}.crt")),
            certs = self.s(&format!("ids/{id}")),
        );
        let cfg = self.p(&format!("edge-{id}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let cfg = cfg.display().to_string();
        let p = start_logged(
            self.tmp.path(),
            &format!("edge-{id}"),
            &["edge", "--config", &cfg],
        );
        wait_port(port);
        (p, port)
    }
}

/// The status the key server answered, from a client error.
fn refused(e: KeysError) -> Status {
    match e {
        KeysError::Refused { status, .. } => status,
        other => panic!("expected a refusal, got {other}"),
    }
}

fn names(client: &KeyClient) -> Vec<String> {
    client.list().unwrap().into_iter().map(|k| k.name).collect()
}

#[test]
fn tenant_b_edge_neither_sees_nor_signs_with_tenant_a_key() {
    let c = Conclave::new();
    let (_ks, ep) = c.keyserver("grants", &["--grant", "edge@a:a", "--grant", "edge@b:b"]);
    let tbs = tls13_certificate_verify(&[0x42; 32]);

    let edge_a = c.client(&ep, "edge@a");
    assert_eq!(names(&edge_a), ["a"]);
    assert_eq!(edge_a.sign("a", RSA_PSS, &tbs).unwrap().len(), 256);
    assert_eq!(edge_a.key_info("a").unwrap().schemes[0], RSA_PSS);

    let edge_b = c.client(&ep, "edge@b");
    assert_eq!(names(&edge_b), ["b"], "tenant a's key name is not listed to b");
    assert_eq!(
        refused(edge_b.sign("a", RSA_PSS, &tbs).unwrap_err()),
        Status::EACCES
    );
    assert_eq!(refused(edge_b.key_info("a").unwrap_err()), Status::EACCES);
    // Not granted answers the same whether the key exists or not.
    assert_eq!(
        refused(edge_b.sign("no-such-key", RSA_PSS, &tbs).unwrap_err()),
        Status::EACCES
    );
    assert!(!edge_b.sign("b", ECDSA, &tbs).unwrap().is_empty());
    assert_eq!(
        refused(edge_a.sign("b", ECDSA, &tbs).unwrap_err()),
        Status::EACCES
    );

    // Identities no grant names are refused at their first request: the
    // default tenant's edge (granted only when no --grant is given) and a
    // client of tenant a.
    for id in ["edge", "client@a"] {
        let other = c.client(&ep, id);
        assert_eq!(refused(other.list().unwrap_err()), Status::EACCES, "{id}");
        assert_eq!(
            refused(other.sign("a", RSA_PSS, &tbs).unwrap_err()),
            Status::EACCES,
            "{id}"
        );
    }
}

#[test]
fn no_grant_given_means_edge_of_the_default_tenant_uses_every_key() {
    let c = Conclave::new();
    let (_ks, ep) = c.keyserver("default", &[]);
    let tbs = tls13_certificate_verify(&[0x42; 32]);
    let edge = c.client(&ep, "edge");
    assert_eq!(names(&edge), ["a", "b"]);
    assert_eq!(edge.sign("a", RSA_PSS, &tbs).unwrap().len(), 256);
    let edge_a = c.client(&ep, "edge@a");
    assert_eq!(refused(edge_a.list().unwrap_err()), Status::EACCES);
    let log = std::fs::read_to_string(c.p("keyserver-default.log")).unwrap();
    assert!(log.contains("no --grant given: granting edge:*"), "{log}");
}

#[test]
fn handshake_only_refuses_arbitrary_bytes_with_eperm() {
    let c = Conclave::new();
    let (ks, ep) = c.keyserver("shape", &[]);
    let edge = c.client(&ep, "edge");
    let (cr, sr) = ([1u8; 32], [2u8; 32]);
    let mut p256 = vec![0x04; 65];
    p256[1] = 0x99;
    // Handshake content is signed: TLS 1.3 with SHA-256 and SHA-384
    // transcripts, TLS 1.2 ECDHE params on X25519, P-256 and P-384.
    for (key, scheme) in [
        ("a", RSA_PSS),
        ("a", SignatureScheme::RSA_PKCS1_SHA256),
        ("b", ECDSA),
    ] {
        for tbs in [
            tls13_certificate_verify(&[3; 32]),
            tls13_certificate_verify(&[3; 48]),
            tls12_server_key_exchange(&cr, &sr, 0x001d, &[5; 32]),
            tls12_server_key_exchange(&cr, &sr, 0x0017, &p256),
            tls12_server_key_exchange(&cr, &sr, 0x0018, &[0x04; 97]),
        ] {
            edge.sign(key, scheme, &tbs)
                .unwrap_or_else(|e| panic!("{key} {scheme:?} {} bytes: {e}", tbs.len()));
        }
    }
    // Anything else is EPERM: arbitrary bytes, an empty message, a digest,
    // a TLS 1.3 prefix with a short hash, the client's context, a TLS 1.2
    // point of the wrong length.
    let mut client_cv = vec![0x20; 64];
    client_cv.extend_from_slice(b"TLS 1.3, client CertificateVerify\0");
    client_cv.extend_from_slice(&[0; 32]);
    for (what, msg) in [
        ("arbitrary", b"please sign this certificate".to_vec()),
        ("empty", Vec::new()),
        ("a bare digest", vec![0xaa; 32]),
        ("short tls13 hash", tls13_certificate_verify(&[1; 20])),
        ("client context", client_cv),
        (
            "x25519 point of 33",
            tls12_server_key_exchange(&cr, &sr, 0x001d, &[5; 33]),
        ),
    ] {
        assert_eq!(
            refused(edge.sign("a", RSA_PSS, &msg).unwrap_err()),
            Status::EPERM,
            "{what}"
        );
    }
    drop(ks);

    // --sign-any-input turns the check off.
    let (_ks, ep) = c.keyserver("any", &["--sign-any-input"]);
    let edge = c.client(&ep, "edge");
    assert_eq!(
        edge.sign("a", RSA_PSS, b"please sign this certificate")
            .unwrap()
            .len(),
        256
    );
}

fn tool(name: &str) {
    assert!(on_path(name), "this test needs `{name}` on PATH");
}

/// `openssl s_client` with `args` against 127.0.0.1:`port`, sending one GET;
/// returns everything it printed.
fn s_client(c: &Conclave, port: u16, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-ign_eof", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(c.p("root.crt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn curl(c: &Conclave, port: u16, tls: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(c.p("root.crt"))
        .args(tls)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/1k.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {tls:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn keyless_edges_of_two_tenants_handshake_tls12_and_tls13_with_handshake_only_on() {
    tool("openssl");
    tool("curl");
    let c = Conclave::new();
    // Handshake-only is the default: no flag.
    let (_ks, ep) = c.keyserver("edges", &["--grant", "edge@a:a", "--grant", "edge@b:b"]);
    let body = std::fs::read(c.p("html/1k.txt")).unwrap();
    let (_ea, port_a) = c.edge("edge@a", "a", &ep);
    let (_eb, port_b) = c.edge("edge@b", "b", &ep);
    // TLS 1.2 signs the ECDHE point, so each group is a different length
    // of signed content. (OpenSSL's TLS 1.2 client refuses an ECDSA
    // certificate on a curve it did not offer, so site b's P-256 key needs
    // P-256 offered: its P-384 exchange is covered by site a.)
    let x25519 = ("X25519", "X25519");
    let p256 = ("P-256", "ECDH, prime256v1");
    let p384 = ("P-384", "ECDH, secp384r1");
    for (port, kx_cipher, groups) in [
        (port_a, "ECDHE-RSA-AES128-GCM-SHA256", vec![x25519, p256, p384]),
        (
            port_b,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            vec![("X25519:P-256", "X25519"), p256],
        ),
    ] {
        for (group, temp_key) in groups {
            let text = s_client(&c, port, &["-tls1_2", "-cipher", kx_cipher, "-groups", group]);
            assert!(
                text.contains("Verify return code: 0 (ok)"),
                "{kx_cipher} {group}:\n{text}"
            );
            assert!(text.contains("TLSv1.2"), "{kx_cipher} {group}:\n{text}");
            assert!(
                text.contains(&format!("Server Temp Key: {temp_key}")),
                "{kx_cipher} {group}:\n{text}"
            );
            assert!(text.contains("HTTP/1.1 200 OK"), "{kx_cipher} {group}:\n{text}");
        }
        for group in ["X25519", "P-384"] {
            let text = s_client(&c, port, &["-tls1_3", "-groups", group]);
            assert!(
                text.contains("Verify return code: 0 (ok)"),
                "tls1.3 {group}:\n{text}"
            );
            assert!(text.contains("TLSv1.3"), "tls1.3 {group}:\n{text}");
            assert!(text.contains("HTTP/1.1 200 OK"), "tls1.3 {group}:\n{text}");
        }
        assert_eq!(curl(&c, port, &["--tlsv1.2", "--tls-max", "1.2"]), body);
        assert_eq!(curl(&c, port, &["--tlsv1.3"]), body);
    }
    // No handshake signature was refused for its shape.
    let log = std::fs::read_to_string(c.p("keyserver-edges.log")).unwrap();
    assert!(
        !log.contains("EPERM") && !log.contains("refused to sign"),
        "{log}"
    );
}

#[test]
fn signing_rate_limit_answers_eagain_and_logs_the_identity() {
    let c = Conclave::new();
    let (_ks, ep) = c.keyserver(
        "rate",
        &[
            "--grant",
            "edge@a:a",
            "--grant",
            "edge@b:b",
            "--max-signs-per-sec",
            "1",
        ],
    );
    let tbs = tls13_certificate_verify(&[9; 32]);
    let edge_a = c.client(&ep, "edge@a");
    // A burst of one second's worth (one signature), then EAGAIN until the
    // bucket refills; a refill can only happen after a whole second, so
    // the second or third call is refused.
    edge_a.sign("a", RSA_PSS, &tbs).unwrap();
    let status = (0..3)
        .find_map(|_| edge_a.sign("a", RSA_PSS, &tbs).err())
        .map(refused);
    assert_eq!(status, Some(Status::EAGAIN));
    // Another identity has its own bucket.
    c.client(&ep, "edge@b").sign("b", ECDSA, &tbs).unwrap();
    let log = c.p("keyserver-rate.log");
    let named = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("signing rate limit reached for edge@a")
    });
    assert!(named, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("rate limit reached for edge@b"), "{text}");
}
