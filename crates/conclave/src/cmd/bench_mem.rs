//! `conclave bench mem`: the original smbench our way. Times one critical
//! section (lock, write 1 byte, unlock) per kind and segment size, with one
//! client and under contention from several client PROCESSES (threads for
//! the in-process kinds, which cannot span processes). Starts its own
//! memory servers and certificates in a temporary directory.

use anyhow::{bail, Context};
use conclave_mem::{connect, MemOptions, MemSpec, MemoryStore};
use conclave_rpc::pki::{self, CertsOptions, SiteKey};
use conclave_rpc::Credentials;
use conclave_rpc::Role;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kinds, comma-separated: mutex (a bare std Mutex), local, smdish, smuf, smc.
    #[arg(long, default_value = "mutex,local,smdish,smuf,smc")]
    pub kinds: String,
    /// Segment sizes, comma-separated (k = KiB, m = MiB).
    #[arg(long, default_value = "1k,10k,100k,1m")]
    pub sizes: String,
    /// Numbers of concurrent clients, comma-separated.
    #[arg(long, default_value = "1,2,4,8")]
    pub procs: String,
    /// Critical sections per client for segments under 1 MiB.
    #[arg(long, default_value_t = 400)]
    pub iters: u64,
    /// Critical sections per client for segments of 1 MiB and more.
    #[arg(long, default_value_t = 100)]
    pub iters_large: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the servers' sockets, the certificates and the smuf/smc host
    /// files go (a fresh subdirectory, removed afterwards); tmpfs
    /// (/dev/shm) suits non-persistent memory files. Default: the temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Internal: run as one client process of a cell.
    #[arg(long, hide = true)]
    pub worker: Option<MemSpec>,
    #[arg(long, hide = true)]
    pub worker_name: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    pub worker_size: usize,
    #[arg(long, hide = true)]
    pub worker_certs: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub worker_secret: Option<PathBuf>,
}

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.strip_suffix('k') {
        Some(n) => (n, 1024),
        None => match s.strip_suffix('m') {
            Some(n) => (n, 1024 * 1024),
            None => (s.as_str(), 1),
        },
    };
    Ok(num.parse::<usize>().with_context(|| format!("bad size {s:?}"))? * mult)
}

fn size_label(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{}MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}KiB", n / 1024)
    } else {
        format!("{n}B")
    }
}

/// One measured cell.
struct Cell {
    kind: String,
    size: usize,
    clients: usize,
    sections: usize,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    per_sec: f64,
}

fn summarize(kind: &str, size: usize, clients: usize, mut ns: Vec<u64>, wall: f64) -> Cell {
    ns.sort_unstable();
    let n = ns.len().max(1);
    let q = |p: f64| {
        ns.get(((n as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0) as f64
            / 1e3
    };
    Cell {
        kind: kind.to_string(),
        size,
        clients,
        sections: ns.len(),
        mean_us: ns.iter().sum::<u64>() as f64 / n as f64 / 1e3,
        p50_us: q(0.50),
        p99_us: q(0.99),
        per_sec: ns.len() as f64 / wall,
    }
}

/// Kills a child process when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(a: &Args, spec: &MemSpec) -> anyhow::Result<()> {
    let creds = match &a.worker_certs {
        Some(d) => Some(Credentials::from_dir(d, Role::Client)?),
        None => None,
    };
    let store = connect(
        spec,
        &MemOptions {
            creds,
            secret_file: a.worker_secret.clone(),
        },
    )?;
    let name = a.worker_name.as_deref().context("--worker-name missing")?;
    let mut f = store.open(name, a.worker_size)?;
    super::print_line("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
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
    super::print_line(out.trim_end());
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
) -> anyhow::Result<Reap> {
    let mut cmd = Command::new(exe);
    cmd.args(["memserver", "--kind", kind, "--listen"])
        .arg(format!("unix://{}", sock.display()))
        .arg("--certs")
        .arg(certs)
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
        bail!("{kind} server did not start (said {line:?})");
    }
    Ok(child)
}

fn setup(base: &Path, kinds: &[&str]) -> anyhow::Result<Env> {
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
        out: certs.clone(),
        site_key: SiteKey::EcdsaP256,
        force: true,
    })?;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    std::fs::write(&secret, key)?;
    let exe = std::env::current_exe()?;
    for k in kinds {
        let spec: MemSpec = match *k {
            "smdish" => {
                let sock = dir.join("smdish.sock");
                env.servers
                    .push(start_server(&exe, "smdish", &sock, &certs, None)?);
                format!("smdish+unix://{}", sock.display()).parse()?
            }
            "smuf" => {
                let sock = dir.join("smuf.sock");
                let host = dir.join("smuf");
                env.servers
                    .push(start_server(&exe, "smuf", &sock, &certs, Some(&host))?);
                format!("smuf+unix://{}?dir={}", sock.display(), host.display()).parse()?
            }
            "smc" => format!("smc://{}?secret={}", dir.join("smc").display(), secret.display()).parse()?,
            "local" => MemSpec::Local,
            "mutex" => continue,
            other => bail!("unknown kind {other:?} (expected mutex, local, smdish, smuf or smc)"),
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
) -> anyhow::Result<Cell> {
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
        handles.push(std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
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
                .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??,
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    drop(keeper);
    Ok(summarize(kind, size, clients, all, wall))
}

fn run_procs(
    env: &Env,
    kind: &str,
    spec: &MemSpec,
    size: usize,
    clients: usize,
    iters: u64,
) -> anyhow::Result<Cell> {
    let name = format!("bench-{size}-{clients}");
    let store = connect(
        spec,
        &MemOptions {
            creds: Some(Credentials::from_dir(&env.certs, Role::Client)?),
            secret_file: Some(env.secret.clone()),
        },
    )?;
    let keeper = store.open(&name, size)?;
    let exe = std::env::current_exe()?;
    let mut kids: Vec<(Reap, ChildStdin, BufReader<ChildStdout>)> = Vec::new();
    for _ in 0..clients {
        let mut child = Reap(
            Command::new(&exe)
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
            bail!("{kind} client process failed to open {name} (said {line:?})");
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
            bail!("a {kind} client process failed ({st})");
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    if all.len() as u64 != iters * clients as u64 {
        bail!(
            "{kind}: expected {} samples, got {}",
            iters * clients as u64,
            all.len()
        );
    }
    keeper.close()?;
    Ok(summarize(kind, size, clients, all, wall))
}

/// Runs the benchmark (or one client process of it).
pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(spec) = a.worker.clone() {
        return worker(&a, &spec);
    }
    let kinds: Vec<&str> = a
        .kinds
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let sizes = a
        .sizes
        .split(',')
        .map(parse_size)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let procs = a
        .procs
        .split(',')
        .map(|s| s.trim().parse::<usize>().context("bad --procs"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if procs.contains(&0) {
        bail!("--procs values must be at least 1");
    }
    let env = setup(&a.dir.clone().unwrap_or_else(std::env::temp_dir), &kinds)?;
    let mut cells = Vec::new();
    for kind in &kinds {
        for &size in &sizes {
            for &n in &procs {
                let iters = if size >= 1024 * 1024 {
                    a.iters_large
                } else {
                    a.iters
                };
                let cell = match *kind {
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
                        run_procs(&env, kind, spec, size, n, iters)?
                    }
                };
                if !a.json {
                    eprintln!(
                        "{:<7} {:>7} x{}  mean {:>9.1} us  p99 {:>9.1} us",
                        cell.kind,
                        size_label(cell.size),
                        cell.clients,
                        cell.mean_us,
                        cell.p99_us
                    );
                }
                cells.push(cell);
            }
        }
    }
    if a.json {
        let rows: Vec<String> = cells
            .iter()
            .map(|c| {
                format!(
                    "{{\"kind\":\"{}\",\"size\":{},\"clients\":{},\"sections\":{},\"mean_us\":{:.2},\"p50_us\":{:.2},\"p99_us\":{:.2},\"sections_per_sec\":{:.1}}}",
                    c.kind, c.size, c.clients, c.sections, c.mean_us, c.p50_us, c.p99_us, c.per_sec
                )
            })
            .collect();
        super::print_line(format_args!("[{}]", rows.join(",\n ")));
    } else {
        super::print_line("| kind | segment | clients | sections | mean µs | p50 µs | p99 µs | sections/s |");
        super::print_line("|---|---|---|---|---|---|---|---|");
        for c in &cells {
            super::print_line(format_args!(
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
    }
    Ok(())
}
