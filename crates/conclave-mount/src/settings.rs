//! The typed command line of `conclave mount`: parsed by clap in the binary
//! and written back by [`MountSettings::to_args`] for `conclave eval` and
//! `conclave up`, so no caller spells a flag itself.

use conclave_rpc::{Endpoint, Role};
use conclave_units::Dur;
use std::path::PathBuf;
use std::time::Duration;

/// How long the kernel may trust attributes and names unless `--attr-ttl`
/// says otherwise: short, because another client of the same file server
/// may change the tree (the cache is exact only for a single writer).
pub const DEFAULT_ATTR_TTL: Dur = Dur(Duration::from_secs(1));

/// FUSE request threads unless `--threads` says otherwise: enough that
/// NGINX workers waiting on the file server do not queue behind each other.
pub const DEFAULT_THREADS: usize = 8;

/// Everything `conclave mount` needs.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MountSettings {
    /// The file server: unix:///path or tcp://HOST:PORT.
    #[arg(long)]
    pub server: Endpoint,
    /// Directory written by `conclave certs` (or a deployment's copy of one
    /// identity); the mount presents `--identity`'s certificate.
    #[arg(long)]
    pub certs: PathBuf,
    /// Identity presented to the file server (`client` or `edge`); its
    /// grants decide what the mount may read and write.
    #[arg(long, default_value_t = Role::Client)]
    pub identity: Role,
    /// Mount read-only: every change gets EROFS from the kernel.
    #[arg(long)]
    pub read_only: bool,
    /// Let users other than the one mounting use the mount (`allow_other`;
    /// NGINX workers running as www-data need it). Access control is then
    /// the file server's grants for `--identity`, not file modes.
    #[arg(long)]
    pub allow_other: bool,
    /// How long the kernel caches attributes and names, and how long an
    /// open may keep a file's cached pages without asking the server: a
    /// change by another client of the file server is seen by the first
    /// open after it.
    #[arg(long, default_value_t = DEFAULT_ATTR_TTL)]
    pub attr_ttl: Dur,
    /// Threads serving FUSE requests.
    #[arg(long, default_value_t = DEFAULT_THREADS, value_parser = clap::value_parser!(usize))]
    pub threads: usize,
    /// Where to mount (an existing empty directory).
    pub mountpoint: PathBuf,
}

impl MountSettings {
    /// Settings for mounting `server`'s tree at `mountpoint` as the
    /// `client` identity in `certs`, read-write, with default caching.
    pub fn new(server: Endpoint, certs: PathBuf, mountpoint: PathBuf) -> Self {
        MountSettings {
            server,
            certs,
            identity: Role::Client,
            read_only: false,
            allow_other: false,
            attr_ttl: DEFAULT_ATTR_TTL,
            threads: DEFAULT_THREADS,
            mountpoint,
        }
    }

    /// The argv tail `["mount", "--server", ...]` that parses back to `self`
    /// (flags at their defaults are left out).
    pub fn to_args(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "mount".into(),
            "--server".into(),
            self.server.to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
        ];
        if self.identity != Role::Client {
            argv.extend(["--identity".into(), self.identity.to_string()]);
        }
        if self.read_only {
            argv.push("--read-only".into());
        }
        if self.allow_other {
            argv.push("--allow-other".into());
        }
        if self.attr_ttl != DEFAULT_ATTR_TTL {
            argv.extend(["--attr-ttl".into(), self.attr_ttl.to_string()]);
        }
        if self.threads != DEFAULT_THREADS {
            argv.extend(["--threads".into(), self.threads.to_string()]);
        }
        argv.push(self.mountpoint.display().to_string());
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Mount(MountSettings),
    }

    fn reparse(s: &MountSettings) -> MountSettings {
        let argv = std::iter::once("conclave".to_string()).chain(s.to_args());
        let Cli::Mount(back) = Cli::try_parse_from(argv).unwrap();
        back
    }

    #[test]
    fn mount_settings_round_trip_through_their_argv() {
        let mut s = MountSettings::new(
            "tcp://127.0.0.1:9200".parse().unwrap(),
            "/s/certs".into(),
            "/s/mnt".into(),
        );
        assert_eq!(reparse(&s), s);
        assert_eq!(
            s.to_args(),
            [
                "mount",
                "--server",
                "tcp://127.0.0.1:9200",
                "--certs",
                "/s/certs",
                "/s/mnt"
            ]
        );
        s.server = "unix:///s/fs.sock".parse().unwrap();
        s.identity = Role::Edge;
        s.read_only = true;
        s.allow_other = true;
        s.attr_ttl = Dur(Duration::from_millis(250));
        s.threads = 3;
        assert_eq!(reparse(&s), s);
    }
}
