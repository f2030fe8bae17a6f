//! The master process: holds the listening sockets ([`crate::listen`]) and
//! the pid file, runs a generation of `workers` worker processes (the
//! re-executed binary) that inherit the sockets, restarts any that crash,
//! and acts on signals as NGINX's master does:
//!
//! - SIGHUP: re-read and validate the configuration (as `--check` does); if
//!   valid, start a new generation and, once all its workers are ready, let
//!   the old one drain (`graceful_timeout`); if not, log why and keep serving.
//! - SIGUSR1: forwarded to every worker (they reopen their log files).
//! - SIGUSR2: binary upgrade: start the binary at the path this master was
//!   started from as a new master that inherits the sockets; the operator
//!   then stops this one with SIGQUIT.
//! - SIGQUIT, SIGTERM, SIGINT: stop; workers finish in-flight requests.
//!
//! Each worker has two pipes to the master. Its stdin carries a 32-byte
//! secret from which every worker derives the same TLS ticket keys (as
//! NGINX's workers inherit the master's ticket key), so a client resumes on
//! any worker, of any generation, and the configuration text the master
//! validated (a worker never reads a later edit of the file); closing it (a
//! drain, a stop, or the master died) tells the worker to stop gracefully,
//! so no worker outlives its master. Its stdout carries its report: `ready` once it serves, or
//! `error: REASON` before it exits with [`EX_CONFIG`] because it could not
//! set up (a key that does not match its certificate, unreadable WAF rules):
//! restarting it would fail again, so the master stops with that reason,
//! printed once, or (during a reload) keeps the old generation.

use crate::config::EdgeConfig;
use crate::listen::{ListenSet, LISTEN_FDS_ENV};
use crate::pid_file::PidFile;
use crate::EdgeError;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A worker that exits faster than this after starting counts as a failed start.
const FAST_FAIL: Duration = Duration::from_secs(2);
/// This many failed starts in a row stop the master.
const MAX_FAST_FAILS: u32 = 5;
/// How long a reload waits for the new workers to be ready before it gives
/// up on them and keeps the running ones.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Exit code of a worker that could not set up (sysexits' EX_CONFIG); the
/// master exits with it too, so a supervisor does not restart in a loop
/// (systemd: `RestartPreventExitStatus=78`).
pub const EX_CONFIG: i32 = 78;

/// The line a worker writes on its stdout once it serves.
pub const READY_LINE: &str = "ready";

/// What the master needs besides the configuration.
#[derive(Clone, Debug)]
pub struct MasterPlan {
    /// The binary that runs workers (`edge-worker`) and a new master: the
    /// path this master was started from, so an upgrade runs whatever is
    /// installed there now.
    pub exe: PathBuf,
    /// The configuration file, absolute (workers and reloads read it).
    pub config: PathBuf,
    /// Where workers answer the admin listener's metrics scrapes
    /// (`--metrics-dir`), when `[admin]` is on.
    pub metrics_dir: Option<PathBuf>,
}

/// Runs the master until it is stopped, or a worker cannot start; `text`
/// is the configuration file's text `cfg` was validated from.
pub fn run_master(cfg: EdgeConfig, text: String, plan: MasterPlan) -> Result<(), EdgeError> {
    // The pid file first: a second master of the same edge is named as such,
    // not as a port conflict.
    let pid_file = cfg.pid_file.as_deref().map(PidFile::create).transpose()?;
    // Then every socket: a port held by anything else fails the start here,
    // before any worker runs.
    // The admin listener's socket is held the same way, so a binary upgrade
    // hands it to the new master; it keeps the address it started with.
    let admin_addr = cfg.admin.as_ref().map(|a| a.listen);
    let listen = ListenSet::open(cfg.servers.iter().map(|s| s.listen).chain(admin_addr))?;
    // After an upgrade: sockets of the old master this configuration dropped.
    crate::listen::close_unused();
    // Served by a thread of the master for the whole run (dropped last).
    let _admin = match (&cfg.admin, &plan.metrics_dir) {
        (Some(a), Some(dir)) => Some(crate::admin::start(
            a,
            listen.listener(a.listen)?,
            dir,
            cfg.workers,
        )?),
        _ => None,
    };
    let mut seed = [0u8; crate::tickets::SEED_LEN];
    getrandom::fill(&mut seed)
        .map_err(|e| EdgeError::Setup(format!("no randomness for the ticket seed: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EdgeError::io("building the runtime", e))?;
    let (events, inbox) = mpsc::unbounded_channel();
    let master = Master {
        plan,
        listen,
        seed,
        events,
        next_gen: 0,
        pid_file,
        upgrading: false,
        admin_addr,
    };
    rt.block_on(master.run(cfg, text, inbox))
}

/// What slots and helpers tell the master loop.
enum Event {
    /// A worker of generation `gen` serves.
    Ready { gen: u64 },
    /// A worker of generation `gen` cannot run; restarting would not help.
    Failed { gen: u64, error: EdgeError },
    /// The master a binary upgrade started has exited.
    NewMasterExited(std::io::Result<ExitStatus>),
}

/// One set of workers started from one reading of the configuration.
struct Generation {
    id: u64,
    workers: usize,
    ready: usize,
    started: Instant,
    addrs: BTreeSet<SocketAddr>,
    stop: watch::Sender<bool>,
    /// The pid of each slot's running worker.
    pids: Arc<Mutex<Vec<Option<u32>>>>,
    slots: Vec<JoinHandle<()>>,
}

impl Generation {
    /// Tells every worker to finish its requests and exit.
    fn drain(&self) {
        let _ = self.stop.send(true);
    }

    fn finished(&self) -> bool {
        self.slots.iter().all(JoinHandle::is_finished)
    }

    /// Kills the workers at once (a reload that failed; they served nothing).
    fn abort(self) {
        for s in &self.slots {
            // The slot's child is `kill_on_drop`.
            s.abort();
        }
    }

    async fn join(self) {
        for s in self.slots {
            let _ = s.await;
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .copied()
            .collect()
    }
}

struct Master {
    plan: MasterPlan,
    listen: ListenSet,
    seed: [u8; crate::tickets::SEED_LEN],
    events: mpsc::UnboundedSender<Event>,
    next_gen: u64,
    pid_file: Option<PidFile>,
    /// A new master started by SIGUSR2 still runs.
    upgrading: bool,
    /// The admin listener's address, held across reloads.
    admin_addr: Option<SocketAddr>,
}

/// A signal stream, or the error naming it.
fn on(kind: tokio::signal::unix::SignalKind, name: &str) -> Result<tokio::signal::unix::Signal, EdgeError> {
    tokio::signal::unix::signal(kind).map_err(|e| EdgeError::io(format!("{name} handler"), e))
}

impl Master {
    async fn run(
        mut self,
        cfg: EdgeConfig,
        text: String,
        mut inbox: mpsc::UnboundedReceiver<Event>,
    ) -> Result<(), EdgeError> {
        use tokio::signal::unix::SignalKind;
        let mut hup = on(SignalKind::hangup(), "SIGHUP")?;
        let mut usr1 = on(SignalKind::user_defined1(), "SIGUSR1")?;
        let mut usr2 = on(SignalKind::user_defined2(), "SIGUSR2")?;
        let mut quit = on(SignalKind::quit(), "SIGQUIT")?;
        let mut term = on(SignalKind::terminate(), "SIGTERM")?;
        let mut int = on(SignalKind::interrupt(), "SIGINT")?;
        let mut current = self.start_generation(&cfg, &text);
        let mut pending: Option<Generation> = None;
        let mut draining: Vec<Generation> = Vec::new();
        let result = loop {
            draining.retain(|g| !g.finished());
            let deadline = pending
                .as_ref()
                .map_or_else(Instant::now, |g| g.started + READY_LIMIT);
            tokio::select! {
                Some(ev) = inbox.recv() => match ev {
                    Event::Ready { gen } if gen == current.id => {
                        current.ready += 1;
                        if current.ready == current.workers {
                            tracing::info!("edge: {} worker(s) ready (generation {gen})", current.workers);
                        }
                    }
                    Event::Ready { gen } => {
                        let Some(p) = pending.as_mut().filter(|p| p.id == gen) else { continue };
                        p.ready += 1;
                        if p.ready == p.workers {
                            let Some(new) = pending.take() else { continue };
                            let old = std::mem::replace(&mut current, new);
                            old.drain();
                            tracing::info!(
                                "reload: generation {} serves; generation {} drains",
                                current.id, old.id
                            );
                            self.listen.retain(&current.addrs);
                            draining.push(old);
                        }
                    }
                    Event::Failed { gen, error } if pending.as_ref().is_some_and(|p| p.id == gen) => {
                        tracing::error!("reload failed, the running workers go on: {error}");
                        if let Some(p) = pending.take() {
                            p.abort();
                        }
                        self.listen.retain(&current.addrs);
                    }
                    Event::Failed { gen, error } if gen == current.id => break Err(error),
                    // A draining generation: its replacement serves.
                    Event::Failed { .. } => {}
                    Event::NewMasterExited(st) => {
                        let st = st.map_or_else(|e| e.to_string(), |s| s.to_string());
                        tracing::warn!("the new master exited ({st}); this one goes on");
                        self.upgrading = false;
                        if let Some(p) = self.pid_file.as_mut() {
                            if let Err(e) = p.restore() {
                                tracing::warn!("restoring the pid file: {e}");
                            }
                        }
                    }
                },
                _ = hup.recv() => {
                    if pending.is_some() {
                        tracing::warn!("SIGHUP: a reload is already under way; ignored");
                    } else {
                        pending = self.reload();
                    }
                }
                _ = usr1.recv() => {
                    let pids: Vec<u32> = std::iter::once(&current)
                        .chain(pending.as_ref())
                        .chain(draining.iter())
                        .flat_map(Generation::pids)
                        .collect();
                    // The master's own error log first, then the workers'.
                    match crate::access_log::reopen() {
                        Ok(()) => tracing::info!("SIGUSR1: log files reopened"),
                        Err(e) => tracing::error!("SIGUSR1: {e}"),
                    }
                    tracing::info!("SIGUSR1: {} worker(s) reopen their logs", pids.len());
                    for pid in pids {
                        forward(pid, nix::sys::signal::Signal::SIGUSR1);
                    }
                }
                _ = usr2.recv() => self.upgrade(),
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: stopping gracefully");
                    break Ok(());
                }
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = tokio::time::sleep_until(deadline.into()), if pending.is_some() => {
                    tracing::error!("reload failed, the running workers go on: the new workers were not ready within {READY_LIMIT:?}");
                    if let Some(p) = pending.take() {
                        p.abort();
                    }
                    self.listen.retain(&current.addrs);
                }
            }
        };
        current.drain();
        draining.extend(pending);
        for g in &draining {
            g.drain();
        }
        current.join().await;
        for g in draining {
            g.join().await;
        }
        result
    }

    /// Starts a generation of workers for `cfg` (already validated from
    /// `text`, its sockets held).
    fn start_generation(&mut self, cfg: &EdgeConfig, text: &str) -> Generation {
        let id = self.next_gen;
        self.next_gen += 1;
        let (stop, stopped) = watch::channel(false);
        let pids = Arc::new(Mutex::new(vec![None; cfg.workers]));
        let env = self.listen.env_value();
        let handoff: Arc<[u8]> = crate::launch::handoff(&self.seed, text).into();
        let slots = (0..cfg.workers)
            .map(|index| {
                let slot = Slot {
                    gen: id,
                    index,
                    exe: self.plan.exe.clone(),
                    config: self.plan.config.clone(),
                    listen_fds: env.clone(),
                    metrics_dir: self.plan.metrics_dir.clone(),
                    handoff: handoff.clone(),
                    grace: cfg.graceful_timeout,
                    events: self.events.clone(),
                    pids: pids.clone(),
                };
                tokio::spawn(slot.run(stopped.clone()))
            })
            .collect();
        Generation {
            id,
            workers: cfg.workers,
            ready: 0,
            started: Instant::now(),
            addrs: cfg
                .servers
                .iter()
                .map(|s| s.listen)
                .chain(self.admin_addr)
                .collect(),
            stop,
            pids,
            slots,
        }
    }

    /// SIGHUP: a new generation for the configuration as it is now on
    /// disk, or `None` (logged) when it is not valid.
    fn reload(&mut self) -> Option<Generation> {
        let path = self.plan.config.display().to_string();
        let (cfg, text) = match crate::launch::load_checked(&self.plan.config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("SIGHUP: reload of {path} refused, the running workers go on: {e}");
                return None;
            }
        };
        if let Err(e) = self.listen.ensure(cfg.servers.iter().map(|s| s.listen)) {
            tracing::error!("SIGHUP: reload of {path} refused, the running workers go on: {e}");
            return None;
        }
        tracing::info!("SIGHUP: {path} is valid; starting {} new worker(s)", cfg.workers);
        Some(self.start_generation(&cfg, &text))
    }

    /// SIGUSR2: starts the binary at `plan.exe` as a new master that
    /// inherits the sockets; the pid file moves to `PATH.oldbin`.
    fn upgrade(&mut self) {
        if self.upgrading {
            tracing::warn!("SIGUSR2: a new master already runs; stop this one with SIGQUIT");
            return;
        }
        if let Some(p) = self.pid_file.as_mut() {
            if let Err(e) = p.move_aside() {
                tracing::error!("SIGUSR2: upgrade refused: moving the pid file aside: {e}");
                return;
            }
        }
        let mut cmd = Command::new(&self.plan.exe);
        cmd.arg("edge")
            .arg("--config")
            .arg(&self.plan.config)
            .env(LISTEN_FDS_ENV, self.listen.env_value())
            .stdin(Stdio::null())
            .kill_on_drop(false);
        match cmd.spawn() {
            Ok(mut child) => {
                tracing::info!(
                    "SIGUSR2: started a new master (pid {}) from {}; stop this one (pid {}) with SIGQUIT once it serves",
                    child.id().unwrap_or(0),
                    self.plan.exe.display(),
                    std::process::id()
                );
                self.upgrading = true;
                let events = self.events.clone();
                tokio::spawn(async move {
                    let _ = events.send(Event::NewMasterExited(child.wait().await));
                });
            }
            Err(e) => {
                tracing::error!("SIGUSR2: starting {}: {e}", self.plan.exe.display());
                if let Some(p) = self.pid_file.as_mut() {
                    let _ = p.restore();
                }
            }
        }
    }
}

/// Sends `sig` to worker `pid` (one that has just exited is no error).
fn forward(pid: u32, sig: nix::sys::signal::Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        tracing::debug!("{sig} to worker {pid}: {e}");
    }
}

/// One worker position of a generation: starts its worker, restarts it
/// when it crashes, drains it when told.
struct Slot {
    gen: u64,
    index: usize,
    exe: PathBuf,
    config: PathBuf,
    listen_fds: String,
    metrics_dir: Option<PathBuf>,
    /// The ticket seed and configuration text ([`crate::launch::handoff`]).
    handoff: Arc<[u8]>,
    grace: Duration,
    events: mpsc::UnboundedSender<Event>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
}

impl Slot {
    fn spawn(&self) -> Result<Child, EdgeError> {
        let i = self.index;
        // The running binary, even if a new one was installed at `exe` since
        // (an upgrade is SIGUSR2's business, not a reload's), named as `exe`.
        let mut std_cmd = std::process::Command::new("/proc/self/exe");
        std::os::unix::process::CommandExt::arg0(&mut std_cmd, &self.exe);
        let mut cmd = Command::from(std_cmd);
        cmd.arg("edge-worker")
            .arg("--config")
            .arg(&self.config)
            .arg("--index")
            .arg(i.to_string())
            .env(LISTEN_FDS_ENV, &self.listen_fds)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(d) = &self.metrics_dir {
            cmd.arg("--metrics-dir").arg(d);
        }
        let child = cmd
            .spawn()
            .map_err(|e| EdgeError::io(format!("starting worker {i}"), e))?;
        tracing::info!("worker {i} started (pid {})", child.id().unwrap_or(0));
        Ok(child)
    }

    fn set_pid(&self, pid: Option<u32>) {
        if let Some(p) = self
            .pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(self.index)
        {
            *p = pid;
        }
    }

    /// Forgets the worker that exited: its report reader may not set its
    /// pid again (on this single-threaded runtime an aborted task never runs
    /// again), then its pid is cleared.
    fn forget(&self, report: Option<JoinHandle<Option<String>>>) {
        if let Some(r) = report {
            r.abort();
        }
        self.set_pid(None);
    }

    fn fail(&self, error: EdgeError) {
        let _ = self.events.send(Event::Failed { gen: self.gen, error });
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let i = self.index;
        let mut fails = 0;
        let mut announced = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let started = Instant::now();
            let mut child = match self.spawn() {
                Ok(c) => c,
                Err(e) => return self.fail(e),
            };
            // `Child::wait` would close stdin; keep it open until we mean to stop the worker.
            let mut pipe = child.stdin.take();
            if let Some(p) = pipe.as_mut() {
                if let Err(e) = p.write_all(&self.handoff).await {
                    tracing::warn!("worker {i}: passing the seed and configuration: {e}");
                }
            }
            let report = child.stdout.take().map(|out| {
                // Only a slot's first worker counts towards its generation being ready.
                let first = !announced;
                announced = true;
                let (events, gen, pids, index, pid) =
                    (self.events.clone(), self.gen, self.pids.clone(), i, child.id());
                tokio::spawn(read_report(out, move || {
                    // Signalled (SIGUSR1) only once ready: before, its handlers
                    // are not installed and the signal would kill it.
                    if let Some(p) = pids.lock().unwrap_or_else(|p| p.into_inner()).get_mut(index) {
                        *p = pid;
                    }
                    if first {
                        let _ = events.send(Event::Ready { gen });
                    }
                }))
            });
            tokio::select! {
                st = child.wait() => {
                    let st = match st {
                        Ok(st) => st,
                        Err(e) => {
                            self.forget(report);
                            return self.fail(EdgeError::io(format!("waiting for worker {i}"), e));
                        }
                    };
                    if *stop.borrow() {
                        return self.forget(report);
                    }
                    if st.code() == Some(EX_CONFIG) {
                        let reason = match report {
                            Some(r) => r.await.ok().flatten(),
                            None => None,
                        };
                        self.set_pid(None);
                        let reason = reason.unwrap_or_else(|| format!("exited with code {EX_CONFIG} and gave no reason"));
                        return self.fail(EdgeError::WorkerSetup { index: i, reason });
                    }
                    self.forget(report);
                    tracing::warn!("worker {i} exited ({st}); restarting");
                    fails = if started.elapsed() < FAST_FAIL { fails + 1 } else { 0 };
                    if fails >= MAX_FAST_FAILS {
                        return self.fail(EdgeError::Setup(format!(
                            "worker {i} failed {fails} times in a row right after starting"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(fails))).await;
                }
                _ = stop.changed() => {
                    drop(pipe);
                    if tokio::time::timeout(self.grace + Duration::from_secs(2), child.wait()).await.is_err() {
                        tracing::warn!("worker {i} did not stop in time; killing it");
                        let _ = child.kill().await;
                    }
                    self.forget(report);
                    return;
                }
            }
        }
    }
}

/// Reads a worker's report until it closes its stdout: calls `on_ready`
/// when it says it serves, returns the reason it gave for failing, if any.
async fn read_report(out: tokio::process::ChildStdout, mut on_ready: impl FnMut()) -> Option<String> {
    let mut lines = tokio::io::BufReader::new(out).lines();
    let mut reason = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line == READY_LINE {
            on_ready();
        } else if let Some(r) = line.strip_prefix("error: ") {
            reason = Some(r.to_string());
        }
    }
    reason
}
