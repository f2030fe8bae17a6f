//! The evaluation: deployments (which processes a conclave runs, with which
//! flags and ports), starting and stopping them as one group, the
//! configuration matrix of the seed's NGINX evaluation, and the reports
//! (CSV, JSON, Markdown, PNG/SVG plots, HTML).
//!
//! Every server is driven as a process of the `conclave` binary (or Debian's
//! `nginx`); this crate builds their settings values (each server crate's
//! own type) and writes them as command lines and config files, never
//! speaking their protocols. `cli` holds `conclave eval` and `conclave up`.
//! Load comes from `conclave_bench::ab`.
#![forbid(unsafe_code)]

pub mod availability;
pub mod cli;
pub mod cpu;
pub mod deploy;
pub mod k8s;
pub mod layout;
pub mod machine;
pub mod matrix;
pub mod nginx;
pub mod nginx_keyless;
pub mod paper;
pub mod plan;
pub mod preset;
pub mod report;
pub mod results;
pub mod supervisor;

/// The load generator, re-exported so the binary's `eval` feature needs no other.
pub use conclave_bench::ab;

use std::path::PathBuf;

/// Why a deployment or an evaluation step failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A deployment file or option is invalid.
    #[error("{0}")]
    Config(String),
    /// A process could not start, did not answer, or died.
    #[error("{0}")]
    Process(String),
    /// A load could not run.
    #[error("load: {0}")]
    Load(#[from] conclave_bench::ab::AbError),
    /// Certificates could not be generated.
    #[error("certificates: {0}")]
    Pki(#[from] conclave_rpc::pki::PkiError),
    /// A plot could not be drawn.
    #[error("plot {0}")]
    Plot(String),
    /// A process of a deployment could not start.
    #[error("starting {process}")]
    Start {
        /// Its name.
        process: String,
        /// Why.
        #[source]
        source: Box<EvalError>,
    },
    /// The run was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl EvalError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { path, source }
    }
}
