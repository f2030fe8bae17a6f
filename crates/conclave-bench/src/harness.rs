//! What every micro-benchmark shares: latency summaries (mean and
//! percentiles of raw samples), the meter that times operations one after
//! another, a scratch directory and child processes removed however a run
//! ends, a cheap deterministic random source, and the JSON-array layout of
//! one object per row.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Mean and percentiles of a set of latency samples, in the samples' unit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean (0 without samples).
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Summary {
    /// Summarises `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        let mean = if samples.is_empty() {
            0.0
        } else {
            samples.iter().sum::<u64>() as f64 / samples.len() as f64
        };
        Summary {
            count: samples.len(),
            mean,
            p50: percentile(samples, 0.50),
            p99: percentile(samples, 0.99),
        }
    }
}

/// The nearest-rank percentile `q` (0..=1) of sorted `samples`: the
/// smallest sample with at least `q` of all samples at or below it; 0
/// without samples.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Times operations one after another, the loop of every throughput
/// benchmark: counts them and their payload bytes, keeps each latency (ns)
/// for a [`Summary`], and knows the wall time since it started.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    ns: Vec<u64>,
    bytes: u64,
}

impl Meter {
    /// A meter whose wall clock starts now.
    pub fn start() -> Meter {
        Meter {
            start: Instant::now(),
            ns: Vec::new(),
            bytes: 0,
        }
    }

    /// Time since the meter started, for `while m.elapsed() < duration`.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Operations recorded so far.
    pub fn ops(&self) -> u64 {
        self.ns.len() as u64
    }

    /// Runs `op`; if it succeeds, records its latency and the `bytes` it
    /// moved. A failed operation records nothing: its error is returned.
    pub fn time<T, E>(&mut self, bytes: u64, op: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let t = Instant::now();
        let v = op()?;
        self.ns.push(t.elapsed().as_nanos() as u64);
        self.bytes += bytes;
        Ok(v)
    }

    /// Stops the wall clock and summarises what was recorded.
    pub fn finish(mut self) -> Metered {
        let secs = self.start.elapsed().as_secs_f64();
        Metered {
            ops: self.ns.len() as u64,
            bytes: self.bytes,
            secs,
            latency_ns: Summary::of(&mut self.ns),
        }
    }
}

/// What a [`Meter`] measured: rates over its wall time and the latency
/// summary, so each benchmark only names and formats the figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metered {
    /// Operations completed.
    pub ops: u64,
    /// Payload bytes they moved.
    pub bytes: u64,
    /// Wall time from the meter's start to [`Meter::finish`], seconds.
    pub secs: f64,
    /// Latency of each operation, ns.
    pub latency_ns: Summary,
}

impl Metered {
    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    /// Payload MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    /// Mean latency, µs.
    pub fn mean_us(&self) -> f64 {
        self.latency_ns.mean / 1000.0
    }
    /// Median latency, µs.
    pub fn p50_us(&self) -> f64 {
        self.latency_ns.p50 as f64 / 1000.0
    }
    /// 99th-percentile latency, µs.
    pub fn p99_us(&self) -> f64 {
        self.latency_ns.p99 as f64 / 1000.0
    }
}

/// A scratch directory, removed with everything in it on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<base>/conclave-bench-<what>-<pid>`.
    pub fn new(base: &std::path::Path, what: &str) -> std::io::Result<Scratch> {
        let path = base.join(format!("conclave-bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        Ok(Scratch { path })
    }

    /// Adopts `path` (created if missing) as the scratch directory.
    pub fn at(path: PathBuf) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process killed and reaped on drop, so a failed run leaves no
/// server behind.
#[derive(Debug)]
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// xorshift64*: cheap, deterministic numbers (block numbers, data).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Rows already rendered as JSON objects, as one array with a row per line.
pub fn json_rows(rows: &[String]) -> String {
    format!("[{}]", rows.join(",\n "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let m = Summary::of(&mut s);
        assert_eq!((m.count, m.p50, m.p99), (100, 50, 99));
        assert_eq!(m.mean, 50.5);
        assert_eq!(Summary::of(&mut []), Summary::default());
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn meter_records_successes_only() {
        let mut m = Meter::start();
        assert_eq!(m.time(10, || Ok::<_, ()>(7)), Ok(7));
        assert_eq!(m.time(10, || Err::<(), _>("no")), Err("no"));
        m.time(5, || Ok::<_, ()>(())).unwrap();
        assert_eq!(m.ops(), 2);
        let r = m.finish();
        assert_eq!((r.ops, r.bytes, r.latency_ns.count), (2, 15, 2));
        assert!(r.secs > 0.0 && r.ops_per_s() > 0.0 && r.mb_per_s() > 0.0);
        assert!(r.p99_us() >= r.p50_us());
    }

    #[test]
    fn scratch_is_removed_on_drop() {
        let s = Scratch::new(&std::env::temp_dir(), "harness-test").unwrap();
        let p = s.path().to_path_buf();
        std::fs::write(p.join("x"), b"x").unwrap();
        drop(s);
        assert!(!p.exists());
    }
}
