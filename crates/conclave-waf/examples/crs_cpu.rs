//! CPU per request of the OWASP CRS (Debian's `modsecurity-crs`, unmodified) in conclave-waf and
//! in libmodsecurity 3.0.9, in the same process, on the same benign requests (half GETs with a
//! query string, half small JSON POSTs, from `conclave_waf::corpus::benign_bench`):
//!
//! `cargo run --release -p conclave-waf --features modsecurity --example crs_cpu -- [PL] [REQUESTS]`
//!
//! Each engine makes passes over the requests until it has used ≥ 1 s of process CPU time
//! (`/proc/self/stat`, the machine's cores are shared, so CPU, not wall, is the number to read).
//! `CRS_CPU_CONCLAVE_ONLY=1` skips libmodsecurity (for profiling conclave alone).
//! `CRS_CPU_UNIQUE_UA=1` appends a per-check counter to every `User-Agent`, so no two checks see
//! the same value: the cost without any repetition for the verdict cache of `@detectSQLi` /
//! `@detectXSS` to use (docs/waf.md). `CRS_CPU_VERDICT_CACHE=N` sets that cache's entries per
//! thread (`0`: off; default 4096, the edge's `waf_verdict_cache`). `CRS_CPU_PASSES=N` makes N
//! passes instead of 1 s of CPU, and `CRS_CPU_SHAPE=get` (or `post`) measures that shape only:
//! a fixed amount of work, for `perf stat -e instructions:u` comparisons that the other
//! processes on a shared machine do not disturb. `CRS_CPU_RULES=GLOB` includes only the rule
//! files of `/usr/share/modsecurity-crs/rules` matching GLOB (default `*.conf`):
//! `CRS_CPU_RULES=REQUEST-901*.conf` measures the fixed per-transaction cost of the setup alone.
#[cfg(feature = "modsecurity")]
fn main() {
    bench::main();
}

#[cfg(not(feature = "modsecurity"))]
fn main() {
    eprintln!("crs_cpu needs --features modsecurity");
    std::process::exit(2);
}

#[cfg(feature = "modsecurity")]
mod bench {
    use std::cell::Cell;
    use std::path::Path;
    use std::time::Instant;

    use conclave_waf::corpus::{self, CorpusRequest};
    use conclave_waf::modsec::ModSecurity;
    use conclave_waf::{Decision, RequestContext, RequestView, Waf};

    /// Process CPU time (user + system) in seconds, from `/proc/self/stat` (10 ms ticks).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
        (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
    }

    /// The request's headers; with `unique`, the `User-Agent` gets ` n<counter>` appended
    /// (its bytes in `ua`).
    fn view<'a>(
        r: &'a CorpusRequest,
        unique: Option<&Cell<u64>>,
        ua: &'a mut Vec<u8>,
    ) -> Vec<(&'a str, &'a [u8])> {
        let Some(counter) = unique else {
            return r.header_refs();
        };
        let n = counter.get() + 1;
        counter.set(n);
        let mut out = Vec::with_capacity(r.headers.len());
        for (name, value) in &r.headers {
            if name.eq_ignore_ascii_case("user-agent") {
                ua.clear();
                ua.extend_from_slice(value);
                ua.extend_from_slice(format!(" n{n}").as_bytes());
            }
        }
        let ua: &'a [u8] = ua;
        for (name, value) in &r.headers {
            let v: &[u8] = if name.eq_ignore_ascii_case("user-agent") {
                ua
            } else {
                value
            };
            out.push((name.as_str(), v));
        }
        out
    }

    /// Runs `check` over `reqs` until 1 s of CPU; returns (CPU per request in µs, denied).
    fn measure(reqs: &[CorpusRequest], mut check: impl FnMut(&CorpusRequest) -> bool) -> (f64, usize) {
        let denied = reqs.iter().filter(|r| check(r)).count();
        let passes: Option<usize> = std::env::var("CRS_CPU_PASSES").ok().and_then(|v| v.parse().ok());
        let (c0, mut n) = (cpu_seconds(), 0usize);
        while match passes {
            Some(p) => n < p * reqs.len(),
            None => cpu_seconds() - c0 < 1.0,
        } {
            for r in reqs {
                check(r);
            }
            n += reqs.len();
        }
        ((cpu_seconds() - c0) * 1e6 / n as f64, denied)
    }

    pub fn main() {
        let mut args = std::env::args().skip(1);
        let pl: u8 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
        let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
        if let Some(v) = std::env::var_os("CRS_CPU_VERDICT_CACHE") {
            let entries: usize = v
                .to_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("CRS_CPU_VERDICT_CACHE={v:?}: not a number of entries"));
            conclave_waf::set_verdict_cache_entries(entries);
            println!("verdict cache: {entries} entries per thread");
        }
        let dir = std::env::temp_dir().join(format!("crs-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let recommended = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crs/modsecurity.conf");
        std::fs::copy(&recommended, dir.join("modsecurity.conf")).unwrap();
        let _ = std::fs::copy("/etc/nginx/unicode.mapping", dir.join("unicode.mapping"));
        let main = dir.join("main.conf");
        let rules = std::env::var("CRS_CPU_RULES").unwrap_or_else(|_| "*.conf".into());
        std::fs::write(
            &main,
            format!(
                "Include {}\nSecRuleEngine On\nSecAuditEngine Off\n\
                 Include /etc/modsecurity/crs/crs-setup.conf\n\
                 SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}\"\n\
                 Include /usr/share/modsecurity-crs/rules/{rules}\n",
                dir.join("modsecurity.conf").display()
            ),
        )
        .unwrap();

        let (t, c) = (Instant::now(), cpu_seconds());
        let waf = Waf::load(&main).unwrap_or_else(|e| panic!("conclave-waf: {e}"));
        println!(
            "conclave-waf   load: {:.3} s wall, {:.2} s CPU, {} rules",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c,
            waf.rule_count()
        );
        let (t, c) = (Instant::now(), cpu_seconds());
        let ms = ModSecurity::load(&main).unwrap_or_else(|e| panic!("libmodsecurity: {e}"));
        println!(
            "libmodsecurity load: {:.3} s wall, {:.2} s CPU",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c
        );

        let reqs = corpus::benign_bench(n, 7);
        let counter = Cell::new(0u64);
        let unique = std::env::var_os("CRS_CPU_UNIQUE_UA")
            .is_some()
            .then_some(&counter);
        if unique.is_some() {
            println!("every User-Agent unique (CRS_CPU_UNIQUE_UA)");
        }
        let ours_check = |r: &CorpusRequest| {
            let mut ua = Vec::new();
            let h = view(r, unique, &mut ua);
            let v = RequestView {
                method: &r.method,
                uri: &r.uri,
                headers: &h,
            };
            let ctx = RequestContext {
                body: &r.body,
                ..RequestContext::default()
            };
            // What the edge calls per request.
            matches!(waf.check_with(&v, &ctx), Decision::Deny { .. })
        };
        let (folded, unreachable) = waf.folded_rule_count();
        println!(
            "conclave-waf: {} of {} rules have a prefilter; {folded} folded at load, {unreachable} unreachable",
            waf.prefiltered_rule_count(),
            waf.rule_count()
        );
        // Per shape: CPU per request and rules run exactly / skipped per request (one pass).
        let gets: Vec<_> = reqs.iter().filter(|r| r.method == "GET").cloned().collect();
        let posts: Vec<_> = reqs.iter().filter(|r| r.method != "GET").cloned().collect();
        let attacks: Vec<_> = corpus::generate(n, 7)
            .into_iter()
            .filter(|r| r.class != corpus::Class::Benign)
            .collect();
        for (name, set) in [
            ("benign GET", &gets),
            ("benign JSON POST", &posts),
            ("attacks", &attacks),
        ] {
            if let Ok(only) = std::env::var("CRS_CPU_SHAPE") {
                if !name.contains(&only.to_ascii_uppercase()) {
                    continue;
                }
            }
            let a = conclave_waf::interp_stats();
            let _ = set.iter().filter(|r| ours_check(r)).count();
            let b = conclave_waf::interp_stats();
            let per = |x: u64, y: u64| (y - x) as f64 / (b.requests - a.requests).max(1) as f64;
            let (us, denied) = measure(set, ours_check);
            println!(
                "PL{pl} conclave-waf {name:17} {us:6.1} µs CPU/request; rules per request: {:5.1} run ({:4.1} of them let through by their prefilter), {:5.1} skipped, {:5.1} folded; denied {denied}/{}",
                per(a.evaluated, b.evaluated),
                per(a.passed, b.passed),
                per(a.skipped, b.skipped),
                per(a.folded, b.folded),
                set.len()
            );
        }
        if std::env::var_os("CRS_CPU_SHAPE").is_some() {
            return;
        }
        let (ours, ours_denied) = measure(&reqs, ours_check);
        if std::env::var_os("CRS_CPU_CONCLAVE_ONLY").is_some() {
            println!("PL{pl}: conclave-waf {ours:.1} µs CPU per request, denied {ours_denied}");
            return;
        }
        let (theirs, theirs_denied) = measure(&reqs, |r| {
            let mut ua = Vec::new();
            let h = view(r, unique, &mut ua);
            let v = RequestView {
                method: &r.method,
                uri: &r.uri,
                headers: &h,
            };
            ms.inspect(&v, &r.body, "127.0.0.1")
                .map(|x| x.decision.disruptive)
                .unwrap_or(false)
        });
        println!("PL{pl}, {n} benign requests (GET ?query / JSON POST), CPU per request:");
        println!("  conclave-waf   {ours:8.1} µs   denied {ours_denied}");
        println!("  libmodsecurity {theirs:8.1} µs   denied {theirs_denied}");
        println!("  libmodsecurity / conclave = {:.1}x", theirs / ours);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
