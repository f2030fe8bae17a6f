//! The deployment file (`deploy.toml`): one conclave described as data —
//! the role the seed's `manifest.conf` + `nginx.conf` played. `conclave up`
//! reads it; `conclave eval` writes one per cell.
//!
//! ```toml
//! name = "linux"
//! certs = "certs"          # made with `conclave certs` if missing (kept outside `run/`)
//! # tenant = "acme"        # the edge's tenant (identity `edge@acme`); default `default`
//! # users = true           # as root: each process under its own uid (base_uid + i)
//! # base_uid = 64000
//! content = "html"         # made with `conclave content` if missing
//! [origin]
//! kind = "conclave"        # conclave | nginx | external (already running)
//! listen = "127.0.0.1:8081"
//! [edge]
//! kind = "conclave"        # conclave | nginx
//! workers = 1
//! mode = "cache"           # cache | standalone
//! storage = "host"         # host | nextfs   (nextfs needs [fileserver]; nginx: through `conclave mount`)
//! shared = "local"         # local | smdish | smuf | smc (smdish/smuf need [memserver])
//! key = "local"            # local | keyserver (needs [keyserver]; nginx: the OpenSSL provider)
//! [[edge.site]]            # one per tenant sharing this edge
//! listen = "127.0.0.1:8443"
//! [keyserver]
//! listen = "127.0.0.1:9000"
//! [memserver]
//! listen = "127.0.0.1:9100"
//! [fileserver]
//! device = "vericrypt"     # std | crypt | verity | vericrypt
//! listen = "127.0.0.1:9200"
//! # image = "fs.img"       # rebuilt from `content` at every start
//! # kdf = "full"           # full | cheap (Argon2id cost of the image secret)
//! ```
//! Relative paths are relative to the file's directory (or `dir`).
//! Every process runs from its own directory under `DIR/run/` (see
//! [`crate::layout`]), holding only its identity and its own secrets.

use crate::EvalError;
use conclave_rpc::{Identity, Role, Tenant};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One conclave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// A name for logs and reports.
    pub name: String,
    /// State directory: generated configs, logs, caches. Default: the file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Certificates directory (`conclave certs` layout).
    #[serde(default = "default_certs")]
    pub certs: PathBuf,
    /// Web content (`conclave content` layout).
    #[serde(default = "default_content")]
    pub content: PathBuf,
    /// The origin the edge proxies to.
    pub origin: Origin,
    /// The HTTPS edge.
    pub edge: Edge,
    /// The key server, when the edge signs remotely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyserver: Option<Keyserver>,
    /// The memory server, when cross-worker state is remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memserver: Option<Memserver>,
    /// The file server, when storage is nextfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fileserver: Option<Fileserver>,
    /// The edge's tenant: it runs as `edge@TENANT` and the servers grant
    /// that identity its paths and keys. `None` is the tenant `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Run each process under its own Unix user (root only), so a
    /// compromised edge cannot even open the key server's files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub users: bool,
    /// First uid (and gid) of `users`: process `i` runs as `base_uid + i`.
    #[serde(default = "default_base_uid", skip_serializing_if = "is_default_base_uid")]
    pub base_uid: u32,
}

/// Above the ranges distributions hand out to people and system services
/// (and below 65534, `nobody`), so the uids own nothing else.
pub const DEFAULT_BASE_UID: u32 = 64000;

fn default_base_uid() -> u32 {
    DEFAULT_BASE_UID
}
fn is_default_base_uid(u: &u32) -> bool {
    *u == DEFAULT_BASE_UID
}

fn default_certs() -> PathBuf {
    PathBuf::from("certs")
}
fn default_content() -> PathBuf {
    PathBuf::from("html")
}
fn default_workers() -> u32 {
    1
}

/// Which program serves the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    /// `conclave origin`.
    Conclave,
    /// Debian nginx with the seed's origin config.
    Nginx,
    /// Already running elsewhere (shared by several deployments); not started.
    External,
}

/// The origin server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// Program.
    pub kind: OriginKind,
    /// Plain-HTTP address.
    pub listen: SocketAddr,
}

/// Which program is the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// `conclave edge`.
    Conclave,
    /// Stock Debian nginx (the baseline peer).
    Nginx,
}

/// Static server or caching reverse proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reverse-proxy cache in front of the origin (the seed's macro benchmark).
    Cache,
    /// Serves the content directory itself.
    Standalone,
}

/// Where the docroot and cache live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Host directories (the seed's `nonextfs`).
    Host,
    /// The file server.
    Nextfs,
}

/// Where cross-worker state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedKind {
    /// In-process.
    Local,
    /// smdish memory server.
    Smdish,
    /// smuf memory server.
    Smuf,
    /// Server-less encrypted host files.
    Smc,
}

/// How TLS signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A key file (the seed's `nonsm`).
    Local,
    /// The key server (`nsm`).
    Keyserver,
}

/// Block-device flavour of the file server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// Plain image.
    Std,
    /// AES-256-XTS.
    Crypt,
    /// Merkle tree.
    Verity,
    /// Both.
    Vericrypt,
}

impl Device {
    /// The block device this names, as `conclave mkfs` and the file server type it.
    pub fn kind(self) -> conclave_bd::DeviceKind {
        match self {
            Device::Std => conclave_bd::DeviceKind::Std,
            Device::Crypt => conclave_bd::DeviceKind::Crypt,
            Device::Verity => conclave_bd::DeviceKind::Verity,
            Device::Vericrypt => conclave_bd::DeviceKind::Vericrypt,
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Std => "std",
            Device::Crypt => "crypt",
            Device::Verity => "verity",
            Device::Vericrypt => "vericrypt",
        })
    }
}

/// The edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Program.
    pub kind: EdgeKind,
    /// Worker processes.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Cache or standalone.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Storage.
    #[serde(default = "default_storage")]
    pub storage: StorageKind,
    /// Shared state.
    #[serde(default = "default_shared")]
    pub shared: SharedKind,
    /// Key.
    #[serde(default = "default_key")]
    pub key: KeyKind,
    /// Sites (tenants); at least one.
    pub site: Vec<Site>,
}

fn default_mode() -> Mode {
    Mode::Cache
}
fn default_storage() -> StorageKind {
    StorageKind::Host
}
fn default_shared() -> SharedKind {
    SharedKind::Local
}
fn default_key() -> KeyKind {
    KeyKind::Local
}

/// One site of the edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// HTTPS address.
    pub listen: SocketAddr,
    /// Server name.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "localhost".into()
}

/// The key server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyserver {
    /// mTLS address.
    pub listen: SocketAddr,
}

/// The memory server (kind comes from `edge.shared`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memserver {
    /// mTLS address.
    pub listen: SocketAddr,
}

/// The file server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fileserver {
    /// Block device flavour.
    pub device: Device,
    /// mTLS address.
    pub listen: SocketAddr,
    /// Image file, rebuilt from `content` with `conclave mkfs` at every start.
    #[serde(default = "default_image")]
    pub image: PathBuf,
    /// Argon2id cost of the image's key derivation (crypt, verity, vericrypt).
    #[serde(default)]
    pub kdf: Kdf,
}

/// The Argon2id cost `conclave mkfs` seals the image secret with. It is paid
/// when the image is built and when the file server opens it, never per
/// request, so it does not change what the evaluation measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kdf {
    /// `conclave mkfs`'s defaults (64 MiB, 3 passes).
    #[default]
    Full,
    /// 8 MiB, 1 pass: for tests and the evaluation's many short-lived images.
    Cheap,
}

fn default_image() -> PathBuf {
    PathBuf::from("fs.img")
}

impl Deployment {
    /// Reads and checks a deployment file; relative paths become relative to
    /// `dir` (or the file's directory).
    pub fn load(path: &Path) -> Result<Deployment, EvalError> {
        let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
        let mut d: Deployment = toml::from_str(&text)
            .map_err(|e| EvalError::Config(format!("{}: {}", path.display(), e.to_string().trim())))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).map_err(EvalError::io(base))?;
        let dir = match &d.dir {
            Some(p) => base.join(p),
            None => base,
        };
        d.resolve(&dir);
        d.validate()
            .map_err(|e| EvalError::Config(format!("{}: {e}", path.display())))?;
        Ok(d)
    }

    /// Makes every relative path absolute under `dir` and records `dir`.
    pub fn resolve(&mut self, dir: &Path) {
        self.certs = dir.join(&self.certs);
        self.content = dir.join(&self.content);
        if let Some(f) = &mut self.fileserver {
            f.image = dir.join(&f.image);
        }
        self.dir = Some(dir.to_path_buf());
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }

    /// Checks that the parts fit together; names the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.edge.site.is_empty() {
            return Err("[edge] needs at least one [[edge.site]]".into());
        }
        if self.edge.workers == 0 || self.edge.workers > 64 {
            return Err(format!("edge.workers = {}: expected 1..=64", self.edge.workers));
        }
        if self.edge.key == KeyKind::Keyserver && self.keyserver.is_none() {
            return Err("edge.key = \"keyserver\" needs a [keyserver] section".into());
        }
        if matches!(self.edge.shared, SharedKind::Smdish | SharedKind::Smuf) && self.memserver.is_none() {
            return Err(format!(
                "edge.shared = {:?} needs a [memserver] section",
                self.edge.shared
            ));
        }
        if self.edge.storage == StorageKind::Nextfs && self.fileserver.is_none() {
            return Err("edge.storage = \"nextfs\" needs a [fileserver] section".into());
        }
        // Stock nginx reaches the file server through `conclave mount` and
        // the key server through the OpenSSL provider; its shared state is
        // its own shared-memory zones (docs/nginx.md).
        if self.edge.kind == EdgeKind::Nginx && self.edge.shared != SharedKind::Local {
            return Err(
                "stock nginx keeps its shared state in its own zones: edge.shared must be \"local\"".into(),
            );
        }
        let tenant = self.tenant()?;
        if self.users {
            if self.edge.kind == EdgeKind::Nginx || self.origin.kind == OriginKind::Nginx {
                return Err("users = true runs conclave processes only (not stock nginx)".into());
            }
            if self.edge.shared == SharedKind::Smuf {
                // The edge and the memory server both open smuf's host files.
                return Err("users = true does not support edge.shared = \"smuf\" \
                            (its host files are shared by the edge and the memory server): use smdish"
                    .into());
            }
            let top = self.base_uid.checked_add(crate::layout::Part::ALL.len() as u32);
            if self.base_uid == 0 || top.is_none_or(|t| t > 65534) {
                return Err(format!("base_uid = {}: expected 1..=65529", self.base_uid));
            }
        }
        if self.edge.kind == EdgeKind::Nginx && tenant != Tenant::default() {
            return Err("stock nginx has no conclave identity: it serves the default tenant only".into());
        }
        let mut ports: Vec<SocketAddr> = self.edge.site.iter().map(|s| s.listen).collect();
        if self.origin.kind != OriginKind::External {
            ports.push(self.origin.listen);
        }
        ports.extend(self.keyserver.iter().map(|k| k.listen));
        ports.extend(self.memserver.iter().map(|k| k.listen));
        ports.extend(self.fileserver.iter().map(|k| k.listen));
        for a in &ports {
            if !a.ip().is_loopback() {
                return Err(format!("{a}: deployments listen on loopback addresses only"));
            }
        }
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != ports.len() {
            return Err("two servers of the deployment use the same address".into());
        }
        Ok(())
    }

    /// The edge's tenant.
    pub fn tenant(&self) -> Result<Tenant, String> {
        match &self.tenant {
            None => Ok(Tenant::default()),
            Some(t) => t
                .parse()
                .map_err(|e: conclave_rpc::identity::BadTenant| format!("tenant: {e}")),
        }
    }

    /// The edge's identity (`edge@tenant`).
    pub fn edge_identity(&self) -> Identity {
        Identity::new(Role::Edge, self.tenant().unwrap_or_default())
    }

    /// The deployment as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The URLs a client uses, one per site.
    pub fn urls(&self) -> Vec<String> {
        self.edge
            .site
            .iter()
            .map(|s| format!("https://{}/", s.listen))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
name = "t"
[origin]
kind = "conclave"
listen = "127.0.0.1:8081"
[edge]
kind = "conclave"
[[edge.site]]
listen = "127.0.0.1:8443"
"#;

    #[test]
    fn loads_minimal_file_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deploy.toml");
        std::fs::write(&p, MIN).unwrap();
        let d = Deployment::load(&p).unwrap();
        assert_eq!(d.edge.workers, 1);
        assert_eq!(d.edge.mode, Mode::Cache);
        assert_eq!(d.certs, dir.path().join("certs"));
        assert_eq!(d.urls(), vec!["https://127.0.0.1:8443/".to_string()]);
        // Round trip.
        let again: Deployment = toml::from_str(&d.to_toml()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn rejects_inconsistent_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deploy.toml");
        for (extra, want) in [
            ("key = \"keyserver\"\n", "[keyserver]"),
            ("storage = \"nextfs\"\n", "[fileserver]"),
            ("workers = 0\n", "workers"),
            ("colour = 1\n", "colour"),
        ] {
            let text = MIN.replace(
                "kind = \"conclave\"\n[[edge",
                &format!("kind = \"conclave\"\n{extra}[[edge"),
            );
            std::fs::write(&p, text).unwrap();
            let e = Deployment::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
        for (top, want) in [
            ("tenant = \"Acme\"\n", "bad tenant name"),
            ("users = true\nbase_uid = 0\n", "base_uid = 0"),
            ("users = true\nbase_uid = 65530\n", "base_uid = 65530"),
        ] {
            std::fs::write(&p, format!("{top}{MIN}")).unwrap();
            let e = Deployment::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{top}: {e}");
        }
        let smuf = MIN.replace(
            "kind = \"conclave\"\n[[edge",
            "kind = \"conclave\"\nshared = \"smuf\"\n[[edge",
        ) + "[memserver]\nlisten = \"127.0.0.1:9100\"\n";
        std::fs::write(&p, format!("users = true\n{smuf}")).unwrap();
        let e = Deployment::load(&p).unwrap_err().to_string();
        assert!(e.contains("smuf") && e.contains("smdish"), "{e}");
        std::fs::write(&p, format!("tenant = \"acme\"\nusers = true\n{MIN}")).unwrap();
        let d = Deployment::load(&p).unwrap();
        assert_eq!(d.edge_identity().to_string(), "edge@acme");
        assert_eq!(d.base_uid, DEFAULT_BASE_UID);
        std::fs::write(&p, MIN.replace("127.0.0.1:8443", "10.0.0.1:8443")).unwrap();
        assert!(Deployment::load(&p).unwrap_err().to_string().contains("loopback"));
        std::fs::write(&p, MIN.replace("8443", "8081")).unwrap();
        assert!(Deployment::load(&p)
            .unwrap_err()
            .to_string()
            .contains("same address"));
    }
}
