//! The binary's own handle on `conclave-testkit`: the path of the `conclave`
//! binary (only this crate's tests have `CARGO_BIN_EXE_conclave`) and the
//! commands every test file runs with it. Each test file uses what it needs
//! (hence `dead_code`).
#![allow(dead_code, unused_imports)]

pub mod edge;
pub mod nginx;
pub mod pki;
pub mod up;

use std::path::Path;
use std::process::{Command, Output};

pub use conclave_testkit::{
    flip_bit, flip_bit_in, free_port, on_path, poll_until, run_ok, signal, stdout_ok, wait_exit, wait_port,
    wait_until, Proc, Rng,
};

/// The `conclave` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// `conclave` as a command, to add arguments to.
pub fn conclave() -> Command {
    conclave_testkit::conclave(BIN)
}

/// `conclave ARGS...`, which must succeed.
pub fn conclave_ok(args: &[&str]) -> Output {
    run_ok(conclave().args(args))
}

/// `conclave certs [EXTRA...] --out OUT`: a conclave's CA and certificates,
/// made as a user makes them.
pub fn certs(out: &Path, extra: &[&str]) {
    run_ok(conclave().arg("certs").args(extra).arg("--out").arg(out));
}

/// Starts `conclave ARGS` as a server whose stderr goes to `DIR/NAME.log`.
pub fn start_logged(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = conclave()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    server(child)
}

/// Starts a key server on a free loopback port holding the keys in `keys`,
/// with the identity in `certs` and `extra` flags (grants...); logs to
/// `dir/keyserver.log`. Returns it once it accepts connections, and its port.
#[allow(dead_code)]
pub fn start_keyserver(dir: &Path, keys: &Path, certs: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let (keys, certs, listen) = (
        keys.display().to_string(),
        certs.display().to_string(),
        format!("tcp://127.0.0.1:{port}"),
    );
    let mut args = vec![
        "keyserver",
        "--keys",
        &keys,
        "--certs",
        &certs,
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let p = start_logged(dir, "keyserver", &args);
    wait_port(port);
    (p, port)
}

/// Starts an smdish memory server on a free loopback port with the identity
/// in `certs`; logs to `dir/memserver.log`. Returns it once it accepts
/// connections, and its port.
#[allow(dead_code)]
pub fn start_smdish(dir: &Path, certs: &Path) -> (Proc, u16) {
    let port = free_port();
    let p = start_logged(
        dir,
        "memserver",
        &[
            "memserver",
            "--kind",
            "smdish",
            "--listen",
            &format!("tcp://127.0.0.1:{port}"),
            "--certs",
            &certs.display().to_string(),
        ],
    );
    wait_port(port);
    (p, port)
}

/// A started server, stopped on drop as in production: SIGTERM (so it can
/// clean up), then SIGKILL if it has not exited within 15 s.
pub fn server(child: std::process::Child) -> Proc {
    Proc::graceful(child, std::time::Duration::from_secs(15))
}

/// The whole number at JSON `pointer` (e.g. `/tls/handshakes_full`) in what
/// `conclave ab --json` printed: the one reader of ab's report in the tests.
pub fn ab_json_u64(stdout: &[u8], pointer: &str) -> u64 {
    let text = String::from_utf8_lossy(stdout);
    let report: serde_json::Value =
        serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("ab --json printed no JSON ({e}): {text}"));
    report
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no whole number at {pointer} in {text}"))
}

/// `conclave ab -n 200 -c 2 --resume --tls TLS --cacert CACERT --json URL`,
/// which must fail no request: (full, resumed) handshakes.
pub fn ab_resumed(cacert: &Path, tls: &str, url: &str) -> (u64, u64) {
    let out = conclave_ok(&[
        "ab",
        "-n",
        "200",
        "-c",
        "2",
        "--resume",
        "--tls",
        tls,
        "--cacert",
        &cacert.display().to_string(),
        "--json",
        url,
    ]);
    assert_eq!(ab_json_u64(&out.stdout, "/failed"), 0);
    (
        ab_json_u64(&out.stdout, "/tls/handshakes_full"),
        ab_json_u64(&out.stdout, "/tls/handshakes_resumed"),
    )
}

/// Asserts that `out` is a failed run whose stderr refuses the secret file
/// `path` for its `mode` (e.g. "0644"), with the exact message and fix.
pub fn assert_refused_as_readable(out: &Output, path: &Path, mode: &str) {
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "refusing {0}: mode {mode} lets group or others read it (run: chmod 600 {0})",
        path.display()
    );
    assert!(err.contains(&want), "{err}");
}
