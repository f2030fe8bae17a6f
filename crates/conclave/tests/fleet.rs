//! A fleet on loopback, as real processes: three edge "nodes", each with its
//! own memory server (the edge's shared state) and its own file server (its
//! docroot, in its own image), sharing two key servers that hold the same
//! site key and the same ticket-key secret. `conclave ab --resume` spread
//! over the three nodes resumes on any node; a key server killed during
//! load costs no request; ticket keys rolling during load keep sessions
//! resuming, and a session of the previous epoch resumes on another node.
#![cfg(all(feature = "edge", feature = "keys", feature = "fs", feature = "mem"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::{conclave_ok as run, free_port, wait_port, Proc};

/// Requests each node's access log has recorded.
fn logged(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("access.log")).map_or(0, |s| s.lines().count())
}

struct KeyServer {
    proc: Proc,
    port: u16,
}

struct Node {
    dir: PathBuf,
    port: u16,
    _edge: Proc,
    _mem: Proc,
    _fs: Proc,
}

struct Fleet {
    /// Dropped last: the processes above are stopped first.
    nodes: Vec<Node>,
    keyservers: Vec<KeyServer>,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Two key servers (ticket epochs of `rotation`) and three nodes.
    fn start(rotation: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        common::certs(&d.join("certs"), &[]);
        run(&["content", "--out", d.join("imgsrc/html").to_str().unwrap()]);
        let keys = d.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::rename(d.join("certs/site/server.key"), keys.join("server.key")).unwrap();
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        conclave_testkit::write_private(d.join("tickets.secret"), &secret);
        let s = |p: &Path| p.display().to_string();
        let keyservers: Vec<KeyServer> = (0..2)
            .map(|i| {
                let port = free_port();
                let proc = common::start_logged(
                    d,
                    &format!("keyserver{i}"),
                    &[
                        "keyserver",
                        "--keys",
                        &s(&keys),
                        "--certs",
                        &s(&d.join("certs")),
                        "--listen",
                        &format!("tcp://127.0.0.1:{port}"),
                        "--ticket-keys",
                        &s(&d.join("tickets.secret")),
                        "--ticket-rotation",
                        rotation,
                    ],
                );
                wait_port(port);
                KeyServer { proc, port }
            })
            .collect();
        let ks_list = keyservers
            .iter()
            .map(|k| format!("\"tcp://127.0.0.1:{}\"", k.port))
            .collect::<Vec<_>>()
            .join(", ");
        run(&[
            "mkfs",
            "--device",
            "std",
            "--size",
            "64M",
            &s(&d.join("imgsrc")),
            &s(&d.join("site.img")),
        ]);
        let nodes = (0..3)
            .map(|i| {
                let nd = d.join(format!("node{i}"));
                std::fs::create_dir_all(&nd).unwrap();
                // Each node's docroot is its own image on its own file server.
                std::fs::copy(d.join("site.img"), nd.join("site.img")).unwrap();
                let (fport, port) = (free_port(), free_port());
                let fs = common::start_logged(
                    &nd,
                    "fileserver",
                    &[
                        "fileserver",
                        "--image",
                        &s(&nd.join("site.img")),
                        "--listen",
                        &format!("tcp://127.0.0.1:{fport}"),
                        "--certs",
                        &s(&d.join("certs")),
                        "--grant",
                        "edge:ro:/html",
                    ],
                );
                let (mem, mport) = common::start_smdish(&nd, &d.join("certs"));
                wait_port(fport);
                let certs = s(&d.join("certs"));
                let toml = format!(
                    "workers = 1\nworker_threads = 2\naccess_log = \"access.log\"\n\
                     [storage]\nkind = \"nextfs\"\nserver = \"tcp://127.0.0.1:{fport}\"\ncerts = \"{certs}\"\n\
                     [shared]\nkind = \"smdish+tcp://127.0.0.1:{mport}\"\ncerts = \"{certs}\"\n\
                     ticket_source = \"keyserver\"\nticket_keyservers = [{ks_list}]\n\
                     [[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"/html\"\n\
                     [server.tls]\ncertificate = \"{certs}/site/server.crt\"\nkeyservers = [{ks_list}]\n\
                     key_name = \"server\"\ncerts = \"{certs}\"\n"
                );
                let cfg = nd.join("edge.toml");
                std::fs::write(&cfg, toml).unwrap();
                run(&["edge", "--config", &s(&cfg), "--check"]);
                let edge = common::start_logged(&nd, "edge", &["edge", "--config", &s(&cfg)]);
                wait_port(port);
                Node {
                    dir: nd,
                    port,
                    _edge: edge,
                    _mem: mem,
                    _fs: fs,
                }
            })
            .collect();
        Fleet {
            nodes,
            keyservers,
            dir,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("https://127.0.0.1:{}/1k.txt", n.port))
            .collect()
    }

    fn cacert(&self) -> String {
        self.dir.path().join("certs/ca/root.crt").display().to_string()
    }

    /// `conclave ab ARGS --cacert .. --json URL1 URL2 URL3` as a command.
    fn ab(&self, args: &[&str]) -> Command {
        let mut c = common::conclave();
        c.arg("ab")
            .args(args)
            .args(["--cacert", &self.cacert(), "--json"])
            .args(self.urls());
        c
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for n in &self.nodes {
            all.push_str(&std::fs::read_to_string(n.dir.join("edge.log")).unwrap_or_default());
        }
        all
    }
}

/// (complete, failed, full, resumed) of an ab JSON report.
fn counts(stdout: &[u8]) -> (u64, u64, u64, u64) {
    (
        common::ab_json_u64(stdout, "/complete"),
        common::ab_json_u64(stdout, "/failed"),
        common::ab_json_u64(stdout, "/tls/handshakes_full"),
        common::ab_json_u64(stdout, "/tls/handshakes_resumed"),
    )
}

/// At least 95% of the connections after the first `concurrency` (which
/// have no session yet) resumed.
fn assert_resumed(what: &str, concurrency: u64, (complete, failed, full, resumed): (u64, u64, u64, u64)) {
    eprintln!("{what}: {complete} complete, {failed} failed, {full} full, {resumed} resumed");
    assert_eq!(failed, 0, "{what}: failed requests");
    assert_eq!(full + resumed, complete, "{what}");
    let after_first = complete - concurrency;
    assert!(
        resumed * 100 >= after_first * 95,
        "{what}: only {resumed} of {after_first} resumed ({full} full)"
    );
}

#[test]
fn sessions_resume_on_any_node_and_a_lost_key_server_costs_no_request() {
    let mut fleet = Fleet::start("1h");
    for tls in ["1.2", "1.3"] {
        let out = common::run_ok(&mut fleet.ab(&["-n", "300", "-c", "3", "--resume", "--tls", tls]));
        assert_resumed(&format!("TLS {tls} over three nodes"), 3, counts(&out.stdout));
    }
    // Every connection a full handshake, so every one a signature: kill one
    // key server while they run.
    let before: usize = fleet.nodes.iter().map(|n| logged(&n.dir)).sum();
    let mut load = fleet
        .ab(&["-n", "1500", "-c", "4", "--tls", "1.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        common::wait_until(Duration::from_secs(60), || {
            fleet.nodes.iter().map(|n| logged(&n.dir)).sum::<usize>() >= before + 150
        }),
        "the load did not start"
    );
    fleet.keyservers[0].proc.kill().unwrap();
    assert!(
        load.try_wait().unwrap().is_none(),
        "the key server must die during the load, not after it"
    );
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (complete, failed, full, _) = counts(&out.stdout);
    eprintln!("key server 0 killed during the load: {complete} complete, {failed} failed");
    assert_eq!((complete, failed, full), (1500, 0, 1500), "no request lost");
    let logs = fleet.logs();
    assert!(
        logs.contains(&format!("127.0.0.1:{}", fleet.keyservers[0].port)) && logs.contains("left out"),
        "an edge noticed the lost key server and left it out:\n{logs}"
    );
    // With one key server gone for good, handshakes keep going to the other.
    let out = common::run_ok(&mut fleet.ab(&["-n", "60", "-c", "3"]));
    assert_eq!(counts(&out.stdout).1, 0);
}

/// The ticket epoch at this moment for a rotation of `period`.
fn epoch(period: Duration) -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() / period.as_millis()
}

/// `openssl s_client -tls1_2` to `port` saving (`-sess_out`) or offering
/// (`-sess_in`) the session in `sess`; true if the session was reused.
fn s_client_reused(fleet: &Fleet, port: u16, sess: &Path, save: bool) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-CAfile", &fleet.cacert()])
        .arg(if save { "-sess_out" } else { "-sess_in" })
        .arg(sess)
        .stdin(Stdio::null())
        .output()
        .expect("this test needs openssl on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BEGIN CERTIFICATE") || text.contains("Reused"),
        "{text}"
    );
    text.contains("Reused, TLSv1.2")
}

#[test]
fn ticket_keys_rolling_during_load_keep_sessions_resuming_across_nodes() {
    let period = Duration::from_secs(2);
    let fleet = Fleet::start("2s");
    for tls in ["1.2", "1.3"] {
        // Five seconds of load spans two or three epoch changes.
        let e0 = epoch(period);
        let out = common::run_ok(&mut fleet.ab(&["-t", "5", "-c", "2", "--resume", "--tls", tls]));
        assert!(epoch(period) >= e0 + 2, "the load spanned epoch changes");
        let c = counts(&out.stdout);
        assert!(c.0 >= 40, "TLS {tls}: too few requests to judge: {c:?}");
        assert_resumed(&format!("TLS {tls} with keys rolling every 2s"), 2, c);
    }
    // A session made on node 0 in one epoch resumes on node 1 in the next.
    let sess = fleet.dir.path().join("session.pem");
    let e = epoch(period);
    // Start early in an epoch, so the next step is surely in the next one.
    assert!(common::poll_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % period.as_millis();
            epoch(period) > e && ms < 500
        }
    ));
    let made = epoch(period);
    assert!(!s_client_reused(&fleet, fleet.nodes[0].port, &sess, true));
    // Time itself is what is tested here: wait for the next epoch.
    std::thread::sleep(Duration::from_millis(
        (period.as_millis()
            - SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % period.as_millis())
            as u64
            + 300,
    ));
    assert_eq!(epoch(period), made + 1);
    assert!(
        s_client_reused(&fleet, fleet.nodes[1].port, &sess, false),
        "a session of the previous epoch resumes on another node"
    );
}

#[test]
fn an_edge_refuses_key_servers_holding_different_keys_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::certs(&d.join("certs"), &[]);
    common::certs(&d.join("other"), &[]);
    std::fs::create_dir_all(d.join("html")).unwrap();
    let s = |p: &Path| p.display().to_string();
    let ports: Vec<u16> = ["certs", "other"]
        .iter()
        .map(|from| {
            let keys = d.join(format!("keys-{from}"));
            std::fs::create_dir_all(&keys).unwrap();
            std::fs::rename(d.join(from).join("site/server.key"), keys.join("server.key")).unwrap();
            free_port()
        })
        .collect();
    let _ks: Vec<Proc> = ["certs", "other"]
        .iter()
        .zip(&ports)
        .map(|(from, port)| {
            let p = common::start_logged(
                d,
                &format!("keyserver-{from}"),
                &[
                    "keyserver",
                    "--keys",
                    &s(&d.join(format!("keys-{from}"))),
                    "--certs",
                    &s(&d.join("certs")),
                    "--listen",
                    &format!("tcp://127.0.0.1:{port}"),
                ],
            );
            wait_port(*port);
            p
        })
        .collect();
    let (a, b) = (
        format!("tcp://127.0.0.1:{}", ports[0]),
        format!("tcp://127.0.0.1:{}", ports[1]),
    );
    let cfg = d.join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{}\"\nmode = \"standalone\"\nroot = \"html\"\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkeyservers = [\"{a}\", \"{b}\"]\n\
             certs = \"certs\"\n",
            free_port()
        ),
    )
    .unwrap();
    let mut edge = common::start_logged(d, "edge", &["edge", "--config", &s(&cfg)]);
    let st = common::wait_exit(&mut edge, Duration::from_secs(60));
    assert!(!st.success(), "the edge must not start");
    let log = std::fs::read_to_string(d.join("edge.log")).unwrap();
    assert!(
        log.contains(&format!(
            "key \"server\" differs between key servers {a} and {b}: every endpoint of a site must hold the same key"
        )),
        "{log}"
    );
}
