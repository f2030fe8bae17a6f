//! Adding up the expositions of several worker processes into one.
//!
//! Every worker encodes the same families (the same code registered them),
//! so the sum is taken sample by sample: the same name and labels in two
//! workers add up (counters, gauges, histogram buckets, sums and counts all
//! sum correctly), a sample only one worker has is kept as it is. Metadata
//! (`# HELP`, `# TYPE`, `# UNIT`) is taken from the first worker that has it.

/// Why an exposition could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A sample line whose value is not a number.
    #[error("exposition line {line}: {text:?} has no numeric value")]
    BadSample {
        /// 1-based line number in its exposition.
        line: usize,
        /// The line.
        text: String,
    },
    /// A sample before any `# TYPE` line.
    #[error("exposition line {line}: sample {text:?} outside a metric family")]
    Orphan {
        /// 1-based line number in its exposition.
        line: usize,
        /// The line.
        text: String,
    },
}

/// One family: its metadata lines and its samples in first-seen order.
#[derive(Default)]
struct FamilySum {
    meta: Vec<String>,
    samples: Vec<(String, f64)>,
}

/// The sum of `parts` (OpenMetrics text as [`super::Metrics::encode`]
/// writes it), as one exposition ending in `# EOF`.
pub fn merge<S: AsRef<str>>(parts: &[S]) -> Result<String, MergeError> {
    let mut families: Vec<(String, FamilySum)> = Vec::new();
    for part in parts {
        let mut current: Option<usize> = None;
        for (i, line) in part.as_ref().lines().enumerate() {
            if line.is_empty() || line == "# EOF" {
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut words = meta.splitn(3, ' ');
                let (_kind, name) = (words.next(), words.next().unwrap_or(""));
                let idx = match families.iter().position(|(n, _)| n == name) {
                    Some(idx) => idx,
                    None => {
                        families.push((name.to_string(), FamilySum::default()));
                        families.len() - 1
                    }
                };
                let fam = &mut families[idx].1;
                let kind = line.split(' ').nth(1);
                if !fam.meta.iter().any(|m| m.split(' ').nth(1) == kind) {
                    fam.meta.push(line.to_string());
                }
                current = Some(idx);
                continue;
            }
            let bad = || MergeError::BadSample {
                line: i + 1,
                text: line.to_string(),
            };
            let (key, value) = line.rsplit_once(' ').ok_or_else(bad)?;
            let value: f64 = value.parse().map_err(|_| bad())?;
            let idx = current.ok_or_else(|| MergeError::Orphan {
                line: i + 1,
                text: line.to_string(),
            })?;
            let fam = &mut families[idx].1;
            match fam.samples.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v += value,
                None => fam.samples.push((key.to_string(), value)),
            }
        }
    }
    let mut out = String::new();
    for (_, fam) in &families {
        for m in &fam.meta {
            out.push_str(m);
            out.push('\n');
        }
        for (k, v) in &fam.samples {
            out.push_str(k);
            out.push(' ');
            out.push_str(&number(*v));
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    Ok(out)
}

/// Integers as integers (counters stay `12`, not `12.0`), the rest as Rust prints floats.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
x_requests_total{site=\"a\",status=\"200\"} 3\n\
# HELP x_dur Time.\n# TYPE x_dur histogram\n# UNIT x_dur seconds\n\
x_dur_sum{site=\"a\"} 0.5\nx_dur_count{site=\"a\"} 3\nx_dur_bucket{le=\"+Inf\",site=\"a\"} 3\n# EOF\n";
    const B: &str = "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
x_requests_total{site=\"a\",status=\"200\"} 4\nx_requests_total{site=\"a\",status=\"404\"} 1\n\
# HELP x_dur Time.\n# TYPE x_dur histogram\n# UNIT x_dur seconds\n\
x_dur_sum{site=\"a\"} 0.25\nx_dur_count{site=\"a\"} 4\nx_dur_bucket{le=\"+Inf\",site=\"a\"} 4\n# EOF\n";

    #[test]
    fn sums_the_same_samples_and_keeps_the_others() {
        let m = merge(&[A, B]).unwrap();
        assert_eq!(
            m,
            "# HELP x_requests Requests.\n# TYPE x_requests counter\n\
x_requests_total{site=\"a\",status=\"200\"} 7\nx_requests_total{site=\"a\",status=\"404\"} 1\n\
# HELP x_dur Time.\n# TYPE x_dur histogram\n# UNIT x_dur seconds\n\
x_dur_sum{site=\"a\"} 0.75\nx_dur_count{site=\"a\"} 7\nx_dur_bucket{le=\"+Inf\",site=\"a\"} 7\n# EOF\n"
        );
    }

    #[test]
    fn one_part_reads_back_unchanged() {
        assert_eq!(merge(&[A]).unwrap(), A);
        assert_eq!(merge::<&str>(&[]).unwrap(), "# EOF\n");
    }

    #[test]
    fn refuses_a_sample_without_a_number() {
        let bad = "# TYPE x counter\nx_total{a=\"b\"} many\n";
        assert!(matches!(
            merge(&[bad]),
            Err(MergeError::BadSample { line: 2, .. })
        ));
        assert!(matches!(
            merge(&["x_total 1\n"]),
            Err(MergeError::Orphan { line: 1, .. })
        ));
    }
}
