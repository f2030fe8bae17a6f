//! The typed command line of `conclave memserver`: parsed by clap in the
//! binary and written back by [`MemServerSettings::to_args`] for whoever
//! starts a memory server (`conclave eval`, `conclave up`), so no caller
//! spells a flag itself.

use crate::{MemGrant, MemGrants, MemLimits, ServerKind};
use conclave_rpc::{Endpoint, ServerLimits};
use conclave_units::{ByteSize, Dur};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The `--kind` of a memory server, before its `--dir` is joined to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemServerKind {
    /// Segments held by the server.
    Smdish,
    /// Segments in sealed host files.
    Smuf,
}

impl MemServerKind {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            MemServerKind::Smdish => "smdish",
            MemServerKind::Smuf => "smuf",
        }
    }
}

impl fmt::Display for MemServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemServerKind {
    type Err = MemSettingsError;
    fn from_str(s: &str) -> Result<Self, MemSettingsError> {
        match s {
            "smdish" => Ok(MemServerKind::Smdish),
            "smuf" => Ok(MemServerKind::Smuf),
            _ => Err(MemSettingsError::UnknownKind(s.to_string())),
        }
    }
}

/// Settings that do not make a memory server.
#[derive(Debug, thiserror::Error)]
pub enum MemSettingsError {
    /// `--kind` is neither smdish nor smuf.
    #[error("unknown memory server kind {0:?} (expected smdish or smuf)")]
    UnknownKind(String),
    /// smdish was given a host directory it would not use.
    #[error("--dir is for smuf; smdish keeps segments in memory")]
    DirForSmdish,
    /// smuf was given no host directory.
    #[error("smuf needs --dir HOSTDIR for its sealed segment files")]
    SmufNeedsDir,
}

/// Default `--lease`: long enough for any critical section of the edge
/// (microseconds of index work plus two round trips), short enough that a
/// stuck holder stalls the others for about a second.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(1);
/// Default `--max-bytes`: room for sixteen maximum-size segments; the edge
/// uses a few kilobytes to a few megabytes.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Default `--max-bytes-per-identity`: half the server, so one identity
/// (say a `client` tool) cannot take the room the edge needs.
pub const DEFAULT_MAX_BYTES_PER_IDENTITY: u64 = 128 << 20;

fn default_lease() -> Dur {
    Dur(DEFAULT_LEASE)
}

/// Everything `conclave memserver` needs.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MemServerSettings {
    /// smdish (segments held by the server) or smuf (sealed host files).
    #[arg(long)]
    pub kind: MemServerKind,
    /// Where to listen: unix:///path or tcp://127.0.0.1:PORT (port 0 picks one).
    #[arg(long)]
    pub listen: Endpoint,
    /// Directory written by `conclave certs` (uses memserver.crt/.key).
    #[arg(long)]
    pub certs: PathBuf,
    /// smuf: the host directory of the sealed segment files.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The RPC server loop's connection limits (docs/protocol.md).
    #[command(flatten)]
    pub rpc: ServerLimits,
    /// Every LOCK is a lease of this long; a holder that neither renews nor
    /// unlocks in time loses the lock (its late UNLOCK gets ETIMEDOUT).
    #[arg(long, default_value_t = default_lease())]
    pub lease: Dur,
    /// Total segment bytes of all memory files; an OPEN that would create
    /// more gets ENOSPC.
    #[arg(long, default_value_t = ByteSize(DEFAULT_MAX_BYTES))]
    pub max_bytes: ByteSize,
    /// Segment bytes of the memory files one identity (certificate role)
    /// created; an OPEN beyond gets EDQUOT.
    #[arg(long, default_value_t = ByteSize(DEFAULT_MAX_BYTES_PER_IDENTITY))]
    pub max_bytes_per_identity: ByteSize,
    /// IDENTITY:MODE:NAME (repeatable): lets IDENTITY (`role`, `role@tenant`
    /// or `role@*`) use NAME (exact, or a prefix ending in `*`) in its own
    /// tenant's namespace, `ro` (open, peek, lock without publishing) or
    /// `rw`. Most specific grant wins; none → EACCES. Without any
    /// `--grant`: `edge@*:rw:*`. TLS_TICKET_KEYS is the edge's alone.
    #[arg(long = "grant", value_name = "IDENTITY:MODE:NAME")]
    pub grants: Vec<MemGrant>,
}

impl MemServerSettings {
    /// Settings for a server of `kind` (its host directory included).
    pub fn new(kind: ServerKind, listen: Endpoint, certs: PathBuf) -> Self {
        let (kind, dir) = match kind {
            ServerKind::Smdish => (MemServerKind::Smdish, None),
            ServerKind::Smuf { dir } => (MemServerKind::Smuf, Some(dir)),
        };
        MemServerSettings {
            kind,
            listen,
            certs,
            dir,
            rpc: ServerLimits::default(),
            lease: default_lease(),
            max_bytes: ByteSize(DEFAULT_MAX_BYTES),
            max_bytes_per_identity: ByteSize(DEFAULT_MAX_BYTES_PER_IDENTITY),
            grants: Vec::new(),
        }
    }

    /// The grants the server enforces: `--grant`s, or the default.
    pub fn grants(&self) -> MemGrants {
        MemGrants::new(self.grants.clone())
    }

    /// The lease and quotas the server enforces.
    pub fn limits(&self) -> MemLimits {
        MemLimits {
            lease: self.lease.0,
            max_bytes: self.max_bytes.bytes(),
            max_bytes_per_identity: self.max_bytes_per_identity.bytes(),
        }
    }

    /// The server kind, `--kind` and `--dir` together (smuf and only smuf
    /// has a directory).
    pub fn server_kind(&self) -> Result<ServerKind, MemSettingsError> {
        match (self.kind, &self.dir) {
            (MemServerKind::Smdish, None) => Ok(ServerKind::Smdish),
            (MemServerKind::Smdish, Some(_)) => Err(MemSettingsError::DirForSmdish),
            (MemServerKind::Smuf, Some(dir)) => Ok(ServerKind::Smuf { dir: dir.clone() }),
            (MemServerKind::Smuf, None) => Err(MemSettingsError::SmufNeedsDir),
        }
    }

    /// The argv tail `["memserver", "--kind", ...]` that parses back to `self`.
    pub fn to_args(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "memserver".into(),
            "--kind".into(),
            self.kind.to_string(),
            "--listen".into(),
            self.listen.to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
        ];
        if let Some(d) = &self.dir {
            argv.extend(["--dir".into(), d.display().to_string()]);
        }
        argv.extend(self.rpc.to_args());
        // Limits only when they differ from the defaults: command lines
        // stay as short as the user would write them.
        if self.lease != default_lease() {
            argv.extend(["--lease".into(), self.lease.to_string()]);
        }
        if self.max_bytes != ByteSize(DEFAULT_MAX_BYTES) {
            argv.extend(["--max-bytes".into(), self.max_bytes.to_string()]);
        }
        if self.max_bytes_per_identity != ByteSize(DEFAULT_MAX_BYTES_PER_IDENTITY) {
            argv.extend([
                "--max-bytes-per-identity".into(),
                self.max_bytes_per_identity.to_string(),
            ]);
        }
        for g in &self.grants {
            argv.extend(["--grant".into(), g.to_string()]);
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Memserver(MemServerSettings),
    }

    fn reparse(s: &MemServerSettings) -> MemServerSettings {
        let argv = std::iter::once("conclave".to_string()).chain(s.to_args());
        let Cli::Memserver(back) = Cli::try_parse_from(argv).unwrap();
        back
    }

    #[test]
    fn mem_server_settings_round_trip_through_their_argv() {
        let listen: Endpoint = "tcp://127.0.0.1:9100".parse().unwrap();
        let s = MemServerSettings::new(ServerKind::Smdish, listen.clone(), "/s/certs".into());
        assert_eq!(reparse(&s), s);
        assert_eq!(s.server_kind().unwrap(), ServerKind::Smdish);
        let smuf = ServerKind::Smuf {
            dir: "/s/memfiles".into(),
        };
        let mut s = MemServerSettings::new(smuf.clone(), listen, "/s/certs".into());
        s.rpc.max_inflight_per_identity = 3;
        assert_eq!(reparse(&s), s);
        s.lease = Dur(Duration::from_millis(1500));
        s.max_bytes = ByteSize(3 << 20);
        s.max_bytes_per_identity = ByteSize(1 << 20);
        assert_eq!(reparse(&s), s);
        s.grants = vec![
            "edge@*:rw:*".parse().unwrap(),
            "client@acme:ro:stats-*".parse().unwrap(),
        ];
        assert_eq!(reparse(&s), s);
        assert_eq!(s.grants().as_slice(), &s.grants[..]);
        assert_eq!(s.server_kind().unwrap(), smuf);
    }

    #[test]
    fn no_grant_means_every_tenants_edge() {
        let s = MemServerSettings::new(
            ServerKind::Smdish,
            "unix:///s/m.sock".parse().unwrap(),
            "/c".into(),
        );
        assert!(!s.to_args().contains(&"--grant".to_string()));
        assert_eq!(s.grants(), MemGrants::default());
        let err = Cli::try_parse_from([
            "conclave",
            "memserver",
            "--kind",
            "smdish",
            "--listen",
            "unix:///m",
            "--certs",
            "/c",
            "--grant",
            "edge:rx:*",
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("the mode must be ro or rw"), "{err}");
    }

    #[test]
    fn kind_and_dir_must_agree() {
        assert!("smc".parse::<MemServerKind>().is_err());
        let mut s = MemServerSettings::new(
            ServerKind::Smdish,
            "unix:///s/m.sock".parse().unwrap(),
            "/c".into(),
        );
        s.dir = Some("/d".into());
        assert!(matches!(s.server_kind(), Err(MemSettingsError::DirForSmdish)));
        s.kind = MemServerKind::Smuf;
        s.dir = None;
        assert!(matches!(s.server_kind(), Err(MemSettingsError::SmufNeedsDir)));
    }
}
