//! Minimal SVG line charts: lines, horizontal reference lines, event markers, date axis.

use std::fmt::Write;

/// A line to draw.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A marker at a time: a full-height line (`major`) or a short tick on the time axis.
pub struct Marker {
    pub x: f64,
    pub color: &'static str,
    pub major: bool,
}

/// A horizontal reference line.
pub struct HLine {
    pub y: f64,
    pub label: String,
    pub color: &'static str,
}

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

/// `YYYY-MM-DD` of a unix time.
pub fn date(t: f64) -> String {
    let (y, m, d) = civil((t / 86_400.0).floor() as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

fn fmt_y(v: f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { v };
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A chart as an SVG element.
pub fn chart(title: &str, lines: &[Line], hlines: &[HLine], markers: &[Marker], y_floor: Option<f64>) -> String {
    let (w, h) = (1000.0, 280.0);
    let (l, r, t, b) = (70.0, 150.0, 30.0, 30.0);
    let pts = lines.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    for hl in hlines {
        y0 = y0.min(hl.y);
        y1 = y1.max(hl.y);
    }
    if let Some(f) = y_floor {
        y0 = y0.max(f);
    }
    if x0 > x1 {
        return format!("<p>{title}: no data</p>");
    }
    // A series spanning more than 20× reads better on a log scale.
    let log = y0 > 0.0 && y1 / y0 > 20.0;
    if log {
        return chart_log(title, lines, hlines, markers);
    }
    if y1 - y0 < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let sx = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let sy = |y: f64| t + (1.0 - (y.clamp(y0, y1) - y0) / (y1 - y0)) * (h - t - b);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="{title}">"#
    );
    let _ = write!(s, r##"<text x="{l}" y="18" class="title">{title}</text>"##);
    for yv in nice_ticks(y0, y1, 5) {
        let y = sy(yv);
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="ylab">{}</text>"##,
            w - r,
            l - 6.0,
            y + 4.0,
            fmt_y(yv)
        );
    }
    let span_days = (x1 - x0) / 86_400.0;
    let step = if span_days > 1500.0 {
        365.0
    } else if span_days > 400.0 {
        91.0
    } else if span_days > 90.0 {
        30.5
    } else if span_days > 20.0 {
        7.0
    } else {
        1.0
    } * 86_400.0;
    let mut xv = (x0 / step).ceil() * step;
    while xv <= x1 {
        let x = sx(xv);
        let label = if step >= 30.0 * 86_400.0 { date(xv)[..7].to_string() } else { date(xv)[5..].to_string() };
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{t}" y2="{}" class="grid"/><text x="{x:.1}" y="{}" class="xlab">{label}</text>"##,
            h - b,
            h - b + 16.0
        );
        xv += step;
    }
    for m in markers {
        let x = sx(m.x);
        let top = if m.major { t } else { h - b - 8.0 };
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="{}" class="{}"/>"##,
            h - b,
            m.color,
            if m.major { "marker" } else { "tick" }
        );
    }
    for hl in hlines {
        let y = sy(hl.y);
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{}" class="ref"/><text x="{}" y="{:.1}" class="reflab" fill="{}">{}</text>"##,
            w - r,
            hl.color,
            w - r - 4.0,
            y - 3.0,
            hl.color,
            hl.label
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let mut d = String::new();
        let mut pen = false;
        for &(x, y) in &line.points {
            if !y.is_finite() {
                pen = false;
                continue;
            }
            let _ = write!(d, "{}{:.1},{:.1}", if pen { " L" } else { " M" }, sx(x), sy(y));
            pen = true;
        }
        let dash = if line.dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = write!(s, r##"<path d="{d}" fill="none" stroke="{}" stroke-width="1.4"{dash}/>"##, line.color);
        let ly = t + 14.0 + 16.0 * i as f64;
        let _ = write!(
            s,
            r##"<rect x="{}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{}" y="{:.1}" class="leg">{}</text>"##,
            w - r + 8.0,
            ly - 4.0,
            line.color,
            w - r + 24.0,
            ly,
            line.name
        );
    }
    s.push_str("</svg>");
    s
}

/// The same chart with a logarithmic y axis.
fn chart_log(title: &str, lines: &[Line], hlines: &[HLine], markers: &[Marker]) -> String {
    fn logged<'a>(l: &Line<'a>) -> Line<'a> {
        Line {
            name: l.name,
            color: l.color,
            points: l.points.iter().map(|&(x, y)| (x, if y > 0.0 { y.log10() } else { f64::NAN })).collect(),
            dashed: l.dashed,
        }
    }
    let lines: Vec<Line> = lines.iter().map(logged).collect();
    let hl: Vec<HLine> = hlines
        .iter()
        .filter(|h| h.y > 0.0)
        .map(|h| HLine { y: h.y.log10(), label: h.label.clone(), color: h.color })
        .collect();
    // The inner chart labels log10 values; relabel them as prices.
    relabel_log(&chart(&format!("{title} (log scale)"), &lines, &hl, markers, None))
}

/// Replace y labels `k` (log10 values) with `10^k` written out.
fn relabel_log(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(i) = rest.find(r#"class="ylab">"#) {
        let start = i + r#"class="ylab">"#.len();
        out.push_str(&rest[..start]);
        let end = rest[start..].find('<').map(|e| start + e).unwrap_or(rest.len());
        let label = &rest[start..end];
        let v: Option<f64> = label.parse().ok();
        match v {
            Some(k) => out.push_str(&fmt_y(10f64.powf(k))),
            None => out.push_str(label),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ticks() {
        assert_eq!(date(1_584_007_200.0), "2020-03-12");
        assert_eq!(date(0.0), "1970-01-01");
        assert_eq!(nice_ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn chart_is_svg() {
        let c = chart(
            "t",
            &[Line { name: "a", color: "#000", points: vec![(0.0, 1.0), (86_400.0, 2.0)], dashed: false }],
            &[HLine { y: 1.5, label: "mid".into(), color: "#f00" }],
            &[Marker { x: 43_200.0, color: "#00f", major: true }],
            None,
        );
        assert!(c.starts_with("<svg") && c.ends_with("</svg>") && c.contains("mid"));
    }
}
