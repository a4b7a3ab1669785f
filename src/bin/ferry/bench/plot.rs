//! `--plot FILE`: an SVG of one run over time — latency percentiles per slice (log
//! scale) above, throughput per slice below.
//!
//! A tiny SVG writer rather than a plotting library: SVG is text, two line charts need
//! only `<polyline>`, `<line>` and `<text>`, and writing them here adds no dependency
//! (the runtime list is fixed) and no Python or gnuplot the user must install. Any
//! browser shows the file.

use std::fmt::Write as _;

use super::report::{thousands, RunResult};
use super::stats::Percentiles;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 50.0;
const GAP: f64 = 60.0;

/// Which percentile a latency line shows.
type Pick = fn(&Percentiles) -> u64;

/// The SVG document for `result`.
pub fn svg(result: &RunResult) -> String {
    let slices = &result.timeline;
    let span = result.seconds.max(1e-3);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |at: f64| LEFT + at / span * plot_width;
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15">{}: {} msg/s, {} messages, lost {}</text>"#,
        escape(&result.title()),
        thousands(result.throughput),
        result.accounting.sent,
        result.accounting.lost
    );

    // Latency panel, log10 scale from the smallest to the largest value.
    let top = TOP;
    // Drawn in this order, so the lower percentiles stay visible where a slice holds
    // too few receipts to tell p99 from max.
    let series: [(&str, &str, Pick); 4] = [
        ("max", "#d62728", |p| p.max),
        ("p99", "#ff7f0e", |p| p.p99),
        ("p90", "#9467bd", |p| p.p90),
        ("p50", "#1f77b4", |p| p.p50),
    ];
    let values: Vec<f64> = slices
        .iter()
        .filter_map(|s| s.latency_us.as_ref())
        .flat_map(|p| [p.p50, p.max])
        .map(|v| (v.max(1)) as f64)
        .collect();
    let low = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let high = values.iter().copied().fold(1.0, f64::max);
    let (log_low, log_high) = (
        low.log10().floor(),
        high.log10().ceil().max(low.log10().floor() + 1.0),
    );
    let y_latency =
        |v: f64| top + PANEL - (v.max(1.0).log10() - log_low) / (log_high - log_low) * PANEL;
    axes(&mut out, top, "latency, µs (log)", span);
    let mut decade = log_low;
    while decade <= log_high {
        let value = 10f64.powf(decade);
        let y = y_latency(value);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            thousands(value)
        );
        decade += 1.0;
    }
    for (i, (name, colour, pick)) in series.iter().enumerate() {
        let points: Vec<String> = slices
            .iter()
            .filter_map(|s| {
                let p = s.latency_us.as_ref()?;
                Some(format!("{:.1},{:.1}", x(s.at_s), y_latency(pick(p) as f64)))
            })
            .collect();
        polyline(&mut out, &points, colour);
        legend(&mut out, top + 14.0 + i as f64 * 16.0, name, colour);
    }

    // Throughput panel, linear from 0.
    let top = TOP + PANEL + GAP;
    let peak = nice_ceiling(slices.iter().map(|s| s.throughput).fold(1.0, f64::max) * 1.05);
    let y_rate = |v: f64| top + PANEL - v / peak * PANEL;
    axes(&mut out, top, "throughput, msg/s", span);
    for step in 0..=4 {
        let value = peak * f64::from(step) / 4.0;
        let y = y_rate(value);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            thousands(value)
        );
    }
    let points: Vec<String> = slices
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.at_s), y_rate(s.throughput)))
        .collect();
    polyline(&mut out, &points, "#2ca02c");
    legend(&mut out, top + 14.0, "msg/s", "#2ca02c");
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the first publish</text>"#,
        LEFT + plot_width / 2.0,
        top + PANEL + 36.0
    );
    out.push_str("</svg>\n");
    out
}

/// The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `value`, so the four grid steps of
/// the throughput axis read as round numbers.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.max(1.0).log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn axes(out: &mut String, top: f64, label: &str, span: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL;
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
        top - 8.0,
        escape(label)
    );
    for step in 0..=5 {
        let at = span * f64::from(step) / 5.0;
        let x = LEFT + plot_width * f64::from(step) / 5.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{at:.2}</text>"#,
            bottom + 5.0,
            bottom + 18.0
        );
    }
}

fn polyline(out: &mut String, points: &[String], colour: &str) {
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
        points.join(" ")
    );
}

fn legend(out: &mut String, y: f64, name: &str, colour: &str) {
    let x = WIDTH - RIGHT + 12.0;
    let _ = writeln!(
        out,
        r#"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{y:.1}">{name}</text>"#,
        y - 4.0,
        x + 20.0,
        y - 4.0,
        x + 26.0
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_axis_tops() {
        assert_eq!(nice_ceiling(21_815.0), 25_000.0);
        assert_eq!(nice_ceiling(9_000.0), 10_000.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(0.5), 1.0);
    }
}
