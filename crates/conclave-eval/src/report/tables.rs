//! The report's tables as data, shared by the Markdown and HTML renderers:
//! presets, throughput and latency per configuration × workers × file, each
//! protection's cost relative to `linux` and stock nginx, multi-tenant
//! totals and fairness, and every cell that did not run clean.

use crate::cpu::ProcessClass;
use crate::results::{CellResult, RunResults, Tenancy, Tenant};
use crate::{paper, preset};

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

/// Every warning the report opens with: the missing-nginx baseline (so
/// nobody reads ratios without it), then what the machine or build lacks
/// for some presets (FUSE, the keyless module) and which presets did not run.
pub fn warnings(r: &RunResults) -> Vec<String> {
    let mut w = Vec::new();
    if r.nginx.contains("NOT installed") {
        w.push(format!("**WARNING: {}.**", r.nginx));
    }
    w.extend(r.warnings.iter().map(|x| format!("**WARNING: {x}.**")));
    w
}

/// The report's first line: the first warning, else the title.
pub fn first_line(r: &RunResults) -> String {
    warnings(r)
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("# conclave evaluation — run {}", r.run_id))
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

/// CPU µs per request with one decimal; `–` when not measured.
fn us(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

/// The report's first table: each preset's servers' CPU per request (the
/// smallest file), its ratio to `linux`, and the paper's throughput ratio
/// for the same protection.
fn cost_summary(r: &RunResults) -> Option<Table> {
    let file = files(r).into_iter().next()?;
    let mut rows = Vec::new();
    for p in presets(r) {
        for w in workers(r, &p) {
            let c = cell(r, &p, w, &file);
            let total = c.and_then(|c| c.cpu.total);
            let base = cell(r, "linux", w, &file);
            let ratio = |x: Option<f64>, b: Option<f64>| match (x, b) {
                (Some(x), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
                _ => "–".into(),
            };
            rows.push(vec![
                p.clone(),
                w.to_string(),
                us(total),
                ratio(total, base.and_then(|b| b.cpu.total)),
                total
                    .filter(|&t| t > 0.0)
                    .map_or_else(|| "–".into(), |t| num(1e6 / t)),
                ratio(c.map(|c| c.requests_per_sec), base.map(|b| b.requests_per_sec)),
                paper::throughput_vs_linux(&p, w)
                    .map(|x| format!("{x:.2}× ({})", paper::paper_name(&p).unwrap_or("")))
                    .unwrap_or_else(|| "–".into()),
            ]);
        }
    }
    Some(Table {
        title: format!("CPU per request: the cost of each protection ({file})"),
        note: "CPU µs per request = user + system time of every server process (edge, key, file, memory \
               servers, origin; not the load generator) during the load, divided by completed requests. \
               This is the machine-independent cost of each protection, and it predicts throughput on a \
               larger machine: requests/s per core ≈ 1e6 / total µs. A CPU ratio r to `linux` predicts a \
               throughput ratio ≈ 1/r once the servers are CPU-bound. The paper measured throughput only \
               (NGINX under SGX, 4-core machine, 1 KiB, draft figure), so its column is a throughput ratio \
               to its Linux at the same workers."
            .into(),
        header: [
            "configuration",
            "workers",
            "CPU µs/req",
            "CPU × linux",
            "req/s per core (1e6/µs)",
            "req/s × linux (here)",
            "paper: req/s × Linux",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    })
}

/// CPU µs per request of each process class beside throughput, for every
/// clean single-tenant cell and every multi-tenant total.
fn cpu_by_process(r: &RunResults) -> Table {
    // A class the configuration does not run is an empty cell, not 0.
    let us = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or_default();
    let line = |name: String, c: &CellResult| {
        let mut row = vec![
            name,
            c.workers.to_string(),
            c.file.clone(),
            num(c.requests_per_sec),
        ];
        row.extend(
            ProcessClass::ALL
                .iter()
                .filter(|k| k.is_server())
                .map(|&k| us(c.cpu.get(k))),
        );
        row.push(us(c.cpu.total));
        row.push(us(c.cpu.loadgen));
        row
    };
    let mut rows = Vec::new();
    for p in presets(r) {
        for w in workers(r, &p) {
            for f in files(r) {
                if let Some(c) = cell(r, &p, w, &f) {
                    rows.push(line(p.clone(), c));
                }
            }
        }
    }
    for c in r
        .cells
        .iter()
        .filter(|c| c.tenant == Tenant::Total && c.status.is_ok())
    {
        rows.push(line(format!("{} ({} x{})", c.preset, c.tenancy, c.tenants), c));
    }
    let mut header: Vec<String> = ["configuration", "workers", "file", "req/s"]
        .map(String::from)
        .to_vec();
    header.extend(
        ProcessClass::ALL
            .iter()
            .filter(|k| k.is_server())
            .map(|k| k.as_str().to_string()),
    );
    header.push("servers total".into());
    header.push("load generator".into());
    Table {
        title: "CPU µs per request by process".into(),
        note: "User + system CPU time (each process's CPU clock, /proc) of each kind of process during the load, divided by \
               completed requests: the machine-independent cost of each protection, which predicts \
               throughput on a larger machine (requests/s per core ≈ 1e6 / servers total). The edge is its \
               master and every worker (a worker that exits is counted through its master); the load \
               generator is the eval process itself. An empty cell: the configuration runs no such process."
            .into(),
        header,
        rows,
    }
}

/// All tables, in report order.
pub fn all(r: &RunResults) -> Vec<Table> {
    let mut t = Vec::new();
    t.extend(cost_summary(r));
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
    t.push(cpu_by_process(r));
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
