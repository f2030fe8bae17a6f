//! The typed command line of `conclave fileserver`: parsed by clap in the
//! binary and written back by [`FileServerSettings::to_args`] for whoever
//! starts a file server (`conclave eval`, `conclave up`), so no caller spells
//! a flag itself.

use crate::grants::Grant;
use conclave_bd::DeviceKind;
use conclave_rpc::{Endpoint, ServerLimits};
use conclave_units::{ByteSize, Dur};
use std::path::PathBuf;

/// Descriptors one client may hold open unless `--max-open` says otherwise.
pub const DEFAULT_MAX_OPEN: usize = 1024;

/// Data one WRITE/PWRITE may carry unless `--max-write` says otherwise: the
/// whole frame limit (1 MiB), which is also the largest value accepted.
pub const DEFAULT_MAX_WRITE: ByteSize = ByteSize(crate::proto::MAX_IO as u64);

/// Uncommitted bytes that force a commit unless `--commit-bytes` says otherwise.
pub const DEFAULT_COMMIT_BYTES: ByteSize = ByteSize(64 << 20);

/// How often uncommitted writes are committed unless `--commit-interval` says otherwise.
pub const DEFAULT_COMMIT_INTERVAL: Dur = Dur(std::time::Duration::from_secs(5));

fn positive_duration(s: &str) -> Result<Dur, String> {
    let d: Dur = s.parse()?;
    if d.0.is_zero() {
        return Err("must be more than 0 (e.g. 5s)".into());
    }
    Ok(d)
}

/// Everything `conclave fileserver` needs: the image and its device, where
/// to listen, the identity, and the limits.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct FileServerSettings {
    /// The image file on the (untrusted) host.
    #[arg(long)]
    pub image: PathBuf,
    /// Block device: std, crypt, verity or vericrypt.
    #[arg(long, default_value = "std")]
    pub device: DeviceKind,
    /// Merkle tree file (verity, vericrypt).
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// File holding the device secret (crypt, verity, vericrypt).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Refuse to start unless the last commit's root (or the one before it,
    /// in case a crash came between sealing and printing) is this (hex), so
    /// an older image+tree+state set put back by the host is detected.
    #[arg(long)]
    pub expect_root: Option<String>,
    /// State file: counter and root of the last commit, MACed with the device
    /// secret and checked against the device at every start (default IMAGE.state).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Redo log of the commit in progress (default IMAGE.redo); replayed or
    /// discarded at the next start after a crash.
    #[arg(long)]
    pub redo_log: Option<PathBuf>,
    /// A copy of the commit counter on other storage, rewritten on every
    /// commit; the server refuses to start if the sealed counter is lower
    /// (image, tree and state rolled back together).
    #[arg(long)]
    pub counter_file: Option<PathBuf>,
    /// Commit once this many bytes are written but uncommitted (besides every
    /// FSYNC, the timer and shutdown); bounds the memory holding them.
    #[arg(long, default_value_t = DEFAULT_COMMIT_BYTES)]
    pub commit_bytes: ByteSize,
    /// Commit uncommitted writes this often even without an FSYNC.
    #[arg(long, default_value_t = DEFAULT_COMMIT_INTERVAL, value_parser = positive_duration)]
    pub commit_interval: Dur,
    /// Where to listen: unix:///path or tcp://127.0.0.1:PORT.
    #[arg(long)]
    pub listen: Endpoint,
    /// Directory written by `conclave certs` (uses the `fileserver` identity).
    #[arg(long)]
    pub certs: PathBuf,
    /// Descriptors one client may hold open.
    #[arg(long, default_value_t = DEFAULT_MAX_OPEN)]
    pub max_open: usize,
    /// Bytes one WRITE/PWRITE request may write (at most 1m, the frame
    /// limit); larger requests get EFBIG, so no single request holds the
    /// shared write lock for long.
    #[arg(long, default_value_t = DEFAULT_MAX_WRITE)]
    pub max_write: ByteSize,
    /// Serve without allowing changes (required for an image that was not
    /// cleanly shut down, until it has been checked).
    #[arg(long)]
    pub read_only: bool,
    /// What an identity may do under a path: `IDENTITY:ro|rw:/PATH`
    /// (repeatable), e.g. `edge:ro:/html` and `edge:rw:/cache`. The longest
    /// matching path wins; anything not granted gets EACCES. With no grant
    /// at all every client is denied everything.
    #[arg(long = "grant", value_name = "IDENTITY:MODE:PATH")]
    pub grants: Vec<Grant>,
    /// A file of grants, one per line (`#` comments), added to `--grant`.
    #[arg(long, value_name = "FILE")]
    pub grants_file: Option<PathBuf>,
    /// The RPC server loop's connection limits (docs/protocol.md).
    #[command(flatten)]
    pub rpc: ServerLimits,
}

impl FileServerSettings {
    /// Where the commit layer keeps its files: the flags, or beside the image.
    pub fn commit_options(&self) -> conclave_bd::CommitOptions {
        let beside = conclave_bd::CommitOptions::beside(&self.image);
        conclave_bd::CommitOptions {
            state_file: self.state_file.clone().unwrap_or(beside.state_file),
            redo_log: self.redo_log.clone().unwrap_or(beside.redo_log),
            counter_file: self.counter_file.clone(),
        }
    }

    /// Settings for `image` on `device`, listening on `listen` with the
    /// identities in `certs`; no tree, secret or expected root, default limits.
    pub fn new(image: PathBuf, device: DeviceKind, listen: Endpoint, certs: PathBuf) -> Self {
        FileServerSettings {
            image,
            device,
            tree: None,
            secret_file: None,
            expect_root: None,
            state_file: None,
            redo_log: None,
            counter_file: None,
            commit_bytes: DEFAULT_COMMIT_BYTES,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            listen,
            certs,
            max_open: DEFAULT_MAX_OPEN,
            max_write: DEFAULT_MAX_WRITE,
            read_only: false,
            grants: Vec::new(),
            grants_file: None,
            rpc: ServerLimits::default(),
        }
    }

    /// The argv tail `["fileserver", "--image", ...]` that parses back to
    /// `self` (flags at their defaults are left out, except `--device`).
    pub fn to_args(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "fileserver".into(),
            "--image".into(),
            self.image.display().to_string(),
            "--device".into(),
            self.device.to_string(),
        ];
        if let Some(t) = &self.tree {
            argv.extend(["--tree".into(), t.display().to_string()]);
        }
        if let Some(s) = &self.secret_file {
            argv.extend(["--secret-file".into(), s.display().to_string()]);
        }
        if let Some(r) = &self.expect_root {
            argv.extend(["--expect-root".into(), r.clone()]);
        }
        if let Some(p) = &self.state_file {
            argv.extend(["--state-file".into(), p.display().to_string()]);
        }
        if let Some(p) = &self.redo_log {
            argv.extend(["--redo-log".into(), p.display().to_string()]);
        }
        if let Some(p) = &self.counter_file {
            argv.extend(["--counter-file".into(), p.display().to_string()]);
        }
        if self.commit_bytes != DEFAULT_COMMIT_BYTES {
            argv.extend(["--commit-bytes".into(), self.commit_bytes.to_string()]);
        }
        if self.commit_interval != DEFAULT_COMMIT_INTERVAL {
            argv.extend(["--commit-interval".into(), self.commit_interval.to_string()]);
        }
        argv.extend([
            "--listen".into(),
            self.listen.to_string(),
            "--certs".into(),
            self.certs.display().to_string(),
        ]);
        if self.max_open != DEFAULT_MAX_OPEN {
            argv.extend(["--max-open".into(), self.max_open.to_string()]);
        }
        if self.max_write != DEFAULT_MAX_WRITE {
            argv.extend(["--max-write".into(), self.max_write.to_string()]);
        }
        if self.read_only {
            argv.push("--read-only".into());
        }
        for g in &self.grants {
            argv.extend(["--grant".into(), g.to_string()]);
        }
        if let Some(f) = &self.grants_file {
            argv.extend(["--grants-file".into(), f.display().to_string()]);
        }
        argv.extend(self.rpc.to_args());
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Fileserver(FileServerSettings),
    }

    fn reparse(s: &FileServerSettings) -> FileServerSettings {
        let argv = std::iter::once("conclave".to_string()).chain(s.to_args());
        let Cli::Fileserver(back) = Cli::try_parse_from(argv).unwrap();
        back
    }

    #[test]
    fn file_server_settings_round_trip_through_their_argv() {
        let mut s = FileServerSettings::new(
            "/s/fs.img".into(),
            DeviceKind::Std,
            "tcp://127.0.0.1:9200".parse().unwrap(),
            "/s/certs".into(),
        );
        assert_eq!(reparse(&s), s);
        s.device = DeviceKind::Vericrypt;
        s.tree = Some("/s/fs.img.tree".into());
        s.secret_file = Some("/s/fs.secret".into());
        s.expect_root = Some("ab".repeat(32));
        s.state_file = Some("/s/fs.state".into());
        s.redo_log = Some("/s/fs.redo".into());
        s.counter_file = Some("/other/fs.counter".into());
        s.commit_bytes = ByteSize(8 << 20);
        s.commit_interval = Dur(std::time::Duration::from_millis(1500));
        s.listen = "unix:///s/fs.sock".parse().unwrap();
        s.max_open = 3;
        s.max_write = ByteSize(64 * 1024);
        s.read_only = true;
        s.rpc.max_conns_per_addr = 8;
        s.grants = vec![
            "edge:ro:/html".parse().unwrap(),
            "edge@acme:rw:/cache/acme".parse().unwrap(),
        ];
        s.grants_file = Some("/s/grants".into());
        assert_eq!(reparse(&s), s);
        assert_eq!(
            s.to_args()[..5],
            ["fileserver", "--image", "/s/fs.img", "--device", "vericrypt"]
        );
    }

    #[test]
    fn commit_files_sit_beside_the_image_unless_named() {
        let mut s = FileServerSettings::new(
            "/s/fs.img".into(),
            DeviceKind::Std,
            "tcp://127.0.0.1:9200".parse().unwrap(),
            "/s/certs".into(),
        );
        let o = s.commit_options();
        assert_eq!(o.state_file, PathBuf::from("/s/fs.img.state"));
        assert_eq!(o.redo_log, PathBuf::from("/s/fs.img.redo"));
        assert_eq!(o.counter_file, None);
        s.state_file = Some("/x/st".into());
        s.counter_file = Some("/y/c".into());
        let o = s.commit_options();
        assert_eq!(
            (o.state_file, o.counter_file),
            ("/x/st".into(), Some("/y/c".into()))
        );
    }
}
