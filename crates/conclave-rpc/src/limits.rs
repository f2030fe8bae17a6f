//! The command-line flags of the server loop's connection limits, shared by
//! every server (`conclave fileserver`, `memserver`, `keyserver`): each
//! server's settings type flattens [`ServerLimits`], so a flag, its default
//! and its help are written once, here.

use crate::server::ServerOptions;
use conclave_units::Dur;
use std::time::Duration;

/// Connections served at once unless `--max-connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// TLS handshake deadline unless `--handshake-timeout` says otherwise: a
/// loopback or LAN mTLS handshake takes milliseconds, and a pending
/// connection holds a slot, so the deadline is short.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Unauthenticated connections one source address may hold. Well above an
/// edge's burst of new pooled connections (it opens one per concurrent
/// handshake, ~128 under `ab -c 128`), but a quarter of the default slots,
/// so that one host alone never fills them and never makes the shedding
/// cycle through other peers' handshakes.
pub const DEFAULT_MAX_CONNS_PER_ADDR: usize = 256;
/// Connections one identity (role and tenant) may hold: three quarters of the default
/// slots, so the other identities always find room.
pub const DEFAULT_MAX_CONNS_PER_IDENTITY: usize = 768;
/// Requests one identity may have being served at once. Each connection
/// has at most one request in flight, so this only bites below the
/// connection limit; it bounds the server's work one identity can occupy
/// (waiting lock calls, queued signatures).
pub const DEFAULT_MAX_INFLIGHT_PER_IDENTITY: usize = 512;

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// A handshake deadline of zero would refuse every peer: refused by name.
fn positive_duration(s: &str) -> Result<Dur, String> {
    let d: Dur = s.parse()?;
    if d.0.is_zero() {
        return Err("must be more than 0 (e.g. 3s)".into());
    }
    Ok(d)
}

/// The server loop's limits as flags (docs/protocol.md, "Limits").
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once. When all are taken, the oldest
    /// unauthenticated connection is dropped for a new one; a new connection
    /// is refused only when every slot holds an authenticated client.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one())]
    pub max_connections: usize,
    /// Deadline for the TLS handshake (and for a refused client's first request).
    #[arg(long, default_value_t = Dur(DEFAULT_HANDSHAKE_TIMEOUT), value_parser = positive_duration)]
    pub handshake_timeout: Dur,
    /// Unauthenticated TCP connections one source address may hold; a new one sheds that address's oldest.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS_PER_ADDR, value_parser = at_least_one())]
    pub max_conns_per_addr: usize,
    /// Connections one identity (certificate role and tenant) may hold; more get EMFILE.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS_PER_IDENTITY, value_parser = at_least_one())]
    pub max_conns_per_identity: usize,
    /// Requests one identity (role and tenant) may have in flight; more get EAGAIN.
    #[arg(long, default_value_t = DEFAULT_MAX_INFLIGHT_PER_IDENTITY, value_parser = at_least_one())]
    pub max_inflight_per_identity: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Dur(DEFAULT_HANDSHAKE_TIMEOUT),
            max_conns_per_addr: DEFAULT_MAX_CONNS_PER_ADDR,
            max_conns_per_identity: DEFAULT_MAX_CONNS_PER_IDENTITY,
            max_inflight_per_identity: DEFAULT_MAX_INFLIGHT_PER_IDENTITY,
        }
    }
}

impl ServerLimits {
    /// The flags that parse back to `self`; those at their defaults are left out.
    pub fn to_args(&self) -> Vec<String> {
        let d = ServerLimits::default();
        let mut argv = Vec::new();
        let mut flag = |name: &str, differs: bool, value: String| {
            if differs {
                argv.push(format!("--{name}"));
                argv.push(value);
            }
        };
        flag(
            "max-connections",
            self.max_connections != d.max_connections,
            self.max_connections.to_string(),
        );
        flag(
            "handshake-timeout",
            self.handshake_timeout != d.handshake_timeout,
            self.handshake_timeout.to_string(),
        );
        flag(
            "max-conns-per-addr",
            self.max_conns_per_addr != d.max_conns_per_addr,
            self.max_conns_per_addr.to_string(),
        );
        flag(
            "max-conns-per-identity",
            self.max_conns_per_identity != d.max_conns_per_identity,
            self.max_conns_per_identity.to_string(),
        );
        flag(
            "max-inflight-per-identity",
            self.max_inflight_per_identity != d.max_inflight_per_identity,
            self.max_inflight_per_identity.to_string(),
        );
        argv
    }

    /// `opts` (a service's body limit and idle timeout) with these limits.
    pub fn apply(&self, opts: ServerOptions) -> ServerOptions {
        ServerOptions {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout.0,
            max_conns_per_addr: self.max_conns_per_addr,
            max_conns_per_identity: self.max_conns_per_identity,
            max_inflight_per_identity: self.max_inflight_per_identity,
            ..opts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        limits: ServerLimits,
    }

    fn parse(argv: &[String]) -> Result<ServerLimits, clap::Error> {
        Cli::try_parse_from(std::iter::once("x".to_string()).chain(argv.iter().cloned())).map(|c| c.limits)
    }

    #[test]
    fn limits_round_trip_and_defaults_match_server_options() {
        let d = ServerLimits::default();
        assert_eq!(parse(&[]).unwrap(), d);
        assert!(d.to_args().is_empty());
        let o = d.apply(ServerOptions {
            max_connections: 1,
            ..ServerOptions::default()
        });
        let def = ServerOptions::default();
        assert_eq!(o.max_connections, def.max_connections);
        assert_eq!(o.handshake_timeout, def.handshake_timeout);
        assert_eq!(o.max_conns_per_addr, def.max_conns_per_addr);
        let s = ServerLimits {
            max_connections: 64,
            handshake_timeout: Dur(Duration::from_millis(1500)),
            max_conns_per_addr: 8,
            max_conns_per_identity: 2,
            max_inflight_per_identity: 1,
        };
        assert_eq!(parse(&s.to_args()).unwrap(), s);
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let e = parse(&["--max-connections".into(), "0".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-connections"), "{e}");
        let e = parse(&["--handshake-timeout".into(), "0s".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--handshake-timeout") && e.contains("more than 0"),
            "{e}"
        );
    }
}
