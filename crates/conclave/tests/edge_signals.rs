//! Operating a running edge as NGINX is operated (issue 17, points 1 and 2):
//! SIGHUP reloads under load with no failed request, an invalid reload keeps
//! the old configuration serving, SIGUSR1 kills nothing, `--reload`/`--stop`
//! go through the pid file, a second edge on a held port is refused by name,
//! SIGUSR2 hands the sockets to a new master with no failed request, and a
//! worker that cannot set up stops the edge once with exit code 78.
//! Real processes on loopback.
#![cfg(feature = "edge")]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

mod common;
use common::edge::curl;
use common::{conclave, free_port, signal, start_logged, wait_exit, wait_port, wait_until, Proc};

/// Both roots serve an index.html of the same length, so `conclave ab`
/// (which, as ab, counts a changed length as a failure) sees only real failures.
const ONE: &str = "version one\n";
const TWO: &str = "version two\n";

/// A directory with certificates, two document roots and an edge config.
struct World {
    dir: tempfile::TempDir,
    port: u16,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        common::certs(&dir.path().join("certs"), &[]);
        for (root, text) in [("one", ONE), ("two", TWO)] {
            std::fs::create_dir(dir.path().join(root)).unwrap();
            std::fs::write(dir.path().join(root).join("index.html"), text).unwrap();
        }
        World {
            dir,
            port: free_port(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `edge.toml`: two workers, `root`, and `extra` top-level lines.
    fn config(&self, root: &str, extra: &str) -> PathBuf {
        let text = format!(
            "workers = 2\ngraceful_timeout = \"5s\"\naccess_log = \"access.log\"\n{extra}\n\
             [[server]]\nlisten = \"127.0.0.1:{}\"\nmode = \"standalone\"\nroot = \"{root}\"\n\
             add_header = {{ X-Root = \"{root}\" }}\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n",
            self.port
        );
        let p = self.path("edge.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn start(&self, config: &Path) -> Proc {
        let edge = start_logged(
            self.dir.path(),
            "edge",
            &["edge", "--config", config.to_str().unwrap()],
        );
        wait_port(self.port);
        assert!(
            wait_until(Duration::from_secs(30), || self.log().contains("worker(s) ready")),
            "{}",
            self.log()
        );
        edge
    }

    /// The body of `/index.html` (empty when the request failed).
    fn get(&self) -> String {
        curl(
            self.dir.path(),
            &format!("https://127.0.0.1:{}/index.html", self.port),
            &[],
        )
        .text()
    }

    /// The `X-Root` header (`add_header`) of `/index.html`.
    fn root_header(&self) -> Option<String> {
        curl(
            self.dir.path(),
            &format!("https://127.0.0.1:{}/index.html", self.port),
            &[],
        )
        .header("x-root")
        .map(str::to_string)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("edge.log")).unwrap_or_default()
    }

    fn access_lines(&self) -> usize {
        std::fs::read_to_string(self.path("access.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// `conclave ab` for `secs` seconds, 4 connections at a time, one TLS
    /// handshake per request, in the background.
    fn ab(&self, secs: u32) -> Child {
        conclave()
            .args(["ab", "-t", &secs.to_string(), "-c", "4", "--json", "--cacert"])
            .arg(self.path("certs/ca/root.crt"))
            .arg(format!("https://127.0.0.1:{}/index.html", self.port))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until ab's requests show in the access log (the load is on).
    fn wait_load(&self) {
        let before = self.access_lines();
        assert!(
            wait_until(Duration::from_secs(30), || self.access_lines() >= before + 20),
            "ab's requests never reached the edge"
        );
    }

    /// `conclave edge --config CONFIG FLAG`.
    fn control(&self, config: &Path, flag: &str) -> Output {
        conclave()
            .arg("edge")
            .arg("--config")
            .arg(config)
            .arg(flag)
            .output()
            .unwrap()
    }
}

/// Asserts that ab ran to the end without one failed or non-2xx request.
fn assert_no_failure(ab: Child) {
    let out = ab.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ab: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::ab_json_u64(&out.stdout, "/failed"), 0, "{text}");
    assert_eq!(common::ab_json_u64(&out.stdout, "/non_2xx"), 0, "{text}");
    let complete = common::ab_json_u64(&out.stdout, "/complete");
    assert!(complete > 100, "{text}");
    eprintln!("ab: {complete} requests, none failed");
}

/// The pids of `pid`'s live child processes (its workers), sorted: every
/// process whose parent it is (`/proc/PID/task/*/children` would miss one
/// forked by another of its threads).
fn children_of(pid: u32) -> Vec<u32> {
    let mut kids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|k| {
            let stat = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap_or_default();
            // After "(comm) ": state, then the parent's pid.
            let mut rest = stat.rsplit_once(") ").map_or("", |(_, r)| r).split(' ');
            let state = rest.next();
            state != Some("Z") && rest.next().and_then(|p| p.parse().ok()) == Some(pid)
        })
        .collect();
    kids.sort_unstable();
    kids
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[test]
fn sighups_under_load_serve_the_new_root_and_header_with_no_failed_request() {
    let w = World::new();
    let cfg = w.config("one", "");
    let edge = w.start(&cfg);
    assert_eq!(w.get(), ONE);
    let first: Vec<u32> = children_of(edge.id());
    assert_eq!(first.len(), 2, "two workers");

    let mut ab = w.ab(15);
    w.wait_load();
    // Three reloads back to back under the load, each waited for.
    for (n, (root, want)) in [("two", TWO), ("one", ONE), ("two", TWO)].into_iter().enumerate() {
        w.config(root, "");
        assert!(signal(edge.id().into(), "HUP"));
        let serves = format!("reload: generation {} serves", n + 1);
        assert!(
            wait_until(Duration::from_secs(30), || w.log().contains(&serves)),
            "{}",
            w.log()
        );
        assert_eq!(w.get(), want);
        // The response header `add_header` sets changed with the reload too.
        assert_eq!(w.root_header().as_deref(), Some(root));
    }
    assert!(
        ab.try_wait().unwrap().is_none(),
        "the load ended before the reloads did"
    );
    assert_no_failure(ab);

    // The old workers drained and exited; two new ones serve.
    assert!(
        wait_until(Duration::from_secs(20), || first.iter().all(|p| !alive(*p))),
        "old workers still run"
    );
    let now = children_of(edge.id());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|p| !first.contains(p)));
    assert!(w.log().contains("SIGHUP: "), "{}", w.log());
}

#[test]
fn an_invalid_config_on_sighup_keeps_the_old_one_serving() {
    let w = World::new();
    let cfg = w.config("one", "");
    let edge = w.start(&cfg);
    let workers = children_of(edge.id());
    // Line 1 is refused by validation: the reload names the file and line.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("workers = 2", "workers = 0")
            .replace("\"one\"", "\"two\""),
    )
    .unwrap();
    assert!(signal(edge.id().into(), "HUP"));
    let want = format!(
        "SIGHUP: reload of {} refused, the running workers go on: {}:1: workers must be between 1 and 64",
        cfg.display(),
        cfg.display()
    );
    assert!(
        wait_until(Duration::from_secs(20), || w.log().contains(&want)),
        "{}",
        w.log()
    );
    let r = curl(
        w.dir.path(),
        &format!("https://127.0.0.1:{}/index.html", w.port),
        &[],
    );
    assert_eq!(r.text(), ONE, "{r:?} {}", w.log());
    assert_eq!(
        children_of(edge.id()),
        workers,
        "the workers were not replaced: {}",
        w.log()
    );

    // A valid file again reloads.
    std::fs::write(&cfg, good.replace("\"one\"", "\"two\"")).unwrap();
    assert!(signal(edge.id().into(), "HUP"));
    assert!(
        wait_until(Duration::from_secs(30), || w.get() == TWO),
        "{}",
        w.log()
    );
}

#[test]
fn a_reload_whose_workers_cannot_set_up_keeps_the_old_ones() {
    let w = World::new();
    common::certs(&w.path("other"), &[]);
    let cfg = w.config("one", "");
    let edge = w.start(&cfg);
    let workers = children_of(edge.id());
    // Valid as a file (what --check sees), but the key is not the certificate's.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "key = \"certs/site/server.key\"",
            "key = \"other/site/server.key\"",
        )
        .replace("\"one\"", "\"two\""),
    )
    .unwrap();
    assert!(signal(edge.id().into(), "HUP"));
    assert!(
        wait_until(Duration::from_secs(30), || w
            .log()
            .contains("reload failed, the running workers go on: worker ")),
        "{}",
        w.log()
    );
    assert!(w.log().contains(" could not start: TLS: "), "{}", w.log());
    assert_eq!(w.get(), ONE);
    assert_eq!(children_of(edge.id()), workers);
}

#[test]
fn a_worker_whose_site_key_does_not_match_its_certificate_fails_once_with_78() {
    let w = World::new();
    common::certs(&w.path("other"), &[]);
    let cfg = w.config("one", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "key = \"certs/site/server.key\"",
            "key = \"other/site/server.key\"",
        )
        .replace("workers = 2", "workers = 3");
    std::fs::write(&cfg, text).unwrap();
    let mut edge = conclave()
        .args(["edge", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(w.path("edge.log")).unwrap())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut edge, Duration::from_secs(30));
    let log = w.log();
    assert_eq!(st.code(), Some(78), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "the reason once: {log}");
    assert!(
        errors[0].starts_with("conclave: error: worker ") && errors[0].contains(" could not start: TLS: "),
        "{log}"
    );
    assert!(!log.contains("restarting"), "no restart: {log}");
    assert!(log.matches("started (pid").count() <= 3, "{log}");
}

#[test]
fn a_second_edge_on_a_held_port_exits_naming_the_port() {
    let w = World::new();
    let cfg = w.config("one", "");
    let _edge = w.start(&cfg);
    let second = tempfile::tempdir().unwrap();
    let cfg2 = second.path().join("edge.toml");
    std::fs::write(
        &cfg2,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("certs/", &format!("{}/certs/", w.dir.path().display()))
            .replace(
                "root = \"one\"",
                &format!("root = \"{}\"", w.path("one").display()),
            ),
    )
    .unwrap();
    let want = format!(
        "error: 127.0.0.1:{} is already in use (by another process)",
        w.port
    );
    let run = |cfg: &Path| {
        let mut c = conclave()
            .args(["edge", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let st = wait_exit(&mut c, Duration::from_secs(20));
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
        (st, err)
    };
    let (st, err) = run(&cfg2);
    assert!(!st.success());
    assert!(err.contains(&want), "{err}");
    // The first edge still serves, alone.
    assert_eq!(w.get(), ONE);

    // Held by something that is not an edge at all: the same answer.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let text = std::fs::read_to_string(&cfg2)
        .unwrap()
        .replace(&format!("127.0.0.1:{}", w.port), &format!("127.0.0.1:{port}"));
    std::fs::write(&cfg2, text).unwrap();
    let (st, err) = run(&cfg2);
    assert!(!st.success());
    assert!(
        err.contains(&format!(
            "error: 127.0.0.1:{port} is already in use (by another process)"
        )),
        "{err}"
    );
}

#[test]
fn reload_and_stop_go_through_the_pid_file() {
    let w = World::new();
    let cfg = w.config("one", "pid_file = \"edge.pid\"");
    let pid_file = w.path("edge.pid");
    let mut edge = w.start(&cfg);
    assert!(wait_until(Duration::from_secs(10), || read_pid(&pid_file) == Some(edge.id())));

    // A second master with the same pid file is refused by it.
    let out = w.control(&cfg, "--check");
    assert!(out.status.success());
    let out = conclave().args(["edge", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{} names a running conclave edge (pid {}): stop it first",
        pid_file.display(),
        edge.id()
    );
    assert!(err.contains(&want), "{err}");

    w.config("two", "pid_file = \"edge.pid\"");
    let out = w.control(&cfg, "--reload");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sent SIGHUP to the conclave edge master (pid {})", edge.id())
    );
    assert!(
        wait_until(Duration::from_secs(30), || w.get() == TWO),
        "{}",
        w.log()
    );

    // SIGUSR1 (--reopen) kills nothing.
    let workers = children_of(edge.id());
    assert!(w.control(&cfg, "--reopen").status.success());
    assert!(
        wait_until(Duration::from_secs(10), || w
            .log()
            .contains("SIGUSR1: 2 worker(s) reopen their logs")),
        "{}",
        w.log()
    );
    assert_eq!(w.get(), TWO);
    assert_eq!(children_of(edge.id()), workers);

    let out = w.control(&cfg, "--stop");
    assert!(out.status.success(), "{out:?}");
    let st = wait_exit(&mut edge, Duration::from_secs(20));
    assert!(st.success(), "{st}");
    assert!(!pid_file.exists(), "the pid file is removed at exit");

    // Without a running master, --stop says so.
    std::fs::write(&pid_file, format!("{}\n", edge.id())).unwrap();
    let out = w.control(&cfg, "--stop");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("which is not a running conclave edge"), "{err}");
}

#[test]
fn reload_without_a_pid_file_key_is_refused_clearly() {
    let w = World::new();
    let cfg = w.config("one", "");
    let out = w.control(&cfg, "--reload");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{} has no pid_file key", cfg.display())),
        "{err}"
    );
}

/// A master this test did not start (the upgrade's), stopped on drop.
struct Stray(u32);

impl Drop for Stray {
    fn drop(&mut self) {
        signal(self.0.into(), "TERM");
        if !wait_until(Duration::from_secs(15), || !alive(self.0)) {
            signal(self.0.into(), "KILL");
        }
    }
}

#[test]
fn sigusr2_upgrade_hands_the_sockets_over_with_no_failed_request() {
    let w = World::new();
    let cfg = w.config("one", "pid_file = \"edge.pid\"");
    let pid_file = w.path("edge.pid");
    let mut old = w.start(&cfg);
    let old_pid = old.id();
    assert!(wait_until(Duration::from_secs(10), || read_pid(&pid_file) == Some(old_pid)));
    let old_workers = children_of(old_pid);

    let ab = w.ab(15);
    w.wait_load();
    let out = w.control(&cfg, "--upgrade");
    assert!(out.status.success(), "{out:?}");
    let mut new_pid = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            new_pid = read_pid(&pid_file).filter(|p| *p != old_pid);
            new_pid.is_some()
        }),
        "no new master wrote the pid file: {}",
        w.log()
    );
    let new_pid = new_pid.unwrap();
    let _stray = Stray(new_pid);
    assert_eq!(read_pid(&w.path("edge.pid.oldbin")), Some(old_pid));
    // The new master's workers serve before the old master goes.
    assert!(
        wait_until(Duration::from_secs(20), || w
            .log()
            .matches("worker(s) ready")
            .count()
            >= 2),
        "{}",
        w.log()
    );
    assert!(signal(old_pid.into(), "QUIT"));
    let st = wait_exit(&mut old, Duration::from_secs(20));
    assert!(st.success(), "{st}");
    assert!(old_workers.iter().all(|p| !alive(*p)));
    assert!(!w.path("edge.pid.oldbin").exists());
    assert!(ab_ran_past(&ab), "the load ended before the old master did");
    assert_no_failure(ab);

    // The new master alone serves now, through the sockets it inherited.
    assert_eq!(w.get(), ONE);
    assert_eq!(children_of(new_pid).len(), 2);
    assert_eq!(read_pid(&pid_file), Some(new_pid));
}

fn ab_ran_past(ab: &Child) -> bool {
    alive(ab.id())
}

#[test]
fn a_reload_binds_an_added_port_and_refuses_a_held_one() {
    let w = World::new();
    let cfg = w.config("one", "");
    let edge = w.start(&cfg);
    let site = |port: u16, root: &str| {
        format!(
            "\n[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \"{root}\"\n\
             add_header = {{ X-Root = \"{root}\" }}\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n"
        )
    };
    let base = std::fs::read_to_string(&cfg).unwrap();
    let get = |port: u16| curl(w.dir.path(), &format!("https://127.0.0.1:{port}/index.html"), &[]).text();

    // A held port: the reload is refused by name, the old workers go on.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    std::fs::write(&cfg, format!("{base}{}", site(held_port, "two"))).unwrap();
    assert!(signal(edge.id().into(), "HUP"));
    let want = format!("127.0.0.1:{held_port} is already in use (by another process)");
    assert!(
        wait_until(Duration::from_secs(20), || w.log().contains(&want)),
        "{}",
        w.log()
    );
    assert!(
        w.log().contains("refused, the running workers go on"),
        "{}",
        w.log()
    );
    assert_eq!(w.get(), ONE);

    // A free port: bound by the master, served by the new workers.
    let added = free_port();
    std::fs::write(&cfg, format!("{base}{}", site(added, "two"))).unwrap();
    assert!(signal(edge.id().into(), "HUP"));
    assert!(
        wait_until(Duration::from_secs(30), || w
            .log()
            .contains("reload: generation 1 serves")),
        "{}",
        w.log()
    );
    assert_eq!(get(added), TWO);
    assert_eq!(w.get(), ONE);
}

#[test]
fn an_upgrade_whose_new_master_fails_leaves_the_old_one_in_charge() {
    let w = World::new();
    let cfg = w.config("one", "pid_file = \"edge.pid\"");
    let pid_file = w.path("edge.pid");
    let old = w.start(&cfg);
    assert!(wait_until(Duration::from_secs(10), || read_pid(&pid_file) == Some(old.id())));
    // The new master refuses this file and exits.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("workers = 2", "workers = 0")).unwrap();
    assert!(w.control(&cfg, "--upgrade").status.success());
    assert!(
        wait_until(Duration::from_secs(20), || w
            .log()
            .contains("the new master exited (exit status: 1); this one goes on")),
        "{}",
        w.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || read_pid(&pid_file) == Some(old.id())),
        "the pid file is not back"
    );
    assert!(!w.path("edge.pid.oldbin").exists());
    assert_eq!(w.get(), ONE);
}
