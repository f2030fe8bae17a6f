//! `conclave content`: the seed's web content, generated so every run serves
//! the same bytes: byte i of each text file is `'a' + i % 26`.

use anyhow::{bail, Context};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Extra files, as NAME=BYTES (e.g. 10m.txt=10485760); repeatable.
    #[arg(long = "size", value_name = "NAME=BYTES")]
    pub sizes: Vec<String>,
}

/// The seed's files and their exact sizes.
pub const SEED_FILES: [(&str, u64); 4] = [
    ("1k.txt", 1024),
    ("10k.txt", 10 * 1024),
    ("100k.txt", 100 * 1024),
    ("1m.txt", 1024 * 1024),
];

const INDEX_HTML: &str = "<!DOCTYPE html>\n<html>\n<head><title>Welcome to conclave</title></head>\n<body>\n<h1>Welcome to conclave</h1>\n<p>This page is served by a conclave edge.</p>\n</body>\n</html>\n";
const ERROR_HTML: &str = "<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n<body>\n<h1>An error occurred.</h1>\n<p>Sorry, the page you are looking for is currently unavailable.</p>\n</body>\n</html>\n";

/// Writes `len` bytes of the alphabet pattern to `path`.
pub fn write_pattern(path: &Path, len: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    let block: Vec<u8> = (0..26 * 2521).map(|i| b'a' + (i % 26) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()
}

fn parse_size(spec: &str) -> anyhow::Result<(String, u64)> {
    let Some((name, bytes)) = spec.split_once('=') else {
        bail!("--size {spec:?}: expected NAME=BYTES");
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("--size {spec:?}: NAME must be a plain file name");
    }
    let bytes = bytes
        .parse::<u64>()
        .with_context(|| format!("--size {spec:?}: BYTES must be a whole number"))?;
    Ok((name.to_string(), bytes))
}

/// Writes the content.
pub fn run(a: Args) -> anyhow::Result<()> {
    let extra = a
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let files = SEED_FILES.iter().map(|(n, s)| (n.to_string(), *s)).chain(extra);
    for (name, size) in files {
        let p = a.out.join(&name);
        write_pattern(&p, size).with_context(|| format!("writing {}", p.display()))?;
        super::print_line(p.display());
    }
    for (name, text) in [("index.html", INDEX_HTML), ("50x.html", ERROR_HTML)] {
        let p = a.out.join(name);
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        super::print_line(p.display());
    }
    Ok(())
}
