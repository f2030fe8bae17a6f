//! Key server and keyless TLS, end to end with real processes: `conclave
//! keyserver` holds the site key; `conclave keyless-probe` serves HTTPS with
//! only the certificate and a `RemoteSigningKey`; `curl`, `openssl s_client`
//! and a rustls client complete TLS 1.2 and 1.3 handshakes against it, and
//! strace shows the probe never opens the key file. Needs curl, openssl and
//! strace on PATH (a missing tool fails the test loudly).
#![cfg(feature = "keys")]

use conclave_keys::rustls::{self, SignatureScheme};
use conclave_keys::KeyClient;
use conclave_rpc::stream::ClientTls;
use conclave_rpc::Role;
use conclave_rpc::{BodyWriter, ClientOptions, Connection, Credentials, Endpoint, Status};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{conclave, flip_bit_in, on_path, Proc, BIN};

/// A started child (killed when the test ends, however it ends) and the
/// first line it printed.
struct Started {
    proc: Proc,
    line: String,
}

impl Started {
    /// Starts `cmd` and waits for its first stdout line (its address).
    fn start(mut cmd: Command, log: &Path) -> Started {
        let err = std::fs::File::create(log).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut p = Started {
            proc: Proc::new(child),
            line: String::new(),
        };
        BufReader::new(stdout).read_line(&mut p.line).unwrap();
        assert!(
            !p.line.is_empty(),
            "process exited early; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        p
    }

    fn alive(&mut self) -> bool {
        matches!(self.proc.try_wait(), Ok(None))
    }
}

fn tool(name: &str) {
    assert!(
        on_path(name),
        "this test needs `{name}` on PATH (apt-get install {name})"
    );
}

/// A conclave: certs in `certs/` (without the site key), the site key in `keys/`.
struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    certs: PathBuf,
    keys: PathBuf,
}

impl Site {
    fn new(site_key: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let certs = root.join("certs");
        let keys = root.join("keys");
        common::certs(&certs, &["--site-key", site_key]);
        std::fs::create_dir(&keys).unwrap();
        // The only copy of the site key lives in the key server's directory.
        std::fs::rename(certs.join("site/server.key"), keys.join("server.key")).unwrap();
        Site {
            _tmp: tmp,
            root,
            certs,
            keys,
        }
    }

    fn keyserver(&self, listen: &str, tag: &str) -> (Started, Endpoint) {
        self.keyserver_with(listen, tag, &[])
    }

    /// `conclave keyserver` over this site's keys and certificates.
    fn keyserver_cmd(&self, listen: &str) -> Command {
        let mut cmd = conclave();
        cmd.arg("keyserver")
            .arg("--keys")
            .arg(&self.keys)
            .arg("--certs")
            .arg(&self.certs)
            .args(["--listen", listen]);
        cmd
    }

    fn keyserver_with(&self, listen: &str, tag: &str, extra: &[&str]) -> (Started, Endpoint) {
        let mut cmd = self.keyserver_cmd(listen);
        cmd.args(extra);
        let p = Started::start(cmd, &self.root.join(format!("keyserver-{tag}.log")));
        let ep = p
            .line
            .trim()
            .strip_prefix("keyserver listening on ")
            .unwrap_or_else(|| panic!("unexpected output {:?}", p.line))
            .parse()
            .unwrap();
        (p, ep)
    }

    /// The keyless probe, optionally under `strace -f` writing to `trace`.
    fn probe(&self, ks: &Endpoint, trace: Option<&Path>) -> (Started, String) {
        let mut cmd = match trace {
            Some(t) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
                    .arg(t)
                    .arg(BIN);
                c
            }
            None => conclave(),
        };
        cmd.arg("keyless-probe")
            .arg("--cert")
            .arg(self.certs.join("site/server.crt"))
            .arg("--certs")
            .arg(&self.certs)
            .args(["--keyserver", &ks.to_string(), "--key-name", "server"]);
        let mut p = Started::start(cmd, &self.root.join("probe.log"));
        // "keyless-probe listening on https://ADDR pid N"
        let words: Vec<&str> = p.line.split_whitespace().collect();
        assert_eq!(
            words.get(..3),
            Some(&["keyless-probe", "listening", "on"][..]),
            "{:?}",
            p.line
        );
        let addr = words[3].strip_prefix("https://").unwrap().to_string();
        // Stop the probe itself (strace follows it out), gracefully.
        p.proc.stop_via(words[5].parse().unwrap(), Duration::from_secs(5));
        (p, addr)
    }

    fn creds(&self, role: Role) -> Credentials {
        Credentials::from_dir(&self.certs, role).unwrap()
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn curl(site: &Site, addr: &str, tls: &str) -> Output {
    let port = addr.rsplit(':').next().unwrap();
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(site.certs.join("ca/root.crt"))
        .args(tls.split_whitespace())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/")))
}

fn s_client(site: &Site, addr: &str, version: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-ign_eof",
            "-connect",
            addr,
            "-servername",
            "localhost",
            version,
        ])
        .args(["-verify_return_error", "-verify_hostname", "localhost", "-CAfile"])
        .arg(site.certs.join("ca/root.crt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rustls_get(site: &Site, addr: &str, version: &'static rustls::SupportedProtocolVersion) -> String {
    let roots = conclave_rpc::tls::load_roots(&site.certs.join("ca/root.crt")).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    assert_eq!(tls.conn.protocol_version(), Some(version.version));
    String::from_utf8_lossy(&resp).into_owned()
}

/// TLS 1.2 and 1.3 with curl, openssl s_client and rustls against a probe that
/// holds only the certificate; returns the strace log when traced.
fn handshakes_succeed(site: &Site, addr: &str, kind: &str) {
    for tls in ["--tlsv1.2 --tls-max 1.2", "--tlsv1.3"] {
        let out = curl(site, addr, tls);
        assert!(
            out.status.success(),
            "{kind} curl {tls}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            conclave_keys::probe::PROBE_BODY
        );
    }
    for (flag, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let text = s_client(site, addr, flag);
        assert!(text.contains("keyless ok"), "{kind} s_client {flag}:\n{text}");
        assert!(
            text.contains(proto),
            "{kind} s_client {flag} did not negotiate {proto}:\n{text}"
        );
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{kind} s_client {flag}:\n{text}"
        );
    }
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let resp = rustls_get(site, addr, v);
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{kind} rustls {v:?}: {resp}");
        assert!(
            resp.ends_with(conclave_keys::probe::PROBE_BODY),
            "{kind} rustls {v:?}: {resp}"
        );
    }
}

#[test]
fn rsa_site_handshakes_without_the_key_file_tls12_and_tls13() {
    for t in ["curl", "openssl", "strace"] {
        tool(t);
    }
    let site = Site::new("rsa2048");
    let (_ks, ep) = site.keyserver("tcp://127.0.0.1:0", "a");
    let trace = site.root.join("probe.strace");
    let (probe, addr) = site.probe(&ep, Some(&trace));
    handshakes_succeed(&site, &addr, "rsa");
    // Concurrent handshakes each get a pooled connection to the key server.
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    (0..3)
                        .map(|_| rustls_get(&site, &addr, &rustls::version::TLS13))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in hs {
            for resp in h.join().unwrap() {
                assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
            }
        }
    });
    drop(probe);
    let log = std::fs::read_to_string(&trace).unwrap();
    // Positive control: strace did record the probe's opens.
    assert!(
        log.contains("server.crt"),
        "strace recorded no open of server.crt:\n{log}"
    );
    assert!(
        log.contains("edge.key"),
        "strace recorded no open of edge.key:\n{log}"
    );
    assert!(
        !log.contains("server.key"),
        "the probe opened the site key:\n{log}"
    );
    assert!(
        !log.contains(site.keys.to_str().unwrap()),
        "the probe touched the key directory"
    );
}

#[test]
fn ecdsa_site_handshakes_tls12_and_tls13() {
    tool("curl");
    tool("openssl");
    let site = Site::new("ecdsa-p256");
    let (_ks, ep) = site.keyserver("tcp://127.0.0.1:0", "a");
    let (_probe, addr) = site.probe(&ep, None);
    handshakes_succeed(&site, &addr, "ecdsa");
    let info = KeyClient::with_credentials(ep, &site.creds(Role::Edge))
        .unwrap()
        .key_info("server")
        .unwrap();
    assert_eq!(info.algorithm, conclave_keys::KeyAlgorithm::EcdsaP256);
    assert_eq!(info.schemes, vec![SignatureScheme::ECDSA_NISTP256_SHA256]);
}

/// Signs with the key server and checks each signature with `openssl`
/// against the public key taken from the certificate.
#[test]
fn signatures_verify_with_the_certificate_public_key() {
    tool("openssl");
    for (kind, schemes) in [
        (
            "rsa2048",
            vec![
                (SignatureScheme::RSA_PKCS1_SHA256, "sha256", false),
                (SignatureScheme::RSA_PKCS1_SHA384, "sha384", false),
                (SignatureScheme::RSA_PKCS1_SHA512, "sha512", false),
                (SignatureScheme::RSA_PSS_SHA256, "sha256", true),
                (SignatureScheme::RSA_PSS_SHA384, "sha384", true),
                (SignatureScheme::RSA_PSS_SHA512, "sha512", true),
            ],
        ),
        (
            "ecdsa-p256",
            vec![(SignatureScheme::ECDSA_NISTP256_SHA256, "sha256", false)],
        ),
    ] {
        let site = Site::new(kind);
        // The signing pool and inline signing must give the same answers.
        for (tag, extra) in [("pool", &["--sign-pool"][..]), ("inline", &[][..])] {
            let (_ks, ep) = site.keyserver_with("tcp://127.0.0.1:0", tag, extra);
            let client = KeyClient::with_credentials(ep, &site.creds(Role::Edge)).unwrap();
            let wrong = if kind == "rsa2048" {
                SignatureScheme::ECDSA_NISTP256_SHA256
            } else {
                SignatureScheme::RSA_PSS_SHA256
            };
            let refused = client.sign("server", wrong, b"m").unwrap_err().to_string();
            assert!(
                refused.contains("ENOTSUP") || refused.contains("not supported"),
                "{tag}: {refused}"
            );
            let pubkey = site.root.join("pub.pem");
            let out = run(Command::new("openssl")
                .args(["x509", "-pubkey", "-noout", "-in"])
                .arg(site.certs.join("site/server.crt"))
                .arg("-out")
                .arg(&pubkey));
            assert!(out.status.success());
            let msg_path = site.root.join("msg");
            // Handshake-shaped: the key server signs nothing else by default.
            let message = conclave_keys::shape::tls13_certificate_verify(b"known answer, 32 bytes of hash!!");
            std::fs::write(&msg_path, &message).unwrap();
            for &(scheme, digest, pss) in &schemes {
                let sig = client.sign("server", scheme, &message).unwrap();
                let sig_path = site.root.join("sig");
                std::fs::write(&sig_path, &sig).unwrap();
                let mut cmd = Command::new("openssl");
                cmd.args(["dgst", &format!("-{digest}"), "-verify"]).arg(&pubkey);
                if pss {
                    cmd.args([
                        "-sigopt",
                        "rsa_padding_mode:pss",
                        "-sigopt",
                        "rsa_pss_saltlen:digest",
                    ]);
                }
                cmd.arg("-signature").arg(&sig_path).arg(&msg_path);
                let out = run(&mut cmd);
                assert!(
                    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
                    "{kind} {scheme:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // A flipped message must not verify (the check is real).
                let mut bad = message.clone();
                flip_bit_in(&mut bad, 0);
                std::fs::write(&msg_path, &bad).unwrap();
                assert!(
                    !run(&mut cmd).status.success(),
                    "{kind} {scheme:?} verified a wrong message"
                );
                std::fs::write(&msg_path, &message).unwrap();
            }
        }
    }
}

fn raw_call(conn: &mut Connection, code: u32, body: &[u8]) -> Status {
    conn.call(code, body).unwrap().status()
}

fn sign_body(name: &str, scheme: u16, message: &[u8]) -> Vec<u8> {
    let mut w = BodyWriter::new();
    w.str(name).u16(scheme).blob(message);
    w.finish()
}

#[test]
fn refusals_are_clear_and_the_server_keeps_serving() {
    let site = Site::new("rsa2048");
    let (mut ks, ep) = site.keyserver("tcp://127.0.0.1:0", "a");
    let edge = KeyClient::with_credentials(ep.clone(), &site.creds(Role::Edge)).unwrap();
    let msg = conclave_keys::shape::tls13_certificate_verify(&[7u8; 32]);

    // A client without a certificate: the TLS handshake is refused.
    let roots = conclave_rpc::tls::load_roots(&site.certs.join("ca/root.crt")).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(conclave_rpc::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut anon_opts = ClientOptions::plain();
    anon_opts.tls = Some(ClientTls {
        config: Arc::new(cfg),
        name: Role::KeyServer.server_name(),
    });
    let anon =
        Connection::connect(&ep, &anon_opts).and_then(|mut c| c.call(conclave_keys::op::LIST_KEYS, &[]));
    let err = anon.expect_err("a client without a certificate was served");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    // Wrong roles: their first request is answered EACCES.
    for role in [Role::Client, Role::FileServer] {
        let opts = ClientOptions::mtls(&site.creds(role), Role::KeyServer).unwrap();
        let mut c = Connection::connect(&ep, &opts).unwrap();
        let reply = c.call(conclave_keys::op::LIST_KEYS, &[]).unwrap();
        assert_eq!(reply.status(), Status::EACCES, "role {role}");
        let e = KeyClient::new(ep.clone(), opts).sign("server", SignatureScheme::RSA_PSS_SHA256, &msg);
        assert!(e.is_err(), "role {role} got a signature");
    }

    let opts = ClientOptions::mtls(&site.creds(Role::Edge), Role::KeyServer).unwrap();
    let mut c = Connection::connect(&ep, &opts).unwrap();
    let pss = u16::from(SignatureScheme::RSA_PSS_SHA256);
    let ecdsa = u16::from(SignatureScheme::ECDSA_NISTP256_SHA256);
    use conclave_keys::op::{GET_KEY, MAX_MESSAGE, SIGN};
    // Unknown key.
    assert_eq!(
        raw_call(&mut c, SIGN, &sign_body("nosuchkey", pss, &msg)),
        Status::ENOENT
    );
    // Path-like names.
    for name in [
        "../keys/server",
        "/etc/ssl/private/server",
        "..",
        "a/b",
        "server.key/..",
    ] {
        assert_eq!(
            raw_call(&mut c, SIGN, &sign_body(name, pss, &msg)),
            Status::EINVAL,
            "{name}"
        );
        let mut w = BodyWriter::new();
        w.str(name);
        assert_eq!(raw_call(&mut c, GET_KEY, &w.finish()), Status::EINVAL, "{name}");
    }
    // A scheme for another key type.
    assert_eq!(
        raw_call(&mut c, SIGN, &sign_body("server", ecdsa, &msg)),
        Status::ENOTSUP
    );
    assert_eq!(
        raw_call(&mut c, SIGN, &sign_body("server", 0xfefe, &msg)),
        Status::ENOTSUP
    );
    // Oversized messages: over the operation's limit, and over the frame limit.
    let big = vec![1u8; MAX_MESSAGE + 1];
    assert_eq!(
        raw_call(&mut c, SIGN, &sign_body("server", pss, &big)),
        Status::E2BIG
    );
    let huge = vec![1u8; 100_000];
    assert_eq!(
        raw_call(&mut c, SIGN, &sign_body("server", pss, &huge)),
        Status::E2BIG
    );
    // The original's oracles are gone.
    for retired in conclave_keys::op::RETIRED {
        assert_eq!(
            raw_call(&mut c, retired, &[0u8; 16]),
            Status::ENOSYS,
            "opcode {retired}"
        );
    }
    // Malformed body.
    assert_eq!(raw_call(&mut c, SIGN, &[0, 0, 0, 9, b's']), Status::EPROTO);
    // The same connection, and other clients, still get signatures.
    let ok = c.call(SIGN, &sign_body("server", pss, &msg)).unwrap();
    assert_eq!(ok.status(), Status::OK);
    assert_eq!(ok.body.len(), 4 + 256);
    assert_eq!(
        edge.sign("server", SignatureScheme::RSA_PSS_SHA256, &msg)
            .unwrap()
            .len(),
        256
    );
    let listed = edge.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "server");
    assert!(ks.alive());
}

#[test]
fn keyserver_refuses_bad_key_files_at_start() {
    let site = Site::new("rsa2048");
    std::fs::copy(site.keys.join("server.key"), site.keys.join("bad name.key")).unwrap();
    let out = run(&mut site.keyserver_cmd("tcp://127.0.0.1:0"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad name.key") && err.contains("invalid key name"),
        "{err}"
    );
    std::fs::remove_file(site.keys.join("bad name.key")).unwrap();
    std::fs::write(
        site.keys.join("junk.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = run(&mut site.keyserver_cmd("tcp://127.0.0.1:0"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.key"), "{err}");
}

/// A key server that goes away fails handshakes, the edge side keeps
/// running, and handshakes work again once the key server is back.
#[test]
fn probe_survives_a_keyserver_restart() {
    tool("curl");
    let site = Site::new("rsa2048");
    let (ks, ep) = site.keyserver("tcp://127.0.0.1:0", "a");
    let (mut probe, addr) = site.probe(&ep, None);
    let tls13 = "--tlsv1.3";
    assert!(curl(&site, &addr, tls13).status.success());
    drop(ks);
    let down = curl(&site, &addr, tls13);
    assert!(
        !down.status.success(),
        "handshake succeeded with the key server down"
    );
    assert!(probe.alive(), "the probe died with the key server");
    let log = std::fs::read_to_string(site.root.join("probe.log")).unwrap();
    assert!(
        log.contains("keyless signature failed"),
        "no logged reason:\n{log}"
    );
    let (_ks2, _) = site.keyserver(&ep.to_string(), "b");
    let back = curl(&site, &addr, tls13);
    assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
    assert_eq!(
        String::from_utf8_lossy(&back.stdout),
        conclave_keys::probe::PROBE_BODY
    );
}

/// `conclave bench keys` runs both key types, both modes, and reports real
/// signatures (short run: this checks the tool, not the speed).
#[test]
fn bench_keys_reports_real_signatures() {
    let out = run(conclave().args(["bench", "keys", "--seconds", "0.2", "--clients", "1,2", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2);
    for r in rows {
        assert!(r["signatures"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        assert!(r["latency_us"]["p50"].as_u64().unwrap() > 0, "{r}");
    }
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert!(modes.contains(&"in-process") && modes.contains(&"keyserver"));
}
