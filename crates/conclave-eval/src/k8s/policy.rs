//! The NetworkPolicies: deny everything in the namespace, then allow the
//! flows of docs/protocol.md and nothing else — client → edge (HTTPS),
//! edge → key server and edge → file server (mTLS RPC), edge → origin
//! (cache mode), and the edge's DNS look-ups of those Services. The memory
//! server is the edge pod's sidecar, reached on the pod's loopback, which
//! no policy sees.

use super::objects::{labels, Parts};
use super::{K8sOptions, Names};
use crate::deploy::{Deployment, Mode};
use crate::EvalError;
use serde_json::{json, Value};
use std::net::IpAddr;

fn tcp(port: u16) -> Value {
    json!({ "protocol": "TCP", "port": port })
}

fn policy(
    n: &Names,
    name: &str,
    selector: Value,
    types: &[&str],
    ingress: Vec<Value>,
    egress: Vec<Value>,
) -> Value {
    let mut spec = json!({ "podSelector": selector, "policyTypes": types });
    if types.contains(&"Ingress") {
        spec["ingress"] = json!(ingress);
    }
    if types.contains(&"Egress") {
        spec["egress"] = json!(egress);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": n.name(name), "namespace": n.ns, "labels": { "app.kubernetes.io/name": "conclave", "app.kubernetes.io/instance": n.instance } },
        "spec": spec,
    })
}

/// The origin's address as `(ip, port)` (`ip` only when a literal).
fn origin_target(d: &Deployment, o: &K8sOptions) -> Result<(Option<IpAddr>, u16), EvalError> {
    let Some(url) = &o.origin else {
        return Ok((None, d.origin.listen.port()));
    };
    let bad = || {
        EvalError::Config(format!(
            "--origin {url:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    Ok((ip, port))
}

/// Every NetworkPolicy of the fleet.
pub(crate) fn network_policies(
    d: &Deployment,
    o: &K8sOptions,
    n: &Names,
    parts: &Parts,
) -> Result<Vec<Value>, EvalError> {
    let mut out = vec![policy(
        n,
        "default-deny",
        json!({}),
        &["Ingress", "Egress"],
        Vec::new(),
        Vec::new(),
    )];
    let edge_pods = json!({ "podSelector": { "matchLabels": labels(n, "edge") } });
    let mut egress = Vec::new();
    for (component, port) in [("keyserver", parts.keyserver), ("fileserver", parts.fileserver)] {
        if let Some(port) = port {
            egress.push(json!({
                "to": [{ "podSelector": { "matchLabels": labels(n, component) } }],
                "ports": [tcp(port)],
            }));
        }
    }
    if d.edge.mode == Mode::Cache {
        let (ip, port) = origin_target(d, o)?;
        let mut rule = json!({ "ports": [tcp(port)] });
        if let Some(ip) = ip {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            rule["to"] = json!([{ "ipBlock": { "cidr": format!("{ip}/{bits}") } }]);
        }
        egress.push(rule);
    }
    egress.push(json!({
        "to": [{
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
            "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
        }],
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    }));
    let site_ports: Vec<Value> = parts.sites.iter().map(|p| tcp(*p)).collect();
    out.push(policy(
        n,
        "edge",
        json!({ "matchLabels": labels(n, "edge") }),
        &["Ingress", "Egress"],
        vec![json!({ "ports": site_ports })],
        egress,
    ));
    for (component, port) in [("keyserver", parts.keyserver), ("fileserver", parts.fileserver)] {
        if let Some(port) = port {
            out.push(policy(
                n,
                component,
                json!({ "matchLabels": labels(n, component) }),
                &["Ingress", "Egress"],
                vec![json!({ "from": [edge_pods.clone()], "ports": [tcp(port)] })],
                Vec::new(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_urls_give_port_and_literal_address() {
        let d: Deployment = toml::from_str(
            "name='t'\n[origin]\nkind='external'\nlisten='127.0.0.1:8081'\n[edge]\nkind='conclave'\n[[edge.site]]\nlisten='127.0.0.1:8443'\n",
        )
        .unwrap();
        let with = |u: &str| K8sOptions {
            origin: Some(u.into()),
            ..K8sOptions::default()
        };
        assert_eq!(origin_target(&d, &K8sOptions::default()).unwrap(), (None, 8081));
        assert_eq!(
            origin_target(&d, &with("http://origin.example")).unwrap(),
            (None, 80)
        );
        assert_eq!(
            origin_target(&d, &with("https://origin.example/x")).unwrap(),
            (None, 443)
        );
        assert_eq!(
            origin_target(&d, &with("http://192.0.2.7:8080")).unwrap(),
            (Some("192.0.2.7".parse().unwrap()), 8080)
        );
        for bad in ["ftp://x", "origin:80", "http://", "http://x:port"] {
            assert!(origin_target(&d, &with(bad)).is_err(), "{bad}");
        }
    }
}
