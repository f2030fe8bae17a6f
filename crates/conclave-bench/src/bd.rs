//! The block-device benchmark (`conclave bench bd`): sequential and random
//! 4 KiB reads and writes on each device, against plain `pread`/`pwrite`
//! on a file as the baseline. Files are page-cache resident (no O_DIRECT):
//! this measures the CPU cost each device adds on the path the edge takes
//! on every cache hit.

use crate::cpu::thread_cpu;
use crate::error::{BenchError, Context};
use crate::harness::{json_rows, Rng, Scratch};
use conclave_bd::{BdError, BlockDevice, CreateOptions, DeviceKind, DeviceSpec, BLOCK_SIZE};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct BdBenchConfig {
    /// Device size in bytes (at least 1 MiB, a multiple of 4096).
    pub size: u64,
    /// Random operations per random phase.
    pub ops: u64,
    /// Devices to measure: `file` (the baseline) or a device kind.
    pub devices: Vec<String>,
    /// Directory for the images (default: a new temp dir, removed afterwards).
    pub dir: Option<PathBuf>,
    /// How the devices are made (key derivation cost).
    pub create: CreateOptions,
}

/// One measured phase.
#[derive(Clone, Debug)]
pub struct BdRow {
    /// `file` or a device kind.
    pub device: String,
    /// The phase, e.g. `rand-read`.
    pub op: &'static str,
    /// Blocks moved.
    pub blocks: u64,
    /// Wall time.
    pub secs: f64,
    /// CPU time of the measuring thread (user + system), which a loaded
    /// machine inflates less than wall time.
    pub cpu_secs: Option<f64>,
}

impl BdRow {
    /// Payload MB/s (10^6 bytes).
    pub fn mb_s(&self) -> f64 {
        self.blocks as f64 * BLOCK_SIZE as f64 / 1e6 / self.secs
    }
    /// Wall time per block.
    pub fn us_per_block(&self) -> f64 {
        self.secs * 1e6 / self.blocks as f64
    }
    /// CPU time per block (NaN when it could not be read).
    pub fn cpu_us_per_block(&self) -> f64 {
        self.cpu_secs.map_or(f64::NAN, |c| c * 1e6 / self.blocks as f64)
    }
}

/// The whole run.
#[derive(Clone, Debug)]
pub struct BdReport {
    /// Device size in bytes.
    pub size: u64,
    /// Blocks per device.
    pub blocks: u64,
    /// Random operations per random phase.
    pub ops: u64,
    /// One row per device and phase.
    pub rows: Vec<BdRow>,
}

impl BdReport {
    /// One JSON object per row, in an array.
    pub fn json(&self) -> String {
        let items: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"device\":\"{}\",\"op\":\"{}\",\"blocks\":{},\"seconds\":{:.6},\"mb_per_s\":{:.1},\"us_per_block\":{:.2},\"cpu_us_per_block\":{}}}",
                    r.device,
                    r.op,
                    r.blocks,
                    r.secs,
                    r.mb_s(),
                    r.us_per_block(),
                    r.cpu_secs.map_or("null".to_string(), |_| format!("{:.2}", r.cpu_us_per_block()))
                )
            })
            .collect();
        json_rows(&items)
    }

    /// A heading line, then an aligned table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "size {} MiB ({} blocks of 4 KiB), {} random ops, page-cache resident\n",
            self.size >> 20,
            self.blocks,
            self.ops
        );
        let _ = write!(
            s,
            "{:<10} {:<17} {:>8} {:>10} {:>12} {:>14}",
            "device", "op", "blocks", "MB/s", "µs/block", "cpu µs/block"
        );
        for r in &self.rows {
            let _ = write!(
                s,
                "\n{:<10} {:<17} {:>8} {:>10.1} {:>12.2} {:>14.2}",
                r.device,
                r.op,
                r.blocks,
                r.mb_s(),
                r.us_per_block(),
                r.cpu_us_per_block()
            );
        }
        s
    }
}

/// Plain positioned I/O on a file: the baseline every device is compared to.
struct PlainFile {
    file: File,
    blocks: u64,
}

impl BlockDevice for PlainFile {
    fn block_count(&self) -> u64 {
        self.blocks
    }
    fn read_block(&self, idx: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), BdError> {
        Ok(self.file.read_exact_at(buf, idx * BLOCK_SIZE as u64)?)
    }
    fn write_block(&self, idx: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), BdError> {
        Ok(self.file.write_all_at(buf, idx * BLOCK_SIZE as u64)?)
    }
    fn flush(&self) -> Result<(), BdError> {
        Ok(self.file.sync_data()?)
    }
}

fn open_device(
    name: &str,
    dir: &Path,
    raw: &Path,
    blocks: u64,
    opts: &CreateOptions,
) -> Result<Arc<dyn BlockDevice>, BenchError> {
    if name == "file" {
        let path = dir.join("file.img");
        std::fs::copy(raw, &path)?;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
        return Ok(Arc::new(PlainFile { file, blocks }));
    }
    let kind: DeviceKind = name.parse()?;
    let mut spec = DeviceSpec::new(kind, dir.join(format!("{name}.img")));
    if kind.has_tree() {
        spec = spec.tree(dir.join(format!("{name}.tree")));
    }
    if kind.needs_secret() {
        let secret = dir.join("secret");
        conclave_secret::write_private(&secret, b"benchmark secret, not a real one")?;
        spec = spec.secret_file(secret);
    }
    conclave_bd::create(&spec, raw, opts)?;
    Ok(conclave_bd::open(&spec)?)
}

fn measure(
    rows: &mut Vec<BdRow>,
    device: &str,
    op: &'static str,
    blocks: u64,
    f: impl FnOnce() -> Result<(), BdError>,
) -> Result<(), BenchError> {
    let c = thread_cpu();
    let t = Instant::now();
    f().context(format_args!("{device} {op}"))?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = c.and_then(|c| Some((thread_cpu()? - c).as_secs_f64()));
    rows.push(BdRow {
        device: device.to_string(),
        op,
        blocks,
        secs,
        cpu_secs,
    });
    Ok(())
}

fn bench_one(
    rows: &mut Vec<BdRow>,
    name: &str,
    dir: &Path,
    raw: &Path,
    blocks: u64,
    cfg: &BdBenchConfig,
) -> Result<(), BenchError> {
    let ops = cfg.ops;
    let dev = open_device(name, dir, raw, blocks, &cfg.create)?;
    let mut buf = [0u8; BLOCK_SIZE];
    // Fresh open: the first pass over a verity device verifies every proof.
    measure(rows, name, "seq-read (cold)", blocks, || {
        (0..blocks).try_for_each(|b| dev.read_block(b, &mut buf))
    })?;
    measure(rows, name, "seq-read", blocks, || {
        (0..blocks).try_for_each(|b| dev.read_block(b, &mut buf))
    })?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    measure(rows, name, "rand-read", ops, || {
        (0..ops).try_for_each(|_| dev.read_block(rng.below(blocks), &mut buf))
    })?;
    let data = [0x5au8; BLOCK_SIZE];
    measure(rows, name, "seq-write+flush", blocks, || {
        (0..blocks).try_for_each(|b| dev.write_block(b, &data))?;
        dev.flush()
    })?;
    measure(rows, name, "rand-write+flush", ops, || {
        (0..ops).try_for_each(|_| dev.write_block(rng.below(blocks), &data))?;
        dev.flush()
    })?;
    Ok(())
}

/// Writes `size` bytes of random data to `raw`: the content of every device.
fn write_raw(raw: &Path, size: u64) -> std::io::Result<()> {
    let f = File::create(raw)?;
    let mut rng = Rng(1);
    let mut chunk = vec![0u8; 256 * BLOCK_SIZE];
    for _ in 0..(size / BLOCK_SIZE as u64).div_ceil(256) {
        chunk.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        std::io::Write::write_all(&mut &f, &chunk)?;
    }
    f.set_len(size)
}

/// Runs the benchmark on every device in turn.
pub fn run(cfg: &BdBenchConfig) -> Result<BdReport, BenchError> {
    let size = cfg.size;
    if size < 1 << 20 || !size.is_multiple_of(BLOCK_SIZE as u64) {
        return Err(BenchError::msg(format!(
            "size {size} must be at least 1M and a multiple of 4096 bytes"
        )));
    }
    let blocks = size / BLOCK_SIZE as u64;
    let tmp;
    let dir = match &cfg.dir {
        Some(d) => d.clone(),
        None => {
            tmp = Scratch::new(&std::env::temp_dir(), "bd")?;
            tmp.path().to_path_buf()
        }
    };
    let raw = dir.join("raw.img");
    write_raw(&raw, size)?;
    let mut rows = Vec::new();
    for name in cfg.devices.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        bench_one(&mut rows, name, &dir, &raw, blocks, cfg)?;
        for ext in ["img", "tree"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.{ext}")));
        }
    }
    let _ = std::fs::remove_file(&raw);
    Ok(BdReport {
        size,
        blocks,
        ops: cfg.ops,
        rows,
    })
}
