//! The daily methodology (exchange style, `methodologies.md` §4): a scheduled rebalance to
//! target once a day at the first evaluation at or after `rebalance_time`, plus an intraday
//! rebalance when leverage reaches a trigger (optionally only after adverse moves). Pure rules
//! over wad integers; the driver supplies `now`, the price and the position.

use super::threshold::Side;
use crate::math::{I256, MathError, U256, pdiv, pmul};
use serde::{Deserialize, Serialize};

/// A day in seconds.
pub const DAY: u64 = 86_400;

/// Daily methodology settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailySettings {
    /// Long or short.
    pub side: Side,
    /// Target leverage magnitude (wad).
    pub target_leverage: U256,
    /// Seconds after 00:00 UTC of the scheduled rebalance (FTX: 120).
    pub rebalance_time: u64,
    /// Intraday rebalance when leverage ≥ this (wad; FTX: 4 for a 3x token).
    pub upper_trigger: U256,
    /// Optional intraday rebalance when leverage ≤ this (wad; Bybit: 2 for 3x).
    pub lower_trigger: Option<U256>,
    /// Only adverse moves since the last rebalance fire the intraday trigger.
    pub adverse_only: bool,
}

/// Why a rebalance is due, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Due {
    /// Nothing to do.
    No,
    /// The day's scheduled rebalance.
    Scheduled,
    /// Leverage reached the upper trigger.
    UpperTrigger,
    /// Leverage fell to the lower trigger.
    LowerTrigger,
}

/// The first scheduled time strictly after `last` (the day's `rebalance_time`, or the next day's).
pub fn next_scheduled(last: u64, rebalance_time: u64) -> u64 {
    let today = last - last % DAY + rebalance_time % DAY;
    if today > last { today } else { today + DAY }
}

/// §4.1: is a rebalance due at `now`? `last` is the last rebalance's time, `leverage` the
/// current `N/NAV` magnitude, `price` and `last_price` the underlying now and at the last
/// rebalance (for `adverse_only`).
pub fn due(s: &DailySettings, now: u64, last: u64, leverage: U256, price: U256, last_price: U256) -> Due {
    if now >= next_scheduled(last, s.rebalance_time) {
        return Due::Scheduled;
    }
    let adverse = match s.side {
        Side::Long => price < last_price,
        Side::Short => price > last_price,
    };
    if leverage >= s.upper_trigger && (!s.adverse_only || adverse) {
        return Due::UpperTrigger;
    }
    if let Some(lo) = s.lower_trigger
        && leverage <= lo
        && (!s.adverse_only || !adverse)
    {
        return Due::LowerTrigger;
    }
    Due::No
}

/// §4.1: the signed position change (base wad; positive buys base) that brings the token to
/// target: `(L·NAV/P − units_per_token) · supply`, with `units_per_token` signed (negative for
/// a short) and NAV per token in USD wad.
pub fn delta_units(
    side: Side,
    target_leverage: U256,
    nav_per_token: U256,
    price: U256,
    units_per_token: I256,
    supply: U256,
) -> Result<I256, MathError> {
    let target = pdiv(pmul(target_leverage, nav_per_token)?, price)?;
    let to_i = |x: U256| I256::try_from(x).map_err(|_| MathError::Overflow("int256"));
    let target = if side == Side::Short { -to_i(target)? } else { to_i(target)? };
    crate::math::pmul_i(target - units_per_token, to_i(supply)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::Wad;

    fn w(s: &str) -> U256 {
        Wad::parse(s).unwrap().0
    }

    fn ftx_bull() -> DailySettings {
        DailySettings {
            side: Side::Long,
            target_leverage: w("3"),
            rebalance_time: 120,
            upper_trigger: w("4"),
            lower_trigger: None,
            adverse_only: false,
        }
    }

    #[test]
    fn schedule_is_the_first_evaluation_at_or_after_the_time() {
        let day0 = 1_600_000_000 - 1_600_000_000 % DAY;
        for (name, last, want) in [
            ("rebalanced at 00:00, due 00:02 today", day0, day0 + 120),
            ("rebalanced at 00:02, due tomorrow", day0 + 120, day0 + DAY + 120),
            ("rebalanced at noon, due tomorrow", day0 + 43_200, day0 + DAY + 120),
        ] {
            assert_eq!(next_scheduled(last, 120), want, "{name}");
        }
        let s = ftx_bull();
        assert_eq!(due(&s, day0 + 119, day0, w("3"), w("1"), w("1")), Due::No);
        assert_eq!(due(&s, day0 + 130, day0, w("3"), w("1"), w("1")), Due::Scheduled, "a late evaluation still counts");
    }

    #[test]
    fn intraday_triggers() {
        let day0 = 1_600_000_000 - 1_600_000_000 % DAY + 200;
        let mut s = ftx_bull();
        for (name, lev, price, want) in
            [("below the trigger", "3.9", "0.9", Due::No), ("at 4x after a fall", "4", "0.89", Due::UpperTrigger)]
        {
            assert_eq!(due(&s, day0 + 60, day0, w(lev), w(price), w("1")), want, "{name}");
        }
        s.lower_trigger = Some(w("2"));
        assert_eq!(due(&s, day0 + 60, day0, w("2"), w("1.3"), w("1")), Due::LowerTrigger, "Bybit's ≤ 2x");
        s.adverse_only = true;
        let mut short = s;
        short.side = Side::Short;
        assert_eq!(
            due(&short, day0 + 60, day0, w("4.1"), w("0.9"), w("1")),
            Due::No,
            "a short's high leverage after a fall is not adverse"
        );
        assert_eq!(due(&short, day0 + 60, day0, w("4.1"), w("1.07"), w("1")), Due::UpperTrigger);
    }

    #[test]
    fn trade_to_target() {
        // 3x long, NAV 100 per token, P 1000: target 0.3 units a token; holding 0.36 over 10 tokens → sell 0.6.
        let d =
            delta_units(Side::Long, w("3"), w("100"), w("1000"), I256::try_from(w("0.36")).unwrap(), w("10")).unwrap();
        assert_eq!(d, -I256::try_from(w("0.6")).unwrap());
        // −1x, NAV 100, P 1000: target −0.1 a token; holding −0.08 over 10 → sell 0.2 more.
        let d = delta_units(Side::Short, w("1"), w("100"), w("1000"), -I256::try_from(w("0.08")).unwrap(), w("10"))
            .unwrap();
        assert_eq!(d, -I256::try_from(w("0.2")).unwrap());
    }
}
