//! Which memory store to use, as a URL-like string:
//! `local`, `smdish+unix:///sock`, `smdish+tcp://host:port`,
//! `smuf+unix:///sock?dir=/host/dir`, `smuf+tcp://host:port?dir=/host/dir`,
//! `smc:///host/dir` (optionally `?secret=/path/to/secret`).

use crate::MemError;
use conclave_rpc::Endpoint;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A memory store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemSpec {
    /// In this process only (a mutex).
    Local,
    /// An smdish server.
    Smdish {
        /// Where it listens.
        endpoint: Endpoint,
    },
    /// An smuf server and the host directory of its segment files.
    Smuf {
        /// Where it listens.
        endpoint: Endpoint,
        /// The host directory shared with the server.
        dir: PathBuf,
    },
    /// Server-less smc over a host directory.
    Smc {
        /// The host directory.
        dir: PathBuf,
        /// The conclave's secret file, if named in the spec.
        secret: Option<PathBuf>,
    },
}

impl MemSpec {
    /// The kind's name: `local`, `smdish`, `smuf` or `smc`.
    pub fn kind(&self) -> &'static str {
        match self {
            MemSpec::Local => "local",
            MemSpec::Smdish { .. } => "smdish",
            MemSpec::Smuf { .. } => "smuf",
            MemSpec::Smc { .. } => "smc",
        }
    }
}

fn split_query(s: &str) -> (&str, Vec<(&str, &str)>) {
    match s.split_once('?') {
        None => (s, Vec::new()),
        Some((base, q)) => (
            base,
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
        ),
    }
}

impl FromStr for MemSpec {
    type Err = MemError;

    fn from_str(s: &str) -> Result<Self, MemError> {
        let err = |reason: &str| MemError::Spec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (base, query) = split_query(s);
        let mut dir = None;
        let mut secret = None;
        for (k, v) in query {
            match k {
                "dir" if !v.is_empty() => dir = Some(PathBuf::from(v)),
                "secret" if !v.is_empty() => secret = Some(PathBuf::from(v)),
                _ => return Err(err(&format!("unknown or empty query parameter {k:?}"))),
            }
        }
        let endpoint = |rest: &str| rest.parse::<Endpoint>().map_err(|e| err(&e.to_string()));
        if base == "local" {
            if dir.is_some() || secret.is_some() {
                return Err(err("local takes no parameters"));
            }
            Ok(MemSpec::Local)
        } else if let Some(rest) = base.strip_prefix("smdish+") {
            if dir.is_some() || secret.is_some() {
                return Err(err("smdish takes no parameters"));
            }
            Ok(MemSpec::Smdish {
                endpoint: endpoint(rest)?,
            })
        } else if let Some(rest) = base.strip_prefix("smuf+") {
            let dir = dir.ok_or_else(|| err("smuf needs ?dir=HOSTDIR (the server's --dir)"))?;
            if secret.is_some() {
                return Err(err("smuf takes no secret: the server holds the keys"));
            }
            Ok(MemSpec::Smuf {
                endpoint: endpoint(rest)?,
                dir,
            })
        } else if let Some(rest) = base.strip_prefix("smc://") {
            if !rest.starts_with('/') {
                return Err(err("smc needs an absolute directory (smc:///dir)"));
            }
            if dir.is_some() {
                return Err(err("smc takes its directory in the path, not ?dir="));
            }
            Ok(MemSpec::Smc {
                dir: PathBuf::from(rest),
                secret,
            })
        } else {
            Err(err("expected local, smdish+unix://, smdish+tcp://, smuf+unix://...?dir=, smuf+tcp://...?dir= or smc:///dir"))
        }
    }
}

impl fmt::Display for MemSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemSpec::Local => write!(f, "local"),
            MemSpec::Smdish { endpoint } => write!(f, "smdish+{endpoint}"),
            MemSpec::Smuf { endpoint, dir } => write!(f, "smuf+{endpoint}?dir={}", dir.display()),
            MemSpec::Smc { dir, secret: None } => write!(f, "smc://{}", dir.display()),
            MemSpec::Smc { dir, secret: Some(s) } => {
                write!(f, "smc://{}?secret={}", dir.display(), s.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_round_trips() {
        for s in [
            "local",
            "smdish+unix:///tmp/m.sock",
            "smdish+tcp://127.0.0.1:7000",
            "smuf+unix:///tmp/m.sock?dir=/tmp/mf",
            "smuf+tcp://127.0.0.1:7000?dir=/tmp/mf",
            "smc:///tmp/mf",
            "smc:///tmp/mf?secret=/etc/conclave/secret",
        ] {
            let spec: MemSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "smuf+unix:///s?dir=/d".parse::<MemSpec>().unwrap(),
            MemSpec::Smuf {
                endpoint: Endpoint::Unix("/s".into()),
                dir: "/d".into()
            }
        );
    }

    #[test]
    fn rejects_malformed_specs() {
        for s in [
            "",
            "smdish",
            "smdish+http://x:1",
            "smuf+unix:///s",
            "smc://rel",
            "smc:///d?dir=/x",
            "local?x=1",
            "smdish+unix:///s?secret=/x",
        ] {
            assert!(s.parse::<MemSpec>().is_err(), "{s}");
        }
    }
}
