//! The master's pid file (`pid_file`): written when the master starts,
//! removed when it stops, moved to `PATH.oldbin` during a binary upgrade (as
//! NGINX does), and read by `conclave edge --reload/--stop/...` to find the
//! master to signal. A pid file naming a live edge master keeps a second one
//! from starting.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a pid file.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another edge master runs with this pid file.
    #[error("{} names a running conclave edge (pid {pid}): stop it first (conclave edge --stop), or give this one another pid_file", path.display())]
    Running {
        /// The pid file.
        path: PathBuf,
        /// The running master.
        pid: u32,
    },
    /// The pid file names no running edge master.
    #[error("{} names pid {pid}, which is not a running conclave edge", path.display())]
    NotRunning {
        /// The pid file.
        path: PathBuf,
        /// The pid it holds.
        pid: u32,
    },
    /// The file does not hold a pid.
    #[error("{}: {text:?} is not a process id", path.display())]
    Garbled {
        /// The pid file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
    /// Reading or writing the file failed.
    #[error("pid file {}: {source}", path.display())]
    Io {
        /// The pid file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// This master's pid file; removed on drop if it still names this process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
    /// Moved to `PATH.oldbin` for a binary upgrade.
    aside: bool,
}

impl PidFile {
    /// Writes this process's pid to `path`, unless it names another live
    /// edge master.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let pid = std::process::id();
        match read_pid(path) {
            Ok(other) if other != pid && is_edge_master(other) => {
                return Err(PidFileError::Running {
                    path: path.into(),
                    pid: other,
                })
            }
            _ => {}
        }
        // Written whole then renamed, so a reader never sees half a pid.
        let tmp = sibling(path, ".tmp");
        let io = |source| PidFileError::Io {
            path: path.into(),
            source,
        };
        std::fs::write(&tmp, format!("{pid}\n")).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(PidFile {
            path: path.into(),
            pid,
            aside: false,
        })
    }

    /// Moves the file to `PATH.oldbin`, where the operator finds the old
    /// master after starting a new one (which writes `PATH`).
    pub fn move_aside(&mut self) -> io::Result<()> {
        if !self.aside {
            std::fs::rename(&self.path, self.oldbin())?;
            self.aside = true;
        }
        Ok(())
    }

    /// Moves `PATH.oldbin` back to `PATH` (the new master did not start),
    /// unless a new master wrote `PATH` meanwhile.
    pub fn restore(&mut self) -> io::Result<()> {
        if self.aside && !self.path.exists() {
            std::fs::rename(self.oldbin(), &self.path)?;
            self.aside = false;
        }
        Ok(())
    }

    fn oldbin(&self) -> PathBuf {
        sibling(&self.path, ".oldbin")
    }

    fn current(&self) -> PathBuf {
        if self.aside {
            self.oldbin()
        } else {
            self.path.clone()
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let p = self.current();
        if read_pid(&p).is_ok_and(|pid| pid == self.pid) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `PATH` + `suffix`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// The pid in `path`.
pub fn read_pid(path: &Path) -> Result<u32, PidFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PidFileError::Io {
        path: path.into(),
        source,
    })?;
    text.trim().parse().map_err(|_| PidFileError::Garbled {
        path: path.into(),
        text: text.trim().chars().take(40).collect(),
    })
}

/// The live edge master named by `path`.
pub fn running_master(path: &Path) -> Result<u32, PidFileError> {
    let pid = read_pid(path)?;
    if is_edge_master(pid) {
        Ok(pid)
    } else {
        Err(PidFileError::NotRunning {
            path: path.into(),
            pid,
        })
    }
}

/// Whether `pid` is a live `conclave edge` master (its command line is
/// `... edge ...`; workers run `edge-worker`; a zombie has none).
pub fn is_edge_master(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.len() > 1 && args[1] == b"edge"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.pid");
        let f = PidFile::create(&p).unwrap();
        assert_eq!(read_pid(&p).unwrap(), std::process::id());
        drop(f);
        assert!(!p.exists());
    }

    #[test]
    fn a_stale_pid_file_is_replaced_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.pid");
        // The test process is no edge master, so its parent's pid is stale here.
        std::fs::write(&p, "1\n").unwrap();
        let _f = PidFile::create(&p).unwrap();
        std::fs::write(&p, "x y").unwrap();
        assert_eq!(
            read_pid(&p).unwrap_err().to_string(),
            format!("{}: \"x y\" is not a process id", p.display())
        );
    }

    #[test]
    fn moved_aside_for_an_upgrade_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.pid");
        let mut f = PidFile::create(&p).unwrap();
        f.move_aside().unwrap();
        assert!(!p.exists());
        assert_eq!(
            read_pid(&dir.path().join("edge.pid.oldbin")).unwrap(),
            std::process::id()
        );
        f.restore().unwrap();
        assert_eq!(read_pid(&p).unwrap(), std::process::id());
        drop(f);
        assert!(!p.exists());
    }
}
