//! The backtest report: one self-contained page with the statistics a quant reads first, the
//! costs and who pays them, interactive charts (tooltips, zoom) that keep every extreme, the
//! monthly returns, every ripcord, liquidation and failure, the routine calls (paged), the
//! venue's own figures, and what it takes to run it again.

use crate::dates::{date, date_time};
use crate::page::{Data, esc, page, series, table};
use crate::stats::{self, COST_NAMES, PAYERS, ReturnStats};
use crate::table::{thousands, usd};
use crate::{CALLS_IN_PAGE, ReportRows};
use keel_sim::{EventRow, SeriesRow, Summary};
use serde_json::{Value, json};
use std::fmt::Write;

fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:+.2}%", x * 100.0) } else { "–".into() }
}

fn ratio(x: f64) -> String {
    if x.is_finite() { format!("{x:.2}") } else { "–".into() }
}

/// The key-statistics table: token, ideal token, holding the underlying.
fn key_stats(s: &Summary, days: &[stats::DayClose]) -> String {
    let t: Vec<u64> = days.iter().map(|d| d.time).collect();
    let of = |f: fn(&stats::DayClose) -> f64| stats::return_stats(&t, &days.iter().map(f).collect::<Vec<_>>());
    let cols: [ReturnStats; 3] = [of(|d| d.nav), of(|d| d.ideal), of(|d| d.hold)];
    let dd_len = |r: &ReturnStats| {
        if r.max_drawdown == 0.0 {
            "–".to_string()
        } else {
            format!("{:.0} days{}", r.max_drawdown_days, if r.recovered { "" } else { " (not recovered)" })
        }
    };
    type Row = (&'static str, fn(&ReturnStats) -> String);
    let rows: [Row; 10] = [
        ("total return", |r| pct(r.total_return)),
        ("CAGR", |r| pct(r.cagr)),
        ("volatility (daily, annualised)", |r| format!("{:.1}%", r.volatility * 100.0)),
        ("Sharpe (risk-free 0)", |r| ratio(r.sharpe)),
        ("Sortino", |r| ratio(r.sortino)),
        ("max drawdown", |r| pct(r.max_drawdown)),
        ("max drawdown's length", |_| String::new()),
        ("Calmar (CAGR / max drawdown)", |r| ratio(r.calmar)),
        ("best day", |r| pct(r.best_day)),
        ("worst day", |r| pct(r.worst_day)),
    ];
    let mut out = Vec::new();
    for (name, f) in rows {
        let mut r = vec![esc(name)];
        for c in &cols {
            r.push(format!("#{}", if name == "max drawdown's length" { dd_len(c) } else { f(c) }));
        }
        out.push(r);
    }
    out.push(vec![
        "tracking error against the ideal (daily, annualised)".into(),
        format!("#{:.2}%", s.tracking_error * 100.0),
        "#".into(),
        "#".into(),
    ]);
    table(&["", "token", "ideal token (every block, no costs)", "holding the underlying"], &out)
}

/// Costs by kind in USD and in basis points a year of the average TVL, and who pays them.
fn costs_table(s: &Summary, days: &[stats::DayClose]) -> String {
    let avg = stats::average_tvl(days);
    let years = s.days / 365.0;
    let mut rows = Vec::new();
    let mut by_payer: Vec<(&str, f64)> = Vec::new();
    for ((name, payer), v) in COST_NAMES.iter().zip(PAYERS).zip(s.costs_usd.values()) {
        if v == 0.0 {
            continue;
        }
        rows.push(vec![
            esc(name),
            format!("#{}", usd(v)),
            format!("#{}", thousands(stats::bps_a_year(v, avg, years), 1)),
            esc(payer),
        ]);
        let who = payer.split(" (").next().unwrap_or(payer).split(',').next().unwrap_or(payer);
        match by_payer.iter_mut().find(|(p, _)| *p == who) {
            Some(e) => e.1 += v,
            None => by_payer.push((who, v)),
        }
    }
    let total: f64 = s.costs_usd.values().iter().sum();
    rows.push(vec![
        "<b>total</b>".into(),
        format!("#<b>{}</b>", usd(total)),
        format!("#<b>{}</b>", thousands(stats::bps_a_year(total, avg, years), 1)),
        String::new(),
    ]);
    let mut h = format!(
        "<p>Average TVL {} over {:.1} days. A cost of 100 bp a year takes 1% of the TVL each year.</p>",
        usd(avg),
        s.days
    );
    h.push_str(&table(&["cost", "USD", "bp a year of average TVL", "paid by"], &rows));
    h.push_str("<p>");
    for (i, (who, v)) in by_payer.iter().enumerate() {
        let _ = write!(
            h,
            "{}{}: <b>{}</b> ({} bp a year)",
            if i > 0 { "; " } else { "Paid by " },
            esc(who),
            usd(*v),
            thousands(stats::bps_a_year(*v, avg, years), 1)
        );
    }
    h.push_str(". Gas and ripcord rewards are not in the NAV: the operator and the bots pay them.</p>");
    h
}

/// Monthly and yearly returns of the token.
fn monthly_table(days: &[stats::DayClose]) -> String {
    let t: Vec<u64> = days.iter().map(|d| d.time).collect();
    let v: Vec<f64> = days.iter().map(|d| d.nav).collect();
    let m = stats::monthly(&t, &v);
    if m.is_empty() {
        return String::new();
    }
    let cell = |x: Option<f64>| match x {
        Some(r) if r.is_finite() => {
            format!(r#"<td class="num {}">{:+.1}%</td>"#, if r >= 0.0 { "pos" } else { "neg" }, r * 100.0)
        }
        _ => "<td></td>".into(),
    };
    let mut h = String::from(
        r#"<div class="scroll"><table id="monthly"><tr><th>year</th><th>Jan</th><th>Feb</th><th>Mar</th><th>Apr</th><th>May</th><th>Jun</th><th>Jul</th><th>Aug</th><th>Sep</th><th>Oct</th><th>Nov</th><th>Dec</th><th>year</th></tr>"#,
    );
    for (y, months, year) in m {
        let _ = write!(h, "<tr><th>{y}</th>");
        for x in months {
            h.push_str(&cell(x));
        }
        h.push_str(&cell(year));
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");
    h
}

fn event_cells(e: &EventRow) -> Vec<String> {
    vec![
        date_time(e.time).replace(' ', "&nbsp;"),
        format!("#{}", e.block),
        esc(&e.kind),
        esc(&e.actor),
        format!("#{:.4}", e.leverage_before),
        format!("#{:.4}", e.target),
        format!("#{:.4}", e.chunk),
        format!("#{:.4}", e.total),
        format!("#{}", thousands(e.pool_fee_usd, 0)),
        format!("#{}", thousands(e.impact_usd, 0)),
        format!("#{}", thousands(e.gas_usd, 0)),
        esc(&e.error),
    ]
}

const EVENT_HEAD: [&str; 12] = [
    "date (UTC)",
    "block",
    "call",
    "by",
    "LR before",
    "target",
    "chunk",
    "total",
    "fee $",
    "impact $",
    "gas $",
    "error",
];

/// The charts' data and specifications.
fn charts(s: &Summary, rows: &[SeriesRow], r: &ReportRows) -> Data {
    let mut d = Data::default();
    let col = |d: &mut Data, name: &str, f: fn(&SeriesRow) -> f64, exact: bool| {
        d.col(name, rows.iter().map(f), exact);
    };
    d.col("t", rows.iter().map(|r| r.time as f64), true);
    col(&mut d, "price", |r| r.price, false);
    col(&mut d, "price_low", |r| r.price_low, false);
    col(&mut d, "price_high", |r| r.price_high, false);
    col(&mut d, "oracle_dev", |r| if r.price > 0.0 { r.oracle_price / r.price - 1.0 } else { f64::NAN }, false);
    col(&mut d, "pool_dev", |r| if r.price > 0.0 { r.pool_price / r.price - 1.0 } else { f64::NAN }, false);
    col(&mut d, "nav", |r| r.nav, false);
    col(&mut d, "nav_low", |r| r.nav_low, false);
    col(&mut d, "nav_high", |r| r.nav_high, false);
    col(&mut d, "ideal", |r| r.ideal_nav, false);
    col(&mut d, "hold", |r| r.hold_nav, false);
    col(&mut d, "leverage", |r| r.leverage, true);
    col(&mut d, "leverage_low", |r| r.leverage_low, true);
    col(&mut d, "leverage_high", |r| r.leverage_high, true);
    col(&mut d, "health", |r| if r.health_factor.is_finite() { r.health_factor.min(10.0) } else { f64::NAN }, true);
    col(&mut d, "health_low", |r| if r.health_low.is_finite() { r.health_low.min(10.0) } else { f64::NAN }, true);
    col(&mut d, "costs", |r| r.costs_usd, false);
    col(&mut d, "funding", |r| r.funding_usd, false);
    col(&mut d, "gas", |r| r.gas_gwei, false);
    col(&mut d, "supply", |r| r.supply, false);

    // daily series
    let days = &r.dailies.days;
    let navs: Vec<f64> = days.iter().map(|c| c.nav).collect();
    let ideals: Vec<f64> = days.iter().map(|c| c.ideal).collect();
    let holds: Vec<f64> = days.iter().map(|c| c.hold).collect();
    d.col("d", days.iter().map(|c| c.time as f64), true);
    d.col("ratio", days.iter().map(|c| if c.ideal > 0.0 { c.nav / c.ideal } else { f64::NAN }), false);
    d.col("dd_token", stats::drawdowns(&navs), false);
    d.col("dd_ideal", stats::drawdowns(&ideals), false);
    d.col("dd_hold", stats::drawdowns(&holds), false);
    let (vol, te) = stats::rolling(&navs, &ideals, 30);
    d.col("vol30", vol, false);
    d.col("te30", te, false);
    let rets = stats::returns(&navs);
    let (centres, counts, _) = stats::histogram(&rets);
    let colors: Vec<String> =
        centres.iter().map(|c| if *c < 0.0 { "#e8590c".to_string() } else { "#1c7ed6".to_string() }).collect();
    d.col("bin", centres, false);
    d.col("count", counts, true);
    d.str_col("bin_color", &colors);

    let mut lev_refs = vec![
        json!({"y": s.min_leverage_ratio, "label": format!("min {}", s.min_leverage_ratio), "color": "#2b8a3e"}),
        json!({"y": s.max_leverage_ratio, "label": format!("max {}", s.max_leverage_ratio), "color": "#2b8a3e"}),
    ];
    if s.incentivized_leverage_ratio > 0.0 {
        lev_refs.push(json!({"y": s.incentivized_leverage_ratio, "label": format!("ripcord {}", s.incentivized_leverage_ratio), "color": "#d9480f"}));
    }
    let lending = s.health_measure == "health factor" || s.health_measure.is_empty();
    let band = |mut v: Value, lo: &str, hi: &str| {
        v["lo"] = json!(lo);
        v["hi"] = json!(hi);
        v
    };
    let dashed = |mut v: Value| {
        v["dash"] = json!("5,4");
        v
    };
    let mut specs = vec![
        json!({"id": "price", "title": "Price of the underlying (USD)", "x": "t", "log": "auto", "marks": true,
               "series": [band(series("market", "price", "#1c7ed6"), "price_low", "price_high")]}),
        json!({"id": "deviation", "title": "Oracle and pool against the market price", "x": "t", "unit": "%", "height": 170,
               "series": [series("oracle − market", "oracle_dev", "#f08c00"), series("pool − market", "pool_dev", "#7048e8")],
               "refs": [{"y": 0.0, "label": "market", "color": "#868e96"}]}),
        json!({"id": "nav", "title": "NAV per token (USD): the token, the ideal token, holding the underlying", "x": "t", "log": "auto", "marks": true,
               "series": [band(series("token", "nav", "#1c7ed6"), "nav_low", "nav_high"), dashed(series("ideal", "ideal", "#2b8a3e")), dashed(series("underlying", "hold", "#868e96"))]}),
        json!({"id": "ratio", "title": "Token ÷ ideal token (daily closes)", "x": "d",
               "series": [series("token ÷ ideal", "ratio", "#1c7ed6")], "refs": [{"y": 1.0, "label": "1", "color": "#868e96"}]}),
        json!({"id": "drawdown", "title": "Drawdown from the previous peak (daily closes)", "x": "d", "unit": "%",
               "series": [series("token", "dd_token", "#1c7ed6"), dashed(series("ideal", "dd_ideal", "#2b8a3e")), dashed(series("underlying", "dd_hold", "#868e96"))]}),
        json!({"id": "leverage", "title": "Leverage ratio with the band and the ripcord level", "x": "t", "marks": true,
               "series": [band(series("leverage", "leverage", "#1c7ed6"), "leverage_low", "leverage_high")], "refs": lev_refs}),
        json!({"id": "health", "title": if lending { "Health factor on the lending market (shown up to 10)".to_string() } else { format!("Health on the venue: {} (account value / notional; shown up to 10)", s.health_measure) },
               "x": "t", "floor": 0.0, "marks": true,
               "series": [band(series(if lending { "health factor" } else { "margin ratio" }, "health", "#1c7ed6"), "health_low", "health")],
               "refs": if lending { json!([{"y": 1.0, "label": "liquidation", "color": "#000000"}]) } else { json!([]) }}),
        json!({"id": "rolling", "title": "Rolling 30-day volatility and tracking error (annualised)", "x": "d", "unit": "%",
               "series": [series("volatility", "vol30", "#1c7ed6"), series("tracking error", "te30", "#e8590c")]}),
        json!({"id": "returns", "title": "Distribution of daily returns (days per bin)", "x": "bin", "kind": "bars", "xunit": "%", "xlabel": "daily return",
               "series": [{"name": "days", "col": "count", "color": "#1c7ed6", "colors": "bin_color"}]}),
        json!({"id": "costs", "title": "Costs paid so far (USD, every kind)", "x": "t", "floor": 0.0, "marks": true,
               "series": [series("costs", "costs", "#c92a2a")]}),
        json!({"id": "supply", "title": "Token supply", "x": "t", "floor": 0.0, "series": [series("supply", "supply", "#495057")]}),
        json!({"id": "gas", "title": "Gas price (gwei)", "x": "t", "floor": 0.0, "series": [series("gas", "gas", "#e64980")]}),
    ];
    if !s.funding.is_empty() {
        specs.insert(
            10,
            json!({"id": "funding", "title": "Funding paid so far (USD; below zero: received)", "x": "t", "marks": true,
                   "series": [series("funding", "funding", "#e8590c")], "refs": [{"y": 0.0, "label": "0", "color": "#868e96"}]}),
        );
    }
    for c in specs {
        d.chart(c);
    }
    let mut marks: Vec<Value> = Vec::new();
    for e in r.calls.iter().chain(&r.major) {
        let k = match e.kind.as_ref() {
            "rebalance" | "engage" | "iterate" | "ripcord" | "liquidation" | "close" => e.kind.as_ref(),
            _ => continue,
        };
        marks.push(json!({"t": e.time, "k": k}));
    }
    d.set("marks", Value::Array(marks));
    d.set("step", json!(rows.windows(2).next().map(|w| w[1].time - w[0].time).unwrap_or(86_400)));
    let calls: Vec<Value> = r
        .calls
        .iter()
        .map(|e| {
            let f = |x: f64| if x.is_finite() { json!((x * 1e4).round() / 1e4) } else { Value::Null };
            json!([
                e.time,
                e.block,
                e.kind,
                e.actor,
                f(e.leverage_before),
                f(e.target),
                f(e.chunk),
                f(e.total),
                f(e.pool_fee_usd),
                f(e.impact_usd),
                f(e.gas_usd),
                e.error
            ])
        })
        .collect();
    d.set("calls", json!({ "rows": calls }));
    d
}

/// The report of a backtest of any kind (the same sections for every kind; the health chart
/// shows the venue's measure).
pub fn html_report(s: &Summary, r: &ReportRows) -> String {
    let rows = r.buckets();
    let data = charts(s, &rows, r);
    let days = &r.dailies.days;
    let mut h = String::new();
    let version = s.run.as_ref().map(|x| x.keel_version.as_str()).unwrap_or(env!("CARGO_PKG_VERSION"));
    let _ = write!(
        h,
        r#"<h1>{product}: backtest</h1>
<p class="sub">{source}; {from} to {to} ({days:.1} days); {blocks} blocks of {bt} s; seed {seed}; keel {version}.</p>
"#,
        product = esc(&s.product),
        source = esc(&s.source),
        from = date(s.start as f64),
        to = date(s.end as f64),
        days = s.days,
        blocks = thousands(s.blocks as f64, 0),
        bt = s.block_time,
        seed = s.seed,
    );
    h.push_str("<h2>Key statistics</h2>");
    h.push_str(&key_stats(s, days));
    h.push_str("<p class=\"muted\">From daily closes (UTC); returns are simple, annualised over 365 days.</p>");
    h.push_str("<h2>Summary</h2><div class=\"scroll\"><table id=\"summary\">");
    for line in crate::table::summary_table(s).lines() {
        let (k, v) = line.split_at(15.min(line.len()));
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k.trim()), esc(v.trim()));
    }
    h.push_str("</table></div>");
    h.push_str("<h2>Costs and who pays them</h2>");
    h.push_str(&costs_table(s, days));
    h.push_str(
        r#"<h2>Charts</h2><p class="legend"><span><i class="sw" style="background:#495057"></i>rebalance (tick on the time axis)</span><span><i class="sw" style="background:#adb5bd"></i>TWAP iteration (tick)</span><span><i class="sw" style="background:#d9480f"></i>ripcord (line)</span><span><i class="sw" style="background:#000"></i>liquidation (line)</span><span><i class="sw" style="background:#862e9c"></i>close (line)</span></p>
<p class="muted">Hover a chart for values. Drag across a time chart to zoom every time chart to that window; double-click or press “reset zoom” to see the whole run. Shaded bands run from the lowest to the highest value between two points, so no peak or trough is lost. <span class="zoominfo"></span></p>
<noscript><p><b>The charts are drawn by the page's script; allow JavaScript to see them (the tables need none).</b></p></noscript>
"#,
    );
    for id in [
        "price",
        "deviation",
        "nav",
        "ratio",
        "drawdown",
        "leverage",
        "health",
        "rolling",
        "returns",
        "costs",
        "funding",
        "supply",
        "gas",
    ] {
        if id == "funding" && s.funding.is_empty() {
            continue;
        }
        let _ = write!(h, r#"<div id="chart-{id}" class="chart-host"></div>"#);
    }
    h.push_str("<h2>Monthly returns of the token</h2>");
    h.push_str(&monthly_table(days));

    let _ = write!(
        h,
        "<h2>Ripcords, liquidations, closes and failed calls ({} — every one)</h2>",
        thousands(r.major.len() as f64, 0)
    );
    if r.major.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str(
            &table(&EVENT_HEAD, &r.major.iter().map(event_cells).collect::<Vec<_>>())
                .replace("<tr><td>", "<tr class=\"major\"><td>"),
        );
    }
    let _ = write!(
        h,
        "<h2>Routine keeper calls ({} in the run{})</h2>",
        thousands(r.calls_seen as f64, 0),
        if r.calls_seen > r.calls.len() as u64 {
            format!("; the first {} are on this page, every one is in events.csv", thousands(CALLS_IN_PAGE as f64, 0))
        } else {
            String::new()
        }
    );
    let _ = write!(
        h,
        r#"<p>Show <select id="calls-kind"><option value="">every kind</option></select> <button id="calls-prev">previous</button> <button id="calls-next">next</button> <span id="calls-page"></span>. Holders' {} mints and redeems are in events.csv.</p>"#,
        thousands(r.holder_flows as f64, 0)
    );
    h.push_str(r#"<div class="scroll"><table id="calls"><thead><tr>"#);
    for c in EVENT_HEAD {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr></thead><tbody></tbody></table></div>");
    if !s.venue.is_empty() {
        let _ = write!(h, "<h2>The venue ({})</h2>", esc(&s.kind));
        let rows: Vec<Vec<String>> =
            s.venue.iter().map(|(k, v)| vec![esc(&k.replace('_', " ")), format!("#{}", thousands(*v, 2))]).collect();
        h.push_str(&table(&["figure", "value"], &rows));
    }
    h.push_str(&reproduce(s));
    h.push_str("<p class=\"muted\">NAV and ideal NAV exclude gas and ripcord rewards, which keepers and the reward pool pay, not the token. Price impact is the trade's shortfall against the oracle beyond the pool fee.</p>");
    page(&format!("keel backtest — {}", s.product), &h, Some(&data))
}

/// What it takes to run this again.
fn reproduce(s: &Summary) -> String {
    let mut h = String::from("<h2>Run it again</h2>");
    match &s.run {
        Some(r) => {
            let _ = write!(h, "<pre id=\"command\">{}</pre>", esc(&r.command));
            let mut rows = vec![
                vec!["keel".to_string(), esc(&r.keel_version)],
                vec!["product file".into(), format!("{} (SHA-256 {})", esc(&r.product_file), esc(&r.product_sha256))],
                vec![
                    "market".into(),
                    if r.prices_file.is_empty() {
                        format!("{} (built in, seed {})", esc(&s.source), s.seed)
                    } else {
                        format!("{} (SHA-256 {})", esc(&r.prices_file), esc(&r.prices_sha256))
                    },
                ],
            ];
            rows.push(vec![
                "window".into(),
                format!("{} to {}, {} blocks of {} s", date_time(s.start), date_time(s.end), s.blocks, s.block_time),
            ]);
            h.push_str(&table(&["", ""], &rows));
            let _ = write!(
                h,
                "<details><summary>The product's settings ({})</summary><pre>{}</pre></details>",
                esc(&r.product_file),
                esc(&r.product_toml)
            );
        }
        None => {
            let _ = write!(h, "<p>{}; seed {}; blocks of {} s.</p>", esc(&s.source), s.seed, s.block_time);
        }
    }
    h
}
