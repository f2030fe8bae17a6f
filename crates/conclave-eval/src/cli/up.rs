//! `conclave up deploy.toml`: create what a deployment lacks, start its
//! processes in dependency order, say where to connect, and stop them all
//! together on Ctrl-C / SIGTERM or as soon as one dies.

use super::{print_line, runtime, stop_on_signals};
use crate::deploy::Deployment;
use crate::layout::SiteKeySource;
use crate::plan;
use crate::supervisor::Supervisor;
use crate::EvalError;
use conclave_rpc::pki::CertsLayout;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The deployment file (see docs/eval.md).
    pub deploy: PathBuf,
    /// Run each process under its own uid (`base_uid` + i of the file),
    /// its directory given to it; needs root. Same as `users = true`.
    #[arg(long)]
    pub users: bool,
}

/// Runs the deployment until a signal or a death; `bin` is the `conclave`
/// binary every conclave process runs.
pub fn run(a: Args, bin: &Path) -> Result<(), EvalError> {
    let mut d = Deployment::load(&a.deploy)?;
    if a.users {
        d.users = true;
        d.validate()
            .map_err(|e| EvalError::Config(format!("{}: {e}", a.deploy.display())))?;
    }
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(&rt, stop.clone())?;
    let plan = plan::prepare(&d, bin, &SiteKeySource::Move)?;
    for p in &plan.created {
        print_line(format!("created {}", p.display()));
    }
    let mut sup = Supervisor::new();
    let stopped = || stop.load(Ordering::SeqCst);
    for spec in &plan.processes {
        sup.start(spec, &stopped).map_err(|e| EvalError::Start {
            process: spec.name.clone(),
            source: Box::new(e),
        })?;
        let pid = sup.pids().last().copied().unwrap_or(0);
        let user = spec
            .user
            .map(|u| format!(" as uid {} gid {}", u.uid, u.gid))
            .unwrap_or_default();
        print_line(format!(
            "started {} (pid {pid}){user}, log {}",
            spec.name,
            spec.log.display()
        ));
    }
    print_line(format!("conclave {:?} is up:", d.name));
    for url in d.urls() {
        print_line(format!(
            "  {url}   e.g. curl --cacert {} {url}1k.txt",
            CertsLayout::new(&d.certs).ca_cert().display()
        ));
    }
    let ca_key = CertsLayout::new(&d.certs).ca_dir().join(CertsLayout::CA_KEY);
    if ca_key.exists() {
        print_line(format!(
            "note: the CA key {} can issue any identity; no process reads it: move it offline \
             (docs/security.md)",
            ca_key.display()
        ));
    }
    print_line("Ctrl-C stops every process.");
    loop {
        if stopped() {
            print_line("stopping: signal received");
            sup.stop_all();
            print_line("stopped");
            return Ok(());
        }
        if let Some(death) = sup.poll_deaths().into_iter().next() {
            sup.stop_all();
            return Err(EvalError::Process(format!(
                "{death}; stopped the rest of the deployment"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
