//! Where a service listens: `tcp://HOST:PORT` or `unix:///absolute/path`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A service address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP, as `host:port` (host may be a name, an IPv4 or a bracketed IPv6).
    Tcp(String),
    /// A UNIX stream socket at this path.
    Unix(PathBuf),
}

/// A string that is not an endpoint.
#[derive(Debug, thiserror::Error)]
#[error("invalid endpoint {input:?}: {reason} (expected tcp://HOST:PORT or unix:///path)")]
pub struct EndpointError {
    input: String,
    reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| EndpointError {
            input: s.to_string(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("missing :PORT"))?;
            if host.is_empty() {
                return Err(err("missing host"));
            }
            port.parse::<u16>()
                .map_err(|_| err("port is not a number 0-65535"))?;
            Ok(Endpoint::Tcp(rest.to_string()))
        } else if let Some(rest) = s.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(err("unix path must be absolute (unix:///path)"));
            }
            Ok(Endpoint::Unix(PathBuf::from(rest)))
        } else {
            Err(err("unknown scheme"))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_round_trips() {
        let e: Endpoint = "tcp://127.0.0.1:9000".parse().unwrap();
        assert_eq!(e, Endpoint::Tcp("127.0.0.1:9000".into()));
        assert_eq!(e.to_string(), "tcp://127.0.0.1:9000");
        let e: Endpoint = "unix:///tmp/x.sock".parse().unwrap();
        assert_eq!(e, Endpoint::Unix("/tmp/x.sock".into()));
        assert_eq!(e.to_string(), "unix:///tmp/x.sock");
        let e: Endpoint = "tcp://[::1]:80".parse().unwrap();
        assert_eq!(e, Endpoint::Tcp("[::1]:80".into()));
    }

    #[test]
    fn rejects_malformed_endpoints() {
        for bad in [
            "http://x:1",
            "tcp://x",
            "tcp://:80",
            "tcp://h:99999",
            "unix://rel/path",
            "",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
