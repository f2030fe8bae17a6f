//! `conclave deploy k8s`: the deployment file `conclave up` reads, rendered
//! as Kubernetes objects for a fleet (docs/fleet.md). Per node: an edge pod
//! (edge + memory-server sidecar) and a file server (StatefulSet, its image,
//! tree and sealed state on a PersistentVolumeClaim); per fleet: replicated
//! key servers behind one Service.
//!
//! What `up` lays out as `DIR/run/<part>/` (see [`crate::layout`]) becomes,
//! per part, one Secret mounted only into that part's own init container,
//! which installs it (mode 0600, as `conclave_secret::read_private` demands)
//! into a memory-backed `emptyDir` that only the part's own containers
//! mount. The servers' command lines come from their settings types
//! (`to_args()`), the edge's config from [`crate::plan::edge_settings`], so
//! no flag or TOML key is spelled here either; the objects are
//! `serde_json` values written as YAML, never string templates.

mod objects;
mod policy;
mod secrets;

use crate::deploy::{Deployment, EdgeKind, SharedKind};
use crate::EvalError;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub use objects::{ADMIN_PORT, BINARY, ROOT};

/// How edge pods are run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EdgeWorkload {
    /// A Deployment scaled by a HorizontalPodAutoscaler (at most one edge
    /// pod per node, each beside that node's file server).
    Deployment,
    /// One edge pod on every node that has a file server.
    Daemonset,
}

/// The fleet-level choices the deployment file does not hold (it describes
/// one machine): flags of `conclave deploy k8s`, mirrored by the Helm
/// chart's `values.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct K8sOptions {
    /// Namespace of every object (created, with the restricted Pod Security level).
    #[arg(long, default_value = "conclave")]
    pub namespace: String,
    /// Container image holding `/usr/bin/conclave` (deploy/Containerfile).
    #[arg(long, default_value = "conclave:0.1.0")]
    pub image: String,
    /// Nodes of the fleet: file-server replicas, one per node, and the most
    /// edge pods the autoscaler may run.
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Key-server replicas (the edges reach them through one Service).
    #[arg(long, default_value_t = 2)]
    pub keyservers: u32,
    /// Edge pods as a Deployment with an autoscaler, or a DaemonSet.
    #[arg(long, value_enum, default_value = "deployment")]
    pub edge_workload: EdgeWorkload,
    /// Fewest edge pods the autoscaler keeps.
    #[arg(long, default_value_t = 1)]
    pub min_edges: u32,
    /// CPU utilisation (percent of the request) the autoscaler aims for.
    #[arg(long, default_value_t = 70)]
    pub cpu_target: u32,
    /// The origin the edges proxy to (cache mode), as `http://HOST:PORT`;
    /// default: `http://origin:PORT` with the deployment's origin port.
    #[arg(long)]
    pub origin: Option<String>,
    /// Size of each file server's volume (image, tree and sealed state).
    #[arg(long, default_value = "1Gi")]
    pub volume_size: String,
    /// Storage class of the file servers' volumes (default: the cluster's).
    #[arg(long)]
    pub storage_class: Option<String>,
}

impl Default for K8sOptions {
    fn default() -> Self {
        K8sOptions {
            namespace: "conclave".into(),
            image: "conclave:0.1.0".into(),
            nodes: 3,
            keyservers: 2,
            edge_workload: EdgeWorkload::Deployment,
            min_edges: 1,
            cpu_target: 70,
            origin: None,
            volume_size: "1Gi".into(),
            storage_class: None,
        }
    }
}

/// One manifest file: its name in the output directory and its objects.
#[derive(Clone, Debug)]
pub struct ManifestFile {
    /// File name (`NN-what.yaml`, so `kubectl apply -f DIR` creates the
    /// namespace first).
    pub name: &'static str,
    /// Whether it holds secrets (written 0600, kept when present).
    pub secret: bool,
    /// The objects.
    pub objects: Vec<Value>,
}

/// Every object of a fleet, grouped into files.
#[derive(Clone, Debug)]
pub struct Manifests {
    /// The files, in apply order.
    pub files: Vec<ManifestFile>,
}

/// The names the objects of one rendering share.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    /// Namespace.
    pub ns: String,
    /// Prefix of every object name: the deployment's name as a DNS label.
    pub prefix: String,
    /// `app.kubernetes.io/instance`.
    pub instance: String,
}

impl Names {
    fn of(d: &Deployment, o: &K8sOptions) -> Result<Names, EvalError> {
        let prefix = dns_label(&d.name);
        if prefix.is_empty() {
            return Err(EvalError::Config(format!(
                "deployment name {:?} has no letter or digit to name Kubernetes objects with",
                d.name
            )));
        }
        if dns_label(&o.namespace) != o.namespace {
            return Err(EvalError::Config(format!(
                "--namespace {:?}: expected a DNS label (lowercase letters, digits, '-')",
                o.namespace
            )));
        }
        Ok(Names {
            ns: o.namespace.clone(),
            instance: prefix.clone(),
            prefix,
        })
    }

    /// `PREFIX-what`.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// The Service address of a component inside the cluster.
    pub fn service_host(&self, component: &str) -> String {
        format!("{}.{}.svc", self.name(component), self.ns)
    }
}

/// `s` lowercased, runs of other characters as one `-`, at most 40 bytes
/// (room for `-fileserver-identity` within a label's 63).
fn dns_label(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(40);
    out.trim_end_matches('-').to_string()
}

/// Checks what a fleet can run: conclave processes only, the memory server
/// as a sidecar (smdish) or none.
fn check(d: &Deployment, o: &K8sOptions) -> Result<(), EvalError> {
    if d.edge.kind == EdgeKind::Nginx {
        return Err(EvalError::Config(
            "edge.kind = \"nginx\": only the conclave edge is rendered for Kubernetes".into(),
        ));
    }
    if d.edge.shared == SharedKind::Smuf {
        return Err(EvalError::Config(
            "edge.shared = \"smuf\" shares host files between the edge and the memory server; \
             the fleet renders smdish (or smc, local)"
                .into(),
        ));
    }
    if o.nodes == 0 || o.keyservers == 0 || o.min_edges == 0 || o.min_edges > o.nodes {
        return Err(EvalError::Config(format!(
            "--nodes {} --keyservers {} --min-edges {}: expected at least one of each, min-edges <= nodes",
            o.nodes, o.keyservers, o.min_edges
        )));
    }
    if o.cpu_target == 0 || o.cpu_target > 100 {
        return Err(EvalError::Config(format!(
            "--cpu-target {}: expected 1..=100",
            o.cpu_target
        )));
    }
    Ok(())
}

/// Renders `d` (loaded with [`Deployment::load`]) for Kubernetes. Secrets
/// are read from the deployment's `certs` directory (and its run
/// directory, where `up` moves the site key).
pub fn render(d: &Deployment, o: &K8sOptions) -> Result<Manifests, EvalError> {
    check(d, o)?;
    let n = Names::of(d, o)?;
    let parts = objects::Parts::of(d);
    let mut files = vec![ManifestFile {
        name: "00-namespace.yaml",
        secret: false,
        objects: vec![objects::namespace(&n)],
    }];
    files.push(ManifestFile {
        name: "10-secrets.yaml",
        secret: true,
        objects: secrets::secrets(d, &n, &parts)?,
    });
    files.push(ManifestFile {
        name: "20-configmaps.yaml",
        secret: false,
        objects: vec![objects::edge_config(d, o, &n, &parts)?],
    });
    let mut workloads = Vec::new();
    if parts.keyserver.is_some() {
        workloads.push(objects::keyserver(d, o, &n, &parts));
    }
    if let (Some(f), Some(_)) = (&d.fileserver, parts.fileserver) {
        workloads.push(objects::fileserver(d, f, o, &n, &parts));
    }
    workloads.push(objects::edge(d, o, &n, &parts));
    files.push(ManifestFile {
        name: "30-workloads.yaml",
        secret: false,
        objects: workloads,
    });
    files.push(ManifestFile {
        name: "40-services.yaml",
        secret: false,
        objects: objects::services(d, &n, &parts),
    });
    files.push(ManifestFile {
        name: "50-networkpolicies.yaml",
        secret: false,
        objects: policy::network_policies(d, o, &n, &parts)?,
    });
    if o.edge_workload == EdgeWorkload::Deployment {
        files.push(ManifestFile {
            name: "60-autoscaler.yaml",
            secret: false,
            objects: vec![objects::autoscaler(o, &n)],
        });
    }
    Ok(Manifests { files })
}

/// A stream of YAML documents.
pub fn to_yaml(objects: &[Value]) -> Result<String, EvalError> {
    let mut out = String::new();
    for v in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(v).map_err(|e| EvalError::Config(format!("rendering YAML: {e}")))?,
        );
    }
    Ok(out)
}

impl Manifests {
    /// Writes every file into `dir` (created) and returns the paths
    /// written. A secrets file already there is kept, not replaced: the
    /// file servers' images are sealed under the secrets it holds, so a
    /// second rendering must not change them (remove it to rotate).
    pub fn write(&self, dir: &Path) -> Result<Vec<(PathBuf, bool)>, EvalError> {
        std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
        let mut written = Vec::new();
        for f in &self.files {
            let path = dir.join(f.name);
            if f.secret && path.exists() {
                written.push((path, false));
                continue;
            }
            let text = zeroize::Zeroizing::new(to_yaml(&f.objects)?);
            if f.secret {
                crate::layout::write_private(&path, text.as_bytes())?;
            } else {
                std::fs::write(&path, text.as_bytes()).map_err(EvalError::io(&path))?;
            }
            written.push((path, true));
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_the_flags_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: K8sOptions,
        }
        assert_eq!(Cli::parse_from(["k8s"]).o, K8sOptions::default());
    }

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("Conclave Vericrypt_2"), "conclave-vericrypt-2");
        assert_eq!(dns_label("--x--"), "x");
        assert_eq!(dns_label("¿?"), "");
        assert_eq!(dns_label(&"a".repeat(80)).len(), 40);
    }
}
