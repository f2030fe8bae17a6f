//! The master process: starts `workers` worker processes (re-executed binary),
//! restarts any that die, and stops them all on SIGTERM/SIGINT.
//!
//! Workers get a pipe as stdin. The master writes one thing into it: a
//! 32-byte secret from which every worker derives the same TLS ticket keys
//! (as NGINX's workers inherit the master's ticket key), so a client resumes
//! on any worker. Closing the pipe (on shutdown, or because the master died)
//! tells the worker to stop gracefully, so no worker outlives its master.

use crate::worker::stop_signal;
use crate::EdgeError;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A worker that exits faster than this after starting counts as a failed start.
const FAST_FAIL: Duration = Duration::from_secs(2);
/// This many failed starts in a row stop the master.
const MAX_FAST_FAILS: u32 = 5;

/// Runs the master: `make_worker(i)` returns the command that starts worker `i`.
pub fn run_master(
    workers: usize,
    grace: Duration,
    make_worker: impl Fn(usize) -> std::process::Command + Send + Sync + 'static,
) -> Result<(), EdgeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EdgeError::io("building the runtime", e))?;
    rt.block_on(async move {
        let (stopper, stop) = stop_signal(false)?;
        // The master writes to the error log too.
        crate::access_log::reopen_on_sigusr1()?;
        let make = std::sync::Arc::new(make_worker);
        let mut seed = [0u8; crate::tickets::SEED_LEN];
        getrandom::fill(&mut seed)
            .map_err(|e| EdgeError::Setup(format!("no randomness for the ticket seed: {e}")))?;
        let mut slots = Vec::new();
        for i in 0..workers {
            let (make, stop, stopper) = (make.clone(), stop.clone(), stopper.clone());
            slots.push(tokio::spawn(async move {
                let r = slot(i, make, stop, grace, seed).await;
                if r.is_err() {
                    // One slot failing for good stops the whole edge.
                    let _ = stopper.send(true);
                }
                r
            }));
        }
        let mut result = Ok(());
        for s in slots {
            match s.await {
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(EdgeError::Setup(format!("worker slot panicked: {e}"))),
                Ok(Ok(())) => {}
            }
        }
        result
    })
}

fn spawn(i: usize, make: &(impl Fn(usize) -> std::process::Command + ?Sized)) -> Result<Child, EdgeError> {
    let mut cmd = Command::from(make(i));
    cmd.stdin(Stdio::piped()).kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| EdgeError::io(format!("starting worker {i}"), e))?;
    tracing::info!("worker {i} started (pid {})", child.id().unwrap_or(0));
    Ok(child)
}

async fn slot(
    i: usize,
    make: std::sync::Arc<impl Fn(usize) -> std::process::Command + Send + Sync + 'static>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
    seed: [u8; crate::tickets::SEED_LEN],
) -> Result<(), EdgeError> {
    let mut fails = 0;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let started = Instant::now();
        let mut child = spawn(i, make.as_ref())?;
        // `Child::wait` would close stdin; keep it open until we mean to stop the worker.
        let mut pipe = child.stdin.take();
        if let Some(p) = pipe.as_mut() {
            use tokio::io::AsyncWriteExt;
            if let Err(e) = p.write_all(&seed).await {
                tracing::warn!("worker {i}: passing the ticket seed: {e}");
            }
        }
        tokio::select! {
            st = child.wait() => {
                let st = st.map_err(|e| EdgeError::io(format!("waiting for worker {i}"), e))?;
                if *stop.borrow() {
                    return Ok(());
                }
                tracing::warn!("worker {i} exited ({st}); restarting");
                fails = if started.elapsed() < FAST_FAIL { fails + 1 } else { 0 };
                if fails >= MAX_FAST_FAILS {
                    return Err(EdgeError::Setup(format!("worker {i} failed {fails} times in a row right after starting")));
                }
                tokio::time::sleep(Duration::from_millis(100 * fails as u64)).await;
            }
            _ = stop.changed() => {
                drop(pipe);
                match tokio::time::timeout(grace + Duration::from_secs(2), child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!("worker {i} did not stop in time; killing it");
                        let _ = child.kill().await;
                    }
                }
                return Ok(());
            }
        }
    }
}
