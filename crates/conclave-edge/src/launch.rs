//! Starting an edge from its configuration file: `conclave edge` (check, or
//! run the master, which re-executes `conclave edge-worker` per worker) and
//! the worker processes. The binary only parses these arguments and calls in.

use crate::config::EdgeConfig;
use crate::EdgeError;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};

/// Arguments of `conclave edge`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct EdgeArgs {
    /// The edge configuration file (see docs/edge.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Check everything a start would (config, certificates and keys, key
    /// servers, WAF rules, ports) without serving; list every problem, exit 1.
    #[arg(long)]
    pub check: bool,
    /// Tell the running edge (found through the config's pid_file) to
    /// re-read its configuration (SIGHUP).
    #[arg(long, conflicts_with_all = ["check", "stop", "reopen", "upgrade"])]
    pub reload: bool,
    /// Tell the running edge to stop gracefully (SIGQUIT).
    #[arg(long, conflicts_with_all = ["check", "reopen", "upgrade"])]
    pub stop: bool,
    /// Tell the running edge's workers to reopen their log files (SIGUSR1).
    #[arg(long, conflicts_with_all = ["check", "upgrade"])]
    pub reopen: bool,
    /// Tell the running edge to start the binary now installed at its path
    /// as a new master that takes over its sockets (SIGUSR2).
    #[arg(long, conflicts_with = "check")]
    pub upgrade: bool,
}

impl EdgeArgs {
    /// Run the edge of `config` (no `--check`, no signal).
    pub fn serve(config: PathBuf) -> EdgeArgs {
        EdgeArgs {
            config,
            check: false,
            reload: false,
            stop: false,
            reopen: false,
            upgrade: false,
        }
    }

    /// The argument list after the binary, `["edge", "--config", ..]`, that
    /// `conclave` parses back into these arguments (for `conclave eval`).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "edge".to_string(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        for (set, flag) in [
            (self.check, "--check"),
            (self.reload, "--reload"),
            (self.stop, "--stop"),
            (self.reopen, "--reopen"),
            (self.upgrade, "--upgrade"),
        ] {
            if set {
                a.push(flag.into());
            }
        }
        a
    }

    /// The signal these arguments send to a running master, if any.
    pub fn signal(&self) -> Option<Signal> {
        [
            (self.reload, Signal::SIGHUP),
            (self.stop, Signal::SIGQUIT),
            (self.reopen, Signal::SIGUSR1),
            (self.upgrade, Signal::SIGUSR2),
        ]
        .into_iter()
        .find_map(|(set, sig)| set.then_some(sig))
    }
}

/// Arguments of a worker process (`conclave edge-worker`).
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The edge configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Which worker this is (for logs).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// The master's private directory where this worker answers metrics
    /// scrapes (`[admin]` on; see `conclave_edge::admin`).
    #[arg(long)]
    pub metrics_dir: Option<PathBuf>,
}

/// The line `--check` prints for a valid configuration.
pub fn check_summary(args: &EdgeArgs, cfg: &EdgeConfig) -> String {
    format!(
        "{}: ok ({} site(s), {} worker(s))",
        args.config.display(),
        cfg.servers.len(),
        cfg.workers
    )
}

/// Reads and validates the configuration as a start would: `--check`, the
/// master's start and every reload (SIGHUP) go through here. Also returns
/// the text validated, which the master hands to its workers so they never
/// read a later edit of the file.
pub fn load_checked(path: &Path) -> Result<(EdgeConfig, String), EdgeError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let cfg = EdgeConfig::parse(path, &text)?;
    // Every worker reads the ticket secret; a bad one is refused here, once,
    // naming the file, instead of as a worker failing to start.
    if let crate::config::SharedConfig::Mem {
        ticket_secret_file: Some(p),
        ..
    } = &cfg.shared
    {
        crate::tickets::TicketSeal::from_file(p)
            .map_err(|e| EdgeError::Setup(format!("[shared] ticket_secret_file: {e}")))?;
    }
    Ok((cfg, text))
}

/// Largest configuration text the master hands to a worker.
const MAX_HANDOFF_TEXT: usize = 16 << 20;

/// What the master writes on a worker's stdin at start: the ticket seed
/// (32 bytes), then the configuration text it validated (u32 big-endian
/// length, UTF-8 bytes).
pub fn handoff(seed: &[u8; crate::tickets::SEED_LEN], text: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(seed.len() + 4 + text.len());
    b.extend_from_slice(seed);
    b.extend_from_slice(&(text.len() as u32).to_be_bytes());
    b.extend_from_slice(text.as_bytes());
    b
}

/// Reads [`handoff`] from `r` (the worker's stdin).
pub fn read_handoff(
    r: &mut impl std::io::Read,
) -> Result<([u8; crate::tickets::SEED_LEN], String), EdgeError> {
    let io = |e| EdgeError::io("reading the seed and configuration from the master", e);
    let mut seed = [0u8; crate::tickets::SEED_LEN];
    r.read_exact(&mut seed).map_err(io)?;
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HANDOFF_TEXT {
        return Err(EdgeError::Setup(format!(
            "the master sent a {len}-byte configuration"
        )));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).map_err(io)?;
    let text = String::from_utf8(text)
        .map_err(|_| EdgeError::Setup("the master sent a configuration that is not UTF-8".into()))?;
    Ok((seed, text))
}

/// With `--reload`/`--stop`/`--reopen`/`--upgrade` signals the running
/// master; else validates the config, and with `--check` prints the
/// summary, else runs the master, which starts the workers (this same
/// binary as `edge-worker`).
pub fn run_edge(args: &EdgeArgs) -> Result<(), EdgeError> {
    use std::io::Write;
    if let Some(sig) = args.signal() {
        let line = signal_master(&args.config, sig)?;
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        return Ok(());
    }
    if args.check {
        // Everything a start would do but serve, every problem listed.
        let cfg = crate::check::check(&args.config)?;
        // A closed stdout is not an error of the check.
        let _ = writeln!(std::io::stdout().lock(), "{}", check_summary(args, &cfg));
        return Ok(());
    }
    let (cfg, text) = load_checked(&args.config)?;
    crate::access_log::init_error_log(&cfg)?;
    let exe = std::env::current_exe().map_err(|e| EdgeError::io("locating the conclave binary", e))?;
    let config =
        std::path::absolute(&args.config).map_err(|e| EdgeError::io("resolving the config path", e))?;
    for s in &cfg.servers {
        tracing::info!("edge: {:?} site on https://{}", s.site.mode(), s.listen);
    }
    // The workers' metrics sockets (the admin listener, served by the master,
    // scrapes them); the directory goes when the master returns.
    let socket_dir = cfg
        .admin
        .as_ref()
        .map(|_| crate::admin::SocketDir::create())
        .transpose()?;
    let metrics_dir = socket_dir.as_ref().map(|d| d.path().to_path_buf());
    crate::master::run_master(
        cfg,
        text,
        crate::master::MasterPlan {
            exe,
            config,
            metrics_dir,
        },
    )
}

/// Sends `sig` to the master named by the pid file of `config`; the line
/// to print.
pub fn signal_master(config: &Path, sig: Signal) -> Result<String, EdgeError> {
    let pid_file = pid_file_of(config)?;
    let pid = crate::pid_file::running_master(&pid_file)?;
    let raw = i32::try_from(pid).map_err(|_| EdgeError::Setup(format!("pid {pid} out of range")))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig)
        .map_err(|e| EdgeError::io(format!("sending {sig} to pid {pid}"), e.into()))?;
    Ok(format!("sent {sig} to the conclave edge master (pid {pid})"))
}

/// The `pid_file` of `config`, read leniently (only that key), so a master
/// can be stopped even while the file holds an edit that would not load.
fn pid_file_of(config: &Path) -> Result<PathBuf, EdgeError> {
    /// The one key this reads.
    #[derive(serde::Deserialize)]
    struct PidFileKey {
        pid_file: Option<PathBuf>,
    }
    let text = std::fs::read_to_string(config)
        .map_err(|e| EdgeError::io(format!("reading {}", config.display()), e))?;
    let key: PidFileKey = toml::from_str(&text)
        .map_err(|e| EdgeError::Setup(format!("{}: {}", config.display(), e.message())))?;
    let p = key.pid_file.ok_or_else(|| {
        EdgeError::Setup(format!(
            "{} has no pid_file key: the running edge is found through it",
            config.display()
        ))
    })?;
    Ok(match config.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    })
}

/// Runs one worker until SIGTERM/SIGINT/SIGQUIT or EOF on stdin (the master
/// drains it, or is gone): the configuration is the text the master validated
/// (relative paths still relative to `--config`'s directory).
pub fn run_worker(args: &WorkerArgs) -> Result<(), EdgeError> {
    let (seed, text) = read_handoff(&mut std::io::stdin().lock())?;
    let cfg = EdgeConfig::parse(&args.config, &text)?;
    crate::access_log::init_error_log(&cfg)?;
    crate::worker::run_worker(&cfg, Some(seed), args.metrics_dir.as_deref())
}

/// What a worker that could not run tells its master (on its stdout, the
/// master's pipe) before it exits with [`crate::master::EX_CONFIG`].
pub fn report_worker_failure(e: &EdgeError) {
    use std::io::Write;
    let reason = e.to_string().replace('\n', " ");
    let _ = writeln!(std::io::stdout().lock(), "error: {reason}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Edge(EdgeArgs),
    }

    fn parse(args: Vec<String>) -> Result<EdgeArgs, clap::Error> {
        let Cli { cmd: Cmd::Edge(a) } =
            Cli::try_parse_from(std::iter::once("conclave".to_string()).chain(args))?;
        Ok(a)
    }

    #[test]
    fn to_args_parses_back_to_the_same_arguments() {
        let base = EdgeArgs::serve("/etc/conclave/edge.toml".into());
        let variants = [
            base.clone(),
            EdgeArgs {
                check: true,
                ..base.clone()
            },
            EdgeArgs {
                reload: true,
                ..base.clone()
            },
            EdgeArgs {
                stop: true,
                ..base.clone()
            },
            EdgeArgs {
                reopen: true,
                ..base.clone()
            },
            EdgeArgs {
                upgrade: true,
                ..base.clone()
            },
        ];
        for a in variants {
            assert_eq!(parse(a.to_args()).unwrap(), a);
        }
        assert_eq!(
            EdgeArgs {
                reload: true,
                ..base.clone()
            }
            .signal(),
            Some(Signal::SIGHUP)
        );
        assert_eq!(
            EdgeArgs {
                stop: true,
                ..base.clone()
            }
            .signal(),
            Some(Signal::SIGQUIT)
        );
        assert_eq!(base.signal(), None);
    }

    #[test]
    fn the_handoff_reads_back_and_a_short_one_is_an_error() {
        let seed = [7u8; crate::tickets::SEED_LEN];
        let b = handoff(&seed, "workers = 2\n");
        assert_eq!(
            read_handoff(&mut &b[..]).unwrap(),
            (seed, "workers = 2\n".to_string())
        );
        assert!(read_handoff(&mut &b[..b.len() - 1]).is_err());
    }

    #[test]
    fn two_actions_are_refused() {
        let a = ["edge", "--config", "e.toml", "--reload", "--stop"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            parse(a).unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn signalling_needs_a_pid_file_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("edge.toml");
        std::fs::write(&cfg, "workers = 1\n").unwrap();
        let e = signal_master(&cfg, Signal::SIGHUP).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{} has no pid_file key: the running edge is found through it",
                cfg.display()
            )
        );
        std::fs::write(&cfg, "pid_file = \"edge.pid\"\n[[server]]\nlisten = \"x\"\n").unwrap();
        assert_eq!(pid_file_of(&cfg).unwrap(), dir.path().join("edge.pid"));
        let e = signal_master(&cfg, Signal::SIGHUP).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("pid file {}: ", dir.path().join("edge.pid").display())),
            "{e}"
        );
    }
}
