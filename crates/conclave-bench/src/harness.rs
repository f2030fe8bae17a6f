//! What every micro-benchmark shares: latency summaries (mean and
//! percentiles of raw samples), a scratch directory and child processes
//! removed however a run ends, a cheap deterministic random source, and
//! the JSON-array layout of one object per row.

use std::path::PathBuf;
use std::process::Child;

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
    fn scratch_is_removed_on_drop() {
        let s = Scratch::new(&std::env::temp_dir(), "harness-test").unwrap();
        let p = s.path().to_path_buf();
        std::fs::write(p.join("x"), b"x").unwrap();
        drop(s);
        assert!(!p.exists());
    }
}
