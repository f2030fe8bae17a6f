//! The files a run leaves in `results/<run>/`: `cells.json` and `cells.csv`
//! (every load), `report.md`, `plots/*.png|svg` and `report.html`.

mod html;
mod markdown;
mod plots;
mod tables;

use crate::cpu::ProcessClass;
use crate::results::{CellResult, RunResults};
use crate::EvalError;
use std::path::{Path, PathBuf};

pub use tables::first_line;

/// Columns of cells.csv, in order.
const CSV_HEADER: &[&str] = &[
    "preset",
    "edge",
    "storage",
    "shared",
    "key",
    "workers",
    "tenancy",
    "tenants",
    "tenant",
    "file",
    "file_bytes",
    "requests",
    "concurrency",
    "keepalive",
    "tls",
    "resumption",
    "status",
    "complete",
    "failed",
    "failed_connect",
    "failed_receive",
    "failed_length",
    "failed_exceptions",
    "non_2xx",
    "requests_per_sec",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_p999_ms",
    "time_s",
    "handshakes_full",
    "handshakes_resumed",
    "fairness",
    "cpu_us_per_req_edge",
    "cpu_us_per_req_keyserver",
    "cpu_us_per_req_fileserver",
    "cpu_us_per_req_memserver",
    "cpu_us_per_req_origin",
    "cpu_us_per_req_loadgen",
    "cpu_us_per_req_total",
    "cpu_model",
    "cores",
    "kernel",
];

fn csv_row(c: &CellResult) -> Vec<String> {
    let f = |x: f64| format!("{x:.3}");
    let mut row = vec![
        c.preset.clone(),
        c.edge.clone(),
        c.storage.clone(),
        c.shared.clone(),
        c.key.clone(),
        c.workers.to_string(),
        c.tenancy.to_string(),
        c.tenants.to_string(),
        c.tenant.to_string(),
        c.file.clone(),
        c.file_bytes.to_string(),
        c.requests.to_string(),
        c.concurrency.to_string(),
        c.keepalive.to_string(),
        c.tls.clone(),
        c.resumption.to_string(),
        c.status.to_string(),
        c.complete.to_string(),
        c.failed.to_string(),
        c.failed_connect.to_string(),
        c.failed_receive.to_string(),
        c.failed_length.to_string(),
        c.failed_exceptions.to_string(),
        c.non_2xx.to_string(),
        f(c.requests_per_sec),
        f(c.latency_mean_ms),
        f(c.latency_p50_ms),
        f(c.latency_p90_ms),
        f(c.latency_p99_ms),
        f(c.latency_p999_ms),
        f(c.time_s),
        c.handshakes_full.to_string(),
        c.handshakes_resumed.to_string(),
        c.fairness.map(|x| format!("{x:.4}")).unwrap_or_default(),
    ];
    // An absent process class is an empty field, not 0.
    let us = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or_default();
    row.extend(ProcessClass::ALL.iter().map(|&k| us(c.cpu.get(k))));
    row.push(us(c.cpu.total));
    row.extend([c.cpu_model.clone(), c.cores.to_string(), c.kernel.clone()]);
    row
}

/// Writes cells.json and cells.csv (called after every load).
pub fn write_data(out: &Path, r: &RunResults) -> Result<(), EvalError> {
    let json = out.join("cells.json");
    let text = serde_json::to_string_pretty(r).map_err(|e| EvalError::Config(format!("JSON: {e}")))?;
    write_atomic(&json, text.as_bytes())?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| EvalError::Config(format!("CSV: {e}"));
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    for c in &r.cells {
        w.write_record(csv_row(c)).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| EvalError::Config(format!("CSV: {e}")))?;
    write_atomic(&out.join("cells.csv"), &bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(EvalError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(EvalError::io(path))
}

/// Reads a run back from its cells.json (to redraw a report).
pub fn read_data(out: &Path) -> Result<RunResults, EvalError> {
    let p = out.join("cells.json");
    let text = std::fs::read_to_string(&p).map_err(EvalError::io(&p))?;
    serde_json::from_str(&text).map_err(|e| EvalError::Config(format!("{}: {e}", p.display())))
}

/// The files of a finished report.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// report.md
    pub markdown: PathBuf,
    /// report.html
    pub html: PathBuf,
    /// plots/*.png and *.svg
    pub plots: Vec<PathBuf>,
}

/// Writes report.md, the plots and report.html.
pub fn write_report(out: &Path, r: &RunResults) -> Result<ReportFiles, EvalError> {
    let plot_dir = out.join("plots");
    std::fs::create_dir_all(&plot_dir).map_err(EvalError::io(&plot_dir))?;
    let plots = plots::draw_all(&plot_dir, r)?;
    let md = markdown::render(r, &plots);
    let markdown = out.join("report.md");
    write_atomic(&markdown, md.as_bytes())?;
    let html_text = html::render(r, &plots);
    let html = out.join("report.html");
    write_atomic(&html, html_text.as_bytes())?;
    let files = plots
        .iter()
        .flat_map(|p| [plot_dir.join(&p.png), plot_dir.join(&p.svg)])
        .collect();
    Ok(ReportFiles {
        markdown,
        html,
        plots: files,
    })
}

/// One drawn plot (both formats), relative to `plots/`.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Title.
    pub title: String,
    /// PNG file name.
    pub png: String,
    /// SVG file name.
    pub svg: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Status, Tenancy, Tenant, Unavailable};

    fn cell(preset: &str, workers: u32, file: &str, bytes: u64, rps: f64) -> CellResult {
        CellResult {
            preset: preset.into(),
            edge: "conclave".into(),
            storage: "host".into(),
            shared: "local".into(),
            key: "local".into(),
            workers,
            tenancy: Tenancy::Single,
            tenants: 1,
            tenant: Tenant::Whole,
            file: file.into(),
            file_bytes: bytes,
            requests: 100,
            concurrency: 8,
            keepalive: false,
            tls: "1.2".into(),
            resumption: false,
            status: Status::Ok,
            complete: 100,
            failed: 0,
            failed_connect: 0,
            failed_receive: 0,
            failed_length: 0,
            failed_exceptions: 0,
            non_2xx: 0,
            requests_per_sec: rps,
            latency_mean_ms: 8000.0 / rps,
            latency_p50_ms: 5.0,
            latency_p90_ms: 9.0,
            latency_p99_ms: 12.0,
            latency_p999_ms: 13.0,
            time_s: 100.0 / rps,
            handshakes_full: 100,
            handshakes_resumed: 0,
            fairness: None,
            cpu: crate::cpu::CpuPerRequest {
                edge: Some(400.0 * 1000.0 / rps),
                loadgen: Some(250.0),
                total: Some(400.0 * 1000.0 / rps),
                ..Default::default()
            },
            cpu_model: "cpu".into(),
            cores: 2,
            kernel: "6".into(),
            percent_served_ms: (0..=100).map(|p| p as f64 / 10.0).collect(),
        }
    }

    #[test]
    fn missing_nginx_is_the_first_line_and_ratios_use_linux() {
        let dir = tempfile::tempdir().unwrap();
        let r = RunResults {
            run_id: "x".into(),
            nginx: "stock nginx is NOT installed: the `nginx` baseline is missing".into(),
            presets: vec!["nginx".into(), "linux".into(), "linux-keyless".into()],
            unavailable: vec![
                Unavailable {
                    preset: "nginx".into(),
                    missing: "stock nginx is not installed".into(),
                },
                Unavailable {
                    preset: "linux-keyless".into(),
                    missing: "`conclave keyserver` is not built yet".into(),
                },
            ],
            cells: vec![
                cell("linux", 1, "1k.txt", 1024, 800.0),
                cell("linux", 2, "1k.txt", 1024, 1600.0),
                cell("linux", 1, "10k.txt", 10240, 400.0),
            ],
            ..RunResults::default()
        };
        write_data(dir.path(), &r).unwrap();
        assert_eq!(read_data(dir.path()).unwrap(), r);
        let files = write_report(dir.path(), &r).unwrap();
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        assert!(md.starts_with("**WARNING: stock nginx is NOT installed"), "{md}");
        assert!(md.contains("| linux-keyless |") && md.contains("not available yet: `conclave keyserver`"));
        assert!(md.contains("| linux | 2 | 1600 |"), "{md}");
        assert!(md.contains("| linux | 1 | 1.00× | 1.00× |"), "{md}");
        let html = std::fs::read_to_string(&files.html).unwrap();
        assert!(html.contains("<p class=\"warn\"><strong>WARNING: stock nginx is NOT installed"));
        assert!(html.contains("src=\"plots/throughput-1k.svg\""));
        for p in &files.plots {
            assert!(std::fs::metadata(p).unwrap().len() > 500, "{}", p.display());
        }
        let csv = std::fs::read_to_string(dir.path().join("cells.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
    }

    #[test]
    fn missing_fuse_and_keyless_module_open_the_report_and_their_presets_show_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let r = RunResults {
            run_id: "x".into(),
            nginx: "stock nginx: 1.22".into(),
            presets: vec![
                "nginx".into(),
                "nginx-fs-vericrypt".into(),
                "nginx-keyless".into(),
            ],
            warnings: vec![
                "FUSE is unavailable: no /dev/fuse; not run: nginx-fs-vericrypt".into(),
                "the keyless OpenSSL module is not built; not run: nginx-keyless".into(),
            ],
            unavailable: vec![
                Unavailable {
                    preset: "nginx-fs-vericrypt".into(),
                    missing: "FUSE is unavailable: no /dev/fuse".into(),
                },
                Unavailable {
                    preset: "nginx-keyless".into(),
                    missing: "the keyless OpenSSL module is not built".into(),
                },
            ],
            cells: vec![cell("nginx", 1, "1k.txt", 1024, 800.0)],
            ..RunResults::default()
        };
        write_data(dir.path(), &r).unwrap();
        assert_eq!(read_data(dir.path()).unwrap(), r);
        let files = write_report(dir.path(), &r).unwrap();
        let md = std::fs::read_to_string(&files.markdown).unwrap();
        let lines: Vec<&str> = md.lines().filter(|l| !l.is_empty()).take(3).collect();
        assert_eq!(
            lines,
            [
                "**WARNING: FUSE is unavailable: no /dev/fuse; not run: nginx-fs-vericrypt.**",
                "**WARNING: the keyless OpenSSL module is not built; not run: nginx-keyless.**",
                "# conclave evaluation — run x",
            ]
        );
        assert!(
            md.contains("| nginx-fs-vericrypt |") && md.contains("not available yet: FUSE is unavailable")
        );
        let html = std::fs::read_to_string(&files.html).unwrap();
        assert!(
            html.contains("<p class=\"warn\"><strong>WARNING: FUSE is unavailable"),
            "{html}"
        );
    }

    #[test]
    fn cpu_columns_hold_microseconds_per_request_and_stay_empty_for_absent_processes() {
        let dir = tempfile::tempdir().unwrap();
        let mut keyless = cell("linux-keyless", 1, "1k.txt", 1024, 400.0);
        keyless.cpu = crate::cpu::CpuPerRequest {
            edge: Some(600.0),
            keyserver: Some(300.0),
            loadgen: Some(250.0),
            total: Some(900.0),
            ..Default::default()
        };
        let r = RunResults {
            run_id: "x".into(),
            nginx: "stock nginx: 1.22".into(),
            presets: vec!["linux".into(), "linux-keyless".into()],
            cells: vec![cell("linux", 1, "1k.txt", 1024, 800.0), keyless],
            ..RunResults::default()
        };
        write_data(dir.path(), &r).unwrap();
        assert_eq!(read_data(dir.path()).unwrap(), r);
        let text = std::fs::read_to_string(dir.path().join("cells.csv")).unwrap();
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
        let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        let col = |name: &str, row: usize| {
            let i = header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no {name}"));
            rows[row][i].to_string()
        };
        for (name, linux, keyless) in [
            ("cpu_us_per_req_edge", "500.0", "600.0"),
            ("cpu_us_per_req_keyserver", "", "300.0"),
            ("cpu_us_per_req_fileserver", "", ""),
            ("cpu_us_per_req_memserver", "", ""),
            ("cpu_us_per_req_origin", "", ""),
            ("cpu_us_per_req_loadgen", "250.0", "250.0"),
            ("cpu_us_per_req_total", "500.0", "900.0"),
        ] {
            assert_eq!(
                (col(name, 0).as_str(), col(name, 1).as_str()),
                (linux, keyless),
                "{name}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("cells.json")).unwrap()).unwrap();
        assert_eq!(json["cells"][1]["cpu_us_per_req_keyserver"], 300.0);
        assert!(json["cells"][0]["cpu_us_per_req_keyserver"].is_null());
        let md = std::fs::read_to_string(write_report(dir.path(), &r).unwrap().markdown).unwrap();
        // The cost table comes first, with the ratio to linux and the paper's ratio.
        let first = md
            .find("## CPU per request: the cost of each protection (1k.txt)")
            .unwrap();
        assert!(first < md.find("## Configurations").unwrap(), "{md}");
        assert!(
            md.contains("| linux-keyless | 1 | 900.0 | 1.80× | 1111 | 0.50× | 1.17× (Linux-keyless) |"),
            "{md}"
        );
        assert!(md.contains("1e6 / total µs"), "{md}");
        assert!(
            md.contains("| linux-keyless | 1 | 1k.txt | 400 | 600.0 | 300.0 |  |  |  | 900.0 | 250.0 |"),
            "{md}"
        );
    }
}
