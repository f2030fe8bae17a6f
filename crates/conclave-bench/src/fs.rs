//! The file-server benchmark (`conclave bench fs`), the original's fio run, our way. One client reads a
//! 16 MiB file in sequential 4 KiB requests for a fixed time through the file
//! server on each device, next to the same reads from a plain host file; then
//! random 4 KiB reads and sequential 1 MiB writes.
//!
//! Server and client share this process (server on a tokio runtime, client a
//! blocking thread over a UNIX socket with mutual TLS), like the original
//! fio-in-enclave against nextfs-in-enclave on one machine.

use crate::error::failed;
use crate::harness::{Meter, Rng, Scratch};
use crate::BenchError;
use conclave_bd::{CommitOptions, CommittedDevice, CreateOptions, DeviceKind, DeviceSpec, FsType, KdfParams};
use conclave_fs::{FileServer, FileServerOptions, FsClient, OpenOptions};
use conclave_rpc::Role;
use conclave_rpc::{ClientOptions, Credentials, Endpoint, Server, ServerOptions, Shutdown};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// The file-system format of the image.
    pub format: FsType,
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

/// Runs one operation of a workload on `m`; its failure is the run's.
fn op<T>(m: &mut Meter, bytes: usize, f: impl FnOnce() -> std::io::Result<T>) -> Result<T, BenchError> {
    m.time(bytes as u64, f).map_err(failed("benchmark I/O"))
}

/// Sequential 1 MiB writes for `duration`, wrapping to the start after
/// `len` bytes so a host file and a file-server file are written alike.
fn seq_write(w: &mut (impl Write + Seek), len: u64, duration: Duration) -> Result<Meter, BenchError> {
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut m = Meter::start();
    let mut written = 0u64;
    while m.elapsed() < duration {
        if written >= len {
            w.seek(SeekFrom::Start(0)).map_err(failed("seek"))?;
            written = 0;
        }
        op(&mut m, chunk.len(), || w.write_all(&chunk))?;
        written += chunk.len() as u64;
    }
    Ok(m)
}

/// The table cell of what `m` measured.
fn cell(m: Meter, target: &str, workload: &'static str) -> FsBenchResult {
    let r = m.finish();
    FsBenchResult {
        target: target.to_string(),
        workload,
        ops: r.ops,
        iops: r.ops_per_s(),
        mb_per_s: r.mb_per_s(),
        mean_us: r.mean_us(),
        p50_us: r.p50_us(),
        p99_us: r.p99_us(),
    }
}

/// The file server's default `--commit-bytes` (64 MiB).
const COMMIT_BYTES: u64 = 64 << 20;

/// The seed of the random-read offsets, so runs read the same blocks.
const SEED: u64 = 0x2545F4914F6CDD1D;

/// Builds the raw ext2 image holding `/testfile` with `mke2fs -d`.
fn raw_image(cfg: &FsBenchConfig) -> Result<PathBuf, BenchError> {
    let src = cfg.workdir.join("src");
    std::fs::create_dir_all(&src).map_err(failed("scratch dir"))?;
    let data: Vec<u8> = (0..cfg.file_mib * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("testfile"), &data).map_err(failed("test file"))?;
    let raw = cfg.workdir.join("raw.img");
    let size = (cfg.file_mib as u64 * 2 + 48) << 20;
    conclave_bd::mke2fs_as(&src, &raw, size, cfg.format).map_err(failed("building the raw image"))?;
    Ok(raw)
}

fn host_file(cfg: &FsBenchConfig, out: &mut Vec<FsBenchResult>) -> Result<(), BenchError> {
    let path = cfg.workdir.join("src/testfile");
    let f = std::fs::File::open(&path).map_err(failed("host test file"))?;
    let len = f.metadata().map_err(failed("host test file"))?.len();
    let mut buf = vec![0u8; 4096];
    let mut m = Meter::start();
    let mut off = 0u64;
    while m.elapsed() < cfg.duration {
        op(&mut m, 4096, || f.read_at(&mut buf, off))?;
        off = (off + 4096) % len;
    }
    out.push(cell(m, "host-file", "seq-read-4k"));
    let mut m = Meter::start();
    let mut rng = Rng(SEED);
    while m.elapsed() < cfg.duration {
        let o = rng.below(len / 4096) * 4096;
        op(&mut m, 4096, || f.read_at(&mut buf, o))?;
    }
    out.push(cell(m, "host-file", "rand-read-4k"));
    let wpath = cfg.workdir.join("host-write.dat");
    let mut w = std::fs::File::create(&wpath).map_err(failed("host write file"))?;
    let m = seq_write(&mut w, len, cfg.duration)?;
    w.sync_all().map_err(failed("fsync"))?;
    out.push(cell(m, "host-file", "seq-write-1m"));
    let _ = std::fs::remove_file(wpath);
    Ok(())
}

fn device(
    cfg: &FsBenchConfig,
    raw: &Path,
    kind: DeviceKind,
    out: &mut Vec<FsBenchResult>,
) -> Result<(), BenchError> {
    let image = cfg.workdir.join(format!("{kind}.img"));
    let mut spec = DeviceSpec::new(kind, &image);
    if kind.needs_secret() {
        let secret = cfg.workdir.join("secret");
        conclave_secret::write_private(&secret, b"conclave benchmark secret, not for production")
            .map_err(failed("secret"))?;
        spec = spec.secret_file(secret);
    }
    if kind.has_tree() {
        spec = spec.tree(cfg.workdir.join(format!("{kind}.tree")));
    }
    let opts = CreateOptions {
        kdf: KdfParams::MIN,
        ..CreateOptions::default()
    };
    conclave_bd::create(&spec, raw, &opts).map_err(failed("building the image"))?;
    // The device under the commit layer, as `conclave fileserver` runs it:
    // an FSYNC is a commit (redo log, in-place writes, sealed state).
    let (dev, _) =
        CommittedDevice::open(&spec, &CommitOptions::beside(&image)).map_err(failed("opening the device"))?;
    let fs = conclave_ext2::Ext2Fs::open(dev.clone()).map_err(failed("opening ext2"))?;
    // The bench's client may do everything, as a trusted tool.
    let opts = FileServerOptions {
        grants: conclave_fs::Grants::new(vec!["client:rw:/".parse().expect("a valid grant")]),
        ..FileServerOptions::default()
    };
    let svc = Arc::new(FileServer::with_commits(
        fs,
        dev,
        COMMIT_BYTES,
        Box::new(|_| {}),
        opts,
    ));
    let sock = cfg.workdir.join(format!("{kind}.sock"));
    let screds =
        Credentials::from_dir(&cfg.certs, Role::FileServer).map_err(failed("fileserver identity"))?;
    let ccreds = Credentials::from_dir(&cfg.certs, Role::Client).map_err(failed("client identity"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(failed("runtime"))?;
    let server = rt
        .block_on(Server::bind(
            &Endpoint::Unix(sock.clone()),
            Some(screds.server_config().map_err(failed("server TLS"))?),
            ServerOptions {
                max_body: conclave_fs::proto::MAX_BODY,
                ..ServerOptions::default()
            },
        ))
        .map_err(failed("bind"))?;
    let shutdown = Shutdown::new();
    let handle = rt.spawn(server.serve(svc.clone(), shutdown.clone()));
    let client = FsClient::new(
        Endpoint::Unix(sock),
        ClientOptions::mtls(&ccreds, Role::FileServer).map_err(failed("client TLS"))?,
    );
    let name = kind.name();
    let res = (|| {
        let mut f = client.open("/testfile").map_err(failed("open /testfile"))?;
        let len = f.metadata().map_err(failed("fstat"))?.len();
        let mut buf = vec![0u8; 4096];
        let mut m = Meter::start();
        while m.elapsed() < cfg.duration {
            let n = op(&mut m, 4096, || f.read(&mut buf))?;
            if n == 0 {
                f.seek(SeekFrom::Start(0)).map_err(failed("seek"))?;
            }
        }
        out.push(cell(m, name, "seq-read-4k"));
        let mut m = Meter::start();
        let mut rng = Rng(SEED);
        while m.elapsed() < cfg.duration {
            let o = rng.below(len / 4096) * 4096;
            op(&mut m, 4096, || f.read_at(&mut buf, o))?;
        }
        out.push(cell(m, name, "rand-read-4k"));
        let mut w = client
            .open_with(
                "/write.dat",
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map_err(failed("create /write.dat"))?;
        let m = seq_write(&mut w, len, cfg.duration)?;
        w.sync_all().map_err(failed("fsync"))?;
        out.push(cell(m, name, "seq-write-1m"));
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
) -> Result<Vec<FsBenchResult>, BenchError> {
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
) -> Result<Vec<FsBenchResult>, BenchError> {
    let work = Scratch::new(&std::env::temp_dir(), "fs").map_err(failed("scratch dir"))?;
    let certs = work.path().join("certs");
    conclave_rpc::pki::generate(&conclave_rpc::pki::CertsOptions {
        tenants: Vec::new(),
        out: certs.clone(),
        site_key: conclave_rpc::pki::SiteKey::EcdsaP256,
        force: true,
    })
    .map_err(failed("generating certificates"))?;
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
