//! The `keel compare` report: every product's NAV and drawdown (daily, relative to the start)
//! on shared interactive charts with dated axes, then compare.csv as a table.

use crate::page::{Data, PALETTE, esc, page, series, table};
use crate::table::thousands;
use serde_json::json;
use std::fmt::Write;

/// One product's line: its label and daily NAV relative to the start (1.0).
pub struct CompareSeries {
    /// Legend label.
    pub label: String,
    /// Daily NAV, starting at 1.0.
    pub nav: Vec<f64>,
}

/// Format one cell of compare.csv for the page.
fn cell(column: &str, v: &str) -> String {
    let num = v.parse::<f64>();
    match (column, num) {
        ("return" | "ideal_return", Ok(x)) => format!("#{:+.2}%", x * 100.0),
        ("tracking_error" | "max_drawdown", Ok(x)) => format!("#{:.2}%", x * 100.0),
        ("max_leverage", Ok(x)) => format!("#{x:.3}"),
        ("cost_total" | "funding", Ok(x)) => format!("#{}", thousands(x, 0)),
        ("rebalances", Ok(x)) => format!("#{}", thousands(x, 0)),
        ("costs_by_kind", _) => v
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .filter(|(_, x)| x.parse::<f64>().map(|x| x != 0.0).unwrap_or(true))
            .map(|(k, x)| {
                format!(
                    "<span style=\"white-space:nowrap\">{}&nbsp;{}</span>",
                    esc(k),
                    x.parse::<f64>().map(|x| thousands(x, 0)).unwrap_or(esc(x))
                )
            })
            .collect::<Vec<_>>()
            .join("<br>"),
        _ => esc(v),
    }
}

/// A self-contained HTML page: NAV and drawdown curves of every product on dated axes (hover,
/// zoom), the run's `header` lines, `csv` (compare.csv) as a table, and `rerun`: what it takes
/// to run it again (the command, the files and their SHA-256).
pub fn compare_report(
    title: &str,
    header: &str,
    start: u64,
    series_: &[CompareSeries],
    csv: &[u8],
    rerun: &[String],
) -> String {
    let mut d = Data::default();
    let n = series_.iter().map(|s| s.nav.len()).max().unwrap_or(0);
    d.col("d", (0..n).map(|i| (start + i as u64 * 86_400) as f64), true);
    let mut navs = Vec::new();
    let mut dds = Vec::new();
    for (k, s) in series_.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut v = s.nav.clone();
        v.resize(n, f64::NAN);
        d.col(&format!("nav{k}"), v.iter().copied(), false);
        d.col(&format!("dd{k}"), crate::stats::drawdowns(&v), false);
        navs.push(series(&s.label, &format!("nav{k}"), color));
        dds.push(series(&s.label, &format!("dd{k}"), color));
    }
    d.chart(json!({"id": "nav", "title": "NAV per token relative to the start (daily closes)", "x": "d", "log": "auto", "height": 320,
                   "series": navs, "refs": [{"y": 1.0, "label": "start", "color": "#868e96"}]}));
    d.chart(
        json!({"id": "drawdown", "title": "Drawdown from the previous peak", "x": "d", "unit": "%", "series": dds}),
    );
    d.set("step", json!(86_400));

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = Vec::new();
    let mut r = csv::Reader::from_reader(csv);
    if let Ok(h) = r.headers() {
        head = h.iter().map(|c| c.to_string()).collect();
    }
    for rec in r.records().flatten() {
        rows.push(rec.iter().zip(&head).map(|(v, c)| cell(c, v)).collect());
    }
    let head_refs: Vec<String> = head.iter().map(|h| esc(&h.replace('_', " "))).collect();
    let head_refs: Vec<&str> = head_refs.iter().map(|s| s.as_str()).collect();

    let mut h = String::new();
    let _ = write!(h, "<h1>Compare: {}</h1>", esc(title));
    for line in header.lines() {
        let _ = write!(h, "<p class=\"sub\">{}</p>", esc(line));
    }
    h.push_str("<p class=\"muted\">Every product ran the same price path. Hover for values; drag to zoom; double-click to reset.</p>");
    h.push_str(r#"<div id="chart-nav"></div><div id="chart-drawdown"></div>"#);
    h.push_str("<h2>Results (compare.csv)</h2>");
    h.push_str(&table(&head_refs, &rows));
    if !rerun.is_empty() {
        h.push_str("<h2>Run it again</h2>");
        for line in rerun {
            let _ = write!(h, "<pre>{}</pre>", esc(line));
        }
    }
    page(&format!("keel compare — {title}"), &h, Some(&d))
}
