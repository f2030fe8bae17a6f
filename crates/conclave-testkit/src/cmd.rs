//! Running programs from tests: the `conclave` binary, commands that must
//! succeed, signals.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// The `conclave` binary as a command. `bin` is `env!("CARGO_BIN_EXE_conclave")`,
/// which only the binary crate's own tests have, hence a parameter.
pub fn conclave(bin: impl AsRef<OsStr>) -> Command {
    Command::new(bin)
}

/// Runs `cmd` to completion and fails the test, with its output, unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`run_ok`], returning standard output as text.
pub fn stdout_ok(cmd: &mut Command) -> String {
    String::from_utf8(run_ok(cmd).stdout).expect("standard output is UTF-8")
}

/// Whether program `name` is on PATH (tests that need an outside tool say so
/// loudly, or skip, rather than fail obscurely).
pub fn on_path(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends signal `sig` (a name such as "TERM" or "KILL") to process `pid`,
/// or to process group `-pid` when `pid` is negative; true if `kill` succeeded.
pub fn signal(pid: i64, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
