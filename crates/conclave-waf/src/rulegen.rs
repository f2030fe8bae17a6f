//! The seed's benchmark rule sets: rule i (id i, 1-based) denies with 403 when the query argument
//! `testparam` contains a random 6-letter (mixed-case ASCII) string; reproducible from a seed.

use crate::rng::SplitMix64;
use std::io::Write;
use std::path::{Path, PathBuf};

const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The `n` random strings of the seed's rule set (string i-1 belongs to rule id i).
pub fn seed_strings(n: usize, seed: u64) -> Vec<[u8; 6]> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let mut s = [0u8; 6];
            for c in &mut s {
                *c = LETTERS[(rng.next() % 52) as usize];
            }
            s
        })
        .collect()
}

/// The rule text of rule `id` (1-based) for string `s`.
pub fn seed_rule(id: usize, s: &[u8; 6]) -> String {
    format!(
        "SecRule ARGS:testparam \"@contains {}\" \"id:{id},deny,status:403\"\n",
        std::str::from_utf8(s).expect("ASCII letters")
    )
}

/// Writes `main` (`SecRuleEngine On` + `Include` of the rules file) and, next to it,
/// `<main stem>-rules.conf` with `n` rules (their directory created if missing); returns the
/// rules file's path.
pub fn write_seed_rule_set(main: &Path, n: usize, seed: u64) -> std::io::Result<PathBuf> {
    if let Some(dir) = main.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let stem = main.file_stem().and_then(|s| s.to_str()).unwrap_or("main");
    let rules_name = format!("{stem}-rules.conf");
    let rules_path = main.with_file_name(&rules_name);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&rules_path)?);
    // No header comment: the seed's files have none.
    for (i, s) in seed_strings(n, seed).iter().enumerate() {
        w.write_all(seed_rule(i + 1, s).as_bytes())?;
    }
    w.flush()?;
    std::fs::write(main, format!("SecRuleEngine On\nInclude {rules_name}\n"))?;
    Ok(rules_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_strings() {
        assert_eq!(seed_strings(50, 7), seed_strings(50, 7));
        assert_ne!(seed_strings(50, 7), seed_strings(50, 8));
        assert!(seed_strings(1000, 1)
            .iter()
            .flatten()
            .all(|c| c.is_ascii_alphabetic()));
    }
}
