//! What a run records: time-series rows, event rows and the summary.

use serde::Serialize;
use std::borrow::Cow;

/// One sampled row of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesRow {
    /// Unix seconds.
    pub time: u64,
    /// Block number.
    pub block: u64,
    /// Reference (market) price of the underlying, USD, at this row's block (the close).
    pub price: f64,
    /// Lowest reference price since the previous row (every block, this one included).
    pub price_low: f64,
    /// Highest reference price since the previous row.
    pub price_high: f64,
    /// Oracle answer, USD.
    pub oracle_price: f64,
    /// Pool price of the underlying, USD.
    pub pool_price: f64,
    /// Leverage ratio (collateral value / equity) at this row's block.
    pub leverage: f64,
    /// Lowest leverage since the previous row, once engaged (NaN before), measured every block
    /// right after the price moved and at the row.
    pub leverage_low: f64,
    /// Highest leverage since the previous row, measured as `leverage_low` is; the summary's
    /// `max_leverage` is the largest of these.
    pub leverage_high: f64,
    /// NAV per token, USD, at this row's block.
    pub nav: f64,
    /// Lowest NAV per token since the previous row (every block).
    pub nav_low: f64,
    /// Highest NAV per token since the previous row.
    pub nav_high: f64,
    /// NAV of an ideal token rebalanced every block at the target with no costs.
    pub ideal_nav: f64,
    /// Value of holding the underlying from the start, scaled to the starting NAV.
    pub hold_nav: f64,
    /// Collateral, whole units.
    pub collateral: f64,
    /// Debt, whole units.
    pub debt: f64,
    /// Health factor on the lending market, or the venue's margin ratio (f64::INFINITY
    /// without debt), at this row's block.
    pub health_factor: f64,
    /// Lowest health since the previous row, once engaged (NaN before); the summary's
    /// `min_health_factor` is the smallest of these.
    pub health_low: f64,
    /// Gas price, gwei.
    pub gas_gwei: f64,
    /// Token supply, whole tokens.
    pub supply: f64,
    /// Costs paid so far (every kind in `CostBreakdown`), USD.
    pub costs_usd: f64,
    /// Funding paid so far on a perp venue, net of funding received, USD (0 elsewhere).
    pub funding_usd: f64,
}

/// One event: a keeper call (successful or failed), a liquidation, a mint or a redeem.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventRow {
    /// Unix seconds.
    pub time: u64,
    /// Block number.
    pub block: u64,
    /// `engage`, `rebalance`, `iterate`, `ripcord`, `disengage`, `liquidation`, `mint`,
    /// `redeem`, or `<call>_failed`.
    pub kind: Cow<'static, str>,
    /// Who acted (`keeper`, `bot-N`, `liquidator`, `holders`).
    pub actor: Cow<'static, str>,
    /// Leverage before (from the event, or measured).
    pub leverage_before: f64,
    /// Target of the call.
    pub target: f64,
    /// Chunk traded, collateral whole units (tokens for mint/redeem).
    pub chunk: f64,
    /// Total needed to reach the target, collateral whole units.
    pub total: f64,
    /// USD sold.
    pub sold_usd: f64,
    /// USD bought, at the oracle.
    pub bought_usd: f64,
    /// Pool fee, USD.
    pub pool_fee_usd: f64,
    /// Price impact (execution shortfall beyond the fee), USD.
    pub impact_usd: f64,
    /// Gas, USD.
    pub gas_usd: f64,
    /// Ripcord reward paid, ETH.
    pub reward_eth: f64,
    /// The revert reason of a failed call.
    pub error: String,
}

/// Costs by kind, USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CostBreakdown {
    /// Pool fees paid by the token's trades.
    pub pool_fees: f64,
    /// Price impact of the token's trades beyond the fee.
    pub price_impact: f64,
    /// Gas paid by the operator's keeper (successful and failed calls).
    pub gas_keeper: f64,
    /// Gas paid by public ripcord bots.
    pub gas_bots: f64,
    /// Net interest: debt interest paid minus collateral interest earned.
    pub interest: f64,
    /// Ripcord rewards paid from the strategy's ether balance.
    pub ether_rewards: f64,
    /// Streaming fee minted to the fee recipient, at NAV.
    pub streaming_fee: f64,
    /// Mint and redeem fees, at NAV.
    pub mint_redeem_fees: f64,
    /// Deposits paid to a venue's keepers for executing the token's delayed orders.
    pub venue_keeper_fees: f64,
    /// Funding paid on a perp venue, net of funding received (negative: received).
    pub funding: f64,
}

impl CostBreakdown {
    /// The number of cost kinds.
    pub const KINDS: usize = 10;

    /// Every kind's amount, in field order.
    pub fn values(&self) -> [f64; Self::KINDS] {
        [
            self.pool_fees,
            self.price_impact,
            self.gas_keeper,
            self.gas_bots,
            self.interest,
            self.ether_rewards,
            self.streaming_fee,
            self.mint_redeem_fees,
            self.venue_keeper_fees,
            self.funding,
        ]
    }

    /// The breakdown from every kind's amount, in field order.
    pub fn from_values(v: [f64; Self::KINDS]) -> Self {
        let [
            pool_fees,
            price_impact,
            gas_keeper,
            gas_bots,
            interest,
            ether_rewards,
            streaming_fee,
            mint_redeem_fees,
            venue_keeper_fees,
            funding,
        ] = v;
        CostBreakdown {
            pool_fees,
            price_impact,
            gas_keeper,
            gas_bots,
            interest,
            ether_rewards,
            streaming_fee,
            mint_redeem_fees,
            venue_keeper_fees,
            funding,
        }
    }

    /// Every kind's amount transformed by `f(self, other)`, kind by kind.
    pub fn zip_with(&self, other: &CostBreakdown, f: impl Fn(f64, f64) -> f64) -> Self {
        let (a, b) = (self.values(), other.values());
        Self::from_values(std::array::from_fn(|i| f(a[i], b[i])))
    }

    /// The sum of every kind, added in field order.
    pub fn total(&self) -> f64 {
        let v = self.values();
        v[1..].iter().fold(v[0], |sum, x| sum + x)
    }
}

/// Counts of what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// engage calls.
    pub engages: u64,
    /// rebalance calls.
    pub rebalances: u64,
    /// iterateRebalance calls.
    pub iterations: u64,
    /// ripcord calls.
    pub ripcords: u64,
    /// Liquidations of the token's account.
    pub liquidations: u64,
    /// Holder mints.
    pub mints: u64,
    /// Holder redeems.
    pub redeems: u64,
    /// Keeper or bot calls that reverted on chain (state changed after their dry run).
    pub failed_calls: u64,
    /// Calls a dry run showed would revert, so they were not sent.
    pub skipped_calls: u64,
    /// Blocks where ripcord was due but no bot found it profitable.
    pub unprofitable_ripcord_blocks: u64,
    /// Positions closed under the minimum margin (threshold tokens' emergency action).
    pub closes: u64,
    /// Reverse splits (the continuous token).
    pub reverse_splits: u64,
    /// Holder mints and redeems the token refused (limits, margin rules, a pending order).
    pub refused_flows: u64,
}

/// The run's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Product symbol.
    pub product: String,
    /// The token's kind (`lending-fli`, `perp-fli`, `threshold`, `daily`, `continuous`).
    pub kind: String,
    /// What `min_health_factor` measures on this venue: `health factor` or `margin ratio`.
    pub health_measure: String,
    /// Price source description.
    pub source: String,
    /// Seed.
    pub seed: u64,
    /// Seconds per block.
    pub block_time: u64,
    /// Blocks simulated.
    pub blocks: u64,
    /// First and last time, unix seconds.
    pub start: u64,
    /// Last time.
    pub end: u64,
    /// Days simulated.
    pub days: f64,
    /// Target exposure β to the underlying.
    pub target_exposure: f64,
    /// The methodology's band and ripcord level (leverage ratios).
    pub min_leverage_ratio: f64,
    /// Upper bound of the band.
    pub max_leverage_ratio: f64,
    /// Ripcord level.
    pub incentivized_leverage_ratio: f64,
    /// Underlying price at the start and the end.
    pub underlying_start: f64,
    /// Underlying price at the end.
    pub underlying_end: f64,
    /// Underlying return.
    pub underlying_return: f64,
    /// NAV per token at the start.
    pub nav_start: f64,
    /// NAV per token at the end.
    pub nav_end: f64,
    /// Token return.
    pub token_return: f64,
    /// Ideal token's return (rebalanced every block at the target, no costs).
    pub ideal_return: f64,
    /// Token return minus ideal return (a difference of returns, in return points).
    pub return_vs_ideal: f64,
    /// Annualised std-dev of daily log-return differences between token and ideal.
    pub tracking_error: f64,
    /// Annualised realised volatility of the underlying (block log returns).
    pub realised_volatility: f64,
    /// `exp((β−β²)/2 · Σ r²)`: the decay the continuous formula predicts.
    pub predicted_decay: f64,
    /// `(S_T/S_0)^β · decay − 1`.
    pub predicted_return: f64,
    /// What happened.
    pub counts: Counts,
    /// Costs by kind, USD.
    pub costs_usd: CostBreakdown,
    /// Lowest health seen — the health factor on a lending market, the margin ratio on a perp
    /// venue (`health_measure` says which).
    pub min_health_factor: f64,
    /// Highest leverage seen, each block right after the price moved.
    pub max_leverage: f64,
    /// Share of blocks (after the engage) with leverage outside [min, max].
    pub time_outside_band: f64,
    /// Worst single-block change of NAV per token.
    pub worst_block_nav_change: f64,
    /// Mean over episodes above the band of leverage points removed per minute (0 if none).
    pub delever_speed: f64,
    /// Longest episode above the band, minutes (how long delevering took).
    pub delever_minutes: f64,
    /// Problems the run passed over (CSV gaps allowed, ...).
    pub warnings: Vec<String>,
    /// Figures only this kind's venue has (orders filled, keeper deposits, vAMM fees, ...).
    pub venue: std::collections::BTreeMap<String, f64>,
    /// How the venue's funding was made (`off`, the premium process and its parameters, a
    /// replayed file); empty for a lending FLI, which pays interest instead.
    pub funding: String,
    /// What it takes to run this again (set by the command that started the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
}

/// What a run needs to be repeated exactly: keel's version, the product's file and settings,
/// the market's file and its hash, and the command that runs it again. The block time, the
/// horizon (`start`, `end`) and the seed are the summary's own fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInfo {
    /// keel's version (`keel --version`).
    pub keel_version: String,
    /// A `keel backtest` command line with every setting spelled out.
    pub command: String,
    /// The product file (or `built-in ETH2x-FLI`).
    pub product_file: String,
    /// SHA-256 of the product file's text, hex.
    pub product_sha256: String,
    /// The product file's text: every setting the run used.
    pub product_toml: String,
    /// The prices file, empty for a built-in scenario.
    pub prices_file: String,
    /// SHA-256 of the prices file, hex; empty for a built-in scenario.
    pub prices_sha256: String,
}

/// Where a run streams its rows and events as they happen.
pub trait Sink {
    /// A sampled time-series row.
    fn row(&mut self, row: &SeriesRow);
    /// An event.
    fn event(&mut self, event: &EventRow);
    /// Progress: blocks done, blocks expected (if known).
    fn progress(&mut self, _done: u64, _total: Option<u64>) {}
}

/// A sink that keeps nothing.
pub struct NullSink;

impl Sink for NullSink {
    fn row(&mut self, _row: &SeriesRow) {}
    fn event(&mut self, _event: &EventRow) {}
}

/// From daily (token NAV, ideal NAV) pairs: annualised tracking error of daily log returns
/// against the ideal, the token's daily log returns, and its worst peak-to-trough drawdown.
pub fn daily_stats(daily: &[(f64, f64)]) -> (f64, Vec<f64>, f64) {
    let pairs = || daily.windows(2).filter(|w| w[0].0 > 0.0 && w[1].0 > 0.0);
    let d: Vec<f64> = pairs().map(|w| (w[1].0 / w[0].0).ln() - (w[1].1 / w[0].1).ln()).collect();
    let n = d.len() as f64;
    let te = if n < 2.0 {
        0.0
    } else {
        let mean = d.iter().sum::<f64>() / n;
        (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) * 365.0).sqrt()
    };
    let returns = pairs().map(|w| (w[1].0 / w[0].0).ln()).collect();
    let mut peak = f64::MIN;
    let mut max_drawdown: f64 = 0.0;
    for (nav, _) in daily {
        peak = peak.max(*nav);
        if peak > 0.0 {
            max_drawdown = max_drawdown.max(1.0 - nav / peak);
        }
    }
    (te, returns, max_drawdown)
}
