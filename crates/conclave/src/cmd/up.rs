//! `conclave up deploy.toml`: create what a deployment lacks, start its
//! processes in dependency order, say where to connect, and stop them all
//! together on Ctrl-C / SIGTERM or as soon as one dies.

use anyhow::{bail, Context};
use conclave_eval::deploy::Deployment;
use conclave_eval::plan;
use conclave_eval::supervisor::Supervisor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The deployment file (see docs/eval.md).
    pub deploy: PathBuf,
}

/// Sets `flag` on SIGINT, SIGTERM or SIGHUP (handlers live as long as `rt`).
pub fn stop_on_signals(rt: &tokio::runtime::Runtime, flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _enter = rt.enter();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
                _ = hup.recv() => {},
            }
            flag.store(true, Ordering::SeqCst);
        }
    });
    Ok(())
}

/// Runs the deployment until a signal or a death.
pub fn run(a: Args) -> anyhow::Result<()> {
    let d = Deployment::load(&a.deploy)?;
    let bin = std::env::current_exe().context("locating the conclave binary")?;
    let rt = super::runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(&rt, stop.clone())?;
    let plan = plan::prepare(&d, &bin)?;
    for p in &plan.created {
        super::print_line(format!("created {}", p.display()));
    }
    let mut sup = Supervisor::new();
    let stopped = || stop.load(Ordering::SeqCst);
    for spec in &plan.processes {
        sup.start(spec, &stopped)
            .with_context(|| format!("starting {}", spec.name))?;
        let pid = sup.pids().last().copied().unwrap_or(0);
        super::print_line(format!(
            "started {} (pid {pid}), log {}",
            spec.name,
            spec.log.display()
        ));
    }
    super::print_line(format!("conclave {:?} is up:", d.name));
    for url in d.urls() {
        super::print_line(format!(
            "  {url}   e.g. curl --cacert {} {url}1k.txt",
            d.certs.join("root.crt").display()
        ));
    }
    super::print_line("Ctrl-C stops every process.");
    loop {
        if stopped() {
            super::print_line("stopping: signal received");
            sup.stop_all();
            super::print_line("stopped");
            return Ok(());
        }
        if let Some(death) = sup.poll_deaths().into_iter().next() {
            sup.stop_all();
            bail!("{death}; stopped the rest of the deployment");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
