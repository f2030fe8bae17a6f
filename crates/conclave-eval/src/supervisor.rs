//! Runs the processes of a deployment as one unit: each in its own process
//! group (so an edge's or nginx's workers go with it), started in order and
//! probed until it answers, watched for death, and stopped — TERM to the
//! group, then KILL — on every exit path, including drop.

use crate::cpu::ProcessClass;
use crate::plan::{Probe, ProcessSpec};
use crate::EvalError;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to answer its probe.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a group gets between TERM and KILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

struct Running {
    name: String,
    class: ProcessClass,
    child: Child,
    log: std::path::PathBuf,
    exited: Option<ExitStatus>,
}

impl Running {
    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

/// A set of running process groups, stopped in reverse start order.
#[derive(Default)]
pub struct Supervisor {
    running: Vec<Running>,
}

/// A process that died on its own.
#[derive(Debug, Clone)]
pub struct Death {
    /// Role name.
    pub name: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// The last lines of its log.
    pub log_tail: String,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exited ({})", self.name, self.status)?;
        if !self.log_tail.is_empty() {
            write!(f, "; its log ends:\n{}", self.log_tail)?;
        }
        Ok(())
    }
}

/// Whether a FUSE file system is mounted at `dir` (/proc/self/mountinfo:
/// field 5 is the mount point, the type follows " - ").
pub fn fuse_mounted(dir: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()) && l.contains(" - fuse"))
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Process ids (= group ids) of the running processes.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|r| r.child.id()).collect()
    }

    /// The process groups still running, by class: what a load's CPU
    /// accounting samples.
    pub fn groups(&self) -> Vec<(ProcessClass, u32)> {
        self.running
            .iter()
            .filter(|r| r.exited.is_none())
            .map(|r| (r.class, r.child.id()))
            .collect()
    }

    /// Starts one process and waits until its probe answers. A process that
    /// exits or does not answer in time is an error naming it, with its log.
    pub fn start(&mut self, spec: &ProcessSpec, cancel: &dyn Fn() -> bool) -> Result<(), EvalError> {
        let (prog, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| EvalError::Config(format!("{}: empty command line", spec.name)))?;
        // Something already answering would pass the probe and be measured in our place.
        match &spec.probe {
            Probe::Tcp(addrs) => {
                if let Some(a) = addrs
                    .iter()
                    .find(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
                {
                    return Err(EvalError::Process(format!(
                        "{a} already answers before {} started: another server uses this port \
                         (stop it, or pick other ports, e.g. `conclave eval --base-port`)",
                        spec.name
                    )));
                }
            }
            Probe::Mounted(dir) => {
                if fuse_mounted(dir) {
                    return Err(EvalError::Process(format!(
                        "{} is already mounted before {} started (umount it)",
                        dir.display(),
                        spec.name
                    )));
                }
            }
        }
        for argv in &spec.setup {
            let (sprog, sargs) = argv
                .split_first()
                .ok_or_else(|| EvalError::Config(format!("{}: empty setup command", spec.name)))?;
            let o = Command::new(sprog)
                .args(sargs)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| EvalError::Process(format!("cannot run {sprog} for {}: {e}", spec.name)))?;
            if !o.status.success() {
                return Err(EvalError::Process(format!(
                    "`{}` (before {}) failed: {}",
                    argv.join(" "),
                    spec.name,
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
        let log = std::fs::File::create(&spec.log).map_err(EvalError::io(&spec.log))?;
        let log2 = log.try_clone().map_err(EvalError::io(&spec.log))?;
        let child = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(prog);
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .process_group(0);
            if let Some(u) = spec.user {
                // std calls setgroups(0) before setuid when it changes the
                // uid, so the process keeps no supplementary group of ours.
                cmd.gid(u.gid).uid(u.uid);
            }
            cmd.spawn()
                .map_err(|e| EvalError::Process(format!("cannot start {} ({prog}): {e}", spec.name)))?
        };
        tracing::debug!(name = %spec.name, pid = child.id(), "started");
        self.running.push(Running {
            name: spec.name.clone(),
            class: spec.class,
            child,
            log: spec.log.clone(),
            exited: None,
        });
        let t0 = Instant::now();
        loop {
            if let Some(d) = self.poll_deaths().into_iter().next() {
                return Err(EvalError::Process(format!("{} did not start: {d}", spec.name)));
            }
            let ready = match &spec.probe {
                Probe::Tcp(addrs) => addrs
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()),
                Probe::Mounted(dir) => fuse_mounted(dir),
            };
            if ready {
                return Ok(());
            }
            if cancel() {
                return Err(EvalError::Interrupted);
            }
            if t0.elapsed() > START_TIMEOUT {
                return Err(EvalError::Process(format!(
                    "{} did not answer on {:?} within {START_TIMEOUT:?}; its log ({}) ends:\n{}",
                    spec.name,
                    spec.probe,
                    spec.log.display(),
                    tail(&spec.log, 15)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Processes that exited since the last call.
    pub fn poll_deaths(&mut self) -> Vec<Death> {
        let mut out = Vec::new();
        for r in &mut self.running {
            if r.exited.is_some() {
                continue;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                r.exited = Some(status);
                out.push(Death {
                    name: r.name.clone(),
                    status,
                    log_tail: tail(&r.log, 15),
                });
            }
        }
        out
    }

    /// Stops every group: TERM, a grace period, then KILL; reaps the leaders.
    pub fn stop_all(&mut self) {
        for r in self.running.iter().rev() {
            let _ = killpg(r.pgid(), Signal::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            let mut alive = false;
            for r in &mut self.running {
                if r.exited.is_none() {
                    match r.child.try_wait() {
                        Ok(Some(s)) => r.exited = Some(s),
                        Ok(None) => alive = true,
                        Err(_) => r.exited = Some(ExitStatus::default()),
                    }
                }
            }
            // Even with every leader gone, members of a group (workers) may linger: KILL covers them.
            if !alive || t0.elapsed() > STOP_GRACE {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for r in self.running.iter_mut().rev() {
            let _ = killpg(r.pgid(), Signal::SIGKILL);
            if r.exited.is_none() {
                let _ = r.child.wait();
            }
        }
        self.running.clear();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], addr: std::net::SocketAddr, log: &std::path::Path) -> ProcessSpec {
        ProcessSpec {
            name: "test".into(),
            class: crate::cpu::ProcessClass::Edge,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            log: log.to_path_buf(),
            probe: Probe::Tcp(vec![addr]),
            user: None,
            env: Vec::new(),
            setup: Vec::new(),
        }
    }

    #[test]
    fn refuses_a_port_someone_else_answers_on() {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sup = Supervisor::new();
        let e = sup.start(
            &spec(
                &["sleep", "30"],
                busy.local_addr().unwrap(),
                &dir.path().join("l"),
            ),
            &|| false,
        );
        assert!(e.unwrap_err().to_string().contains("already answers"));
        assert!(sup.pids().is_empty());
    }

    #[test]
    fn a_failed_setup_command_stops_the_start_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut s = spec(&["sleep", "30"], free, &dir.path().join("l"));
        s.setup = vec![vec![
            "sh".into(),
            "-c".into(),
            "echo no key server >&2; exit 3".into(),
        ]];
        let mut sup = Supervisor::new();
        let e = sup.start(&s, &|| false).unwrap_err().to_string();
        assert!(e.contains("(before test) failed: no key server"), "{e}");
        assert!(sup.pids().is_empty());
    }

    #[test]
    fn names_a_process_that_dies_before_answering() {
        let dir = tempfile::tempdir().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut sup = Supervisor::new();
        let log = dir.path().join("l");
        let e = sup
            .start(&spec(&["sh", "-c", "echo boom; exit 3"], free, &log), &|| false)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("test did not start") && msg.contains("exit status: 3") && msg.contains("boom"),
            "{msg}"
        );
    }
}
