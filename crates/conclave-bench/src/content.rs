//! The seed's web content (`conclave content`), generated so every run
//! serves the same bytes: byte i of each text file is `'a' + i % 26`. The
//! load generator fetches these files and checks their lengths.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The seed's files and their exact sizes.
pub const SEED_FILES: [(&str, u64); 4] = [
    ("1k.txt", 1024),
    ("10k.txt", 10 * 1024),
    ("100k.txt", 100 * 1024),
    ("1m.txt", 1024 * 1024),
];

const INDEX_HTML: &str = "<!DOCTYPE html>\n<html>\n<head><title>Welcome to conclave</title></head>\n<body>\n<h1>Welcome to conclave</h1>\n<p>This page is served by a conclave edge.</p>\n</body>\n</html>\n";
const ERROR_HTML: &str = "<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n<body>\n<h1>An error occurred.</h1>\n<p>Sorry, the page you are looking for is currently unavailable.</p>\n</body>\n</html>\n";

/// Why the content could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A `NAME=BYTES` argument is malformed.
    #[error("--size {spec:?}: {reason}")]
    BadSpec {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating the directory or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// `creating` or `writing`.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Parses an extra file as `NAME=BYTES`; BYTES is a byte count or a size
/// such as `10m` (powers of 1024).
pub fn parse_extra(spec: &str) -> Result<(String, u64), ContentError> {
    let bad = |reason: String| ContentError::BadSpec {
        spec: spec.to_string(),
        reason,
    };
    let Some((name, bytes)) = spec.split_once('=') else {
        return Err(bad("expected NAME=BYTES".into()));
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(bad("NAME must be a plain file name".into()));
    }
    let bytes =
        conclave_units::parse_size(bytes).map_err(|e| bad(format!("BYTES must be a whole number: {e}")))?;
    Ok((name.to_string(), bytes))
}

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

/// Writes the seed's files, then `extra`, then `index.html` and `50x.html`
/// into `out` (created if missing); `written` sees each path as it is done.
pub fn write_seed(
    out: &Path,
    extra: &[(String, u64)],
    mut written: impl FnMut(&Path),
) -> Result<(), ContentError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ContentError::Io { what, path, source }
    };
    fs::create_dir_all(out).map_err(io("creating", out))?;
    let files = SEED_FILES
        .iter()
        .map(|(n, s)| (n.to_string(), *s))
        .chain(extra.iter().cloned());
    for (name, size) in files {
        let p = out.join(&name);
        write_pattern(&p, size).map_err(io("writing", &p))?;
        written(&p);
    }
    for (name, text) in [("index.html", INDEX_HTML), ("50x.html", ERROR_HTML)] {
        let p = out.join(name);
        fs::write(&p, text).map_err(io("writing", &p))?;
        written(&p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_files_are_name_equals_bytes() {
        assert_eq!(parse_extra("odd.bin=27").unwrap(), ("odd.bin".into(), 27));
        assert_eq!(parse_extra("10m.txt=10m").unwrap().1, 10 << 20);
        for bad in ["x=abc", "noequals", "=5", "a/b=5", "..=5"] {
            assert!(parse_extra(bad).is_err(), "{bad}");
        }
        assert!(parse_extra("x=abc")
            .unwrap_err()
            .to_string()
            .contains("BYTES must be a whole number"));
    }
}
