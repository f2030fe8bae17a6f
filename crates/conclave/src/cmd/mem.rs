//! `conclave mem`: a client of memory files for scripts and the
//! multi-process tests: increment a counter under the lock, read, write,
//! hold a lock, keep a memory file open.

use anyhow::{bail, Context};
use conclave_mem::{connect, MemError, MemOptions, MemSpec, MemoryFile};
use conclave_rpc::Credentials;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The memory store: local, smdish+unix:///sock, smdish+tcp://h:p,
    /// smuf+unix:///sock?dir=HOSTDIR, smc:///dir.
    #[arg(long)]
    pub spec: MemSpec,
    /// Directory written by `conclave certs` (for smdish and smuf).
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Identity to present: edge or client.
    #[arg(long, default_value = "edge")]
    pub role: conclave_rpc::Role,
    /// The conclave's secret file (for smc).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub op: Op,
}

/// One operation on one memory file. The counter is the little-endian u64
/// at byte 0 of the segment.
#[derive(clap::Subcommand, Debug)]
pub enum Op {
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

fn counter(seg: &[u8]) -> anyhow::Result<u64> {
    let b: [u8; 8] = seg
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .context("the segment is shorter than the 8-byte counter")?;
    Ok(u64::from_le_bytes(b))
}

fn set_counter(seg: &mut [u8], v: u64) -> anyhow::Result<()> {
    let Some(dst) = seg.get_mut(..8) else {
        bail!("the segment is shorter than the 8-byte counter")
    };
    dst.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Runs one operation.
pub fn run(a: Args) -> anyhow::Result<()> {
    if !conclave_mem::server::CLIENT_ROLES.contains(&a.role) {
        bail!("--role must be edge or client, not {:?}", a.role);
    }
    let creds = match &a.certs {
        Some(dir) => Some(
            Credentials::from_dir(dir, a.role)
                .with_context(|| format!("loading the {} identity from {}", a.role, dir.display()))?,
        ),
        None => None,
    };
    let opts = MemOptions {
        creds,
        secret_file: a.secret_file.clone(),
    };
    let store = connect(&a.spec, &opts)?;
    let open = |name: &str, size: usize| -> anyhow::Result<MemoryFile> { Ok(store.open(name, size)?) };
    match a.op {
        Op::Incr { name, times, size } => {
            let mut f = open(&name, size)?;
            let mut last = 0;
            for _ in 0..times {
                let mut g = f.lock()?;
                last = counter(&g)? + 1;
                set_counter(&mut g, last)?;
                g.unlock()?;
            }
            f.close()?;
            super::print_line(last);
        }
        Op::Get {
            name,
            size,
            timeout_ms,
        } => {
            let mut f = open(&name, size)?;
            let g = f.lock_timeout(timeout_ms.map(Duration::from_millis))?;
            let v = counter(&g)?;
            g.release()?;
            f.close()?;
            super::print_line(v);
        }
        Op::Put { name, value, size } => {
            let mut f = open(&name, size)?;
            let mut g = f.lock()?;
            set_counter(&mut g, value)?;
            g.unlock()?;
            f.close()?;
        }
        Op::Hold { name, size } => {
            let mut f = open(&name, size)?;
            let _g = f.lock()?;
            super::print_line("locked");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Op::Open { name, size } => {
            let f = open(&name, size)?;
            super::print_line("open");
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line)? > 0 {
                line.clear();
            }
            f.close()?;
        }
        Op::Unlock { name, size } => {
            let mut f = open(&name, size)?;
            let res = f.unlock_unheld();
            f.close()?;
            match res {
                Err(e @ MemError::NotHolder(_)) => return Err(e.into()),
                Err(e) => return Err(e.into()),
                Ok(()) => bail!("the unlock of {name:?} without holding the lock was accepted"),
            }
        }
    }
    Ok(())
}
