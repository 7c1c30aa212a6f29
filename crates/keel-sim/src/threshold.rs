//! Drive a threshold token (`keel_core::strategy::threshold::token`) on its Synthetix-style
//! market through a price path, block by block.
//!
//! Order of events inside a block: the price moves; a venue keeper executes the token's pending
//! delayed order once it is older than the minimum age (or cancels it past the maximum age);
//! anyone liquidates a liquidatable position; the token's keeper evaluates (close under the
//! minimum margin, else a full rebalance when the trigger holds), backing off after a failure
//! for 1, 2, 4, 8 … minutes as TLX's keeper does (§2.11). Only keel-core operations are
//! called. The rest of the market is one arbitrage account that trades the skew back to zero at
//! the end of every block in which it moved: the token's own orders still pay their fill
//! premium, but funding does not run away as it would on a market holding one position (the
//! velocity model keeps raising the rate while any skew remains).

use crate::agents::HolderConfig;
use crate::prices::PriceSource;
use keel_core::math::U256;
use keel_core::product::ThresholdProduct;
use keel_core::strategy::threshold::Side;
use keel_core::strategy::threshold::token::{Evaluation, ThresholdToken};
use serde::Serialize;
use std::io::Write;
use thiserror::Error;

/// Why a run stopped.
#[derive(Debug, Error)]
pub enum ThresholdRunError {
    /// The first deposit was refused.
    #[error("cannot issue the first tokens: {0}")]
    Start(String),
    /// A price could not be represented (non-finite, non-positive or too large).
    #[error("price {0} at {1} cannot be used (must be finite and positive)")]
    Price(f64, u64),
    /// Writing the time series failed.
    #[error("cannot write the time series: {0}")]
    Io(#[from] std::io::Error),
}

/// Summary of a threshold run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ThresholdSummary {
    /// The product's symbol.
    pub symbol: String,
    /// Blocks simulated.
    pub blocks: u64,
    /// Simulated days.
    pub days: f64,
    /// Underlying return over the run.
    pub underlying_return: f64,
    /// Token NAV-per-token return.
    pub token_return: f64,
    /// The ideal constant-leverage token's return (rebalanced every block, no costs).
    pub ideal_return: f64,
    /// Annualised tracking error of daily log returns against the ideal token.
    pub tracking_error: f64,
    /// Worst peak-to-trough drawdown of daily NAV.
    pub max_drawdown: f64,
    /// Daily log returns of NAV per token (for VaR in sweeps; not written to summary.json).
    #[serde(skip)]
    pub daily_nav_returns: Vec<f64>,
    /// Rebalance orders submitted by the keeper.
    pub rebalances: u64,
    /// Orders filled by the venue keeper.
    pub orders_filled: u64,
    /// Orders cancelled after the maximum age.
    pub orders_cancelled: u64,
    /// Orders the venue refused at execution (limit, margin), retried or cancelled later.
    pub orders_refused: u64,
    /// Keeper evaluations that failed, each followed by a back-off (the first reason is kept in
    /// `first_failure`).
    pub failed_evaluations: u64,
    /// The first failed evaluation's reason.
    pub first_failure: Option<String>,
    /// Times the position was closed under the minimum margin.
    pub closes: u64,
    /// Liquidations.
    pub liquidations: u64,
    /// Holder mints that went through.
    pub mints: u64,
    /// Holder redeems that went through.
    pub redeems: u64,
    /// Holder mints and redeems refused (pending-order lock, limits, exit load floors).
    pub refused_flows: u64,
    /// Reverse splits (NAV per token is reported per original token, i.e. undoing them).
    pub reverse_splits: u64,
    /// Highest leverage seen at a block's start.
    pub max_leverage: f64,
    /// Share of blocks with leverage outside [L − θ, L + θ].
    pub time_outside_band: f64,
    /// Fees kept by the token's fee recipient (keeper, streaming, redemption), USD.
    pub fees_to_recipient: f64,
    /// Venue trading fees paid by the token, USD.
    pub venue_fees: f64,
    /// Delayed-order keeper deposits paid to venue keepers, USD.
    pub keeper_deposits: f64,
}

fn wad_price(p: f64, t: u64) -> Result<U256, ThresholdRunError> {
    crate::units::price_wad(p).ok_or(ThresholdRunError::Price(p, t))
}

use crate::units::wad_f64 as f;

/// Run `product` over `source`, starting with `deposit_usd` minted by one holder, with no
/// holder flows. `series`, when given, receives one CSV row per `sample_every` seconds.
pub fn run_threshold(
    product: &ThresholdProduct,
    source: &mut dyn PriceSource,
    deposit_usd: f64,
    sample_every: u64,
    series: Option<&mut dyn Write>,
) -> Result<ThresholdSummary, ThresholdRunError> {
    let none = HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
    run_threshold_with_flows(product, source, deposit_usd, sample_every, series, &none, 0)
}

/// [`run_threshold`] with Poisson holder mints and redeems (exponential sizes in USD; a redeem
/// takes at most half the holders' balance), drawn from `seed`, before the keeper each block.
/// Refusals (the pending-order lock, limits) are counted, not fatal.
pub fn run_threshold_with_flows(
    product: &ThresholdProduct,
    source: &mut dyn PriceSource,
    deposit_usd: f64,
    sample_every: u64,
    mut series: Option<&mut dyn Write>,
    flows: &HolderConfig,
    seed: u64,
) -> Result<ThresholdSummary, ThresholdRunError> {
    let t0 = source.start_time();
    let p0 = source.start_price();
    let mut token: ThresholdToken = product.build(t0);
    let deposit = U256::from((deposit_usd.max(0.0) * 1e6).round() as u128) * U256::from(1_000_000_000_000u64);
    token
        .mint("holders", deposit, U256::ZERO, t0, wad_price(p0, t0)?)
        .map_err(|e| ThresholdRunError::Start(e.to_string()))?;
    const ARB: u64 = 2;
    token
        .market
        .transfer_margin(
            ARB,
            keel_core::math::I256::try_from(U256::from(10u64).pow(U256::from(30))).unwrap_or_default(),
            t0,
            wad_price(p0, t0)?,
        )
        .map_err(|e| ThresholdRunError::Start(e.to_string()))?;
    let l = f(product.settings.target_leverage);
    let theta = f(product.settings.rebalance_threshold);
    let beta = if product.settings.side == Side::Long { l } else { -l };
    let nav0 = 1.0f64;
    let mut ideal = 1.0f64;
    let mut prev = p0;
    let mut s = ThresholdSummary { symbol: product.symbol.clone(), ..Default::default() };
    let (mut outside, mut counted) = (0u64, 0u64);
    let mut last_sample = 0u64;
    if let Some(w) = series.as_deref_mut() {
        writeln!(w, "time,price,nav_per_token,ideal,leverage,size,margin")?;
    }
    let mut now = t0;
    let (mut next_attempt, mut failures) = (0u64, 0u32);
    let mut split_factor = 1.0f64;
    let mut arrivals = crate::agents::PoissonFlows::new(flows, t0, seed);
    let mut daily = vec![(1.0f64, 1.0f64)];
    let mut next_day = t0 + 86_400;
    while let Some(tick) = source.next_tick() {
        now = tick.time;
        s.blocks += 1;
        let p = wad_price(tick.price, now)?;
        ideal *= (1.0 + beta * (tick.price / prev - 1.0)).max(0.0);
        prev = tick.price;
        // Venue keeper: fills the order as soon as it is executable — within the block, at
        // `intention + min age + 1 s` when blocks are longer than that — at this block's price.
        if let Some(order) = token.market.orders.get(&token.account).cloned() {
            let exec_time = now.min(order.intention_time + token.market.params.delayed_order_min_age + 1);
            if exec_time > order.intention_time + token.market.params.delayed_order_min_age {
                let fee = token
                    .market
                    .fill_price(order.size_delta, p)
                    .and_then(|fp| token.market.order_fee(order.size_delta, fp))
                    .unwrap_or(U256::ZERO);
                match token.market.execute_delayed_order(token.account, exec_time, p, false) {
                    Ok((_, paid)) => {
                        s.orders_filled += 1;
                        s.keeper_deposits += f(paid);
                        s.venue_fees += f(fee);
                    }
                    Err(_) => s.orders_refused += 1,
                }
            }
            // Still pending after the maximum age (refused at execution): cancelled.
            if token.pending()
                && now.saturating_sub(order.intention_time) >= token.market.params.delayed_order_max_age
                && token.market.cancel_delayed_order(token.account, now, p, false).is_ok()
            {
                s.orders_cancelled += 1;
                s.keeper_deposits += f(order.keeper_deposit);
            }
        }
        if !token.market.skew.is_zero() {
            let k = token.market.skew;
            let _ = token.market.modify_position(ARB, -k, now, p, None);
        }
        if token.market.can_liquidate(token.account, now, p).unwrap_or(false)
            && token.market.liquidate(token.account, now, p).is_ok()
        {
            s.liquidations += 1;
        }
        while let Some(usd) = arrivals.next_mint(now) {
            let amount = U256::from((usd.max(0.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match token.mint("holders", amount, U256::ZERO, now, p) {
                Ok(_) => s.mints += 1,
                Err(_) => s.refused_flows += 1,
            }
        }
        while let Some(usd) = arrivals.next_redeem(now) {
            let rate = token.exchange_rate(now, p).map(f).unwrap_or(0.0);
            let held = token.balances.get("holders").copied().unwrap_or(U256::ZERO);
            if rate <= 0.0 || held.is_zero() {
                continue;
            }
            let want = U256::from((usd / rate * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match token.redeem("holders", want.min(held / U256::from(2u64)), U256::ZERO, now, p) {
                Ok(_) => s.redeems += 1,
                Err(_) => s.refused_flows += 1,
            }
        }
        let lev = token.leverage(now, p).map(f).unwrap_or(0.0);
        if token.size() != keel_core::math::I256::ZERO {
            counted += 1;
            if (lev - l).abs() > theta {
                outside += 1;
            }
            s.max_leverage = s.max_leverage.max(lev);
        }
        if now >= next_attempt {
            match token.evaluate(now, p) {
                Ok(e) => {
                    failures = 0;
                    match e {
                        Evaluation::Rebalanced(_) => s.rebalances += 1,
                        Evaluation::Closed => s.closes += 1,
                        Evaluation::ReverseSplit(f) => {
                            s.reverse_splits += 1;
                            split_factor *= f as f64;
                        }
                        Evaluation::Idle => {}
                    }
                }
                Err(e) => {
                    s.failed_evaluations += 1;
                    s.first_failure.get_or_insert_with(|| format!("{e} (at {now})"));
                    next_attempt = keel_core::strategy::threshold::next_attempt(now, 60, failures);
                    failures = failures.saturating_add(1).min(16);
                }
            }
        }
        if now >= next_day {
            next_day += 86_400;
            daily.push((token.exchange_rate(now, p).map(f).unwrap_or(0.0) / split_factor, ideal));
        }
        if let Some(w) = series.as_deref_mut()
            && now >= last_sample + sample_every
        {
            last_sample = now;
            let nav = token.exchange_rate(now, p).map(f).unwrap_or(0.0) / split_factor;
            let pos = token.market.positions.get(&token.account).cloned().unwrap_or_default();
            writeln!(
                w,
                "{now},{},{nav:.8},{:.8},{lev:.6},{},{}",
                tick.price,
                ideal * nav0,
                keel_core::math::SignedWad(pos.size),
                f(pos.margin)
            )?;
        }
    }
    let p_end = wad_price(prev, now)?;
    s.days = now.saturating_sub(t0) as f64 / 86_400.0;
    s.underlying_return = prev / p0 - 1.0;
    s.token_return = token.exchange_rate(now, p_end).map(f).unwrap_or(0.0) / split_factor / nav0 - 1.0;
    s.ideal_return = ideal - 1.0;
    s.time_outside_band = if counted == 0 { 0.0 } else { outside as f64 / counted as f64 };
    s.fees_to_recipient = f(token.fees_collected);
    daily.push((1.0 + s.token_return, ideal));
    let (te, returns, dd) = crate::metrics::daily_stats(&daily);
    (s.tracking_error, s.daily_nav_returns, s.max_drawdown) = (te, returns, dd);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prices::FixedPath;

    const PRODUCT: &str = include_str!("../../../products/eth-3x-threshold.toml");

    #[test]
    fn a_steady_fall_rebalances_every_theta_over_l() {
        let p = ThresholdProduct::from_toml(PRODUCT).unwrap();
        // −1% a minute for 20 minutes at 2 s blocks (30 blocks a minute).
        let mut prices = vec![2000.0];
        for _ in 0..(20 * 30) {
            let last = *prices.last().unwrap();
            prices.push(last * (1.0 - 0.01 / 30.0));
        }
        let mut src = FixedPath::new(1_700_000_000, 2, prices);
        let s = run_threshold(&p, &mut src, 100_000.0, 3_600, None).unwrap();
        // ETH falls ~18%; θ/L = 3.33% a trigger: about 5–6 rebalances beyond the first open.
        assert!((4..=8).contains(&s.rebalances), "{s:?}");
        assert_eq!(s.orders_filled, s.rebalances + 1, "the mint's open plus every rebalance filled");
        assert_eq!(s.liquidations, 0);
        // A 3x token on a steady fall loses less than 3× the move but more than the ideal
        // compounding token (it rebalances late), and pays fees.
        assert!(s.token_return < 0.0 && s.token_return > 3.0 * s.underlying_return, "{s:?}");
        assert!(s.max_leverage > 3.1 && s.max_leverage < 3.5, "{s:?}");
    }

    #[test]
    fn frictionless_with_a_tight_threshold_tracks_the_ideal_token() {
        for (name, text, scenario_name) in [
            ("3x long, default", PRODUCT, "default"),
            ("−1x short, bear", include_str!("../../../products/eth-minus1x-threshold.toml"), "bear"),
        ] {
            let text = text
                .replace("streaming_fee = \"2%\"", "streaming_fee = \"0\"")
                .replace("rebalance_fee = \"5\"", "rebalance_fee = \"0\"")
                .replace("taker_fee = \"0.06%\"", "taker_fee = \"0\"")
                .replace("maker_fee = \"0.0001%\"", "maker_fee = \"0\"")
                .replace("min_keeper_fee = \"4\"", "min_keeper_fee = \"0\"")
                .replace("rebalance_threshold = \"10%\"", "rebalance_threshold = \"1%\"")
                .replace("rebalance_threshold = \"3%\"", "rebalance_threshold = \"1%\"");
            let p = ThresholdProduct::from_toml(&text).unwrap();
            let mut src = crate::prices::scenario(scenario_name, 2000.0, 1_704_067_200, 60, 7).unwrap();
            let s = run_threshold(&p, &mut src, 100_000.0, 86_400, None).unwrap();
            assert!(s.rebalances > 500, "{name}: {s:?}");
            assert_eq!((s.liquidations, s.failed_evaluations), (0, 0), "{name}: {s:?}");
            let gap = (1.0 + s.token_return) / (1.0 + s.ideal_return) - 1.0;
            assert!(gap.abs() < 0.02, "{name}: token {} vs ideal {}: {gap}", s.token_return, s.ideal_return);
        }
    }

    #[test]
    fn the_bear_survives_a_bull_market_inside_its_safety_caps() {
        let p = ThresholdProduct::from_toml(include_str!("../../../products/eth-minus2x-bear.toml")).unwrap();
        let mut src = crate::prices::scenario("bull", 2000.0, 1_704_067_200, 300, 3).unwrap();
        let s = run_threshold(&p, &mut src, 1_000_000.0, 86_400, None).unwrap();
        assert!(s.underlying_return > 0.5, "{s:?}");
        assert_eq!((s.liquidations, s.failed_evaluations), (0, 0), "{s:?}");
        // The LSM floor caps a short at N/V 2.62 (m 6.25%, 30%); at 5-minute blocks a jump can
        // overshoot it before the next evaluation, but never by much.
        assert!(s.max_leverage < 2.9, "{s:?}");
        assert!(s.token_return > -1.0 && s.token_return < 0.0, "{s:?}");
    }

    #[test]
    fn holder_flows_mint_and_redeem_around_the_pending_lock() {
        let p = ThresholdProduct::from_toml(PRODUCT).unwrap();
        let flows = HolderConfig { mints_per_day: 24.0, redeems_per_day: 24.0, mean_size_usd: 5_000.0 };
        let run = || {
            let mut src = crate::prices::scenario("zigzag", 2000.0, 1_704_067_200, 60, 2).unwrap();
            run_threshold_with_flows(&p, &mut src, 100_000.0, 86_400, None, &flows, 9).unwrap()
        };
        let s = run();
        assert!(s.mints > 500 && s.redeems > 500, "{s:?}");
        assert_eq!(s.liquidations, 0);
        // Same seed, same run.
        assert_eq!(serde_json::to_string(&s).unwrap(), serde_json::to_string(&run()).unwrap());
    }
}
