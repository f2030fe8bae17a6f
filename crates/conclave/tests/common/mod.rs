//! The binary's own handle on `conclave-testkit`: the path of the `conclave`
//! binary (only this crate's tests have `CARGO_BIN_EXE_conclave`) and the
//! commands every test file runs with it. Each test file uses what it needs
//! (hence `dead_code`).
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::{Command, Output};

pub use conclave_testkit::{
    flip_bit, flip_bit_in, free_port, on_path, poll_until, run_ok, signal, stdout_ok, wait_exit, wait_port,
    wait_until, Proc,
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

/// A started server, stopped on drop as in production: SIGTERM (so it can
/// clean up), then SIGKILL if it has not exited within 15 s.
pub fn server(child: std::process::Child) -> Proc {
    Proc::graceful(child, std::time::Duration::from_secs(15))
}
