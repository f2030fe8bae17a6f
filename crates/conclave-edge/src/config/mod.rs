//! The edge configuration file (`edge.toml`): its schema (the file as written,
//! readable and writable), its units, and its validation into typed settings.
//!
//! The schema is documented in `docs/edge.md`; keep the two in step.

pub(crate) mod lines;
pub mod schema;
pub mod units;
pub mod validated;
mod validation;

pub use schema::TicketSource;
pub use schema::{AccessLogFormat, AdminSettings, KeylessHandshake, LogLevel};
pub use schema::{
    CacheSettings, CertificateSettings, CompressionSettings, EdgeSettings, Mode, ServerSettings,
    SharedSettings, StorageSettings, TlsSettings, UpstreamServerSettings, UpstreamSettings, WafSettings,
};
pub use units::{parse_duration, parse_size, ByteSize, Dur};
pub use validated::FleetTicketsConfig;
pub use validated::{AdminConfig, ErrorLog};
pub use validated::{
    CacheConfig, CertConfig, CompressionConfig, EdgeConfig, KeyConfig, OriginTlsConfig, ProxyConfig,
    ReqLimit, ServerConfig, SharedConfig, SiteConfig, StorageConfig, TlsConfig, UpstreamConfig,
    UpstreamServerConfig,
};

use lines::Lines;
use std::path::{Path, PathBuf};

/// A configuration error, with the line it was found on when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid for the schema.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl EdgeConfig {
    /// Reads and validates a config file; errors name the line.
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<EdgeConfig, ConfigError> {
        let lines = Lines::new(text);
        let raw: EdgeSettings = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            line: lines.line_of(e.span()),
            message: e.message().to_string(),
        })?;
        validation::validate(&raw, path, &lines)
    }

    /// Validates settings built as a value, as if read from `path` (relative
    /// paths are relative to its directory); errors name no line.
    pub fn from_settings(settings: &EdgeSettings, path: &Path) -> Result<EdgeConfig, ConfigError> {
        validation::validate(settings, path, &Lines::none())
    }
}

#[cfg(test)]
mod tests;
