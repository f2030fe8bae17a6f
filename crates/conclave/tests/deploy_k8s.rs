//! `conclave deploy k8s` and the Helm chart (deploy/helm/conclave): both
//! render a fleet whose Secrets stay with their owners (no container mounts
//! another part's identity; the site key is in the key server's Secret
//! only), whose NetworkPolicies allow exactly the flows of
//! docs/protocol.md, and whose every container runs restricted. Schema
//! validation against a pinned Kubernetes version is
//! scripts/check-packaging.sh's (it needs a Python package); `helm` comes
//! from there too (`target/packaging/bin/helm`, or `CONCLAVE_HELM`).
//!
//! `conclave deploy probe` is the containers' probe: 200 passes, anything
//! else fails.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod common;
use common::conclave;

/// A keyless fleet: key server, smdish sidecar, vericrypt file server, one
/// cache site, tenant `acme`.
const FLEET: &str = r#"
name = "fleet"
tenant = "acme"
[origin]
kind = "external"
listen = "127.0.0.1:8081"
[edge]
kind = "conclave"
workers = 2
mode = "cache"
storage = "nextfs"
shared = "smdish"
key = "keyserver"
[[edge.site]]
listen = "127.0.0.1:8443"
[keyserver]
listen = "127.0.0.1:9000"
[memserver]
listen = "127.0.0.1:9100"
[fileserver]
device = "vericrypt"
listen = "127.0.0.1:9200"
kdf = "cheap"
"#;

/// An address of the documentation range: it only appears in manifests.
const ORIGIN: &str = "http://192.0.2.10:8081";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML document of every file of `dir`, by file name.
fn read_manifests(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        out.insert(
            p.file_name().unwrap().to_string_lossy().into_owned(),
            parse_yaml(&text),
        );
    }
    out
}

fn parse_yaml(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn render(dir: &Path) -> (PathBuf, std::process::Output) {
    let deploy = dir.join("deploy.toml");
    std::fs::write(&deploy, FLEET).unwrap();
    let out = dir.join("k8s");
    let o = conclave()
        .args(["deploy", "k8s"])
        .arg(&deploy)
        .arg("--out")
        .arg(&out)
        .args(["--origin", ORIGIN, "--nodes", "3", "--keyservers", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (out, o)
}

fn kind_name(v: &Value) -> (String, String) {
    (
        v["kind"].as_str().unwrap().to_string(),
        v["metadata"]["name"].as_str().unwrap().to_string(),
    )
}

/// The pod templates of the workloads, by workload name.
fn pod_specs(objs: &[Value]) -> Vec<(String, &Value)> {
    objs.iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "DaemonSet")
            )
        })
        .map(|o| (kind_name(o).1, &o["spec"]["template"]["spec"]))
        .collect()
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// No container mounts a volume of another part: a Secret volume must be
/// `PREFIX-<part>-identity` and an installed identity (`<part>-run`) its
/// own, where a container's part is its name up to the first `-`.
fn assert_each_container_mounts_only_its_identity(objs: &[Value], prefix: &str) {
    let mut checked = 0;
    for (workload, spec) in pod_specs(objs) {
        let volumes: BTreeMap<&str, &Value> = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        for c in containers(spec) {
            let name = c["name"].as_str().unwrap();
            let part = name.split('-').next().unwrap();
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let vname = m["name"].as_str().unwrap();
                let Some(v) = volumes.get(vname) else {
                    // The file server's volume claim: no identity in it.
                    assert_eq!((workload.as_str(), vname), ("fleet-fileserver", "data"));
                    continue;
                };
                if let Some(secret) = v["secret"]["secretName"].as_str() {
                    assert_eq!(
                        secret,
                        format!("{prefix}-{part}-identity"),
                        "{workload}/{name} mounts Secret {secret}"
                    );
                    checked += 1;
                }
                if let Some(owner) = vname.strip_suffix("-run") {
                    assert_eq!(owner, part, "{workload}/{name} mounts {vname}");
                    assert_eq!(v["emptyDir"]["medium"], "Memory", "{vname}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} identity mounts seen");
}

/// Every pod and container runs restricted.
fn assert_restricted(objs: &[Value]) {
    for (workload, spec) in pod_specs(objs) {
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true, "{workload}");
        assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{workload}");
        assert_eq!(spec["automountServiceAccountToken"], false, "{workload}");
        assert!(
            spec["hostNetwork"].is_null() && spec["hostPID"].is_null(),
            "{workload}"
        );
        for c in containers(spec) {
            let s = &c["securityContext"];
            let name = c["name"].as_str().unwrap();
            assert_eq!(s["runAsNonRoot"], true, "{workload}/{name}");
            assert_eq!(s["allowPrivilegeEscalation"], false, "{workload}/{name}");
            assert_eq!(s["readOnlyRootFilesystem"], true, "{workload}/{name}");
            assert_eq!(
                s["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{workload}/{name}"
            );
            assert!(s["capabilities"]["add"].is_null(), "{workload}/{name}");
            assert_eq!(s["seccompProfile"]["type"], "RuntimeDefault", "{workload}/{name}");
            assert!(s["privileged"].is_null(), "{workload}/{name}");
            assert!(
                c["resources"]["requests"]["cpu"].is_string()
                    && c["resources"]["limits"]["memory"].is_string(),
                "{workload}/{name}: resources"
            );
            for v in spec["volumes"].as_array().unwrap() {
                assert!(v["hostPath"].is_null(), "{workload}: hostPath volume");
            }
        }
    }
}

fn peer(p: &Value) -> String {
    if let Some(c) = p["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str() {
        assert!(p["namespaceSelector"].is_null(), "{p}");
        return c.to_string();
    }
    if p["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns" {
        assert_eq!(
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        return "kube-dns".into();
    }
    if let Some(cidr) = p["ipBlock"]["cidr"].as_str() {
        assert!(p["ipBlock"]["except"].is_null());
        return cidr.to_string();
    }
    panic!("unexpected peer {p}");
}

fn ports(rule: &Value) -> Vec<String> {
    let ps = rule["ports"].as_array().expect("every rule names its ports");
    assert!(!ps.is_empty());
    ps.iter()
        .map(|p| format!("{}/{}", p["protocol"].as_str().unwrap(), p["port"]))
        .collect()
}

/// The flows the NetworkPolicies allow, as `FROM->TO:PROTO/PORT in|out`, after
/// checking that a default-deny policy covers every pod both ways.
fn allowed_flows(objs: &[Value]) -> BTreeSet<String> {
    let policies: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "NetworkPolicy").collect();
    assert!(
        policies
            .iter()
            .any(|p| p["spec"]["podSelector"] == serde_json::json!({})
                && p["spec"]["policyTypes"] == serde_json::json!(["Ingress", "Egress"])
                && p["spec"]["ingress"].as_array().is_none_or(|r| r.is_empty())
                && p["spec"]["egress"].as_array().is_none_or(|r| r.is_empty())),
        "no default-deny policy"
    );
    let mut flows = BTreeSet::new();
    for p in policies {
        let spec = &p["spec"];
        let Some(me) = spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"].as_str() else {
            continue;
        };
        for rule in spec["ingress"].as_array().into_iter().flatten() {
            let from: Vec<String> = match rule["from"].as_array() {
                None => vec!["any".into()],
                Some(peers) => peers.iter().map(peer).collect(),
            };
            for f in &from {
                for port in ports(rule) {
                    flows.insert(format!("{f}->{me}:{port} in"));
                }
            }
        }
        for rule in spec["egress"].as_array().into_iter().flatten() {
            let to: Vec<String> = match rule["to"].as_array() {
                None => vec!["any".into()],
                Some(peers) => peers.iter().map(peer).collect(),
            };
            for t in &to {
                for port in ports(rule) {
                    flows.insert(format!("{me}->{t}:{port} out"));
                }
            }
        }
    }
    flows
}

/// docs/protocol.md's flows for [`FLEET`], each allowed on both sides
/// between pods (`out` on the sender's policy, `in` on the receiver's):
/// client → edge, edge → key server and edge → file server (mTLS RPC),
/// edge → origin and the edge's DNS look-ups (outside the namespace: `out`
/// only). The memory server is on the edge pod's loopback.
fn assert_protocol_flows(objs: &[Value]) {
    let want: BTreeSet<String> = [
        "any->edge:TCP/8443 in",
        "edge->keyserver:TCP/9000 out",
        "edge->keyserver:TCP/9000 in",
        "edge->fileserver:TCP/9200 out",
        "edge->fileserver:TCP/9200 in",
        "edge->192.0.2.10/32:TCP/8081 out",
        "edge->kube-dns:UDP/53 out",
        "edge->kube-dns:TCP/53 out",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(allowed_flows(objs), want);
}

fn all_objects(m: &BTreeMap<String, Vec<Value>>) -> Vec<Value> {
    m.values().flatten().cloned().collect()
}

#[test]
fn renders_a_fleet_whose_secrets_stay_with_their_owners() {
    let t = tempfile::tempdir().unwrap();
    let (out, o) = render(t.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("wrote ") && stdout.contains("kubectl apply -f"),
        "{stdout}"
    );
    let m = read_manifests(&out);
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "00-namespace.yaml",
            "10-secrets.yaml",
            "20-configmaps.yaml",
            "30-workloads.yaml",
            "40-services.yaml",
            "50-networkpolicies.yaml",
            "60-autoscaler.yaml"
        ]
    );
    let mode = std::fs::metadata(out.join("10-secrets.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let objs = all_objects(&m);
    let kinds: BTreeSet<(String, String)> = objs.iter().map(kind_name).collect();
    for want in [
        ("Namespace", "conclave"),
        ("Secret", "fleet-edge-identity"),
        ("Secret", "fleet-memserver-identity"),
        ("Secret", "fleet-keyserver-identity"),
        ("Secret", "fleet-fileserver-identity"),
        ("ConfigMap", "fleet-edge-config"),
        ("Deployment", "fleet-edge"),
        ("Deployment", "fleet-keyserver"),
        ("StatefulSet", "fleet-fileserver"),
        ("Service", "fleet-edge"),
        ("Service", "fleet-keyserver"),
        ("Service", "fleet-fileserver"),
        ("NetworkPolicy", "fleet-default-deny"),
        ("HorizontalPodAutoscaler", "fleet-edge"),
    ] {
        assert!(
            kinds.contains(&(want.0.to_string(), want.1.to_string())),
            "missing {want:?} in {kinds:?}"
        );
    }
    assert_eq!(objs.len(), 17, "{kinds:?}");

    assert_each_container_mounts_only_its_identity(&objs, "fleet");
    assert_restricted(&objs);
    assert_protocol_flows(&objs);

    // The site key is in the key server's Secret, and in no other.
    let site_key = std::fs::read_to_string(t.path().join("certs/site/server.key")).unwrap();
    let holders: Vec<String> = objs
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .filter(|o| {
            o["stringData"]
                .as_object()
                .unwrap()
                .values()
                .any(|v| v.as_str() == Some(site_key.as_str()))
        })
        .map(|o| kind_name(o).1)
        .collect();
    assert_eq!(holders, ["fleet-keyserver-identity"]);
    let edge_secret = objs
        .iter()
        .find(|o| kind_name(o).1 == "fleet-edge-identity")
        .unwrap();
    let keys: BTreeSet<&str> = edge_secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["root.crt", "edge.crt", "edge.key", "server.crt"]),
        "with key servers the edge holds no ticket secret: the fleet's ticket keys come from them"
    );
    // The edge pod's volumes: its own identity, the sidecar's, its config; none holds the site key.
    let (_, edge) = pod_specs(&objs)
        .into_iter()
        .find(|(n, _)| n == "fleet-edge")
        .unwrap();
    let secrets: BTreeSet<&str> = edge["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(
        secrets,
        BTreeSet::from(["fleet-edge-identity", "fleet-memserver-identity"])
    );
    let ks = objs
        .iter()
        .find(|o| kind_name(o).1 == "fleet-keyserver-identity")
        .unwrap();
    assert!(ks["stringData"]["keys-server.key"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    // The fleet's ticket-key secret: in the key servers' Secret only.
    assert_eq!(
        ks["stringData"]["ticket.keys"].as_str().map(str::len),
        Some(64),
        "32 random bytes, hex"
    );

    // The edge config: pod address, Services for key and file servers,
    // loopback sidecar, the origin given, the admin listener for probes.
    let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let edge_toml: toml::Table = toml::from_str(cm["data"]["edge.toml"].as_str().unwrap()).unwrap();
    let server = &edge_toml["server"].as_array().unwrap()[0];
    assert_eq!(server["listen"].as_str(), Some("0.0.0.0:8443"));
    assert_eq!(server["proxy_pass"].as_str(), Some(ORIGIN));
    assert_eq!(
        server["tls"]["keyserver"].as_str(),
        Some("tcp://fleet-keyserver.conclave.svc:9000")
    );
    assert!(server["tls"].get("key").is_none());
    assert_eq!(
        edge_toml["storage"]["server"].as_str(),
        Some("tcp://fleet-fileserver.conclave.svc:9200")
    );
    assert_eq!(
        edge_toml["shared"]["kind"].as_str(),
        Some("smdish+tcp://127.0.0.1:9100")
    );
    assert_eq!(edge_toml["admin"]["listen"].as_str(), Some("127.0.0.1:9901"));
    // One ticket-key source for the fleet: the key servers.
    assert_eq!(edge_toml["shared"]["ticket_source"].as_str(), Some("keyserver"));
    assert_eq!(
        edge_toml["shared"]["ticket_keyservers"]
            .as_array()
            .map(|a| a.len()),
        Some(1)
    );
    assert!(edge_toml["shared"].get("ticket_secret_file").is_none());
    // Probes: the admin listener through `conclave deploy probe`.
    let edge_c = &edge["containers"][0];
    assert_eq!(
        edge_c["readinessProbe"]["exec"]["command"],
        serde_json::json!([
            "/usr/bin/conclave",
            "deploy",
            "probe",
            "http://127.0.0.1:9901/readyz"
        ])
    );
    assert_eq!(
        edge_c["livenessProbe"]["exec"]["command"][3],
        "http://127.0.0.1:9901/healthz"
    );
    let svc = objs
        .iter()
        .find(|o| kind_name(o) == ("Service".into(), "fleet-fileserver".into()))
        .unwrap();
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");

    // A second rendering keeps the secrets (the images are sealed under them).
    let before = std::fs::read(out.join("10-secrets.yaml")).unwrap();
    let (_, o) = render(t.path());
    assert!(String::from_utf8_lossy(&o.stdout).contains("kept "));
    assert_eq!(std::fs::read(out.join("10-secrets.yaml")).unwrap(), before);
}

/// The checks above fail on a fleet that breaks them (so a passing run
/// means something): a container mounting another part's identity, a flow
/// the protocol does not have, a container with a writable root.
#[test]
fn the_checks_catch_a_borrowed_identity_an_extra_flow_and_a_writable_root() {
    let t = tempfile::tempdir().unwrap();
    let (out, _) = render(t.path());
    let objs = all_objects(&read_manifests(&out));
    let fails = |f: &dyn Fn(&[Value]), objs: &[Value]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(objs))).is_err()
    };
    let edge_at = objs
        .iter()
        .position(|o| kind_name(o) == ("Deployment".into(), "fleet-edge".into()))
        .unwrap();

    let mut borrowed = objs.clone();
    borrowed[edge_at]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "name": "memserver-run", "mountPath": "/m" }));
    assert!(fails(
        &|o| assert_each_container_mounts_only_its_identity(o, "fleet"),
        &borrowed
    ));

    let mut extra = objs.clone();
    let ks = extra
        .iter()
        .position(|o| kind_name(o) == ("NetworkPolicy".into(), "fleet-keyserver".into()))
        .unwrap();
    extra[ks]["spec"]["egress"] = serde_json::json!([{ "ports": [{ "protocol": "TCP", "port": 443 }] }]);
    assert!(fails(&assert_protocol_flows, &extra));

    let mut writable = objs.clone();
    writable[edge_at]["spec"]["template"]["spec"]["initContainers"][0]["securityContext"]
        ["readOnlyRootFilesystem"] = serde_json::json!(false);
    assert!(fails(&assert_restricted, &writable));

    for f in [
        &(|o: &[Value]| assert_each_container_mounts_only_its_identity(o, "fleet")) as &dyn Fn(&[Value]),
        &assert_protocol_flows,
        &assert_restricted,
    ] {
        assert!(!fails(f, &objs));
    }
}

#[test]
fn refuses_what_a_fleet_cannot_run() {
    let t = tempfile::tempdir().unwrap();
    let deploy = t.path().join("deploy.toml");
    for (from, to, want) in [
        ("shared = \"smdish\"", "shared = \"smuf\"", "smuf"),
        ("workers = 2", "workers = 2\n", "--origin"),
    ] {
        std::fs::write(&deploy, FLEET.replace(from, to)).unwrap();
        let mut cmd = conclave();
        cmd.args(["deploy", "k8s"])
            .arg(&deploy)
            .arg("--out")
            .arg(t.path().join("k8s"));
        if want == "--origin" {
            cmd.args(["--origin", "ftp://x"]);
        }
        let o = cmd.output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{err}");
    }
}

/// The helm binary: `CONCLAVE_HELM`, or where scripts/check-packaging.sh puts it.
fn helm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONCLAVE_HELM") {
        return Some(PathBuf::from(p));
    }
    let p = repo_root().join("target/packaging/bin/helm");
    p.exists().then_some(p)
}

#[test]
fn helm_chart_renders_the_same_fleet() {
    let Some(helm) = helm() else {
        if std::env::var_os("CONCLAVE_NO_HELM").is_some() {
            eprintln!(
                "SKIPPED: no helm binary and CONCLAVE_NO_HELM is set: the Helm chart was NOT checked \
                 (scripts/check-packaging.sh installs helm into target/packaging/bin)"
            );
            return;
        }
        panic!(
            "no helm: run scripts/check-packaging.sh (it installs a pinned helm into target/packaging/bin) \
             or set CONCLAVE_HELM=/path/to/helm; CONCLAVE_NO_HELM=1 skips this check explicitly"
        );
    };
    let t = tempfile::tempdir().unwrap();
    let (out, _) = render(t.path());
    let ours = all_objects(&read_manifests(&out));
    let o = std::process::Command::new(&helm)
        .args(["template", "fleet"])
        .arg(repo_root().join("deploy/helm/conclave"))
        .args([
            "--namespace",
            "conclave",
            "--set",
            "tenant=acme",
            "--set",
            "edge.workers=2",
            "--set",
            &format!("origin.url={ORIGIN}"),
            "--set",
            "origin.cidr=192.0.2.10/32",
            "--set",
            "fileserver.kdf=cheap",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let theirs = parse_yaml(&String::from_utf8_lossy(&o.stdout));

    assert_each_container_mounts_only_its_identity(&theirs, "fleet");
    assert_restricted(&theirs);
    assert_protocol_flows(&theirs);

    // The same objects but the Secrets (the chart never holds keys).
    let set = |objs: &[Value]| -> BTreeSet<(String, String)> {
        objs.iter()
            .map(kind_name)
            .filter(|(k, _)| k != "Secret")
            .collect()
    };
    assert_eq!(set(&theirs), set(&ours));
    // The same commands in every container, and the same edge config.
    let commands = |objs: &[Value]| -> BTreeMap<String, Value> {
        pod_specs(objs)
            .into_iter()
            .flat_map(|(w, spec)| {
                containers(spec).into_iter().map(move |c| {
                    (
                        format!("{w}/{}", c["name"].as_str().unwrap()),
                        c["command"].clone(),
                    )
                })
            })
            .collect()
    };
    let (a, b) = (commands(&theirs), commands(&ours));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &b {
        assert_eq!(&a[k], v, "command of {k}");
    }
    // The same edge settings, read as `conclave edge` reads them (keys at
    // their defaults may be left out), and the same admin listener.
    let edge_settings = |objs: &[Value]| -> (conclave_edge::EdgeSettings, toml::Value) {
        let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        let mut t: toml::Table = toml::from_str(cm["data"]["edge.toml"].as_str().unwrap()).unwrap();
        let admin = t.remove("admin").expect("[admin]");
        (t.try_into().unwrap(), admin)
    };
    assert_eq!(edge_settings(&theirs), edge_settings(&ours));
}

/// A one-shot HTTP server answering `status` to whatever comes.
fn answer_once(status: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        // The whole request head, so closing after the answer resets nothing.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(answer.as_bytes());
    });
    port
}

#[test]
fn probe_passes_on_200_and_an_open_port_only() {
    let ok = answer_once("200 OK");
    let o = conclave()
        .args(["deploy", "probe", &format!("http://127.0.0.1:{ok}/readyz")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let busy = answer_once("503 Service Unavailable");
    let o = conclave()
        .args(["deploy", "probe", &format!("http://127.0.0.1:{busy}/readyz")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("HTTP/1.1 503 Service Unavailable"), "{err}");
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let o = conclave()
        .args(["deploy", "probe", &format!("tcp://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(o.status.success());
    drop(open);
    let o = conclave()
        .args(["deploy", "probe", &format!("tcp://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Connection refused"), "{err}");
    let o = conclave()
        .args(["deploy", "probe", "udp://x:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}
