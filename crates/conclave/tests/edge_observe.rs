//! Operating the edge, issue 17 points 4 and 5: access log formats (NGINX
//! `combined`, JSON lines), the error log, reopening both on SIGUSR1 after a
//! rotation, and the admin listener (`/metrics` summed over the workers,
//! `/healthz`, `/readyz`).
#![cfg(all(feature = "edge", feature = "bench"))]

mod common;

use common::edge::{curl, dir_with_certs, Resp};
use common::{conclave, conclave_ok, free_port, server, wait_port, wait_until, Proc};
use conclave_testkit::{Reply, TestOrigin};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// An edge with one cache site in front of `origin`, plus `extra` top-level
/// keys (before the site) and `tail` (after it).
struct Observed {
    proc: Proc,
    dir: tempfile::TempDir,
    port: u16,
    admin: u16,
    /// The admin listener asks for a client certificate (`[admin] certs`).
    admin_mtls: bool,
}

impl Observed {
    fn start(origin: &TestOrigin, workers: usize, extra: &str, site_extra: &str) -> Observed {
        Self::start_in(
            dir_with_certs(),
            origin,
            &Setup {
                workers,
                extra,
                site_extra,
                ..Setup::default()
            },
        )
    }

    /// An edge in `dir` (with `certs/`) as `setup` says.
    fn start_in(dir: tempfile::TempDir, origin: &TestOrigin, setup: &Setup<'_>) -> Observed {
        let Setup {
            workers,
            extra,
            site_extra,
            tls,
            admin_mtls,
            cache_path,
        } = *setup;
        let (port, admin) = (free_port(), free_port());
        let toml = format!(
            "workers = {workers}\naccess_log = \"access.log\"\nerror_log = \"error.log\"\n{extra}\n\
             [[server]]\nlisten = \"127.0.0.1:{port}\"\nserver_name = [\"localhost\"]\nmode = \"cache\"\n\
             proxy_pass = \"http://127.0.0.1:{}\"\n{site_extra}\n\
             [server.tls]\n{tls}\n\
             [server.cache]\npath = \"{cache_path}\"\nkeys_zone = \"Z:64k\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n{}",
            origin.port(),
            if admin_mtls {
                "certs = \"certs/edge\"\n"
            } else {
                ""
            }
        );
        let cfg = dir.path().join("edge.toml");
        std::fs::write(&cfg, toml).unwrap();
        conclave_ok(&["edge", "--config", cfg.to_str().unwrap(), "--check"]);
        let child = conclave()
            .args(["edge", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let proc = server(child);
        wait_port(port);
        wait_port(admin);
        let o = Observed {
            proc,
            dir,
            port,
            admin,
            admin_mtls,
        };
        // Every worker has bound its listeners and answers scrapes.
        assert!(
            wait_until(Duration::from_secs(20), || o.admin_get("/readyz").status == 200),
            "not ready: {}",
            o.admin_get("/readyz").text()
        );
        o
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn get(&self, target: &str, args: &[&str]) -> Resp {
        let resolve = format!("localhost:{}:127.0.0.1", self.port);
        let mut all = vec!["--resolve", resolve.as_str()];
        all.extend_from_slice(args);
        curl(
            self.dir.path(),
            &format!("https://localhost:{}{target}", self.port),
            &all,
        )
    }

    fn admin_get(&self, path: &str) -> Resp {
        if self.admin_mtls {
            return self.admin_as("client", path);
        }
        curl(
            self.dir.path(),
            &format!("http://127.0.0.1:{}{path}", self.admin),
            &[],
        )
    }

    /// `path` from the mTLS admin listener, with the certificate of `role`
    /// (`None`: no client certificate).
    fn admin_as(&self, role: &str, path: &str) -> Resp {
        let resolve = format!("edge:{}:127.0.0.1", self.admin);
        let (cert, key) = (
            self.path(&format!("certs/{role}/{role}.crt")),
            self.path(&format!("certs/{role}/{role}.key")),
        );
        let mut args = vec!["--resolve", resolve.as_str()];
        if role != "none" {
            args.extend(["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]);
        }
        curl(
            self.dir.path(),
            &format!("https://edge:{}{path}", self.admin),
            &args,
        )
    }

    /// `/metrics` read by the Prometheus project's own OpenMetrics parser.
    fn metrics(&self) -> Metrics {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        Metrics::parse(&r.text())
    }

    /// The worker processes (the master's children).
    fn workers(&self) -> Vec<i64> {
        let pid = self.proc.id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

/// How an [`Observed`] edge is set up.
#[derive(Clone, Copy)]
struct Setup<'a> {
    workers: usize,
    /// Top-level keys and tables, before the site.
    extra: &'a str,
    /// More `[[server]]` keys.
    site_extra: &'a str,
    /// The `[server.tls]` lines.
    tls: &'a str,
    /// `[admin] certs`: the listener asks for a client certificate.
    admin_mtls: bool,
    /// `[server.cache] path`.
    cache_path: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            workers: 1,
            extra: "",
            site_extra: "",
            tls: "certificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"",
            admin_mtls: false,
            cache_path: "cache",
        }
    }
}

/// Samples as (name, labels) -> value, from `prometheus_client`'s parser.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

/// Parses stdin with the reference OpenMetrics parser and prints the samples as JSON.
const PARSE: &str = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

impl Metrics {
    fn parse(text: &str) -> Metrics {
        use std::io::Write;
        // Debian's python3-prometheus-client (scripts/test.sh installs it).
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                std::process::Command::new(p)
                    .args(["-c", "import prometheus_client"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("python3 with prometheus_client is required (apt install python3-prometheus-client)");
        let mut child = std::process::Command::new(python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the OpenMetrics parser refused /metrics: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<(String, BTreeMap<String, String>, f64)> = serde_json::from_slice(&out.stdout).unwrap();
        Metrics(v)
    }

    /// The sum of `name`'s samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn cacheable(origin: &TestOrigin, path: &str, body: &'static str) {
    origin.route(path, Reply::ok(body).header("cache-control", "max-age=600"));
}

#[test]
fn metrics_count_exactly_what_two_workers_served() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    let e = Observed::start(&origin, 2, "access_log_format = \"json\"", "");
    assert_eq!(e.admin_get("/healthz").status, 200);
    assert_eq!(e.admin_get("/nothing").status, 404);

    // A first miss, two more requests (hits, or a miss on the other worker:
    // each worker has its own index with `[shared]` local), a 404 from the origin.
    assert_eq!(e.get("/a", &[]).cache(), "MISS");
    assert_eq!(e.get("/a", &[]).status, 200);
    assert_eq!(e.get("/a", &[]).status, 200);
    origin.route("/gone", Reply::status(404));
    let gone = e.get("/gone", &[]);
    assert_eq!(gone.status, 404);
    // Then `conclave ab`: 200 requests, 200 connections, resumed where it can.
    let (full, resumed) = common::ab_resumed(
        &e.path("certs/ca/root.crt"),
        "1.3",
        &format!("https://127.0.0.1:{}/a", e.port),
    );
    assert_eq!(full + resumed, 200);
    let (full12, resumed12) = common::ab_resumed(
        &e.path("certs/ca/root.crt"),
        "1.2",
        &format!("https://127.0.0.1:{}/a", e.port),
    );
    assert_eq!(full12 + resumed12, 200);

    // A request is counted when its body has been handed on: wait for the last ones.
    let total = 4.0 + 400.0;
    assert!(wait_until(Duration::from_secs(10), || {
        e.metrics().sum("conclave_edge_requests_total", &[]) == total
    }));
    let m = e.metrics();
    assert_eq!(m.sum("conclave_edge_requests_total", &[]), total);
    let site = ("site", "localhost");
    let misses = m.sum(
        "conclave_edge_requests_total",
        &[site, ("cache", "MISS"), ("status", "200")],
    );
    let hits = m.sum(
        "conclave_edge_requests_total",
        &[site, ("cache", "HIT"), ("status", "200")],
    );
    assert_eq!(misses + hits, 403.0);
    assert_eq!(m.sum("conclave_edge_requests_total", &[("status", "404")]), 1.0);
    assert_eq!(
        m.sum("conclave_edge_sent_bytes_total", &[site]),
        403.0 * 5.0 + gone.body.len() as f64
    );
    assert_eq!(
        m.sum("conclave_edge_request_duration_seconds_count", &[site]),
        total
    );
    // curl makes three full handshakes, and one more for /gone.
    assert_eq!(
        m.sum(
            "conclave_edge_handshakes_total",
            &[("kind", "full"), ("version", "TLSv1.3")]
        ),
        full as f64 + 4.0
    );
    assert_eq!(
        m.sum(
            "conclave_edge_handshakes_total",
            &[("kind", "resumed"), ("version", "TLSv1.3")]
        ),
        resumed as f64
    );
    let tls12 = |kind: &str| {
        m.sum(
            "conclave_edge_handshakes_total",
            &[("kind", kind), ("version", "TLSv1.2")],
        )
    };
    assert_eq!(
        (tls12("full"), tls12("resumed")),
        (full12 as f64, resumed12 as f64)
    );
    assert!(wait_until(Duration::from_secs(10), || {
        e.metrics().sum("conclave_edge_connections_active", &[]) == 0.0
    }));
    // Both workers were asked: two processes answered the scrape.
    assert_eq!(e.workers().len(), 2);

    // The JSON access log: one object per request, with the cache, TLS and timings.
    let log = e.path("access.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == total as usize
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let miss = lines.iter().find(|l| l["cache_status"] == "MISS").unwrap();
    assert_eq!(miss["status"], 200);
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["uri"], "/a");
    assert_eq!(miss["bytes_sent"], 5);
    assert_eq!(miss["remote_addr"], "127.0.0.1");
    assert_eq!(miss["tls_version"], "TLSv1.3");
    assert_eq!(miss["tls_resumed"], false);
    assert!(miss["upstream_response_time"].is_f64(), "{miss}");
    assert!(miss["request_time"].is_f64(), "{miss}");
    assert_eq!(miss["waf_rule_id"], serde_json::Value::Null);
    assert!(miss["http_version"].as_str().unwrap().starts_with("HTTP/"));
    // The log and the metrics agree line for line.
    let logged = |c: &str| {
        lines
            .iter()
            .filter(|l| l["cache_status"] == c && l["status"] == 200)
            .count() as f64
    };
    assert_eq!((logged("MISS"), logged("HIT")), (misses, hits));
    let resumed_lines = lines.iter().filter(|l| l["tls_resumed"] == true).count();
    assert_eq!(resumed_lines as u64, resumed + resumed12);
    let tls12_lines = lines.iter().filter(|l| l["tls_version"] == "TLSv1.2").count();
    assert_eq!(tls12_lines, 200);
    // Hits never asked the origin (a miss that waited for another's fetch did not either).
    assert!(lines
        .iter()
        .filter(|l| l["cache_status"] == "HIT")
        .all(|l| l["upstream_response_time"].is_null()));
}

#[test]
fn json_log_keeps_a_hostile_user_agent_intact() {
    use std::os::unix::ffi::OsStrExt;
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    let e = Observed::start(
        &origin,
        1,
        "access_log_format = \"json\"\nerror_log_level = \"warn\"",
        "",
    );
    // At "warn" the error log has none of the start-up's info lines.
    let errors = std::fs::read_to_string(e.path("error.log")).unwrap();
    assert!(!errors.contains("started"), "{errors}");
    // Quotes, backslashes, a tab, a lone 0xFF byte and a JSON-looking tail.
    let ua: &[u8] = b"User-Agent: evil\"agent\\ \t{\"x\":1}\xff end";
    let resolve = format!("localhost:{}:127.0.0.1", e.port);
    let st = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--resolve", &resolve, "--cacert"])
        .arg(e.path("certs/ca/root.crt"))
        .arg("-H")
        .arg(std::ffi::OsStr::from_bytes(ua))
        .arg(format!("https://localhost:{}/a", e.port))
        .status()
        .unwrap();
    assert!(st.success());
    let log = e.path("access.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 1
    }));
    let bytes = std::fs::read(&log).unwrap();
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["user_agent"], "evil\"agent\\ \t{\"x\":1}\\xFF end");
    assert_eq!(v["referer"], serde_json::Value::Null);
}

#[test]
fn combined_log_matches_nginx_format_and_reopens_on_sigusr1() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    let e = Observed::start(
        &origin,
        2,
        "access_log_format = \"combined\"\nerror_log_level = \"info\"",
        "",
    );
    let r = e.get(
        "/a?x=1",
        &[
            "--http1.1",
            "-A",
            "agent \"7\" \\o/",
            "-e",
            "https://ref.example/",
        ],
    );
    assert_eq!(r.status, 200);
    let log = e.path("access.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 1
    }));
    let line = std::fs::read_to_string(&log).unwrap();
    // NGINX: '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'
    let re = regex::Regex::new(
        r#"^(\S+) - (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"\n$"#,
    )
    .unwrap();
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("not NGINX combined: {line:?}"));
    assert_eq!(&c[1], "127.0.0.1");
    assert_eq!(&c[2], "-");
    assert_eq!(&c[4], "GET /a?x=1 HTTP/1.1");
    assert_eq!(&c[5], "200");
    assert_eq!(&c[6], "5");
    assert_eq!(&c[7], "https://ref.example/");
    assert_eq!(&c[8], "agent \\x227\\x22 \\x5Co/");

    // Rotation: move both logs away, SIGUSR1 the master (it reopens its own
    // error log and forwards the signal to every worker), and new lines land
    // in new files.
    let errors = e.path("error.log");
    let started = std::fs::read_to_string(&errors).unwrap();
    assert!(
        started.contains("INFO") && started.contains("worker 0 started"),
        "the master logs to error.log: {started}"
    );
    std::fs::rename(&log, e.path("access.log.1")).unwrap();
    std::fs::rename(&errors, e.path("error.log.1")).unwrap();
    let workers = e.workers();
    assert_eq!(workers.len(), 2);
    assert!(common::signal(i64::from(e.proc.id()), "USR1"));
    // Each process writes one line into its new error log once reopened.
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&errors)
            .unwrap_or_default()
            .matches("SIGUSR1: log files reopened")
            .count()
            == 3
    }));
    for _ in 0..4 {
        assert_eq!(e.get("/a", &[]).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 4
    }));
    assert_eq!(
        std::fs::read_to_string(e.path("access.log.1"))
            .unwrap()
            .lines()
            .count(),
        1,
        "nothing more in the rotated file"
    );
    // The workers survived the signal.
    assert_eq!(e.workers(), workers);
}

#[test]
fn one_worker_counts_a_cache_sequence_and_waf_denials_by_rule_id() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    cacheable(&origin, "/b", "world");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("main.conf");
    std::fs::write(
        &rules,
        "SecRuleEngine On\nSecRule ARGS:testparam \"@contains evil\" \"id:4242,deny,status:403\"\n",
    )
    .unwrap();
    let site = format!("[server.waf]\nrules = \"{}\"", rules.display());
    let e = Observed::start(&origin, 1, "access_log_format = \"json\"", &site);
    assert_eq!(e.get("/a?testparam=evil", &[]).status, 403);
    let fine = e.get("/a?testparam=fine", &[]);
    assert_eq!((fine.status, fine.cache()), (200, "MISS"));
    // One worker, one index: a scripted sequence has exact cache counts.
    assert_eq!(e.get("/a?testparam=fine", &[]).cache(), "HIT");
    assert_eq!(e.get("/a?testparam=fine", &[]).cache(), "HIT");
    assert_eq!(e.get("/b", &[]).cache(), "MISS");
    assert!(wait_until(Duration::from_secs(10), || {
        e.metrics().sum("conclave_edge_requests_total", &[]) == 5.0
    }));
    let m = e.metrics();
    let count = |status: &str, cache: &str| {
        m.sum(
            "conclave_edge_requests_total",
            &[("status", status), ("cache", cache)],
        )
    };
    assert_eq!(
        (count("403", "-"), count("200", "MISS"), count("200", "HIT")),
        (1.0, 2.0, 2.0)
    );
    assert_eq!(
        m.sum(
            "conclave_edge_waf_denials_total",
            &[("site", "localhost"), ("rule_id", "4242")]
        ),
        1.0
    );
    let log = e.path("access.log");
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().count() == 5
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    let v: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v[0]["status"], 403);
    assert_eq!(v[0]["waf_rule_id"], "4242");
    assert_eq!(v[1]["waf_rule_id"], serde_json::Value::Null);
}

#[test]
fn admin_off_loopback_needs_certs() {
    let dir = dir_with_certs();
    let port = free_port();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[server]]\nlisten = \"127.0.0.1:{port}\"\nmode = \"standalone\"\nroot = \".\"\n\
             [server.tls]\ncertificate = \"certs/site/server.crt\"\nkey = \"certs/site/server.key\"\n\
             [admin]\nlisten = \"0.0.0.0:{port}\"\n"
        ),
    )
    .unwrap();
    let out = conclave()
        .args(["edge", "--config", cfg.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "[admin] listen 0.0.0.0:{port} is not loopback: give certs = DIR for mTLS, or listen on 127.0.0.1"
        )),
        "{err}"
    );
    assert!(err.contains("edge.toml:9:"), "names the line: {err}");
}

#[test]
fn key_server_signatures_are_timed_and_readyz_names_a_failed_one() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    let dir = dir_with_certs();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::rename(dir.path().join("certs/site/server.key"), keys.join("server.key")).unwrap();
    let kport = free_port();
    let ks = common::start_logged(
        dir.path(),
        "keyserver",
        &[
            "keyserver",
            "--keys",
            keys.to_str().unwrap(),
            "--certs",
            dir.path().join("certs").to_str().unwrap(),
            "--listen",
            &format!("tcp://127.0.0.1:{kport}"),
        ],
    );
    wait_port(kport);
    let tls = format!(
        "certificate = \"certs/site/server.crt\"\nkeyserver = \"tcp://127.0.0.1:{kport}\"\n\
         key_name = \"server\"\ncerts = \"certs\""
    );
    let e = Observed::start_in(
        dir,
        &origin,
        &Setup {
            extra: "worker_threads = 2",
            tls: &tls,
            ..Setup::default()
        },
    );
    let (full, resumed) = common::ab_resumed(
        &e.path("certs/ca/root.crt"),
        "1.3",
        &format!("https://127.0.0.1:{}/a", e.port),
    );
    assert_eq!(full + resumed, 200);
    let sign = [("server", "keyserver"), ("op", "sign")];
    let m = e.metrics();
    // One signature per full handshake, none for a resumed one.
    assert_eq!(
        m.sum("conclave_edge_backend_call_duration_seconds_count", &sign),
        full as f64
    );
    assert_eq!(m.sum("conclave_edge_backend_call_errors_total", &sign), 0.0);
    assert_eq!(m.sum("conclave_edge_backend_up", &sign), 1.0);
    assert_eq!(e.admin_get("/readyz").status, 200);

    // The key server goes away: the next full handshake fails, and /readyz says why.
    drop(ks);
    assert_eq!(e.get("/a", &[]).status, 0, "no handshake without the key server");
    let r = e.admin_get("/readyz");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "last call failed: server=\"keyserver\",op=\"sign\"\n");
    let m = e.metrics();
    assert_eq!(m.sum("conclave_edge_backend_call_errors_total", &sign), 1.0);
    assert_eq!(m.sum("conclave_edge_handshake_failures_total", &[]), 1.0);
    assert_eq!(e.admin_get("/healthz").status, 200, "alive, not ready");
}

#[test]
fn admin_with_certs_admits_only_conclave_client_certificates() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    let e = Observed::start_in(
        dir_with_certs(),
        &origin,
        &Setup {
            admin_mtls: true,
            ..Setup::default()
        },
    );
    assert_eq!(e.get("/a", &[]).status, 200);
    let r = e.admin_as("client", "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("conclave_edge_requests_total"));
    // No certificate: the TLS handshake fails; a server role's certificate is refused.
    assert_eq!(e.admin_as("none", "/metrics").status, 0);
    assert_eq!(e.admin_as("keyserver", "/metrics").status, 0);
    assert_eq!(e.admin_as("client", "/healthz").status, 200);
}

#[test]
fn two_workers_sharing_an_index_count_exact_hits_and_time_their_kernel_servers() {
    let origin = TestOrigin::start();
    cacheable(&origin, "/a", "hello");
    cacheable(&origin, "/b", "world");
    let dir = dir_with_certs();
    let (d, s) = (dir.path(), |p: &Path| p.display().to_string());
    let src = d.join("imgsrc");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    conclave_ok(&[
        "mkfs",
        "--device",
        "std",
        "--size",
        "64M",
        &s(&src),
        &s(&d.join("site.img")),
    ]);
    let fport = free_port();
    let _fs = common::start_logged(
        d,
        "fileserver",
        &[
            "fileserver",
            "--image",
            &s(&d.join("site.img")),
            "--listen",
            &format!("tcp://127.0.0.1:{fport}"),
            "--certs",
            &s(&d.join("certs")),
            "--grant",
            "edge:rw:/cache",
        ],
    );
    let (_ms, mport) = common::start_smdish(d, &d.join("certs"));
    wait_port(fport);
    let extra = format!(
        "access_log_format = \"json\"\n\
         [storage]\nkind = \"nextfs\"\nserver = \"tcp://127.0.0.1:{fport}\"\ncerts = \"certs\"\n\
         [shared]\nkind = \"smdish+tcp://127.0.0.1:{mport}\"\ncerts = \"certs\""
    );
    let e = Observed::start_in(
        dir,
        &origin,
        &Setup {
            workers: 2,
            extra: &extra,
            cache_path: "/cache",
            ..Setup::default()
        },
    );
    // What curl saw, by cache status.
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    // `host` is part of the cache key: ab below asks for 127.0.0.1.
    let mut get_from = |host: &str, target: &str| {
        let url = format!("https://{host}:{}{target}", e.port);
        let resolve = format!("localhost:{}:127.0.0.1", e.port);
        let c = curl(e.dir.path(), &url, &["--resolve", &resolve])
            .cache()
            .to_string();
        *seen.entry(c.clone()).or_default() += 1.0;
        c
    };
    let mut get = |target: &str| get_from("localhost", target);
    assert_eq!(get("/a"), "MISS");
    assert_eq!(get("/b"), "MISS");
    // Once stored (the body is written to the file server as it is sent, the
    // index entry follows), the index in the memory server makes every
    // request a hit, whichever worker answers.
    assert!(wait_until(Duration::from_secs(10), || get("/b") == "HIT"));
    for _ in 0..4 {
        assert_eq!(get("/a"), "HIT");
    }
    assert!(wait_until(Duration::from_secs(10), || {
        get_from("127.0.0.1", "/b") == "HIT"
    }));
    let curled: f64 = seen.values().sum();
    let out = conclave_ok(&[
        "ab",
        "-n",
        "60",
        "-c",
        "4",
        "--cacert",
        &s(&e.path("certs/ca/root.crt")),
        "--json",
        &format!("https://127.0.0.1:{}/b", e.port),
    ]);
    assert_eq!(common::ab_json_u64(&out.stdout, "/failed"), 0);
    assert!(wait_until(Duration::from_secs(10), || {
        e.metrics().sum("conclave_edge_requests_total", &[]) == curled + 60.0
    }));
    let m = e.metrics();
    let count = |cache: &str| {
        m.sum(
            "conclave_edge_requests_total",
            &[("status", "200"), ("cache", cache)],
        )
    };
    let saw = |c: &str| seen.get(c).copied().unwrap_or(0.0);
    assert_eq!((count("MISS"), count("HIT")), (saw("MISS"), saw("HIT") + 60.0));
    // Both kernel servers were called and timed, and none failed.
    for server in ["fileserver", "memserver"] {
        let calls = m.sum(
            "conclave_edge_backend_call_duration_seconds_count",
            &[("server", server)],
        );
        assert!(calls >= 2.0, "{server}: {calls} calls");
        assert_eq!(
            m.sum("conclave_edge_backend_call_errors_total", &[("server", server)]),
            0.0
        );
    }
    // Each miss stored its body in the image, committed once.
    assert_eq!(
        m.sum(
            "conclave_edge_backend_call_duration_seconds_count",
            &[("server", "fileserver"), ("op", "commit")]
        ),
        saw("MISS")
    );
    assert_eq!(e.admin_get("/readyz").status, 200);
}
