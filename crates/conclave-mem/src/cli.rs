//! `conclave mem`: a client of memory files for scripts and the
//! multi-process tests: increment a counter under the lock, read, write,
//! hold a lock, keep a memory file open. The counter is the little-endian
//! u64 at byte 0 of the segment.

use crate::{connect, MemError, MemOptions, MemSpec, MemoryFile};
use conclave_rpc::{Credentials, Role, TlsError};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `conclave mem`.
#[derive(clap::Args, Debug, Clone)]
pub struct MemClientArgs {
    /// The memory store: local, smdish+unix:///sock, smdish+tcp://h:p,
    /// smuf+unix:///sock?dir=HOSTDIR, smc:///dir.
    #[arg(long)]
    pub spec: MemSpec,
    /// Directory written by `conclave certs` (for smdish and smuf).
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Identity to present: edge or client.
    #[arg(long, default_value_t = Role::Edge)]
    pub role: Role,
    /// The conclave's secret file (for smc).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub op: MemOp,
}

/// One operation on one memory file. The counter is the little-endian u64
/// at byte 0 of the segment.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum MemOp {
    /// Increment the counter N times, each time under the lock; prints the last value written.
    Incr {
        /// The memory file.
        name: String,
        /// How many increments.
        #[arg(long, default_value_t = 1)]
        times: u64,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
    /// Print the counter.
    Get {
        /// The memory file.
        name: String,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
        /// Give up if the lock is not granted in this many milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Set the counter.
    Put {
        /// The memory file.
        name: String,
        /// The value.
        #[arg(long)]
        value: u64,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
    /// Take the lock, print `locked`, and hold it until killed.
    Hold {
        /// The memory file.
        name: String,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
    /// Keep the memory file open (so it outlives other clients); prints
    /// `open` and waits until stdin closes.
    Open {
        /// The memory file.
        name: String,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
    /// Send an unlock without holding the lock (servers must refuse it).
    Unlock {
        /// The memory file.
        name: String,
        /// Segment size.
        #[arg(long, default_value_t = 8)]
        size: usize,
    },
}

/// Why a `conclave mem` operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemCliError {
    /// `--role` names an identity memory servers do not serve.
    #[error("--role must be edge or client, not {0:?}")]
    Role(Role),
    /// The client identity did not load.
    #[error("loading the {role} identity from {}", .dir.display())]
    Identity {
        /// The identity asked for.
        role: Role,
        /// The certificate directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: TlsError,
    },
    /// The store or the memory file refused the operation.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// The segment cannot hold the counter.
    #[error("the segment is shorter than the 8-byte counter")]
    ShortSegment,
    /// A server accepted an unlock from a client that did not hold the lock.
    #[error("the unlock of {0:?} without holding the lock was accepted")]
    UnheldUnlockAccepted(String),
    /// Standard input failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn counter(seg: &[u8]) -> Result<u64, MemCliError> {
    let b: [u8; 8] = seg
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(MemCliError::ShortSegment)?;
    Ok(u64::from_le_bytes(b))
}

fn set_counter(seg: &mut [u8], v: u64) -> Result<(), MemCliError> {
    let dst = seg.get_mut(..8).ok_or(MemCliError::ShortSegment)?;
    dst.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Runs one operation; values and `locked`/`open` go to `out`.
pub fn run(a: &MemClientArgs, out: &mut dyn Write) -> Result<(), MemCliError> {
    if !crate::server::CLIENT_ROLES.contains(&a.role) {
        return Err(MemCliError::Role(a.role));
    }
    let creds = match &a.certs {
        Some(dir) => Some(
            Credentials::from_dir(dir, a.role).map_err(|source| MemCliError::Identity {
                role: a.role,
                dir: dir.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let opts = MemOptions {
        creds,
        secret_file: a.secret_file.clone(),
    };
    let store = connect(&a.spec, &opts)?;
    let open = |name: &str, size: usize| -> Result<MemoryFile, MemCliError> { Ok(store.open(name, size)?) };
    match &a.op {
        MemOp::Incr { name, times, size } => {
            let mut f = open(name, *size)?;
            let mut last = 0;
            for _ in 0..*times {
                let mut g = f.lock()?;
                last = counter(&g)? + 1;
                set_counter(&mut g, last)?;
                g.unlock()?;
            }
            f.close()?;
            let _ = writeln!(out, "{last}");
        }
        MemOp::Get {
            name,
            size,
            timeout_ms,
        } => {
            let mut f = open(name, *size)?;
            let g = f.lock_timeout(timeout_ms.map(Duration::from_millis))?;
            let v = counter(&g)?;
            g.release()?;
            f.close()?;
            let _ = writeln!(out, "{v}");
        }
        MemOp::Put { name, value, size } => {
            let mut f = open(name, *size)?;
            let mut g = f.lock()?;
            set_counter(&mut g, *value)?;
            g.unlock()?;
            f.close()?;
        }
        MemOp::Hold { name, size } => {
            let mut f = open(name, *size)?;
            let _g = f.lock()?;
            let _ = writeln!(out, "locked");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        MemOp::Open { name, size } => {
            let f = open(name, *size)?;
            let _ = writeln!(out, "open");
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line)? > 0 {
                line.clear();
            }
            f.close()?;
        }
        MemOp::Unlock { name, size } => {
            let mut f = open(name, *size)?;
            let res = f.unlock_unheld();
            f.close()?;
            res?;
            return Err(MemCliError::UnheldUnlockAccepted(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_the_little_endian_u64_at_byte_0() {
        let mut seg = [0u8; 12];
        set_counter(&mut seg, 0x0102).unwrap();
        assert_eq!(seg[..2], [2, 1]);
        assert_eq!(counter(&seg).unwrap(), 0x0102);
        assert!(matches!(counter(&[0; 7]), Err(MemCliError::ShortSegment)));
        assert!(matches!(
            set_counter(&mut [0; 7], 1),
            Err(MemCliError::ShortSegment)
        ));
    }
}
