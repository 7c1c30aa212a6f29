//! One self-contained page: the style, the body, the data the charts are drawn from (JSON in
//! the page) and the script that draws them (`chart.js`, in the page). Opens offline.

use serde_json::{Value, json};
use std::fmt::Write;

/// The chart script, put in every page that has charts.
pub(crate) const CHART_JS: &str = include_str!("chart.js");

/// Escape text for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Ten colours that tell apart on screen and in print (Tableau 10), for series that have no
/// colour of their own.
pub(crate) const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// The data a page's charts are drawn from: named columns of numbers (or colours) and chart
/// specifications that refer to them by name.
#[derive(Default)]
pub(crate) struct Data {
    cols: String,
    charts: Vec<Value>,
    extra: serde_json::Map<String, Value>,
}

/// `v` to 7 significant digits (charts need no more, and the page stays small).
fn rounded(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    format!("{v:.6e}").parse().unwrap_or(v)
}

impl Data {
    /// A column of numbers (non-finite values become gaps). `exact` keeps every digit, for
    /// figures a reader compares with the summary.
    pub fn col(&mut self, name: &str, values: impl IntoIterator<Item = f64>, exact: bool) {
        if !self.cols.is_empty() {
            self.cols.push(',');
        }
        let _ = write!(self.cols, "\"{name}\":[");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.cols.push(',');
            }
            if v.is_finite() {
                let _ = write!(self.cols, "{}", if exact { v } else { rounded(v) });
            } else {
                self.cols.push_str("null");
            }
        }
        self.cols.push(']');
    }

    /// A column of strings (bar colours).
    pub fn str_col(&mut self, name: &str, values: &[String]) {
        if !self.cols.is_empty() {
            self.cols.push(',');
        }
        let _ = write!(self.cols, "\"{name}\":{}", json!(values));
    }

    /// A chart: `id` (the page has `<div id="chart-{id}">`), title, x column, series and options.
    pub fn chart(&mut self, spec: Value) {
        self.charts.push(spec);
    }

    /// Any other value the script reads (`marks`, `calls`, `step`).
    pub fn set(&mut self, key: &str, v: Value) {
        self.extra.insert(key.to_string(), v);
    }

    /// The data as a `<script type="application/json">` element.
    pub fn script(&self) -> String {
        let mut extra = serde_json::Map::new();
        extra.insert("charts".into(), Value::Array(self.charts.clone()));
        for (k, v) in &self.extra {
            extra.insert(k.clone(), v.clone());
        }
        let rest = Value::Object(extra).to_string();
        // `{"cols":{...},` + the rest without its opening brace
        let body = format!("{{\"cols\":{{{}}},{}", self.cols, &rest[1..]);
        format!(
            "<script type=\"application/json\" id=\"keel-data\">{}</script>\n<script>{}</script>\n",
            body.replace("</", "<\\/"),
            CHART_JS
        )
    }
}

/// A series of a line chart: its name, column, colour; optional dash and low/high band columns.
pub(crate) fn series(name: &str, col: &str, color: &str) -> Value {
    json!({ "name": name, "col": col, "color": color })
}

/// The page's head and style; `body` and then the data (if any) follow.
pub(crate) fn page(title: &str, body: &str, data: Option<&Data>) -> String {
    let mut h = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#212529;padding:0 12px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:17px;margin:30px 0 8px}} .sub{{color:#495057;margin:0 0 12px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{padding:3px 10px;border-bottom:1px solid #e9ecef;text-align:left;vertical-align:top}}
th{{background:#f8f9fa;font-weight:600}} .num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
.scroll{{overflow-x:auto;max-width:100%}} pre{{font-size:12px;background:#f8f9fa;padding:10px;overflow-x:auto}}
.cwrap{{position:relative;margin:14px 0;border:1px solid #e9ecef;background:#fff}}
.chead{{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;padding:6px 10px 0;font-size:12px}}
.ctitle{{font-weight:600;font-size:13px;margin-right:6px}} .key{{white-space:nowrap;color:#343a40}}
.sw{{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px;border-radius:2px}}
.reset{{margin-left:auto;font-size:11px}} svg.chart{{display:block;width:100%;height:auto;user-select:none}}
.grid{{stroke:#f1f3f5}} .ylab{{font:11px system-ui;text-anchor:end;fill:#495057}} .xlab{{font:11px system-ui;fill:#495057}}
.ref{{stroke-dasharray:6,3;stroke-width:1.2}} .reflab{{font:11px system-ui;text-anchor:end}} .band{{fill-opacity:.25;stroke-opacity:.55;stroke-width:.8}}
.mark{{stroke-width:1.2;opacity:.75}} .m-rebalance,.m-engage{{stroke:#495057}} .m-iterate{{stroke:#adb5bd}} .m-ripcord{{stroke:#d9480f}} .m-liquidation{{stroke:#000}} .m-close{{stroke:#862e9c}}
span.m-ripcord{{color:#d9480f}} span.m-liquidation,span.m-close{{color:#000;font-weight:600}}
.cross{{stroke:#868e96;stroke-width:1;stroke-dasharray:3,3}} .sel{{fill:#339af0;opacity:.15}} .overlay{{fill:transparent;cursor:crosshair}}
.tip{{position:absolute;display:none;pointer-events:none;background:rgba(255,255,255,.96);border:1px solid #ced4da;border-radius:4px;padding:6px 8px;font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.12);white-space:nowrap;z-index:2}}
.rng{{color:#868e96}} .legend span{{display:inline-block;margin-right:14px}} .zoominfo{{color:#1971c2;font-size:12px}}
.pos{{background:#d3f9d8}} .neg{{background:#ffe3e3}} .major td{{background:#fff4e6}} .muted{{color:#868e96}}
details summary{{cursor:pointer;color:#1971c2}}
</style></head><body>
"#,
        esc(title)
    );
    h.push_str(body);
    if let Some(d) = data {
        h.push_str(&d.script());
    }
    h.push_str("</body></html>\n");
    h
}

/// An HTML table from a header and rows of already-escaped cells; cells starting with `#`
/// are right-aligned numbers (the `#` dropped).
pub(crate) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<div class=\"scroll\"><table><tr>");
    for c in head {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            match c.strip_prefix('#') {
                Some(n) => {
                    let _ = write!(h, "<td class=\"num\">{n}</td>");
                }
                None => {
                    let _ = write!(h, "<td>{c}</td>");
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");
    h
}
