//! The `keel compare` report: every product's NAV (per token, relative to the start) on one
//! chart, daily, with the table beside it.

use std::fmt::Write;

use crate::html::esc;

const COLORS: [&str; 8] = ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f59f00", "#0ca678", "#e03131", "#495057"];

/// One product's line: its label and daily NAV relative to the start (1.0).
pub struct CompareSeries {
    /// Legend label.
    pub label: String,
    /// Daily NAV, starting at 1.0.
    pub nav: Vec<f64>,
}

/// A self-contained HTML page: NAV curves overlaid on a log scale, then `table` (preformatted text).
pub fn compare_report(title: &str, series: &[CompareSeries], table: &str) -> String {
    let (w, h, left, right, top, bottom) = (960.0, 420.0, 70.0, 20.0, 20.0, 40.0);
    let n = series.iter().map(|s| s.nav.len()).max().unwrap_or(0).max(2);
    let vals = series.iter().flat_map(|s| s.nav.iter().copied()).filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo < hi { (lo.ln(), hi.ln()) } else { (-0.1, 0.1) };
    let sx = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let sy = |v: f64| top + (h - top - bottom) * (1.0 - (v.max(1e-9).ln() - lo) / (hi - lo));
    let mut svg = String::new();
    let _ = write!(svg, r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"##);
    for k in 0..=4 {
        let v = (lo + (hi - lo) * k as f64 / 4.0).exp();
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e9ecef"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#495057">{}</text>"##,
            w - right,
            left - 6.0,
            y + 4.0,
            if v >= 0.01 { format!("{v:.2}") } else { format!("{v:.1e}") }
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#495057">days</text>"##,
        w / 2.0,
        h - 8.0
    );
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let mut d = String::new();
        for (i, v) in s.nav.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, sx(i), sy(*v));
        }
        let _ = write!(svg, r##"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.6"/>"##);
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{c}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#212529">{}</text>"##,
            left + 12.0,
            top + 10.0 + 16.0 * k as f64,
            left + 30.0,
            top + 15.0 + 16.0 * k as f64,
            esc(&s.label)
        );
    }
    svg.push_str("</svg>");
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>keel compare — {t}</title><style>body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#212529;padding:0 12px}} svg{{border:1px solid #e9ecef}} pre{{font-size:12px;background:#f8f9fa;padding:10px;overflow-x:auto}}</style></head><body><h1>Compare: {t}</h1><p>NAV per token relative to the start, daily, log scale. Every product ran the same price path.</p>{svg}<pre>{tab}</pre></body></html>
"#,
        t = esc(title),
        tab = esc(table)
    )
}
