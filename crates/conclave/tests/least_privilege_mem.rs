//! Least privilege on the memory servers (issue 15), with real processes on
//! loopback: `conclave memserver` (smdish and smuf), a real edge with TLS
//! session resumption, and clients of several identities (role and tenant,
//! certificates issued by the test's own CA).
//!
//! * a `client` cannot open `TLS_TICKET_KEYS` (`EACCES`) even when granted
//!   every other name, and what the memory server holds for it is the
//!   edge's ciphertext: no 32-byte window of it opens a ticket the edge
//!   issued, while the edge's ticket secret opens it and yields the key
//!   that does (so it is the keys, sealed);
//! * tenant B's edge cannot open, peek, lock or see tenant A's memory files;
//! * a read-only grant cannot publish (`EACCES`), and the default grants
//!   give `client` nothing;
//! * TLS resumption across two edge workers still works with sealed keys.
#![cfg(all(feature = "edge", feature = "mem"))]

use conclave_edge::tickets::{open_ticket, TicketSeal, SEGMENT, SEGMENT_SIZE};
use conclave_mem::proto::{self, open, unlock};
use conclave_mem::{connect, MemError, MemOptions, MemSpec, MemoryStore};
use conclave_rpc::pki::{write_file, Ca, SiteKey};
use conclave_rpc::{ClientOptions, Connection, Credentials, Identity, Role, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

mod common;
use common::{conclave_ok, free_port, start_logged, wait_port, Proc};

/// A conclave made by the test's CA: `certs/` (CA certificate, memserver,
/// edge and client of the default tenant, the site certificate) and one
/// directory per extra identity.
struct World {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_pem, _ca_key) = Ca::generate().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        write_file(&certs.join("root.crt"), &ca_pem, false, true).unwrap();
        let w = World { dir, ca };
        for role in [Role::MemServer, Role::Edge, Role::Client] {
            w.issue_into(&certs, &Identity::new(role, Default::default()));
        }
        let (c, k) =
            w.ca.issue(&["localhost", "127.0.0.1"], SiteKey::EcdsaP256)
                .unwrap();
        write_file(&certs.join("server.crt"), &c, false, true).unwrap();
        write_file(&certs.join("server.key"), &k, true, true).unwrap();
        w
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn issue_into(&self, dir: &Path, id: &Identity) {
        let (c, k) = self.ca.issue_identity(id).unwrap();
        write_file(&dir.join(format!("{}.crt", id.role)), &c, false, true).unwrap();
        write_file(&dir.join(format!("{}.key", id.role)), &k, true, true).unwrap();
    }

    /// The credentials of `id` (`role` or `role@tenant`), issued on first use.
    fn creds(&self, id: &str) -> Credentials {
        let id: Identity = id.parse().unwrap();
        let dir = self.p(&format!("id-{}-{}", id.role, id.tenant));
        if !dir.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(self.p("certs/root.crt"), dir.join("root.crt")).unwrap();
            self.issue_into(&dir, &id);
        }
        Credentials::from_dir(&dir, id.role).unwrap()
    }

    /// `conclave memserver --kind KIND` on a loopback port with `grants`;
    /// the process and the spec its clients use.
    fn memserver(&self, kind: &str, grants: &[&str]) -> (Proc, MemSpec) {
        let port = free_port();
        let listen = format!("tcp://127.0.0.1:{port}");
        let certs = self.p("certs").display().to_string();
        let host_s = self.p("host").display().to_string();
        let mut args = vec![
            "memserver",
            "--kind",
            kind,
            "--listen",
            &listen,
            "--certs",
            &certs,
        ];
        if kind == "smuf" {
            args.extend(["--dir", &host_s]);
        }
        for g in grants {
            args.extend(["--grant", g]);
        }
        let p = start_logged(self.dir.path(), &format!("memserver-{kind}"), &args);
        wait_port(port);
        let spec = match kind {
            "smuf" => format!("smuf+{listen}?dir={host_s}"),
            _ => format!("{kind}+{listen}"),
        };
        (p, spec.parse().unwrap())
    }

    fn store(&self, spec: &MemSpec, id: &str) -> Arc<dyn MemoryStore> {
        connect(
            spec,
            &MemOptions {
                creds: Some(self.creds(id)),
                secret_file: None,
            },
        )
        .unwrap()
    }

    /// A raw protocol connection as `id`, for exact statuses.
    fn raw(&self, spec: &MemSpec, id: &str) -> Connection {
        let ep = match spec {
            MemSpec::Smdish { endpoint } | MemSpec::Smuf { endpoint, .. } => endpoint.clone(),
            _ => unreachable!(),
        };
        Connection::connect(
            &ep,
            &ClientOptions::mtls(&self.creds(id), Role::MemServer).unwrap(),
        )
        .unwrap()
    }
}

/// OPEN on a raw connection: the status and, if OK, the handle.
fn raw_open(c: &mut Connection, name: &str, size: u64) -> (Status, Option<u32>) {
    let r = c
        .call(proto::OPEN, &open::Request { name, size }.encode())
        .unwrap();
    let status = r.status();
    let handle = (status == Status::OK).then(|| open::Reply::decode(&r.body).unwrap().handle);
    (status, handle)
}

/// The session ticket of a TLS 1.2 handshake with `openssl s_client`.
fn tls12_ticket(dir: &Path, port: u16) -> Vec<u8> {
    let sess = dir.join("sess.pem");
    let out = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-servername", "localhost", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(dir.join("certs/root.crt"))
        .arg("-sess_out")
        .arg(&sess)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed");
    assert!(
        sess.exists(),
        "no session saved: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["sess_id", "-noout", "-text", "-in"])
        .arg(&sess)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    // BIO_dump lines after "TLS session ticket:": "0000 - 5c 4e ..-.. ..  ascii".
    let mut ticket = Vec::new();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim().starts_with("TLS session ticket:"));
    lines.next();
    for l in lines {
        let l = l.trim_start();
        let Some(hex) = l.get(7..7 + 48).filter(|_| l.get(4..7) == Some(" - ")) else {
            break;
        };
        for b in hex.replace('-', " ").split_whitespace() {
            ticket.push(u8::from_str_radix(b, 16).unwrap());
        }
    }
    assert!(ticket.len() > 28, "no ticket in:\n{text}");
    ticket
}

/// Every 32-byte window of `bytes`, tried as the ticket key of `ticket`.
fn no_window_opens(bytes: &[u8], ticket: &[u8]) -> bool {
    bytes
        .windows(32)
        .all(|w| open_ticket(w.try_into().unwrap(), ticket).is_none())
}

fn ticket_keys_are_the_edges_alone_and_sealed(kind: &str) {
    let w = World::new();
    conclave_ok(&["content", "--out", &w.p("html").display().to_string()]);
    let secret = w.p("ticket.secret");
    write_file(&secret, &"5a".repeat(32), true, true).unwrap();
    // `client` is granted every name: TLS_TICKET_KEYS stays the edge's.
    let (_ms, spec) = w.memserver(kind, &["edge@*:rw:*", "client@*:rw:*"]);
    let port = free_port();
    std::fs::write(
        w.p("edge.toml"),
        format!(
            "workers = 2\n[shared]\nkind = \"{spec}\"\ncerts = \"certs\"\nticket_secret_file = \"ticket.secret\"\n\
             [[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"html\"\n\
             [server.tls]\ncertificate = \"certs/server.crt\"\nkey = \"certs/server.key\"\n"
        ),
    )
    .unwrap();
    let edge_toml = w.p("edge.toml").display().to_string();
    conclave_ok(&["edge", "--config", &edge_toml, "--check"]);
    let _edge = start_logged(w.dir.path(), "edge", &["edge", "--config", &edge_toml]);
    wait_port(port);

    // A client cannot open it: EACCES on the wire, Denied in the API, and
    // the same through `conclave mem --role client`.
    let mut raw = w.raw(&spec, "client");
    assert_eq!(
        raw_open(&mut raw, SEGMENT, SEGMENT_SIZE as u64).0,
        Status::EACCES,
        "{kind}"
    );
    assert_eq!(
        raw_open(&mut raw, "other", 8).0,
        Status::OK,
        "{kind}: granted names open"
    );
    match w.store(&spec, "client").open(SEGMENT, SEGMENT_SIZE) {
        Err(MemError::Denied { op: "open", name }) => assert_eq!(name, SEGMENT),
        other => panic!("{kind}: expected EACCES, got {other:?}"),
    }
    let out = common::conclave()
        .args(["mem", "--spec", &spec.to_string(), "--role", "client", "--certs"])
        .arg(w.p("id-client-default"))
        .args(["get", SEGMENT, "--size", &SEGMENT_SIZE.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open of \"TLS_TICKET_KEYS\" refused") && err.contains("EACCES"),
        "{err}"
    );

    // What a granted reader (another edge process) gets from the server.
    let ticket = tls12_ticket(w.dir.path(), port);
    let mut f = w.store(&spec, "edge").open(SEGMENT, SEGMENT_SIZE).unwrap();
    let g = f.lock().unwrap();
    let stored = g.to_vec();
    g.release().unwrap();
    assert_eq!(stored.len(), SEGMENT_SIZE);
    assert!(stored.iter().any(|b| *b != 0), "{kind}: the edge wrote its keys");
    assert!(
        no_window_opens(&stored, &ticket),
        "{kind}: a raw ticket key is in the segment"
    );
    if kind == "smuf" {
        let segs: Vec<_> = std::fs::read_dir(w.p("host"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        assert_eq!(segs.len(), 1, "only TLS_TICKET_KEYS: {segs:?}");
        let host = std::fs::read(&segs[0]).unwrap();
        assert_eq!(host.len(), SEGMENT_SIZE);
        assert!(
            no_window_opens(&host, &ticket),
            "a raw ticket key is in the host file"
        );
    }
    // The same bytes and the edge's secret give the key that opens the
    // ticket: the segment is the keys, sealed.
    let keys = TicketSeal::from_file(&secret)
        .unwrap()
        .open(&stored)
        .expect("sealed with the edge's ticket secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        keys.epoch_start <= now && now - keys.epoch_start < 600,
        "{keys:?}"
    );
    assert!(
        open_ticket(&keys.current, &ticket).is_some(),
        "{kind}: the unsealed current key opens the edge's ticket"
    );
    assert!(TicketSeal::from_secret(b"another edge secret")
        .open(&stored)
        .is_none());

    // Resumption across the two workers, with sealed keys.
    for tls in ["1.2", "1.3"] {
        let (full, resumed) = common::ab_resumed(
            &w.dir.path().join("certs/root.crt"),
            tls,
            &format!("https://127.0.0.1:{port}/1k.txt"),
        );
        assert_eq!(full + resumed, 200);
        assert!(
            resumed >= 190,
            "{kind} TLS {tls}: only {resumed} of 200 resumed ({full} full)"
        );
    }
}

#[test]
fn smdish_client_cannot_open_ticket_keys_and_holds_only_their_ciphertext() {
    ticket_keys_are_the_edges_alone_and_sealed("smdish");
}

#[test]
fn smuf_client_cannot_open_ticket_keys_and_holds_only_their_ciphertext() {
    ticket_keys_are_the_edges_alone_and_sealed("smuf");
}

#[test]
fn tenant_b_cannot_open_peek_lock_or_see_tenant_a_memory_files() {
    for kind in ["smdish", "smuf"] {
        let w = World::new();
        let (_ms, spec) = w.memserver(kind, &[]);
        // Tenant a: a counter at 42, and its lock held.
        let a = w.store(&spec, "edge@a");
        let mut fa = a.open("zone", 8).unwrap();
        let mut g = fa.lock().unwrap();
        g[0] = 42;
        g.unlock().unwrap();
        let mut holder = a.open("zone", 8).unwrap();
        let held = holder.lock().unwrap();
        // In tenant a, another size is EINVAL with the existing size.
        let mut ra = w.raw(&spec, "edge@a");
        let r = ra
            .call(
                proto::OPEN,
                &open::Request {
                    name: "zone",
                    size: 16,
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(r.status(), Status::EINVAL, "{kind}");
        assert_eq!(open::decode_existing_size(&r.body), Some(8));

        // Tenant b's edge: the same name is b's own memory file, so nothing
        // of a's shows: not its size (OK, not EINVAL), not its contents or
        // version, not its lock (granted at once while a holds a's).
        let mut rb = w.raw(&spec, "edge@b");
        let (st, hb) = raw_open(&mut rb, "zone", 16);
        assert_eq!(st, Status::OK, "{kind}");
        let hb = hb.unwrap();
        // a's handle numbers mean nothing on b's connection.
        let r = rb
            .call(
                proto::PEEK,
                &conclave_mem::proto::peek::Request {
                    handle: hb + 1,
                    known_version: 0,
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(r.status(), Status::EBADF, "{kind}");
        let b = w.store(&spec, "edge@b");
        let mut fb = b.open("zone", 16).unwrap();
        let peeked = fb
            .peek()
            .unwrap()
            .map(|(v, seg)| (v, seg.iter().all(|x| *x == 0)));
        assert_eq!(peeked, Some((0, true)), "{kind}: b peeks its own version 0");
        let mut gb = fb.lock_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        assert_eq!(gb.version(), 0, "{kind}");
        assert!(gb.iter().all(|x| *x == 0), "{kind}: none of a's bytes");
        gb[0] = 7;
        gb.unlock().unwrap();
        // a's memory file is untouched.
        held.release().unwrap();
        let ga = fa.lock().unwrap();
        assert_eq!((ga.version(), ga[0]), (1, 42), "{kind}");
        ga.release().unwrap();
        if kind == "smuf" {
            let segs = std::fs::read_dir(w.p("host"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|e| e == "seg"))
                .count();
            assert_eq!(segs, 2, "one host file per tenant");
        }
    }
}

#[test]
fn a_read_only_grant_cannot_publish_and_client_gets_nothing_by_default() {
    for kind in ["smdish", "smuf"] {
        let w = World::new();
        {
            let (_ms, spec) = w.memserver(kind, &[]);
            let mut raw = w.raw(&spec, "client");
            assert_eq!(raw_open(&mut raw, "zone", 8).0, Status::EACCES, "{kind}: default");
            assert_eq!(raw_open(&mut w.raw(&spec, "edge"), "zone", 8).0, Status::OK);
        }
        let (_ms, spec) = w.memserver(kind, &["edge@*:rw:*", "client:ro:stats"]);
        let mut e = w.store(&spec, "edge").open("stats", 8).unwrap();
        let mut g = e.lock().unwrap();
        g[0] = 9;
        g.unlock().unwrap();
        let c = w.store(&spec, "client");
        assert!(matches!(
            c.open("other", 8),
            Err(MemError::Denied { op: "open", .. })
        ));
        let mut f = c.open("stats", 8).unwrap();
        assert_eq!(
            f.peek().unwrap().map(|(v, s)| (v, s[0])),
            Some((1, 9)),
            "{kind}: ro peeks"
        );
        let mut g = f.lock().unwrap();
        assert_eq!(g[0], 9, "{kind}: ro locks and reads");
        g[0] = 66;
        match g.unlock() {
            Err(MemError::Denied { op: "publish", name }) => assert_eq!(name, "stats"),
            other => panic!("{kind}: expected EACCES, got {other:?}"),
        }
        // Exact status on the wire; the lock was released, nothing published.
        let mut raw = w.raw(&spec, "client");
        let h = raw_open(&mut raw, "stats", 8).1.unwrap();
        let lock = raw
            .call(
                proto::LOCK,
                &proto::lock::Request {
                    handle: h,
                    timeout_ms: 5000,
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(
            lock.status(),
            Status::OK,
            "{kind}: the refused publish released the lock"
        );
        let publish = match kind {
            "smdish" => unlock::Publish::Data(&[1u8; 8]),
            _ => unlock::Publish::Tag([0; 16]),
        };
        let r = raw
            .call(proto::UNLOCK, &unlock::Request { handle: h, publish }.encode())
            .unwrap();
        assert_eq!(r.status(), Status::EACCES, "{kind}");
        let g = e.lock().unwrap();
        assert_eq!((g.version(), g[0]), (1, 9), "{kind}: nothing published");
        g.release().unwrap();
    }
}

#[test]
fn edge_refuses_a_ticket_secret_that_group_or_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    conclave_ok(&["content", "--out", &w.p("html").display().to_string()]);
    let secret = w.p("ticket.secret");
    std::fs::write(&secret, "5a".repeat(32)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        w.p("edge.toml"),
        "[shared]\nkind = \"smdish+tcp://127.0.0.1:9\"\ncerts = \"certs\"\nticket_secret_file = \"ticket.secret\"\n\
         [[server]]\nlisten = \"127.0.0.1:9\"\nmode = \"standalone\"\nroot = \"html\"\n\
         [server.tls]\ncertificate = \"certs/server.crt\"\nkey = \"certs/server.key\"\n",
    )
    .unwrap();
    let out = common::conclave()
        .args(["edge", "--check", "--config"])
        .arg(w.p("edge.toml"))
        .output()
        .unwrap();
    common::assert_refused_as_readable(&out, &secret, "0644");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = common::conclave()
        .args(["edge", "--check", "--config"])
        .arg(w.p("edge.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
