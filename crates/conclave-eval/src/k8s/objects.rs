//! The workloads, Services, ConfigMap, Namespace and autoscaler of a fleet:
//! each pod restricted (non-root, read-only root file system, no
//! capabilities, RuntimeDefault seccomp), each part's identity installed
//! by its own init container into a memory `emptyDir` only that part mounts.

use super::secrets::{self, SecretFile};
use super::{EdgeWorkload, K8sOptions, Names};
use crate::deploy::{Deployment, Fileserver, KeyKind, Mode, SharedKind, StorageKind};
use crate::layout::Part;
use crate::plan;
use crate::EvalError;
use conclave_edge::config::schema::StorageSettings;
use conclave_edge::config::TicketSource;
use conclave_edge::launch::EdgeArgs;
use conclave_fs::FileServerSettings;
use conclave_keys::KeyServerSettings;
use conclave_mem::{MemServerSettings, ServerKind};
use conclave_rpc::Endpoint;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The state directory inside every container (what `up` calls `DIR`):
/// `ROOT/run/<part>/` is the part's own directory, as on one machine.
pub const ROOT: &str = "/var/lib/conclave";
/// The binary in the image (deploy/Containerfile).
pub const BINARY: &str = "/usr/bin/conclave";
/// The edge's admin listener (`/healthz`, `/readyz`, `/metrics`), on the
/// pod's loopback: probes run `conclave deploy probe` inside the pod.
pub const ADMIN_PORT: u16 = 9901;
/// Where a part's Secret is mounted in its init container.
const SECRET_MOUNT: &str = "/etc/conclave/identity";
/// The file server's volume (image, tree, sealed state).
const DATA: &str = "/var/lib/conclave/data";
/// Scratch space of the file server's first-start `mkfs`.
const SCRATCH: &str = "/var/lib/conclave/scratch";
/// The edge's config (ConfigMap).
const EDGE_CONFIG_DIR: &str = "/etc/conclave/edge";
/// The uid and gid every container runs as (Debian's `nonroot` convention).
pub const UID: u32 = 65532;

/// The ports of the parts a deployment has (the servers' ports are the
/// deployment file's; in the fleet they listen on the pod's address).
#[derive(Clone, Debug)]
pub(crate) struct Parts {
    /// The edge's HTTPS ports, one per site.
    pub sites: Vec<u16>,
    /// Key server port.
    pub keyserver: Option<u16>,
    /// File server port.
    pub fileserver: Option<u16>,
    /// Memory server port (the sidecar's, on the edge pod's loopback).
    pub memserver: Option<u16>,
}

impl Parts {
    pub fn of(d: &Deployment) -> Parts {
        Parts {
            sites: d.edge.site.iter().map(|s| s.listen.port()).collect(),
            keyserver: d
                .keyserver
                .as_ref()
                .filter(|_| d.edge.key == KeyKind::Keyserver)
                .map(|k| k.listen.port()),
            fileserver: d
                .fileserver
                .as_ref()
                .filter(|_| d.edge.storage == StorageKind::Nextfs)
                .map(|f| f.listen.port()),
            memserver: d
                .memserver
                .as_ref()
                .filter(|_| d.edge.shared == SharedKind::Smdish)
                .map(|m| m.listen.port()),
        }
    }
}

/// The labels every object of a component carries (also its selector).
pub(crate) fn labels(n: &Names, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "conclave",
        "app.kubernetes.io/instance": n.instance,
        "app.kubernetes.io/component": component,
    })
}

fn metadata(n: &Names, name: String, component: &str) -> Value {
    json!({ "name": name, "namespace": n.ns, "labels": labels(n, component) })
}

/// The namespace, enforcing the restricted Pod Security level.
pub(crate) fn namespace(n: &Names) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": n.ns,
            "labels": {
                "app.kubernetes.io/name": "conclave",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }
        }
    })
}

/// Every pod: non-root with one fixed uid, RuntimeDefault seccomp; the
/// group lets init containers read their Secret (which the kubelet makes
/// 0440 for the group) and nothing else of another part's.
fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// Every container: the restricted profile, stated on each container so it
/// holds whatever the pod says.
fn container_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Value {
    json!({
        "requests": { "cpu": cpu, "memory": memory },
        "limits": { "memory": memory_limit },
    })
}

/// A part's own directory, `ROOT/run/<part>`.
fn run_dir(part: Part) -> PathBuf {
    Path::new(ROOT).join(crate::layout::RUN).join(part.name())
}

/// The volume (memory `emptyDir`) holding a part's installed identity.
fn run_volume(part: Part) -> String {
    format!("{}-run", part.name())
}

/// The volume of a part's Secret.
fn secret_volume(part: Part) -> String {
    format!("{}-secret", part.name())
}

/// The part's Secret as a volume (files 0400; the kubelet adds group read
/// for `fsGroup`), each key at its path under the part's directory.
fn secret_volume_of(n: &Names, part: Part, files: &[SecretFile]) -> Value {
    let items: Vec<Value> = files
        .iter()
        .map(|f| json!({ "key": f.key, "path": f.path }))
        .collect();
    json!({
        "name": secret_volume(part),
        "secret": {
            "secretName": secrets::secret_name(n, part),
            "defaultMode": 0o400,
            "items": items,
        }
    })
}

fn memory_volume(name: String, size: &str) -> Value {
    json!({ "name": name, "emptyDir": { "medium": "Memory", "sizeLimit": size } })
}

/// The init container that installs a part's Secret into its directory,
/// mode 0600 and owned by the pod's uid, as the part's processes demand of
/// private files; `dirs` are made beside them (caches).
fn install_identity(o: &K8sOptions, part: Part, files: &[SecretFile], dirs: &[PathBuf]) -> Value {
    let dest = run_dir(part);
    let mut script = String::from("set -eu\numask 077\n");
    for f in files {
        script.push_str(&format!(
            "install -D -m 0600 {} {}\n",
            sh_quote(&format!("{SECRET_MOUNT}/{}", f.path)),
            sh_quote(&dest.join(&f.path).display().to_string())
        ));
    }
    for d in dirs {
        script.push_str(&format!("mkdir -p {}\n", sh_quote(&d.display().to_string())));
    }
    json!({
        "name": format!("{}-identity", part.name()),
        "image": o.image,
        "command": ["/bin/sh", "-c", script],
        "securityContext": container_security(),
        "resources": resources("10m", "16Mi", "32Mi"),
        "volumeMounts": [
            { "name": secret_volume(part), "mountPath": SECRET_MOUNT, "readOnly": true },
            { "name": run_volume(part), "mountPath": dest.display().to_string() },
        ],
    })
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn argv(args: Vec<String>) -> Value {
    json!(std::iter::once(BINARY.to_string())
        .chain(args)
        .collect::<Vec<_>>())
}

/// A probe that runs `conclave deploy probe TARGET` in the container.
fn exec_probe(target: String, period: u32) -> Value {
    json!({
        "exec": { "command": [BINARY, "deploy", "probe", target] },
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    })
}

fn tcp_probe(port: u16, period: u32) -> Value {
    json!({
        "tcpSocket": { "port": port },
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    })
}

fn tcp_endpoint(host: &str, port: u16) -> Endpoint {
    Endpoint::Tcp(format!("{host}:{port}"))
}

/// The edge's `edge.toml`: [`plan::edge_settings`] laid out under [`ROOT`],
/// listening on the pod's address, reaching the key and file servers by
/// their Services and the memory server on the pod's loopback; plus the
/// admin listener the probes use.
pub(crate) fn edge_toml(
    d: &Deployment,
    o: &K8sOptions,
    n: &Names,
    parts: &Parts,
) -> Result<String, EvalError> {
    let mut local = d.clone();
    local.content = Path::new(ROOT).join("html");
    let mut s = plan::edge_settings(&local, Path::new(ROOT));
    let origin = o
        .origin
        .clone()
        .unwrap_or_else(|| format!("http://origin:{}", d.origin.listen.port()));
    for site in &mut s.server {
        let port = site
            .listen
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        site.listen = format!("0.0.0.0:{port}");
        if d.edge.mode == Mode::Cache {
            site.proxy_pass = Some(origin.clone());
        }
        if let (Some(_), Some(port)) = (&site.tls.keyserver, parts.keyserver) {
            site.tls.keyserver = Some(tcp_endpoint(&n.service_host("keyserver"), port).to_string());
        }
    }
    // One source of ticket keys for the fleet: the key servers hand out
    // per-epoch keys, so a client resumes on any node (docs/fleet-runtime.md).
    if let Some(port) = parts.keyserver {
        let certs = s.server.iter().find_map(|site| site.tls.certs.clone());
        s.shared.ticket_source = TicketSource::Keyserver;
        s.shared.ticket_keyservers = vec![tcp_endpoint(&n.service_host("keyserver"), port).to_string()];
        s.shared.ticket_secret_file = None;
        if s.shared.certs.is_none() {
            s.shared.certs = certs;
        }
    }
    if let (StorageSettings::Nextfs { server, .. }, Some(port)) = (&mut s.storage, parts.fileserver) {
        *server = tcp_endpoint(&n.service_host("fileserver"), port).to_string();
    }
    let mut table: toml::Table = toml::from_str(&s.to_toml())
        .map_err(|e| EvalError::Config(format!("edge settings do not read back: {e}")))?;
    // `[admin] listen` (docs/operations.md): on loopback, as the edge demands
    // of a listener without mTLS; the probes run inside the pod.
    let mut admin = toml::Table::new();
    admin.insert(
        "listen".into(),
        toml::Value::String(format!("127.0.0.1:{ADMIN_PORT}")),
    );
    table.insert("admin".into(), toml::Value::Table(admin));
    Ok(format!(
        "# generated by `conclave deploy k8s` from deployment {}\n{}",
        toml::Value::String(d.name.clone()),
        toml::to_string(&table).map_err(|e| EvalError::Config(format!("edge.toml: {e}")))?
    ))
}

/// The ConfigMap holding `edge.toml`.
pub(crate) fn edge_config(
    d: &Deployment,
    o: &K8sOptions,
    n: &Names,
    parts: &Parts,
) -> Result<Value, EvalError> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(n, n.name("edge-config"), "edge"),
        "data": { "edge.toml": edge_toml(d, o, n, parts)? },
    }))
}

fn container_port(name: &str, port: u16) -> Value {
    json!({ "name": name, "containerPort": port, "protocol": "TCP" })
}

/// The key servers: a Deployment, each replica holding the site key.
pub(crate) fn keyserver(d: &Deployment, o: &K8sOptions, n: &Names, parts: &Parts) -> Value {
    let port = parts.keyserver.unwrap_or_default();
    let dir = run_dir(Part::KeyServer);
    let settings = KeyServerSettings {
        grants: plan::site_key_grant(d).into_iter().collect(),
        ticket_keys: Some(dir.join(secrets::TICKET_KEYS)),
        ..KeyServerSettings::new(dir.join("keys"), tcp_endpoint("0.0.0.0", port), dir.clone())
    };
    let files = secrets::files(d, Part::KeyServer);
    let selector = labels(n, "keyserver");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(n, n.name("keyserver"), "keyserver"),
        "spec": {
            "replicas": o.keyservers,
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": selector },
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "affinity": spread(n, "keyserver", false),
                    "initContainers": [install_identity(o, Part::KeyServer, &files, &[])],
                    "containers": [{
                        "name": "keyserver",
                        "image": o.image,
                        "command": argv(settings.to_args()),
                        "ports": [container_port("rpc", port)],
                        "securityContext": container_security(),
                        "resources": resources("500m", "64Mi", "256Mi"),
                        "readinessProbe": tcp_probe(port, 5),
                        "livenessProbe": tcp_probe(port, 10),
                        "volumeMounts": [{ "name": run_volume(Part::KeyServer), "mountPath": dir.display().to_string(), "readOnly": true }],
                    }],
                    "volumes": [
                        secret_volume_of(n, Part::KeyServer, &files),
                        memory_volume(run_volume(Part::KeyServer), "16Mi"),
                    ],
                }
            }
        }
    })
}

/// Pods of a component on distinct nodes: required (one file server or
/// edge per node) or preferred (key servers).
fn spread(n: &Names, component: &str, required: bool) -> Value {
    let term = json!({
        "labelSelector": { "matchLabels": labels(n, component) },
        "topologyKey": "kubernetes.io/hostname",
    });
    if required {
        json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term] } })
    } else {
        json!({ "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 100, "podAffinityTerm": term }
        ] } })
    }
}

/// The file servers: a StatefulSet, one per node, each with its own volume
/// for the image, its tree and sealed root. The image is made by `conclave
/// mkfs` on the first start (empty `html/`, one `cacheI/` per site) and kept.
pub(crate) fn fileserver(d: &Deployment, f: &Fileserver, o: &K8sOptions, n: &Names, parts: &Parts) -> Value {
    let port = parts.fileserver.unwrap_or_default();
    let dir = run_dir(Part::FileServer);
    let mut f = f.clone();
    f.image = Path::new(DATA).join("fs.img");
    let img = plan::image_of(&f, Path::new(ROOT));
    let settings = FileServerSettings {
        tree: img.tree.clone(),
        secret_file: img.secret.clone(),
        grants: plan::fs_grants(d),
        ..FileServerSettings::new(
            img.image.clone(),
            img.device.kind(),
            tcp_endpoint("0.0.0.0", port),
            dir.clone(),
        )
    };
    let top = Path::new(SCRATCH).join("top");
    let mkfs = plan::mkfs_argv(Path::new(BINARY), &img, f.kdf, &top);
    let mut script = format!(
        "set -eu\numask 077\nif [ -e {} ]; then exit 0; fi\nmkdir -p {}\n",
        sh_quote(&img.image.display().to_string()),
        sh_quote(&top.join("html").display().to_string())
    );
    for i in 0..d.edge.site.len() {
        script.push_str(&format!(
            "mkdir -p {}\n",
            sh_quote(&top.join(format!("cache{i}")).display().to_string())
        ));
    }
    script.push_str("exec");
    for a in mkfs {
        script.push(' ');
        script.push_str(&sh_quote(&a));
    }
    script.push('\n');
    let files = secrets::files(d, Part::FileServer);
    let selector = labels(n, "fileserver");
    let run_mount = json!({ "name": run_volume(Part::FileServer), "mountPath": dir.display().to_string(), "readOnly": true });
    let data_mount = json!({ "name": "data", "mountPath": DATA });
    let mut claim = json!({
        "metadata": { "name": "data", "labels": selector },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": o.volume_size } },
        }
    });
    if let Some(class) = &o.storage_class {
        claim["spec"]["storageClassName"] = json!(class);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(n, n.name("fileserver"), "fileserver"),
        "spec": {
            "serviceName": n.name("fileserver"),
            "replicas": o.nodes,
            "selector": { "matchLabels": selector },
            "template": {
                "metadata": { "labels": selector },
                "spec": {
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "affinity": spread(n, "fileserver", true),
                    "initContainers": [
                        install_identity(o, Part::FileServer, &files, &[]),
                        {
                            "name": "fileserver-mkfs",
                            "image": o.image,
                            "command": ["/bin/sh", "-c", script],
                            "env": [{ "name": "TMPDIR", "value": SCRATCH }],
                            "securityContext": container_security(),
                            "resources": resources("250m", "128Mi", "512Mi"),
                            "volumeMounts": [
                                run_mount,
                                data_mount,
                                { "name": "scratch", "mountPath": SCRATCH },
                            ],
                        }
                    ],
                    "containers": [{
                        "name": "fileserver",
                        "image": o.image,
                        "command": argv(settings.to_args()),
                        "ports": [container_port("rpc", port)],
                        "securityContext": container_security(),
                        "resources": resources("250m", "128Mi", "512Mi"),
                        "readinessProbe": tcp_probe(port, 5),
                        "livenessProbe": tcp_probe(port, 10),
                        "volumeMounts": [run_mount, data_mount],
                    }],
                    "volumes": [
                        secret_volume_of(n, Part::FileServer, &files),
                        memory_volume(run_volume(Part::FileServer), "16Mi"),
                        { "name": "scratch", "emptyDir": { "sizeLimit": "512Mi" } },
                    ],
                }
            },
            "volumeClaimTemplates": [claim],
        }
    })
}

/// The edge pods: the edge and, with smdish, its memory-server sidecar on
/// the pod's loopback. Each pod sits on a node with a file server (reached
/// through a node-local Service) and no other edge pod, so a node's cache
/// has one index.
pub(crate) fn edge(d: &Deployment, o: &K8sOptions, n: &Names, parts: &Parts) -> Value {
    let dir = run_dir(Part::Edge);
    let files = secrets::files(d, Part::Edge);
    let mut dirs = Vec::new();
    if d.edge.mode == Mode::Cache && d.edge.storage == StorageKind::Host {
        dirs.extend((0..d.edge.site.len()).map(|i| dir.join(format!("cache{i}"))));
    }
    if d.edge.shared == SharedKind::Smc {
        dirs.push(dir.join("smc"));
    }
    let config = Path::new(EDGE_CONFIG_DIR).join("edge.toml");
    let args = EdgeArgs::serve(config).to_args();
    let ports: Vec<Value> = parts
        .sites
        .iter()
        .enumerate()
        .map(|(i, p)| container_port(&format!("https-{i}"), *p))
        .collect();
    let admin = |path: &str| format!("http://127.0.0.1:{ADMIN_PORT}/{path}");
    let mut init = vec![install_identity(o, Part::Edge, &files, &dirs)];
    let mut containers = vec![json!({
        "name": "edge",
        "image": o.image,
        "command": argv(args),
        "ports": ports,
        "securityContext": container_security(),
        "resources": resources("1", "256Mi", "1Gi"),
        "readinessProbe": exec_probe(admin("readyz"), 5),
        "livenessProbe": exec_probe(admin("healthz"), 10),
        "volumeMounts": [
            { "name": run_volume(Part::Edge), "mountPath": dir.display().to_string() },
            { "name": "edge-config", "mountPath": EDGE_CONFIG_DIR, "readOnly": true },
        ],
    })];
    let mut volumes = vec![
        secret_volume_of(n, Part::Edge, &files),
        memory_volume(run_volume(Part::Edge), "128Mi"),
        json!({ "name": "edge-config", "configMap": { "name": n.name("edge-config") } }),
    ];
    if let Some(port) = parts.memserver {
        let mdir = run_dir(Part::MemServer);
        let mfiles = secrets::files(d, Part::MemServer);
        let settings =
            MemServerSettings::new(ServerKind::Smdish, tcp_endpoint("127.0.0.1", port), mdir.clone());
        init.push(install_identity(o, Part::MemServer, &mfiles, &[]));
        containers.push(json!({
            "name": "memserver",
            "image": o.image,
            "command": argv(settings.to_args()),
            "securityContext": container_security(),
            "resources": resources("250m", "64Mi", "256Mi"),
            "readinessProbe": exec_probe(format!("tcp://127.0.0.1:{port}"), 5),
            "livenessProbe": exec_probe(format!("tcp://127.0.0.1:{port}"), 10),
            "volumeMounts": [{ "name": run_volume(Part::MemServer), "mountPath": mdir.display().to_string(), "readOnly": true }],
        }));
        volumes.push(secret_volume_of(n, Part::MemServer, &mfiles));
        volumes.push(memory_volume(run_volume(Part::MemServer), "16Mi"));
    }
    let selector = labels(n, "edge");
    let mut affinity = spread(n, "edge", true);
    if parts.fileserver.is_some() {
        affinity["podAffinity"] = json!({ "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": { "matchLabels": labels(n, "fileserver") },
            "topologyKey": "kubernetes.io/hostname",
        }] });
    }
    let template = json!({
        "metadata": { "labels": selector },
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": pod_security(),
            "affinity": affinity,
            "initContainers": init,
            "containers": containers,
            "volumes": volumes,
        }
    });
    match o.edge_workload {
        EdgeWorkload::Deployment => json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(n, n.name("edge"), "edge"),
            "spec": {
                "replicas": o.min_edges,
                "selector": { "matchLabels": selector },
                "template": template,
            }
        }),
        EdgeWorkload::Daemonset => json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": metadata(n, n.name("edge"), "edge"),
            "spec": {
                "selector": { "matchLabels": selector },
                "template": template,
            }
        }),
    }
}

fn service_port(name: &str, port: u16) -> Value {
    json!({ "name": name, "port": port, "targetPort": port, "protocol": "TCP" })
}

/// The Services: the edges' (LoadBalancer, clients' entry), the key
/// servers' (any ready replica) and the file servers' (node-local: an edge
/// reaches the file server of its own node only).
pub(crate) fn services(_d: &Deployment, n: &Names, parts: &Parts) -> Vec<Value> {
    let ports: Vec<Value> = parts
        .sites
        .iter()
        .enumerate()
        .map(|(i, p)| service_port(&format!("https-{i}"), *p))
        .collect();
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(n, n.name("edge"), "edge"),
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": labels(n, "edge"),
            "ports": ports,
        }
    })];
    if let Some(port) = parts.keyserver {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(n, n.name("keyserver"), "keyserver"),
            "spec": {
                "selector": labels(n, "keyserver"),
                "ports": [service_port("rpc", port)],
            }
        }));
    }
    if let Some(port) = parts.fileserver {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(n, n.name("fileserver"), "fileserver"),
            "spec": {
                "selector": labels(n, "fileserver"),
                "internalTrafficPolicy": "Local",
                "ports": [service_port("rpc", port)],
            }
        }));
    }
    out
}

/// The edges' autoscaler: CPU-driven, at most one edge per file-server node.
pub(crate) fn autoscaler(o: &K8sOptions, n: &Names) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(n, n.name("edge"), "edge"),
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": n.name("edge") },
            "minReplicas": o.min_edges,
            "maxReplicas": o.nodes,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": o.cpu_target } },
            }],
        }
    })
}
