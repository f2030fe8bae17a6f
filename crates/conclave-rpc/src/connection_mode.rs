//! How a server runs its authenticated connections: as tasks on the tokio
//! runtime, or each on an OS thread of its own.

use std::fmt;

/// Where an admitted connection's frame loop runs. Accept, admission, the
/// TLS handshake and `Service::open` always run on the runtime; this picks
/// what happens after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ConnectionMode {
    /// One task per connection on the runtime: the right choice for many
    /// connections, or short-lived ones. Each round trip pays the reactor's
    /// wake-up, task poll and the read that finds no data before parking.
    #[default]
    Reactor,
    /// One OS thread per connection, blocking on its socket (the TLS session
    /// moved over from the handshake): no reactor on the request path. For
    /// few, long-lived, busy connections (the key server's clients): a small
    /// round trip on one core is about 2 µs shorter (docs/protocol.md,
    /// "Connection modes").
    Threads,
}

impl ConnectionMode {
    /// The name used by `--connections` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMode::Reactor => "reactor",
            ConnectionMode::Threads => "threads",
        }
    }
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_parse_back() {
        for m in ConnectionMode::value_variants() {
            assert_eq!(ConnectionMode::from_str(m.as_str(), false), Ok(*m));
        }
        assert_eq!(ConnectionMode::default(), ConnectionMode::Reactor);
        assert!(ConnectionMode::from_str("fibers", false).is_err());
    }
}
