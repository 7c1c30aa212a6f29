//! The sweep report: heatmaps for two-parameter grids, line charts for one, and each point's
//! distribution of final NAV against the ideal token.

use keel_sim::sweep::{PointResult, PointStats};
use std::fmt::Write;

use crate::page::esc;

/// The metrics drawn: a label, the figure, a formatter, and whether higher is better.
type Metric = (&'static str, fn(&PointStats) -> f64, fn(f64) -> String, bool);

const METRICS: &[Metric] = &[
    ("final NAV vs ideal (mean)", |s| s.nav_vs_ideal.mean, |v| format!("{:+.1}%", v * 100.0), true),
    ("rebalances per path", |s| s.mean_rebalances, |v| crate::table::thousands(v, 0), false),
    ("tracking error", |s| s.tracking_error, |v| format!("{:.1}%", v * 100.0), false),
    ("chance of a ripcord", |s| s.p_ripcord, |v| format!("{:.0}%", v * 100.0), false),
    ("chance of a liquidation", |s| s.p_liquidation, |v| format!("{:.0}%", v * 100.0), false),
    ("mean cost (USD)", |s| s.mean_total_cost, |v| crate::table::thousands(v, 0), false),
    ("delever speed (points/min)", |s| s.delever_speed, |v| format!("{v:.4}"), true),
];

/// The colour of a cell by how good it is among the chart's cells, `0` the worst and `1` the
/// best: orange (worse) → white → blue (better), the same way round in every chart.
fn color(good: f64) -> String {
    let t = good.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let u = t / 0.5;
        (232.0 + 23.0 * u, 89.0 + 166.0 * u, 12.0 + 243.0 * u)
    } else {
        let u = (t - 0.5) / 0.5;
        (255.0 - 230.0 * u, 255.0 - 142.0 * u, 255.0 - 61.0 * u)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

#[allow(clippy::too_many_arguments)]
fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    cell: &dyn Fn(usize, usize) -> Option<f64>,
    fmt: fn(f64) -> String,
    higher_is_better: bool,
    ykey: &str,
    xkey: &str,
) -> String {
    let (cw, ch, left, top) = (90.0, 34.0, 120.0, 40.0);
    let w = left + cw * cols.len() as f64 + 20.0;
    let h = top + ch * rows.len() as f64 + 40.0;
    let vals: Vec<f64> = (0..rows.len()).flat_map(|r| (0..cols.len()).filter_map(move |c| cell(r, c))).collect();
    let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" class="heat"><text x="4" y="16" class="title">{}</text>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="xlab">{}</text>"#,
        left + cw * cols.len() as f64 / 2.0,
        h - 8.0,
        esc(xkey)
    );
    let _ = write!(s, r#"<text x="4" y="{}" class="klab">{}</text>"#, top - 6.0, esc(ykey));
    for (c, name) in cols.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="xlab">{}</text>"#,
            left + cw * c as f64 + cw / 2.0,
            top + ch * rows.len() as f64 + 16.0,
            esc(name)
        );
    }
    for (r, name) in rows.iter().enumerate() {
        let y = top + ch * r as f64;
        let _ =
            write!(s, r#"<text x="{:.1}" y="{:.1}" class="ylab">{}</text>"#, left - 6.0, y + ch / 2.0 + 4.0, esc(name));
        for (c, col) in cols.iter().enumerate() {
            let x = left + cw * c as f64;
            match cell(r, c) {
                Some(v) => {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    let good = if higher_is_better { t } else { 1.0 - t };
                    let _ = write!(
                        s,
                        r##"<rect x="{x:.1}" y="{y:.1}" width="{cw}" height="{ch}" fill="{}" stroke="#fff" data-tip="{}"/><text x="{:.1}" y="{:.1}" class="cell">{}</text>"##,
                        color(good),
                        esc(&format!("{title}: {} with {ykey} = {name}, {xkey} = {col}", fmt(v))),
                        x + cw / 2.0,
                        y + ch / 2.0 + 4.0,
                        fmt(v)
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        r##"<rect x="{x:.1}" y="{y:.1}" width="{cw}" height="{ch}" fill="#eee" stroke="#fff"/><text x="{:.1}" y="{:.1}" class="cell">invalid</text>"##,
                        x + cw / 2.0,
                        y + ch / 2.0 + 4.0
                    );
                }
            }
        }
    }
    s.push_str("</svg>");
    s
}

fn line(title: &str, xs: &[(String, Option<f64>)], fmt: fn(f64) -> String, key: &str) -> String {
    let (w, h, left, right, top, bottom) = (460.0, 220.0, 60.0, 20.0, 30.0, 40.0);
    let vals: Vec<f64> = xs.iter().filter_map(|(_, v)| *v).collect();
    if vals.is_empty() {
        return String::new();
    }
    let (mut lo, mut hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let n = xs.len().max(2) as f64 - 1.0;
    let sx = |i: usize| left + (w - left - right) * i as f64 / n;
    let sy = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="line"><text x="4" y="16" class="title">{}</text>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="4" y="{:.1}" class="klab">{}</text><text x="4" y="{:.1}" class="klab">{}</text>"#,
        top + 10.0,
        fmt(hi),
        h - bottom,
        fmt(lo)
    );
    let mut d = String::new();
    for (i, (label, v)) in xs.iter().enumerate() {
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" class="xlab">{}</text>"#, sx(i), h - bottom + 16.0, esc(label));
        if let Some(v) = v {
            let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, sx(i), sy(*v));
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#1c7ed6" data-tip="{}"/>"##,
                sx(i),
                sy(*v),
                esc(&format!("{title}: {} with {key} = {label}", fmt(*v)))
            );
        }
    }
    let _ = write!(
        s,
        r##"<path d="{d}" fill="none" stroke="#1c7ed6" stroke-width="1.6"/><text x="{:.1}" y="{:.1}" class="xlab">{}</text></svg>"##,
        w / 2.0,
        h - 4.0,
        esc(key)
    );
    s
}

/// The sweep report as one self-contained HTML page; `context` says what ran (market, block
/// time, horizon, seed, costs, keel's version) so the page can be re-run from itself.
pub fn sweep_report(title: &str, context: &[String], keys: &[String], results: &[PointResult]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<style>
svg.heat,svg.line{{margin:6px 8px 6px 0;background:#fff;border:1px solid #e9ecef}} svg.heat{{max-width:100%}} svg.line{{width:460px}}
.title{{font:600 13px system-ui}} .klab{{font:11px system-ui;text-anchor:start;fill:#495057}} .cell{{font:11px system-ui;text-anchor:middle;fill:#212529;pointer-events:none}}
svg.heat .xlab,svg.line .xlab{{text-anchor:middle}} .bar{{fill:#a5d8ff}} .med{{stroke:#1c7ed6;stroke-width:2;pointer-events:none}} [data-tip]:hover{{stroke:#212529;stroke-width:1.5}}
#points td,#points th{{text-align:right}} #points td:first-child,#points th:first-child{{text-align:left}}
</style><h1>Sweep: {t}</h1>"#,
        t = esc(title)
    );
    for line in context {
        let _ = write!(h, "<p class=\"sub\">{}</p>", esc(line));
    }
    h.push_str("<p class=\"muted\">Every grid point ran the same paths (common random numbers). In every chart blue is better and orange worse, relative to the other points; hover a cell for its settings and value.</p>");
    let axis = |k: usize| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in results {
            let x = &p.settings[k].1;
            if !v.contains(x) {
                v.push(x.clone());
            }
        }
        v
    };
    let find =
        |vals: &[&str]| results.iter().find(|p| p.settings.iter().map(|(_, v)| v.as_str()).eq(vals.iter().copied()));
    match keys.len() {
        2 => {
            let (rows, cols) = (axis(0), axis(1));
            h.push_str("<h2>Heatmaps</h2>");
            for (name, f, fmt, better) in METRICS {
                let cell = |r: usize, c: usize| find(&[&rows[r], &cols[c]]).and_then(|p| p.stats.as_ref()).map(f);
                h.push_str(&heatmap(name, &rows, &cols, &cell, *fmt, *better, &keys[0], &keys[1]));
            }
        }
        1 => {
            let xs = axis(0);
            h.push_str("<h2>Against the parameter</h2>");
            for (name, f, fmt, _) in METRICS {
                let pts: Vec<(String, Option<f64>)> =
                    xs.iter().map(|x| (x.clone(), find(&[x]).and_then(|p| p.stats.as_ref()).map(f))).collect();
                h.push_str(&line(name, &pts, *fmt, &keys[0]));
            }
        }
        _ => {}
    }
    // Per-point distributions: 5%–95% bar with the median, final NAV against the ideal.
    let valid: Vec<&PointResult> = results.iter().filter(|p| p.stats.is_some()).collect();
    if !valid.is_empty() {
        let (lo, hi) = valid
            .iter()
            .filter_map(|p| p.stats.as_ref())
            .fold((f64::MAX, f64::MIN), |(a, b), s| (a.min(s.nav_vs_ideal.p5), b.max(s.nav_vs_ideal.p95)));
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.01, hi + 0.01) };
        let (w, left, row) = (900.0, 220.0, 20.0);
        let hgt = 30.0 + row * valid.len() as f64 + 20.0;
        let sx = |v: f64| left + (w - left - 190.0) * (v - lo) / (hi - lo);
        h.push_str("<h2>Distribution of final NAV against the ideal token (5%, median, 95%)</h2>");
        let _ = write!(
            h,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{hgt}" viewBox="0 0 {w} {hgt}" class="heat">"#
        );
        let _ = write!(
            h,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="20" y2="{1:.1}" stroke="#adb5bd"/><text x="{0:.1}" y="14" class="xlab">0%</text>"##,
            sx(0.0).clamp(left, w - 190.0),
            hgt - 20.0
        );
        for (i, p) in valid.iter().enumerate() {
            let s = p.stats.as_ref().expect("valid");
            let y = 30.0 + row * i as f64;
            let label = p.settings.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" / ");
            let d = &s.nav_vs_ideal;
            let _ = write!(
                h,
                r#"<text x="{:.1}" y="{:.1}" class="ylab">{}</text><rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="12" data-tip="{}"/><line class="med" x1="{m:.1}" x2="{m:.1}" y1="{:.1}" y2="{:.1}"/><text x="{:.1}" y="{:.1}" class="klab">{:+.1}% [{:+.1}%, {:+.1}%]</text>"#,
                left - 6.0,
                y + 10.0,
                esc(&label),
                sx(d.p5),
                y,
                (sx(d.p95) - sx(d.p5)).max(1.0),
                esc(&format!(
                    "{label}: final NAV vs ideal median {:+.2}%, 5% {:+.2}%, 95% {:+.2}%, mean {:+.2}%",
                    d.median * 100.0,
                    d.p5 * 100.0,
                    d.p95 * 100.0,
                    d.mean * 100.0
                )),
                y - 1.0,
                y + 13.0,
                w - 180.0,
                y + 10.0,
                d.median * 100.0,
                d.p5 * 100.0,
                d.p95 * 100.0,
                m = sx(d.median)
            );
        }
        h.push_str("</svg>");
    }
    h.push_str("<h2>All points</h2><div class=\"scroll\"><table id=\"points\"><tr><th>settings</th><th>vs ideal</th><th>p5</th><th>p95</th><th>track. err.</th><th>ripcord</th><th>liquidation</th><th>rebalances</th><th>cost $</th><th>VaR 1d 99%</th><th>ES</th><th>delever pts/min</th><th>longest delever, min</th><th>lowest HF</th><th>ripcord saved</th></tr>");
    for p in results {
        let label = p.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("<br>");
        match (&p.stats, &p.invalid) {
            (Some(s), _) => {
                let _ = write!(
                    h,
                    "<tr><td>{label}</td><td>{:+.2}%</td><td>{:+.2}%</td><td>{:+.2}%</td><td>{:.1}%</td><td>{:.0}%</td><td>{:.0}%</td><td>{:.0}</td><td>{}</td><td>{:.2}%</td><td>{:.2}%</td><td>{:.4}</td><td>{:.0}</td><td>{:.3}</td><td>{:.0}%</td></tr>",
                    s.nav_vs_ideal.mean * 100.0,
                    s.nav_vs_ideal.p5 * 100.0,
                    s.nav_vs_ideal.p95 * 100.0,
                    s.tracking_error * 100.0,
                    s.p_ripcord * 100.0,
                    s.p_liquidation * 100.0,
                    s.mean_rebalances,
                    crate::table::thousands(s.mean_total_cost, 0),
                    s.var_1d_99 * 100.0,
                    s.es_1d_99 * 100.0,
                    s.delever_speed,
                    s.delever_minutes,
                    s.min_health_factor,
                    s.p_saved_by_ripcord * 100.0
                );
            }
            (None, Some(why)) => {
                let _ = write!(
                    h,
                    r#"<tr><td>{label}</td><td colspan="14" style="text-align:left">skipped: {}</td></tr>"#,
                    esc(why)
                );
            }
            _ => {}
        }
    }
    h.push_str("</table></div>");
    crate::page::page(&format!("keel sweep — {title}"), &h, Some(&crate::page::Data::default()))
}
