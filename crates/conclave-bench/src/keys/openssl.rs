//! `openssl speed`, the physical reference for the key server: the CPU one
//! signature costs in OpenSSL, and what every core signing at once gives.
//!
//! Without `-elapsed`, `openssl speed` divides the operations of each
//! process by that process's *CPU* time, so one process's signs/s is
//! signatures per CPU-second: 1e6 / rate is the CPU µs of one signature,
//! whatever else the machine runs. With `-multi N` it sums N processes.

use std::process::Command;

/// Why `openssl speed` gave no number.
#[derive(Debug, thiserror::Error)]
pub enum OpensslError {
    /// No `openssl` program on the PATH.
    #[error("openssl is NOT installed: no `openssl speed` reference (apt-get install openssl)")]
    Missing,
    /// It ran but failed or printed no result line.
    #[error("`openssl {args}` gave no result: {detail}")]
    NoResult {
        /// The arguments it ran with.
        args: String,
        /// Its status and the end of its output.
        detail: String,
    },
}

/// The algorithm names of `openssl speed` for the bench's key types, and
/// the prefix of its machine-readable (`-mr`) result line.
fn algorithm(key: &str) -> Option<(&'static str, &'static str)> {
    match key {
        "rsa-2048" => Some(("rsa2048", "+F2:")),
        "ecdsa-p256" => Some(("ecdsap256", "+F4:")),
        _ => None,
    }
}

/// Signs/s from the `-mr` output of `openssl speed`: the last result line
/// of the algorithm (`+F2:` RSA, `+F4:` ECDSA; fields: index, bits, sign/s,
/// verify/s). With `-multi` the children's lines come first as `Got: …`
/// and the parent's sum last.
pub fn parse_signs_per_sec(output: &str, key: &str) -> Option<f64> {
    let (_, prefix) = algorithm(key)?;
    let line = output.lines().rfind(|l| l.starts_with(prefix))?;
    let rate: f64 = line.split(':').nth(3)?.parse().ok()?;
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// `openssl version`, or why there is none.
pub fn version() -> Result<String, OpensslError> {
    let out = Command::new("openssl")
        .arg("version")
        .output()
        .map_err(|_| OpensslError::Missing)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `openssl speed -mr -seconds S [-multi N] ALG` and returns its
/// signs/s (per CPU-second for one process; the sum for `-multi`).
pub fn speed(key: &str, seconds: u32, multi: Option<usize>) -> Result<f64, OpensslError> {
    let (alg, _) = algorithm(key).ok_or_else(|| OpensslError::NoResult {
        args: key.into(),
        detail: "no openssl algorithm for this key type".into(),
    })?;
    let mut args = vec![
        "speed".to_string(),
        "-mr".into(),
        "-seconds".into(),
        seconds.to_string(),
    ];
    if let Some(n) = multi {
        args.extend(["-multi".into(), n.to_string()]);
    }
    args.push(alg.into());
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .map_err(|_| OpensslError::Missing)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_signs_per_sec(&text, key)
        .filter(|_| out.status.success())
        .ok_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            OpensslError::NoResult {
                args: args.join(" "),
                detail: format!("{}; {}", out.status, err.lines().last().unwrap_or("no output")),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from OpenSSL 3.0.19 on this project's machine.
    const ONE: &str = "+DTP:2048:private:rsa:1\n+R1:3002:2048:0.64\n+DTP:2048:public:rsa:1\n\
                       +R2:39467:2048:0.50\n+F2:2:2048:4690.625000:78934.000000\n";
    const MULTI: &str = "+R1:1383:2048:1.00\n+R2:25138:2048:1.01\nForked child 1\n\
                         Got: +F2:2:2048:1383.000000:24732.673267 from 0\n\
                         Got: +F2:2:2048:1470.297030:24889.108911 from 1\n\
                         +F2:2:2048:2853.297030:49621.782178\n";
    const ECDSA: &str = "+R5:36983:256:0.52\n+DTP:256:verify:ecdsa:1\n+R6:12654:256:0.52\n\
                         +F4:3:256:71121.153846:24334.615385\n";

    #[test]
    fn reads_sign_rates_from_machine_readable_output() {
        assert_eq!(parse_signs_per_sec(ONE, "rsa-2048"), Some(4690.625));
        // -multi: the parent's sum, not a child's line.
        assert_eq!(parse_signs_per_sec(MULTI, "rsa-2048"), Some(2853.29703));
        assert_eq!(parse_signs_per_sec(ECDSA, "ecdsa-p256"), Some(71121.153846));
        assert_eq!(parse_signs_per_sec(ECDSA, "rsa-2048"), None);
        assert_eq!(parse_signs_per_sec(ONE, "ed25519"), None);
        assert_eq!(parse_signs_per_sec("+F2:2:2048:nan:1\n", "rsa-2048"), None);
        assert_eq!(parse_signs_per_sec("+F2:2:2048\n", "rsa-2048"), None);
        assert_eq!(parse_signs_per_sec("", "rsa-2048"), None);
    }

    /// The real `openssl`: a positive rate for both keys.
    #[test]
    fn runs_openssl_speed() {
        assert!(
            version().is_ok(),
            "this test needs openssl: apt-get install openssl"
        );
        for key in ["rsa-2048", "ecdsa-p256"] {
            let rate = speed(key, 1, None).unwrap();
            assert!(rate > 10.0, "{key}: {rate}");
        }
    }
}
