//! The run directory of a deployment, `DIR/run/`: one directory per process
//! (mode 0700), holding only what that process uses — its own identity (a
//! copy of its `conclave certs` directory: `root.crt`, `<role>.crt`,
//! `<role>.key`) and its own secrets. The site key is *moved* into the one
//! process that signs with it (the key server when keyless, else the
//! edge), never copied; the CA key stays in `certs/ca/`, outside `run/`.
//! With `users`, each directory belongs to its process's own uid, so a
//! compromised edge cannot even open the key server's files.
//!
//! ```text
//! DIR/certs/ca/root.key        the CA key: never under run/
//! DIR/run/fileserver/          fileserver.{crt,key}, root.crt, fs.secret
//! DIR/run/memserver/           memserver.{crt,key}, root.crt
//! DIR/run/keyserver/           keyserver.{crt,key}, root.crt, keys/server.key
//! DIR/run/origin/              (nothing secret)
//! DIR/run/edge/                edge.{crt,key} (edge@tenant), root.crt, server.crt,
//!                              [server.key when not keyless], edge.toml, caches
//! ```

use crate::deploy::{Deployment, KeyKind};
use crate::EvalError;
use conclave_rpc::pki::{self, write_file, CertsLayout};
use conclave_rpc::{Identity, Role};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The run directory's name under the deployment's state directory.
pub const RUN: &str = "run";

/// A process of a deployment: each has its own directory under `run/` and,
/// with `users`, its own uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The file server.
    FileServer,
    /// The memory server.
    MemServer,
    /// The key server.
    KeyServer,
    /// The origin (no identity: it speaks plain HTTP to the edge).
    Origin,
    /// The edge.
    Edge,
}

impl Part {
    /// Every part; a part's uid offset is its index here.
    pub const ALL: [Part; 5] = [
        Part::FileServer,
        Part::MemServer,
        Part::KeyServer,
        Part::Origin,
        Part::Edge,
    ];

    /// Its directory's name.
    pub fn name(self) -> &'static str {
        match self {
            Part::FileServer => "fileserver",
            Part::MemServer => "memserver",
            Part::KeyServer => "keyserver",
            Part::Origin => "origin",
            Part::Edge => "edge",
        }
    }

    /// Offset of its uid from `base_uid`.
    fn offset(self) -> u32 {
        Part::ALL.iter().position(|p| *p == self).unwrap_or(0) as u32
    }
}

/// The Unix user a process runs as (with no supplementary groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixUser {
    /// User id.
    pub uid: u32,
    /// Group id (the primary and only group).
    pub gid: u32,
}

/// Where the site key comes from when a deployment is prepared.
pub enum SiteKeySource<'a> {
    /// Move the file: from `certs/site/server.key`, or from where an earlier
    /// run of this deployment put it (so `up` can run again after a stop).
    Move,
    /// Write these bytes: the evaluation reads the key once, deletes its
    /// file and gives each cell's signer its own copy for the cell's life.
    Bytes(&'a [u8]),
}

/// The run directory of one deployment.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    base_uid: Option<u32>,
}

impl RunDir {
    /// The run directory of `d` (`DIR/run`); with `d.users`, parts get uids.
    pub fn of(d: &Deployment) -> RunDir {
        RunDir {
            root: d.state_dir().join(RUN),
            base_uid: d.users.then_some(d.base_uid),
        }
    }

    /// `DIR/run`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A part's directory.
    pub fn dir(&self, part: Part) -> PathBuf {
        self.root.join(part.name())
    }

    /// The key server's signing keys (only the site key).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir(Part::KeyServer).join("keys")
    }

    /// The user a part runs as, with `users`.
    pub fn user(&self, part: Part) -> Option<UnixUser> {
        self.base_uid.map(|b| UnixUser {
            uid: b + part.offset(),
            gid: b + part.offset(),
        })
    }

    /// Where the site key lives while the deployment runs: with the signer.
    pub fn site_key_path(&self, keyless: bool) -> PathBuf {
        if keyless {
            self.keys_dir().join(CertsLayout::SITE_KEY)
        } else {
            self.dir(Part::Edge).join(CertsLayout::SITE_KEY)
        }
    }
}

fn mkdir_private(dir: &Path) -> Result<(), EvalError> {
    Ok(pki::private_dir(dir)?)
}

fn copy_file(from: &Path, to: &Path, private: bool) -> Result<(), EvalError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(from).map_err(EvalError::io(from))?);
    write_file(to, &text, private, true)?;
    Ok(())
}

/// Issues `id`'s directory from the CA in `certs/ca/` when it is missing
/// (for example a tenant's edge named only in the deployment file).
pub fn ensure_identity(certs: &Path, id: &Identity) -> Result<PathBuf, EvalError> {
    let layout = CertsLayout::new(certs);
    let dir = layout.identity_dir(id);
    if dir.join(format!("{}.crt", id.role)).exists() {
        return Ok(dir);
    }
    let ca = layout.ca_dir();
    if !ca.join(CertsLayout::CA_KEY).exists() {
        return Err(EvalError::Config(format!(
            "{}: no identity {id}, and no CA key in {} to issue it (run `conclave certs --out {} --tenant {}`)",
            certs.display(),
            ca.display(),
            certs.display(),
            id.tenant
        )));
    }
    pki::issue_one(&ca, id, certs, false)?;
    Ok(dir)
}

/// Makes `part`'s directory (0700) and puts `id`'s identity in it: the CA
/// certificate, the identity's certificate and its key, nothing else of
/// `certs`.
pub fn install_identity(
    run: &RunDir,
    part: Part,
    certs: &Path,
    id: Option<&Identity>,
) -> Result<PathBuf, EvalError> {
    let dest = run.dir(part);
    mkdir_private(&dest)?;
    if let Some(id) = id {
        let src = ensure_identity(certs, id)?;
        // root.crt, <role>.crt, <role>.key: the key is the last, private one.
        let files = CertsLayout::identity_files(id.role);
        for (i, f) in files.iter().enumerate() {
            copy_file(&src.join(f), &dest.join(f), i + 1 == files.len())?;
        }
    }
    Ok(dest)
}

/// Puts the site key where its signer reads it and nowhere else under
/// `run/`: moved from `certs/site/` (or from the other signer's directory,
/// when an earlier run was keyless and this one is not, or the reverse).
/// Returns its path.
pub fn place_site_key(
    run: &RunDir,
    certs: &Path,
    keyless: bool,
    source: &SiteKeySource,
) -> Result<PathBuf, EvalError> {
    let dest = run.site_key_path(keyless);
    let other = run.site_key_path(!keyless);
    if let Some(parent) = dest.parent() {
        mkdir_private(parent)?;
    }
    match source {
        SiteKeySource::Bytes(bytes) => {
            write_private(&dest, bytes)?;
        }
        SiteKeySource::Move => {
            let from = [CertsLayout::new(certs).site_key(), other.clone()]
                .into_iter()
                .find(|p| p.exists());
            match from {
                Some(from) => move_file(&from, &dest)?,
                None if dest.exists() => {}
                None => {
                    return Err(EvalError::Config(format!(
                        "no site key: expected {} (made by `conclave certs`)",
                        CertsLayout::new(certs).site_key().display()
                    )))
                }
            }
        }
    }
    // A key left by an earlier run in the other signer's place goes too.
    match std::fs::remove_file(&other) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(EvalError::io(&other)(e)),
        _ => {}
    }
    Ok(dest)
}

/// Renames `from` to `to`; across file systems, copies then removes, so
/// either way one copy is left.
fn move_file(from: &Path, to: &Path) -> Result<(), EvalError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(from).map_err(EvalError::io(from))?);
    write_private(to, &bytes)?;
    std::fs::remove_file(from).map_err(EvalError::io(from))
}

/// Replaces `path` by a new file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(EvalError::io(path))
}

/// Gives `path` and everything under it to `user`.
pub fn chown_tree(path: &Path, user: UnixUser) -> Result<(), EvalError> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(EvalError::io(path))?;
    if std::fs::symlink_metadata(path)
        .map_err(EvalError::io(path))?
        .is_dir()
    {
        for e in std::fs::read_dir(path).map_err(EvalError::io(path))? {
            chown_tree(&e.map_err(EvalError::io(path))?.path(), user)?;
        }
    }
    Ok(())
}

/// With `users`, the processes must reach their directories and the
/// binary: every directory above `run/` must let others traverse it.
/// Names the first that does not, with the fix.
pub fn check_traversable(path: &Path) -> Result<(), EvalError> {
    for a in path.ancestors() {
        let Ok(m) = std::fs::metadata(a) else { continue };
        if m.is_dir() && m.mode() & 0o001 == 0 {
            return Err(EvalError::Config(format!(
                "{}: mode {:04o} keeps the deployment's users out of their directories \
                 (run: chmod o+x {})",
                a.display(),
                m.mode() & 0o7777,
                a.display()
            )));
        }
    }
    Ok(())
}

/// `users = true` needs root: only root can start processes under other uids.
pub fn require_root() -> Result<(), EvalError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(EvalError::Config(format!(
            "users = true (or `conclave up --users`) needs root to start each process under its own uid; \
             running as uid {}",
            nix::unistd::geteuid()
        )))
    }
}

/// Whether the deployment signs through the key server.
pub fn keyless(d: &Deployment) -> bool {
    d.edge.key == KeyKind::Keyserver && d.keyserver.is_some()
}

/// The role of a part, for the identity it gets.
pub fn role(part: Part) -> Option<Role> {
    match part {
        Part::FileServer => Some(Role::FileServer),
        Part::MemServer => Some(Role::MemServer),
        Part::KeyServer => Some(Role::KeyServer),
        Part::Edge => Some(Role::Edge),
        Part::Origin => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_cannot_traverse_is_named_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("state/run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = check_traversable(&run).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}: mode 0700", t.path().display()))
                && e.contains(&format!("chmod o+x {}", t.path().display())),
            "{e}"
        );
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        check_traversable(&run).unwrap();
    }
}
