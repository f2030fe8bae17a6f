//! The named configurations of the evaluation (ARCHITECTURE.md §Evaluation)
//! and whether this build and machine can run each. A preset whose server
//! has not landed is listed as "not available yet: <what is missing>",
//! never silently dropped.

use crate::deploy::{Device, EdgeKind, KeyKind, SharedKind, StorageKind};
use crate::nginx;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One configuration of the matrix.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Preset {
    /// Name used in reports and `--preset`.
    pub name: &'static str,
    /// What it is, for the report.
    pub about: &'static str,
    /// Edge program.
    pub edge: EdgeKind,
    /// Storage.
    pub storage: StorageKind,
    /// Block device when storage is nextfs.
    pub device: Option<Device>,
    /// Shared state.
    pub shared: SharedKind,
    /// Key.
    pub key: KeyKind,
}

const fn p(
    name: &'static str,
    about: &'static str,
    edge: EdgeKind,
    storage: StorageKind,
    device: Option<Device>,
    shared: SharedKind,
    key: KeyKind,
) -> Preset {
    Preset {
        name,
        about,
        edge,
        storage,
        device,
        shared,
        key,
    }
}

use EdgeKind::{Conclave as CE, Nginx as NG};
use KeyKind::{Keyserver as KS, Local as KL};
use SharedKind::{Local as SL, Smc, Smdish, Smuf};
use StorageKind::{Host, Nextfs};

/// Every preset, baseline first.
pub const PRESETS: &[Preset] = &[
    p(
        "nginx",
        "stock Debian nginx, the seed's Linux cache config",
        NG,
        Host,
        None,
        SL,
        KL,
    ),
    p(
        "linux",
        "conclave edge, host storage, in-process state, local key",
        CE,
        Host,
        None,
        SL,
        KL,
    ),
    p(
        "linux-keyless",
        "linux + key server (Keyless-SSL analog)",
        CE,
        Host,
        None,
        SL,
        KS,
    ),
    p(
        "fs-std",
        "linux + file server, plain image",
        CE,
        Nextfs,
        Some(Device::Std),
        SL,
        KL,
    ),
    p(
        "fs-crypt",
        "linux + file server, AES-XTS image",
        CE,
        Nextfs,
        Some(Device::Crypt),
        SL,
        KL,
    ),
    p(
        "fs-verity",
        "linux + file server, Merkle-verified image",
        CE,
        Nextfs,
        Some(Device::Verity),
        SL,
        KL,
    ),
    p(
        "fs-vericrypt",
        "linux + file server, encrypted and verified",
        CE,
        Nextfs,
        Some(Device::Vericrypt),
        SL,
        KL,
    ),
    p(
        "mem-smdish",
        "linux + smdish memory server",
        CE,
        Host,
        None,
        Smdish,
        KL,
    ),
    p("mem-smuf", "linux + smuf memory server", CE, Host, None, Smuf, KL),
    p(
        "mem-smc",
        "linux + server-less encrypted shared files",
        CE,
        Host,
        None,
        Smc,
        KL,
    ),
    p(
        "conclave-crypt",
        "file server crypt + smc + key server",
        CE,
        Nextfs,
        Some(Device::Crypt),
        Smc,
        KS,
    ),
    p(
        "conclave-vericrypt",
        "file server vericrypt + smuf + key server",
        CE,
        Nextfs,
        Some(Device::Vericrypt),
        Smuf,
        KS,
    ),
];

/// Looks a preset up by name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// What this binary and machine can run, probed once.
pub struct Availability {
    bin: PathBuf,
    help: HashMap<&'static str, String>,
    nginx: Option<PathBuf>,
}

/// The flags each subcommand must show in `--help` before we drive it; the
/// placeholders of servers not built yet have none. Keep in step with `plan.rs`.
const NEEDS: &[(&str, &[&str])] = &[
    ("edge", &["--config"]),
    ("origin", &["--root", "--listen"]),
    ("keyserver", &["--keys", "--certs", "--listen", "--sign-inline"]),
    ("memserver", &["--kind", "--listen", "--certs", "--dir"]),
    (
        "mkfs",
        &[
            "--device",
            "--size",
            "--force",
            "--secret-file",
            "--tree",
            "--kdf-memory-kib",
            "--kdf-passes",
        ],
    ),
    (
        "fileserver",
        &[
            "--image",
            "--device",
            "--tree",
            "--secret-file",
            "--expect-root",
            "--listen",
            "--certs",
        ],
    ),
];

impl Availability {
    /// Asks the binary for each subcommand's help.
    pub fn probe(bin: &Path) -> Availability {
        let mut help = HashMap::new();
        for (sub, _) in NEEDS {
            let text = Command::new(bin)
                .arg(sub)
                .arg("--help")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            help.insert(*sub, text);
        }
        Availability {
            bin: bin.to_path_buf(),
            help,
            nginx: nginx::binary(),
        }
    }

    /// Whether `conclave SUB` is built with the flags we use; else why not.
    pub fn subcommand(&self, sub: &str) -> Result<(), String> {
        let flags = NEEDS
            .iter()
            .find(|(s, _)| *s == sub)
            .map(|(_, f)| *f)
            .unwrap_or(&[]);
        let text = self.help.get(sub).map(String::as_str).unwrap_or("");
        if text.is_empty() {
            return Err(format!(
                "`conclave {sub}` is not in this build ({})",
                self.bin.display()
            ));
        }
        let missing: Vec<&str> = flags.iter().copied().filter(|f| !text.contains(f)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "`conclave {sub}` is not built yet (no {})",
                missing.join(", ")
            ))
        }
    }

    /// The nginx binary, if installed.
    pub fn nginx(&self) -> Option<&Path> {
        self.nginx.as_deref()
    }

    /// Whether the origin can be `conclave origin` (else nginx serves it, as in the seed).
    pub fn conclave_origin(&self) -> bool {
        self.subcommand("origin").is_ok()
    }

    /// Whether a preset can run here; the error names everything missing.
    pub fn check(&self, p: &Preset) -> Result<(), String> {
        let mut missing = Vec::new();
        match p.edge {
            EdgeKind::Nginx => {
                if self.nginx.is_none() {
                    missing.push("stock nginx is not installed (apt-get install nginx)".to_string());
                }
            }
            EdgeKind::Conclave => {
                if let Err(e) = self.subcommand("edge") {
                    missing.push(e);
                }
            }
        }
        if !self.conclave_origin() && self.nginx.is_none() {
            missing.push("no origin: neither `conclave origin` nor nginx".into());
        }
        if p.key == KeyKind::Keyserver {
            missing.extend(self.subcommand("keyserver").err());
        }
        if matches!(p.shared, SharedKind::Smdish | SharedKind::Smuf) {
            missing.extend(self.subcommand("memserver").err());
        }
        if p.shared == SharedKind::Smc {
            // smc has no server: it is a mode of the edge's shared state.
            missing.extend(
                self.subcommand("memserver")
                    .err()
                    .map(|e| format!("{e} (smc ships with the memory servers)")),
            );
        }
        if p.storage == StorageKind::Nextfs {
            missing.extend(self.subcommand("mkfs").err());
            missing.extend(self.subcommand("fileserver").err());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_paper_presets_exist() {
        let mut names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        for n in [
            "linux",
            "linux-keyless",
            "conclave-crypt",
            "conclave-vericrypt",
            "nginx",
        ] {
            assert!(find(n).is_some(), "{n}");
        }
        let v = find("conclave-vericrypt").unwrap();
        assert_eq!(
            (v.device, v.shared, v.key),
            (Some(Device::Vericrypt), SharedKind::Smuf, KeyKind::Keyserver)
        );
    }

    #[test]
    fn a_missing_binary_makes_conclave_presets_unavailable_with_a_reason() {
        let a = Availability::probe(Path::new("/nonexistent/conclave"));
        let e = a.check(find("conclave-vericrypt").unwrap()).unwrap_err();
        assert!(
            e.contains("edge") && e.contains("keyserver") && e.contains("fileserver"),
            "{e}"
        );
    }
}
