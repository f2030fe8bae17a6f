//! Whether this build and machine can run each preset. The binary says which
//! subcommands it was built with (`conclave build-info`, JSON); their flags
//! need no checking, since the plan builds them from the servers' own
//! settings types. A preset whose server is missing is listed as
//! "not available yet: <what is missing>", never silently dropped.

use crate::deploy::{EdgeKind, KeyKind, SharedKind, StorageKind};
use crate::nginx;
use crate::preset::Preset;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A subcommand of `conclave` that the evaluation drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subcommand {
    /// `conclave edge`.
    Edge,
    /// `conclave origin`.
    Origin,
    /// `conclave keyserver`.
    Keyserver,
    /// `conclave memserver`.
    Memserver,
    /// `conclave mkfs`.
    Mkfs,
    /// `conclave fileserver`.
    Fileserver,
    /// `conclave mount` (stock nginx's storage on the file server).
    Mount,
    /// `conclave keyref` (stock nginx's key reference for the OpenSSL provider).
    Keyref,
}

impl Subcommand {
    /// Its name on the command line (and in `build-info`).
    pub fn as_str(self) -> &'static str {
        match self {
            Subcommand::Edge => "edge",
            Subcommand::Origin => "origin",
            Subcommand::Keyserver => "keyserver",
            Subcommand::Memserver => "memserver",
            Subcommand::Mkfs => "mkfs",
            Subcommand::Fileserver => "fileserver",
            Subcommand::Mount => "mount",
            Subcommand::Keyref => "keyref",
        }
    }
}

/// What `conclave build-info` prints: the subcommands compiled in (cargo
/// features decide which).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct BuildInfo {
    /// Subcommand names.
    pub subcommands: Vec<String>,
}

impl BuildInfo {
    /// Runs `bin build-info`; why it failed otherwise.
    pub fn read(bin: &Path) -> Result<BuildInfo, String> {
        let out = Command::new(bin)
            .arg("build-info")
            .output()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} build-info` failed: {}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("`{} build-info` printed no build info: {e}", bin.display()))
    }
}

/// The OpenSSL provider stock nginx signs through (crate `conclave-openssl`),
/// looked for next to the `conclave` binary (both land in `target/<profile>/`).
pub const KEYLESS_MODULE: &str = "libconclave_openssl.so";

/// What this binary and machine can run, probed once.
pub struct Availability {
    bin: PathBuf,
    built: Vec<String>,
    nginx: Option<PathBuf>,
    fuse: Result<(), String>,
}

/// Whether this machine can mount FUSE file systems: `/dev/fuse`, and
/// either root (fuser mounts with mount(2) itself) or `fusermount3`.
pub fn probe_fuse() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "FUSE is unavailable: no /dev/fuse (load the fuse module or give the container the device)"
                .into(),
        );
    }
    let root = nix::unistd::geteuid().is_root();
    let fusermount = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").exists()));
    if !root && !fusermount {
        return Err("FUSE is unavailable: not root and no fusermount3 (apt-get install fuse3)".into());
    }
    Ok(())
}

impl Availability {
    /// Asks the binary which subcommands it has (none when it cannot say).
    pub fn probe(bin: &Path) -> Availability {
        let built = BuildInfo::read(bin).map(|b| b.subcommands).unwrap_or_default();
        Availability {
            bin: bin.to_path_buf(),
            built,
            nginx: nginx::binary(),
            fuse: probe_fuse(),
        }
    }

    /// Whether FUSE mounts work here; else why not.
    pub fn fuse(&self) -> Result<(), String> {
        self.fuse.clone()
    }

    /// The keyless OpenSSL provider and `conclave keyref`; else why not.
    pub fn keyless_module(&self) -> Result<PathBuf, String> {
        self.subcommand(Subcommand::Keyref)?;
        let so = self
            .bin
            .parent()
            .map(|d| d.join(KEYLESS_MODULE))
            .filter(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "the keyless OpenSSL module {KEYLESS_MODULE} is not built next to {} \
                     (cargo build -p conclave-openssl)",
                    self.bin.display()
                )
            })?;
        Ok(so)
    }

    /// Whether `conclave SUB` is in this build; else why not.
    pub fn subcommand(&self, sub: Subcommand) -> Result<(), String> {
        if self.built.iter().any(|s| s == sub.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "`conclave {}` is not in this build ({})",
                sub.as_str(),
                self.bin.display()
            ))
        }
    }

    /// The nginx binary, if installed.
    pub fn nginx(&self) -> Option<&Path> {
        self.nginx.as_deref()
    }

    /// Whether the origin can be `conclave origin` (else nginx serves it, as in the seed).
    pub fn conclave_origin(&self) -> bool {
        self.subcommand(Subcommand::Origin).is_ok()
    }

    /// The report's opening warnings for `presets`: FUSE (or `conclave
    /// mount`) missing for the nginx presets on the file server, the keyless
    /// module missing for the nginx presets on the key server; each names the
    /// presets that therefore do not run.
    pub fn warnings(&self, presets: &[&Preset]) -> Vec<String> {
        let names = |f: &dyn Fn(&Preset) -> bool| -> Vec<&str> {
            presets.iter().filter(|p| f(p)).map(|p| p.name).collect()
        };
        let mut w = Vec::new();
        let mounted = names(&|p| p.edge == EdgeKind::Nginx && p.storage == StorageKind::Nextfs);
        let why = self
            .fuse()
            .err()
            .or_else(|| self.subcommand(Subcommand::Mount).err());
        if let (Some(why), false) = (why, mounted.is_empty()) {
            w.push(format!("{why}; not run: {}", mounted.join(", ")));
        }
        let keyless = names(&|p| p.edge == EdgeKind::Nginx && p.key == KeyKind::Keyserver);
        if let (Err(why), false) = (self.keyless_module(), keyless.is_empty()) {
            w.push(format!("{why}; not run: {}", keyless.join(", ")));
        }
        w
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
            EdgeKind::Conclave => missing.extend(self.subcommand(Subcommand::Edge).err()),
        }
        if !self.conclave_origin() && self.nginx.is_none() {
            missing.push("no origin: neither `conclave origin` nor nginx".into());
        }
        if p.key == KeyKind::Keyserver {
            missing.extend(self.subcommand(Subcommand::Keyserver).err());
            if p.edge == EdgeKind::Nginx {
                missing.extend(self.keyless_module().err());
            }
        }
        if matches!(p.shared, SharedKind::Smdish | SharedKind::Smuf) {
            missing.extend(self.subcommand(Subcommand::Memserver).err());
        }
        if p.shared == SharedKind::Smc {
            // smc has no server: it is a mode of the edge's shared state.
            missing.extend(
                self.subcommand(Subcommand::Memserver)
                    .err()
                    .map(|e| format!("{e} (smc ships with the memory servers)")),
            );
        }
        if p.storage == StorageKind::Nextfs {
            missing.extend(self.subcommand(Subcommand::Mkfs).err());
            missing.extend(self.subcommand(Subcommand::Fileserver).err());
            if p.edge == EdgeKind::Nginx {
                missing.extend(self.subcommand(Subcommand::Mount).err());
                missing.extend(self.fuse().err());
            }
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
    use crate::preset::find;

    #[test]
    fn a_missing_binary_makes_conclave_presets_unavailable_with_a_reason() {
        let a = Availability::probe(Path::new("/nonexistent/conclave"));
        let e = a.check(find("conclave-vericrypt").unwrap()).unwrap_err();
        assert!(
            e.contains("edge") && e.contains("keyserver") && e.contains("fileserver"),
            "{e}"
        );
    }

    #[test]
    fn a_build_without_a_server_makes_only_its_presets_unavailable() {
        let a = Availability {
            bin: "/b/conclave".into(),
            built: ["edge", "origin", "mkfs", "fileserver"]
                .map(String::from)
                .to_vec(),
            nginx: None,
            fuse: Ok(()),
        };
        assert_eq!(a.check(find("fs-vericrypt").unwrap()), Ok(()));
        assert_eq!(
            a.check(find("linux-keyless").unwrap()),
            Err("`conclave keyserver` is not in this build (/b/conclave)".into())
        );
    }

    #[test]
    fn nginx_presets_name_fuse_the_mount_and_the_keyless_module_when_missing() {
        let a = Availability {
            bin: "/nonexistent/b/conclave".into(),
            built: ["origin", "mkfs", "fileserver", "keyserver", "keyref"]
                .map(String::from)
                .to_vec(),
            nginx: Some("/usr/sbin/nginx".into()),
            fuse: Err("FUSE is unavailable: no /dev/fuse".into()),
        };
        assert_eq!(
            a.check(find("nginx-fs-vericrypt").unwrap()),
            Err(
                "`conclave mount` is not in this build (/nonexistent/b/conclave); \
                 FUSE is unavailable: no /dev/fuse"
                    .into()
            )
        );
        let e = a.check(find("nginx-keyless").unwrap()).unwrap_err();
        assert!(e.contains(KEYLESS_MODULE) && !e.contains("FUSE"), "{e}");
        let e = a.check(find("nginx-conclave").unwrap()).unwrap_err();
        assert!(e.contains(KEYLESS_MODULE) && e.contains("FUSE"), "{e}");
        assert_eq!(a.check(find("nginx").unwrap()), Ok(()));
        let all: Vec<&Preset> = crate::preset::PRESETS.iter().collect();
        let w = a.warnings(&all);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("FUSE is unavailable: no /dev/fuse; not run: nginx-fs-crypt, nginx-fs-vericrypt, nginx-conclave"),
            "{w:?}"
        );
        assert!(w[1].ends_with("not run: nginx-keyless, nginx-conclave"), "{w:?}");
        assert!(a.warnings(&[find("linux").unwrap()]).is_empty());
    }
}
