//! The paper's figures, in one place: 1 KiB throughput of the seed's
//! single-tenant macro-benchmark (`ab -n 10000 -c 128`, a full RSA-2048
//! handshake per request), digitised from the paper draft's figure (see
//! the reference `phoenix-nginx-eval-and-paper.md` §7.2), and which of our
//! presets stands for which of its configurations. The paper measured no
//! CPU time, so its throughput ratio to Linux is the figure to compare our
//! cost ratios with: on a CPU-bound server, throughput ratio ≈ 1 / cost ratio.

/// The paper's configurations measured at 1 KiB, with requests/s at 1, 2,
/// 4 and 8 NGINX workers.
const THROUGHPUT_1K: &[(&str, [f64; 4])] = &[
    ("Linux", [832.0, 1665.0, 3178.0, 3235.0]),
    ("Linux-keyless", [971.0, 1335.0, 1389.0, 1353.0]),
    ("Graphene-crypt", [440.0, 657.0, 943.0, 1170.0]),
    ("Graphene-vericrypt", [273.0, 573.0, 702.0, 223.0]),
];

/// Our preset → the paper's configuration with the same protection.
const PRESET_TO_PAPER: &[(&str, &str)] = &[
    ("linux", "Linux"),
    ("linux-keyless", "Linux-keyless"),
    ("conclave-crypt", "Graphene-crypt"),
    ("conclave-vericrypt", "Graphene-vericrypt"),
];

const WORKERS: [u32; 4] = [1, 2, 4, 8];

/// The paper's name for the configuration a preset reproduces, if any.
pub fn paper_name(preset: &str) -> Option<&'static str> {
    PRESET_TO_PAPER
        .iter()
        .find(|(p, _)| *p == preset)
        .map(|(_, n)| *n)
}

fn throughput(config: &str, workers: u32) -> Option<f64> {
    let i = WORKERS.iter().position(|&w| w == workers)?;
    THROUGHPUT_1K
        .iter()
        .find(|(c, _)| *c == config)
        .map(|(_, t)| t[i])
}

/// The paper's 1 KiB throughput of the preset's configuration relative to
/// its Linux at the same worker count (`None` where the paper has no such
/// configuration or worker count).
pub fn throughput_vs_linux(preset: &str, workers: u32) -> Option<f64> {
    let name = paper_name(preset)?;
    Some(throughput(name, workers)? / throughput("Linux", workers)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_the_papers_1k_figures_relative_to_linux() {
        let r = |p, w| throughput_vs_linux(p, w).map(|x| (x * 100.0).round() / 100.0);
        assert_eq!(r("linux", 4), Some(1.0));
        assert_eq!(r("linux-keyless", 1), Some(1.17));
        assert_eq!(r("linux-keyless", 2), Some(0.8));
        assert_eq!(r("conclave-crypt", 1), Some(0.53));
        assert_eq!(r("conclave-vericrypt", 8), Some(0.07));
        assert_eq!(r("nginx", 1), None);
        assert_eq!(r("linux-keyless", 3), None);
        for (p, n) in PRESET_TO_PAPER {
            assert!(crate::preset::find(p).is_some(), "{p}");
            assert!(THROUGHPUT_1K.iter().any(|(c, _)| c == n), "{n}");
        }
    }
}
