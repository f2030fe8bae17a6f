//! From a [`Deployment`] to what `up` runs: creates the missing inputs
//! (certificates, content, edge config) and lists the processes in
//! dependency order (file server, memory server, key server, origin, edge),
//! each with the probe that says it is ready.
//!
//! Each server's command line is one function here that builds the
//! server's own settings value (`conclave_fs::FileServerSettings`, ...) and
//! serialises it with `to_args()`; the edge's config is an
//! `conclave_edge::EdgeSettings` written with `to_toml()`. No flag or TOML
//! key is spelled here.

use crate::deploy::{
    Deployment, Device, EdgeKind, Fileserver, Kdf, KeyKind, Mode, Origin, OriginKind, SharedKind, StorageKind,
};
use crate::{nginx, EvalError};
use conclave_bd::{KdfSettings, MkfsSettings};
use conclave_edge::config::schema::{
    CacheSettings, ServerSettings, SharedSettings, StorageSettings, TlsSettings,
};
use conclave_edge::config::{ByteSize, Dur};
use conclave_edge::launch::EdgeArgs;
use conclave_edge::{EdgeSettings, OriginSettings};
use conclave_fs::FileServerSettings;
use conclave_keys::KeyServerSettings;
use conclave_mem::{MemServerSettings, MemSpec, ServerKind};
use conclave_rpc::pki::{self, CertsLayout, CertsOptions, SiteKey};
use conclave_rpc::Endpoint;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to tell a process is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect succeeds on every one of these addresses.
    Tcp(Vec<SocketAddr>),
}

/// One process of a deployment.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Role name for messages (`edge`, `origin`, `keyserver`, ...).
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// stdout and stderr go here.
    pub log: PathBuf,
    /// Readiness check.
    pub probe: Probe,
}

/// Paths of a prepared deployment.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Processes in start order.
    pub processes: Vec<ProcessSpec>,
    /// What was created (for `up` to print).
    pub created: Vec<PathBuf>,
}

/// Creates what is missing and returns the processes. `bin` is the
/// `conclave` binary used for every conclave process. A file server's image
/// is rebuilt here (with `conclave mkfs`) before anything starts.
pub fn prepare(d: &Deployment, bin: &Path) -> Result<Plan, EvalError> {
    let dir = d.state_dir();
    std::fs::create_dir_all(&dir).map_err(EvalError::io(&dir))?;
    let mut created = Vec::new();
    if ensure_certs(&d.certs)? {
        created.push(d.certs.clone());
    }
    if ensure_content(&d.content, bin)? {
        created.push(d.content.clone());
    }
    let mut processes = Vec::new();
    if let Some(f) = &d.fileserver {
        let img = build_image(d, f, bin, &dir)?;
        created.push(img.image.clone());
        processes.push(fileserver(d, bin, f.listen, &img, &dir));
    }
    if let Some(m) = &d.memserver {
        if d.edge.shared == SharedKind::Smuf {
            let files = dir.join("memfiles");
            std::fs::create_dir_all(&files).map_err(EvalError::io(&files))?;
        }
        processes.push(memserver(d, bin, d.edge.shared, m.listen, &dir)?);
    }
    if d.edge.shared == SharedKind::Smc {
        let smc = dir.join("smc");
        std::fs::create_dir_all(&smc).map_err(EvalError::io(&smc))?;
        ensure_secret(&dir.join("smc.secret"), false)?;
    }
    if let Some(k) = &d.keyserver {
        key_dir(&d.certs, &dir)?;
        processes.push(keyserver(d, bin, k.listen, &dir));
    }
    processes.extend(origin(&d.origin, &d.content, bin, &dir)?);
    processes.push(edge(d, bin, &dir)?);
    Ok(Plan { processes, created })
}

/// Writes a random 32-byte secret (mode 0600): always when `fresh`, else
/// only unless a usable one (at least 16 bytes) is already there.
fn ensure_secret(path: &Path, fresh: bool) -> Result<(), EvalError> {
    use std::io::Read;
    if !fresh && std::fs::metadata(path).is_ok_and(|m| m.len() >= 16) {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    let rnd = Path::new("/dev/urandom");
    std::fs::File::open(rnd)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(EvalError::io(rnd))?;
    write_0600(path, &bytes)
}

/// Replaces `path` by a new file readable by its owner only.
fn write_0600(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(EvalError::io(path))
}

/// The key server loads every `NAME.key` of its directory, so it gets one
/// of its own, `STATE/keys/`, holding only a copy of the site key (never
/// the certs dir, whose role keys must not become signing keys).
fn key_dir(certs: &Path, dir: &Path) -> Result<PathBuf, EvalError> {
    use std::os::unix::fs::PermissionsExt;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(EvalError::io(&keys))?;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).map_err(EvalError::io(&keys))?;
    for e in std::fs::read_dir(&keys).map_err(EvalError::io(&keys))? {
        let p = e.map_err(EvalError::io(&keys))?.path();
        std::fs::remove_file(&p).map_err(EvalError::io(&p))?;
    }
    let src = CertsLayout::new(certs).site_key();
    let key = std::fs::read(&src).map_err(EvalError::io(&src))?;
    write_0600(&keys.join("server.key"), &key)?;
    Ok(keys)
}

/// A built file-server image and what opening it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Block device flavour.
    pub device: Device,
    /// The image file.
    pub image: PathBuf,
    /// Merkle tree (verity, vericrypt).
    pub tree: Option<PathBuf>,
    /// Device secret (crypt, verity, vericrypt).
    pub secret: Option<PathBuf>,
    /// Sealed root `mkfs` printed (tree devices), for `--expect-root`.
    pub root: Option<String>,
}

/// The file system's top directory: `html/` (the content, for standalone
/// edges) and one empty `cacheI/` per site (for cache edges); the edge
/// config names them `/html` and `/cacheI`.
fn image_tree(d: &Deployment, dir: &Path) -> Result<PathBuf, EvalError> {
    let top = dir.join("fsroot");
    if top.exists() {
        std::fs::remove_dir_all(&top).map_err(EvalError::io(&top))?;
    }
    copy_dir(&d.content, &top.join("html"))?;
    for i in 0..d.edge.site.len() {
        let c = top.join(format!("cache{i}"));
        std::fs::create_dir_all(&c).map_err(EvalError::io(&c))?;
    }
    Ok(top)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), EvalError> {
    std::fs::create_dir_all(to).map_err(EvalError::io(to))?;
    for e in std::fs::read_dir(from).map_err(EvalError::io(from))? {
        let e = e.map_err(EvalError::io(from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type().map_err(EvalError::io(&src))?;
        if t.is_dir() {
            copy_dir(&src, &dst)?;
        } else if t.is_file() {
            std::fs::copy(&src, &dst).map_err(EvalError::io(&src))?;
        }
    }
    Ok(())
}

/// Argon2id costs of a cheap image: 8 MiB, 1 pass.
const CHEAP_KDF: KdfSettings = KdfSettings {
    kdf_memory_kib: 8192,
    kdf_passes: 1,
};

/// Every image the plan builds is this large.
const IMAGE_SIZE: u64 = 128 << 20;

/// The `conclave mkfs` settings for this image, built from `top`; the KDF
/// cost applies only to devices with a secret.
pub fn mkfs_settings(img: &Image, kdf: Kdf, top: &Path) -> MkfsSettings {
    MkfsSettings {
        device: img.device.kind(),
        size: conclave_units::ByteSize(IMAGE_SIZE),
        secret_file: img.secret.clone(),
        tree: img.tree.clone(),
        force: true,
        kdf: match (&img.secret, kdf) {
            (Some(_), Kdf::Cheap) => CHEAP_KDF,
            _ => KdfSettings::default(),
        },
        dir: top.to_path_buf(),
        image: img.image.clone(),
    }
}

/// `conclave mkfs`'s command line for this image, built from `top`.
pub fn mkfs_argv(bin: &Path, img: &Image, kdf: Kdf, top: &Path) -> Vec<String> {
    conclave_argv(bin, mkfs_settings(img, kdf, top).to_args())
}

/// What the image of `f` is made of: secret at `STATE/fs.secret` (not for
/// std), tree next to the image (verity, vericrypt).
pub fn image_of(f: &Fileserver, dir: &Path) -> Image {
    Image {
        device: f.device,
        image: f.image.clone(),
        tree: matches!(f.device, Device::Verity | Device::Vericrypt)
            .then(|| PathBuf::from(format!("{}.tree", f.image.display()))),
        secret: (f.device != Device::Std).then(|| dir.join("fs.secret")),
        root: None,
    }
}

/// Rebuilds the image from the content with `conclave mkfs`, under a fresh
/// secret each time (an image never outlives its secret), and records the
/// sealed root it prints.
fn build_image(d: &Deployment, f: &Fileserver, bin: &Path, dir: &Path) -> Result<Image, EvalError> {
    let mut img = image_of(f, dir);
    if let Some(s) = &img.secret {
        ensure_secret(s, true)?;
    }
    if let Some(parent) = f.image.parent() {
        std::fs::create_dir_all(parent).map_err(EvalError::io(parent))?;
    }
    let top = image_tree(d, dir)?;
    let argv = mkfs_argv(bin, &img, f.kdf, &top);
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(EvalError::io(bin))?;
    let _ = std::fs::remove_dir_all(&top);
    if !out.status.success() {
        return Err(EvalError::Process(format!(
            "`conclave {}` failed: {}",
            argv[1..].join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if img.tree.is_some() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let root = stdout
            .split_whitespace()
            .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                EvalError::Process(format!(
                    "`conclave mkfs` printed no sealed root: {:?}",
                    stdout.trim()
                ))
            })?;
        img.root = Some(root.to_string());
    }
    Ok(img)
}

/// Removes a stopped deployment's file-server image, tree and secret (the
/// evaluation keeps each cell's configs and logs, not 128 MiB per cell).
pub fn discard_image(d: &Deployment) {
    if let Some(f) = &d.fileserver {
        let img = image_of(f, &d.state_dir());
        for p in [Some(img.image), img.tree, img.secret].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(EvalError::io(path))
}

/// Writes the certificates with the same code as `conclave certs` unless
/// they are all there. Returns whether it wrote them.
pub fn ensure_certs(certs: &Path) -> Result<bool, EvalError> {
    let names = pki::file_names();
    let present = names.iter().filter(|n| certs.join(n).exists()).count();
    if present == names.len() {
        return Ok(false);
    }
    if present > 0 {
        return Err(EvalError::Config(format!(
            "{}: some certificate files are missing; run `conclave certs --out {} --force`",
            certs.display(),
            certs.display()
        )));
    }
    pki::generate(&CertsOptions {
        tenants: Vec::new(),
        out: certs.to_path_buf(),
        site_key: SiteKey::Rsa2048,
        force: false,
    })?;
    Ok(true)
}

/// Writes the content with `conclave content` (the one place that knows the
/// seed's bytes) unless present. Returns whether it wrote it.
pub fn ensure_content(content: &Path, bin: &Path) -> Result<bool, EvalError> {
    if content.join("1k.txt").exists() {
        return Ok(false);
    }
    let out = std::process::Command::new(bin)
        .arg("content")
        .arg("--out")
        .arg(content)
        .output()
        .map_err(EvalError::io(bin))?;
    if !out.status.success() {
        return Err(EvalError::Process(format!(
            "`conclave content --out {}` failed: {}",
            content.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(true)
}

/// The origin's process (none for an external origin). Public because an
/// evaluation runs one origin shared by every cell, as the seed did.
pub fn origin(o: &Origin, content: &Path, bin: &Path, dir: &Path) -> Result<Option<ProcessSpec>, EvalError> {
    match o.kind {
        OriginKind::External => Ok(None),
        OriginKind::Conclave => Ok(Some(ProcessSpec {
            name: "origin".into(),
            argv: conclave_argv(bin, OriginSettings::new(content, o.listen).to_args()),
            log: dir.join("origin.log"),
            probe: Probe::Tcp(vec![o.listen]),
        })),
        OriginKind::Nginx => {
            let odir = dir.join("origin");
            std::fs::create_dir_all(&odir).map_err(EvalError::io(&odir))?;
            let nb = nginx::binary().ok_or_else(|| {
                EvalError::Config("origin kind \"nginx\" but nginx is not installed".into())
            })?;
            let conf = odir.join("nginx.conf");
            write(&conf, &nginx::origin_conf(&odir, &o.listen.to_string(), content))?;
            Ok(Some(ProcessSpec {
                name: "origin (nginx)".into(),
                argv: nginx::argv(&nb, &odir, &conf),
                log: dir.join("origin.log"),
                probe: Probe::Tcp(vec![o.listen]),
            }))
        }
    }
}

/// A loopback server address as the conclave servers spell endpoints.
fn endpoint(a: SocketAddr) -> Endpoint {
    Endpoint::Tcp(a.to_string())
}

/// `bin` followed by a subcommand's arguments.
fn conclave_argv(bin: &Path, args: Vec<String>) -> Vec<String> {
    std::iter::once(bin.display().to_string()).chain(args).collect()
}

/// The key server's command line. It serves every `NAME.key` of
/// `STATE/keys/`, which holds only the site key (see [`key_dir`]).
fn keyserver(d: &Deployment, bin: &Path, listen: SocketAddr, dir: &Path) -> ProcessSpec {
    let settings = KeyServerSettings::new(dir.join("keys"), endpoint(listen), d.certs.clone());
    ProcessSpec {
        name: "keyserver".into(),
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("keyserver.log"),
        probe: Probe::Tcp(vec![listen]),
    }
}

/// The memory server's command line (docs/mem.md).
fn memserver(
    d: &Deployment,
    bin: &Path,
    kind: SharedKind,
    listen: SocketAddr,
    dir: &Path,
) -> Result<ProcessSpec, EvalError> {
    let kind = match kind {
        SharedKind::Smdish => ServerKind::Smdish,
        SharedKind::Smuf => ServerKind::Smuf {
            dir: dir.join("memfiles"),
        },
        other => {
            return Err(EvalError::Config(format!(
                "[memserver] given but edge.shared = {other:?} needs none"
            )))
        }
    };
    let settings = MemServerSettings::new(kind, endpoint(listen), d.certs.clone());
    Ok(ProcessSpec {
        name: format!("memserver ({})", settings.kind),
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("memserver.log"),
        probe: Probe::Tcp(vec![listen]),
    })
}

/// What the edge may do in the file server: read `/html`, write its
/// `/cacheI` directories (see `image_tree`), nothing else.
fn edge_grants(d: &Deployment) -> Vec<conclave_fs::Grant> {
    let mut g = vec![grant("edge:ro:/html")];
    g.extend((0..d.edge.site.len()).map(|i| grant(&format!("edge:rw:/cache{i}"))));
    g
}

fn grant(text: &str) -> conclave_fs::Grant {
    text.parse().expect("the plan's grants are well-formed")
}

/// The file server's command line (docs/fs.md) for an image built by
/// `build_image`.
pub fn fileserver(d: &Deployment, bin: &Path, listen: SocketAddr, img: &Image, dir: &Path) -> ProcessSpec {
    let settings = FileServerSettings {
        tree: img.tree.clone(),
        secret_file: img.secret.clone(),
        expect_root: img.root.clone(),
        grants: edge_grants(d),
        ..FileServerSettings::new(
            img.image.clone(),
            img.device.kind(),
            endpoint(listen),
            d.certs.clone(),
        )
    };
    ProcessSpec {
        name: format!("fileserver ({})", img.device),
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("fileserver.log"),
        probe: Probe::Tcp(vec![listen]),
    }
}

fn edge(d: &Deployment, bin: &Path, dir: &Path) -> Result<ProcessSpec, EvalError> {
    let listens: Vec<SocketAddr> = d.edge.site.iter().map(|s| s.listen).collect();
    match d.edge.kind {
        EdgeKind::Nginx => {
            let nb = nginx::binary()
                .ok_or_else(|| EvalError::Config("edge kind \"nginx\" but nginx is not installed".into()))?;
            if d.edge.mode != Mode::Cache {
                return Err(EvalError::Config(
                    "the stock nginx edge is generated in cache mode only".into(),
                ));
            }
            let edir = dir.join("edge");
            std::fs::create_dir_all(&edir).map_err(EvalError::io(&edir))?;
            let sites: Vec<nginx::CacheSite> = d
                .edge
                .site
                .iter()
                .enumerate()
                .map(|(i, s)| nginx::CacheSite {
                    listen: s.listen.to_string(),
                    cache_dir: edir.join(format!("cache{i}")),
                    zone: format!("ZONE{i}"),
                })
                .collect();
            let conf = edir.join("nginx.conf");
            let text = nginx::cache_edge_conf(
                &edir,
                d.edge.workers,
                &sites,
                &d.certs,
                &d.origin.listen.to_string(),
            );
            write(&conf, &text)?;
            Ok(ProcessSpec {
                name: "edge (nginx)".into(),
                argv: nginx::argv(&nb, &edir, &conf),
                log: dir.join("edge.log"),
                probe: Probe::Tcp(listens),
            })
        }
        EdgeKind::Conclave => {
            let conf = dir.join("edge.toml");
            write(&conf, &edge_toml(d, dir))?;
            Ok(ProcessSpec {
                name: "edge".into(),
                argv: conclave_argv(
                    bin,
                    EdgeArgs {
                        config: conf,
                        check: false,
                    }
                    .to_args(),
                ),
                log: dir.join("edge.log"),
                probe: Probe::Tcp(listens),
            })
        }
    }
}

/// The edge's settings (docs/edge.md) for this deployment, as the value
/// `conclave edge` reads back from `edge.toml`.
pub fn edge_settings(d: &Deployment, dir: &Path) -> EdgeSettings {
    let nextfs = d.edge.storage == StorageKind::Nextfs && d.fileserver.is_some();
    let storage = match (d.edge.storage, &d.fileserver) {
        (StorageKind::Nextfs, Some(f)) => StorageSettings::Nextfs {
            server: endpoint(f.listen).to_string(),
            certs: d.certs.clone(),
        },
        _ => StorageSettings::Host,
    };
    let shared = match (d.edge.shared, &d.memserver) {
        (SharedKind::Smdish, Some(m)) => SharedSettings {
            kind: MemSpec::Smdish {
                endpoint: endpoint(m.listen),
            }
            .to_string(),
            certs: Some(d.certs.clone()),
            secret_file: None,
            ..SharedSettings::default()
        },
        (SharedKind::Smuf, Some(m)) => SharedSettings {
            kind: MemSpec::Smuf {
                endpoint: endpoint(m.listen),
                dir: dir.join("memfiles"),
            }
            .to_string(),
            certs: Some(d.certs.clone()),
            secret_file: None,
            ..SharedSettings::default()
        },
        (SharedKind::Smc, _) => {
            let secret = dir.join("smc.secret");
            SharedSettings {
                kind: MemSpec::Smc {
                    dir: dir.join("smc"),
                    secret: Some(secret.clone()),
                }
                .to_string(),
                certs: None,
                secret_file: Some(secret),
                ..SharedSettings::default()
            }
        }
        _ => SharedSettings::default(),
    };
    let tls = || {
        let certificate = CertsLayout::new(&d.certs).site_cert();
        match (d.edge.key, &d.keyserver) {
            (KeyKind::Keyserver, Some(k)) => {
                TlsSettings::key_server(certificate, endpoint(k.listen).to_string(), "server", &d.certs)
            }
            _ => TlsSettings::key_file(certificate, CertsLayout::new(&d.certs).site_key()),
        }
    };
    let server = d
        .edge
        .site
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut site = match d.edge.mode {
                Mode::Cache => ServerSettings::cache(
                    s.listen.to_string(),
                    format!("http://{}", d.origin.listen),
                    CacheSettings {
                        // With nextfs storage, paths are inside the file server's image.
                        path: if nextfs {
                            PathBuf::from(format!("/cache{i}"))
                        } else {
                            dir.join(format!("cache{i}"))
                        },
                        keys_zone: format!("ZONE{i}:16k"),
                        max_size: ByteSize(10 << 20),
                        inactive: Dur(Duration::from_secs(3600)),
                        valid: Dur(Duration::from_secs(3600)),
                        min_uses: 1,
                        ..CacheSettings::default()
                    },
                    tls(),
                ),
                Mode::Standalone => ServerSettings::standalone(
                    s.listen.to_string(),
                    if nextfs {
                        PathBuf::from("/html")
                    } else {
                        d.content.clone()
                    },
                    tls(),
                ),
            };
            site.server_name = vec![s.server_name.clone()];
            site
        })
        .collect();
    EdgeSettings {
        workers: d.edge.workers as usize,
        // One running thread per worker in every preset, like one nginx worker,
        // so `workers` compares like with like. A worker with a remote seam
        // blocks in each signature, file read or index lock inside
        // `block_in_place`, which lends its other connections to a fresh thread
        // meanwhile (docs/edge.md).
        worker_threads: 1,
        worker_connections: 4096,
        access_log: "off".into(),
        storage,
        shared,
        server,
        ..EdgeSettings::default()
    }
}

/// The `conclave edge` config file for this deployment: [`edge_settings`]
/// serialised, under a comment naming the deployment.
pub fn edge_toml(d: &Deployment, dir: &Path) -> String {
    format!(
        "# generated by conclave from deployment {}\n{}",
        toml::Value::String(d.name.clone()),
        edge_settings(d, dir).to_toml()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{Edge, Keyserver, Memserver, Site};

    fn dep() -> Deployment {
        Deployment {
            name: "t".into(),
            dir: Some("/s".into()),
            certs: "/s/certs".into(),
            content: "/s/html".into(),
            origin: Origin {
                kind: OriginKind::Conclave,
                listen: "127.0.0.1:8081".parse().unwrap(),
            },
            edge: Edge {
                kind: EdgeKind::Conclave,
                workers: 2,
                mode: Mode::Cache,
                storage: StorageKind::Host,
                shared: SharedKind::Local,
                key: KeyKind::Local,
                site: vec![Site {
                    listen: "127.0.0.1:8443".parse().unwrap(),
                    server_name: "localhost".into(),
                }],
            },
            keyserver: None,
            memserver: None,
            fileserver: None,
        }
    }

    #[test]
    fn edge_toml_parses_and_follows_docs_edge_md() {
        let mut d = dep();
        let t = edge_toml(&d, Path::new("/s"));
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(v["workers"].as_integer(), Some(2));
        let server = &v["server"].as_array().unwrap()[0];
        assert_eq!(server["proxy_pass"].as_str(), Some("http://127.0.0.1:8081"));
        assert_eq!(server["tls"]["key"].as_str(), Some("/s/certs/site/server.key"));
        assert_eq!(server["cache"]["keys_zone"].as_str(), Some("ZONE0:16k"));
        d.edge.key = KeyKind::Keyserver;
        d.keyserver = Some(Keyserver {
            listen: "127.0.0.1:9000".parse().unwrap(),
        });
        let v: toml::Table = toml::from_str(&edge_toml(&d, Path::new("/s"))).unwrap();
        assert_eq!(
            v["server"].as_array().unwrap()[0]["tls"]["keyserver"].as_str(),
            Some("tcp://127.0.0.1:9000")
        );
    }

    #[test]
    fn processes_start_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = dep();
        d.edge.key = KeyKind::Keyserver;
        d.keyserver = Some(Keyserver {
            listen: "127.0.0.1:9000".parse().unwrap(),
        });
        d.certs = "certs".into();
        d.content = "html".into();
        d.resolve(dir.path());
        std::fs::create_dir_all(&d.content).unwrap();
        std::fs::write(d.content.join("1k.txt"), "x").unwrap();
        let plan = prepare(&d, Path::new("/bin/false")).unwrap();
        let names: Vec<_> = plan.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["keyserver", "origin", "edge"]);
        let conf = dir.path().join("edge.toml").display().to_string();
        assert_eq!(plan.processes[2].argv[1..], ["edge", "--config", &conf]);
        assert_eq!(
            plan.processes[1].argv[1..5],
            ["origin", "--root", &d.content.display().to_string(), "--listen"]
        );
        let l = CertsLayout::new(&d.certs);
        assert!(l.ca_cert().exists() && l.site_key().exists());
        assert!(dir.path().join("edge.toml").exists());
        assert_eq!(plan.created, vec![d.certs.clone()]);
    }

    fn table(d: &Deployment) -> toml::Table {
        toml::from_str(&edge_toml(d, Path::new("/s"))).unwrap()
    }

    #[test]
    fn edge_toml_with_nextfs_names_paths_inside_the_image() {
        let mut d = dep();
        d.edge.storage = StorageKind::Nextfs;
        d.fileserver = Some(Fileserver {
            device: Device::Vericrypt,
            listen: "127.0.0.1:9200".parse().unwrap(),
            image: "/s/fs.img".into(),
            kdf: Kdf::Cheap,
        });
        let v = table(&d);
        assert_eq!(v["storage"]["kind"].as_str(), Some("nextfs"));
        assert_eq!(v["storage"]["server"].as_str(), Some("tcp://127.0.0.1:9200"));
        assert_eq!(v["storage"]["certs"].as_str(), Some("/s/certs"));
        assert_eq!(v["server"][0]["cache"]["path"].as_str(), Some("/cache0"));
        d.edge.mode = Mode::Standalone;
        assert_eq!(table(&d)["server"][0]["root"].as_str(), Some("/html"));
        // Host storage keeps host paths.
        d.edge.storage = StorageKind::Host;
        d.fileserver = None;
        assert_eq!(table(&d)["server"][0]["root"].as_str(), Some("/s/html"));
        d.edge.mode = Mode::Cache;
        assert_eq!(
            table(&d)["server"][0]["cache"]["path"].as_str(),
            Some("/s/cache0")
        );
    }

    #[test]
    fn edge_toml_shared_carries_certs_or_the_secret_file() {
        let mut d = dep();
        d.memserver = Some(Memserver {
            listen: "127.0.0.1:9100".parse().unwrap(),
        });
        d.edge.shared = SharedKind::Smdish;
        let v = table(&d);
        assert_eq!(v["shared"]["kind"].as_str(), Some("smdish+tcp://127.0.0.1:9100"));
        assert_eq!(v["shared"]["certs"].as_str(), Some("/s/certs"));
        d.edge.shared = SharedKind::Smuf;
        let v = table(&d);
        assert_eq!(
            v["shared"]["kind"].as_str(),
            Some("smuf+tcp://127.0.0.1:9100?dir=/s/memfiles")
        );
        assert_eq!(v["shared"]["certs"].as_str(), Some("/s/certs"));
        d.memserver = None;
        d.edge.shared = SharedKind::Smc;
        let v = table(&d);
        assert_eq!(
            v["shared"]["kind"].as_str(),
            Some("smc:///s/smc?secret=/s/smc.secret")
        );
        assert_eq!(v["shared"]["secret_file"].as_str(), Some("/s/smc.secret"));
        assert!(v["shared"].get("certs").is_none());
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn server_command_lines_match_their_help() {
        let d = dep();
        let bin = Path::new("/b/conclave");
        let dir = Path::new("/s");
        let k = keyserver(&d, bin, "127.0.0.1:9000".parse().unwrap(), dir);
        assert_eq!(
            k.argv,
            strs(&[
                "/b/conclave",
                "keyserver",
                "--keys",
                "/s/keys",
                "--certs",
                "/s/certs",
                "--listen",
                "tcp://127.0.0.1:9000"
            ])
        );
        let m = memserver(&d, bin, SharedKind::Smuf, "127.0.0.1:9100".parse().unwrap(), dir).unwrap();
        assert_eq!(
            m.argv[1..],
            strs(&[
                "memserver",
                "--kind",
                "smuf",
                "--listen",
                "tcp://127.0.0.1:9100",
                "--certs",
                "/s/certs",
                "--dir",
                "/s/memfiles"
            ])
        );
        assert!(memserver(&d, bin, SharedKind::Smc, "127.0.0.1:9100".parse().unwrap(), dir).is_err());
        let f = Fileserver {
            device: Device::Vericrypt,
            listen: "127.0.0.1:9200".parse().unwrap(),
            image: "/s/fs.img".into(),
            kdf: Kdf::Cheap,
        };
        let mut img = image_of(&f, dir);
        assert_eq!(
            mkfs_argv(bin, &img, Kdf::Cheap, Path::new("/s/fsroot"))[1..],
            strs(&[
                "mkfs",
                "--device",
                "vericrypt",
                "--size",
                "128M",
                "--force",
                "--secret-file",
                "/s/fs.secret",
                "--kdf-memory-kib",
                "8192",
                "--kdf-passes",
                "1",
                "--tree",
                "/s/fs.img.tree",
                "/s/fsroot",
                "/s/fs.img"
            ])
        );
        img.root = Some("ab".repeat(32));
        let s = fileserver(&d, bin, f.listen, &img, dir);
        assert_eq!(
            s.argv[1..],
            strs(&[
                "fileserver",
                "--image",
                "/s/fs.img",
                "--device",
                "vericrypt",
                "--tree",
                "/s/fs.img.tree",
                "--secret-file",
                "/s/fs.secret",
                "--expect-root",
                &"ab".repeat(32),
                "--listen",
                "tcp://127.0.0.1:9200",
                "--certs",
                "/s/certs",
                "--grant",
                "edge:ro:/html",
                "--grant",
                "edge:rw:/cache0"
            ])
        );
        // std: no secret, no tree, no KDF flags.
        let std_img = image_of(
            &Fileserver {
                device: Device::Std,
                kdf: Kdf::Full,
                ..f
            },
            dir,
        );
        assert_eq!(
            mkfs_argv(bin, &std_img, Kdf::Cheap, Path::new("/t"))[1..],
            strs(&[
                "mkfs",
                "--device",
                "std",
                "--size",
                "128M",
                "--force",
                "/t",
                "/s/fs.img"
            ])
        );
    }

    #[test]
    fn the_key_server_gets_a_directory_with_only_the_site_key() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let certs = t.path().join("certs");
        ensure_certs(&certs).unwrap();
        std::fs::create_dir_all(t.path().join("keys")).unwrap();
        std::fs::write(t.path().join("keys/stale.key"), "x").unwrap();
        let keys = key_dir(&certs, t.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["server.key"]);
        let k = keys.join("server.key");
        assert_eq!(
            std::fs::read(&k).unwrap(),
            std::fs::read(CertsLayout::new(&certs).site_key()).unwrap()
        );
        assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
        let s = t.path().join("smc.secret");
        ensure_secret(&s, false).unwrap();
        let first = std::fs::read(&s).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(std::fs::metadata(&s).unwrap().permissions().mode() & 0o777, 0o600);
        ensure_secret(&s, false).unwrap();
        assert_eq!(std::fs::read(&s).unwrap(), first, "an existing secret is kept");
        ensure_secret(&s, true).unwrap();
        assert_ne!(std::fs::read(&s).unwrap(), first, "fresh means fresh");
    }

    #[test]
    fn discard_image_removes_image_tree_and_secret_only() {
        let t = tempfile::tempdir().unwrap();
        let mut d = dep();
        d.resolve(t.path());
        d.fileserver = Some(Fileserver {
            device: Device::Verity,
            listen: "127.0.0.1:9200".parse().unwrap(),
            image: t.path().join("fs.img"),
            kdf: Kdf::Cheap,
        });
        for f in ["fs.img", "fs.img.tree", "fs.secret", "fileserver.log"] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        discard_image(&d);
        let left: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["fileserver.log"]);
    }

    #[test]
    fn every_edge_config_reads_back_as_the_settings_it_was_written_from() {
        let mut cases = Vec::new();
        for storage in [StorageKind::Host, StorageKind::Nextfs] {
            for shared in [
                SharedKind::Local,
                SharedKind::Smdish,
                SharedKind::Smuf,
                SharedKind::Smc,
            ] {
                for key in [KeyKind::Local, KeyKind::Keyserver] {
                    for mode in [Mode::Cache, Mode::Standalone] {
                        let mut d = dep();
                        d.name = "a \"quoted\" name".into();
                        d.edge.storage = storage;
                        d.edge.shared = shared;
                        d.edge.key = key;
                        d.edge.mode = mode;
                        d.edge.site.push(Site {
                            listen: "127.0.0.1:8444".parse().unwrap(),
                            server_name: "other".into(),
                        });
                        if storage == StorageKind::Nextfs {
                            d.fileserver = Some(Fileserver {
                                device: Device::Crypt,
                                listen: "127.0.0.1:9200".parse().unwrap(),
                                image: "/s/fs.img".into(),
                                kdf: Kdf::Cheap,
                            });
                        }
                        if matches!(shared, SharedKind::Smdish | SharedKind::Smuf) {
                            d.memserver = Some(Memserver {
                                listen: "127.0.0.1:9100".parse().unwrap(),
                            });
                        }
                        if key == KeyKind::Keyserver {
                            d.keyserver = Some(Keyserver {
                                listen: "127.0.0.1:9000".parse().unwrap(),
                            });
                        }
                        cases.push(d);
                    }
                }
            }
        }
        for d in &cases {
            let dir = Path::new("/s");
            let text = edge_toml(d, dir);
            let back: EdgeSettings = toml::from_str(&text).unwrap();
            assert_eq!(back, edge_settings(d, dir), "{text}");
            assert!(text.starts_with("# generated by conclave from deployment "));
        }
    }
}
