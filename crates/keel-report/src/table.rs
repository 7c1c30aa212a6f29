//! The summary as a plain-text table for a terminal.

use keel_sim::Summary;

fn pct(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

/// `x` with `decimals` places and thousands separators: `-1,234,567.89`.
pub fn thousands(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((&s, None));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    let zero = s.bytes().all(|b| b == b'0' || b == b'.');
    format!("{}{out}", if x < 0.0 && !zero { "-" } else { "" })
}

/// A text table whose columns line up: each column as wide as its widest cell (counted in
/// characters), `right[i]` right-aligns column `i` (numbers), two spaces between columns.
pub fn text_table(head: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let n = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(|c| c.as_str()).collect()));
    }
    out
}

pub(crate) fn usd(x: f64) -> String {
    let t = thousands(x, 0);
    match t.strip_prefix('-') {
        Some(rest) => format!("-${rest}"),
        None => format!("${t}"),
    }
}

/// The summary as aligned text lines.
pub fn summary_table(s: &Summary) -> String {
    let c = &s.costs_usd;
    let total = keel_sim::sweep::total_cost(c);
    let rows: Vec<(&str, String)> = vec![
        ("product", format!("{} (β {:+.2}, {})", s.product, s.target_exposure, s.kind)),
        (
            "market",
            format!(
                "{} — {:.1} days, {} blocks of {} s, seed {}",
                s.source,
                s.days,
                thousands(s.blocks as f64, 0),
                s.block_time,
                s.seed
            ),
        ),
        ("underlying", format!("{:.2} → {:.2}  {}", s.underlying_start, s.underlying_end, pct(s.underlying_return))),
        ("token NAV", format!("{:.4} → {:.4}  {}", s.nav_start, s.nav_end, pct(s.token_return))),
        ("ideal token", format!("{}  (token − ideal {})", pct(s.ideal_return), pct(s.return_vs_ideal))),
        ("tracking error", format!("{:.2}% a year", s.tracking_error * 100.0)),
        (
            "volatility",
            format!(
                "{:.1}% realised; decay predicted {} → predicted return {}",
                s.realised_volatility * 100.0,
                pct(s.predicted_decay - 1.0),
                pct(s.predicted_return)
            ),
        ),
        (
            "activity",
            format!(
                "{} rebalances, {} iterations, {} ripcords, {} liquidations, {} mints, {} redeems, {} failed calls",
                s.counts.rebalances,
                s.counts.iterations,
                s.counts.ripcords,
                s.counts.liquidations,
                s.counts.mints,
                s.counts.redeems,
                s.counts.failed_calls
            ) + &extra_activity(s),
        ),
        (
            "costs",
            format!(
                "{} total: pool fees {}, impact {}, gas {} (+ bots {}), interest {}, ripcord rewards {}, streaming fee {}, mint/redeem fees {}",
                usd(total),
                usd(c.pool_fees),
                usd(c.price_impact),
                usd(c.gas_keeper),
                usd(c.gas_bots),
                usd(c.interest),
                usd(c.ether_rewards),
                usd(c.streaming_fee),
                usd(c.mint_redeem_fees)
            ) + &if c.venue_keeper_fees > 0.0 {
                format!(", venue keeper fees {}", usd(c.venue_keeper_fees))
            } else {
                String::new()
            } + &if s.funding.is_empty() { String::new() } else { format!(", funding {}", usd(c.funding)) },
        ),
        (
            "funding",
            if s.funding.is_empty() {
                "none: a lending FLI pays interest".to_string()
            } else {
                format!("{} {}; {}", usd(c.funding.abs()), if c.funding < 0.0 { "received" } else { "paid" }, s.funding)
            },
        ),
        (
            "risk",
            format!(
                "min {} {:.3}, max leverage {:.3}x, outside band {:.2}% of the time, worst block NAV {}",
                if s.health_measure.is_empty() { "health factor" } else { s.health_measure.as_str() },
                s.min_health_factor,
                s.max_leverage,
                s.time_outside_band * 100.0,
                pct(s.worst_block_nav_change)
            ),
        ),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<15} {v}\n"));
    }
    for w in &s.warnings {
        out.push_str(&format!("warning         {w}\n"));
    }
    out
}

/// What only some kinds do: closes under the minimum margin, reverse splits, refused flows.
fn extra_activity(s: &Summary) -> String {
    let c = &s.counts;
    let mut out = String::new();
    for (n, what) in [(c.closes, "closes"), (c.reverse_splits, "reverse splits"), (c.refused_flows, "refused flows")] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_table() {
        for (case, x, d, want) in [
            ("zero", 0.0, 0, "0"),
            ("small", 999.4, 0, "999"),
            ("grouped", 1_234_567.891, 2, "1,234,567.89"),
            ("negative", -43_786.0, 0, "-43,786"),
            ("negative rounding to zero", -0.2, 0, "0"),
            ("exact thousand", 1000.0, 1, "1,000.0"),
        ] {
            assert_eq!(thousands(x, d), want, "case {case}");
        }
        assert_eq!(usd(-1234.0), "-$1,234");
    }

    #[test]
    fn text_tables_line_up() {
        let t = text_table(
            &["token", "return", "costs $"],
            &[
                vec!["ETH2x-FLI".into(), "-33.25%".into(), "37,804".into()],
                vec!["ΔBEAR".into(), "1.00%".into(), "-165,309".into()],
            ],
            &[false, true, true],
        );
        let lines: Vec<&str> = t.lines().collect();
        let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|e| *e == ends[0]), "{t}");
        // the header's right-aligned titles end where their column's numbers end
        assert_eq!(lines[0].find("return").map(|i| i + 6), lines[1].find("-33.25%").map(|i| i + 7));
    }
}
