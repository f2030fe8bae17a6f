//! `conclave bench keys`: signatures per second and latency for RSA-2048 and
//! ECDSA P-256, signed in this process and through a key server (a separate
//! `conclave keyserver` process on loopback, mTLS), with 1, 2, 4 and 8
//! concurrent clients. Every number is a real signature of a TLS-1.3-sized
//! message.

use anyhow::{bail, Context};
use conclave_keys::rustls::SignatureScheme;
use conclave_keys::store::StoredKey;
use conclave_keys::{KeyClient, KeyName};
use conclave_rpc::pki::{self, Ca, SiteKey};
use conclave_rpc::Role;
use conclave_rpc::{Credentials, Endpoint};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub clients: Vec<usize>,
    /// Key types, comma-separated: rsa2048, ecdsa-p256.
    #[arg(long, value_delimiter = ',', default_value = "rsa2048,ecdsa-p256")]
    pub keys: Vec<String>,
    /// Skip the in-process measurements.
    #[arg(long)]
    pub remote_only: bool,
    /// Signing threads of the key server (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub server_threads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One measurement.
struct Row {
    key: &'static str,
    mode: &'static str,
    clients: usize,
    signs: u64,
    secs: f64,
    mean_us: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    /// CPU time (user + system, client and key server processes) per
    /// signature: what the row would cost on an idle machine, whatever the
    /// load from other processes.
    cpu_us_per_sign: f64,
}

/// Removes the scratch directory and stops the key server, however the run ends.
struct Scratch {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const MESSAGE_LEN: usize = 130;

fn key_spec(name: &str) -> anyhow::Result<(&'static str, SiteKey, SignatureScheme)> {
    match name {
        "rsa2048" | "rsa-2048" => Ok(("rsa-2048", SiteKey::Rsa2048, SignatureScheme::RSA_PSS_SHA256)),
        "ecdsa-p256" | "p256" => Ok((
            "ecdsa-p256",
            SiteKey::EcdsaP256,
            SignatureScheme::ECDSA_NISTP256_SHA256,
        )),
        other => bail!("unknown key type {other:?} (expected rsa2048 or ecdsa-p256)"),
    }
}

/// Runs the benchmark.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.seconds <= 0.0 || a.clients.is_empty() || a.clients.contains(&0) {
        bail!("--seconds must be positive and --clients a list of numbers ≥ 1");
    }
    let specs = a
        .keys
        .iter()
        .map(|k| key_spec(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("conclave-bench-keys-{}-{nanos}", std::process::id()));
    let mut scratch = Scratch { dir, child: None };
    let (certs, keys) = (scratch.dir.join("certs"), scratch.dir.join("keys"));
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(&keys)?;
    let (ca, ca_pem, ca_key) = Ca::generate()?;
    pki::write_file(&certs.join("root.crt"), &ca_pem, false, true)?;
    pki::write_file(&certs.join("root.key"), &ca_key, true, true)?;
    for role in [Role::KeyServer, Role::Edge] {
        let (c, k) = ca.issue(&[role.as_str()], SiteKey::EcdsaP256)?;
        pki::write_file(&certs.join(format!("{role}.crt")), &c, false, true)?;
        pki::write_file(&certs.join(format!("{role}.key")), &k, true, true)?;
    }
    let mut local_keys = Vec::new();
    for (name, kind, _) in &specs {
        let (_, k) = ca.issue(&["bench"], *kind)?;
        let path = keys.join(format!("{name}.key"));
        pki::write_file(&path, &k, true, true)?;
        local_keys.push(StoredKey::from_pem(KeyName::new(name)?, k.as_bytes(), &path)?);
    }

    let endpoint = spawn_keyserver(&mut scratch, &keys, &certs, a.server_threads)?;
    let server_pid = scratch.child.as_ref().map(|c| c.id());
    let creds = Credentials::from_dir(&certs, Role::Edge)?;
    let client = Arc::new(KeyClient::with_credentials(endpoint, &creds)?);

    let message = vec![0x20u8; MESSAGE_LEN];
    let dur = Duration::from_secs_f64(a.seconds);
    let mut rows = Vec::new();
    for (&(name, _, scheme), local) in specs.iter().zip(&local_keys) {
        for &c in &a.clients {
            if !a.remote_only {
                let key = local.key.clone();
                let msg = message.clone();
                let cpu0 = cpu_time(None);
                let mut r = measure(name, "in-process", c, dur, move || {
                    let signer = key.choose_scheme(&[scheme]).ok_or(())?;
                    signer.sign(&msg).map(|_| ()).map_err(|_| ())
                });
                r.cpu_us_per_sign = (cpu_time(None) - cpu0) * 1e6 / r.signs.max(1) as f64;
                rows.push(r);
                report_progress(&a, rows.last());
            }
            let client = client.clone();
            let msg = message.clone();
            let cpu0 = cpu_time(None) + cpu_time(server_pid);
            let mut r = measure(name, "keyserver", c, dur, move || {
                client.sign(name, scheme, &msg).map(|_| ()).map_err(|_| ())
            });
            let cpu = cpu_time(None) + cpu_time(server_pid) - cpu0;
            r.cpu_us_per_sign = cpu * 1e6 / r.signs.max(1) as f64;
            rows.push(r);
            report_progress(&a, rows.last());
        }
    }
    if rows.iter().any(|r| r.signs == 0) {
        bail!("a measurement made no signature (is the key server running?)");
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "key": r.key, "mode": r.mode, "clients": r.clients,
                    "signatures": r.signs, "seconds": r.secs,
                    "signs_per_sec": r.signs as f64 / r.secs,
                    "latency_us": {"mean": r.mean_us, "p50": r.p50_us, "p99": r.p99_us},
                    "errors": r.errors,
                    "cpu_us_per_sign": r.cpu_us_per_sign,
                })
            })
            .collect();
        super::print_line(serde_json::to_string_pretty(&serde_json::json!({
            "benchmark": "keys",
            "message_bytes": MESSAGE_LEN,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "results": v,
        }))?);
    } else {
        super::print_line(header());
        for r in &rows {
            super::print_line(row(r));
        }
    }
    Ok(())
}

fn report_progress(a: &Args, r: Option<&Row>) {
    if let (false, Some(r)) = (a.json, r) {
        eprintln!("{}", row(r));
    }
}

fn header() -> String {
    format!(
        "{:<11} {:<10} {:>7} {:>10} {:>9} {:>8} {:>8} {:>6} {:>11}",
        "key", "mode", "clients", "signs/s", "mean_us", "p50_us", "p99_us", "errors", "cpu_us/sign"
    )
}

fn row(r: &Row) -> String {
    format!(
        "{:<11} {:<10} {:>7} {:>10.0} {:>9.1} {:>8} {:>8} {:>6} {:>11.1}",
        r.key,
        r.mode,
        r.clients,
        r.signs as f64 / r.secs,
        r.mean_us,
        r.p50_us,
        r.p99_us,
        r.errors,
        r.cpu_us_per_sign
    )
}

/// Starts `conclave keyserver` on an ephemeral loopback port and returns
/// where it listens.
fn spawn_keyserver(s: &mut Scratch, keys: &Path, certs: &Path, threads: usize) -> anyhow::Result<Endpoint> {
    let exe = std::env::current_exe().context("locating the conclave binary")?;
    let mut child = Command::new(exe)
        .arg("keyserver")
        .arg("--keys")
        .arg(keys)
        .arg("--certs")
        .arg(certs)
        .args(["--listen", "tcp://127.0.0.1:0", "--threads", &threads.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting conclave keyserver")?;
    let stdout = child.stdout.take().context("key server stdout")?;
    s.child = Some(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ep = line
        .trim()
        .strip_prefix("keyserver listening on ")
        .with_context(|| format!("unexpected key server output {line:?}"))?;
    Ok(ep.parse()?)
}

/// Runs `op` in `clients` threads for `dur` after a short warm-up (which
/// also opens each client's connection) and collects the latencies.
fn measure<F>(key: &'static str, mode: &'static str, clients: usize, dur: Duration, op: F) -> Row
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
    all.sort_unstable();
    let pct = |q: f64| -> u64 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1]
        }
    };
    let mean = if all.is_empty() {
        0.0
    } else {
        all.iter().sum::<u64>() as f64 / all.len() as f64
    };
    Row {
        key,
        mode,
        clients,
        signs: all.len() as u64,
        secs: secs.max(1e-9),
        mean_us: mean,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
        cpu_us_per_sign: 0.0,
    }
}

/// User + system CPU seconds of a process (this one for `None`), from
/// `/proc/PID/stat`; 0 if unreadable. Linux reports it in USER_HZ = 100 ticks/s.
fn cpu_time(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
