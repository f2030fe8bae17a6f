//! Loads a rule file and prints how long it took: `cargo run --release -p conclave-waf --example
//! load_rules -- main.conf` (run under `/usr/bin/time` for CPU time and memory).
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load_rules MAIN.conf");
        std::process::exit(2);
    };
    let t = std::time::Instant::now();
    match conclave_waf::Waf::load(&path) {
        Ok(waf) => {
            println!(
                "loaded {} rules in {:.3} s",
                waf.rule_count(),
                t.elapsed().as_secs_f64()
            );
            // Leave the drop out of the measurement's story: it happens at exit.
            std::mem::forget(waf);
        }
        Err(e) => {
            eprintln!("load_rules: {e}");
            std::process::exit(1);
        }
    }
}
