//! The key-server benchmark (`conclave bench keys`): signatures per second
//! and latency for RSA-2048 and ECDSA P-256, signed in this process and
//! through a key server (a separate `conclave keyserver` process on
//! loopback, mTLS), with several concurrent clients. Every number is a real
//! signature of a TLS-1.3-sized message.

use crate::cpu::{process_cpu, self_cpu};
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
}

/// Table heading, aligned with [`KeysRow::line`].
pub fn header() -> String {
    format!(
        "{:<11} {:<10} {:>7} {:>10} {:>9} {:>8} {:>8} {:>6} {:>11}",
        "key", "mode", "clients", "signs/s", "mean_us", "p50_us", "p99_us", "errors", "cpu_us/sign"
    )
}

impl KeysRow {
    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<11} {:<10} {:>7} {:>10.0} {:>9.1} {:>8} {:>8} {:>6} {:>11.1}",
            self.key,
            self.mode,
            self.clients,
            self.signs as f64 / self.secs,
            self.latency.mean,
            self.latency.p50,
            self.latency.p99,
            self.errors,
            self.cpu_us_per_sign
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.key, "mode": self.mode, "clients": self.clients,
            "signatures": self.signs, "seconds": self.secs,
            "signs_per_sec": self.signs as f64 / self.secs,
            "latency_us": {"mean": self.latency.mean, "p50": self.latency.p50, "p99": self.latency.p99},
            "errors": self.errors,
            "cpu_us_per_sign": self.cpu_us_per_sign,
        })
    }
}

/// The rows as the JSON document of `--json`.
pub fn json(rows: &[KeysRow]) -> String {
    let v: Vec<_> = rows.iter().map(KeysRow::json).collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "benchmark": "keys",
        "message_bytes": MESSAGE_LEN,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "results": v,
    }))
    .unwrap_or_default()
}

/// The rows as a table.
pub fn table(rows: &[KeysRow]) -> String {
    std::iter::once(header())
        .chain(rows.iter().map(KeysRow::line))
        .collect::<Vec<_>>()
        .join("\n")
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

    let endpoint = spawn_keyserver(&mut scratch, &cfg.conclave, &keys, &certs, cfg.server_threads)?;
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
            let cpu0 = cpu_secs(None) + cpu_secs(server_pid);
            let mut r = measure(name, "keyserver", c, dur, move || {
                client.sign(name, scheme, &msg).map(|_| ()).map_err(|_| ())
            });
            let cpu = cpu_secs(None) + cpu_secs(server_pid) - cpu0;
            r.cpu_us_per_sign = cpu * 1e6 / r.signs.max(1) as f64;
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
    exe: &Path,
    keys: &Path,
    certs: &Path,
    threads: usize,
) -> Result<Endpoint, BenchError> {
    let mut child = Command::new(exe)
        .arg("keyserver")
        .arg("--keys")
        .arg(keys)
        .arg("--certs")
        .arg(certs)
        .args(["--listen", "tcp://127.0.0.1:0", "--threads", &threads.to_string()])
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
    }
}
