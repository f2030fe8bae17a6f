//! Benchmark: rule-loading time and decision time per request for the seed's rule sets (0, 1, 100,
//! 10k, 100k, 1M rules), conclave-waf and (with `--features modsecurity`) libmodsecurity in-process.
//!
//! `cargo run --release -p conclave-bench --features modsecurity --bin waf-bench -- [--sizes 0,1,100]
//!  [--modsec-max 10000] [--requests 2000] [--modsec-requests N]`
//!
//! libmodsecurity checks every rule id against all earlier ones while loading (quadratic) and
//! tests rules one by one per request, so it is only run up to `--modsec-max` rules, on the first
//! `--modsec-requests` requests (same mix: every other request carries a listed string).

use std::path::Path;
use std::time::{Duration, Instant};

use conclave_waf::{rulegen, Decision, RequestView, Waf};

struct Opts {
    sizes: Vec<usize>,
    modsec_max: usize,
    requests: usize,
    modsec_requests: Option<usize>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        sizes: vec![0, 1, 100, 10_000, 100_000, 1_000_000],
        modsec_max: 10_000,
        requests: 2000,
        modsec_requests: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = val()?
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("bad size `{s}`")))
                    .collect::<Result<_, _>>()?
            }
            "--modsec-max" => o.modsec_max = val()?.parse().map_err(|_| "bad --modsec-max")?,
            "--requests" => o.requests = val()?.parse().map_err(|_| "bad --requests")?,
            "--modsec-requests" => {
                o.modsec_requests = Some(val()?.parse().map_err(|_| "bad --modsec-requests")?)
            }
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    Ok(o)
}

/// The request mix: half with a listed string (denied), half without (allowed), 1 KiB-style paths.
fn requests(n_rules: usize, seed: u64, count: usize) -> Vec<String> {
    let listed = rulegen::seed_strings(n_rules, seed);
    let other = rulegen::seed_strings(count, seed ^ 0xabcdef);
    (0..count)
        .map(|i| {
            if i % 2 == 0 && !listed.is_empty() {
                let s = &listed[(i * 7919) % listed.len()];
                format!("/1k.txt?testparam={}", std::str::from_utf8(s).unwrap())
            } else {
                format!("/1k.txt?testparam={}1", std::str::from_utf8(&other[i]).unwrap())
            }
        })
        .collect()
}

/// This process's user + system CPU time (0 if it cannot be read).
fn cpu_time() -> Duration {
    conclave_bench::cpu::self_cpu().unwrap_or_default()
}

/// Runs `pass` (returning the requests it made) until at least 1 s of CPU and of wall time went by;
/// returns "CPU per request (wall per request)". CPU time is what counts on a shared machine.
fn measure(mut pass: impl FnMut() -> usize) -> String {
    let (w0, c0) = (Instant::now(), cpu_time());
    let mut n = 0;
    loop {
        n += pass();
        let (w, c) = (w0.elapsed(), cpu_time() - c0);
        if c >= Duration::from_secs(1) && w >= Duration::from_secs(1) || w >= Duration::from_secs(120) {
            return format!("{} ({} wall)", per_request(c, n), per_request(w, n));
        }
    }
}

fn per_request(total: Duration, n: usize) -> String {
    let ns = total.as_nanos() as f64 / n.max(1) as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("waf-bench: {e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile_dir();
    println!(
        "| rules | conclave load: CPU (wall) | conclave per request: CPU (wall) | denied | \
         libmodsecurity load: CPU (wall) | libmodsecurity per request: CPU (wall) | denied |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &o.sizes {
        let main = dir.join(format!("main-{n}.conf"));
        let seed = 1;
        rulegen::write_seed_rule_set(&main, n, seed).expect("write rule set");
        let (t, c) = (Instant::now(), cpu_time());
        let waf = Waf::load(&main).expect("load");
        let (load, load_cpu) = (t.elapsed(), cpu_time() - c);
        let reqs = requests(n, seed, o.requests);
        let headers = [("Host", &b"localhost"[..]), ("User-Agent", &b"waf-bench"[..])];
        let views: Vec<RequestView> = reqs
            .iter()
            .map(|u| RequestView {
                method: "GET",
                uri: u,
                headers: &headers,
            })
            .collect();
        // Warm up (and count denials), then time passes until enough CPU time has gone by.
        let mut denied = 0;
        for v in &views {
            denied += matches!(waf.check(v), Decision::Deny { .. }) as usize;
        }
        let ours = measure(|| {
            for v in &views {
                std::hint::black_box(waf.check(v));
            }
            views.len()
        });
        let modsec_views = &views[..o.modsec_requests.unwrap_or(views.len()).min(views.len())];
        let theirs = modsec_row(&main, modsec_views, n <= o.modsec_max);
        println!(
            "| {n} | {:.2} s ({:.2} s wall) | {ours} | {denied}/{} | {theirs} |",
            load_cpu.as_secs_f64(),
            load.as_secs_f64(),
            views.len()
        );
        let _ = std::fs::remove_file(&main);
        let _ = std::fs::remove_file(main.with_file_name(format!("main-{n}-rules.conf")));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("waf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[cfg(feature = "modsecurity")]
fn modsec_row(main: &Path, views: &[RequestView], run: bool) -> String {
    if !run {
        return "not run (over --modsec-max) | – | –".into();
    }
    let (t, c) = (Instant::now(), cpu_time());
    let ms = conclave_waf::modsec::ModSecurity::load(main).expect("libmodsecurity load");
    let (load, load_cpu) = (t.elapsed(), cpu_time() - c);
    let mut denied = 0;
    for v in views {
        denied += ms.check(v).expect("transaction").disruptive as usize;
    }
    let per = measure(|| {
        for v in views {
            std::hint::black_box(ms.check(v).expect("transaction"));
        }
        views.len()
    });
    format!(
        "{:.2} s ({:.2} s wall) | {per} | {denied}/{}",
        load_cpu.as_secs_f64(),
        load.as_secs_f64(),
        views.len()
    )
}

#[cfg(not(feature = "modsecurity"))]
fn modsec_row(_: &Path, _: &[RequestView], _: bool) -> String {
    "not built (needs --features modsecurity) | – | –".into()
}
