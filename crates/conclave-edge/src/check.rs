//! `conclave edge --check`: what a start would find wrong, found before the
//! start and listed all at once (a worker that fails at setup stops the
//! edge; finding the second problem only after fixing the first is slow).
//!
//! Beyond validating the file it does what a worker does at start, without
//! serving: reads every certificate chain and key (secret files refused when
//! group or others may read them), compares each key's public half with its
//! certificate (for a keyless site, by asking the key server with the edge
//! identity), reads stapled OCSP responses, compiles the WAF rules as a
//! worker would, and binds each `listen` address once to see it is free.
//! Every problem names its file, and the line when it is in the TOML or a
//! rule file.

use crate::config::lines::{Key, Lines};
use crate::config::{
    CertConfig, ConfigError, EdgeConfig, KeyConfig, SharedConfig, SiteConfig, StorageConfig,
};
use crate::keysource::{load_chain, KeyError};
use conclave_rpc::Role;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One thing that would stop the edge, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file at fault (the config, a certificate, a key, a rule file).
    pub file: PathBuf,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Everything `--check` found wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) found:\n{}", .0.len(), list(.0))]
pub struct CheckFailed(pub Vec<Problem>);

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks the configuration at `path` as a start would: the validated
/// configuration when nothing is wrong, else every problem found.
pub fn check(path: &Path) -> Result<EdgeConfig, CheckFailed> {
    let cfg = EdgeConfig::load(path).map_err(|e| CheckFailed(vec![config_problem(path, e)]))?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = Lines::new(&text);
    let mut run = Run {
        config: path,
        lines: &lines,
        problems: Vec::new(),
    };
    run.shared(&cfg);
    run.storage(&cfg);
    for (i, s) in cfg.servers.iter().enumerate() {
        for (j, cert) in s.tls.all_certificates().iter().enumerate() {
            run.certificate(&cfg, i, j, cert);
        }
        if let Some(rules) = &s.waf {
            run.waf(rules);
        }
        if let SiteConfig::Standalone { root } = &s.site {
            if matches!(cfg.storage, StorageConfig::Host) {
                if let Err(e) = std::fs::read_dir(root) {
                    run.at(
                        &["server".into(), i.into(), "root".into()],
                        format!("root {}: {e}", root.display()),
                    );
                }
            }
        }
    }
    run.ports(&cfg);
    if run.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(CheckFailed(run.problems))
    }
}

/// A configuration error as a problem of the config file.
fn config_problem(path: &Path, e: ConfigError) -> Problem {
    match e {
        ConfigError::Invalid { path, line, message } => Problem {
            file: path,
            line: (line > 0).then_some(line),
            message,
        },
        ConfigError::Read { path: p, source } => Problem {
            file: p,
            line: None,
            message: format!("cannot read: {source}"),
        },
    }
    .with_default_file(path)
}

impl Problem {
    fn with_default_file(mut self, path: &Path) -> Problem {
        if self.file.as_os_str().is_empty() {
            self.file = path.into();
        }
        self
    }
}

/// The problems found so far, and how to name lines of the config.
struct Run<'a> {
    config: &'a Path,
    lines: &'a Lines<'a>,
    problems: Vec<Problem>,
}

impl Run<'_> {
    /// A problem of the config file, at the line of the key at `key`.
    fn at(&mut self, key: &[Key<'_>], message: impl Into<String>) {
        let line = self.lines.line_of(self.lines.span(key));
        self.problems.push(Problem {
            file: self.config.into(),
            line: (line > 0).then_some(line),
            message: message.into(),
        });
    }

    /// A problem of another file.
    fn of(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.into(),
            line,
            message: message.into(),
        });
    }

    /// The `j`th certificate of site `i` (0: the one of `[server.tls]`):
    /// its chain, its key and their match, its OCSP response.
    fn certificate(&mut self, cfg: &EdgeConfig, i: usize, j: usize, cert: &CertConfig) {
        // The keys of the `j`th certificate in the file.
        let key_path = |k: &'static str| -> Vec<Key<'static>> {
            let mut p: Vec<Key<'static>> = vec!["server".into(), i.into(), "tls".into()];
            if j > 0 {
                p.extend([Key::Name("certificates"), Key::Index(j - 1)]);
            }
            p.push(k.into());
            p
        };
        let chain = match load_chain(&cert.certificate) {
            Ok(c) => c,
            Err(e) => {
                self.of(
                    &cert.certificate,
                    None,
                    strip_path(&e.to_string(), &cert.certificate),
                );
                return;
            }
        };
        for (n, der) in chain.iter().enumerate() {
            if let Err(e) = rustls::server::ParsedCertificate::try_from(der) {
                self.of(
                    &cert.certificate,
                    None,
                    format!("certificate {} of the chain does not parse: {e:?}", n + 1),
                );
                return;
            }
        }
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        // One probe signature: one connection.
        let source = crate::worker::key_source(cert, cfg.keyserver_timeout, 1);
        match (source.certified_key(&provider), &cert.key) {
            (Ok(_), _) => {}
            (Err(KeyError::Tls(rustls::Error::InconsistentKeys(_))), KeyConfig::File(k)) => self.of(
                k,
                None,
                format!(
                    "this key does not match the certificate {} (their public keys differ)",
                    cert.certificate.display()
                ),
            ),
            (Err(KeyError::Pem { path, message }), _) => self.of(&path, None, message),
            (Err(e), KeyConfig::File(k)) => self.of(k, None, e.to_string()),
            (Err(e), KeyConfig::KeyServer { key_name, .. }) => self.at(
                &key_path("keyserver"),
                format!(
                    "key {key_name:?} for certificate {}: {e}",
                    cert.certificate.display()
                ),
            ),
        }
        if let Some(p) = &cert.ocsp_staple {
            if let Err(e) = crate::tls::read_ocsp(p) {
                self.of(p, None, strip_path(&e.to_string(), p));
            }
        }
    }

    /// Loads the rule file as a worker does; a syntax error names its line.
    fn waf(&mut self, rules: &Path) {
        match conclave_waf::Waf::load(rules) {
            Ok(_) => {}
            Err(conclave_waf::WafError::Syntax {
                file,
                line,
                directive,
                msg,
            }) => self.of(&file, Some(line), format!("{directive}: {msg}")),
            Err(conclave_waf::WafError::Unsupported {
                file,
                line,
                directive,
                what,
            }) => self.of(&file, Some(line), format!("{directive}: unsupported: {what}")),
            Err(e) => self.of(rules, None, strip_path(&e.to_string(), rules)),
        }
    }

    /// `[shared]`: its secret files (private) and the edge identity.
    fn shared(&mut self, cfg: &EdgeConfig) {
        let SharedConfig::Mem {
            certs,
            secret_file,
            ticket_secret_file,
            ..
        } = &cfg.shared
        else {
            return;
        };
        if let Some(p) = secret_file {
            if let Err(e) = conclave_secret::read_private(p) {
                self.at(&["shared".into(), "secret_file".into()], e.to_string());
            }
        }
        if let Some(p) = ticket_secret_file {
            if let Err(e) = crate::tickets::TicketSeal::from_file(p) {
                self.at(&["shared".into(), "ticket_secret_file".into()], e.to_string());
            }
        }
        if let Some(c) = certs {
            self.identity(c, &["shared".into(), "certs".into()]);
        }
    }

    /// `[storage]`: the edge identity for the file server.
    fn storage(&mut self, cfg: &EdgeConfig) {
        if let StorageConfig::Nextfs { certs, .. } = &cfg.storage {
            self.identity(certs, &["storage".into(), "certs".into()]);
        }
    }

    /// The edge identity in the `conclave certs` directory `dir`.
    fn identity(&mut self, dir: &Path, key: &[Key<'_>]) {
        if let Err(e) = conclave_rpc::Credentials::from_dir(dir, Role::Edge) {
            self.at(key, format!("edge identity in {}: {e}", dir.display()));
        }
    }

    /// Binds every `listen` address once (no SO_REUSEPORT, so a port held
    /// by anything, another edge included, is found).
    fn ports(&mut self, cfg: &EdgeConfig) {
        let mut seen: Vec<SocketAddr> = Vec::new();
        // This edge's own running master (its pid file): the ports it holds
        // are what a reload keeps, so `--check` before a SIGHUP passes.
        let own = cfg
            .pid_file
            .as_deref()
            .and_then(|p| crate::pid_file::running_master(p).ok());
        for (i, s) in cfg.servers.iter().enumerate() {
            if seen.contains(&s.listen) {
                continue;
            }
            seen.push(s.listen);
            if let Err(e) = std::net::TcpListener::bind(s.listen) {
                let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                    match holder(s.listen.port()) {
                        Some((pid, _)) if own.is_some_and(|m| pid == m || parent(pid) == Some(m)) => continue,
                        Some((pid, comm)) => format!("is held by another process (pid {pid}, {comm})"),
                        None => "is held by another process".to_string(),
                    }
                } else {
                    format!("cannot be bound: {e}")
                };
                self.at(
                    &["server".into(), i.into(), "listen".into()],
                    format!("port {} (listen {}) {why}", s.listen.port(), s.listen),
                );
            }
        }
    }
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Who listens on TCP `port`: pid and command from `/proc` (Linux; only
/// processes this user may inspect, all of them as root), `None` if unknown.
fn holder(port: u16) -> Option<(u32, String)> {
    const LISTEN: &str = "0A";
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st ... inode (column 9)
        for cols in text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if cols.get(3) == Some(&LISTEN) && local_port == Some(port) {
                if let Some(inode) = cols.get(9) {
                    sockets.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|link| sockets.iter().any(|s| link.as_os_str() == s.as_str()));
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some((pid, comm.trim().to_string()));
        }
    }
    None
}

/// `message` without a leading `PATH: ` (the problem names the file already).
fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}
