//! Errors from loading a rule set: every one names the file, the line and the directive.

use std::path::PathBuf;

/// Why a rule set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WafError {
    /// A rule file (or an included one) could not be read.
    #[error("{path}: cannot read rule file: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The rule file is malformed (bad quoting, missing id, duplicated id, ...).
    #[error("{file}:{line}: {directive}: {msg}")]
    Syntax {
        /// File holding the directive.
        file: PathBuf,
        /// Line where the directive starts (1-based).
        line: usize,
        /// The directive's name.
        directive: String,
        /// What is wrong.
        msg: String,
    },
    /// The directive is valid ModSecurity but outside the subset conclave implements
    /// (use `LoadOptions::ignore_unsupported` to skip and list such rules instead).
    #[error("{file}:{line}: {directive}: unsupported: {what}")]
    Unsupported {
        /// File holding the directive.
        file: PathBuf,
        /// Line where the directive starts (1-based).
        line: usize,
        /// The directive's name.
        directive: String,
        /// The construct that is not supported.
        what: String,
    },
    /// A matcher could not be built (for example an automaton too large).
    #[error("building the matchers: {0}")]
    Build(String),
}
