//! The memory-server benchmark (`conclave bench mem`), the original
//! smbench our way. Times one critical section (lock, write 1 byte, unlock)
//! per kind and segment size, with one client and under contention from
//! several client PROCESSES (threads for the in-process kinds, which cannot
//! span processes). Starts its own memory servers and certificates in a
//! temporary directory.

use crate::error::{BenchError, Context};
use crate::harness::{json_rows, Reap, Summary};
use conclave_mem::{connect, MemOptions, MemSpec, MemoryStore};
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use conclave_rpc::{Credentials, Role};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct MemBenchConfig {
    /// Kinds: mutex (a bare std Mutex), local, smdish, smuf, smc.
    pub kinds: Vec<String>,
    /// Segment sizes in bytes.
    pub sizes: Vec<usize>,
    /// Numbers of concurrent clients.
    pub procs: Vec<usize>,
    /// Critical sections per client for segments under 1 MiB.
    pub iters: u64,
    /// Critical sections per client for segments of 1 MiB and more.
    pub iters_large: u64,
    /// Where the servers' sockets, the certificates and the host files go
    /// (a fresh subdirectory of it, removed afterwards).
    pub dir: PathBuf,
    /// The `conclave` binary, started as memory servers and as client
    /// processes (`conclave bench mem --worker ...`).
    pub conclave: PathBuf,
}

/// One client process of a cell (`conclave bench mem --worker ...`).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The memory store.
    pub spec: MemSpec,
    /// The memory file.
    pub name: String,
    /// Its size.
    pub size: usize,
    /// Client certificates for the servers.
    pub certs: Option<PathBuf>,
    /// The smc secret.
    pub secret: Option<PathBuf>,
}

/// `1KiB`, `1MiB` or `27B`.
pub fn size_label(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{}MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n}B")
    }
}

/// One measured cell.
#[derive(Clone, Debug)]
pub struct MemCell {
    /// The kind.
    pub kind: String,
    /// Segment size.
    pub size: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Critical sections timed.
    pub sections: usize,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Critical sections per second, all clients together.
    pub per_sec: f64,
}

impl MemCell {
    /// The progress line printed while the benchmark runs.
    pub fn progress_line(&self) -> String {
        format!(
            "{:<7} {:>7} x{}  mean {:>9.1} us  p99 {:>9.1} us",
            self.kind,
            size_label(self.size),
            self.clients,
            self.mean_us,
            self.p99_us
        )
    }
}

/// The cells as one JSON array.
pub fn json(cells: &[MemCell]) -> String {
    let rows: Vec<String> = cells
        .iter()
        .map(|c| {
            format!(
                "{{\"kind\":\"{}\",\"size\":{},\"clients\":{},\"sections\":{},\"mean_us\":{:.2},\"p50_us\":{:.2},\"p99_us\":{:.2},\"sections_per_sec\":{:.1}}}",
                c.kind, c.size, c.clients, c.sections, c.mean_us, c.p50_us, c.p99_us, c.per_sec
            )
        })
        .collect();
    json_rows(&rows)
}

/// The cells as a Markdown table.
pub fn table(cells: &[MemCell]) -> String {
    let mut lines = vec![
        "| kind | segment | clients | sections | mean µs | p50 µs | p99 µs | sections/s |".to_string(),
        "|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for c in cells {
        lines.push(format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} |",
            c.kind,
            size_label(c.size),
            c.clients,
            c.sections,
            c.mean_us,
            c.p50_us,
            c.p99_us,
            c.per_sec
        ));
    }
    lines.join("\n")
}

fn summarize(kind: &str, size: usize, clients: usize, mut ns: Vec<u64>, wall: f64) -> MemCell {
    let s = Summary::of(&mut ns);
    MemCell {
        kind: kind.to_string(),
        size,
        clients,
        sections: s.count,
        mean_us: s.mean / 1e3,
        p50_us: s.p50 as f64 / 1e3,
        p99_us: s.p99 as f64 / 1e3,
        per_sec: s.count as f64 / wall,
    }
}

/// Runs one client process: opens the memory file, says `ready` on
/// `output`, reads the iteration count from `input`, then writes the
/// latencies (ns, space-separated) on one line.
pub fn worker(w: &WorkerConfig, mut input: impl BufRead, mut output: impl Write) -> Result<(), BenchError> {
    let creds = match &w.certs {
        Some(d) => Some(Credentials::from_dir(d, Role::Client).plain()?),
        None => None,
    };
    let store = connect(
        &w.spec,
        &MemOptions {
            creds,
            secret_file: w.secret.clone(),
        },
    )?;
    let mut f = store.open(&w.name, w.size)?;
    writeln!(output, "ready")?;
    output.flush()?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let iters: u64 = line
        .trim()
        .parse()
        .context("the go line must be the iteration count")?;
    let mut out = String::with_capacity(iters as usize * 8);
    for _ in 0..iters {
        let t = Instant::now();
        let mut g = f.lock()?;
        g[0] = g[0].wrapping_add(1);
        g.unlock()?;
        out.push_str(&t.elapsed().as_nanos().to_string());
        out.push(' ');
    }
    f.close()?;
    writeln!(output, "{}", out.trim_end())?;
    output.flush()?;
    Ok(())
}

struct Env {
    dir: PathBuf,
    certs: PathBuf,
    secret: PathBuf,
    servers: Vec<Reap>,
    specs: Vec<(String, MemSpec)>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server(
    exe: &Path,
    kind: &str,
    sock: &Path,
    certs: &Path,
    dir: Option<&Path>,
) -> Result<Reap, BenchError> {
    let mut cmd = Command::new(exe);
    // The benchmark's processes present the `client` identity; a memory
    // server grants it nothing unless told (docs/mem.md).
    cmd.args(["memserver", "--kind", kind, "--listen"])
        .arg(format!("unix://{}", sock.display()))
        .arg("--certs")
        .arg(certs)
        .args(["--grant", "client:rw:bench-*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = dir {
        cmd.arg("--dir").arg(d);
    }
    let mut child = Reap(cmd.spawn().context("starting conclave memserver")?);
    let out = child.0.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with("listening on") {
        return Err(BenchError::msg(format!(
            "{kind} server did not start (said {line:?})"
        )));
    }
    Ok(child)
}

fn setup(base: &Path, kinds: &[String], exe: &Path) -> Result<Env, BenchError> {
    let dir = base.join(format!("conclave-bench-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let certs = dir.join("certs");
    let secret = dir.join("secret");
    let mut env = Env {
        dir: dir.clone(),
        certs: certs.clone(),
        secret: secret.clone(),
        servers: Vec::new(),
        specs: Vec::new(),
    };
    pki::generate(&CertsOptions {
        tenants: Vec::new(),
        out: certs.clone(),
        site_key: SiteKey::EcdsaP256,
        force: true,
    })
    .plain()?;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    conclave_secret::write_private(&secret, &key)?;
    for k in kinds {
        let spec: MemSpec = match k.as_str() {
            "smdish" => {
                let sock = dir.join("smdish.sock");
                env.servers
                    .push(start_server(exe, "smdish", &sock, &certs, None)?);
                format!("smdish+unix://{}", sock.display()).parse()?
            }
            "smuf" => {
                let sock = dir.join("smuf.sock");
                let host = dir.join("smuf");
                env.servers
                    .push(start_server(exe, "smuf", &sock, &certs, Some(&host))?);
                format!("smuf+unix://{}?dir={}", sock.display(), host.display()).parse()?
            }
            "smc" => format!("smc://{}?secret={}", dir.join("smc").display(), secret.display()).parse()?,
            "local" => MemSpec::Local,
            "mutex" => continue,
            other => {
                return Err(BenchError::msg(format!(
                    "unknown kind {other:?} (expected mutex, local, smdish, smuf or smc)"
                )))
            }
        };
        env.specs.push((k.to_string(), spec));
    }
    Ok(env)
}

fn run_threads(
    kind: &str,
    size: usize,
    clients: usize,
    iters: u64,
    store: Option<Arc<dyn MemoryStore>>,
) -> Result<MemCell, BenchError> {
    let name = format!("bench-{size}-{clients}");
    let mutex = Arc::new(Mutex::new(vec![0u8; size]));
    let keeper = match &store {
        Some(s) => Some(s.open(&name, size)?),
        None => None,
    };
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (store, mutex, barrier, name) = (store.clone(), mutex.clone(), barrier.clone(), name.clone());
        handles.push(std::thread::spawn(move || -> Result<Vec<u64>, BenchError> {
            let mut file = match &store {
                Some(s) => Some(s.open(&name, size)?),
                None => None,
            };
            let mut ns = Vec::with_capacity(iters as usize);
            barrier.wait();
            for _ in 0..iters {
                let t = Instant::now();
                match file.as_mut() {
                    Some(f) => {
                        let mut g = f.lock()?;
                        g[0] = g[0].wrapping_add(1);
                        g.unlock()?;
                    }
                    None => {
                        let mut g = mutex.lock().unwrap_or_else(|p| p.into_inner());
                        g[0] = g[0].wrapping_add(1);
                    }
                }
                ns.push(t.elapsed().as_nanos() as u64);
            }
            Ok(ns)
        }));
    }
    // Start the clock before releasing the threads, or a descheduled main
    // thread would miss their run.
    let t0 = Instant::now();
    barrier.wait();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| BenchError::msg("a benchmark thread panicked"))??,
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    drop(keeper);
    Ok(summarize(kind, size, clients, all, wall))
}

fn run_procs(
    env: &Env,
    exe: &Path,
    kind: &str,
    spec: &MemSpec,
    size: usize,
    clients: usize,
    iters: u64,
) -> Result<MemCell, BenchError> {
    let name = format!("bench-{size}-{clients}");
    let store = connect(
        spec,
        &MemOptions {
            creds: Some(Credentials::from_dir(&env.certs, Role::Client).plain()?),
            secret_file: Some(env.secret.clone()),
        },
    )?;
    let keeper = store.open(&name, size)?;
    let mut kids: Vec<(Reap, ChildStdin, BufReader<ChildStdout>)> = Vec::new();
    for _ in 0..clients {
        let mut child = Reap(
            Command::new(exe)
                .args(["bench", "mem", "--worker"])
                .arg(spec.to_string())
                .args(["--worker-name", &name, "--worker-size", &size.to_string()])
                .arg("--worker-certs")
                .arg(&env.certs)
                .arg("--worker-secret")
                .arg(&env.secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a benchmark client process")?,
        );
        let stdin = child.0.stdin.take().context("no stdin")?;
        let mut stdout = BufReader::new(child.0.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(BenchError::msg(format!(
                "{kind} client process failed to open {name} (said {line:?})"
            )));
        }
        kids.push((child, stdin, stdout));
    }
    let t0 = Instant::now();
    for (_, stdin, _) in kids.iter_mut() {
        writeln!(stdin, "{iters}")?;
        stdin.flush()?;
    }
    let mut all = Vec::new();
    for (mut child, _, mut stdout) in kids {
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        for v in line.split_whitespace() {
            all.push(v.parse::<u64>().context("bad latency from a client process")?);
        }
        let st = child.0.wait()?;
        if !st.success() {
            return Err(BenchError::msg(format!("a {kind} client process failed ({st})")));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    if all.len() as u64 != iters * clients as u64 {
        return Err(BenchError::msg(format!(
            "{kind}: expected {} samples, got {}",
            iters * clients as u64,
            all.len()
        )));
    }
    keeper.close()?;
    Ok(summarize(kind, size, clients, all, wall))
}

/// Runs every cell (kind × size × clients); `progress` sees each cell as
/// it is measured.
pub fn run(cfg: &MemBenchConfig, mut progress: impl FnMut(&MemCell)) -> Result<Vec<MemCell>, BenchError> {
    if cfg.procs.contains(&0) {
        return Err(BenchError::msg("--procs values must be at least 1"));
    }
    let env = setup(&cfg.dir, &cfg.kinds, &cfg.conclave)?;
    let mut cells = Vec::new();
    for kind in &cfg.kinds {
        for &size in &cfg.sizes {
            for &n in &cfg.procs {
                let iters = if size >= 1024 * 1024 {
                    cfg.iters_large
                } else {
                    cfg.iters
                };
                let cell = match kind.as_str() {
                    "mutex" => run_threads(kind, size, n, iters, None)?,
                    "local" => run_threads(
                        kind,
                        size,
                        n,
                        iters,
                        Some(connect(&MemSpec::Local, &MemOptions::default())?),
                    )?,
                    _ => {
                        let spec = &env
                            .specs
                            .iter()
                            .find(|(k, _)| k == kind)
                            .context("kind not set up")?
                            .1;
                        run_procs(&env, &cfg.conclave, kind, spec, size, n, iters)?
                    }
                };
                progress(&cell);
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}
