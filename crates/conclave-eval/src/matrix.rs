//! The evaluation matrix: presets × workers × file sizes (single tenant),
//! plus presets × tenants × sharing (multi-tenant), each cell a deployment
//! started, warmed, loaded and stopped. Results are written after every
//! load, so an interrupted run keeps what it finished.

use crate::availability::Availability;
use crate::cpu::{CpuMeter, CpuPerRequest};
use crate::deploy::{
    Deployment, Edge, Fileserver, Kdf, KeyKind, Keyserver, Memserver, Mode, Origin, OriginKind, SharedKind,
    Site,
};
use crate::layout::{self, SiteKeySource};
use crate::machine::Machine;
use crate::plan;
use crate::preset::{self, Preset};
use crate::report;
use crate::results::{jain, Cell, CellResult, RunResults, Status, Tenancy, Tenant, Unavailable};
use crate::supervisor::Supervisor;
use crate::EvalError;
use conclave_bench::ab::{self, LoadReport, LoadSpec, RunControl, TlsVersion, Trust};
use conclave_rpc::pki::CertsLayout;
use conclave_rpc::{Identity, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to run.
#[derive(Clone, Debug)]
pub struct MatrixOptions {
    /// The `conclave` binary.
    pub bin: PathBuf,
    /// Output directory (`results/<run-id>`).
    pub out: PathBuf,
    /// Run id (directory name).
    pub run_id: String,
    /// Preset names, in report order.
    pub presets: Vec<String>,
    /// File names served (e.g. `1k.txt`).
    pub files: Vec<String>,
    /// Worker counts.
    pub workers: Vec<u32>,
    /// Tenant counts for the multi-tenant runs (values above 1).
    pub tenants: Vec<u32>,
    /// Presets for the multi-tenant runs.
    pub tenant_presets: Vec<String>,
    /// Requests per load.
    pub requests: u64,
    /// Concurrency per load.
    pub concurrency: usize,
    /// HTTP keep-alive.
    pub keepalive: bool,
    /// TLS version.
    pub tls: TlsVersion,
    /// Allow TLS resumption.
    pub resume: bool,
    /// Edge of tenant i listens on base_port + i; origin base+20, key servers
    /// base+30+i, memory servers base+50+i, file servers base+70+i.
    pub base_port: u16,
    /// Draw progress bars (they also hide themselves without a TTY).
    pub progress: bool,
}

fn file_bytes(content: &Path, file: &str) -> u64 {
    std::fs::metadata(content.join(file))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn addr(port: u32) -> Result<SocketAddr, EvalError> {
    let port = u16::try_from(port)
        .map_err(|_| EvalError::Config(format!("port {port} out of range: lower --base-port")))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Builds the deployment(s) of a cell: one per tenant (share-nothing) or one
/// with `tenants` sites.
pub fn cell_deployments(
    cell: &Cell,
    base: u16,
    origin: SocketAddr,
    certs: &Path,
    content: &Path,
    dir: &Path,
) -> Result<Vec<Deployment>, EvalError> {
    let (p, workers, tenants) = (cell.preset, cell.workers, cell.tenants);
    let base = base as u32;
    let make = |idx: u32, sites: Vec<Site>, sub: &Path| -> Result<Deployment, EvalError> {
        Ok(Deployment {
            name: format!("{}-t{idx}", cell.name()),
            dir: Some(sub.to_path_buf()),
            certs: certs.to_path_buf(),
            content: content.to_path_buf(),
            origin: Origin {
                kind: OriginKind::External,
                listen: origin,
            },
            edge: Edge {
                kind: p.edge,
                workers,
                mode: Mode::Cache,
                storage: p.storage,
                shared: p.shared,
                key: p.key,
                site: sites,
            },
            keyserver: (p.key == KeyKind::Keyserver)
                .then(|| addr(base + 30 + idx).map(|listen| Keyserver { listen }))
                .transpose()?,
            memserver: matches!(p.shared, SharedKind::Smdish | SharedKind::Smuf)
                .then(|| addr(base + 50 + idx).map(|listen| Memserver { listen }))
                .transpose()?,
            fileserver: p
                .device
                .map(|device| {
                    addr(base + 70 + idx).map(|listen| Fileserver {
                        device,
                        listen,
                        image: sub.join("fs.img"),
                        // Paid at image build and server start only, outside every load.
                        kdf: Kdf::Cheap,
                    })
                })
                .transpose()?,
            tenant: None,
            users: false,
            base_uid: crate::deploy::DEFAULT_BASE_UID,
        })
    };
    let site = |i: u32| {
        addr(base + i).map(|listen| Site {
            listen,
            server_name: "localhost".into(),
        })
    };
    match cell.tenancy {
        Tenancy::Single => Ok(vec![make(0, vec![site(0)?], dir)?]),
        Tenancy::ShareEdge => Ok(vec![make(
            0,
            (0..tenants).map(site).collect::<Result<_, _>>()?,
            dir,
        )?]),
        // Each tenant's edge runs as that tenant (`edge@tenantI`); a shared
        // edge is one process, so one identity (the default tenant).
        Tenancy::ShareNothing => (0..tenants)
            .map(|i| {
                let mut d = make(i, vec![site(i)?], &dir.join(format!("tenant{i}")))?;
                d.tenant = Some(tenant(i).to_string());
                Ok(d)
            })
            .collect(),
    }
}

/// Runs the matrix; writes results as it goes; returns them. `cancel` is
/// set by the caller's signal handler.
pub fn run(opts: &MatrixOptions, cancel: Arc<AtomicBool>) -> Result<RunResults, EvalError> {
    std::fs::create_dir_all(&opts.out).map_err(EvalError::io(&opts.out))?;
    // Generated configs are read by servers started in other directories: absolute paths only.
    let out = std::path::absolute(&opts.out).map_err(EvalError::io(&opts.out))?;
    let opts = &MatrixOptions { out, ..opts.clone() };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(EvalError::io("tokio runtime"))?;
    let avail = Availability::probe(&opts.bin);
    let machine = Machine::probe();
    let mut results = RunResults {
        run_id: opts.run_id.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        nginx: match (avail.nginx(), &machine.nginx) {
            (Some(_), Some(v)) => format!("stock nginx: {v}"),
            (Some(p), None) => format!("stock nginx: {}", p.display()),
            (None, _) => "stock nginx is NOT installed: the `nginx` baseline is missing from this report \
                          (apt-get install nginx)"
                .into(),
        },
        machine,
        presets: opts.presets.clone(),
        ..RunResults::default()
    };
    let mut runnable: Vec<&'static Preset> = Vec::new();
    let asked: Vec<&'static Preset> = opts.presets.iter().filter_map(|n| preset::find(n)).collect();
    results.warnings = avail.warnings(&asked);
    for name in &opts.presets {
        let p = preset::find(name).ok_or_else(|| {
            let all: Vec<_> = preset::PRESETS.iter().map(|p| p.name).collect();
            EvalError::Config(format!("unknown preset {name:?}; known: {}", all.join(", ")))
        })?;
        match avail.check(p) {
            Ok(()) => runnable.push(p),
            Err(missing) => results.unavailable.push(Unavailable {
                preset: p.name.into(),
                missing,
            }),
        }
    }
    // Inputs shared by every cell.
    let certs = opts.out.join("certs");
    let content = opts.out.join("html");
    plan::ensure_certs(&certs)?;
    let site_key = seal_certs(&certs, opts.tenants.iter().copied().max().unwrap_or(1))?;
    plan::ensure_content(&content, &opts.bin)?;
    let origin_addr = addr(opts.base_port as u32 + 20)?;
    let origin_kind = if avail.conclave_origin() {
        OriginKind::Conclave
    } else {
        OriginKind::Nginx
    };
    results.origin = match origin_kind {
        OriginKind::Conclave => "conclave origin".into(),
        _ => "stock nginx (conclave origin not built yet)".into(),
    };
    let is_cancelled = || cancel.load(Ordering::Relaxed);
    let mut origin_sup = Supervisor::new();
    if !runnable.is_empty() {
        let origin = Origin {
            kind: origin_kind,
            listen: origin_addr,
        };
        if let Some(spec) = plan::origin(&origin, &content, &opts.bin, &opts.out)? {
            origin_sup.start(&spec, &is_cancelled)?;
        }
    }
    let mut cells: Vec<Cell> = Vec::new();
    for &p in &runnable {
        for &w in &opts.workers {
            cells.push(Cell {
                preset: p,
                workers: w,
                tenancy: Tenancy::Single,
                tenants: 1,
                files: opts.files.clone(),
            });
        }
    }
    let first_file = opts.files.first().cloned().unwrap_or_else(|| "1k.txt".into());
    for name in &opts.tenant_presets {
        let Some(&p) = runnable.iter().find(|p| p.name == name) else {
            continue;
        };
        for &n in opts.tenants.iter().filter(|&&n| n > 1) {
            for tenancy in [Tenancy::ShareNothing, Tenancy::ShareEdge] {
                cells.push(Cell {
                    preset: p,
                    workers: 1,
                    tenancy,
                    tenants: n,
                    files: vec![first_file.clone()],
                });
            }
        }
    }
    let loads: u64 = cells.iter().map(|c| c.files.len() as u64).sum();
    let bar = if opts.progress {
        indicatif::ProgressBar::new(loads)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let trust = Trust::CaFile(CertsLayout::new(&certs).ca_cert());
    let machine = results.machine.clone();
    for cell in &cells {
        if is_cancelled() {
            break;
        }
        let (p, workers, tenancy, tenants) = (cell.preset, cell.workers, cell.tenancy, cell.tenants);
        let dir = opts.out.join("cells").join(cell.name());
        let deps = cell_deployments(cell, opts.base_port, origin_addr, &certs, &content, &dir)?;
        bar.set_message(format!("{} w={workers} {tenancy} x{tenants}: starting", p.name));
        let mut sup = Supervisor::new();
        let started = start_cell(&deps, &opts.bin, &site_key, &mut sup, &is_cancelled);
        let urls: Vec<String> = deps.iter().flat_map(|d| d.urls()).collect();
        for file in &cell.files {
            if is_cancelled() {
                break;
            }
            let bytes = file_bytes(&content, file);
            let row = |tenant: Tenant, status: Status, r: Option<&LoadReport>| {
                cell_row(opts, cell, tenant, file, bytes, status, r, &machine)
            };
            if let Err(e) = &started {
                results
                    .cells
                    .push(row(Tenant::Whole, Status::Error(e.to_string()), None));
                bar.inc(1);
                continue;
            }
            // Warm the caches (the first request of a file is a miss), and check the bytes.
            let warm = rt.block_on(warm_up(&urls, file, bytes, workers, &trust, opts.tls));
            if let Err(e) = warm {
                results
                    .cells
                    .push(row(Tenant::Whole, Status::Error(format!("warm-up: {e}")), None));
                bar.inc(1);
                continue;
            }
            bar.set_message(format!("{} w={workers} {tenancy} x{tenants} {file}", p.name));
            // Every server's group and this process, sampled around the load only.
            let meter = CpuMeter::new(sup.groups().into_iter().chain(origin_sup.groups()));
            let cpu0 = meter.start();
            let reports = rt.block_on(load_all(opts, &urls, file, &trust, cancel.clone()));
            let cpu_times = cpu0.until(&meter.finish());
            let mut ok = Vec::new();
            for (i, r) in reports.iter().enumerate() {
                let tenant = if tenancy == Tenancy::Single {
                    Tenant::Whole
                } else {
                    Tenant::Index(i as u32)
                };
                match r {
                    Ok(rep) => {
                        let status = load_status(rep);
                        let mut line = row(tenant, status, Some(rep));
                        if tenancy == Tenancy::Single {
                            line.cpu = CpuPerRequest::from_times(&cpu_times, rep.complete);
                        }
                        results.cells.push(line);
                        ok.push(rep.clone());
                    }
                    Err(e) => results.cells.push(row(tenant, Status::Error(e.clone()), None)),
                }
            }
            if tenancy != Tenancy::Single && !ok.is_empty() {
                let mut total = total_row(row(Tenant::Total, Status::Ok, None), &ok);
                // The loads ran at once, on shared processes: one cost for the whole cell.
                total.cpu = CpuPerRequest::from_times(&cpu_times, total.complete);
                results.cells.push(total);
            }
            // A process that died under load makes the cell's numbers suspect: say so.
            if let Some(d) = sup.poll_deaths().into_iter().next() {
                for c in results.cells.iter_mut().rev().take(reports.len()) {
                    c.status = Status::Error(d.to_string());
                }
            }
            bar.inc(1);
            report::write_data(&opts.out, &results)?;
        }
        sup.stop_all();
        // A cell's image is 128 MiB: keep its configs and logs, not the image.
        deps.iter().for_each(plan::discard_image);
        deps.iter().for_each(plan::discard_site_key);
    }
    bar.finish_and_clear();
    origin_sup.stop_all();
    results.interrupted = is_cancelled();
    report::write_data(&opts.out, &results)?;
    Ok(results)
}

/// Issues the edge identity of every tenant a share-nothing cell runs
/// (`edge@tenant0` ...), then takes the site key into memory and deletes
/// it and the CA key from the run's `certs/`: every identity the run needs
/// exists, the CA key has nothing left to do, and each cell's key server
/// gets its own copy of the site key for the cell's life only.
fn seal_certs(certs: &Path, tenants: u32) -> Result<zeroize::Zeroizing<Vec<u8>>, EvalError> {
    for i in 0..tenants {
        layout::ensure_identity(certs, &Identity::new(Role::Edge, tenant(i)))?;
    }
    let key = CertsLayout::new(certs).site_key();
    let bytes = zeroize::Zeroizing::new(std::fs::read(&key).map_err(|e| {
        EvalError::Config(format!(
            "{}: {e} (an evaluation deletes its site and CA keys once read: use a fresh --out)",
            key.display()
        ))
    })?);
    std::fs::remove_file(&key).map_err(EvalError::io(&key))?;
    let ca_key = CertsLayout::new(certs).ca_dir().join(CertsLayout::CA_KEY);
    match std::fs::remove_file(&ca_key) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(EvalError::io(&ca_key)(e)),
        _ => {}
    }
    Ok(bytes)
}

/// The tenant of share-nothing deployment `i` (a DNS label by construction).
pub fn tenant(i: u32) -> conclave_rpc::Tenant {
    format!("tenant{i}").parse().unwrap_or_default()
}

fn start_cell(
    deps: &[Deployment],
    bin: &Path,
    site_key: &[u8],
    sup: &mut Supervisor,
    cancel: &dyn Fn() -> bool,
) -> Result<(), EvalError> {
    for d in deps {
        let plan = plan::prepare(d, bin, &SiteKeySource::Bytes(site_key))?;
        for spec in &plan.processes {
            sup.start(spec, cancel)?;
        }
    }
    Ok(())
}

fn load_status(r: &LoadReport) -> Status {
    if r.cancelled {
        Status::Interrupted
    } else if r.failed > 0 || r.non_2xx > 0 {
        Status::Failures {
            failed: r.failed,
            non_2xx: r.non_2xx,
            first: r.first_error.clone(),
        }
    } else {
        Status::Ok
    }
}

async fn warm_up(
    urls: &[String],
    file: &str,
    bytes: u64,
    workers: u32,
    trust: &Trust,
    tls: TlsVersion,
) -> Result<(), String> {
    for base in urls {
        let mut spec = LoadSpec::new(format!("{base}{file}"));
        spec.requests = 4 * workers as u64;
        spec.concurrency = workers as usize;
        spec.trust = Some(trust.clone());
        spec.tls = tls;
        spec.timeout = Duration::from_secs(10);
        let r = ab::run(&spec, RunControl::default())
            .await
            .map_err(|e| e.to_string())?;
        if r.failed > 0 || r.non_2xx > 0 {
            return Err(format!(
                "{base}{file}: {} failed, {} non-2xx{}",
                r.failed,
                r.non_2xx,
                r.first_error.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        if r.document_length != bytes {
            return Err(format!(
                "{base}{file}: served {} bytes, the file has {bytes}",
                r.document_length
            ));
        }
    }
    Ok(())
}

/// Runs one load per URL, all at once (one ab per tenant, as the seed did).
async fn load_all(
    opts: &MatrixOptions,
    urls: &[String],
    file: &str,
    trust: &Trust,
    cancel: Arc<AtomicBool>,
) -> Vec<Result<LoadReport, String>> {
    let mut tasks = Vec::new();
    for base in urls {
        let mut spec = LoadSpec::new(format!("{base}{file}"));
        spec.requests = opts.requests;
        spec.concurrency = opts.concurrency;
        spec.keepalive = opts.keepalive;
        spec.tls = opts.tls;
        spec.resume = opts.resume;
        spec.trust = Some(trust.clone());
        let control = RunControl {
            cancel: cancel.clone(),
            ..RunControl::default()
        };
        tasks.push(tokio::spawn(async move {
            ab::run(&spec, control).await.map_err(|e| e.to_string())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(format!("load task failed: {e}"))));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn cell_row(
    opts: &MatrixOptions,
    cell: &Cell,
    tenant: Tenant,
    file: &str,
    file_bytes: u64,
    status: Status,
    r: Option<&LoadReport>,
    m: &Machine,
) -> CellResult {
    let p = cell.preset;
    let storage = match p.device {
        Some(d) => format!("nextfs-{d}"),
        None => "host".into(),
    };
    let lower = |s: String| s.to_lowercase();
    CellResult {
        preset: p.name.into(),
        edge: lower(format!("{:?}", p.edge)),
        storage,
        shared: lower(format!("{:?}", p.shared)),
        key: lower(format!("{:?}", p.key)),
        workers: cell.workers,
        tenancy: cell.tenancy,
        tenants: cell.tenants,
        tenant,
        file: file.into(),
        file_bytes,
        requests: opts.requests,
        concurrency: opts.concurrency,
        keepalive: opts.keepalive,
        tls: opts.tls.to_string(),
        resumption: opts.resume,
        status,
        complete: r.map_or(0, |r| r.complete),
        failed: r.map_or(0, |r| r.failed),
        failed_connect: r.map_or(0, |r| r.failures.connect),
        failed_receive: r.map_or(0, |r| r.failures.receive),
        failed_length: r.map_or(0, |r| r.failures.length),
        failed_exceptions: r.map_or(0, |r| r.failures.exceptions),
        non_2xx: r.map_or(0, |r| r.non_2xx),
        requests_per_sec: r.map_or(0.0, |r| r.requests_per_sec),
        latency_mean_ms: r.map_or(0.0, |r| r.time_per_request_ms),
        latency_p50_ms: r.map_or(0.0, |r| r.latency.p50),
        latency_p90_ms: r.map_or(0.0, |r| r.latency.p90),
        latency_p99_ms: r.map_or(0.0, |r| r.latency.p99),
        latency_p999_ms: r.map_or(0.0, |r| r.latency.p999),
        time_s: r.map_or(0.0, |r| r.time_taken_s),
        handshakes_full: r.and_then(|r| r.tls.as_ref()).map_or(0, |t| t.handshakes_full),
        handshakes_resumed: r.and_then(|r| r.tls.as_ref()).map_or(0, |t| t.handshakes_resumed),
        fairness: None,
        cpu: CpuPerRequest::default(),
        cpu_model: m.cpu_model.clone(),
        cores: m.cores,
        kernel: m.kernel.clone(),
        percent_served_ms: r.map(|r| r.percent_served_ms.clone()).unwrap_or_default(),
    }
}

/// The sum row of a multi-tenant cell: total throughput, worst latencies,
/// summed failures, Jain's fairness over per-tenant throughput.
fn total_row(mut row: CellResult, reps: &[LoadReport]) -> CellResult {
    let rps: Vec<f64> = reps.iter().map(|r| r.requests_per_sec).collect();
    row.requests_per_sec = rps.iter().sum();
    row.complete = reps.iter().map(|r| r.complete).sum();
    row.failed = reps.iter().map(|r| r.failed).sum();
    row.failed_connect = reps.iter().map(|r| r.failures.connect).sum();
    row.failed_receive = reps.iter().map(|r| r.failures.receive).sum();
    row.failed_length = reps.iter().map(|r| r.failures.length).sum();
    row.failed_exceptions = reps.iter().map(|r| r.failures.exceptions).sum();
    row.non_2xx = reps.iter().map(|r| r.non_2xx).sum();
    let maxf = |f: fn(&LoadReport) -> f64| reps.iter().map(f).fold(0.0, f64::max);
    row.latency_mean_ms = reps.iter().map(|r| r.time_per_request_ms).sum::<f64>() / reps.len() as f64;
    row.latency_p50_ms = maxf(|r| r.latency.p50);
    row.latency_p90_ms = maxf(|r| r.latency.p90);
    row.latency_p99_ms = maxf(|r| r.latency.p99);
    row.latency_p999_ms = maxf(|r| r.latency.p999);
    row.time_s = maxf(|r| r.time_taken_s);
    row.handshakes_full = reps
        .iter()
        .filter_map(|r| r.tls.as_ref())
        .map(|t| t.handshakes_full)
        .sum();
    row.handshakes_resumed = reps
        .iter()
        .filter_map(|r| r.tls.as_ref())
        .map(|t| t.handshakes_resumed)
        .sum();
    row.fairness = Some(jain(&rps));
    if row.failed > 0 || row.non_2xx > 0 {
        row.status = Status::Failures {
            failed: row.failed,
            non_2xx: row.non_2xx,
            first: None,
        };
    }
    row
}

/// A run id from the UTC time: `YYYYMMDD-HHMMSS`.
pub fn run_id_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_looks_like_a_timestamp() {
        let id = run_id_now();
        assert_eq!(id.len(), 15, "{id}");
        assert!(id.starts_with("20") && id.as_bytes()[8] == b'-');
    }

    #[test]
    fn share_nothing_gives_each_tenant_its_own_ports() {
        let p = preset::find("conclave-vericrypt").unwrap();
        let o: SocketAddr = "127.0.0.1:8460".parse().unwrap();
        let mut cell = Cell {
            preset: p,
            workers: 1,
            tenancy: Tenancy::ShareNothing,
            tenants: 3,
            files: Vec::new(),
        };
        let deps =
            cell_deployments(&cell, 8440, o, Path::new("/c"), Path::new("/h"), Path::new("/d")).unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[2].edge.site[0].listen.port(), 8442);
        assert_eq!(deps[2].keyserver.as_ref().unwrap().listen.port(), 8472);
        assert_eq!(deps[2].fileserver.as_ref().unwrap().listen.port(), 8512);
        for d in &deps {
            d.validate().unwrap();
        }
        cell.tenancy = Tenancy::ShareEdge;
        let shared =
            cell_deployments(&cell, 8440, o, Path::new("/c"), Path::new("/h"), Path::new("/d")).unwrap();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].edge.site.len(), 3);
    }
}
