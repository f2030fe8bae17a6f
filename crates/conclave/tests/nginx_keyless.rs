//! Stock Debian NGINX with a TLS key held by the key server, through the
//! conclave OpenSSL provider (`libconclave_openssl.so`, docs/nginx.md
//! "Keyless"): TLS 1.2 and 1.3 handshakes with RSA (PKCS#1 and PSS) and
//! ECDSA keys verified by curl and `openssl s_client`, no NGINX process
//! opening a key file (strace), NGINX surviving a key-server outage with the
//! cause in its error log, and recovering when the key server is back.
//! Also `openssl s_server`, to show the provider is not NGINX-specific.

mod common;

use common::pki::{KeyType, Pki};
use common::{certs, conclave, conclave_ok, on_path, start_logged, wait_port, wait_until, Proc};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn needs(name: &str) {
    assert!(
        on_path(name),
        "this test needs `{name}` on PATH (scripts/test.sh installs it)"
    );
}

/// The provider built beside the binary under test (`target/<profile>/`, or
/// `deps/` when cargo built it only as this crate's dev-dependency).
fn provider_so() -> PathBuf {
    let dir = Path::new(common::BIN).parent().unwrap();
    // The newer of the two, so a stale top-level copy never hides a rebuild.
    [
        dir.join("libconclave_openssl.so"),
        dir.join("deps/libconclave_openssl.so"),
    ]
    .into_iter()
    .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
    .unwrap_or_else(|| {
        panic!(
            "libconclave_openssl.so not built next to {}: cargo build -p conclave-openssl",
            common::BIN
        )
    })
}

/// Where the test's key server listens: a fixed TCP port or a UNIX socket,
/// fixed so it can be restarted at the same address.
#[derive(Clone)]
enum Listen {
    Tcp(u16),
    Unix(PathBuf),
}

impl Listen {
    fn endpoint(&self) -> String {
        match self {
            Listen::Tcp(port) => format!("tcp://127.0.0.1:{port}"),
            Listen::Unix(p) => format!("unix://{}", p.display()),
        }
    }
}

/// A key server for the test's keys, answering when this returns.
fn keyserver(dir: &Path, listen: &Listen) -> Proc {
    keyserver_of(dir, "keys", listen, "keyserver")
}

/// A key server for the keys in `dir/keys_dir`, logging to `dir/log.log`.
fn keyserver_of(dir: &Path, keys_dir: &str, listen: &Listen, log: &str) -> Proc {
    let (keys, ids) = (
        dir.join(keys_dir).display().to_string(),
        dir.join("certs").display().to_string(),
    );
    let p = start_logged(
        dir,
        log,
        &[
            "keyserver",
            "--keys",
            &keys,
            "--certs",
            &ids,
            "--listen",
            &listen.endpoint(),
        ],
    );
    match listen {
        Listen::Tcp(port) => wait_port(*port),
        Listen::Unix(path) => {
            assert!(
                wait_until(Duration::from_secs(10), || {
                    std::os::unix::net::UnixStream::connect(path).is_ok()
                }),
                "key server not listening on {}",
                path.display()
            );
            // NGINX's workers run as `nobody` here: connecting takes search
            // permission on the directory and write permission on the socket.
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode;
            std::fs::set_permissions(dir, mode(0o755)).unwrap();
            std::fs::set_permissions(path, mode(0o666)).unwrap();
        }
    }
    p
}

/// Everything one test needs: a conclave PKI, a site CA with an RSA and an
/// ECDSA leaf whose keys live only in the key server's directory, the key
/// server, and a key reference for each key.
struct Setup {
    dir: tempfile::TempDir,
    ks: Listen,
    keyserver: Option<Proc>,
    ca: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        Self::listening(|_| Listen::Tcp(common::free_port()))
    }

    /// With the key server at `listen(test directory)`.
    fn listening(listen: impl FnOnce(&Path) -> Listen) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        certs(&d.join("certs"), &[]);
        let pki = Pki::new(&d.join("site"));
        std::fs::create_dir(d.join("keys")).unwrap();
        for (stem, kind) in [
            ("rsa", KeyType::Rsa),
            ("ec", KeyType::Ecdsa),
            ("ec384", KeyType::EcdsaP384),
        ] {
            let (_, key) = pki.leaf(stem, "localhost", &["localhost"], kind);
            // The only copy of the key: nginx's side of the test never sees it.
            std::fs::rename(&key, d.join("keys").join(format!("{stem}.key"))).unwrap();
        }
        let ks = listen(d);
        let keyserver = Some(keyserver(d, &ks));
        for stem in ["rsa", "ec", "ec384"] {
            conclave_ok(&[
                "keyref",
                "--server",
                &ks.endpoint(),
                "--certs",
                &d.join("certs").display().to_string(),
                "--name",
                stem,
                "--out",
                &d.join(format!("{stem}.keyref")).display().to_string(),
            ]);
        }
        let ca = pki.ca();
        Setup {
            dir,
            ks,
            keyserver,
            ca,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The nginx settings for key reference `stem`, its files written.
    fn snippet(&self, stem: &str) -> conclave_eval::nginx_keyless::NginxKeyless {
        let k = conclave_eval::nginx_keyless::nginx_snippet(
            &provider_so(),
            &self.path(&format!("{stem}.keyref")),
        );
        k.write_files().unwrap();
        k
    }
}

fn curl(ca: &Path, port: u16, tls: &str) -> Output {
    let (min, max) = match tls {
        "1.2" => ("--tlsv1.2", "1.2"),
        _ => ("--tlsv1.3", "1.3"),
    };
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args([
            min,
            "--tls-max",
            max,
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap()
}

fn assert_curl_ok(ca: &Path, port: u16, tls: &str) {
    let out = curl(ca, port, tls);
    assert!(
        out.status.success(),
        "curl TLS {tls} to :{port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keyless ok\n");
}

/// `openssl s_client -verify_return_error` with `extra` flags; returns (exit ok, stdout).
fn s_client(ca: &Path, port: u16, extra: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-brief"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_s_client_ok(ca: &Path, port: u16, extra: &[&str], expect: &[&str]) {
    let (ok, text) = s_client(ca, port, extra);
    assert!(ok, "s_client {extra:?} to :{port} failed:\n{text}");
    for e in expect {
        assert!(text.contains(e), "s_client {extra:?}: no {e:?} in\n{text}");
    }
}

/// nginx.conf: a server for the RSA key reference and one for the ECDSA one.
fn nginx_conf(s: &Setup, rsa_port: u16, ec_port: u16) -> (PathBuf, Vec<(String, String)>) {
    nginx_conf_with(s, rsa_port, ec_port, "")
}

/// [`nginx_conf`] with `listen_opts` added to both `listen`s (`reuseport`:
/// the kernel spreads connections over both workers).
fn nginx_conf_with(
    s: &Setup,
    rsa_port: u16,
    ec_port: u16,
    listen_opts: &str,
) -> (PathBuf, Vec<(String, String)>) {
    let (rsa, ec) = (s.snippet("rsa"), s.snippet("ec"));
    let d = s.dir.path().display();
    let mut conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n{}",
        rsa.extra_main_conf
    );
    conf.push_str("events { worker_connections 64; }\nhttp {\n    access_log off;\n");
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        conf.push_str(&format!("    {t}_temp_path {d}/tmp_{t};\n"));
    }
    for (port, stem, k) in [(rsa_port, "rsa", &rsa), (ec_port, "ec", &ec)] {
        conf.push_str(&format!(
            "    server {{\n        listen 127.0.0.1:{port} ssl{listen_opts};\n        server_name localhost;\n        \
             ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {d}/site/{stem}.crt;\n        \
             ssl_certificate_key {};\n        location / {{ return 200 \"keyless ok\\n\"; }}\n    }}\n",
            k.ssl_certificate_key
        ));
    }
    conf.push_str("}\n");
    let path = s.path("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    // Both snippets name the same provider; either environment will do.
    assert_eq!(rsa.files[0].1, ec.files[0].1);
    (path, rsa.env)
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn workers_of(master: i32) -> Vec<i32> {
    let out = Command::new("pgrep")
        .args(["-P", &master.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn stock_nginx_signs_through_the_key_server() {
    for t in ["nginx", "strace", "curl", "openssl", "pgrep"] {
        needs(t);
    }
    let mut s = Setup::new();
    let (rsa_port, ec_port) = (common::free_port(), common::free_port());
    let (conf, env) = nginx_conf(&s, rsa_port, ec_port);
    let trace = s.path("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .args(["nginx", "-p"])
        .arg(s.dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-e", &s.path("error.log").display().to_string()])
        .envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path("nginx.stderr")).unwrap())
        // strace leads the group nginx inherits, so a drop stops the workers too.
        .process_group(0);
    let nginx = common::nginx::started(cmd, s.dir.path(), &[rsa_port, ec_port]);
    let master = master_pid(&s.path("nginx.pid"));

    // Handshakes: both TLS versions, both key types, PKCS#1 and PSS.
    for tls in ["1.2", "1.3"] {
        assert_curl_ok(&s.ca, rsa_port, tls);
        assert_curl_ok(&s.ca, ec_port, tls);
    }
    assert_s_client_ok(
        &s.ca,
        rsa_port,
        &["-tls1_3"],
        &["Protocol version: TLSv1.3", "RSA-PSS", "Verification: OK"],
    );
    assert_s_client_ok(
        &s.ca,
        rsa_port,
        &["-tls1_2", "-sigalgs", "RSA+SHA256"],
        &[
            "Protocol version: TLSv1.2",
            "Signature type: RSA\n",
            "Verification: OK",
        ],
    );
    assert_s_client_ok(
        &s.ca,
        rsa_port,
        &["-tls1_2", "-sigalgs", "rsa_pss_rsae_sha384"],
        &["Protocol version: TLSv1.2", "RSA-PSS", "Verification: OK"],
    );
    assert_s_client_ok(
        &s.ca,
        ec_port,
        &["-tls1_3"],
        &["Protocol version: TLSv1.3", "ECDSA", "Verification: OK"],
    );
    assert_s_client_ok(
        &s.ca,
        ec_port,
        &["-tls1_2"],
        &["Protocol version: TLSv1.2", "ECDSA", "Verification: OK"],
    );

    // No NGINX process opened a key file; it read the references.
    let opened = std::fs::read_to_string(&trace).unwrap();
    let keys_dir = s.path("keys").display().to_string();
    assert!(!opened.contains(&keys_dir), "nginx opened a file in {keys_dir}");
    // (It does open its own mTLS identity, certs/edge/edge.key: that is
    // its key-server client's credential, not the site's key.)
    for site_key in ["/rsa.key\"", "/ec.key\""] {
        assert!(
            !opened.contains(site_key),
            "nginx opened a site key:\n{}",
            grep(&opened, site_key)
        );
    }
    assert!(
        opened.contains("rsa.keyref") && opened.contains("ec.keyref"),
        "no keyref open traced"
    );
    assert!(opened.contains("libconclave_openssl.so"), "provider not loaded");

    // Key server down: handshakes fail, nginx stays up and says why.
    drop(s.keyserver.take());
    for tls in ["1.2", "1.3"] {
        let out = curl(&s.ca, rsa_port, tls);
        assert_eq!(
            out.status.code(),
            Some(35),
            "curl TLS {tls} with the key server down should fail the handshake"
        );
        assert_eq!(curl(&s.ca, ec_port, tls).status.code(), Some(35));
    }
    assert!(alive(master), "nginx master died with the key server");
    let workers = workers_of(master);
    assert_eq!(workers.len(), 2, "nginx workers: {workers:?}");
    let log = std::fs::read_to_string(s.path("error.log")).unwrap();
    assert!(
        log.contains("conclave") && log.contains("key server unreachable") && log.contains(&s.ks.endpoint()),
        "error log does not name the failure:\n{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "error log leaks key material");

    // Back on the same port: handshakes succeed again, on the same workers.
    s.keyserver = Some(keyserver(s.dir.path(), &s.ks));
    for tls in ["1.2", "1.3"] {
        assert_curl_ok(&s.ca, rsa_port, tls);
        assert_curl_ok(&s.ca, ec_port, tls);
    }
    assert_eq!(workers_of(master), workers);
    drop(nginx);
}

/// Starts nginx (no strace) with `conf`; returns it and its master's pid.
fn start_nginx(s: &Setup, conf: &Path, env: Vec<(String, String)>, ports: &[u16]) -> (Proc, i32) {
    let mut cmd = common::nginx::command(s.dir.path(), conf);
    cmd.envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(s.path("nginx.stderr")).unwrap());
    let nginx = common::nginx::started(cmd, s.dir.path(), ports);
    let master = master_pid(&s.path("nginx.pid"));
    (nginx, master)
}

/// The pid in nginx's pid file, once there is one: nginx creates the file
/// before it writes the number.
fn master_pid(pidfile: &Path) -> i32 {
    let read_pid = || std::fs::read_to_string(pidfile).ok()?.trim().parse::<i32>().ok();
    assert!(
        wait_until(Duration::from_secs(10), || read_pid().is_some()),
        "nginx wrote no pid to {}",
        pidfile.display()
    );
    read_pid().unwrap()
}

/// Established TCP connections to 127.0.0.1:`port`, counted by the pid
/// holding their client end (`ss -tnp`).
fn connections_to(port: u16) -> std::collections::BTreeMap<i32, usize> {
    let out = Command::new("ss")
        .args([
            "-Htnp",
            "state",
            "established",
            "dst",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    let mut by_pid = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for part in line.split("pid=").skip(1) {
            let pid: i32 = part.split(',').next().unwrap().parse().unwrap();
            *by_pid.entry(pid).or_insert(0) += 1;
        }
    }
    by_pid
}

#[test]
fn each_nginx_worker_keeps_one_key_server_connection() {
    for t in ["nginx", "curl", "pgrep", "ss"] {
        needs(t);
    }
    let s = Setup::new();
    let Listen::Tcp(ks_port) = s.ks else {
        unreachable!()
    };
    let (rsa_port, ec_port) = (common::free_port(), common::free_port());
    let (conf, env) = nginx_conf_with(&s, rsa_port, ec_port, " reuseport");
    let (nginx, master) = start_nginx(&s, &conf, env, &[rsa_port, ec_port]);
    // The master decoded the key references but never connects.
    assert_eq!(connections_to(ks_port).get(&master), None);
    // 24 handshakes, spread by the kernel over both workers (reuseport
    // hashes each new connection: all on one worker has odds 2^-23).
    for i in 0..24 {
        assert_curl_ok(&s.ca, rsa_port, if i % 2 == 0 { "1.2" } else { "1.3" });
    }
    let mut workers = workers_of(master);
    workers.retain(|w| alive(*w));
    workers.sort();
    assert_eq!(workers.len(), 2, "nginx workers: {workers:?}");
    // One connection per worker, reused for all its signatures: the RSA
    // key's (the ECDSA key signed nothing, so it has none).
    let conns = connections_to(ks_port);
    let expect: std::collections::BTreeMap<i32, usize> = workers.iter().map(|w| (*w, 1)).collect();
    assert_eq!(
        conns, expect,
        "key-server connections by pid (workers {workers:?})"
    );
    drop(nginx);
}

#[test]
fn nginx_signs_over_a_unix_socket_and_reconnects_after_a_restart() {
    for t in ["nginx", "curl", "pgrep"] {
        needs(t);
    }
    let mut s = Setup::listening(|d| Listen::Unix(d.join("keyserver.sock")));
    let (rsa_port, ec_port) = (common::free_port(), common::free_port());
    let (conf, env) = nginx_conf(&s, rsa_port, ec_port);
    let (nginx, master) = start_nginx(&s, &conf, env, &[rsa_port, ec_port]);
    for tls in ["1.2", "1.3"] {
        assert_curl_ok(&s.ca, rsa_port, tls);
        assert_curl_ok(&s.ca, ec_port, tls);
    }
    // Restarted at the same socket while the workers hold connections to
    // the old process: the next signature finds its connection dead and
    // reconnects, with no failed handshake.
    drop(s.keyserver.take());
    s.keyserver = Some(keyserver(s.dir.path(), &s.ks));
    for tls in ["1.2", "1.3", "1.2", "1.3"] {
        assert_curl_ok(&s.ca, rsa_port, tls);
        assert_curl_ok(&s.ca, ec_port, tls);
    }
    // Down: handshakes fail with the cause logged; nginx stays up.
    drop(s.keyserver.take());
    assert_eq!(curl(&s.ca, rsa_port, "1.3").status.code(), Some(35));
    assert!(alive(master), "nginx master died with the key server");
    let log = std::fs::read_to_string(s.path("error.log")).unwrap();
    assert!(
        log.contains("key server unreachable") && log.contains(&s.ks.endpoint()),
        "error log does not name the failure:\n{log}"
    );
    drop(nginx);
}

/// A key reference may name fallback key servers (`conclave keyref
/// --fallback`): with the first one gone, NGINX's workers sign at the next
/// with no failed handshake; with all gone, the error log names them all.
/// `conclave keyref` refuses a fallback that holds another key by that name.
#[test]
fn nginx_fails_over_to_the_fallback_key_server_of_its_reference() {
    for t in ["nginx", "curl"] {
        needs(t);
    }
    let mut s = Setup::new();
    let d = s.dir.path().to_path_buf();
    let second_port = common::free_port();
    let second = Listen::Tcp(second_port);
    let mut ks2 = Some(keyserver_of(&d, "keys", &second, "keyserver2"));
    let keyref = |stem: &str, fallback: &Listen| {
        conclave()
            .args(["keyref", "--server", &s.ks.endpoint(), "--fallback"])
            .arg(fallback.endpoint())
            .arg("--certs")
            .arg(d.join("certs"))
            .args(["--name", stem, "--out"])
            .arg(d.join(format!("{stem}.keyref")))
            .output()
            .unwrap()
    };
    for stem in ["rsa", "ec"] {
        let out = keyref(stem, &second);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // A "fallback" holding another RSA key under the same name is refused.
    let other = Pki::new(&d.join("other"));
    let (_, key) = other.leaf("rsa", "localhost", &["localhost"], KeyType::Rsa);
    std::fs::create_dir(d.join("keys_other")).unwrap();
    std::fs::rename(&key, d.join("keys_other/rsa.key")).unwrap();
    let third = Listen::Tcp(common::free_port());
    let _ks3 = keyserver_of(&d, "keys_other", &third, "keyserver3");
    let out = keyref("rsa", &third);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "fallback key server {} holds another key",
            third.endpoint()
        )),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(d.join("rsa.keyref"))
            .unwrap()
            .starts_with("-----BEGIN"),
        "the refused run must not replace the reference"
    );

    let (rsa_port, ec_port) = (common::free_port(), common::free_port());
    let (conf, env) = nginx_conf(&s, rsa_port, ec_port);
    let (nginx, master) = start_nginx(&s, &conf, env, &[rsa_port, ec_port]);
    assert_curl_ok(&s.ca, rsa_port, "1.3");
    assert!(
        connections_to(second_port).is_empty(),
        "the fallback is used only when needed"
    );
    // The first key server gone: every handshake still succeeds, at the second.
    drop(s.keyserver.take());
    for tls in ["1.2", "1.3", "1.2", "1.3"] {
        assert_curl_ok(&s.ca, rsa_port, tls);
        assert_curl_ok(&s.ca, ec_port, tls);
    }
    assert!(!connections_to(second_port).is_empty());
    // Both gone: the handshake fails, NGINX stays up, the log names both.
    drop(ks2.take());
    assert_eq!(curl(&s.ca, rsa_port, "1.3").status.code(), Some(35));
    assert!(alive(master), "nginx master died with the key servers");
    let log = std::fs::read_to_string(s.path("error.log")).unwrap();
    assert!(
        log.contains("key server unreachable")
            && log.contains(&format!("{}, {}", s.ks.endpoint(), second.endpoint())),
        "error log does not name both key servers:\n{log}"
    );
    drop(nginx);
}

fn grep(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn openssl_s_server_uses_a_key_reference() {
    for t in ["openssl", "curl"] {
        needs(t);
    }
    let s = Setup::new();
    // RSA-2048, ECDSA P-256 and P-384, each in TLS 1.2 and 1.3.
    for stem in ["rsa", "ec", "ec384"] {
        let k = s.snippet(stem);
        let port = common::free_port();
        let log = s.path(&format!("s_server_{stem}.log"));
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-cert",
        ])
        .arg(s.path(&format!("site/{stem}.crt")))
        .arg("-key")
        .arg(&k.ssl_certificate_key)
        .envs(k.env.clone())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        let _server = Proc::new(cmd.spawn().unwrap());
        wait_port(port);
        for tls in ["1.2", "1.3"] {
            let out = curl(&s.ca, port, tls);
            assert!(
                out.status.success(),
                "curl TLS {tls} to s_server with {stem}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let page = String::from_utf8_lossy(&out.stdout);
            assert!(
                page.contains(&format!("Protocol  : TLSv{tls}")),
                "{stem} TLS {tls}: {page}"
            );
        }
    }
}

#[test]
fn keyref_is_refused_for_a_key_not_granted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs(&d.join("certs"), &[]);
    let pki = Pki::new(&d.join("site"));
    std::fs::create_dir(d.join("keys")).unwrap();
    for (stem, kind) in [("rsa", KeyType::Rsa), ("ec", KeyType::Ecdsa)] {
        let (_, key) = pki.leaf(stem, "localhost", &["localhost"], kind);
        std::fs::rename(&key, d.join("keys").join(format!("{stem}.key"))).unwrap();
    }
    let (_ks, port) = common::start_keyserver(d, &d.join("keys"), &d.join("certs"), &["--grant", "edge:rsa"]);
    let out = common::conclave()
        .args([
            "keyref",
            "--server",
            &format!("tcp://127.0.0.1:{port}"),
            "--certs",
        ])
        .arg(d.join("certs"))
        .args(["--name", "ec", "--out"])
        .arg(d.join("ec.keyref"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EACCES"), "keyref for an ungranted key: {err}");
    assert!(!d.join("ec.keyref").exists());
}

#[test]
fn nginx_refuses_a_broken_key_reference_and_says_why() {
    needs("nginx");
    let s = Setup::new();
    // Ours (the label) but not base64 inside: a bad reference, not "no key".
    std::fs::write(
        s.path("rsa.keyref"),
        "-----BEGIN CONCLAVE KEY REFERENCE-----\n!!!\n-----END CONCLAVE KEY REFERENCE-----\n",
    )
    .unwrap();
    let (conf, env) = nginx_conf(&s, common::free_port(), common::free_port());
    let out = Command::new("nginx")
        .args(["-t", "-p"])
        .arg(s.dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-e", &s.path("error.log").display().to_string()])
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conclave::bad key reference") && err.contains("rsa.keyref"),
        "nginx -t output: {err}"
    );
}
