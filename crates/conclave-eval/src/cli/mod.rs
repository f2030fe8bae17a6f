//! The `conclave eval` and `conclave up` subcommands: their arguments and
//! what they do, so the binary only parses and dispatches.

pub mod eval;
pub mod up;

use crate::EvalError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Prints one line of output; a closed stdout (`| head`) ends the output
/// quietly instead of panicking.
fn print_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The runtime that hosts the signal handlers (and, for `eval`, nothing else).
fn runtime() -> Result<tokio::runtime::Runtime, EvalError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(EvalError::io("tokio runtime"))
}

/// Sets `flag` on SIGINT, SIGTERM or SIGHUP (handlers live as long as `rt`),
/// so a run stops its processes instead of leaving them behind.
pub fn stop_on_signals(rt: &tokio::runtime::Runtime, flag: Arc<AtomicBool>) -> Result<(), EvalError> {
    use tokio::signal::unix::{signal, SignalKind};
    let _enter = rt.enter();
    let handler = |kind| signal(kind).map_err(EvalError::io("signal handler"));
    let mut int = handler(SignalKind::interrupt())?;
    let mut term = handler(SignalKind::terminate())?;
    let mut hup = handler(SignalKind::hangup())?;
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
