//! report.md: the tables the paper shows, as Markdown.

use super::tables::{self, Table};
use super::Plot;
use crate::results::RunResults;
use std::fmt::Write;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(o: &mut String, t: &Table) {
    let _ = writeln!(o, "## {}\n", t.title);
    if !t.note.is_empty() {
        let _ = writeln!(o, "{}\n", t.note);
    }
    if t.rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "| {} |",
        t.header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(o, "|{}", "---|".repeat(t.header.len()));
    for r in &t.rows {
        let _ = writeln!(
            o,
            "| {} |",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    o.push('\n');
}

/// Renders the whole report.
pub fn render(r: &RunResults, plots: &[Plot]) -> String {
    let mut o = String::new();
    let warnings = tables::warnings(r);
    for w in &warnings {
        let _ = writeln!(o, "{w}\n");
    }
    if warnings.is_empty() {
        let _ = writeln!(o, "{}\n", tables::first_line(r));
    } else {
        let _ = writeln!(o, "# conclave evaluation — run {}\n", r.run_id);
    }
    let _ = writeln!(o, "- machine: {}", r.machine.summary());
    let _ = writeln!(o, "- {}", r.nginx);
    let _ = writeln!(o, "- origin: {}", r.origin);
    let _ = writeln!(o, "- command: `{}`", r.command);
    if r.interrupted {
        let _ = writeln!(
            o,
            "- **interrupted**: only the cells finished before Ctrl-C are shown"
        );
    }
    let _ = writeln!(
        o,
        "- client and servers share this machine's cores over loopback; no SGX: each enclave is a process.\n"
    );
    for t in tables::all(r) {
        table(&mut o, &t);
    }
    if !plots.is_empty() {
        o.push_str("## Plots\n\n");
        for p in plots {
            let _ = writeln!(o, "![{}](plots/{}) ([SVG](plots/{}))\n", p.title, p.png, p.svg);
        }
    }
    o.push_str("Data: `cells.csv`, `cells.json` (with each load's percentile table).\n");
    o
}
