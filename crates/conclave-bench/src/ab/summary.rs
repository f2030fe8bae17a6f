//! ab's printed summary and its `-e` percentile CSV, from a [`LoadReport`],
//! so scripts that scrape `ab` output read ours too.

use super::{LoadReport, TimeStats};
use std::fmt::Write;

/// The text ab prints after a run, plus HDR percentiles and TLS handshake counts.
pub fn summary_text(r: &LoadReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Server Software:        {}",
        r.server_software.as_deref().unwrap_or("")
    );
    let _ = writeln!(o, "Server Hostname:        {}", r.host);
    let _ = writeln!(o, "Server Port:            {}", r.port);
    if let Some(t) = &r.tls {
        let _ = writeln!(o, "SSL/TLS Protocol:       {},{}", t.protocol, t.cipher);
        let _ = writeln!(o, "TLS Server Name:        {}", r.host);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Document Path:          {}", r.path);
    let _ = writeln!(o, "Document Length:        {} bytes", r.document_length);
    let _ = writeln!(o);
    let _ = writeln!(o, "Concurrency Level:      {}", r.concurrency);
    let _ = writeln!(o, "Time taken for tests:   {:.3} seconds", r.time_taken_s);
    let _ = writeln!(o, "Complete requests:      {}", r.complete);
    let _ = writeln!(o, "Failed requests:        {}", r.failed);
    if r.failed > 0 {
        let f = &r.failures;
        let _ = writeln!(
            o,
            "   (Connect: {}, Receive: {}, Length: {}, Exceptions: {})",
            f.connect, f.receive, f.length, f.exceptions
        );
    }
    if r.non_2xx > 0 {
        let _ = writeln!(o, "Non-2xx responses:      {}", r.non_2xx);
    }
    if r.keepalive {
        let _ = writeln!(o, "Keep-Alive requests:    {}", r.keepalive_requests);
    }
    let _ = writeln!(o, "Total transferred:      {} bytes", r.total_transferred);
    let _ = writeln!(o, "HTML transferred:       {} bytes", r.html_transferred);
    let _ = writeln!(
        o,
        "Requests per second:    {:.2} [#/sec] (mean)",
        r.requests_per_sec
    );
    let _ = writeln!(
        o,
        "Time per request:       {:.3} [ms] (mean)",
        r.time_per_request_ms
    );
    let _ = writeln!(
        o,
        "Time per request:       {:.3} [ms] (mean, across all concurrent requests)",
        r.time_per_request_all_ms
    );
    let _ = writeln!(
        o,
        "Transfer rate:          {:.2} [Kbytes/sec] received",
        r.transfer_rate_kib_s
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "Connection Times (ms)");
    let _ = writeln!(o, "              min  mean[+/-sd] median   max");
    for (name, t) in [
        ("Connect:", &r.connect),
        ("Processing:", &r.processing),
        ("Waiting:", &r.waiting),
        ("Total:", &r.total),
    ] {
        let _ = writeln!(o, "{}", time_row(name, t));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Percentage of the requests served within a certain time (ms)");
    for p in [50usize, 66, 75, 80, 90, 95, 98, 99, 100] {
        let v = r.percent_served_ms.get(p).copied().unwrap_or(0.0).round() as u64;
        if p == 100 {
            let _ = writeln!(o, " 100%  {v:>6} (longest request)");
        } else {
            let _ = writeln!(o, "  {p}%  {v:>6}");
        }
    }
    let _ = writeln!(o);
    let l = &r.latency;
    let _ = writeln!(
        o,
        "Latency (HDR, ms):      p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}",
        l.p50, l.p90, l.p99, l.p999
    );
    match &r.tls {
        Some(t) => {
            let _ = writeln!(
                o,
                "TLS handshakes:         {} full, {} resumed (TLS {} offered, resumption {})",
                t.handshakes_full,
                t.handshakes_resumed,
                t.version,
                if t.resumption { "allowed" } else { "off" }
            );
        }
        None => {
            let _ = writeln!(o, "TLS handshakes:         none (plain http)");
        }
    }
    if let Some(e) = &r.first_error {
        let _ = writeln!(o, "First failure:          {e}");
    }
    if r.cancelled {
        let _ = writeln!(o, "Run cancelled before all requests were done.");
    }
    o
}

fn time_row(name: &str, t: &TimeStats) -> String {
    format!(
        "{name:<12}{:>6} {:>4} {:>5.1} {:>6} {:>7}",
        t.min.round() as u64,
        t.mean.round() as u64,
        t.sd,
        t.median.round() as u64,
        t.max.round() as u64
    )
}

/// ab's `-e` file: `Percentage served,Time in ms`, one line per whole percent.
pub fn percent_csv(r: &LoadReport) -> String {
    let mut o = String::from("Percentage served,Time in ms\n");
    for (p, v) in r.percent_served_ms.iter().enumerate() {
        let _ = writeln!(o, "{p},{v:.3}");
    }
    o
}
