//! Drive a PerpV2 FLI token (`keel_core::strategy::fli::perp_token`) through a price path.
//!
//! Order of events inside a block: the price moves; makers re-centre the vAMM's liquidity once
//! the price has moved 20% from where it was placed; an arbitrageur moves the vAMM to the index
//! (so the pool premium, and with it funding, stays near zero; funding is accrued on what
//! premium remains); anyone liquidates an account under its maintenance margin; the keeper
//! reads `shouldRebalance` and calls `rebalance`, `iterateRebalance` or `ripcord` (the
//! ripcord paying its reward to the caller). The token is issued and engaged before the first
//! block, its TWAP completed at the first blocks' pace.

use crate::agents::HolderConfig;
use crate::prices::PriceSource;
use keel_core::math::{I256, U256, WAD};
use keel_core::product::PerpProduct;
use keel_core::strategy::fli::ShouldRebalance;
use keel_core::strategy::fli::perp_token::{PerpFliToken, vamm};
use keel_core::venue::amm::sqrt_price_x96_from_ratio;
use keel_core::venue::perp_v2::{PerpV2Market, PerpV2Params};
use serde::Serialize;
use thiserror::Error;

/// Why a run stopped.
#[derive(Debug, Error)]
pub enum PerpRunError {
    /// The token could not be built or engaged.
    #[error("cannot start: {0}")]
    Start(String),
    /// A price could not be used.
    #[error("price {0} at {1} cannot be used (must be finite and positive)")]
    Price(f64, u64),
}

/// Summary of a PerpV2 FLI run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerpFliSummary {
    /// The product's symbol.
    pub symbol: String,
    /// Blocks simulated.
    pub blocks: u64,
    /// Simulated days.
    pub days: f64,
    /// Underlying return.
    pub underlying_return: f64,
    /// NAV-per-token return.
    pub token_return: f64,
    /// The ideal constant-leverage token's return.
    pub ideal_return: f64,
    /// Annualised tracking error of daily log returns against the ideal.
    pub tracking_error: f64,
    /// Worst peak-to-trough drawdown of daily NAV.
    pub max_drawdown: f64,
    /// Daily log returns of NAV (for sweeps; not in summary.json).
    #[serde(skip)]
    pub daily_nav_returns: Vec<f64>,
    /// `rebalance` calls.
    pub rebalances: u64,
    /// `iterateRebalance` calls.
    pub iterations: u64,
    /// `ripcord` calls.
    pub ripcords: u64,
    /// Keeper calls the strategy refused (slippage bound, margin): the first reason kept.
    pub failed_calls: u64,
    /// The first refusal.
    pub first_failure: Option<String>,
    /// Liquidations.
    pub liquidations: u64,
    /// Holder issues that went through.
    pub mints: u64,
    /// Holder redeems that went through.
    pub redeems: u64,
    /// Holder flows refused (a withdrawal the margin rules would not allow).
    pub refused_flows: u64,
    /// Highest |leverage ratio| seen.
    pub max_leverage: f64,
    /// Share of engaged blocks with |LR| outside [min, max].
    pub time_outside_band: f64,
    /// vAMM fees paid, USD.
    pub pool_fees: f64,
    /// Ether paid as ripcord rewards.
    pub ether_rewards: f64,
    /// Streaming fee taken from holders (supply minted to the fee recipient, valued at NAV), USD.
    pub streaming_fee: f64,
    /// Gas the keeper paid for its calls (Optimism-like fees, default `GasUnits`; ETH at the base
    /// price for an ETH market, else a flat $2 000), USD.
    pub gas_keeper: f64,
    /// Samples for charts: (time, price, NAV per token / NAV₀, ideal, |leverage|), hourly.
    #[serde(skip)]
    pub series: Vec<(u64, f64, f64, f64, f64)>,
}

fn wad_price(p: f64, t: u64) -> Result<U256, PerpRunError> {
    crate::units::price_wad(p).ok_or(PerpRunError::Price(p, t))
}

use crate::units::wad_f64 as f;

fn fi(x: I256) -> f64 {
    let v = f(x.unsigned_abs());
    if x.is_negative() { -v } else { v }
}

/// Run `product` over `source` with `tvl_usd` issued at 100 USD a token; the vAMM holds
/// `pool_tvl_usd` of liquidity at the 0.05% fee tier. No holder flows.
pub fn run_perp_fli(
    product: &PerpProduct,
    source: &mut dyn PriceSource,
    tvl_usd: f64,
    pool_tvl_usd: f64,
) -> Result<PerpFliSummary, PerpRunError> {
    let none = HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
    run_perp_fli_with_flows(product, source, tvl_usd, pool_tvl_usd, &none, 0)
}

/// [`run_perp_fli`] with Poisson holder issues and redeems for cash at NAV (exponential sizes
/// in USD; a redeem takes at most half the supply), drawn from `seed`, before the keeper each
/// block. Refusals (the initial-margin rule on withdrawals) are counted, not fatal.
pub fn run_perp_fli_with_flows(
    product: &PerpProduct,
    source: &mut dyn PriceSource,
    tvl_usd: f64,
    pool_tvl_usd: f64,
    flows: &HolderConfig,
    seed: u64,
) -> Result<PerpFliSummary, PerpRunError> {
    let t0 = source.start_time();
    let p0 = source.start_price();
    let price0 = wad_price(p0, t0)?;
    let start = |e: String| PerpRunError::Start(e);
    let mut fli = product.strategy().map_err(|e| start(e.to_string()))?;
    fli.ether_balance = U256::from(1_000u64) * WAD;
    let params = PerpV2Params {
        im_ratio: product.initial_margin_ratio.0,
        mm_ratio: product.maintenance_margin_ratio.0,
        liquidation_penalty_ratio: product.liquidation_penalty.0,
        ..PerpV2Params::default()
    };
    let pool_tvl = U256::from(pool_tvl_usd.max(1.0) as u128) * WAD;
    let pool = vamm(price0, pool_tvl, 500).map_err(|e| start(e.to_string()))?;
    let mut pool_center = p0;
    let collateral = U256::from((tvl_usd.max(1.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64);
    let supply = collateral / U256::from(100u64);
    let mut token = PerpFliToken::new(fli, PerpV2Market::new(params, t0), pool, collateral, supply, price0)
        .map_err(|e| start(e.to_string()))?;
    token.engage(t0).map_err(|e| start(format!("engage: {e}")))?;
    let nav0 = token.nav_per_token().map(f).map_err(|e| start(e.to_string()))?;
    let target = fi(product.methodology.target_leverage_ratio);
    let (lo, hi) = (fi(product.methodology.min_leverage_ratio).abs(), fi(product.methodology.max_leverage_ratio).abs());
    let mut s = PerpFliSummary { symbol: product.token.symbol.clone(), ..Default::default() };
    let (mut ideal, mut prev) = (1.0f64, p0);
    let (mut counted, mut outside) = (0u64, 0u64);
    let mut daily = vec![(1.0f64, 1.0f64)];
    let mut next_day = t0 + 86_400;
    let mut now = t0;
    let mut fees = U256::ZERO;
    let mut arrivals = crate::agents::PoissonFlows::new(flows, t0, seed);
    let streaming = product.token.streaming_fee.0;
    let mut last_fee = t0;
    let units = crate::agents::GasUnits::default();
    let gwei = crate::clock::OPTIMISM.base_gas_gwei;
    let mut next_sample = t0;
    let mut engaged = false; // samples start once the engage TWAP is done
    // gas is paid in ETH: valued at the base price for an ETH market, else at a flat $2 000
    let eth_market = product.base.to_uppercase().contains("ETH");
    let eth_usd = |p: f64| if eth_market { p } else { 2_000.0 };
    while let Some(tick) = source.next_tick() {
        now = tick.time;
        s.blocks += 1;
        let p = wad_price(tick.price, now)?;
        ideal *= (1.0 + target * (tick.price / prev - 1.0)).max(0.0);
        prev = tick.price;
        token.index_price = p;
        if (tick.price / pool_center - 1.0).abs() > 0.2
            && let Ok(pool) = vamm(p, pool_tvl, 500)
        {
            token.pool = pool;
            pool_center = tick.price;
        }
        if let Ok(sqrt) = sqrt_price_x96_from_ratio(p, WAD) {
            let _ = token.pool.move_price_to(sqrt);
        }
        let _ = token.market.accrue_funding(now, p, p);
        if token.market.is_liquidatable(p).unwrap_or(false) && token.market.liquidate(p).is_ok() {
            s.liquidations += 1;
        }
        let lr = token.leverage_ratio(now).map(fi).unwrap_or(0.0).abs();
        if twap_done(&token) {
            counted += 1;
            if lr < lo || lr > hi {
                outside += 1;
            }
        }
        s.max_leverage = s.max_leverage.max(lr);
        while let Some(usd) = arrivals.next_mint(now) {
            let amount = U256::from((usd.max(0.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match token.issue(amount) {
                Ok(_) => s.mints += 1,
                Err(_) => s.refused_flows += 1,
            }
        }
        while let Some(usd) = arrivals.next_redeem(now) {
            let nav = token.nav_per_token().map(f).unwrap_or(0.0);
            if nav <= 0.0 {
                continue;
            }
            let want = U256::from((usd / nav * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match token.redeem(want.min(token.supply / U256::from(2u64))) {
                Ok(_) => s.redeems += 1,
                Err(_) => s.refused_flows += 1,
            }
        }
        // the streaming fee, accrued daily by inflating supply to the fee recipient (Set's
        // StreamingFeeModule): holders' NAV per token falls by the fee
        if now >= last_fee + 86_400 && !streaming.is_zero() {
            let pct = U256::from(now - last_fee) * streaming / U256::from(keel_core::token::STREAMING_FEE_YEAR);
            if pct < WAD {
                let minted =
                    keel_core::math::mul_div_down(pct, token.supply, WAD - pct, "streaming fee").unwrap_or_default();
                token.supply += minted;
                s.streaming_fee += f(minted) * token.nav_per_token().map(f).unwrap_or(0.0);
            }
            last_fee = now;
        }
        let call = match token.should_rebalance(now) {
            Ok(ShouldRebalance::Rebalance) => Some(token.rebalance(now).map(|t| {
                s.rebalances += 1;
                t.fee
            })),
            Ok(ShouldRebalance::IterateRebalance) => Some(token.iterate_rebalance(now).map(|t| {
                s.iterations += 1;
                t.map(|t| t.fee).unwrap_or(U256::ZERO)
            })),
            Ok(ShouldRebalance::Ripcord) => Some(token.ripcord(now).map(|(t, paid)| {
                s.ripcords += 1;
                s.ether_rewards += f(paid);
                t.fee
            })),
            Ok(ShouldRebalance::None) | Err(_) => None,
        };
        let gas_units = match &call {
            None => 0,
            Some(Ok(_)) => units.rebalance,
            Some(Err(_)) => units.failed,
        };
        s.gas_keeper += gas_units as f64 * gwei * 1e-9 * eth_usd(tick.price);
        engaged |= twap_done(&token);
        if engaged && now >= next_sample {
            next_sample = now + 3_600;
            s.series.push((now, tick.price, token.nav_per_token().map(f).unwrap_or(0.0) / nav0, ideal, lr));
        }
        match call {
            Some(Ok(fee)) => fees += fee,
            Some(Err(e)) => {
                s.failed_calls += 1;
                s.first_failure.get_or_insert_with(|| format!("{e} (at {now})"));
            }
            None => {}
        }
        if now >= next_day {
            next_day += 86_400;
            daily.push((token.nav_per_token().map(f).unwrap_or(0.0) / nav0, ideal));
        }
    }
    let nav_end = token.nav_per_token().map(f).unwrap_or(0.0) / nav0;
    daily.push((nav_end, ideal));
    let (te, returns, dd) = crate::metrics::daily_stats(&daily);
    s.days = now.saturating_sub(t0) as f64 / 86_400.0;
    s.underlying_return = prev / p0 - 1.0;
    s.token_return = nav_end - 1.0;
    s.ideal_return = ideal - 1.0;
    (s.tracking_error, s.daily_nav_returns, s.max_drawdown) = (te, returns, dd);
    s.time_outside_band = if counted == 0 { 0.0 } else { outside as f64 / counted as f64 };
    s.pool_fees = f(fees);
    Ok(s)
}

fn twap_done(t: &PerpFliToken) -> bool {
    t.fli.twap_leverage_ratio.is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eth2x_perp_tracks_a_calm_year_and_delevers_through_the_crash() {
        let p = PerpProduct::from_toml(include_str!("../../../products/eth2x-perp.toml")).unwrap();
        let mut calm = crate::prices::scenario("calm", 2000.0, 1_704_067_200, 600, 1).unwrap();
        let s = run_perp_fli(&p, &mut calm, 1_000_000.0, 200_000_000.0).unwrap();
        assert_eq!((s.liquidations, s.ripcords), (0, 0), "{s:?}");
        assert!(s.rebalances > 0 && s.max_leverage < 2.5, "{s:?}");
        let gap = (1.0 + s.token_return) / (1.0 + s.ideal_return) - 1.0;
        assert!(gap.abs() < 0.05, "calm year: token {} vs ideal {}", s.token_return, s.ideal_return);
        let mut crash = crate::prices::scenario("crash", 2000.0, 1_704_067_200, 12, 1).unwrap();
        let c = run_perp_fli(&p, &mut crash, 1_000_000.0, 200_000_000.0).unwrap();
        // A keeper polling every 12 s block rebalances out of band without a cooldown, 10 vETH
        // a call, and keeps leverage under the 2.7 ripcord level through a −30% hour.
        assert_eq!((c.liquidations, c.failed_calls), (0, 0), "{c:?}");
        assert!(c.max_leverage > 2.3 && c.max_leverage < 2.7, "{c:?}");
    }

    #[test]
    fn a_short_token_through_a_tripling_market_keeps_trading() {
        // −2x through the `bull` scenario (ETH about ×4): the vAMM is re-centred as the price
        // leaves its liquidity, so no keeper call runs out of liquidity.
        let text = include_str!("../../../products/eth2x-perp.toml")
            .replace("target_leverage_ratio = \"2\"", "target_leverage_ratio = \"-2\"")
            .replace("min_leverage_ratio = \"1.7\"", "min_leverage_ratio = \"-1.7\"")
            .replace("max_leverage_ratio = \"2.3\"", "max_leverage_ratio = \"-2.3\"")
            .replace("incentivized_leverage_ratio = \"2.7\"", "incentivized_leverage_ratio = \"-2.7\"");
        let p = PerpProduct::from_toml(&text).unwrap();
        let mut src = crate::prices::scenario("bull", 2000.0, 1_704_067_200, 600, 1).unwrap();
        let s = run_perp_fli(&p, &mut src, 1_000_000.0, 200_000_000.0).unwrap();
        assert!(s.underlying_return > 1.0, "{s:?}");
        assert_eq!((s.failed_calls, s.liquidations), (0, 0), "{s:?}");
        assert!(s.token_return < 0.0 && s.max_leverage < 2.7, "{s:?}");
        let gap = (1.0 + s.token_return) / (1.0 + s.ideal_return) - 1.0;
        assert!(gap.abs() < 0.5, "token {} vs ideal {}", s.token_return, s.ideal_return);
    }

    #[test]
    fn holder_flows_are_issued_and_redeemed_at_nav() {
        let p = PerpProduct::from_toml(include_str!("../../../products/eth2x-perp.toml")).unwrap();
        let flows = HolderConfig { mints_per_day: 12.0, redeems_per_day: 12.0, mean_size_usd: 50_000.0 };
        let mut src = crate::prices::scenario("calm", 2000.0, 1_704_067_200, 300, 4).unwrap();
        let s = run_perp_fli_with_flows(&p, &mut src, 1_000_000.0, 200_000_000.0, &flows, 5).unwrap();
        assert!(s.mints > 2_000 && s.redeems > 2_000, "{s:?}");
        assert_eq!((s.liquidations, s.failed_calls), (0, 0), "{s:?}");
        // Redeeming for cash withdraws margin with the position unchanged, so a large redemption
        // can push leverage past the ripcord level; the keeper and ripcords bring it back.
        assert!(s.time_outside_band < 0.01, "back inside the band almost always: {}", s.time_outside_band);
    }
}
