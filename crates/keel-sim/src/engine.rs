//! A lending FLI token on its venue: the Aave-style market and its pools, with their agents,
//! driven by the one market loop ([`crate::market::run_market`]). Each block the venue's agents
//! act in this order: the oracle updater posts if the price deviated past the threshold or the
//! heartbeat passed; the arbitrageur trades
//! each pool back toward the reference price when that pays after fee; the liquidator liquidates
//! the token's account if its health factor is below 1; once a day LPs re-centre the pools'
//! liquidity after a 20% move. Holders, the keeper, ripcord bots, fees and metrics are the
//! loop's, the same for every kind of token. Interest accrues lazily, as on Aave and Compound:
//! each operation brings the reserves to its time, and balances are read at the block's time.
//!
//! Every change to the token goes through keel-core's public operations.

use crate::agents::{HolderConfig, KeeperConfig};
pub use crate::market::{HOLDERS, KEEPER, OPERATOR};
use crate::market::{MarketConfig, Settle, Venue, run_market};
use crate::metrics::{CostBreakdown, EventRow, Sink, Summary};
use crate::prices::PriceSource;
use keel_core::Wad;
use keel_core::leveraged::LeveragedToken;
use keel_core::math::{U256, pow10, to_f64};
use keel_core::product::Product;
use keel_core::strategy::fli::FliToken;
use serde::Serialize;
use std::borrow::Cow;

/// Which frictions are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Costs {
    /// Pool fees and price impact (off: trades fill at the oracle).
    pub pool: bool,
    /// Gas.
    pub gas: bool,
    /// Interest on the lending market.
    pub interest: bool,
}

impl Costs {
    /// Everything on.
    pub const ALL: Costs = Costs { pool: true, gas: true, interest: true };
    /// Everything off (`--costs none`).
    pub const NONE: Costs = Costs { pool: false, gas: false, interest: false };
}

/// A run's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// Seed for every random stream of the run.
    pub seed: u64,
    /// Frictions.
    pub costs: Costs,
    /// Keepers.
    pub keeper: KeeperConfig,
    /// Holders' flows.
    pub holders: HolderConfig,
    /// USD issued at the start; 0 or less: half of the supply cap at the starting NAV.
    pub initial_tvl_usd: f64,
    /// Seconds between time-series rows.
    pub sample_every: u64,
    /// ETH price for gas and rewards when the underlying is not ETH.
    pub eth_usd: f64,
    /// Engage at the start (otherwise the token stays at 1x).
    pub engage: bool,
    /// Skip the work of blocks in which nothing can happen for the venue's agents (so far the
    /// oracle updater's quiet band). Off: their every check runs every block — the reference the
    /// fast path is tested to equal, row for row and event for event (`tests/fast_path.rs`).
    pub fast: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            costs: Costs::ALL,
            keeper: KeeperConfig::default(),
            holders: HolderConfig::default(),
            initial_tvl_usd: 0.0,
            sample_every: 3_600,
            eth_usd: 2_000.0,
            engage: true,
            fast: true,
        }
    }
}

/// What a run returns (rows and events were streamed to the sink).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// The summary.
    pub summary: Summary,
    /// Daily log returns of NAV per token (for value-at-risk across paths).
    pub daily_nav_returns: Vec<f64>,
    /// Worst peak-to-trough fall of NAV per token, sampled daily.
    pub max_drawdown: f64,
}

/// Balances in whole units, re-read around every operation and at samples (the change between
/// two reads with no operation in between is interest).
#[derive(Debug, Clone, Copy, Default)]
struct Cache {
    collateral: f64,
    debt: f64,
    supply: f64,
}

/// The arbitrageur's view of one pool.
#[derive(Debug, Clone, Copy)]
struct Arb {
    fee: f64,
    u1: bool,
    scale: f64,
    /// The pool's price of the underlying (USD) once pending moves are applied.
    price: f64,
    /// Target of a move not yet applied.
    pending: Option<f64>,
}

fn usd_e8(p: f64) -> i128 {
    (p * 1e8).round() as i128
}

/// A lending FLI token on its market and pools, with the venue's agents, ready to run. Cloning
/// one after construction (the warm-up engage done) and [`Simulation::reseed`]ing the copy is
/// how a sweep runs many paths from one start.
#[derive(Clone)]
pub struct Simulation {
    /// The token on its venues.
    pub token: FliToken,
    cfg: SimConfig,
    product: Product,
    underlying_is_collateral: bool,
    price: f64,
    cache: Cache,
    /// Interest paid net of interest earned, USD.
    interest: f64,
    /// Underlying price each pool's liquidity is centred on.
    pool_center: f64,
    /// The arbitrageur's view of each pool.
    arb: Vec<Arb>,
    day: u64,
    engaged: bool,
    warnings: Vec<String>,
    source_name: String,
    /// When the oracle updater certainly has nothing to post (see [`QuietFeeds`]).
    quiet: QuietFeeds,
}

/// The prices and times at which the oracle updater certainly posts nothing, so a block inside
/// them skips the exact check: before both feeds' heartbeats, with the underlying's price
/// strictly inside its deviation band (narrowed by two answer units and a relative 1e-12, far
/// more than the float error of the test). Valid for the feeds' rounds it was made from; any
/// new round rebuilds it. Outside it the exact integer test (`PriceFeed::needs_update`) runs,
/// so what is posted is the same as checking every block.
#[derive(Clone, Copy, Debug, Default)]
struct QuietFeeds {
    /// (underlying feed's round, stable feed's round) the band was made from.
    rounds: (u64, u64),
    /// Quiet strictly before this time.
    until: u64,
    /// Quiet strictly between these prices.
    lo: f64,
    hi: f64,
}

impl QuietFeeds {
    fn of(u: &keel_core::oracle::PriceFeed, s: &keel_core::oracle::PriceFeed) -> QuietFeeds {
        let none = QuietFeeds { rounds: (u.round_id, s.round_id), until: 0, lo: 0.0, hi: 0.0 };
        if u.round_id == 0 || s.round_id == 0 || u.answer <= 0 {
            return none;
        }
        let last = u.answer as f64;
        let thr = u.deviation_threshold.to_f64();
        let lo = (last * (1.0 - thr) + 2.0) / 1e8 * (1.0 + 1e-12);
        let hi = (last * (1.0 + thr) - 2.0) / 1e8 * (1.0 - 1e-12);
        if lo >= hi {
            return none;
        }
        let until = u.updated_at.saturating_add(u.heartbeat).min(s.updated_at.saturating_add(s.heartbeat));
        QuietFeeds { until, lo, hi, ..none }
    }

    fn holds(&self, rounds: (u64, u64), now: u64, price: f64) -> bool {
        self.rounds == rounds && now < self.until && self.lo < price && price < self.hi
    }
}

impl Simulation {
    /// Build the token for `product` on fresh venues at the source's start price, issue
    /// `initial_tvl_usd` of it and (unless `engage` is off) engage it through its TWAP before
    /// the path starts.
    pub fn new(
        product: &Product,
        cfg: SimConfig,
        start_time: u64,
        start_price: f64,
        source_name: &str,
    ) -> Result<Self, keel_core::Error> {
        let mut p = product.clone();
        let underlying_is_collateral = p.token.underlying == p.collateral.asset;
        let rounded = Wad(U256::from(usd_e8(start_price).max(1) as u128) * pow10(10));
        if underlying_is_collateral {
            p.collateral.price = rounded;
        } else {
            p.borrow.price = rounded;
        }
        p.lending.interest = cfg.costs.interest;
        let cooldown = p.execution.twap_cooldown_period + 1;
        let warmup_start = start_time.saturating_sub(if cfg.engage { 400 * cooldown } else { 0 });
        let mut token = p.build(OPERATOR, warmup_start)?;
        token.oracle_fill = !cfg.costs.pool;
        token.update_caller_status(OPERATOR, &[KEEPER], &[true])?;
        token.fund_ether(U256::from(100u64) * pow10(18));
        let mut sim = Simulation {
            token,
            cfg: cfg.clone(),
            product: p,
            underlying_is_collateral,
            price: start_price,
            cache: Cache::default(),
            interest: 0.0,
            pool_center: start_price,
            arb: Vec::new(),
            quiet: QuietFeeds::default(),
            day: start_time / 86_400,
            engaged: !cfg.engage,
            warnings: Vec::new(),
            source_name: source_name.to_string(),
        };
        // Warm-up before the path starts: issue at NAV, then engage through the TWAP at the
        // starting price (the pool rests between chunks), so the run begins at the target.
        let mut t = warmup_start;
        sim.read_pools();
        sim.post_oracles(t);
        let per_token =
            to_f64(sim.token.initial_collateral_per_token, sim.product.collateral.decimals) * sim.collateral_usd();
        let cap_tokens =
            to_f64(sim.token.ledger.config.supply_cap, 18) / (1.0 + Wad(sim.token.ledger.config.mint_fee.0).to_f64());
        let tokens = if cfg.initial_tvl_usd > 0.0 { cfg.initial_tvl_usd / per_token } else { cap_tokens / 2.0 };
        let q = U256::from((tokens * 1e6) as u128) * pow10(12);
        sim.token.issue(HOLDERS, q, t)?;
        if cfg.engage {
            let ex = sim.token.fli.exchanges.first().map(|(n, _)| n.clone()).unwrap_or_default();
            sim.token.engage(OPERATOR, &ex, t)?;
            sim.read_pools();
            while !sim.token.fli.twap_leverage_ratio.is_zero() && t + cooldown < start_time {
                t += cooldown;
                sim.post_oracles(t);
                sim.arbitrage();
                sim.flush_arbitrage();
                match sim.token.iterate_rebalance(KEEPER, &ex, t) {
                    Ok(_) => {}
                    // A dust remainder that rounds to zero units cannot trade: the operator
                    // ends the TWAP (keel's abort_twap, fli.md §17.6).
                    Err(e) if e.revert_reason() == Some("Quantity is 0") => {
                        sim.token.abort_twap(OPERATOR, t)?;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                sim.read_pools();
            }
            sim.engaged = sim.token.fli.twap_leverage_ratio.is_zero();
        }
        sim.post_oracles(start_time);
        sim.arbitrage();
        sim.flush_arbitrage();
        sim.reread(start_time);
        Ok(sim)
    }

    /// Give this run its own random streams (holders, bots), as a sweep does per path.
    pub fn reseed(&mut self, seed: u64) {
        self.cfg.seed = seed;
    }

    /// Record warnings passed over by the source (shown in the summary).
    pub fn add_warnings(&mut self, w: &[String]) {
        self.warnings.extend_from_slice(w);
    }

    /// Run the whole source through the market loop; rows and events stream to `sink`.
    pub fn run(mut self, source: &mut dyn PriceSource, sink: &mut dyn Sink) -> Result<RunResult, keel_core::Error> {
        let keeper = self.cfg.keeper.clone();
        let cfg = MarketConfig {
            seed: self.cfg.seed,
            holders: self.cfg.holders,
            keeper,
            sample_every: self.cfg.sample_every,
            eth_usd: self.cfg.eth_usd,
            source_name: self.source_name.clone(),
            gas: self.cfg.costs.gas,
            screens: true,
        };
        let mut r = run_market(&mut self, source, &cfg, sink)?;
        r.summary.warnings = self.warnings.clone();
        Ok(r)
    }

    fn collateral_usd(&self) -> f64 {
        if self.underlying_is_collateral { self.price } else { 1.0 }
    }

    fn borrow_usd(&self) -> f64 {
        if self.underlying_is_collateral { 1.0 } else { self.price }
    }

    /// Read balances; with `book`, the change since the last read is interest.
    fn read_balances(&mut self, now: u64, book: bool) {
        let t = &self.token;
        let cd = self.product.collateral.decimals;
        let bd = self.product.borrow.decimals;
        // with interest to `now` whether or not the market has accrued (it accrues lazily)
        let c = t
            .market
            .supply_balance_current(t.account, t.collateral, now)
            .map(|v| to_f64(v, cd))
            .unwrap_or(self.cache.collateral);
        let b =
            t.market.debt_balance_current(t.account, t.borrow, now).map(|v| to_f64(v, bd)).unwrap_or(self.cache.debt);
        if book && self.cache.supply > 0.0 {
            self.interest +=
                (b - self.cache.debt) * self.borrow_usd() - (c - self.cache.collateral) * self.collateral_usd();
        }
        self.cache = Cache { collateral: c, debt: b, supply: to_f64(t.ledger.total_supply(), 18) };
    }

    fn reread(&mut self, now: u64) {
        self.read_balances(now, false);
        self.read_pools();
    }

    fn post_oracles(&mut self, now: u64) {
        let (u, s) = if self.underlying_is_collateral {
            (self.token.collateral, self.token.borrow)
        } else {
            (self.token.borrow, self.token.collateral)
        };
        let m = &self.token.market;
        let rounds = (m.feed(u).round_id, m.feed(s).round_id);
        if self.cfg.fast && self.quiet.holds(rounds, now, self.price) {
            return;
        }
        let answer = usd_e8(self.price).max(1);
        if self.token.market.feed(u).needs_update(answer, now) {
            self.token.market.post_price(u, answer, now);
        }
        if self.token.market.feed(s).needs_update(100_000_000, now) {
            self.token.market.post_price(s, 100_000_000, now);
        }
        let m = &self.token.market;
        self.quiet = QuietFeeds::of(m.feed(u), m.feed(s));
    }

    /// Pool price of the underlying, USD.
    fn pool_price(&self) -> f64 {
        let Some(pool) = self.token.pools.values().next() else { return self.price };
        let p1in0 = pool.price1_in_0_f64();
        let underlying_is_token1 = pool.token1.symbol == self.product.token.underlying;
        if underlying_is_token1 { p1in0 } else { 1.0 / p1in0 }
    }

    /// Each pool's tracked price (underlying, USD) and fee, read from the pools themselves.
    fn read_pools(&mut self) {
        let under = &self.product.token.underlying;
        let n = self.token.pools.len();
        if self.arb.len() != n {
            self.arb = vec![Arb { fee: 0.0, u1: true, scale: 1.0, price: 0.0, pending: None }; n];
        }
        for (a, pool) in self.arb.iter_mut().zip(self.token.pools.values()) {
            let u1 = &pool.token1.symbol == under;
            let p1in0 = pool.price1_in_0_f64();
            *a = Arb {
                fee: pool.fee_pips as f64 / 1e6,
                u1,
                scale: 10f64.powi(pool.token1.decimals as i32 - pool.token0.decimals as i32),
                price: if u1 { p1in0 } else { 1.0 / p1in0 },
                pending: None,
            };
        }
    }

    /// The arbitrageur's decision this block: when the pool's price is off the reference by
    /// more than the fee (plus a sliver for gas), it trades the pool to the edge of the
    /// no-arbitrage band, `price · (1 ± fee)`. The pool's state after such a trade depends only
    /// on the target price (ticks are fixed), so the move itself is applied lazily by
    /// `flush_arbitrage` before anyone next reads or trades the pool: the same state as trading
    /// every block, without the tick math every block.
    fn arbitrage(&mut self) {
        if !self.cfg.costs.pool {
            return;
        }
        let p = self.price;
        for a in &mut self.arb {
            let dev = a.price / p - 1.0;
            if dev.abs() <= a.fee + 0.0002 {
                continue;
            }
            let target = if dev > 0.0 { p * (1.0 + a.fee) } else { p * (1.0 - a.fee) };
            a.price = target;
            a.pending = Some(target);
        }
    }

    /// Apply pending arbitrage moves to the pools.
    fn flush_arbitrage(&mut self) {
        for (pool, a) in self.token.pools.values_mut().zip(self.arb.iter_mut()) {
            if let Some(target) = a.pending.take() {
                // raw token1 per raw token0
                let ratio = if a.u1 { a.scale / target } else { a.scale * target };
                if let Ok(sqrt) = keel_core::venue::amm::sqrt_price_x96_from_f64(ratio) {
                    let _ = pool.move_price_to(sqrt);
                }
            }
        }
    }

    /// LPs re-centre: once a day, if the price has moved more than 20% from where the pools'
    /// liquidity is centred, the pools are rebuilt around the current price (same TVL).
    fn recenter_liquidity(&mut self) {
        if !self.cfg.costs.pool || (self.price / self.pool_center).ln().abs() < 0.2 {
            return;
        }
        let (c, b) =
            (Wad::parse(&format!("{:.8}", self.collateral_usd())), Wad::parse(&format!("{:.8}", self.borrow_usd())));
        let (Ok(c), Ok(b)) = (c, b) else { return };
        let names: Vec<String> = self.token.pools.keys().cloned().collect();
        for name in names {
            if let Ok(pool) = self.product.build_pool(&name, c, b) {
                self.token.pools.insert(name, pool);
            }
        }
        self.pool_center = self.price;
        self.read_pools();
    }

    fn liquidate(&mut self, now: u64, block: u64, ev: &mut dyn FnMut(EventRow)) -> bool {
        let lt = self.product.lending.liquidation_threshold_bp as f64 / 1e4;
        let bv = self.cache.debt * self.borrow_usd();
        if bv <= 0.0 || lt * self.cache.collateral * self.collateral_usd() / bv > 1.02 {
            return false;
        }
        let t = &mut self.token;
        let (c, b, acct) = (t.collateral, t.borrow, t.account);
        let Ok(out) = t.market.liquidation_call(c, b, acct, U256::MAX, now) else { return false };
        let cd = self.product.collateral.decimals;
        let bd = self.product.borrow.decimals;
        let cv = self.cache.collateral * self.collateral_usd();
        ev(EventRow {
            time: now,
            block,
            kind: Cow::Borrowed("liquidation"),
            actor: Cow::Borrowed("liquidator"),
            leverage_before: if cv > bv { cv / (cv - bv) } else { f64::INFINITY },
            chunk: to_f64(out.collateral_to_liquidator + out.protocol_fee, cd),
            sold_usd: to_f64(out.collateral_to_liquidator + out.protocol_fee, cd) * self.collateral_usd(),
            bought_usd: to_f64(out.debt_repaid, bd) * self.borrow_usd(),
            ..EventRow::default()
        });
        self.read_balances(now, false);
        true
    }
}

impl Venue for Simulation {
    fn token(&self) -> &dyn LeveragedToken {
        &self.token
    }

    fn token_mut(&mut self) -> &mut dyn LeveragedToken {
        &mut self.token
    }

    fn agents(&mut self, now: u64, block: u64, price: f64, _p: U256, ev: &mut dyn FnMut(EventRow)) -> bool {
        self.price = price;
        // Interest accrues lazily, as on Aave and Compound: every operation that touches the
        // market brings its reserves to `now` first, and balances are read at `now`; nothing
        // needs to happen on a block where no one touches it.
        self.post_oracles(now);
        self.arbitrage();
        let liquidated = self.liquidate(now, block, ev);
        if now / 86_400 > self.day {
            self.day = now / 86_400;
            self.flush_arbitrage();
            self.recenter_liquidity();
        }
        self.engaged |= self.token.fli.twap_leverage_ratio.is_zero();
        liquidated
    }

    fn settle(&mut self, now: u64, _p: U256, what: Settle) {
        // issues and redeems move collateral and debt, not the pools
        if what != Settle::Flow {
            self.flush_arbitrage();
        }
        self.read_balances(now, true);
    }

    fn refresh_after_flow(&mut self, now: u64) {
        // issues and redeems do not touch the pools
        self.read_balances(now, false);
    }

    fn refresh(&mut self, now: u64) {
        self.reread(now);
        self.engaged |= self.token.fli.twap_leverage_ratio.is_zero();
    }

    fn figures(&self) -> std::collections::BTreeMap<String, f64> {
        std::collections::BTreeMap::from([("ether_left".to_string(), to_f64(self.token.fli.ether_balance, 18))])
    }

    fn trade_price(&self, _price: f64) -> f64 {
        self.pool_price()
    }

    fn oracle_price(&self, price: f64) -> f64 {
        let t = &self.token;
        let feed = if self.underlying_is_collateral { t.collateral } else { t.borrow };
        let a = t.market.feed(feed).answer as f64 / 1e8;
        if a > 0.0 { a } else { price }
    }

    fn add_costs(&self, costs: &mut CostBreakdown) {
        costs.interest += self.interest;
    }

    fn engaged(&self) -> bool {
        self.engaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lazy interest books what accruing every block booked: the balances the simulator reads at
    /// a time are the balances the market would hold had it accrued to that time.
    #[test]
    fn table_current_balances_are_the_accrued_ones() {
        for (case, file) in [
            ("aave v3", include_str!("../../../products/eth2x-fli.toml")),
            ("compound v2", include_str!("../../../products/eth2x-fli-compound.toml")),
        ] {
            let product = Product::from_toml(file).unwrap();
            let sim = Simulation::new(&product, SimConfig::default(), 1_704_067_200, 2_000.0, "test").unwrap();
            let t = &sim.token;
            let later = 1_704_067_200 + 30 * 86_400 + 7;
            let (c, b) = (
                t.market.supply_balance_current(t.account, t.collateral, later).unwrap(),
                t.market.debt_balance_current(t.account, t.borrow, later).unwrap(),
            );
            let mut m = t.market.clone();
            m.accrue_all(later).unwrap();
            assert_eq!(m.supply_balance(t.account, t.collateral, later).unwrap(), c, "case {case}: collateral");
            assert_eq!(m.debt_balance(t.account, t.borrow, later).unwrap(), b, "case {case}: debt");
            assert!(b > t.market.debt_balance(t.account, t.borrow, 1_704_067_200).unwrap(), "case {case}: debt grew");
        }
    }
}
