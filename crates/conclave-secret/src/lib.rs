//! Reading the conclave's private files: TLS identity keys, site keys, the
//! CA key, device and memory-server secrets, the edge's ticket secret.
//!
//! One rule for all of them, like ssh's: a file whose mode lets group or
//! others read, write or run it is refused, with an error that names the
//! file and the fix. A key another local user could read is a key that
//! leaked silently; refusing to start turns that into a visible mistake.
//! The mode is checked on the opened descriptor, so the file read is the
//! file checked. Contents come back in a buffer zeroed on drop and never
//! appear in an error.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Secret files larger than this are refused: every conclave secret is a
/// PEM key or a few dozen random bytes, so a big file is a wrong path.
pub const MAX_SECRET_FILE: u64 = 1024 * 1024;

/// Permission bits a private file must not have: any for group or others.
pub const GROUP_OTHER_BITS: u32 = 0o077;

/// Why a private file was not read. Never carries the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// Group or others may access the file.
    #[error("refusing {path}: mode {mode} lets group or others {access} it (run: chmod 600 {path})")]
    Exposed {
        /// The file.
        path: DisplayPath,
        /// Its permission bits, as `0644`.
        mode: Mode,
        /// `read` when group or others may read it, else `write or run`.
        access: &'static str,
    },
    /// Opening or reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: DisplayPath,
        /// The error.
        source: std::io::Error,
    },
    /// Not a regular file (a directory, a device...).
    #[error("refusing {0}: not a regular file")]
    NotAFile(DisplayPath),
    /// Larger than [`MAX_SECRET_FILE`].
    #[error("refusing {path}: {len} bytes is too large for a key or secret (at most {max})")]
    TooLarge {
        /// The file.
        path: DisplayPath,
        /// Its size.
        len: u64,
        /// [`MAX_SECRET_FILE`].
        max: u64,
    },
}

impl SecretFileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SecretFileError::Exposed { path, .. }
            | SecretFileError::Io { path, .. }
            | SecretFileError::NotAFile(path)
            | SecretFileError::TooLarge { path, .. } => &path.0,
        }
    }
}

/// A path shown as the user wrote it (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayPath(pub PathBuf);

impl fmt::Display for DisplayPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Permission bits shown as four octal digits (`0644`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0 & 0o7777)
    }
}

/// `Err(Exposed)` when `mode` grants group or others anything.
pub fn check_mode(path: &Path, mode: u32) -> Result<(), SecretFileError> {
    if mode & GROUP_OTHER_BITS == 0 {
        return Ok(());
    }
    Err(SecretFileError::Exposed {
        path: DisplayPath(path.to_path_buf()),
        mode: Mode(mode),
        access: if mode & 0o044 != 0 { "read" } else { "write or run" },
    })
}

/// Opens `path` and checks that it is a regular file that only its owner
/// may access; the descriptor is what gets read, so a file swapped in after
/// the check is never read.
pub fn open_private(path: &Path) -> Result<File, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: DisplayPath(path.to_path_buf()),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let md = f.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(SecretFileError::NotAFile(DisplayPath(path.to_path_buf())));
    }
    check_mode(path, md.permissions().mode())?;
    if md.len() > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: DisplayPath(path.to_path_buf()),
            len: md.len(),
            max: MAX_SECRET_FILE,
        });
    }
    Ok(f)
}

/// Reads a private key or secret file, refusing one that group or others
/// may access (see the crate doc). The buffer is zeroed when dropped.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let mut f = open_private(path)?;
    let mut buf = Zeroizing::new(Vec::new());
    // One byte more than the limit: a file that grew after the check is
    // still refused rather than read unbounded.
    (&mut f)
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|source| SecretFileError::Io {
            path: DisplayPath(path.to_path_buf()),
            source,
        })?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: DisplayPath(path.to_path_buf()),
            len: buf.len() as u64,
            max: MAX_SECRET_FILE,
        });
    }
    Ok(buf)
}

/// Writes a private file: mode 0600 from creation on (and set, for a file
/// that already existed), so it is never readable by others even briefly.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn file(dir: &Path, name: &str, mode: u32, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn written_private_files_pass_the_check() {
        let t = tempfile::tempdir().unwrap();
        let p = file(t.path(), "s", 0o644, b"old");
        write_private(&p, b"new").unwrap();
        assert_eq!(&read_private(&p).unwrap()[..], b"new");
    }

    #[test]
    fn owner_only_files_are_read() {
        let t = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o700] {
            let p = file(t.path(), "k", mode, b"secret");
            assert_eq!(&read_private(&p).unwrap()[..], b"secret");
        }
    }

    #[test]
    fn group_or_other_access_is_refused_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let p = file(t.path(), "edge.key", 0o644, b"secret");
        let e = read_private(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refusing {0}: mode 0644 lets group or others read it (run: chmod 600 {0})",
                p.display()
            )
        );
        assert_eq!(e.path(), p);
        for (mode, access) in [
            (0o640, "read"),
            (0o604, "read"),
            (0o620, "write or run"),
            (0o601, "write or run"),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            match read_private(&p) {
                Err(SecretFileError::Exposed {
                    mode: m, access: a, ..
                }) => {
                    assert_eq!((m.0 & 0o777, a), (mode, access));
                }
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_directories_and_huge_files_are_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("none");
        let e = read_private(&missing).unwrap_err();
        assert!(matches!(e, SecretFileError::Io { .. }));
        assert!(e
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display())));
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(read_private(&d), Err(SecretFileError::NotAFile(_))));
        let big = file(t.path(), "big", 0o600, &vec![0u8; MAX_SECRET_FILE as usize + 1]);
        assert!(matches!(
            read_private(&big),
            Err(SecretFileError::TooLarge { .. })
        ));
    }
}
