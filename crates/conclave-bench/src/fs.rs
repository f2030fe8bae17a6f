//! The file-server benchmark (`conclave bench fs`), the original's fio run, our way. One client reads a
//! 16 MiB file in sequential 4 KiB requests for a fixed time through the file
//! server on each device, next to the same reads from a plain host file; then
//! random 4 KiB reads and sequential 1 MiB writes.
//!
//! Server and client share this process (server on a tokio runtime, client a
//! blocking thread over a UNIX socket with mutual TLS), like the original
//! fio-in-enclave against nextfs-in-enclave on one machine.

use conclave_bd::{CreateOptions, DeviceKind, DeviceSpec, KdfParams};
use conclave_fs::{FileServer, FileServerOptions, FsClient, OpenOptions};
use conclave_rpc::Role;
use conclave_rpc::{ClientOptions, Credentials, Endpoint, Server, ServerOptions, Shutdown};
use hdrhistogram::Histogram;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct FsBenchConfig {
    /// Time per workload and device.
    pub duration: Duration,
    /// Size of the test file in MiB (the original: 16).
    pub file_mib: usize,
    /// Devices to measure.
    pub devices: Vec<DeviceKind>,
    /// Scratch directory for images, trees, sockets.
    pub workdir: PathBuf,
    /// `conclave certs` output (fileserver and client identities).
    pub certs: PathBuf,
}

/// One measured cell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FsBenchResult {
    /// `host-file` or a device name.
    pub target: String,
    /// `seq-read-4k`, `rand-read-4k` or `seq-write-1m`.
    pub workload: &'static str,
    /// Operations completed.
    pub ops: u64,
    /// Operations per second.
    pub iops: f64,
    /// Payload MB/s (10^6 bytes).
    pub mb_per_s: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FsBenchError(String);

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> FsBenchError + '_ {
    move |e| FsBenchError(format!("{what}: {e}"))
}

struct Meter {
    hist: Histogram<u64>,
    start: Instant,
    ops: u64,
    bytes: u64,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"),
            start: Instant::now(),
            ops: 0,
            bytes: 0,
        }
    }
    fn time<T>(&mut self, bytes: usize, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, FsBenchError> {
        let t = Instant::now();
        let v = f().map_err(err("benchmark I/O"))?;
        let _ = self.hist.record(t.elapsed().as_nanos() as u64);
        self.ops += 1;
        self.bytes += bytes as u64;
        Ok(v)
    }
    fn result(&self, target: &str, workload: &'static str) -> FsBenchResult {
        let secs = self.start.elapsed().as_secs_f64();
        FsBenchResult {
            target: target.to_string(),
            workload,
            ops: self.ops,
            iops: self.ops as f64 / secs,
            mb_per_s: self.bytes as f64 / secs / 1e6,
            mean_us: self.hist.mean() / 1000.0,
            p50_us: self.hist.value_at_quantile(0.5) as f64 / 1000.0,
            p99_us: self.hist.value_at_quantile(0.99) as f64 / 1000.0,
        }
    }
}

/// A tiny xorshift so random offsets are reproducible without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Builds the raw ext2 image holding `/testfile` with `mke2fs -d`.
fn raw_image(cfg: &FsBenchConfig) -> Result<PathBuf, FsBenchError> {
    let src = cfg.workdir.join("src");
    std::fs::create_dir_all(&src).map_err(err("scratch dir"))?;
    let data: Vec<u8> = (0..cfg.file_mib * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("testfile"), &data).map_err(err("test file"))?;
    let raw = cfg.workdir.join("raw.img");
    let size = (cfg.file_mib as u64 * 2 + 48) << 20;
    conclave_bd::mke2fs(&src, &raw, size).map_err(err("building the raw image"))?;
    Ok(raw)
}

fn host_file(cfg: &FsBenchConfig, out: &mut Vec<FsBenchResult>) -> Result<(), FsBenchError> {
    let path = cfg.workdir.join("src/testfile");
    let f = std::fs::File::open(&path).map_err(err("host test file"))?;
    let len = f.metadata().map_err(err("host test file"))?.len();
    let mut buf = vec![0u8; 4096];
    let mut m = Meter::new();
    let mut off = 0u64;
    while m.start.elapsed() < cfg.duration {
        m.time(4096, || f.read_at(&mut buf, off))?;
        off = (off + 4096) % len;
    }
    out.push(m.result("host-file", "seq-read-4k"));
    let mut m = Meter::new();
    let mut seed = 0x2545F4914F6CDD1D;
    while m.start.elapsed() < cfg.duration {
        let o = next(&mut seed) % (len / 4096) * 4096;
        m.time(4096, || f.read_at(&mut buf, o))?;
    }
    out.push(m.result("host-file", "rand-read-4k"));
    let wpath = cfg.workdir.join("host-write.dat");
    let mut w = std::fs::File::create(&wpath).map_err(err("host write file"))?;
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut m = Meter::new();
    let mut written = 0;
    while m.start.elapsed() < cfg.duration {
        if written >= len {
            w.seek(SeekFrom::Start(0)).map_err(err("seek"))?;
            written = 0;
        }
        m.time(chunk.len(), || w.write_all(&chunk))?;
        written += chunk.len() as u64;
    }
    w.sync_all().map_err(err("fsync"))?;
    out.push(m.result("host-file", "seq-write-1m"));
    let _ = std::fs::remove_file(wpath);
    Ok(())
}

fn device(
    cfg: &FsBenchConfig,
    raw: &Path,
    kind: DeviceKind,
    out: &mut Vec<FsBenchResult>,
) -> Result<(), FsBenchError> {
    let image = cfg.workdir.join(format!("{kind}.img"));
    let mut spec = DeviceSpec::new(kind, &image);
    if kind.needs_secret() {
        let secret = cfg.workdir.join("secret");
        std::fs::write(&secret, b"conclave benchmark secret, not for production").map_err(err("secret"))?;
        spec = spec.secret_file(secret);
    }
    if kind.has_tree() {
        spec = spec.tree(cfg.workdir.join(format!("{kind}.tree")));
    }
    let opts = CreateOptions {
        kdf: KdfParams::MIN,
        ..CreateOptions::default()
    };
    conclave_bd::create(&spec, raw, &opts).map_err(err("building the image"))?;
    let dev = conclave_bd::open(&spec).map_err(err("opening the device"))?;
    let fs = conclave_ext2::Ext2Fs::open(dev).map_err(err("opening ext2"))?;
    let svc = Arc::new(FileServer::new(fs, FileServerOptions::default()));
    let sock = cfg.workdir.join(format!("{kind}.sock"));
    let screds = Credentials::from_dir(&cfg.certs, Role::FileServer).map_err(err("fileserver identity"))?;
    let ccreds = Credentials::from_dir(&cfg.certs, Role::Client).map_err(err("client identity"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(err("runtime"))?;
    let server = rt
        .block_on(Server::bind(
            &Endpoint::Unix(sock.clone()),
            Some(screds.server_config().map_err(err("server TLS"))?),
            ServerOptions {
                max_body: conclave_fs::proto::MAX_BODY,
                ..ServerOptions::default()
            },
        ))
        .map_err(err("bind"))?;
    let shutdown = Shutdown::new();
    let handle = rt.spawn(server.serve(svc.clone(), shutdown.clone()));
    let client = FsClient::new(
        Endpoint::Unix(sock),
        ClientOptions::mtls(&ccreds, Role::FileServer).map_err(err("client TLS"))?,
    );
    let name = kind.name();
    let res = (|| {
        let mut f = client.open("/testfile").map_err(err("open /testfile"))?;
        let len = f.metadata().map_err(err("fstat"))?.len();
        let mut buf = vec![0u8; 4096];
        let mut m = Meter::new();
        while m.start.elapsed() < cfg.duration {
            let n = m.time(4096, || f.read(&mut buf))?;
            if n == 0 {
                f.seek(SeekFrom::Start(0)).map_err(err("seek"))?;
            }
        }
        out.push(m.result(name, "seq-read-4k"));
        let mut m = Meter::new();
        let mut seed = 0x2545F4914F6CDD1D;
        while m.start.elapsed() < cfg.duration {
            let o = next(&mut seed) % (len / 4096) * 4096;
            m.time(4096, || f.read_at(&mut buf, o))?;
        }
        out.push(m.result(name, "rand-read-4k"));
        let mut w = client
            .open_with(
                "/write.dat",
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map_err(err("create /write.dat"))?;
        let chunk = vec![0x5au8; 1024 * 1024];
        let mut m = Meter::new();
        let mut written = 0u64;
        while m.start.elapsed() < cfg.duration {
            if written >= len {
                w.seek(SeekFrom::Start(0)).map_err(err("seek"))?;
                written = 0;
            }
            m.time(chunk.len(), || w.write_all(&chunk))?;
            written += chunk.len() as u64;
        }
        w.sync_all().map_err(err("fsync"))?;
        out.push(m.result(name, "seq-write-1m"));
        Ok(())
    })();
    shutdown.trigger();
    let _ = rt.block_on(handle);
    res
}

/// Runs the benchmark; `progress` sees each cell as it finishes.
pub fn run(
    cfg: &FsBenchConfig,
    mut progress: impl FnMut(&FsBenchResult),
) -> Result<Vec<FsBenchResult>, FsBenchError> {
    let raw = raw_image(cfg)?;
    let mut all = Vec::new();
    let mut out = Vec::new();
    host_file(cfg, &mut out)?;
    out.iter().for_each(&mut progress);
    all.append(&mut out);
    for &kind in &cfg.devices {
        device(cfg, &raw, kind, &mut out)?;
        out.iter().for_each(&mut progress);
        all.append(&mut out);
    }
    Ok(all)
}

/// Runs the benchmark in a fresh scratch directory (removed afterwards)
/// with its own certificates; `workdir` and `certs` of `cfg` are ignored.
pub fn run_in_scratch(
    cfg: &FsBenchConfig,
    progress: impl FnMut(&FsBenchResult),
) -> Result<Vec<FsBenchResult>, FsBenchError> {
    let work = crate::harness::Scratch::new(&std::env::temp_dir(), "fs").map_err(err("scratch dir"))?;
    let certs = work.path().join("certs");
    conclave_rpc::pki::generate(&conclave_rpc::pki::CertsOptions {
        out: certs.clone(),
        site_key: conclave_rpc::pki::SiteKey::EcdsaP256,
        force: true,
    })
    .map_err(err("generating certificates"))?;
    let cfg = FsBenchConfig {
        workdir: work.path().to_path_buf(),
        certs,
        ..cfg.clone()
    };
    run(&cfg, progress)
}

/// Table heading, aligned with [`FsBenchResult::line`].
pub fn header() -> String {
    format!(
        "{:<10} {:<13} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "target", "workload", "ops", "IOPS", "MB/s", "mean_us", "p50_us", "p99_us"
    )
}

impl FsBenchResult {
    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<10} {:<13} {:>9} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            self.target,
            self.workload,
            self.ops,
            self.iops,
            self.mb_per_s,
            self.mean_us,
            self.p50_us,
            self.p99_us
        )
    }
}
