//! The key-server benchmark (`conclave bench keys`): signatures per second
//! and latency for RSA-2048 and ECDSA P-256, signed in this process and
//! through a key server (a separate `conclave keyserver` process on
//! loopback, mTLS), with several concurrent clients. Every number is a real
//! signature of a TLS-1.3-sized message.

use crate::cpu::{process_cpu, self_cpu};

pub mod openssl;
use crate::error::{BenchError, Context};
use crate::harness::{Reap, Summary};
use conclave_keys::rustls::SignatureScheme;
use conclave_keys::store::StoredKey;
use conclave_keys::{KeyClient, KeyName};
use conclave_rpc::pki::{self, Ca, SiteKey};
use conclave_rpc::{Credentials, Endpoint, Role};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Length of the signed message (a TLS 1.3 CertificateVerify input).
pub const MESSAGE_LEN: usize = 130;

/// What to run.
#[derive(Clone, Debug)]
pub struct KeysBenchConfig {
    /// Time per measurement.
    pub duration: Duration,
    /// Numbers of concurrent clients.
    pub clients: Vec<usize>,
    /// Key types: rsa2048, ecdsa-p256.
    pub keys: Vec<String>,
    /// Skip the in-process measurements.
    pub remote_only: bool,
    /// Signing threads of the key server (0 = one per core).
    pub server_threads: usize,
    /// The `conclave` binary, started as the key server.
    pub conclave: PathBuf,
    /// Extra arguments of `conclave keyserver` (A/B runs of its modes).
    pub server_args: Vec<String>,
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct KeysRow {
    /// `rsa-2048` or `ecdsa-p256`.
    pub key: &'static str,
    /// `in-process` or `keyserver`.
    pub mode: &'static str,
    /// Concurrent clients.
    pub clients: usize,
    /// Signatures made.
    pub signs: u64,
    /// Wall time.
    pub secs: f64,
    /// Latency, µs.
    pub latency: Summary,
    /// Failed signatures.
    pub errors: u64,
    /// CPU time (user + system, client and key server processes) per
    /// signature: what the row would cost on an idle machine.
    pub cpu_us_per_sign: f64,
    /// CPU time of the key-server process alone per signature (keyserver
    /// rows): the raw signature plus the server's TLS records, framing and
    /// scheduling, to set beside `openssl speed`'s per-signature CPU.
    pub server_cpu_us_per_sign: Option<f64>,
}

/// Table heading, aligned with [`KeysRow::line`].
pub fn header() -> String {
    format!(
        "{:<11} {:<10} {:>7} {:>10} {:>9} {:>8} {:>8} {:>6} {:>11} {:>14}",
        "key",
        "mode",
        "clients",
        "signs/s",
        "mean_us",
        "p50_us",
        "p99_us",
        "errors",
        "cpu_us/sign",
        "server_us/sign"
    )
}

impl KeysRow {
    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<11} {:<10} {:>7} {:>10.0} {:>9.1} {:>8} {:>8} {:>6} {:>11.1} {:>14}",
            self.key,
            self.mode,
            self.clients,
            self.signs as f64 / self.secs,
            self.latency.mean,
            self.latency.p50,
            self.latency.p99,
            self.errors,
            self.cpu_us_per_sign,
            self.server_cpu_us_per_sign
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into())
        )
    }

    /// Signatures per second of wall time.
    pub fn signs_per_sec(&self) -> f64 {
        self.signs as f64 / self.secs
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.key, "mode": self.mode, "clients": self.clients,
            "signatures": self.signs, "seconds": self.secs,
            "signs_per_sec": self.signs as f64 / self.secs,
            "latency_us": {"mean": self.latency.mean, "p50": self.latency.p50, "p99": self.latency.p99},
            "errors": self.errors,
            "cpu_us_per_sign": self.cpu_us_per_sign,
            "server_cpu_us_per_sign": self.server_cpu_us_per_sign,
        })
    }
}

/// The key server beside `openssl speed` for one key type.
#[derive(Clone, Debug, PartialEq)]
pub struct OpensslComparison {
    /// `rsa-2048` or `ecdsa-p256`.
    pub key: &'static str,
    /// `openssl speed`, one process: signatures per CPU-second.
    pub openssl_signs_per_cpu_sec: f64,
    /// `openssl speed -multi N`: the processes' summed signs/s.
    pub openssl_multi_signs_per_sec: f64,
    /// N of `-multi` (the cores).
    pub multi: usize,
    /// The key-server row compared: 1 or 4 clients, else the most measured.
    pub clients: usize,
    /// That row's key-server CPU per signature.
    pub server_cpu_us_per_sign: f64,
    /// That row's signs/s.
    pub keyserver_signs_per_sec: f64,
}

impl OpensslComparison {
    /// OpenSSL's CPU µs per signature: 1e6 / signs per CPU-second.
    pub fn openssl_cpu_us_per_sign(&self) -> f64 {
        1e6 / self.openssl_signs_per_cpu_sec
    }

    /// Key-server CPU per signature over OpenSSL's (1 = no overhead).
    pub fn cpu_ratio(&self) -> f64 {
        self.server_cpu_us_per_sign / self.openssl_cpu_us_per_sign()
    }

    /// Key-server signs/s over `openssl speed -multi N`'s.
    pub fn throughput_ratio(&self) -> f64 {
        self.keyserver_signs_per_sec / self.openssl_multi_signs_per_sec
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.key,
            "openssl_signs_per_cpu_sec": self.openssl_signs_per_cpu_sec,
            "openssl_cpu_us_per_sign": self.openssl_cpu_us_per_sign(),
            "keyserver_clients": self.clients,
            "keyserver_cpu_us_per_sign": self.server_cpu_us_per_sign,
            "cpu_ratio": self.cpu_ratio(),
            "openssl_multi": self.multi,
            "openssl_multi_signs_per_sec": self.openssl_multi_signs_per_sec,
            "keyserver_signs_per_sec": self.keyserver_signs_per_sec,
            "throughput_ratio": self.throughput_ratio(),
        })
    }
}

/// What `openssl speed` gave to compare with: one comparison per key type,
/// or why there is none (openssl missing, or it failed).
#[derive(Clone, Debug, PartialEq)]
pub struct OpensslReference {
    /// `openssl version`.
    pub version: String,
    /// `-seconds` of each run.
    pub seconds: u32,
    /// The comparisons, or the reason there are none.
    pub result: Result<Vec<OpensslComparison>, String>,
}

/// The key-server rows of `key` to set beside OpenSSL: 1 and 4 clients
/// (one client shows the cost per signature of a lone caller, 4 is the
/// issue's throughput target), or the most clients when neither was measured.
fn compared_rows<'a>(rows: &'a [KeysRow], key: &str) -> Vec<&'a KeysRow> {
    let ks = || {
        rows.iter()
            .filter(move |r| r.key == key && r.mode == "keyserver" && r.server_cpu_us_per_sign.is_some())
    };
    let picked: Vec<&KeysRow> = ks().filter(|r| r.clients == 1 || r.clients == 4).collect();
    if picked.is_empty() {
        ks().max_by_key(|r| r.clients).into_iter().collect()
    } else {
        picked
    }
}

/// Runs `openssl speed` (one process, then `-multi` one per core) for each
/// key type measured through the key server, `seconds` each, and sets the
/// results beside the key-server rows. Run it while the key server is idle.
pub fn compare_with_openssl(rows: &[KeysRow], seconds: u32) -> OpensslReference {
    let seconds = seconds.max(1);
    let version = match openssl::version() {
        // "OpenSSL 3.0.19 27 Jan 2026 (Library: …)": the first part says it.
        Ok(v) => v.split(" (").next().unwrap_or_default().to_string(),
        Err(e) => {
            return OpensslReference {
                version: String::new(),
                seconds,
                result: Err(e.to_string()),
            }
        }
    };
    let multi = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut keys: Vec<&'static str> = Vec::new();
    for r in rows {
        if !keys.contains(&r.key) {
            keys.push(r.key);
        }
    }
    let compare = |key: &'static str| -> Result<Vec<OpensslComparison>, openssl::OpensslError> {
        let picked = compared_rows(rows, key);
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        // One openssl run per key type, shared by its rows.
        let single = openssl::speed(key, seconds, None)?;
        let multi_rate = openssl::speed(key, seconds, Some(multi))?;
        Ok(picked
            .into_iter()
            .map(|row| OpensslComparison {
                key,
                openssl_signs_per_cpu_sec: single,
                openssl_multi_signs_per_sec: multi_rate,
                multi,
                clients: row.clients,
                server_cpu_us_per_sign: row.server_cpu_us_per_sign.unwrap_or_default(),
                keyserver_signs_per_sec: row.signs_per_sec(),
            })
            .collect())
    };
    let result = keys
        .into_iter()
        .map(compare)
        .collect::<Result<Vec<_>, openssl::OpensslError>>()
        .map(|v| v.into_iter().flatten().collect())
        .map_err(|e| e.to_string());
    OpensslReference {
        version,
        seconds,
        result,
    }
}

/// The rows (and the OpenSSL reference, when run) as the JSON document of
/// `--json`.
pub fn json(rows: &[KeysRow], reference: Option<&OpensslReference>) -> String {
    let v: Vec<_> = rows.iter().map(KeysRow::json).collect();
    let openssl = reference.map(|r| match &r.result {
        Ok(c) => serde_json::json!({
            "version": r.version,
            "seconds": r.seconds,
            "comparisons": c.iter().map(OpensslComparison::json).collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({ "error": e }),
    });
    serde_json::to_string_pretty(&serde_json::json!({
        "benchmark": "keys",
        "message_bytes": MESSAGE_LEN,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "results": v,
        "openssl": openssl,
    }))
    .unwrap_or_default()
}

/// The rows as a table, then the OpenSSL comparison (or a loud line saying
/// why there is none).
pub fn table(rows: &[KeysRow], reference: Option<&OpensslReference>) -> String {
    let mut lines: Vec<String> = std::iter::once(header())
        .chain(rows.iter().map(KeysRow::line))
        .collect();
    if let Some(r) = reference {
        lines.push(String::new());
        lines.extend(openssl_lines(r));
    }
    lines.join("\n")
}

/// The comparison with `openssl speed` as text lines.
pub fn openssl_lines(r: &OpensslReference) -> Vec<String> {
    let c = match &r.result {
        Ok(c) => c,
        Err(e) => return vec![format!("WARNING: {e}")],
    };
    let mut out = vec![
        format!(
            "key server vs `openssl speed -seconds {}` ({}): one openssl process's signs/s are per \
             CPU-second, so 1e6/rate = its CPU µs per signature; server_us/sign = the key-server \
             process's CPU per signature (from /proc)",
            r.seconds, r.version
        ),
        format!(
            "{:<11} {:>15} {:>14} {:>7} {:>7} {:>14} {:>12} {:>7}",
            "key",
            "openssl_us/sign",
            "server_us/sign",
            "clients",
            "ratio",
            "openssl_multi/s",
            "keyserver/s",
            "ratio"
        ),
    ];
    for x in c {
        out.push(format!(
            "{:<11} {:>15.1} {:>14.1} {:>7} {:>6.2}x {:>14.0} {:>12.0} {:>6.2}x",
            x.key,
            x.openssl_cpu_us_per_sign(),
            x.server_cpu_us_per_sign,
            x.clients,
            x.cpu_ratio(),
            x.openssl_multi_signs_per_sec,
            x.keyserver_signs_per_sec,
            x.throughput_ratio()
        ));
    }
    if let Some(m) = c.first().map(|x| x.multi) {
        out.push(format!(
            "openssl_multi/s = `openssl speed -multi {m}` (one process per core), summed; with -multi \
             openssl measures wall-clock time, so this ratio, like signs/s, depends on what else runs"
        ));
    }
    out
}

/// Removes the scratch directory and stops the key server, however the run ends.
struct Scratch {
    dir: PathBuf,
    child: Option<Reap>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.child.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key_spec(name: &str) -> Result<(&'static str, SiteKey, SignatureScheme), BenchError> {
    match name {
        "rsa2048" | "rsa-2048" => Ok(("rsa-2048", SiteKey::Rsa2048, SignatureScheme::RSA_PSS_SHA256)),
        "ecdsa-p256" | "p256" => Ok((
            "ecdsa-p256",
            SiteKey::EcdsaP256,
            SignatureScheme::ECDSA_NISTP256_SHA256,
        )),
        other => Err(BenchError::msg(format!(
            "unknown key type {other:?} (expected rsa2048 or ecdsa-p256)"
        ))),
    }
}

fn cpu_secs(pid: Option<u32>) -> f64 {
    match pid {
        Some(p) => process_cpu(p),
        None => self_cpu(),
    }
    .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the benchmark; `progress` sees each row as it is measured.
pub fn run(cfg: &KeysBenchConfig, mut progress: impl FnMut(&KeysRow)) -> Result<Vec<KeysRow>, BenchError> {
    if cfg.duration.is_zero() || cfg.clients.is_empty() || cfg.clients.contains(&0) {
        return Err(BenchError::msg(
            "--seconds must be positive and --clients a list of numbers ≥ 1",
        ));
    }
    let specs = cfg
        .keys
        .iter()
        .map(|k| key_spec(k))
        .collect::<Result<Vec<_>, _>>()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("conclave-bench-keys-{}-{nanos}", std::process::id()));
    let mut scratch = Scratch { dir, child: None };
    let (certs, keys) = (scratch.dir.join("certs"), scratch.dir.join("keys"));
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(&keys)?;
    let (ca, ca_pem, ca_key) = Ca::generate().plain()?;
    pki::write_file(&certs.join("root.crt"), &ca_pem, false, true).plain()?;
    pki::write_file(&certs.join("root.key"), &ca_key, true, true).plain()?;
    for role in [Role::KeyServer, Role::Edge] {
        let (c, k) = ca.issue(&[role.as_str()], SiteKey::EcdsaP256).plain()?;
        pki::write_file(&certs.join(format!("{role}.crt")), &c, false, true).plain()?;
        pki::write_file(&certs.join(format!("{role}.key")), &k, true, true).plain()?;
    }
    let mut local_keys = Vec::new();
    for (name, kind, _) in &specs {
        let (_, k) = ca.issue(&["bench"], *kind).plain()?;
        let path = keys.join(format!("{name}.key"));
        pki::write_file(&path, &k, true, true).plain()?;
        let key_name = KeyName::new(name).plain()?;
        local_keys.push(StoredKey::from_pem(key_name, k.as_bytes(), &path).plain()?);
    }

    let endpoint = spawn_keyserver(&mut scratch, cfg, &keys, &certs)?;
    let server_pid = scratch.child.as_ref().map(|c| c.0.id());
    let creds = Credentials::from_dir(&certs, Role::Edge).plain()?;
    let client = Arc::new(KeyClient::with_credentials(endpoint, &creds).plain()?);

    // TLS 1.3 CertificateVerify content: the key server signs only
    // handshake-shaped messages by default.
    let message = conclave_keys::shape::tls13_certificate_verify(&[0x5a; 32]);
    debug_assert_eq!(message.len(), MESSAGE_LEN);
    let dur = cfg.duration;
    let mut rows = Vec::new();
    for (&(name, _, scheme), local) in specs.iter().zip(&local_keys) {
        for &c in &cfg.clients {
            if !cfg.remote_only {
                let key = local.key.clone();
                let msg = message.clone();
                let cpu0 = cpu_secs(None);
                let mut r = measure(name, "in-process", c, dur, move || {
                    let signer = key.choose_scheme(&[scheme]).ok_or(())?;
                    signer.sign(&msg).map(|_| ()).map_err(|_| ())
                });
                r.cpu_us_per_sign = (cpu_secs(None) - cpu0) * 1e6 / r.signs.max(1) as f64;
                progress(&r);
                rows.push(r);
            }
            let client = client.clone();
            let msg = message.clone();
            let (client0, server0) = (cpu_secs(None), cpu_secs(server_pid));
            let mut r = measure(name, "keyserver", c, dur, move || {
                client.sign(name, scheme, &msg).map(|_| ()).map_err(|_| ())
            });
            let server = cpu_secs(server_pid) - server0;
            let cpu = cpu_secs(None) - client0 + server;
            r.cpu_us_per_sign = cpu * 1e6 / r.signs.max(1) as f64;
            r.server_cpu_us_per_sign = server_pid.map(|_| server * 1e6 / r.signs.max(1) as f64);
            progress(&r);
            rows.push(r);
        }
    }
    if rows.iter().any(|r| r.signs == 0) {
        return Err(BenchError::msg(
            "a measurement made no signature (is the key server running?)",
        ));
    }
    Ok(rows)
}

/// Starts `conclave keyserver` on an ephemeral loopback port and returns
/// where it listens.
fn spawn_keyserver(
    s: &mut Scratch,
    cfg: &KeysBenchConfig,
    keys: &Path,
    certs: &Path,
) -> Result<Endpoint, BenchError> {
    let mut threads: Vec<String> = Vec::new();
    if cfg.server_threads != 0 {
        // A thread count only means something for the signing pool (the
        // key server signs inline by default and refuses --threads alone).
        if !cfg.server_args.iter().any(|a| a == "--sign-pool") {
            threads.push("--sign-pool".to_string());
        }
        threads.extend(["--threads".to_string(), cfg.server_threads.to_string()]);
    }
    let mut child = Command::new(&cfg.conclave)
        .arg("keyserver")
        .arg("--keys")
        .arg(keys)
        .arg("--certs")
        .arg(certs)
        .args(["--listen", "tcp://127.0.0.1:0"])
        .args(&threads)
        .args(&cfg.server_args)
        // The bench measures signing capacity, not the per-identity policy.
        .args(["--max-signs-per-sec", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting conclave keyserver")?;
    let stdout = child.stdout.take().context("key server stdout")?;
    s.child = Some(Reap(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ep = line
        .trim()
        .strip_prefix("keyserver listening on ")
        .context(format_args!("unexpected key server output {line:?}"))?;
    ep.parse().plain()
}

/// Runs `op` in `clients` threads for `dur` after a short warm-up (which
/// also opens each client's connection) and collects the latencies.
fn measure<F>(key: &'static str, mode: &'static str, clients: usize, dur: Duration, op: F) -> KeysRow
where
    F: Fn() -> Result<(), ()> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let start_line = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (op, start_line) = (op.clone(), start_line.clone());
        handles.push(std::thread::spawn(move || {
            for _ in 0..3 {
                let _ = op();
            }
            start_line.wait();
            let t0 = Instant::now();
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0u64;
            while t0.elapsed() < dur {
                let t = Instant::now();
                match op() {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                    Err(()) => errors += 1,
                }
            }
            (lat, errors, t0.elapsed())
        }));
    }
    start_line.wait();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut secs: f64 = 0.0;
    for h in handles {
        if let Ok((lat, e, el)) = h.join() {
            all.extend(lat);
            errors += e;
            secs = secs.max(el.as_secs_f64());
        }
    }
    let latency = Summary::of(&mut all);
    KeysRow {
        key,
        mode,
        clients,
        signs: latency.count as u64,
        secs: secs.max(1e-9),
        latency,
        errors,
        cpu_us_per_sign: 0.0,
        server_cpu_us_per_sign: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        key: &'static str,
        mode: &'static str,
        clients: usize,
        signs: u64,
        server: Option<f64>,
    ) -> KeysRow {
        KeysRow {
            key,
            mode,
            clients,
            signs,
            secs: 1.0,
            latency: Summary::default(),
            errors: 0,
            cpu_us_per_sign: 300.0,
            server_cpu_us_per_sign: server,
        }
    }

    #[test]
    fn compares_the_four_client_key_server_row_with_openssl() {
        let rows = [
            row("rsa-2048", "in-process", 4, 4000, None),
            row("rsa-2048", "keyserver", 1, 1500, Some(260.0)),
            row("rsa-2048", "keyserver", 4, 4000, Some(240.0)),
            row("rsa-2048", "keyserver", 8, 4100, Some(250.0)),
            row("ecdsa-p256", "keyserver", 2, 20000, Some(40.0)),
        ];
        let clients = |key| {
            compared_rows(&rows, key)
                .iter()
                .map(|r| r.clients)
                .collect::<Vec<_>>()
        };
        assert_eq!(clients("rsa-2048"), [1, 4]);
        // Neither 1 nor 4 clients: the most clients.
        assert_eq!(clients("ecdsa-p256"), [2]);
        let c = OpensslComparison {
            key: "rsa-2048",
            openssl_signs_per_cpu_sec: 5000.0,
            openssl_multi_signs_per_sec: 5000.0,
            multi: 2,
            clients: 4,
            server_cpu_us_per_sign: 240.0,
            keyserver_signs_per_sec: 4000.0,
        };
        assert_eq!(c.openssl_cpu_us_per_sign(), 200.0);
        assert!((c.cpu_ratio() - 1.2).abs() < 1e-12);
        assert!((c.throughput_ratio() - 0.8).abs() < 1e-12);
        let reference = OpensslReference {
            version: "OpenSSL 3.0.19".into(),
            seconds: 3,
            result: Ok(vec![c]),
        };
        let text = table(&rows, Some(&reference));
        assert!(
            text.contains("rsa-2048              200.0          240.0       4   1.20x           5000         4000   0.80x"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&rows, Some(&reference))).unwrap();
        assert_eq!(v["openssl"]["comparisons"][0]["cpu_ratio"], 1.2);
        assert_eq!(v["results"][2]["server_cpu_us_per_sign"], 240.0);
        assert!(v["results"][0]["server_cpu_us_per_sign"].is_null());
        let missing = OpensslReference {
            version: String::new(),
            seconds: 3,
            result: Err(openssl::OpensslError::Missing.to_string()),
        };
        assert!(table(&rows, Some(&missing)).ends_with(
            "WARNING: openssl is NOT installed: no `openssl speed` reference (apt-get install openssl)"
        ));
        assert!(json(&rows, Some(&missing)).contains("\"error\": \"openssl is NOT installed"));
    }
}
