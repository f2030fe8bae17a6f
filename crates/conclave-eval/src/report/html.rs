//! report.html: the same tables and the plots on one self-contained page.
//! A small script marks `#plot-check` with how many images loaded, so a
//! headless browser can tell the plots render.

use super::tables::{self, Table};
use super::Plot;
use crate::results::RunResults;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Turns the first-line Markdown into HTML without a Markdown engine.
fn md_inline(s: &str) -> String {
    let s = s.trim_start_matches("# ");
    let bold = s.starts_with("**") && s.ends_with("**") && s.len() > 4;
    let text = esc(s.trim_matches('*'));
    if bold {
        format!("<p class=\"warn\"><strong>{text}</strong></p>")
    } else {
        format!("<h1>{text}</h1>")
    }
}

fn table(o: &mut String, t: &Table) {
    let _ = writeln!(o, "<h2>{}</h2>", esc(&t.title));
    if !t.note.is_empty() {
        let _ = writeln!(o, "<p>{}</p>", esc(&t.note));
    }
    if t.rows.is_empty() {
        return;
    }
    o.push_str("<table><thead><tr>");
    for h in &t.header {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>\n");
    for r in &t.rows {
        o.push_str("<tr>");
        for c in r {
            let _ = write!(o, "<td>{}</td>", esc(c));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");
}

const STYLE: &str = "body{font-family:DejaVu Sans,sans-serif;margin:2em;max-width:1200px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#eee}.warn{color:#a00;font-size:1.2em}\
figure{display:inline-block;margin:0 1em 1em 0}img{border:1px solid #ccc;max-width:100%}";

const CHECK: &str = "<script>\nwindow.addEventListener('load', function () {\n\
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.plot'));\n\
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;\n\
  var el = document.getElementById('plot-check');\n\
  el.setAttribute('data-loaded', ok + '/' + imgs.length);\n\
  el.textContent = ok + ' of ' + imgs.length + ' plots rendered';\n\
});\n</script>\n";

/// Renders the page.
pub fn render(r: &RunResults, plots: &[Plot]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>conclave evaluation {}</title><style>{STYLE}</style></head><body>",
        esc(&r.run_id)
    );
    let warnings = tables::warnings(r);
    for w in &warnings {
        o.push_str(&md_inline(w));
        o.push('\n');
    }
    if warnings.is_empty() {
        o.push_str(&md_inline(&tables::first_line(r)));
        o.push('\n');
    } else {
        let _ = writeln!(o, "<h1>conclave evaluation — run {}</h1>", esc(&r.run_id));
    }
    let _ = writeln!(
        o,
        "<ul><li>machine: {}</li><li>{}</li><li>origin: {}</li><li>command: <code>{}</code></li>{}</ul>",
        esc(&r.machine.summary()),
        esc(&r.nginx),
        esc(&r.origin),
        esc(&r.command),
        if r.interrupted {
            "<li><strong>interrupted</strong>: partial results</li>"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "<p id=\"plot-check\" data-loaded=\"\"></p>");
    for t in tables::all(r) {
        table(&mut o, &t);
    }
    if !plots.is_empty() {
        o.push_str("<h2>Plots</h2>\n");
        for p in plots {
            let _ = writeln!(
                o,
                "<figure><img class=\"plot\" src=\"plots/{}\" alt=\"{}\" width=\"800\"><figcaption>{} (<a href=\"plots/{}\">PNG</a>)</figcaption></figure>",
                esc(&p.svg),
                esc(&p.title),
                esc(&p.title),
                esc(&p.png)
            );
        }
    }
    o.push_str("<p>Data: <a href=\"cells.csv\">cells.csv</a>, <a href=\"cells.json\">cells.json</a>, <a href=\"report.md\">report.md</a>.</p>\n");
    o.push_str(CHECK);
    o.push_str("</body></html>\n");
    o
}
