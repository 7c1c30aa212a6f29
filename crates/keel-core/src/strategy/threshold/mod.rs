//! The threshold methodology (TLX / Synthetix Leverage style, `methodologies.md` §2): a full
//! rebalance to target once the notional has drifted θ leverage points from what the stored
//! margin implies, fees charged on leverage and notional, a pending-order lock, and keeper
//! back-off. This module holds the pure rules — settings and their validation, the trigger,
//! the order size and limit, mint and redeem pricing, the fees — in the integer order the spec
//! gives. Venue mechanics (fill price, delayed orders) live with the venue.

pub mod token;

use crate::math::{I256, MathError, U256, WAD, pdiv, pmul};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A year, in seconds (the streaming fee's denominator).
pub const YEAR: u64 = 365 * 86_400;

/// Which way the token faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Gains when the underlying rises.
    Long,
    /// Gains when the underlying falls (inverse token).
    Short,
}

/// Why a threshold-token operation was refused. Names follow the reference's custom errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ThresholdError {
    /// A setting breaks a rule (`ZeroLeverage`, `MaxOfTwoDecimals`, ...).
    #[error("{field}: {rule} ({detail})")]
    Invalid {
        /// The product field, by its TOML name.
        field: &'static str,
        /// The reference error name or keel's rule.
        rule: &'static str,
        /// The values involved.
        detail: String,
    },
    /// An order is pending on the venue: mint, redeem and rebalance wait for it.
    #[error(
        "LeverageUpdatePending: an order is pending on the venue; mint, redeem and rebalance wait until it fills or is cancelled"
    )]
    LeverageUpdatePending,
    /// The token's position was liquidated (remaining margin 0).
    #[error("Inactive: the token has no remaining margin; deploy a fresh token with the same parameters")]
    Inactive,
    /// The amount is above what one transaction may move.
    #[error("ExceedsLimit: {amount} is above the per-transaction limit {limit}")]
    ExceedsLimit {
        /// Requested, base units.
        amount: U256,
        /// The limit, base units.
        limit: U256,
    },
    /// The output is below the caller's minimum.
    #[error("InsufficientAmount: {out} is below the minimum {min_out}")]
    InsufficientAmount {
        /// What the operation would give.
        out: U256,
        /// The caller's floor.
        min_out: U256,
    },
    /// `rebalance` while `can_rebalance` is false.
    #[error("CannotRebalance: no pending order allowed, margin must remain and the deviation must reach the threshold")]
    CannotRebalance,
    /// A holder asked for more tokens than it holds.
    #[error("InsufficientBalance: {holder} holds {balance}, asked for {amount}")]
    InsufficientBalance {
        /// The holder.
        holder: String,
        /// What it holds.
        balance: U256,
        /// What it asked for.
        amount: U256,
    },
    /// The venue refused the operation.
    #[error("venue: {0}")]
    Venue(#[from] crate::venue::synthetix::PerpsError),
    /// Fixed-point arithmetic refused (overflow, underflow, division by zero).
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Threshold methodology settings (wad fractions unless stated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdSettings {
    /// Long or short.
    pub side: Side,
    /// L, the target leverage magnitude (wad, at most two decimals).
    pub target_leverage: U256,
    /// θ, the trigger in leverage points (wad; 1%..80%).
    pub rebalance_threshold: U256,
    /// Bound on a rebalance order's fill against the venue's fill price.
    pub slippage_tolerance: U256,
    /// Redemption fee per unit of leverage.
    pub redemption_fee: U256,
    /// Streaming fee per year, on notional.
    pub streaming_fee: U256,
    /// Flat fee per keeper-initiated rebalance, base units.
    pub rebalance_fee: U256,
    /// Exit load for a redemption right after a mint.
    pub exit_load: U256,
    /// Seconds over which the exit load falls to zero.
    pub exit_load_window: u64,
    /// Below this margin the position is closed (base units).
    pub min_margin: U256,
    /// Buffer under the venue's max market value for the per-transaction cap.
    pub max_base_asset_amount_buffer: U256,
}

fn wad(s: &str) -> U256 {
    crate::math::Wad::parse(s).expect("constant").0
}

impl ThresholdSettings {
    /// The documented defaults (`methodologies.md` §2.2, §2.9) for a target and side, with 18-decimal margin.
    pub fn defaults(side: Side, target_leverage: U256, rebalance_threshold: U256) -> Self {
        Self {
            side,
            target_leverage,
            rebalance_threshold,
            slippage_tolerance: wad("0.02"),
            redemption_fee: wad("0.003"),
            streaming_fee: wad("0.02"),
            rebalance_fee: wad("5"),
            exit_load: wad("0.01"),
            exit_load_window: 300,
            min_margin: wad("100"),
            max_base_asset_amount_buffer: wad("0.2"),
        }
    }

    /// Every rule the settings break, each naming its field; empty when valid.
    /// `venue_max_leverage` is the market's maximum leverage (55 for ETH on Synthetix).
    pub fn violations(&self, venue_max_leverage: U256) -> Vec<ThresholdError> {
        let mut v = Vec::new();
        let mut bad = |field, rule, detail: String| v.push(ThresholdError::Invalid { field, rule, detail });
        let l = self.target_leverage;
        if l.is_zero() {
            bad("target_leverage", "ZeroLeverage", "the target must be above 0".into());
        }
        if !(l % wad("0.01")).is_zero() {
            bad("target_leverage", "MaxOfTwoDecimals", format!("{} has more than two decimals", show(l)));
        }
        let cap = venue_max_leverage / U256::from(2);
        if l > cap {
            bad(
                "target_leverage",
                "MaxLeverage",
                format!("{} is above half the venue's max leverage, {}", show(l), show(cap)),
            );
        }
        let t = self.rebalance_threshold;
        if t < wad("0.01") || t > wad("0.8") {
            bad("rebalance_threshold", "must be within 1%..80%", format!("got {}", show(t)));
        }
        for (field, x) in [
            ("slippage_tolerance", self.slippage_tolerance),
            ("redemption_fee", self.redemption_fee),
            ("streaming_fee", self.streaming_fee),
            ("exit_load", self.exit_load),
            ("max_base_asset_amount_buffer", self.max_base_asset_amount_buffer),
        ] {
            if x >= WAD {
                bad(field, "must be below 100%", format!("got {}", show(x)));
            }
        }
        v
    }
}

fn show(x: U256) -> String {
    crate::math::format_units(x, 18)
}

/// Price per token in base units (wad): remaining margin over supply, 1.0 with no supply.
pub fn exchange_rate(remaining_margin: U256, supply: U256) -> Result<U256, MathError> {
    if supply.is_zero() { Ok(WAD) } else { pdiv(remaining_margin, supply) }
}

/// §2.4: `|N/M₀ − L|` in leverage points, in the reference's integer order;
/// `notional` = |q|·P and `stored_margin` = M₀, the margin at the last modification.
pub fn deviation(notional: U256, stored_margin: U256, target_leverage: U256) -> Result<U256, MathError> {
    if stored_margin.is_zero() {
        return Ok(U256::ZERO);
    }
    let implied = pmul(stored_margin, target_leverage)?;
    if implied.is_zero() {
        return Ok(U256::ZERO);
    }
    let diff = if notional > implied { notional - implied } else { implied - notional };
    pmul(pdiv(diff, implied)?, target_leverage)
}

/// §2.4: a rebalance may start when margin remains, no order is pending and the deviation
/// has reached θ.
pub fn can_rebalance(remaining_margin: U256, pending: bool, deviation: U256, threshold: U256) -> bool {
    !remaining_margin.is_zero() && !pending && deviation >= threshold
}

/// §2.5: the signed size change of a full rebalance to target (base wad; positive buys
/// base), from the margin left after fees and the venue's keeper deposit.
pub fn rebalance_delta(
    side: Side,
    margin_after_fees: U256,
    min_keeper_fee: U256,
    target_leverage: U256,
    price: U256,
    notional: U256,
) -> Result<I256, MathError> {
    let margin = crate::math::sub(margin_after_fees, min_keeper_fee, "margin less the venue keeper fee")?;
    let target_q = pdiv(pmul(margin, target_leverage)?, price)?;
    let current_q = pdiv(notional, price)?;
    let to_i = |x: U256| I256::try_from(x).map_err(|_| MathError::Overflow("int256"));
    let d = to_i(target_q)? - to_i(current_q)?;
    Ok(if side == Side::Short { -d } else { d })
}

/// §2.5: the order's limit price: above the fill by the slippage when buying, below when selling.
pub fn limit_price(fill: U256, delta: I256, slippage: U256) -> Result<U256, MathError> {
    let k = crate::math::add(WAD, slippage, "1 + slippage")?;
    if delta.is_positive() { pmul(fill, k) } else { pdiv(fill, k) }
}

/// §2.7: the static per-transaction cap, `maxMarketValue · P · (1 − buffer)`.
pub fn max_base_asset_amount(max_market_value: U256, price: U256, buffer: U256) -> Result<U256, MathError> {
    pmul(pmul(max_market_value, price)?, crate::math::sub(WAD, buffer, "1 − buffer")?)
}

/// §2.7/§2.8: the trade a mint (`minting = true`) or a redemption of `amount` base units
/// implies, `Δq = pdiv(pmul(amount, L), P)`, signed (positive buys base).
pub fn implied_trade(side: Side, minting: bool, amount: U256, leverage: U256, price: U256) -> Result<I256, MathError> {
    let q = pdiv(pmul(amount, leverage)?, price)?;
    let q = I256::try_from(q).map_err(|_| MathError::Overflow("int256"))?;
    // A long mint buys base, a long redemption sells it; a short token the opposite.
    let buys = (side == Side::Long) == minting;
    Ok(if buys { q } else { -q })
}

/// The user's price-impact charge for an implied trade `delta` filled at `fill` (keel §2.12.1:
/// a purchase is adverse above the oracle, a sale below).
pub fn impact(delta: I256, price: U256, fill: U256) -> Result<U256, MathError> {
    let adverse = if delta.is_positive() { fill > price } else { fill < price };
    if !adverse || delta.is_zero() {
        return Ok(U256::ZERO);
    }
    let gap = if fill > price { fill - price } else { price - fill };
    pmul(delta.unsigned_abs(), gap)
}

/// §2.7: tokens issued for `base_in`, after the adverse impact, at the exchange rate.
pub fn mint_out(base_in: U256, impact: U256, exchange_rate: U256) -> Result<U256, MathError> {
    pdiv(crate::math::sub(base_in, impact, "amount less price impact")?, exchange_rate)
}

/// §2.8: the redemption fee, scaled by leverage: `pmul(pmul(base, L), fee)`.
pub fn redemption_fee(base_withdrawn: U256, leverage: U256, fee: U256) -> Result<U256, MathError> {
    pmul(pmul(base_withdrawn, leverage)?, fee)
}

/// §2.9: the exit-load rate for a redemption at `now` by an address whose last mint was at
/// `last_mint` (the full load when there is none), falling linearly to 0 over the window.
pub fn exit_load_rate(exit_load: U256, window: u64, now: u64, last_mint: Option<u64>) -> Result<U256, MathError> {
    let Some(t) = last_mint else { return Ok(exit_load) };
    let elapsed = now.saturating_sub(t);
    if window == 0 || elapsed >= window {
        return Ok(U256::ZERO);
    }
    crate::math::mul_div_down(exit_load, U256::from(window - elapsed), U256::from(window), "exit load")
}

/// §2.9: streaming fee on notional over `dt` seconds: `notional · rate · dt / 365 days`.
pub fn streaming_fee(notional: U256, rate_per_year: U256, dt: u64) -> Result<U256, MathError> {
    crate::math::mul_div_down(pmul(notional, rate_per_year)?, U256::from(dt), U256::from(YEAR), "streaming fee")
}

/// §2.11: when a keeper may retry after `failures` failures: `now + base_delay · 2^failures`.
pub fn next_attempt(now: u64, base_delay: u64, failures: u32) -> u64 {
    now.saturating_add(base_delay.saturating_mul(1u64.checked_shl(failures).unwrap_or(u64::MAX)))
}

/// §1 (analytics, f64): leverage magnitude after an underlying move `r` from a position sized
/// to `l`: long `L(1+r)/(1+L·r)`, short `L(1+r)/(1−L·r)`.
pub fn leverage_after_move(side: Side, l: f64, r: f64) -> f64 {
    match side {
        Side::Long => l * (1.0 + r) / (1.0 + l * r),
        Side::Short => l * (1.0 + r) / (1.0 - l * r),
    }
}

/// §1 (analytics, f64): the underlying move at which leverage `l` reaches `trigger > l`:
/// long `−(Lt − L)/(L(Lt − 1))`, short `+(Lt − L)/(L(Lt + 1))`.
pub fn move_to_trigger(side: Side, l: f64, trigger: f64) -> f64 {
    match side {
        Side::Long => -(trigger - l) / (l * (trigger - 1.0)),
        Side::Short => (trigger - l) / (l * (trigger + 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> U256 {
        wad(s)
    }

    #[test]
    fn seed_synthetix_2x_after_minus_7_5_percent() {
        // methodologies.md §5.1: margin 1, notional 2; ETH −7.5% → N 1.85, M 0.85; dev 0.15.
        let dev = deviation(w("1.85"), w("1"), w("2")).unwrap();
        assert_eq!(dev, w("0.15"));
        assert!(can_rebalance(w("0.85"), false, dev, w("0.15")));
        assert!(!can_rebalance(w("0.85"), false, dev, w("0.16")), "θ above the deviation");
        assert!(!can_rebalance(w("0.85"), true, dev, w("0.15")), "a pending order blocks");
        assert!(!can_rebalance(U256::ZERO, false, dev, w("0.15")), "an inactive token never rebalances");
        // The keeper cuts notional to 2 × 0.85 = 1.70: at price 0.925, Δq = 1.70/0.925 − 1.85/0.925.
        let d = rebalance_delta(Side::Long, w("0.85"), U256::ZERO, w("2"), w("0.925"), w("1.85")).unwrap();
        let expected = I256::try_from(pdiv(w("1.7"), w("0.925")).unwrap()).unwrap()
            - I256::try_from(pdiv(w("1.85"), w("0.925")).unwrap()).unwrap();
        assert_eq!(d, expected);
        assert!(d.is_negative(), "a long token delevers by selling");
        let s = rebalance_delta(Side::Short, w("0.85"), U256::ZERO, w("2"), w("0.925"), w("1.85")).unwrap();
        assert_eq!(s, -d, "a short token buys back");
    }

    #[test]
    fn trigger_moves_from_the_spec() {
        // §1: 5x long after −2% → 5.44x, after +2% → 4.64x; 3x long hits 4x at −1/9, short at +1/15.
        for (name, side, l, r, want) in
            [("5x long, −2%", Side::Long, 5.0, -0.02, 5.444), ("5x long, +2%", Side::Long, 5.0, 0.02, 4.636)]
        {
            assert!((leverage_after_move(side, l, r) - want).abs() < 1e-3, "{name}");
        }
        assert!((move_to_trigger(Side::Long, 3.0, 4.0) + 1.0 / 9.0).abs() < 1e-12);
        assert!((move_to_trigger(Side::Short, 3.0, 4.0) - 1.0 / 15.0).abs() < 1e-12);
        // And the two formulas agree: moving by the trigger move lands on the trigger.
        for side in [Side::Long, Side::Short] {
            let r = move_to_trigger(side, 3.0, 4.0);
            assert!((leverage_after_move(side, 3.0, r) - 4.0).abs() < 1e-9, "{side:?}");
        }
    }

    #[test]
    fn fees_and_loads() {
        // 0.3% × L: redeeming 1000 from a 3x token pays 9.
        assert_eq!(redemption_fee(w("1000"), w("3"), w("0.003")).unwrap(), w("9"));
        // Exit load 1% over 5 min: 0.5% at 2.5 min, 0 at 5 min, full with no recorded mint.
        for (name, now, last, want) in [
            ("right after", 1_000, Some(1_000), "0.01"),
            ("half way", 1_150, Some(1_000), "0.005"),
            ("window over", 1_300, Some(1_000), "0"),
            ("no recorded mint", 1_300, None, "0.01"),
        ] {
            assert_eq!(exit_load_rate(w("0.01"), 300, now, last).unwrap(), w(want), "{name}");
        }
        // 2%/yr on notional 30 000 for a year is 600; for a day 600/365 (floored).
        assert_eq!(streaming_fee(w("30000"), w("0.02"), YEAR).unwrap(), w("600"));
        assert_eq!(streaming_fee(w("30000"), w("0.02"), 86_400).unwrap(), w("600") / U256::from(365));
        // Back-off 1, 2, 4, 8 minutes.
        assert_eq!([0, 1, 2, 3].map(|f| next_attempt(0, 60, f)), [60, 120, 240, 480]);
        assert_eq!(next_attempt(5, 60, 200), u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn mint_and_redeem_pricing() {
        // A 3x long mint of 1000 at P 2000 buys 1.5 base; a fill 2 above costs 3.
        let d = implied_trade(Side::Long, true, w("1000"), w("3"), w("2000")).unwrap();
        assert_eq!(d, I256::try_from(w("1.5")).unwrap());
        assert_eq!(impact(d, w("2000"), w("2002")).unwrap(), w("3"));
        assert_eq!(impact(d, w("2000"), w("1998")).unwrap(), U256::ZERO, "a favourable fill is not charged");
        // Redeeming a long sells: adverse below the oracle (keel's §2.12.1 choice).
        let r = implied_trade(Side::Long, false, w("1000"), w("3"), w("2000")).unwrap();
        assert!(r.is_negative());
        assert_eq!(impact(r, w("2000"), w("1998")).unwrap(), w("3"));
        assert_eq!(impact(r, w("2000"), w("2002")).unwrap(), U256::ZERO);
        // A short mint sells.
        assert!(implied_trade(Side::Short, true, w("1000"), w("3"), w("2000")).unwrap().is_negative());
        // Tokens out at an exchange rate of 2: (1000 − 3) / 2.
        assert_eq!(mint_out(w("1000"), w("3"), w("2")).unwrap(), w("498.5"));
        assert_eq!(exchange_rate(w("5"), U256::ZERO).unwrap(), WAD, "1.0 with no supply");
        assert!(mint_out(w("1"), w("3"), w("2")).is_err(), "impact above the amount is an error, not a wrap");
        // Limit: 2% above the fill when buying, fill / 1.02 when selling.
        assert_eq!(limit_price(w("100"), I256::ONE, w("0.02")).unwrap(), w("102"));
        assert_eq!(limit_price(w("102"), I256::MINUS_ONE, w("0.02")).unwrap(), w("100"));
        // Cap: 1000 base × 2000 × 80%.
        assert_eq!(max_base_asset_amount(w("1000"), w("2000"), w("0.2")).unwrap(), w("1600000"));
    }

    #[test]
    fn settings_rules_name_their_field() {
        let ok = ThresholdSettings::defaults(Side::Long, w("3"), w("0.1"));
        assert!(ok.violations(w("55")).is_empty());
        for (name, l, theta, field, rule) in [
            ("zero leverage", "0", "0.1", "target_leverage", "ZeroLeverage"),
            ("three decimals", "2.125", "0.1", "target_leverage", "MaxOfTwoDecimals"),
            ("above half the venue max", "28", "0.1", "target_leverage", "MaxLeverage"),
            ("threshold too small", "3", "0.005", "rebalance_threshold", "must be within 1%..80%"),
            ("threshold too large", "3", "0.81", "rebalance_threshold", "must be within 1%..80%"),
        ] {
            let v = ThresholdSettings::defaults(Side::Long, w(l), w(theta)).violations(w("55"));
            assert!(
                v.iter().any(
                    |e| matches!(e, ThresholdError::Invalid { field: f, rule: r, .. } if *f == field && *r == rule)
                ),
                "{name}: {v:?}"
            );
        }
        let msg = ThresholdSettings::defaults(Side::Long, w("28"), w("0.1")).violations(w("55"))[0].to_string();
        assert!(msg.contains("target_leverage") && msg.contains("27.5"), "{msg}");
    }
}
