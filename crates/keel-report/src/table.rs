//! The summary as a plain-text table for a terminal.

use keel_sim::Summary;

fn pct(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

fn usd(x: f64) -> String {
    let neg = x < 0.0;
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{}${out}", if neg { "-" } else { "" })
}

/// The summary as aligned text lines.
pub fn summary_table(s: &Summary) -> String {
    let c = &s.costs_usd;
    let total = keel_sim::sweep::total_cost(c);
    let rows: Vec<(&str, String)> = vec![
        ("product", format!("{} (β {:+.2}, {})", s.product, s.target_exposure, s.kind)),
        (
            "market",
            format!("{} — {:.1} days, {} blocks of {} s, seed {}", s.source, s.days, s.blocks, s.block_time, s.seed),
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
