//! `conclave bench bd`: sequential and random 4 KiB reads and writes on each
//! block device, against plain `pread`/`pwrite` on a file as the baseline.
//! Files are page-cache resident (no O_DIRECT): this measures the CPU cost
//! each device adds on the path the edge takes on every cache hit.

use anyhow::Context;
use conclave_bd::{BdError, BlockDevice, CreateOptions, DeviceKind, DeviceSpec, BLOCK_SIZE};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Device size.
    #[arg(long, default_value = "64M")]
    pub size: String,
    /// Random operations per random phase.
    #[arg(long, default_value_t = 20000)]
    pub ops: u64,
    /// Devices to measure (comma-separated; `file` is the baseline).
    #[arg(long, default_value = "file,std,crypt,verity,vericrypt")]
    pub devices: String,
    /// Directory for the images (default: a new temp dir, removed afterwards).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kdf: super::mkfs::KdfArgs,
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

/// One measured phase.
struct Row {
    device: String,
    op: &'static str,
    blocks: u64,
    secs: f64,
    /// CPU time of this thread (user + system), which a loaded machine inflates less than wall time.
    cpu_secs: Option<f64>,
}

/// This thread's user + system CPU time from /proc (clock ticks of 1/100 s).
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl Row {
    fn mb_s(&self) -> f64 {
        self.blocks as f64 * BLOCK_SIZE as f64 / 1e6 / self.secs
    }
    fn us_per_block(&self) -> f64 {
        self.secs * 1e6 / self.blocks as f64
    }
    fn cpu_us_per_block(&self) -> f64 {
        self.cpu_secs.map_or(f64::NAN, |c| c * 1e6 / self.blocks as f64)
    }
}

/// xorshift64*: cheap, deterministic block numbers.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn open_device(
    name: &str,
    dir: &Path,
    raw: &Path,
    blocks: u64,
    opts: &CreateOptions,
) -> anyhow::Result<Arc<dyn BlockDevice>> {
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
        std::fs::write(&secret, b"benchmark secret, not a real one")?;
        spec = spec.secret_file(secret);
    }
    conclave_bd::create(&spec, raw, opts)?;
    Ok(conclave_bd::open(&spec)?)
}

fn measure(
    rows: &mut Vec<Row>,
    device: &str,
    op: &'static str,
    blocks: u64,
    f: impl FnOnce() -> Result<(), BdError>,
) -> anyhow::Result<()> {
    let c = thread_cpu_secs();
    let t = Instant::now();
    f().with_context(|| format!("{device} {op}"))?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = c.and_then(|c| Some(thread_cpu_secs()? - c));
    rows.push(Row {
        device: device.to_string(),
        op,
        blocks,
        secs,
        cpu_secs,
    });
    Ok(())
}

fn bench_one(
    rows: &mut Vec<Row>,
    name: &str,
    dir: &Path,
    raw: &Path,
    blocks: u64,
    args: &Args,
) -> anyhow::Result<()> {
    let ops = args.ops;
    let dev = open_device(name, dir, raw, blocks, &args.kdf.options())?;
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

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    let size = conclave_bd::settings::parse_image_size(&args.size)?.bytes();
    let blocks = size / BLOCK_SIZE as u64;
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    let raw = dir.join("raw.img");
    {
        let f = File::create(&raw)?;
        let mut rng = Rng(1);
        let mut chunk = vec![0u8; 256 * BLOCK_SIZE];
        for _ in 0..blocks.div_ceil(256) {
            chunk.iter_mut().for_each(|b| *b = rng.below(256) as u8);
            std::io::Write::write_all(&mut &f, &chunk)?;
        }
        f.set_len(size)?;
    }
    let mut rows = Vec::new();
    for name in args.devices.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        bench_one(&mut rows, name, &dir, &raw, blocks, &args)?;
        for ext in ["img", "tree"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.{ext}")));
        }
    }
    let _ = std::fs::remove_file(&raw);
    if args.json {
        let items: Vec<String> = rows
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
        super::print_line(format_args!("[{}]", items.join(",\n ")));
    } else {
        super::print_line(format_args!(
            "size {} MiB ({blocks} blocks of 4 KiB), {} random ops, page-cache resident",
            size >> 20,
            args.ops
        ));
        super::print_line(format_args!(
            "{:<10} {:<17} {:>8} {:>10} {:>12} {:>14}",
            "device", "op", "blocks", "MB/s", "µs/block", "cpu µs/block"
        ));
        for r in &rows {
            super::print_line(format_args!(
                "{:<10} {:<17} {:>8} {:>10.1} {:>12.2} {:>14.2}",
                r.device,
                r.op,
                r.blocks,
                r.mb_s(),
                r.us_per_block(),
                r.cpu_us_per_block()
            ));
        }
    }
    Ok(())
}

/// A temp dir removed on drop (the binary has no tempfile dependency).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let p = std::env::temp_dir().join(format!("conclave-bench-bd-{}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
