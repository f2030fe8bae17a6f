//! The report's tables as data, shared by the Markdown and HTML renderers:
//! presets, throughput and latency per configuration × workers × file, each
//! protection's cost relative to `linux` and stock nginx, multi-tenant
//! totals and fairness, and every cell that did not run clean.

use crate::preset;
use crate::results::{CellResult, RunResults, Tenancy, Tenant};

/// A table: title, header, rows of text cells.
pub struct Table {
    /// Heading above it.
    pub title: String,
    /// A sentence under the heading.
    pub note: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// The report's first line: the missing-nginx warning when the baseline is
/// absent (so nobody reads ratios without it), else the title.
pub fn first_line(r: &RunResults) -> String {
    if r.nginx.contains("NOT installed") {
        format!("**WARNING: {}.**", r.nginx)
    } else {
        format!("# conclave evaluation — run {}", r.run_id)
    }
}

fn single(r: &RunResults) -> impl Iterator<Item = &CellResult> {
    r.cells.iter().filter(|c| c.tenancy == Tenancy::Single)
}

/// Distinct values in first-seen order.
fn distinct<T: PartialEq + Clone>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = Vec::new();
    for x in it {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// Files in size order.
pub fn files(r: &RunResults) -> Vec<String> {
    let mut f: Vec<(u64, String)> = distinct(single(r).map(|c| (c.file_bytes, c.file.clone())));
    f.sort();
    f.into_iter().map(|(_, n)| n).collect()
}

/// Presets that produced single-tenant cells, in the order asked.
pub fn presets(r: &RunResults) -> Vec<String> {
    distinct(single(r).map(|c| c.preset.clone()))
}

/// Worker counts measured for a preset.
pub fn workers(r: &RunResults, preset: &str) -> Vec<u32> {
    let mut w = distinct(single(r).filter(|c| c.preset == preset).map(|c| c.workers));
    w.sort();
    w
}

/// The clean single-tenant cell for (preset, workers, file).
pub fn cell<'a>(r: &'a RunResults, preset: &str, workers: u32, file: &str) -> Option<&'a CellResult> {
    single(r).find(|c| c.preset == preset && c.workers == workers && c.file == file && c.status.is_ok())
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn grid(r: &RunResults, f: impl Fn(&str, u32, &str) -> String) -> Vec<Vec<String>> {
    let files = files(r);
    let mut rows = Vec::new();
    for p in presets(r) {
        for w in workers(r, &p) {
            let mut row = vec![p.clone(), w.to_string()];
            row.extend(files.iter().map(|file| f(&p, w, file)));
            rows.push(row);
        }
    }
    rows
}

fn header(r: &RunResults) -> Vec<String> {
    let mut h = vec!["configuration".to_string(), "workers".to_string()];
    h.extend(files(r));
    h
}

/// All tables, in report order.
pub fn all(r: &RunResults) -> Vec<Table> {
    let mut t = Vec::new();
    // Presets and availability.
    let mut rows = Vec::new();
    for name in &r.presets {
        let about = preset::find(name).map(|p| p.about).unwrap_or("");
        let status = match r.unavailable.iter().find(|u| &u.preset == name) {
            Some(u) => format!("not available yet: {}", u.missing),
            None if r.cells.iter().any(|c| &c.preset == name && c.status.is_ok()) => "measured".into(),
            None if r.cells.iter().any(|c| &c.preset == name) => "ran with errors (see below)".into(),
            None => "not run (interrupted)".into(),
        };
        rows.push(vec![name.clone(), about.to_string(), status]);
    }
    t.push(Table {
        title: "Configurations".into(),
        note: "Every preset asked for, and whether this build could run it.".into(),
        header: vec!["preset".into(), "what".into(), "status".into()],
        rows,
    });
    let load = r.cells.first().map(|c| {
        format!(
            "ab -n {} -c {}{}, TLS {}, session resumption {}",
            c.requests,
            c.concurrency,
            if c.keepalive {
                " -k"
            } else {
                " (a new connection and full handshake per request)"
            },
            c.tls,
            if c.resumption { "allowed" } else { "off" }
        )
    });
    let load = load.unwrap_or_default();
    t.push(Table {
        title: "Throughput (requests/s), single tenant".into(),
        note: load.clone(),
        header: header(r),
        rows: grid(r, |p, w, f| {
            cell(r, p, w, f)
                .map(|c| num(c.requests_per_sec))
                .unwrap_or_else(|| "–".into())
        }),
    });
    t.push(Table {
        title: "Latency (ms): mean / p50 / p99".into(),
        note: "mean = ab's time per request (concurrency / throughput); percentiles from the HDR histogram."
            .into(),
        header: header(r),
        rows: grid(r, |p, w, f| {
            cell(r, p, w, f)
                .map(|c| {
                    format!(
                        "{} / {} / {}",
                        num(c.latency_mean_ms),
                        num(c.latency_p50_ms),
                        num(c.latency_p99_ms)
                    )
                })
                .unwrap_or_else(|| "–".into())
        }),
    });
    let ratio = |base: &str| {
        grid(r, |p, w, f| match (cell(r, p, w, f), cell(r, base, w, f)) {
            (Some(c), Some(b)) if b.requests_per_sec > 0.0 => {
                format!("{:.2}×", c.requests_per_sec / b.requests_per_sec)
            }
            _ => "–".into(),
        })
    };
    t.push(Table {
        title: "Cost of each protection: throughput relative to `linux`".into(),
        note: "Same workers and file; 1.00× = as fast as the conclave edge with no protection.".into(),
        header: header(r),
        rows: ratio("linux"),
    });
    t.push(Table {
        title: "Throughput relative to stock nginx".into(),
        note: if r.nginx.contains("NOT installed") {
            r.nginx.clone()
        } else {
            r.nginx.clone() + ", same config as the seed"
        },
        header: header(r),
        rows: ratio("nginx"),
    });
    // Multi-tenant.
    let totals: Vec<&CellResult> = r.cells.iter().filter(|c| c.tenant == Tenant::Total).collect();
    if !totals.is_empty() {
        let mut rows = Vec::new();
        for tot in totals {
            let per: Vec<String> = r
                .cells
                .iter()
                .filter(|c| {
                    c.preset == tot.preset
                        && c.tenancy == tot.tenancy
                        && c.tenants == tot.tenants
                        && c.file == tot.file
                        && c.tenant != Tenant::Total
                })
                .map(|c| num(c.requests_per_sec))
                .collect();
            rows.push(vec![
                tot.preset.clone(),
                tot.tenancy.to_string(),
                tot.tenants.to_string(),
                tot.file.clone(),
                num(tot.requests_per_sec),
                per.join(" / "),
                tot.fairness.map(|f| format!("{f:.3}")).unwrap_or_default(),
                tot.failed.to_string(),
            ]);
        }
        t.push(Table {
            title: "Multi-tenant: concurrent loads, one per tenant".into(),
            note:
                "share-nothing: each tenant its own deployment; share-edge: one edge with a site per tenant. \
                   Fairness is Jain's index over per-tenant throughput (1 = even)."
                    .into(),
            header: [
                "preset",
                "sharing",
                "tenants",
                "file",
                "total req/s",
                "per tenant req/s",
                "fairness",
                "failed",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
    }
    let bad: Vec<Vec<String>> = r
        .cells
        .iter()
        .filter(|c| !c.status.is_ok())
        .map(|c| {
            vec![
                c.preset.clone(),
                c.workers.to_string(),
                format!("{} x{}", c.tenancy, c.tenants),
                c.file.clone(),
                c.status.to_string().lines().next().unwrap_or("").to_string(),
            ]
        })
        .collect();
    t.push(Table {
        title: "Cells that did not run clean".into(),
        note: if bad.is_empty() {
            "None: every load finished with zero failed requests.".into()
        } else {
            String::new()
        },
        header: ["preset", "workers", "tenancy", "file", "status"]
            .map(String::from)
            .to_vec(),
        rows: bad,
    });
    t
}
