//! The self-contained HTML report.

use crate::svg::{HLine, Line, Marker, chart, date};
use keel_sim::{EventRow, SeriesRow, Summary};
use std::fmt::Write;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn markers(events: &[EventRow]) -> Vec<Marker> {
    let mut out = Vec::new();
    for e in events {
        let (color, major) = match e.kind.as_ref() {
            "rebalance" | "engage" => ("#495057", false),
            "iterate" => ("#adb5bd", false),
            "ripcord" => ("#d9480f", true),
            "liquidation" => ("#000000", true),
            _ => continue,
        };
        out.push(Marker { x: e.time as f64, color, major });
    }
    // Ripcords and liquidations last so they draw on top.
    out.sort_by_key(|m| m.major as u8);
    out
}

/// The page's head and style, shared by keel's single-run reports; the body follows.
pub(crate) fn page_head(title: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#212529;padding:0 12px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:17px;margin:28px 0 8px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{padding:3px 10px;border-bottom:1px solid #e9ecef;text-align:left;vertical-align:top}}
th{{background:#f8f9fa}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
svg.chart{{width:100%;height:auto;margin:8px 0;background:#fff;border:1px solid #e9ecef}}
.title{{font:600 13px system-ui}} .ylab{{font:11px system-ui;text-anchor:end;fill:#495057}} .xlab{{font:11px system-ui;text-anchor:middle;fill:#495057}}
.leg{{font:12px system-ui;fill:#212529}} .reflab{{font:11px system-ui}} .grid{{stroke:#f1f3f5}} .marker{{stroke-width:1.2;opacity:.8}} .tick{{stroke-width:1;opacity:.7}} .reflab{{text-anchor:end}} .ref{{stroke-dasharray:6,3;stroke-width:1.2}}
.legend span{{display:inline-block;margin-right:14px}} .sw{{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}}
</style></head><body>
"#,
        esc(title)
    )
}

/// The report of a backtest of any kind: summary, charts with event markers (the same panels
/// for every kind; the health panel shows the venue's measure), the venue's own figures, and
/// the keeper-call table.
pub fn html_report(s: &Summary, rows: &[SeriesRow], events: &[EventRow]) -> String {
    let pts = |f: fn(&SeriesRow) -> f64| rows.iter().map(|r| (r.time as f64, f(r))).collect::<Vec<_>>();
    let m = markers(events);
    let mut lev_lines = vec![
        HLine { y: s.min_leverage_ratio, label: format!("min {}", s.min_leverage_ratio), color: "#2b8a3e" },
        HLine { y: s.max_leverage_ratio, label: format!("max {}", s.max_leverage_ratio), color: "#2b8a3e" },
    ];
    if s.incentivized_leverage_ratio > 0.0 {
        lev_lines.push(HLine {
            y: s.incentivized_leverage_ratio,
            label: format!("ripcord {}", s.incentivized_leverage_ratio),
            color: "#d9480f",
        });
    }
    let lending = s.health_measure == "health factor" || s.health_measure.is_empty();
    let health_title = if lending {
        "Health factor on the lending market".to_string()
    } else {
        format!("Health on the venue: {} (account value / notional)", s.health_measure)
    };
    let health_lines =
        if lending { vec![HLine { y: 1.0, label: "liquidation".into(), color: "#000000" }] } else { vec![] };
    let mut charts = vec![
        chart(
            "Price of the underlying (USD)",
            &[
                Line { name: "market", color: "#1c7ed6", points: pts(|r| r.price), dashed: false },
                Line { name: "oracle", color: "#f08c00", points: pts(|r| r.oracle_price), dashed: true },
                Line { name: "pool", color: "#7048e8", points: pts(|r| r.pool_price), dashed: true },
            ],
            &[],
            &m,
            None,
        ),
        chart(
            "NAV per token (USD): token, ideal, holding the underlying",
            &[
                Line { name: "token", color: "#1c7ed6", points: pts(|r| r.nav), dashed: false },
                Line { name: "ideal", color: "#2b8a3e", points: pts(|r| r.ideal_nav), dashed: true },
                Line { name: "underlying", color: "#868e96", points: pts(|r| r.hold_nav), dashed: true },
            ],
            &[],
            &m,
            None,
        ),
        chart(
            "Leverage ratio with band and ripcord level",
            &[Line { name: "leverage", color: "#1c7ed6", points: pts(|r| r.leverage), dashed: false }],
            &lev_lines,
            &m,
            None,
        ),
        chart(
            &health_title,
            &[Line {
                name: if lending { "health factor" } else { "margin ratio" },
                color: "#1c7ed6",
                points: pts(|r| if r.health_factor.is_finite() { r.health_factor.min(10.0) } else { f64::NAN }),
                dashed: false,
            }],
            &health_lines,
            &m,
            Some(0.0),
        ),
        chart(
            "Costs paid so far (USD): fees, impact, gas, interest, funding, rewards, streaming and mint/redeem fees",
            &[Line { name: "costs", color: "#c92a2a", points: pts(|r| r.costs_usd), dashed: false }],
            &[],
            &m,
            Some(0.0),
        ),
        chart(
            "Gas price (gwei)",
            &[Line { name: "gas", color: "#e64980", points: pts(|r| r.gas_gwei), dashed: false }],
            &[],
            &[],
            Some(0.0),
        ),
    ];
    if !s.funding.is_empty() {
        // a perp venue: cumulative funding (paid above zero, received below), after the costs
        let zero = vec![HLine { y: 0.0, label: "0".into(), color: "#868e96" }];
        charts.insert(
            5,
            chart(
                "Funding paid so far (USD; below zero: received; the model is in the summary)",
                &[Line { name: "funding", color: "#e8590c", points: pts(|r| r.funding_usd), dashed: false }],
                &zero,
                &m,
                None,
            ),
        );
    }
    let mut h = page_head(&format!("keel backtest — {}", s.product));
    let _ = write!(
        h,
        r#"<h1>{product}: backtest</h1>
<p>{source}; {days:.1} days; {blocks} blocks of {bt} s; seed {seed}. Generated by keel.</p>
"#,
        product = esc(&s.product),
        source = esc(&s.source),
        days = s.days,
        blocks = s.blocks,
        bt = s.block_time,
        seed = s.seed
    );
    h.push_str("<h2>Summary</h2><table>");
    for line in crate::table::summary_table(s).lines() {
        let (k, v) = line.split_at(15.min(line.len()));
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k.trim()), esc(v.trim()));
    }
    h.push_str("</table>");
    h.push_str(r##"<h2>Charts</h2><p class="legend"><span><i class="sw" style="background:#495057"></i>rebalance (tick on the time axis)</span><span><i class="sw" style="background:#adb5bd"></i>TWAP iteration (tick)</span><span><i class="sw" style="background:#d9480f"></i>ripcord (line)</span><span><i class="sw" style="background:#000"></i>liquidation (line)</span></p>"##);
    for c in charts {
        h.push_str(&c);
    }
    let calls: Vec<&EventRow> = events.iter().filter(|e| e.actor != "holders").collect();
    let _ = write!(
        h,
        "<h2>Keeper calls and liquidations ({} recorded; the first 500 shown, all in events.csv)</h2>",
        calls.len()
    );
    if !s.venue.is_empty() {
        h.push_str(&format!("<h2>The venue ({})</h2><table>", esc(&s.kind)));
        for (k, v) in &s.venue {
            let _ = write!(h, r#"<tr><td>{}</td><td class="num">{:.2}</td></tr>"#, esc(&k.replace('_', " ")), v);
        }
        h.push_str("</table>");
    }
    h.push_str(r#"<table><tr><th>date</th><th>block</th><th>call</th><th>by</th><th class="num">LR before</th><th class="num">target</th><th class="num">chunk</th><th class="num">total</th><th class="num">fee $</th><th class="num">impact $</th><th class="num">gas $</th><th>error</th></tr>"#);
    for e in calls.iter().take(500) {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{:.4}</td><td class="num">{:.4}</td><td class="num">{:.4}</td><td class="num">{:.4}</td><td class="num">{:.0}</td><td class="num">{:.0}</td><td class="num">{:.0}</td><td>{}</td></tr>"#,
            date(e.time as f64),
            e.block,
            esc(&e.kind),
            esc(&e.actor),
            e.leverage_before,
            e.target,
            e.chunk,
            e.total,
            e.pool_fee_usd,
            e.impact_usd,
            e.gas_usd,
            esc(&e.error)
        );
    }
    h.push_str("</table><p>NAV and ideal NAV exclude gas and ripcord rewards, which keepers and the reward pool pay, not the token. Price impact is the trade's shortfall against the oracle beyond the pool fee.</p></body></html>\n");
    h
}
