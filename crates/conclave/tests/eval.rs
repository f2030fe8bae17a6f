//! `conclave up` and `conclave eval` as a user runs them: `up` starts a
//! deployment and leaves no process behind when it is stopped or when one
//! of its processes dies; `eval` writes the data, the plots and an HTML
//! report that headless Chromium renders with every plot loaded.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{conclave, free_port, signal, wait_exit, wait_until, Proc};

fn nginx_installed() -> bool {
    Path::new("/usr/sbin/nginx").exists() || Path::new("/usr/bin/nginx").exists()
}

/// A base port with the first 80 ports after it free right now.
fn base_port() -> u16 {
    loop {
        let p = free_port();
        if !(1100..=64_900).contains(&p) {
            continue;
        }
        if (0..80).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

/// Process ids whose process group is one of `pgids`.
fn members_of(pgids: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue;
        }
        if let Some(pgrp) = f.get(2).and_then(|s| s.parse::<u32>().ok()) {
            if pgids.contains(&pgrp) {
                out.push(pid);
            }
        }
    }
    out
}

fn write_deploy(dir: &Path, base: u16) -> PathBuf {
    let p = dir.join("deploy.toml");
    let text = format!(
        "name = \"test\"\n[origin]\nkind = \"nginx\"\nlisten = \"127.0.0.1:{o}\"\n\
         [edge]\nkind = \"nginx\"\nworkers = 2\n[[edge.site]]\nlisten = \"127.0.0.1:{e}\"\n",
        o = base + 20,
        e = base
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn up_serves_and_leaves_no_process_behind_on_sigterm() {
    assert!(nginx_installed(), "this test needs nginx: apt-get install nginx");
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let deploy = write_deploy(dir.path(), base);
    let started = common::up::start(&[], &deploy);
    let pids: Vec<u32> = started.procs.iter().map(|p| p.pid).collect();
    let mut up = started.proc;
    assert_eq!(pids.len(), 2, "origin and edge");
    // nginx masters plus their workers (2 for the edge, 1 for the origin); a
    // master accepts connections before it has forked them all, so wait a bit.
    let mut members = Vec::new();
    wait_until(Duration::from_secs(10), || {
        members = members_of(&pids);
        members.len() >= 5
    });
    assert!(
        members.len() >= 5,
        "expected masters and workers, found {members:?}"
    );
    // The deployment serves the seed's content through the cache.
    let ab = conclave()
        .args(["ab", "-n", "20", "-c", "2", "--cacert"])
        .arg(dir.path().join("certs/ca/root.crt"))
        .arg(format!("https://127.0.0.1:{base}/10k.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ab.stdout);
    assert!(
        text.contains("Failed requests:        0") && text.contains("Document Length:        10240"),
        "{text}"
    );
    signal(up.id().into(), "TERM");
    let status = wait_exit(&mut up, Duration::from_secs(15));
    assert!(status.success(), "up exited with {status}");
    let left = members_of(&pids);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", base)).is_err(),
        "the edge port still answers"
    );
}

#[test]
fn up_stops_everything_when_one_process_dies_and_names_it() {
    assert!(nginx_installed(), "this test needs nginx: apt-get install nginx");
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let deploy = write_deploy(dir.path(), base);
    let started = common::up::start(&[], &deploy);
    let pids: Vec<u32> = started.procs.iter().map(|p| p.pid).collect();
    let mut up = started.proc;
    // Kill the origin's master (the first process started) outright.
    signal(pids[0].into(), "KILL");
    let status = wait_exit(&mut up, Duration::from_secs(15));
    assert!(!status.success());
    let left = members_of(&pids);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn up_rejects_a_bad_deployment_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deploy.toml");
    std::fs::write(&p, "name = \"x\"\n[origin]\nkind = \"nginx\"\nlisten = \"127.0.0.1:1\"\n[edge]\nkind = \"conclave\"\nkey = \"keyserver\"\n[[edge.site]]\nlisten = \"127.0.0.1:2\"\n").unwrap();
    let out = conclave().arg("up").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[keyserver]"), "{err}");
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

#[test]
fn eval_writes_data_plots_and_a_report_that_chromium_renders() {
    assert!(nginx_installed(), "this test needs nginx: apt-get install nginx");
    let browser = chromium().expect("this test needs headless Chromium: apt-get install chromium");
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let out = conclave()
        .args([
            "eval",
            "--quiet",
            "--preset",
            "nginx",
            "--preset",
            "linux",
            "--preset",
            "conclave-vericrypt",
        ])
        .args([
            "--sizes",
            "1k,10k",
            "--workers",
            "1,2",
            "--tenants",
            "2",
            "-n",
            "40",
            "-c",
            "4",
        ])
        .args(["--base-port", &base.to_string(), "--run-id", "t", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("t");
    let csv = std::fs::read_to_string(run.join("cells.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for col in [
        "preset",
        "workers",
        "file",
        "requests_per_sec",
        "latency_p99_ms",
        "failed",
        "cpu_model",
        "kernel",
        "cpu_us_per_req_edge",
        "cpu_us_per_req_keyserver",
        "cpu_us_per_req_fileserver",
        "cpu_us_per_req_memserver",
        "cpu_us_per_req_origin",
        "cpu_us_per_req_loadgen",
        "cpu_us_per_req_total",
    ] {
        assert!(header.split(',').any(|h| h == col), "no {col} column: {header}");
    }
    // CPU per request, from /proc of the real processes: the edge and the
    // load generator spent CPU in every clean single-tenant load; a process
    // the preset does not run is null, not 0.
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("cells.json")).unwrap()).unwrap();
    let single: Vec<&serde_json::Value> = data["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tenant"] == "-" && c["status"] == "ok")
        .collect();
    assert!(single.iter().any(|c| c["preset"] == "linux"), "{data}");
    for c in &single {
        let us = |k: &str| c[format!("cpu_us_per_req_{k}")].as_f64();
        assert!(us("edge").is_some_and(|x| x > 0.0), "edge CPU: {c}");
        assert!(us("loadgen").is_some_and(|x| x > 0.0), "load generator CPU: {c}");
        assert!(us("total").unwrap() >= us("edge").unwrap(), "{c}");
        if c["preset"] == "linux" || c["preset"] == "nginx" {
            for absent in ["keyserver", "fileserver", "memserver"] {
                assert!(c[format!("cpu_us_per_req_{absent}")].is_null(), "{absent}: {c}");
            }
        }
    }
    // Multi-tenant totals carry the cell's CPU; per-tenant rows do not.
    for c in data["cells"].as_array().unwrap() {
        let has = c["cpu_us_per_req_edge"].as_f64().is_some();
        match c["tenant"].as_str().unwrap() {
            "-" | "total" => assert!(has || c["status"] != "ok", "{c}"),
            _ => assert!(!has, "{c}"),
        }
    }
    // nginx: 2 workers x 2 files, plus 2 sharing modes x (2 tenants + total).
    let nginx_rows: Vec<&str> = csv.lines().filter(|l| l.starts_with("nginx,")).collect();
    assert_eq!(nginx_rows.len(), 4 + 2 * 3, "{csv}");
    for row in &nginx_rows {
        assert!(row.contains(",ok,"), "nginx cell not clean: {row}");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.starts_with("# conclave evaluation"),
        "nginx is installed, so the title comes first:\n{md}"
    );
    // A preset whose servers have not landed is listed, not dropped.
    assert!(md.contains("conclave-vericrypt"), "{md}");
    // The cost of each protection in CPU comes first, then beside throughput by process.
    let cost = md
        .find("## CPU per request: the cost of each protection")
        .expect(&md);
    assert!(cost < md.find("## Configurations").unwrap(), "{md}");
    assert!(md.contains("## CPU µs per request by process"), "{md}");
    assert!(std::fs::read_dir(run.join("plots")).unwrap().count() >= 4);
    for f in [
        "plots/throughput-1k.png",
        "plots/throughput-1k.svg",
        "plots/latency-1k.svg",
        "plots/tenants.png",
    ] {
        assert!(
            std::fs::metadata(run.join(f)).unwrap().len() > 1000,
            "{f} is empty"
        );
    }
    let page = run.join("report.html");
    let profile = dir.path().join("chromium-profile");
    let dom = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .arg("--disable-dev-shm-usage")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let loaded = dom
        .split("data-loaded=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no plot check in the rendered page:\n{dom}"));
    let (ok, total) = loaded
        .split_once('/')
        .unwrap_or_else(|| panic!("the page script did not run: {loaded:?}"));
    assert!(total.parse::<u32>().unwrap() >= 4, "{loaded}");
    assert_eq!(ok, total, "not every plot rendered: {loaded}");
    // Redrawing the report from the data gives the same page.
    let again = conclave()
        .args(["eval", "--report-only"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Processes whose command line mentions `needle` (a run's temp dir).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn eval_interrupted_keeps_finished_results_and_stops_every_server() {
    assert!(nginx_installed(), "this test needs nginx: apt-get install nginx");
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let mut eval = Proc::new(
        conclave()
            .args([
                "eval",
                "--quiet",
                "--preset",
                "nginx",
                "--sizes",
                "1k,10k,100k",
                "--workers",
                "1,2",
            ])
            .args([
                "--tenants",
                "1",
                "-n",
                "100000",
                "-c",
                "4",
                "--base-port",
                &base.to_string(),
            ])
            .args(["--run-id", "i", "--out"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let json = dir.path().join("i/cells.json");
    // Wait until the first load is under way (the edge is up), let it run a
    // moment (the behaviour under test is an interrupt mid-run), then interrupt.
    let cells = dir.path().join("i/cells").display().to_string();
    assert!(
        wait_until(Duration::from_secs(60), || !processes_mentioning(&cells)
            .is_empty()),
        "eval never started a cell"
    );
    std::thread::sleep(Duration::from_millis(1500));
    signal(eval.id().into(), "INT");
    let status = wait_exit(&mut eval, Duration::from_secs(30));
    assert!(status.success(), "eval exited with {status}");
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let data = std::fs::read_to_string(&json).unwrap();
    assert!(data.contains("\"interrupted\": true"), "{data}");
    let md = std::fs::read_to_string(dir.path().join("i/report.md")).unwrap();
    assert!(md.contains("interrupted"), "{md}");
}

/// Every kernel server is in a full build, so every preset is available.
#[cfg(all(feature = "fs", feature = "mem", feature = "keys", feature = "edge"))]
#[test]
fn eval_list_shows_the_kernel_server_presets_available() {
    let out = conclave().args(["eval", "--list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "linux-keyless",
        "fs-std",
        "fs-crypt",
        "fs-verity",
        "fs-vericrypt",
        "mem-smdish",
        "mem-smuf",
        "mem-smc",
        "conclave-crypt",
        "conclave-vericrypt",
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"));
        assert!(
            line.trim_end().ends_with("available") && !line.contains("not available"),
            "{line}"
        );
    }
}

/// `up` on a conclave with a file server (vericrypt image built by `mkfs`),
/// an smuf memory server and a key server: they start in dependency order,
/// each one ready before the next; the edge serves through them; and
/// none is left when SIGTERM stops `up`.
#[cfg(all(feature = "fs", feature = "mem", feature = "keys", feature = "edge"))]
#[test]
fn up_starts_the_kernel_servers_in_order_and_leaves_none_behind() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = base_port();
    let deploy = dir.path().join("deploy.toml");
    std::fs::write(
        &deploy,
        format!(
            "name = \"kernel\"\n[origin]\nkind = \"conclave\"\nlisten = \"127.0.0.1:{o}\"\n\
             [edge]\nkind = \"conclave\"\nstorage = \"nextfs\"\nshared = \"smuf\"\nkey = \"keyserver\"\n\
             [[edge.site]]\nlisten = \"127.0.0.1:{base}\"\n\
             [keyserver]\nlisten = \"127.0.0.1:{k}\"\n[memserver]\nlisten = \"127.0.0.1:{m}\"\n\
             [fileserver]\ndevice = \"vericrypt\"\nlisten = \"127.0.0.1:{f}\"\nkdf = \"cheap\"\n",
            o = base + 20,
            k = base + 30,
            m = base + 50,
            f = base + 70,
        ),
    )
    .unwrap();
    let mut child = conclave()
        .arg("up")
        .arg(&deploy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = child.stderr.take().unwrap();
    let mut up = Proc::new(child);
    let (mut names, mut pids) = (Vec::new(), Vec::new());
    let mut line = String::new();
    let mut edge_up = false;
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some((name, rest)) = line.strip_prefix("started ").and_then(|l| l.split_once(" (pid ")) {
            names.push(name.to_string());
            pids.push(rest.split(')').next().unwrap().parse::<u32>().unwrap());
        }
        if line.contains("is up") {
            edge_up = true;
            break;
        }
        line.clear();
    }
    assert_eq!(
        names[..4],
        [
            "fileserver (vericrypt)",
            "memserver (smuf)",
            "keyserver",
            "origin"
        ],
        "start order"
    );
    for (log, want) in [
        ("fileserver.log", "listening"),
        ("memserver.log", "listening"),
        ("keyserver.log", "listening"),
    ] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(text.contains(want), "{log}: {text}");
    }
    // The key server's directory holds the site key only (moved out of certs/), owner-readable.
    assert!(!dir.path().join("certs/site/server.key").exists());
    let keys: Vec<_> = std::fs::read_dir(dir.path().join("run/keyserver/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(keys, ["server.key"]);
    let secret = std::fs::metadata(dir.path().join("run/fileserver/fs.secret")).unwrap();
    assert_eq!(secret.permissions().mode() & 0o777, 0o600);
    assert!(dir.path().join("fs.img.tree").exists());
    if !edge_up {
        let status = wait_exit(&mut up, Duration::from_secs(20));
        let mut e = String::new();
        err.read_to_string(&mut e).unwrap();
        let left = members_of(&pids);
        assert!(left.is_empty(), "processes left behind: {left:?}");
        panic!("conclave up did not come up ({status}): {e}");
    }
    assert_eq!(names.len(), 5, "{names:?}");
    // The edge serves through its cache on the file server, signing with the key server.
    let ab = conclave()
        .args(["ab", "-n", "20", "-c", "2", "--cacert"])
        .arg(dir.path().join("certs/ca/root.crt"))
        .arg(format!("https://127.0.0.1:{base}/10k.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ab.stdout);
    assert!(
        text.contains("Failed requests:        0") && text.contains("Document Length:        10240"),
        "{text}"
    );
    signal(up.id().into(), "TERM");
    let status = wait_exit(&mut up, Duration::from_secs(20));
    assert!(status.success(), "up exited with {status}");
    let left = members_of(&pids);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for port in [base, base + 20, base + 30, base + 50, base + 70] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers"
        );
    }
}
