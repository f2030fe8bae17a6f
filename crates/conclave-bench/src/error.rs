//! Why a benchmark could not run: one error type for every micro-benchmark
//! of the crate (the load generator keeps its own).

use std::fmt::Display;

/// Why a benchmark could not run. The text reads like the binary's
/// messages: what was being done, then the cause chain.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setup step or a measurement failed; the text names it and its cause.
    #[error("{0}")]
    Failed(String),
    /// I/O on scratch files, sockets or child processes.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A block device.
    #[error(transparent)]
    Bd(#[from] conclave_bd::BdError),
    /// A memory store.
    #[error(transparent)]
    Mem(#[from] conclave_mem::MemError),
}

impl BenchError {
    /// A failure described by `msg`.
    pub(crate) fn msg(msg: impl Into<String>) -> Self {
        BenchError::Failed(msg.into())
    }
}

/// Maps an error to `what: error`, with the error's own text only: for
/// errors whose text already names their cause, which [`Context`] would
/// repeat.
pub(crate) fn failed<E: Display>(what: impl Display) -> impl FnOnce(E) -> BenchError {
    move |e| BenchError::Failed(format!("{what}: {e}"))
}

/// The error and its sources, `: `-separated (as `anyhow`'s `{:#}`).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Adds what was being done to any error.
pub(crate) trait Context<T> {
    /// `what: cause`.
    fn context(self, what: impl Display) -> Result<T, BenchError>;
    /// The cause alone.
    fn plain(self) -> Result<T, BenchError>;
}

impl<T, E: std::error::Error> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, BenchError> {
        self.map_err(|e| BenchError::Failed(format!("{what}: {}", chain(&e))))
    }
    fn plain(self) -> Result<T, BenchError> {
        self.map_err(|e| BenchError::Failed(chain(&e)))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T, BenchError> {
        self.ok_or_else(|| BenchError::Failed(what.to_string()))
    }
    fn plain(self) -> Result<T, BenchError> {
        self.ok_or_else(|| BenchError::msg("missing value"))
    }
}
