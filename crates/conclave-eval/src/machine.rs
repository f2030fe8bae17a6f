//! The machine a run measured: CPU, cores, kernel and tool versions, so
//! numbers are never read without the box that made them.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// Facts about the machine and the tools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// conclave's version.
    pub conclave: String,
    /// nginx's version, if installed.
    pub nginx: Option<String>,
    /// OpenSSL CLI version, if installed.
    pub openssl: Option<String>,
    /// ApacheBench version, if installed.
    pub ab: Option<String>,
}

fn first_line_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Machine {
    /// Probes this machine.
    pub fn probe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease"),
            hostname: read("/proc/sys/kernel/hostname"),
            conclave: env!("CARGO_PKG_VERSION").to_string(),
            nginx: crate::nginx::binary().and_then(|b| crate::nginx::version(Path::new(&b))),
            openssl: first_line_of("openssl", &["version"]),
            ab: first_line_of("ab", &["-V"]),
        }
    }

    /// One line for the top of a report.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} cores), Linux {}, conclave {}, {}",
            self.cpu_model,
            self.cores,
            self.kernel,
            self.conclave,
            self.nginx.as_deref().unwrap_or("nginx not installed")
        )
    }
}
