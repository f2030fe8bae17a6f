//! Memory servers and clients as real processes: `conclave memserver` and
//! `conclave mem` children on loopback UNIX sockets in temp dirs.
#![cfg(feature = "mem")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{conclave, flip_bit_in, wait_exit, Proc};

/// Waits for a child with piped output; a child still running after
/// `limit` is killed and the test fails (a hang is the bug, not a timing).
fn wait_or_fail(mut p: Proc, limit: Duration) -> Output {
    let mut stdout = p.stdout.take();
    let mut stderr = p.stderr.take();
    let readers = std::thread::spawn(move || {
        use std::io::Read;
        let (mut o, mut e) = (Vec::new(), Vec::new());
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut o);
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut e);
        }
        (o, e)
    });
    let status = wait_exit(&mut p, limit);
    let (stdout, stderr) = readers.join().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn certs(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    common::certs(&out, &["--site-key", "ecdsa-p256"]);
    out
}

/// A conclave with one memory store of `kind` (smdish, smuf or smc).
struct Setup {
    dir: tempfile::TempDir,
    certs: PathBuf,
    spec: String,
    secret: PathBuf,
    _server: Option<Proc>,
}

fn setup(kind: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), "certs");
    let secret = dir.path().join("secret");
    conclave_testkit::write_private(&secret, b"0123456789abcdef0123456789abcdef");
    let sock = dir.path().join("mem.sock");
    let host = dir.path().join("host");
    let (server, spec) = match kind {
        "smc" => (None, format!("smc://{}", host.display())),
        _ => {
            let mut cmd = conclave();
            cmd.args(["memserver", "--kind", kind, "--listen"])
                .arg(format!("unix://{}", sock.display()))
                .arg("--certs")
                .arg(&certs)
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut spec = format!("{kind}+unix://{}", sock.display());
            if kind == "smuf" {
                cmd.arg("--dir").arg(&host);
                spec = format!("{spec}?dir={}", host.display());
            }
            let mut p = Proc::new(cmd.spawn().unwrap());
            let mut line = String::new();
            BufReader::new(p.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("listening on"), "memserver said {line:?}");
            (Some(p), spec)
        }
    };
    Setup {
        dir,
        certs,
        spec,
        secret,
        _server: server,
    }
}

impl Setup {
    fn mem(&self, args: &[&str]) -> Command {
        self.mem_with(&self.certs, args)
    }

    fn mem_with(&self, certs: &Path, args: &[&str]) -> Command {
        let mut c = conclave();
        c.args(["mem", "--spec", &self.spec, "--certs"])
            .arg(certs)
            .arg("--secret-file")
            .arg(&self.secret)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.mem(args).output().unwrap()
    }

    fn get(&self, name: &str) -> u64 {
        let out = self.run(&["get", name]);
        assert!(
            out.status.success(),
            "get failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    }

    /// A process that keeps `name` open until dropped, so the memory file
    /// outlives the short-lived clients.
    fn keeper(&self, name: &str) -> (Proc, ChildStdin) {
        let mut p = Proc::new(
            self.mem(&["open", name])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdin = p.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(p.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "open");
        (p, stdin)
    }

    fn host_file(&self, ext: &str) -> PathBuf {
        conclave_testkit::file_with_extension(&self.dir.path().join("host"), ext)
    }
}

fn stderr_of(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn exact_counter(kind: &str) {
    const PROCS: usize = 4;
    const TIMES: u64 = 10_000;
    let s = setup(kind);
    let (_keeper, _stdin) = s.keeper("ctr");
    let kids: Vec<Proc> = (0..PROCS)
        .map(|_| {
            Proc::new(
                s.mem(&["incr", "ctr", "--times", &TIMES.to_string()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for k in kids {
        let out = wait_or_fail(k, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "{kind} incr failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(s.get("ctr"), PROCS as u64 * TIMES);
}

#[test]
fn smdish_counter_is_exact_across_four_processes() {
    exact_counter("smdish");
}

#[test]
fn smuf_counter_is_exact_across_four_processes() {
    exact_counter("smuf");
}

#[test]
fn smc_counter_is_exact_across_four_processes() {
    exact_counter("smc");
}

#[test]
fn killed_lock_holder_does_not_block_others() {
    for kind in ["smdish", "smuf", "smc"] {
        let s = setup(kind);
        let (_keeper, _stdin) = s.keeper("k");
        assert!(s.run(&["put", "k", "--value", "7"]).status.success());
        let mut holder = Proc::new(s.mem(&["hold", "k"]).stdout(Stdio::piped()).spawn().unwrap());
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        // While it is held, a bounded wait gives up with a clear error.
        let err = stderr_of(&s.run(&["get", "k", "--timeout-ms", "300"]));
        assert!(err.contains("not granted within 300 ms"), "{kind}: {err}");
        // SIGKILL the holder: the lock comes back.
        holder.kill().unwrap();
        holder.wait().unwrap();
        let out = wait_or_fail(
            Proc::new(s.mem(&["incr", "k"]).stdout(Stdio::piped()).spawn().unwrap()),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{kind}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8", "{kind}");
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    for kind in ["smdish", "smuf", "smc"] {
        let s = setup(kind);
        let (_keeper, _stdin) = s.keeper("b");
        let err = stderr_of(&s.run(&["unlock", "b"]));
        assert!(err.contains("does not hold its lock"), "{kind}: {err}");
        let err = stderr_of(&s.run(&["get", "b", "--size", "16"]));
        assert!(
            err.contains("segment size 16") && err.contains("existing memory file's 8 bytes"),
            "{kind}: {err}"
        );
        let long = "n".repeat(300);
        let err = stderr_of(&s.run(&["get", &long]));
        assert!(err.contains("300 bytes; the limit is 255"), "{kind}: {err}");
        // The memory file still works after all that.
        assert!(s.run(&["incr", "b"]).status.success());
        assert_eq!(s.get("b"), 1);
    }
}

#[test]
fn memory_servers_refuse_clients_without_a_conclave_certificate() {
    for kind in ["smdish", "smuf"] {
        let s = setup(kind);
        // No certificate at all.
        let out = conclave()
            .args(["mem", "--spec", &s.spec, "get", "x"])
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert!(err.contains("require a client certificate"), "{kind}: {err}");
        // A certificate from another CA.
        let foreign = certs(s.dir.path(), "foreign");
        let err = stderr_of(&s.mem_with(&foreign, &["get", "x"]).output().unwrap());
        assert!(err.contains("cannot connect to unix://"), "{kind}: {err}");
        // The server is still serving its own clients.
        assert!(s.run(&["incr", "x"]).status.success(), "{kind}");
    }
}

#[test]
fn smuf_detects_a_flipped_bit_and_an_old_copy_and_stays_up() {
    let s = setup("smuf");
    let (_keeper, _stdin) = s.keeper("t");
    assert!(s.run(&["put", "t", "--value", "5"]).status.success());
    let seg = s.host_file("seg");
    let v1 = std::fs::read(&seg).unwrap();
    let mut flipped = v1.clone();
    flip_bit_in(&mut flipped, 3 * 8 + 4);
    std::fs::write(&seg, &flipped).unwrap();
    let err = stderr_of(&s.run(&["get", "t"]));
    assert!(err.contains("failed authentication"), "{err}");
    std::fs::write(&seg, &v1).unwrap();
    assert_eq!(s.get("t"), 5);
    assert!(s.run(&["put", "t", "--value", "6"]).status.success());
    let v2 = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &v1).unwrap();
    let err = stderr_of(&s.run(&["get", "t"]));
    assert!(
        err.contains("failed authentication") && err.contains("older copy"),
        "{err}"
    );
    std::fs::write(&seg, &v2).unwrap();
    assert_eq!(s.get("t"), 6);
    let _ = std::io::stdout().flush();
}
