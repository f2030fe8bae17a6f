//! The named configurations of the evaluation (ARCHITECTURE.md §Evaluation).
//! Whether this build and machine can run each is `availability.rs`.

use crate::deploy::{Device, EdgeKind, KeyKind, SharedKind, StorageKind};

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
    // Stock nginx as a client of the conclave (issue 19, docs/nginx.md):
    // keyless through the OpenSSL provider, storage through `conclave mount`.
    p(
        "nginx-keyless",
        "stock nginx + key server (OpenSSL provider)",
        NG,
        Host,
        None,
        SL,
        KS,
    ),
    p(
        "nginx-fs-crypt",
        "stock nginx, cache on a crypt image (mount)",
        NG,
        Nextfs,
        Some(Device::Crypt),
        SL,
        KL,
    ),
    p(
        "nginx-fs-vericrypt",
        "stock nginx, cache on a vericrypt image (mount)",
        NG,
        Nextfs,
        Some(Device::Vericrypt),
        SL,
        KL,
    ),
    p(
        "nginx-conclave",
        "stock nginx + key server + vericrypt (mount)",
        NG,
        Nextfs,
        Some(Device::Vericrypt),
        SL,
        KS,
    ),
];

/// Looks a preset up by name.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
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
            "nginx-keyless",
            "nginx-fs-crypt",
            "nginx-fs-vericrypt",
            "nginx-conclave",
        ] {
            assert!(find(n).is_some(), "{n}");
        }
        let v = find("conclave-vericrypt").unwrap();
        assert_eq!(
            (v.device, v.shared, v.key),
            (Some(Device::Vericrypt), SharedKind::Smuf, KeyKind::Keyserver)
        );
        let n = find("nginx-conclave").unwrap();
        assert_eq!(
            (n.edge, n.storage, n.device, n.shared, n.key),
            (
                EdgeKind::Nginx,
                StorageKind::Nextfs,
                Some(Device::Vericrypt),
                SharedKind::Local,
                KeyKind::Keyserver
            )
        );
    }
}
