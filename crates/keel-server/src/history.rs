//! Each product's history for the dashboard's charts and `GET /products/{id}/history`: NAV,
//! leverage, the underlying's price and supply after every event that touched the product,
//! rebuilt from the log at start-up (so a restart keeps it) and extended as events commit.
//! Bounded: neighbours merge when it grows past its cap, keeping each bucket's lowest and
//! highest leverage, so no peak is lost. Analytics, so `f64`.

use crate::view::ProductView;
use serde::Serialize;

/// Points kept per product before neighbours merge.
pub const CAP: usize = 4_000;

/// The state after one event (or the last of a merged bucket); a figure that cannot be
/// measured (no supply yet) is NaN here and `null` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Point {
    /// Unix seconds of the event.
    pub t: u64,
    /// The event.
    pub seq: u64,
    /// NAV per token, USD (NaN while it cannot be measured).
    #[schemars(with = "Option<f64>")]
    pub nav: f64,
    /// Leverage ratio.
    #[schemars(with = "Option<f64>")]
    pub leverage: f64,
    /// Lowest leverage in the bucket.
    #[schemars(with = "Option<f64>")]
    pub leverage_low: f64,
    /// Highest leverage in the bucket.
    #[schemars(with = "Option<f64>")]
    pub leverage_high: f64,
    /// The underlying's last observed price, USD.
    #[schemars(with = "Option<f64>")]
    pub price: f64,
    /// Total supply, tokens.
    #[schemars(with = "Option<f64>")]
    pub supply: f64,
}

fn parse(s: Option<&str>) -> f64 {
    s.and_then(|x| x.parse::<f64>().ok()).filter(|x| x.is_finite()).unwrap_or(f64::NAN)
}

impl Point {
    /// The figures of a view.
    pub fn of(v: &ProductView) -> Point {
        // before the first mint there is no NAV and no position to chart
        let issued = parse(Some(&v.supply)) > 0.0;
        let leverage = if issued { parse(v.leverage_ratio.as_deref()) } else { f64::NAN };
        let price = v.prices.get(&v.underlying).map(|p| parse(Some(&p.price))).unwrap_or(f64::NAN);
        Point {
            t: v.as_of,
            seq: v.seq,
            nav: if issued { parse(v.nav_per_token.as_deref()) } else { f64::NAN },
            leverage,
            leverage_low: leverage,
            leverage_high: leverage,
            price,
            supply: parse(Some(&v.supply)),
        }
    }
}

/// One product's points, oldest first.
#[derive(Debug, Default, Clone)]
pub struct History {
    points: Vec<Point>,
}

fn merge(a: &Point, b: &Point) -> Point {
    Point {
        leverage_low: a.leverage_low.min(b.leverage_low),
        leverage_high: a.leverage_high.max(b.leverage_high),
        ..*b
    }
}

impl History {
    /// Add the state after an event (a view of the same event replaces the last point).
    pub fn push(&mut self, p: Point) {
        if let Some(last) = self.points.last_mut()
            && last.seq == p.seq
        {
            *last = merge(last, &p);
            return;
        }
        self.points.push(p);
        if self.points.len() > 2 * CAP {
            self.points =
                self.points.chunks(2).map(|c| if c.len() == 2 { merge(&c[0], &c[1]) } else { c[0] }).collect();
        }
    }

    /// At most `n` points over the whole history (neighbours merged, extremes kept).
    pub fn sample(&self, n: usize) -> Vec<Point> {
        let n = n.max(2);
        if self.points.len() <= n {
            return self.points.clone();
        }
        let per = self.points.len().div_ceil(n);
        self.points.chunks(per).map(|c| c[1..].iter().fold(c[0], |acc, p| merge(&acc, p))).collect()
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// What the keeper running in this process last did for a product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct KeeperStatus {
    /// Unix seconds of its last accepted call.
    pub last_success_at: Option<u64>,
    /// That call (`rebalance on uniswap-v3`).
    pub last_success: Option<String>,
    /// Calls refused or lost since the last success.
    pub failures: u32,
    /// The last refusal's message.
    pub last_error: Option<String>,
    /// Unix seconds until which it waits before trying again (back-off).
    pub backoff_until: Option<u64>,
}

/// A product's history and activity, as `GET /products/{id}/history` returns it.
#[derive(Debug, Clone, Default)]
pub struct ProductHistory {
    /// NAV, leverage, price and supply after each event.
    pub points: History,
    /// The last keeper or operator call on it (engage, rebalance, iterate, ripcord,
    /// disengage) or liquidation: its event, time and result.
    pub last_call: Option<serde_json::Value>,
    /// The in-process keeper's record (absent without `--keeper`).
    pub keeper: Option<KeeperStatus>,
}

/// Event kinds that are calls on the token (the card's "last rebalance").
pub const CALL_KINDS: [&str; 6] = ["engage", "rebalance", "iterate", "ripcord", "disengage", "liquidation"];

impl ProductHistory {
    /// Record an event on this product and the view after it.
    pub fn record(&mut self, ev: &crate::model::StoredEvent, view: Option<&ProductView>) {
        let kind = ev.request.command.kind();
        if CALL_KINDS.contains(&kind) {
            self.last_call = Some(serde_json::json!({
                "kind": kind, "seq": ev.seq, "at": ev.at, "by": ev.request.actor.role, "result": ev.result,
            }));
        }
        if let Some(v) = view {
            self.points.push(Point::of(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64, lev: f64) -> Point {
        Point {
            t: seq,
            seq,
            nav: 1.0,
            leverage: lev,
            leverage_low: lev,
            leverage_high: lev,
            price: 2000.0,
            supply: 1.0,
        }
    }

    #[test]
    fn bounded_and_keeps_the_peak() {
        let mut h = History::default();
        for i in 1..=20_000u64 {
            h.push(p(i, if i == 12_345 { 9.0 } else { 2.0 }));
        }
        assert!(h.len() <= 2 * CAP);
        let s = h.sample(100);
        assert!(s.len() <= 100);
        assert_eq!(s.iter().map(|x| x.leverage_high).fold(0.0, f64::max), 9.0);
        assert_eq!(s.last().map(|x| x.seq), Some(20_000), "the last event closes the last bucket");
    }

    #[test]
    fn one_event_one_point() {
        let mut h = History::default();
        h.push(p(1, 2.0));
        h.push(p(1, 2.5));
        h.push(p(2, 2.1));
        assert_eq!(h.len(), 2);
        assert_eq!(h.sample(10)[0].leverage_high, 2.5);
    }
}
