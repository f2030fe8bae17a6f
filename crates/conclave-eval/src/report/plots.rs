//! PNG and SVG plots with plotters (pure Rust: ab_glyph text with the
//! system's DejaVu Sans, from Debian's fonts-dejavu-core): throughput vs
//! workers per configuration, the latency distribution per configuration,
//! and multi-tenant total throughput.

use super::{tables, Plot};
use crate::results::RunResults;
use crate::results::Tenant;
use crate::EvalError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// The font every plot uses (Debian package fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), EvalError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e} (install the Debian package fonts-dejavu-core)"))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT}: not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| EvalError::Plot(format!("font: {e}")))
}

/// A line chart: named series of (x, y) points.
struct LineChart {
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &LineChart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let pts = c.series.iter().flat_map(|(_, p)| p.iter());
    let (mut xmax, mut ymax) = (0f64, 0f64);
    let mut xmin = f64::MAX;
    for &(x, y) in pts {
        xmax = xmax.max(x);
        xmin = xmin.min(x);
        ymax = ymax.max(y);
    }
    if xmin == f64::MAX {
        xmin = 0.0;
    }
    let xmin = if xmin > 0.0 && xmin <= 1.0 {
        0.0
    } else {
        xmin.min(0.0)
    };
    let xmax = if xmax <= xmin { xmin + 1.0 } else { xmax * 1.05 };
    let ymax = if ymax <= 0.0 { 1.0 } else { ymax * 1.15 };
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax, 0f64..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(((xmax - xmin).ceil() as usize + 1).clamp(2, 11))
        .x_label_formatter(&|x| format!("{x}"))
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    for (i, (name, points)) in c.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(e)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if points.len() <= 12 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

fn save(dir: &Path, stem: &str, c: &LineChart) -> Result<Plot, EvalError> {
    let png = format!("{stem}.png");
    let svg = format!("{stem}.svg");
    let size = (900, 540);
    let p = dir.join(&png);
    draw(BitMapBackend::new(&p, size).into_drawing_area(), c)
        .map_err(|e| EvalError::Plot(format!("{png}: {e}")))?;
    let s = dir.join(&svg);
    draw(SVGBackend::new(&s, size).into_drawing_area(), c)
        .map_err(|e| EvalError::Plot(format!("{svg}: {e}")))?;
    Ok(Plot {
        title: c.title.clone(),
        png,
        svg,
    })
}

fn stem(file: &str) -> String {
    file.split('.')
        .next()
        .unwrap_or(file)
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

/// Draws every plot the results allow; returns them in report order.
pub fn draw_all(dir: &Path, r: &RunResults) -> Result<Vec<Plot>, EvalError> {
    let files = tables::files(r);
    let presets = tables::presets(r);
    if files.is_empty() && !r.cells.iter().any(|c| c.tenant == Tenant::Total) {
        return Ok(Vec::new());
    }
    register_font()?;
    let mut out = Vec::new();
    for file in &files {
        let series = presets
            .iter()
            .map(|p| {
                let pts = tables::workers(r, p)
                    .into_iter()
                    .filter_map(|w| tables::cell(r, p, w, file).map(|c| (w as f64, c.requests_per_sec)))
                    .collect::<Vec<_>>();
                (p.clone(), pts)
            })
            .filter(|(_, pts)| !pts.is_empty())
            .collect::<Vec<_>>();
        if !series.is_empty() {
            let c = LineChart {
                title: format!("Throughput vs workers, {file}"),
                x_desc: "edge worker processes",
                y_desc: "requests/s",
                series,
            };
            out.push(save(dir, &format!("throughput-{}", stem(file)), &c)?);
        }
    }
    for file in &files {
        let series = presets
            .iter()
            .filter_map(|p| {
                let w = *tables::workers(r, p).last()?;
                let c = tables::cell(r, p, w, file)?;
                if c.percent_served_ms.len() != 101 {
                    return None;
                }
                let pts = c
                    .percent_served_ms
                    .iter()
                    .enumerate()
                    .map(|(i, &ms)| (i as f64, ms))
                    .collect();
                Some((format!("{p} ({w} workers)"), pts))
            })
            .collect::<Vec<_>>();
        if !series.is_empty() {
            let c = LineChart {
                title: format!("Latency distribution, {file}"),
                x_desc: "% of requests served within",
                y_desc: "ms",
                series,
            };
            out.push(save(dir, &format!("latency-{}", stem(file)), &c)?);
        }
    }
    let totals: Vec<_> = r.cells.iter().filter(|c| c.tenant == Tenant::Total).collect();
    if !totals.is_empty() {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for t in totals {
            let name = format!("{} {}", t.preset, t.tenancy);
            let pt = (t.tenants as f64, t.requests_per_sec);
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push(pt),
                None => series.push((name, vec![pt])),
            }
        }
        for (_, pts) in &mut series {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let c = LineChart {
            title: "Multi-tenant total throughput".into(),
            x_desc: "tenants",
            y_desc: "requests/s (all tenants)",
            series,
        };
        out.push(save(dir, "tenants", &c)?);
    }
    Ok(out)
}
