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

use crate::cpu::ProcessClass;
use crate::deploy::{
    Deployment, Device, EdgeKind, Fileserver, Kdf, KeyKind, Mode, Origin, OriginKind, SharedKind, StorageKind,
};
use crate::layout::{self, Part, RunDir, SiteKeySource, UnixUser};
use crate::{nginx, EvalError};
use conclave_bd::{KdfSettings, MkfsSettings};
use conclave_edge::config::schema::{
    CacheSettings, ServerSettings, SharedSettings, StorageSettings, TlsSettings,
};
use conclave_edge::config::{ByteSize, Dur};
use conclave_edge::launch::EdgeArgs;
use conclave_edge::{EdgeSettings, OriginSettings};
use conclave_fs::{Access, FileServerSettings, Grant};
use conclave_keys::grants::{IdentityPattern, KeyPattern};
use conclave_keys::{KeyGrant, KeyName, KeyServerSettings};
use conclave_mem::{MemServerSettings, MemSpec, ServerKind};
use conclave_mount::MountSettings;
use conclave_rpc::pki::{self, CertsLayout, CertsOptions, SiteKey};
use conclave_rpc::{Endpoint, Identity, Tenant};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to tell a process is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect succeeds on every one of these addresses.
    Tcp(Vec<SocketAddr>),
    /// A FUSE file system is mounted at this directory (`conclave mount`).
    Mounted(PathBuf),
}

/// One process of a deployment.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Role name for messages (`edge`, `origin`, `keyserver`, ...).
    pub name: String,
    /// What it is, for the CPU accounting of a load.
    pub class: ProcessClass,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// stdout and stderr go here.
    pub log: PathBuf,
    /// Readiness check.
    pub probe: Probe,
    /// The Unix user it runs as (`users = true`); `None`: as its starter.
    pub user: Option<UnixUser>,
    /// Environment variables added to the starter's (nginx's `OPENSSL_CONF`).
    pub env: Vec<(String, String)>,
    /// Commands run to completion just before it starts, once the processes
    /// before it answer (nginx's key reference: `conclave keyref` asks the
    /// running key server for the public key).
    pub setup: Vec<Vec<String>>,
}

impl ProcessSpec {
    /// The same process, run as `user`.
    pub fn run_as(self, user: Option<UnixUser>) -> ProcessSpec {
        ProcessSpec { user, ..self }
    }
}

/// Paths of a prepared deployment.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Processes in start order.
    pub processes: Vec<ProcessSpec>,
    /// What was created (for `up` to print).
    pub created: Vec<PathBuf>,
}

/// Creates what is missing, lays out the run directory (one directory per
/// process with only its identity and secrets, see [`crate::layout`]) and
/// returns the processes. `bin` is the `conclave` binary used for every
/// conclave process. A file server's image is rebuilt here (with `conclave
/// mkfs`) before anything starts.
pub fn prepare(d: &Deployment, bin: &Path, site_key: &SiteKeySource) -> Result<Plan, EvalError> {
    if d.users {
        layout::require_root()?;
    }
    let dir = d.state_dir();
    std::fs::create_dir_all(&dir).map_err(EvalError::io(&dir))?;
    let mut created = Vec::new();
    if ensure_certs(&d.certs)? {
        created.push(d.certs.clone());
    }
    if ensure_content(&d.content, bin)? {
        created.push(d.content.clone());
    }
    let run = RunDir::of(d);
    lay_out(d, &run, site_key)?;
    let mut processes = Vec::new();
    if let Some(f) = &d.fileserver {
        let img = build_image(d, f, bin, &dir)?;
        created.push(img.image.clone());
        // A new image starts a new commit history.
        for p in commit_files(&dir) {
            let _ = std::fs::remove_file(p);
        }
        if let Some(u) = run.user(Part::FileServer) {
            for p in [Some(&img.image), img.tree.as_ref()].into_iter().flatten() {
                layout::chown_tree(p, u)?;
            }
        }
        processes.push(fileserver(d, bin, f.listen, &img, &dir).run_as(run.user(Part::FileServer)));
    }
    if let Some(m) = &d.memserver {
        if d.edge.shared == SharedKind::Smuf {
            let files = dir.join("memfiles");
            std::fs::create_dir_all(&files).map_err(EvalError::io(&files))?;
        }
        processes.push(memserver(bin, d.edge.shared, m.listen, &dir)?.run_as(run.user(Part::MemServer)));
    }
    if d.memserver.is_some() {
        // Kept across restarts, so tickets issued before a restart still resume.
        ensure_secret(&run.dir(Part::Edge).join(TICKET_SECRET), false)?;
    }
    if d.edge.shared == SharedKind::Smc {
        let edir = run.dir(Part::Edge);
        let smc = edir.join("smc");
        std::fs::create_dir_all(&smc).map_err(EvalError::io(&smc))?;
        ensure_secret(&edir.join("smc.secret"), false)?;
    }
    if let Some(k) = &d.keyserver {
        processes.push(keyserver(d, bin, k.listen, &dir).run_as(run.user(Part::KeyServer)));
    }
    processes.extend(origin(&d.origin, &d.content, bin, &dir)?.map(|p| p.run_as(run.user(Part::Origin))));
    if let (EdgeKind::Nginx, Some(f)) = (d.edge.kind, &d.fileserver) {
        // Stock nginx reaches the file server through a FUSE mount in its
        // own directory, as its own identity (users = true excludes nginx).
        processes.push(mount(bin, f.listen, &dir)?);
    }
    processes.push(edge(d, bin, &dir)?.run_as(run.user(Part::Edge)));
    for part in Part::ALL {
        let pdir = run.dir(part);
        if let (Some(u), true) = (run.user(part), pdir.exists()) {
            layout::chown_tree(&pdir, u)?;
        }
    }
    Ok(Plan { processes, created })
}

/// The edge's ticket-sealing secret (memory stores), in its own directory:
/// the memory server sees `TLS_TICKET_KEYS` sealed under it, never the key.
const TICKET_SECRET: &str = "ticket.secret";

/// A part's directory under the state directory `dir`.
fn part_dir(dir: &Path, part: Part) -> PathBuf {
    dir.join(layout::RUN).join(part.name())
}

/// The file server's state file and redo log (docs/fs.md), in its own
/// directory: with `--users` it may not create files beside the image.
fn commit_files(dir: &Path) -> [PathBuf; 2] {
    let p = part_dir(dir, Part::FileServer);
    [p.join("fs.state"), p.join("fs.redo")]
}

/// The run directory: one 0700 directory per process of `d`, each holding
/// that process's identity only (the edge's is `edge@tenant`); the site
/// certificate beside the edge's; the site key moved to its signer. With
/// `users`, `run/` itself is 0711 (each uid may reach its own directory,
/// none may list the others) and every directory above it must let others
/// through.
fn lay_out(d: &Deployment, run: &RunDir, site_key: &SiteKeySource) -> Result<(), EvalError> {
    use std::os::unix::fs::PermissionsExt;
    let root = run.root();
    std::fs::create_dir_all(root).map_err(EvalError::io(root))?;
    let mode = if d.users { 0o711 } else { 0o700 };
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode)).map_err(EvalError::io(root))?;
    if d.users {
        layout::check_traversable(root)?;
    }
    let present = |part: Part| match part {
        Part::FileServer => d.fileserver.is_some(),
        Part::MemServer => d.memserver.is_some(),
        Part::KeyServer => d.keyserver.is_some(),
        Part::Origin => d.origin.kind != OriginKind::External,
        Part::Edge => true,
    };
    for part in Part::ALL.into_iter().filter(|p| present(*p)) {
        // Servers are the default tenant's; the edge is its deployment's
        // tenant's; stock nginx and the origin have no conclave identity.
        let id = match (part, layout::role(part)) {
            // Stock nginx needs an identity only for what signs or mounts for it.
            (Part::Edge, _)
                if d.edge.kind == EdgeKind::Nginx && d.fileserver.is_none() && !nginx_keyless(d) =>
            {
                None
            }
            (Part::Edge, _) => Some(d.edge_identity()),
            (_, role) => role.map(|r| Identity::new(r, Tenant::default())),
        };
        layout::install_identity(run, part, &d.certs, id.as_ref())?;
    }
    if d.keyserver.is_some() {
        std::fs::create_dir_all(run.keys_dir()).map_err(EvalError::io(run.keys_dir()))?;
    }
    let site_crt = CertsLayout::new(&d.certs).site_cert();
    let text = std::fs::read_to_string(&site_crt).map_err(EvalError::io(&site_crt))?;
    pki::write_file(
        &run.dir(Part::Edge).join(CertsLayout::SITE_CERT),
        &text,
        false,
        true,
    )?;
    layout::place_site_key(run, &d.certs, layout::keyless(d), site_key)?;
    Ok(())
}

/// Writes a random 32-byte secret (mode 0600): always when `fresh`, else
/// only unless a usable one (at least 16 bytes) is already there.
fn ensure_secret(path: &Path, fresh: bool) -> Result<(), EvalError> {
    use std::io::Read;
    if !fresh && std::fs::metadata(path).is_ok_and(|m| m.len() >= 16) {
        return Ok(());
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    let rnd = Path::new("/dev/urandom");
    std::fs::File::open(rnd)
        .and_then(|mut f| f.read_exact(&mut bytes[..]))
        .map_err(EvalError::io(rnd))?;
    layout::write_private(path, &bytes[..])
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
        fs_type: conclave_bd::FsType::Ext2,
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

/// What the image of `f` is made of: secret at `run/fileserver/fs.secret` (not for
/// std), tree next to the image (verity, vericrypt).
pub fn image_of(f: &Fileserver, dir: &Path) -> Image {
    Image {
        device: f.device,
        image: f.image.clone(),
        tree: matches!(f.device, Device::Verity | Device::Vericrypt)
            .then(|| PathBuf::from(format!("{}.tree", f.image.display()))),
        secret: (f.device != Device::Std).then(|| part_dir(dir, Part::FileServer).join("fs.secret")),
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

/// Removes a stopped deployment's copy of the site key (the evaluation
/// writes one per cell from memory; see [`SiteKeySource::Bytes`]).
pub fn discard_site_key(d: &Deployment) {
    let run = RunDir::of(d);
    for keyless in [true, false] {
        let _ = std::fs::remove_file(run.site_key_path(keyless));
    }
}

fn write(path: &Path, text: &str) -> Result<(), EvalError> {
    std::fs::write(path, text).map_err(EvalError::io(path))
}

/// Writes the certificates with the same code as `conclave certs` unless
/// they are there (`ca/root.crt` names a `conclave certs` directory).
/// Returns whether it wrote them.
pub fn ensure_certs(certs: &Path) -> Result<bool, EvalError> {
    if CertsLayout::new(certs).ca_cert().exists() {
        return Ok(false);
    }
    let used = std::fs::read_dir(certs).is_ok_and(|mut entries| entries.next().is_some());
    if used {
        return Err(EvalError::Config(format!(
            "{}: not a `conclave certs` directory (no ca/root.crt); run `conclave certs --out {} --force`",
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
            class: ProcessClass::Origin,
            argv: conclave_argv(bin, OriginSettings::new(content, o.listen).to_args()),
            log: dir.join("origin.log"),
            probe: Probe::Tcp(vec![o.listen]),
            user: None,
            env: Vec::new(),
            setup: Vec::new(),
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
                class: ProcessClass::Origin,
                argv: nginx::argv(&nb, &odir, &conf),
                log: dir.join("origin.log"),
                probe: Probe::Tcp(vec![o.listen]),
                user: None,
                env: Vec::new(),
                setup: Vec::new(),
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

/// The name the key server gives the site key (the stem of `server.key`).
pub const SITE_KEY_NAME: &str = "server";

/// The key server's one grant: the deployment's edge identity may use the
/// site key (and sees no other).
pub fn site_key_grant(d: &Deployment) -> Option<KeyGrant> {
    let id = d.edge_identity();
    Some(KeyGrant {
        who: IdentityPattern::exact(id),
        key: KeyPattern::Exact(KeyName::new(SITE_KEY_NAME).ok()?),
    })
}

/// The key server's command line. It serves every `NAME.key` of
/// `run/keyserver/keys/`, which holds only the site key, and grants it to
/// the deployment's edge identity only (`edge@tenant:server`).
fn keyserver(d: &Deployment, bin: &Path, listen: SocketAddr, dir: &Path) -> ProcessSpec {
    let kdir = part_dir(dir, Part::KeyServer);
    let settings = KeyServerSettings {
        grants: site_key_grant(d).into_iter().collect(),
        ..KeyServerSettings::new(kdir.join("keys"), endpoint(listen), kdir)
    };
    ProcessSpec {
        name: "keyserver".into(),
        class: ProcessClass::Keyserver,
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("keyserver.log"),
        probe: Probe::Tcp(vec![listen]),
        user: None,
        env: Vec::new(),
        setup: Vec::new(),
    }
}

/// The memory server's command line (docs/mem.md).
fn memserver(bin: &Path, kind: SharedKind, listen: SocketAddr, dir: &Path) -> Result<ProcessSpec, EvalError> {
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
    // The memory server's default grants (every tenant's edge, in its own
    // namespace; nothing for `client`) are what a deployment needs.
    let settings = MemServerSettings::new(kind, endpoint(listen), part_dir(dir, Part::MemServer));
    Ok(ProcessSpec {
        name: format!("memserver ({})", settings.kind),
        class: ProcessClass::Memserver,
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("memserver.log"),
        probe: Probe::Tcp(vec![listen]),
        user: None,
        env: Vec::new(),
        setup: Vec::new(),
    })
}

/// What the file server grants the edge: its docroot read-only, its
/// caches read-write (paths inside the image, see [`image_tree`]); every
/// other path, and every other identity, gets EACCES.
pub fn fs_grants(d: &Deployment) -> Vec<Grant> {
    let id = d.edge_identity();
    let grant = |access, path: String| Grant {
        who: IdentityPattern::exact(id.clone()),
        access,
        path,
    };
    std::iter::once(grant(Access::ReadOnly, "/html".into()))
        .chain((0..d.edge.site.len()).map(|i| grant(Access::ReadWrite, format!("/cache{i}"))))
        .collect()
}

/// The file server's command line (docs/fs.md) for an image built by
/// `build_image`.
pub fn fileserver(d: &Deployment, bin: &Path, listen: SocketAddr, img: &Image, dir: &Path) -> ProcessSpec {
    let settings = FileServerSettings {
        tree: img.tree.clone(),
        secret_file: img.secret.clone(),
        expect_root: img.root.clone(),
        state_file: Some(commit_files(dir)[0].clone()),
        redo_log: Some(commit_files(dir)[1].clone()),
        grants: fs_grants(d),
        ..FileServerSettings::new(
            img.image.clone(),
            img.device.kind(),
            endpoint(listen),
            part_dir(dir, Part::FileServer),
        )
    };
    ProcessSpec {
        name: format!("fileserver ({})", img.device),
        class: ProcessClass::Fileserver,
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("fileserver.log"),
        probe: Probe::Tcp(vec![listen]),
        user: None,
        env: Vec::new(),
        setup: Vec::new(),
    }
}

/// Where stock nginx's FUSE mount of the file server sits: its cache
/// directories are `MNT/cacheI` (the paths [`fs_grants`] grants the edge).
pub fn nginx_mountpoint(dir: &Path) -> PathBuf {
    part_dir(dir, Part::Edge).join("mnt")
}

/// Whether stock nginx signs through the key server (OpenSSL provider).
fn nginx_keyless(d: &Deployment) -> bool {
    d.edge.kind == EdgeKind::Nginx && layout::keyless(d)
}

/// The key reference nginx's `ssl_certificate_key` names.
pub fn nginx_keyref(dir: &Path) -> PathBuf {
    part_dir(dir, Part::Edge).join("site.keyref")
}

/// The keyless OpenSSL provider next to the `conclave` binary.
fn keyless_module(bin: &Path) -> PathBuf {
    bin.parent()
        .unwrap_or(Path::new("."))
        .join(crate::availability::KEYLESS_MODULE)
}

/// The command that writes nginx's key reference (docs/nginx.md,
/// "Keyless"): `conclave keyref` with the key server, the site key's name
/// and the edge's identity directory. It asks the key server for the
/// public key, so it runs once the key server is up ([`ProcessSpec::setup`]).
fn keyref_argv(d: &Deployment, bin: &Path, dir: &Path) -> Result<Vec<String>, EvalError> {
    let k = d
        .keyserver
        .as_ref()
        .ok_or_else(|| EvalError::Config("edge.key = \"keyserver\" needs a [keyserver] section".into()))?;
    Ok(conclave_argv(
        bin,
        vec![
            "keyref".to_string(),
            "--server".into(),
            endpoint(k.listen).to_string(),
            "--certs".into(),
            part_dir(dir, Part::Edge).display().to_string(),
            "--name".into(),
            SITE_KEY_NAME.into(),
            "--out".into(),
            nginx_keyref(dir).display().to_string(),
        ],
    ))
}

/// `conclave mount` of the file server at [`nginx_mountpoint`], as the
/// edge's identity (installed in the edge's directory). A mount left by a
/// killed run is detached first, so the directory can be mounted again.
fn mount(bin: &Path, listen: SocketAddr, dir: &Path) -> Result<ProcessSpec, EvalError> {
    let mnt = nginx_mountpoint(dir);
    let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    std::fs::create_dir_all(&mnt).map_err(EvalError::io(&mnt))?;
    let settings = MountSettings {
        identity: conclave_rpc::Role::Edge,
        ..MountSettings::new(endpoint(listen), part_dir(dir, Part::Edge), mnt.clone())
    };
    Ok(ProcessSpec {
        name: "mount".into(),
        // nginx's storage client: its CPU is part of the edge's cost.
        class: ProcessClass::Edge,
        argv: conclave_argv(bin, settings.to_args()),
        log: dir.join("mount.log"),
        probe: Probe::Mounted(mnt),
        user: None,
        env: Vec::new(),
        setup: Vec::new(),
    })
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
            let edir = part_dir(dir, Part::Edge);
            // Cache on the host, or inside the image through the mount.
            let cache_top = match d.fileserver {
                Some(_) => nginx_mountpoint(dir),
                None => edir.clone(),
            };
            let keyless = nginx_keyless(d)
                .then(|| crate::nginx_keyless::nginx_snippet(&keyless_module(bin), &nginx_keyref(dir)));
            let mut setup = Vec::new();
            if let Some(k) = &keyless {
                k.write_files().map_err(EvalError::io(&edir))?;
                setup.push(keyref_argv(d, bin, dir)?);
            }
            let sites: Vec<nginx::CacheSite> = d
                .edge
                .site
                .iter()
                .enumerate()
                .map(|(i, s)| nginx::CacheSite {
                    listen: s.listen.to_string(),
                    cache_dir: cache_top.join(format!("cache{i}")),
                    zone: format!("ZONE{i}"),
                })
                .collect();
            let conf = edir.join("nginx.conf");
            let tls = nginx::EdgeTls {
                site_dir: edir.clone(),
                ssl_certificate_key: keyless.as_ref().map(|k| k.ssl_certificate_key.clone()),
                extra_main_conf: keyless
                    .as_ref()
                    .map(|k| k.extra_main_conf.clone())
                    .unwrap_or_default(),
            };
            let text =
                nginx::cache_edge_conf(&edir, d.edge.workers, &sites, &tls, &d.origin.listen.to_string());
            write(&conf, &text)?;
            Ok(ProcessSpec {
                name: "edge (nginx)".into(),
                class: ProcessClass::Edge,
                argv: nginx::argv(&nb, &edir, &conf),
                log: dir.join("edge.log"),
                probe: Probe::Tcp(listens),
                user: None,
                env: keyless.map(|k| k.env).unwrap_or_default(),
                setup,
            })
        }
        EdgeKind::Conclave => {
            let conf = part_dir(dir, Part::Edge).join("edge.toml");
            write(&conf, &edge_toml(d, dir))?;
            Ok(ProcessSpec {
                name: "edge".into(),
                class: ProcessClass::Edge,
                argv: conclave_argv(bin, EdgeArgs::serve(conf).to_args()),
                log: dir.join("edge.log"),
                probe: Probe::Tcp(listens),
                user: None,
                env: Vec::new(),
                setup: Vec::new(),
            })
        }
    }
}

/// The edge's settings (docs/edge.md) for this deployment, as the value
/// `conclave edge` reads back from `edge.toml`.
pub fn edge_settings(d: &Deployment, dir: &Path) -> EdgeSettings {
    let edir = part_dir(dir, Part::Edge);
    let nextfs = d.edge.storage == StorageKind::Nextfs && d.fileserver.is_some();
    let storage = match (d.edge.storage, &d.fileserver) {
        (StorageKind::Nextfs, Some(f)) => StorageSettings::Nextfs {
            server: endpoint(f.listen).to_string(),
            certs: edir.clone(),
        },
        _ => StorageSettings::Host,
    };
    let shared = match (d.edge.shared, &d.memserver) {
        (SharedKind::Smdish, Some(m)) => SharedSettings {
            kind: MemSpec::Smdish {
                endpoint: endpoint(m.listen),
            }
            .to_string(),
            certs: Some(edir.clone()),
            secret_file: None,
            ticket_secret_file: Some(edir.join(TICKET_SECRET)),
            ..SharedSettings::default()
        },
        (SharedKind::Smuf, Some(m)) => SharedSettings {
            kind: MemSpec::Smuf {
                endpoint: endpoint(m.listen),
                dir: dir.join("memfiles"),
            }
            .to_string(),
            certs: Some(edir.clone()),
            secret_file: None,
            ticket_secret_file: Some(edir.join(TICKET_SECRET)),
            ..SharedSettings::default()
        },
        (SharedKind::Smc, _) => {
            let secret = edir.join("smc.secret");
            SharedSettings {
                kind: MemSpec::Smc {
                    dir: edir.join("smc"),
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
        let certificate = edir.join(CertsLayout::SITE_CERT);
        match (d.edge.key, &d.keyserver) {
            (KeyKind::Keyserver, Some(k)) => {
                TlsSettings::key_server(certificate, endpoint(k.listen).to_string(), SITE_KEY_NAME, &edir)
            }
            _ => TlsSettings::key_file(certificate, edir.join(CertsLayout::SITE_KEY)),
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
                            edir.join(format!("cache{i}"))
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
            tenant: None,
            users: false,
            base_uid: crate::deploy::DEFAULT_BASE_UID,
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
        assert_eq!(server["tls"]["key"].as_str(), Some("/s/run/edge/server.key"));
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
        let plan = prepare(&d, Path::new("/bin/false"), &SiteKeySource::Move).unwrap();
        let names: Vec<_> = plan.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["keyserver", "origin", "edge"]);
        let conf = dir.path().join("run/edge/edge.toml").display().to_string();
        assert_eq!(plan.processes[2].argv[1..], ["edge", "--config", &conf]);
        assert_eq!(
            plan.processes[1].argv[1..5],
            ["origin", "--root", &d.content.display().to_string(), "--listen"]
        );
        assert!(d.certs.join("ca/root.crt").exists());
        assert!(dir.path().join("run/edge/edge.toml").exists());
        assert_eq!(plan.created, vec![d.certs.clone()]);
    }

    #[test]
    fn stock_nginx_on_nextfs_caches_inside_a_mount_and_signs_through_the_provider() {
        if nginx::binary().is_none() {
            panic!("this test needs nginx: apt-get install nginx");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut d = dep();
        d.edge.kind = EdgeKind::Nginx;
        d.edge.storage = StorageKind::Nextfs;
        d.edge.key = KeyKind::Keyserver;
        d.keyserver = Some(Keyserver {
            listen: "127.0.0.1:9000".parse().unwrap(),
        });
        d.fileserver = Some(Fileserver {
            device: Device::Vericrypt,
            listen: "127.0.0.1:9200".parse().unwrap(),
            image: "fs.img".into(),
            kdf: Kdf::Cheap,
        });
        d.resolve(dir.path());
        assert_eq!(d.validate(), Ok(()));
        let edir = dir.path().join("run/edge");
        std::fs::create_dir_all(&edir).unwrap();
        let bin = Path::new("/b/conclave");
        let m = mount(bin, "127.0.0.1:9200".parse().unwrap(), dir.path()).unwrap();
        let mnt = edir.join("mnt");
        assert_eq!(m.probe, Probe::Mounted(mnt.clone()));
        assert_eq!(
            m.argv[1..],
            strs(&[
                "mount",
                "--server",
                "tcp://127.0.0.1:9200",
                "--certs",
                &edir.display().to_string(),
                "--identity",
                "edge",
                &mnt.display().to_string(),
            ])
        );
        let e = edge(&d, bin, dir.path()).unwrap();
        let conf = std::fs::read_to_string(edir.join("nginx.conf")).unwrap();
        let keyref = edir.join("site.keyref").display().to_string();
        assert!(
            conf.contains(&format!("proxy_cache_path {}/cache0 ", mnt.display())),
            "{conf}"
        );
        assert!(conf.contains(&format!("ssl_certificate_key {keyref};")), "{conf}");
        assert!(conf.contains("\nenv OPENSSL_CONF;\n"), "{conf}");
        assert_eq!(
            e.env,
            [("OPENSSL_CONF".to_string(), format!("{keyref}.openssl.cnf"))]
        );
        assert_eq!(
            e.setup,
            [strs(&[
                "/b/conclave",
                "keyref",
                "--server",
                "tcp://127.0.0.1:9000",
                "--certs",
                &edir.display().to_string(),
                "--name",
                "server",
                "--out",
                &keyref,
            ])]
        );
        let cnf = std::fs::read_to_string(format!("{keyref}.openssl.cnf")).unwrap();
        assert!(cnf.contains("module = /b/libconclave_openssl.so\n"), "{cnf}");
        // The grants the mount works under: the docroot read-only, the cache read-write.
        let g: Vec<String> = fs_grants(&d).iter().map(|g| g.to_string()).collect();
        assert_eq!(g, ["edge:ro:/html", "edge:rw:/cache0"]);
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
        assert_eq!(v["storage"]["certs"].as_str(), Some("/s/run/edge"));
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
            Some("/s/run/edge/cache0")
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
        assert_eq!(
            v["shared"]["ticket_secret_file"].as_str(),
            Some("/s/run/edge/ticket.secret")
        );
        assert_eq!(v["shared"]["certs"].as_str(), Some("/s/run/edge"));
        d.edge.shared = SharedKind::Smuf;
        let v = table(&d);
        assert_eq!(
            v["shared"]["kind"].as_str(),
            Some("smuf+tcp://127.0.0.1:9100?dir=/s/memfiles")
        );
        assert_eq!(v["shared"]["certs"].as_str(), Some("/s/run/edge"));
        d.memserver = None;
        d.edge.shared = SharedKind::Smc;
        let v = table(&d);
        assert_eq!(
            v["shared"]["kind"].as_str(),
            Some("smc:///s/run/edge/smc?secret=/s/run/edge/smc.secret")
        );
        assert_eq!(
            v["shared"]["secret_file"].as_str(),
            Some("/s/run/edge/smc.secret")
        );
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
                "/s/run/keyserver/keys",
                "--certs",
                "/s/run/keyserver",
                "--listen",
                "tcp://127.0.0.1:9000",
                "--grant",
                "edge:server"
            ])
        );
        let m = memserver(bin, SharedKind::Smuf, "127.0.0.1:9100".parse().unwrap(), dir).unwrap();
        assert_eq!(
            m.argv[1..],
            strs(&[
                "memserver",
                "--kind",
                "smuf",
                "--listen",
                "tcp://127.0.0.1:9100",
                "--certs",
                "/s/run/memserver",
                "--dir",
                "/s/memfiles"
            ])
        );
        assert!(memserver(bin, SharedKind::Smc, "127.0.0.1:9100".parse().unwrap(), dir).is_err());
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
                "/s/run/fileserver/fs.secret",
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
                "/s/run/fileserver/fs.secret",
                "--expect-root",
                &"ab".repeat(32),
                "--state-file",
                "/s/run/fileserver/fs.state",
                "--redo-log",
                "/s/run/fileserver/fs.redo",
                "--listen",
                "tcp://127.0.0.1:9200",
                "--certs",
                "/s/run/fileserver",
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn each_process_directory_holds_only_its_identity_and_the_site_key_moves_to_its_signer() {
        let t = tempfile::tempdir().unwrap();
        let mut d = dep();
        d.edge.key = KeyKind::Keyserver;
        d.keyserver = Some(Keyserver {
            listen: "127.0.0.1:9000".parse().unwrap(),
        });
        d.memserver = Some(Memserver {
            listen: "127.0.0.1:9100".parse().unwrap(),
        });
        d.edge.shared = SharedKind::Smdish;
        d.tenant = Some("acme".into());
        d.certs = "certs".into();
        d.resolve(t.path());
        ensure_certs(&d.certs).unwrap();
        let site_key = std::fs::read(d.certs.join("site/server.key")).unwrap();
        let run = RunDir::of(&d);
        lay_out(&d, &run, &SiteKeySource::Move).unwrap();
        assert_eq!(mode(run.root()), 0o700);
        assert_eq!(names(run.root()), ["edge", "keyserver", "memserver", "origin"]);
        // The edge of tenant acme, issued from the CA because the file names it.
        assert_eq!(
            names(&run.dir(Part::Edge)),
            ["edge.crt", "edge.key", "root.crt", "server.crt"]
        );
        assert_eq!(
            std::fs::read(run.dir(Part::Edge).join("edge.crt")).unwrap(),
            std::fs::read(d.certs.join("edge@acme/edge.crt")).unwrap()
        );
        assert_eq!(
            names(&run.dir(Part::KeyServer)),
            ["keys", "keyserver.crt", "keyserver.key", "root.crt"]
        );
        assert_eq!(names(&run.keys_dir()), ["server.key"]);
        assert_eq!(
            names(&run.dir(Part::MemServer)),
            ["memserver.crt", "memserver.key", "root.crt"]
        );
        assert!(names(&run.dir(Part::Origin)).is_empty());
        for part in [Part::Edge, Part::KeyServer, Part::MemServer, Part::Origin] {
            assert_eq!(mode(&run.dir(part)), 0o700, "{part:?}");
        }
        for key in [
            "edge/edge.key",
            "keyserver/keyserver.key",
            "keyserver/keys/server.key",
        ] {
            assert_eq!(mode(&run.root().join(key)), 0o600, "{key}");
        }
        // Moved, not copied.
        assert!(!d.certs.join("site/server.key").exists());
        assert_eq!(
            std::fs::read(run.keys_dir().join("server.key")).unwrap(),
            site_key
        );
        // Again (a second `up`): the key stays where it is.
        lay_out(&d, &run, &SiteKeySource::Move).unwrap();
        assert_eq!(
            std::fs::read(run.keys_dir().join("server.key")).unwrap(),
            site_key
        );
        // Not keyless any more: it moves to the edge, and leaves the key server.
        d.edge.key = KeyKind::Local;
        d.keyserver = None;
        lay_out(&d, &run, &SiteKeySource::Move).unwrap();
        assert_eq!(
            std::fs::read(run.dir(Part::Edge).join("server.key")).unwrap(),
            site_key
        );
        assert!(names(&run.keys_dir()).is_empty());
        // The CA key is nowhere under run/.
        let ca_key = std::fs::read(d.certs.join("ca/root.key")).unwrap();
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(p).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out)
                } else {
                    out.push(p)
                }
            }
        }
        let mut files = Vec::new();
        walk(run.root(), &mut files);
        for f in files {
            assert_ne!(std::fs::read(&f).unwrap(), ca_key, "{}", f.display());
        }
    }

    #[test]
    fn secrets_are_owner_only_and_kept_unless_fresh() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("smc.secret");
        ensure_secret(&s, false).unwrap();
        let first = std::fs::read(&s).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(mode(&s), 0o600);
        ensure_secret(&s, false).unwrap();
        assert_eq!(std::fs::read(&s).unwrap(), first, "an existing secret is kept");
        ensure_secret(&s, true).unwrap();
        assert_ne!(std::fs::read(&s).unwrap(), first, "fresh means fresh");
    }

    #[test]
    fn a_tenant_edge_gets_grants_for_its_own_identity_only() {
        let mut d = dep();
        d.tenant = Some("acme".into());
        d.edge.site.push(Site {
            listen: "127.0.0.1:8444".parse().unwrap(),
            server_name: "other".into(),
        });
        let fs: Vec<String> = fs_grants(&d).iter().map(|g| g.to_string()).collect();
        assert_eq!(
            fs,
            [
                "edge@acme:ro:/html",
                "edge@acme:rw:/cache0",
                "edge@acme:rw:/cache1"
            ]
        );
        assert_eq!(site_key_grant(&d).unwrap().to_string(), "edge@acme:server");
        d.users = true;
        let run = RunDir::of(&d);
        assert_eq!(
            run.user(Part::FileServer),
            Some(UnixUser {
                uid: 64000,
                gid: 64000
            })
        );
        assert_eq!(
            run.user(Part::Edge),
            Some(UnixUser {
                uid: 64004,
                gid: 64004
            })
        );
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
        std::fs::create_dir_all(t.path().join("run/fileserver")).unwrap();
        for f in [
            "fs.img",
            "fs.img.tree",
            "run/fileserver/fs.secret",
            "fileserver.log",
        ] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        discard_image(&d);
        assert_eq!(names(t.path()), ["fileserver.log", "run"]);
        assert!(names(&t.path().join("run/fileserver")).is_empty());
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
