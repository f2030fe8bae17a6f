//! The results of a run as data: what a matrix cell is, how each load ended,
//! and the rows of `cells.csv` / `cells.json`. The matrix fills them, the
//! report reads them; neither imports the other.

use crate::cpu::CpuPerRequest;
use crate::machine::Machine;
use crate::preset::Preset;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// How tenants share servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tenancy {
    /// One tenant.
    Single,
    /// N complete deployments, edge of tenant i on base port + i.
    ShareNothing,
    /// One edge with N sites.
    ShareEdge,
}

impl fmt::Display for Tenancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tenancy::Single => "single",
            Tenancy::ShareNothing => "share-nothing",
            Tenancy::ShareEdge => "share-edge",
        })
    }
}

/// One cell of the matrix: a configuration under one sharing mode, loaded
/// once per file. Its deployments are started once for all its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The configuration.
    pub preset: &'static Preset,
    /// Edge worker processes.
    pub workers: u32,
    /// How the tenants share servers.
    pub tenancy: Tenancy,
    /// Tenants in the cell (1 for single).
    pub tenants: u32,
    /// Files loaded, one load each.
    pub files: Vec<String>,
}

impl Cell {
    /// The cell's name, `PRESET-wW-TENANCYN`: its directory and the stem of
    /// its deployments' names.
    pub fn name(&self) -> String {
        format!(
            "{}-w{}-{}{}",
            self.preset.name, self.workers, self.tenancy, self.tenants
        )
    }
}

/// Which tenant a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tenant {
    /// `-`: the cell as a whole (single tenant, or a failure before the
    /// per-tenant loads).
    Whole,
    /// One tenant of a multi-tenant cell, by index.
    Index(u32),
    /// `total`: the sum over the tenants of a multi-tenant cell.
    Total,
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tenant::Whole => f.write_str("-"),
            Tenant::Index(i) => write!(f, "{i}"),
            Tenant::Total => f.write_str("total"),
        }
    }
}

impl FromStr for Tenant {
    type Err = String;
    fn from_str(s: &str) -> Result<Tenant, String> {
        match s {
            "-" => Ok(Tenant::Whole),
            "total" => Ok(Tenant::Total),
            _ => s
                .parse()
                .map(Tenant::Index)
                .map_err(|_| format!("tenant {s:?}: expected -, total or an index")),
        }
    }
}

/// How a load (or a cell) ended. Written as one line of text: `ok`,
/// `interrupted`, `failures: …` or `error: …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every request answered 2xx.
    Ok,
    /// Ctrl-C stopped the load.
    Interrupted,
    /// The load ran but some requests failed or were not 2xx.
    Failures {
        /// Failed requests.
        failed: u64,
        /// Responses outside 2xx.
        non_2xx: u64,
        /// The first error seen, when known.
        first: Option<String>,
    },
    /// The cell could not be measured (start, warm-up, load, or a process died).
    Error(String),
}

impl Status {
    /// Whether the load ran clean.
    pub fn is_ok(&self) -> bool {
        *self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => f.write_str("ok"),
            Status::Interrupted => f.write_str("interrupted"),
            Status::Failures {
                failed,
                non_2xx,
                first,
            } => {
                write!(f, "failures: {failed} failed, {non_2xx} non-2xx")?;
                match first {
                    Some(e) => write!(f, " (first: {e})"),
                    None => Ok(()),
                }
            }
            Status::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        let bad = || format!("status {s:?}: expected ok, interrupted, failures: … or error: …");
        match s {
            "ok" => return Ok(Status::Ok),
            "interrupted" => return Ok(Status::Interrupted),
            _ => {}
        }
        if let Some(e) = s.strip_prefix("error: ") {
            return Ok(Status::Error(e.to_string()));
        }
        let rest = s.strip_prefix("failures: ").ok_or_else(bad)?;
        let (failed, rest) = rest.split_once(" failed, ").ok_or_else(bad)?;
        let (non_2xx, rest) = rest.split_once(" non-2xx").ok_or_else(bad)?;
        let first = match rest {
            "" => None,
            _ => Some(
                rest.strip_prefix(" (first: ")
                    .and_then(|e| e.strip_suffix(')'))
                    .ok_or_else(bad)?
                    .to_string(),
            ),
        };
        Ok(Status::Failures {
            failed: failed.parse().map_err(|_| bad())?,
            non_2xx: non_2xx.parse().map_err(|_| bad())?,
            first,
        })
    }
}

/// Serialises a value as its one-line text form (Display / FromStr), so
/// cells.json keeps plain strings.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_text!(Tenant);
serde_as_text!(Status);

/// One measured load (a row of cells.csv).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Preset name.
    pub preset: String,
    /// Edge program.
    pub edge: String,
    /// Storage (host or nextfs-<device>).
    pub storage: String,
    /// Shared state.
    pub shared: String,
    /// Key.
    pub key: String,
    /// Edge worker processes.
    pub workers: u32,
    /// single / share-nothing / share-edge.
    pub tenancy: Tenancy,
    /// Tenants in the cell.
    pub tenants: u32,
    /// Tenant index, `-` for the whole cell, or `total` for the sum of a multi-tenant cell.
    pub tenant: Tenant,
    /// File requested.
    pub file: String,
    /// Its size.
    pub file_bytes: u64,
    /// -n.
    pub requests: u64,
    /// -c.
    pub concurrency: usize,
    /// -k.
    pub keepalive: bool,
    /// TLS version offered.
    pub tls: String,
    /// Whether resumption was allowed.
    pub resumption: bool,
    /// `ok`, or why the cell failed.
    pub status: Status,
    /// Requests finished.
    pub complete: u64,
    /// Failed requests.
    pub failed: u64,
    /// Failures: connect.
    pub failed_connect: u64,
    /// Failures: receive.
    pub failed_receive: u64,
    /// Failures: length.
    pub failed_length: u64,
    /// Failures: exceptions.
    pub failed_exceptions: u64,
    /// Responses outside 2xx.
    pub non_2xx: u64,
    /// Throughput.
    pub requests_per_sec: f64,
    /// ab's mean time per request (concurrency / throughput), ms.
    pub latency_mean_ms: f64,
    /// Median request time, ms.
    pub latency_p50_ms: f64,
    /// 90th percentile, ms.
    pub latency_p90_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// 99.9th percentile, ms.
    pub latency_p999_ms: f64,
    /// Wall time of the load, s.
    pub time_s: f64,
    /// Full TLS handshakes.
    pub handshakes_full: u64,
    /// Resumed TLS handshakes.
    pub handshakes_resumed: u64,
    /// Jain's fairness index over tenants (total rows of multi-tenant cells).
    pub fairness: Option<f64>,
    /// CPU µs per completed request by process class, over the whole cell
    /// (single-tenant rows and the total rows of multi-tenant cells; the
    /// per-tenant rows of a cell whose loads ran at once leave it empty).
    #[serde(flatten)]
    pub cpu: CpuPerRequest,
    /// CPU model.
    pub cpu_model: String,
    /// Cores.
    pub cores: usize,
    /// Kernel.
    pub kernel: String,
    /// ms within which 0..=100 % of requests were served (JSON only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percent_served_ms: Vec<f64>,
}

/// A preset that could not run, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unavailable {
    /// Preset.
    pub preset: String,
    /// What is missing.
    pub missing: String,
}

/// Everything a run produced (cells.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// Run id.
    pub run_id: String,
    /// The command line that made it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Presets asked for.
    pub presets: Vec<String>,
    /// Presets that could not run.
    pub unavailable: Vec<Unavailable>,
    /// Stock nginx status line: installed version, or why it is missing.
    pub nginx: String,
    /// What this machine or build lacks for some presets (FUSE, the keyless
    /// OpenSSL module), each naming the presets not run: the report's first lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Which origin served the content.
    pub origin: String,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// Every load.
    pub cells: Vec<CellResult>,
}

/// Jain's fairness index: (Σx)² / (n·Σx²); 1 = perfectly even.
pub fn jain(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if n == 0.0 || sq == 0.0 {
        0.0
    } else {
        sum * sum / (n * sq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index_is_one_when_even_and_one_over_n_when_one_takes_all() {
        assert!((jain(&[100.0, 100.0, 100.0]) - 1.0).abs() < 1e-9);
        assert!((jain(&[300.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(jain(&[]), 0.0);
    }

    #[test]
    fn status_and_tenant_are_written_as_before_and_read_back() {
        for s in [
            "ok",
            "interrupted",
            "failures: 3 failed, 0 non-2xx",
            "failures: 1 failed, 2 non-2xx (first: connect: refused (os error 111))",
            "error: warm-up: https://127.0.0.1:8440/1k.txt: served 3 bytes, the file has 1024",
        ] {
            let st: Status = s.parse().unwrap();
            assert_eq!(st.to_string(), s);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        assert!("fine".parse::<Status>().is_err());
        for t in ["-", "0", "5", "total"] {
            assert_eq!(t.parse::<Tenant>().unwrap().to_string(), t);
        }
        assert_eq!(
            serde_json::to_string(&Tenancy::ShareNothing).unwrap(),
            "\"share-nothing\""
        );
    }
}
