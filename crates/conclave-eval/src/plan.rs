//! From a [`Deployment`] to what `up` runs: creates the missing inputs
//! (certificates, content, edge config) and lists the processes in
//! dependency order (file server, memory server, key server, origin, edge),
//! each with the probe that says it is ready.
//!
//! The command lines of the kernel servers live here, one function each, so
//! when a server lands only its function (and its preset) changes.

use crate::deploy::{
    Deployment, Device, EdgeKind, KeyKind, Mode, Origin, OriginKind, SharedKind, StorageKind,
};
use crate::{nginx, EvalError};
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
/// `conclave` binary used for every conclave process.
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
        processes.push(fileserver(d, bin, f.device, f.listen, &f.image, &dir));
    }
    if let Some(m) = &d.memserver {
        processes.push(memserver(d, bin, d.edge.shared, m.listen, &dir)?);
    }
    if let Some(k) = &d.keyserver {
        processes.push(keyserver(d, bin, k.listen, &dir));
    }
    processes.extend(origin(&d.origin, &d.content, bin, &dir)?);
    processes.push(edge(d, bin, &dir)?);
    Ok(Plan { processes, created })
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
            argv: vec![
                bin.display().to_string(),
                "origin".into(),
                "--root".into(),
                content.display().to_string(),
                "--listen".into(),
                o.listen.to_string(),
            ],
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

fn tcp(a: SocketAddr) -> String {
    format!("tcp://{a}")
}

/// The key server's command line (issue: key server). Key file and mTLS
/// identity both come from the certificates directory.
fn keyserver(d: &Deployment, bin: &Path, listen: SocketAddr, dir: &Path) -> ProcessSpec {
    ProcessSpec {
        name: "keyserver".into(),
        argv: vec![
            bin.display().to_string(),
            "keyserver".into(),
            "--listen".into(),
            tcp(listen),
            "--certs".into(),
            d.certs.display().to_string(),
            "--key".into(),
            d.certs.join("server.key").display().to_string(),
        ],
        log: dir.join("keyserver.log"),
        probe: Probe::Tcp(vec![listen]),
    }
}

/// The memory server's command line (issue: memory servers).
fn memserver(
    d: &Deployment,
    bin: &Path,
    kind: SharedKind,
    listen: SocketAddr,
    dir: &Path,
) -> Result<ProcessSpec, EvalError> {
    let kind = match kind {
        SharedKind::Smdish => "smdish",
        SharedKind::Smuf => "smuf",
        other => {
            return Err(EvalError::Config(format!(
                "[memserver] given but edge.shared = {other:?} needs none"
            )))
        }
    };
    let mut argv = vec![
        bin.display().to_string(),
        "memserver".into(),
        "--kind".into(),
        kind.into(),
        "--listen".into(),
        tcp(listen),
        "--certs".into(),
        d.certs.display().to_string(),
    ];
    if kind == "smuf" {
        argv.extend(["--dir".into(), dir.join("memfiles").display().to_string()]);
    }
    Ok(ProcessSpec {
        name: format!("memserver ({kind})"),
        argv,
        log: dir.join("memserver.log"),
        probe: Probe::Tcp(vec![listen]),
    })
}

/// The file server's command line (issue: file server). The image is built
/// from the content directory by the file server's own tools.
fn fileserver(
    d: &Deployment,
    bin: &Path,
    device: Device,
    listen: SocketAddr,
    image: &Path,
    dir: &Path,
) -> ProcessSpec {
    ProcessSpec {
        name: format!("fileserver ({device})"),
        argv: vec![
            bin.display().to_string(),
            "fileserver".into(),
            "--device".into(),
            device.to_string(),
            "--image".into(),
            image.display().to_string(),
            "--content".into(),
            d.content.display().to_string(),
            "--listen".into(),
            tcp(listen),
            "--certs".into(),
            d.certs.display().to_string(),
        ],
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
                argv: vec![
                    bin.display().to_string(),
                    "edge".into(),
                    "--config".into(),
                    conf.display().to_string(),
                ],
                log: dir.join("edge.log"),
                probe: Probe::Tcp(listens),
            })
        }
    }
}

fn q(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The `conclave edge` config (docs/edge.md) for this deployment.
pub fn edge_toml(d: &Deployment, dir: &Path) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# generated by conclave from deployment {}", toml_str(&d.name));
    let _ = writeln!(
        o,
        "workers = {}\nworker_connections = 4096\naccess_log = \"off\"\n",
        d.edge.workers
    );
    o.push_str("[storage]\n");
    match (d.edge.storage, &d.fileserver) {
        (StorageKind::Nextfs, Some(f)) => {
            let _ = writeln!(
                o,
                "kind = \"nextfs\"\nserver = {}\ncerts = {}",
                toml_str(&tcp(f.listen)),
                q(&d.certs)
            );
        }
        _ => o.push_str("kind = \"host\"\n"),
    }
    o.push_str("\n[shared]\n");
    match (d.edge.shared, &d.memserver) {
        (SharedKind::Smdish, Some(m)) => {
            let _ = writeln!(o, "kind = {}", toml_str(&format!("smdish+{}", tcp(m.listen))));
        }
        (SharedKind::Smuf, Some(m)) => {
            let spec = format!("smuf+{}?dir={}", tcp(m.listen), dir.join("memfiles").display());
            let _ = writeln!(o, "kind = {}", toml_str(&spec));
        }
        (SharedKind::Smc, _) => {
            let _ = writeln!(
                o,
                "kind = {}",
                toml_str(&format!("smc://{}", dir.join("smc").display()))
            );
        }
        _ => o.push_str("kind = \"local\"\n"),
    }
    for (i, s) in d.edge.site.iter().enumerate() {
        let _ = writeln!(
            o,
            "\n[[server]]\nlisten = \"{}\"\nserver_name = [{}]",
            s.listen,
            toml_str(&s.server_name)
        );
        match d.edge.mode {
            Mode::Cache => {
                let _ = writeln!(o, "mode = \"cache\"\nproxy_pass = \"http://{}\"", d.origin.listen);
            }
            Mode::Standalone => {
                let _ = writeln!(o, "mode = \"standalone\"\nroot = {}", q(&d.content));
            }
        }
        let _ = writeln!(
            o,
            "\n[server.tls]\ncertificate = {}",
            q(&d.certs.join("server.crt"))
        );
        match (d.edge.key, &d.keyserver) {
            (KeyKind::Keyserver, Some(k)) => {
                let _ = writeln!(
                    o,
                    "keyserver = {}\nkey_name = \"server\"\ncerts = {}",
                    toml_str(&tcp(k.listen)),
                    q(&d.certs)
                );
            }
            _ => {
                let _ = writeln!(o, "key = {}", q(&d.certs.join("server.key")));
            }
        }
        if d.edge.mode == Mode::Cache {
            let _ = writeln!(
                o,
                "\n[server.cache]\npath = {}\nkeys_zone = \"ZONE{i}:16k\"\nmax_size = \"10m\"\n\
                 inactive = \"60m\"\nvalid = \"60m\"\nmin_uses = 1",
                q(&dir.join(format!("cache{i}")))
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{Edge, Keyserver, Site};

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
        assert_eq!(server["tls"]["key"].as_str(), Some("/s/certs/server.key"));
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
        assert!(d.certs.join("root.crt").exists() && d.certs.join("server.key").exists());
        assert!(dir.path().join("edge.toml").exists());
        assert_eq!(plan.created, vec![d.certs.clone()]);
    }
}
