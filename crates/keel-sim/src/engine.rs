//! The simulation loop. Inside each block, in this fixed order:
//!
//! 1. the clock advances and the reference price moves;
//! 2. the lending market accrues interest (when interest is on);
//! 3. the oracle updater posts if the price deviated past the threshold or the heartbeat passed;
//! 4. the arbitrageur trades each pool back toward the reference price when that pays after fee;
//! 5. the liquidator liquidates the token's account if its health factor is below 1;
//! 6. holders mint and redeem (Poisson arrivals);
//! 7. ripcord bots race when a ripcord is due; the operator's keeper polls and executes;
//! 8. the streaming fee accrues once a day; metrics are recorded.
//!
//! Every change to the token goes through keel-core's public operations.

use crate::agents::exp_sample;
use crate::agents::{HolderConfig, KeeperConfig};
use crate::clock::Clock;
use crate::metrics::{CostBreakdown, Counts, EventRow, SeriesRow, Sink, Summary};
use crate::prices::{PriceSource, Tick};
use keel_core::math::{U256, pow10, to_f64};
use keel_core::product::Product;
use keel_core::strategy::fli::{FliEvent, FliOutcome, FliToken, ShouldRebalance, TradeReport};
use keel_core::{Address, Wad};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::borrow::Cow;

/// The operator (runs engage/disengage, receives fees).
pub const OPERATOR: Address = Address::with_last_byte(0x01);
/// The operator's keeper (on the allow list).
pub const KEEPER: Address = Address::with_last_byte(0x02);
/// Holders, as one account.
pub const HOLDERS: Address = Address::with_last_byte(0x03);

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

/// Cached balances in whole units, refreshed around every operation and at samples.
#[derive(Debug, Clone, Copy, Default)]
struct Cache {
    collateral: f64,
    debt: f64,
    idle: f64,
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

/// A run in progress. Cloning one after construction (the warm-up engage done) and
/// [`Simulation::reseed`]ing the copy is how a sweep runs many paths from one start.
#[derive(Clone)]
pub struct Simulation {
    /// The token on its venues.
    pub token: FliToken,
    cfg: SimConfig,
    product: Product,
    rng: ChaCha8Rng,
    clock: Clock,
    underlying_is_collateral: bool,
    beta: f64,
    cache: Cache,
    price: f64,
    p0: f64,
    counts: Counts,
    costs: CostBreakdown,
    pending: Option<(u64, ShouldRebalance, String)>,
    next_poll: u64,
    backoff: u64,
    /// Underlying price each pool's liquidity is centred on.
    pool_center: f64,
    /// The arbitrageur's view of each pool.
    arb: Vec<Arb>,
    /// The band and the ripcord level as f64 (for the per-block screens), refreshed daily.
    levels: (f64, f64, f64),
    /// An episode above the band: (start time, peak leverage).
    delever_episode: Option<(u64, f64)>,
    /// Per episode: leverage points removed per minute, from the peak back to the band.
    delever_speeds: Vec<f64>,
    /// Per episode: minutes above the band.
    delever_minutes: Vec<f64>,
    next_mint: f64,
    next_redeem: f64,
    vol_ewma: f64,
    last_fee_day: u64,
    engaged: bool,
    // metrics
    nav0: f64,
    nav_prev: f64,
    ideal: f64,
    sum_r2: f64,
    min_hf: f64,
    max_lr: f64,
    outside: u64,
    counted_blocks: u64,
    worst_drop: f64,
    daily: Vec<(f64, f64)>,
    next_sample: u64,
    next_day: u64,
    warnings: Vec<String>,
    source_name: String,
}

fn usd_e8(p: f64) -> i128 {
    (p * 1e8).round() as i128
}

impl Simulation {
    /// Build the token for `product` on fresh venues at the source's start price and issue
    /// `initial_tvl_usd` of it.
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
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6167_656e_7473);
        let day = 86_400.0;
        let next_mint = start_time as f64 + exp_sample(&mut rng, cfg.holders.mints_per_day / day);
        let next_redeem = start_time as f64 + exp_sample(&mut rng, cfg.holders.redeems_per_day / day);
        let beta = p.target_exposure();
        let mut sim = Simulation {
            token,
            cfg: cfg.clone(),
            product: p,
            rng,
            clock: Clock::new(start_time, 1),
            underlying_is_collateral,
            beta,
            cache: Cache::default(),
            price: start_price,
            p0: start_price,
            counts: Counts::default(),
            costs: CostBreakdown::default(),
            pending: None,
            next_poll: 0,
            backoff: 1,
            pool_center: start_price,
            arb: Vec::new(),
            levels: (0.0, 0.0, 0.0),
            delever_episode: None,
            delever_speeds: Vec::new(),
            delever_minutes: Vec::new(),
            next_mint,
            next_redeem,
            vol_ewma: 0.0,
            last_fee_day: start_time / 86_400,
            engaged: false,
            nav0: 0.0,
            nav_prev: 0.0,
            ideal: 0.0,
            sum_r2: 0.0,
            min_hf: f64::INFINITY,
            max_lr: 0.0,
            outside: 0,
            counted_blocks: 0,
            worst_drop: 0.0,
            daily: Vec::new(),
            next_sample: start_time,
            next_day: start_time,
            warnings: Vec::new(),
            source_name: source_name.to_string(),
        };
        // Warm-up before the path starts: issue at NAV, then engage through the TWAP at the
        // starting price (the pool rests between chunks), so the run begins at the target.
        let mut t = warmup_start;
        sim.clock.now = t;
        sim.read_pools();
        sim.post_oracles(t);
        let per_token =
            to_f64(sim.token.initial_collateral_per_token, sim.product.collateral.decimals) * sim.collateral_usd();
        let cap_tokens =
            to_f64(sim.token.ledger.config.supply_cap, 18) / (1.0 + Wad(sim.token.ledger.config.mint_fee.0).to_f64());
        let tokens = if cfg.initial_tvl_usd > 0.0 { cfg.initial_tvl_usd / per_token } else { cap_tokens / 2.0 };
        let q = U256::from((tokens * 1e6) as u128) * pow10(12);
        sim.token.issue(HOLDERS, q, t)?;
        sim.refresh_after_op();
        if cfg.engage {
            let ex = sim.first_exchange();
            let out = sim.token.engage(OPERATOR, &ex, t)?;
            sim.read_pools();
            sim.counts.engages += 1;
            sim.record_outcome("engage", Cow::Borrowed("operator"), &out, 0.0, t, 0);
            while !sim.token.fli.twap_leverage_ratio.is_zero() && t + cooldown < start_time {
                t += cooldown;
                sim.clock.now = t;
                sim.post_oracles(t);
                sim.arbitrage();
                sim.flush_arbitrage();
                sim.refresh_after_op();
                match sim.token.iterate_rebalance(KEEPER, &ex, t) {
                    Ok(out) => sim.record_outcome("iterate", Cow::Borrowed("keeper"), &out, 0.0, t, 0),
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
            sim.refresh_after_op();
        }
        sim.read_levels();
        sim.clock.now = start_time;
        sim.post_oracles(start_time);
        sim.arbitrage();
        sim.flush_arbitrage();
        sim.counts = Counts::default();
        sim.costs = CostBreakdown::default();
        sim.nav0 = sim.nav_estimate();
        sim.nav_prev = sim.nav0;
        sim.ideal = sim.nav0;
        Ok(sim)
    }

    /// Give this run its own random streams (holders, keepers, bots), as a sweep does per path.
    pub fn reseed(&mut self, seed: u64) {
        self.cfg.seed = seed;
        self.rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6167_656e_7473);
        let start = self.clock.now as f64;
        self.next_mint = start + exp_sample(&mut self.rng, self.cfg.holders.mints_per_day / 86_400.0);
        self.next_redeem = start + exp_sample(&mut self.rng, self.cfg.holders.redeems_per_day / 86_400.0);
    }

    /// Record warnings passed over by the source (shown in the summary).
    pub fn add_warnings(&mut self, w: &[String]) {
        self.warnings.extend_from_slice(w);
    }

    fn first_exchange(&self) -> String {
        self.token.fli.exchanges.first().map(|(n, _)| n.clone()).unwrap_or_default()
    }

    fn collateral_usd(&self) -> f64 {
        if self.underlying_is_collateral { self.price } else { 1.0 }
    }

    fn borrow_usd(&self) -> f64 {
        if self.underlying_is_collateral { 1.0 } else { self.price }
    }

    fn eth_usd(&self) -> f64 {
        if self.product.token.underlying.contains("ETH") { self.price } else { self.cfg.eth_usd }
    }

    fn nav_estimate(&self) -> f64 {
        let c = &self.cache;
        if c.supply <= 0.0 {
            return 0.0;
        }
        (c.collateral * self.collateral_usd() + c.idle * self.borrow_usd() - c.debt * self.borrow_usd()) / c.supply
    }

    fn lr_estimate(&self) -> f64 {
        let cv = self.cache.collateral * self.collateral_usd();
        let bv = self.cache.debt * self.borrow_usd();
        if cv <= bv { f64::INFINITY } else { cv / (cv - bv) }
    }

    /// Re-read balances, booking the change since the last read as interest.
    fn refresh(&mut self) {
        let now = self.clock.now;
        let t = &self.token;
        let cd = self.product.collateral.decimals;
        let bd = self.product.borrow.decimals;
        let c = t
            .market
            .supply_balance(t.account, t.collateral, now)
            .map(|v| to_f64(v, cd))
            .unwrap_or(self.cache.collateral);
        let b = t.market.debt_balance(t.account, t.borrow, now).map(|v| to_f64(v, bd)).unwrap_or(self.cache.debt);
        if self.cache.supply > 0.0 {
            self.costs.interest +=
                (b - self.cache.debt) * self.borrow_usd() - (c - self.cache.collateral) * self.collateral_usd();
        }
        self.cache = Cache {
            collateral: c,
            debt: b,
            idle: to_f64(t.idle_borrow, bd),
            supply: to_f64(t.ledger.total_supply(), 18),
        };
    }

    /// Re-read balances after an operation (changes there are not interest).
    fn refresh_after_op(&mut self) {
        let supply = self.cache.supply;
        self.cache.supply = 0.0;
        self.refresh();
        let _ = supply;
    }

    fn trade_costs(&self, tr: &TradeReport) -> (f64, f64, f64, f64) {
        let cd = self.product.collateral.decimals;
        let bd = self.product.borrow.decimals;
        let (sold_usd, bought_usd, fee_usd) = if tr.is_lever {
            (
                to_f64(tr.sold, bd) * self.borrow_usd(),
                to_f64(tr.bought, cd) * self.collateral_usd(),
                to_f64(tr.pool_fee, bd) * self.borrow_usd(),
            )
        } else {
            (
                to_f64(tr.sold, cd) * self.collateral_usd(),
                to_f64(tr.bought, bd) * self.borrow_usd(),
                to_f64(tr.pool_fee, cd) * self.collateral_usd(),
            )
        };
        (sold_usd, bought_usd, fee_usd, sold_usd - bought_usd - fee_usd)
    }

    fn record_outcome(
        &mut self,
        kind: &'static str,
        actor: Cow<'static, str>,
        out: &FliOutcome,
        gas_usd: f64,
        now: u64,
        block: u64,
    ) -> EventRow {
        let cd = self.product.collateral.decimals;
        let n = out.event.notional().copied();
        let (sold, bought, fee, impact) = out.trade.as_ref().map(|t| self.trade_costs(t)).unwrap_or_default();
        self.costs.pool_fees += fee;
        self.costs.price_impact += impact;
        let reward = to_f64(out.reward_paid, 18);
        self.costs.ether_rewards += reward * self.eth_usd();
        let is_ripcord = matches!(out.event, FliEvent::RipcordCalled(_));
        EventRow {
            time: now,
            block,
            kind: Cow::Borrowed(kind),
            actor,
            leverage_before: n.map(|n| Wad(n.current_leverage_ratio).to_f64()).unwrap_or(0.0),
            target: n.map(|n| Wad(n.new_leverage_ratio).to_f64()).unwrap_or(0.0),
            chunk: n.map(|n| to_f64(n.chunk, cd)).unwrap_or(0.0),
            total: n.map(|n| if is_ripcord { 0.0 } else { to_f64(n.total, cd) }).unwrap_or(0.0),
            sold_usd: sold,
            bought_usd: bought,
            pool_fee_usd: fee,
            impact_usd: impact,
            gas_usd,
            reward_eth: reward,
            error: String::new(),
        }
    }

    fn gas_usd(&self, units: u64) -> f64 {
        if !self.cfg.costs.gas {
            return 0.0;
        }
        units as f64 * self.gas_gwei() * 1e-9 * self.eth_usd()
    }

    fn gas_gwei(&self) -> f64 {
        self.cfg.keeper.gas.gwei(self.vol_ewma)
    }

    fn post_oracles(&mut self, now: u64) {
        let answer = usd_e8(self.price).max(1);
        let (u, s) = if self.underlying_is_collateral {
            (self.token.collateral, self.token.borrow)
        } else {
            (self.token.borrow, self.token.collateral)
        };
        if self.token.market.reserves[u].feed.needs_update(answer, now) {
            self.token.market.post_price(u, answer, now);
        }
        if self.token.market.reserves[s].feed.needs_update(100_000_000, now) {
            self.token.market.post_price(s, 100_000_000, now);
        }
    }

    /// Pool price of the underlying, USD.
    fn pool_price(&self) -> f64 {
        let Some(pool) = self.token.pools.values().next() else { return self.price };
        let p1in0 = pool.price1_in_0_f64();
        let underlying_is_token1 = pool.token1.symbol == self.product.token.underlying;
        if underlying_is_token1 { p1in0 } else { 1.0 / p1in0 }
    }

    /// Each pool's tracked price (underlying, USD) and fee, read from the pools themselves.
    /// The methodology's band and ripcord level (they change only through settings).
    fn read_levels(&mut self) {
        let f = &self.token.fli;
        self.levels = (
            Wad(f.methodology.min_leverage_ratio).to_f64(),
            Wad(f.methodology.max_leverage_ratio).to_f64(),
            Wad(f.incentive.incentivized_leverage_ratio).to_f64(),
        );
    }

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
    /// [`Simulation::flush_arbitrage`] before anyone next reads or trades the pool: the same
    /// state as trading every block, without the tick math every block.
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

    fn liquidate(&mut self, now: u64, block: u64, sink: &mut dyn Sink) {
        let lt = self.product.lending.liquidation_threshold_bp as f64 / 1e4;
        let bv = self.cache.debt * self.borrow_usd();
        if bv <= 0.0 {
            return;
        }
        let hf_est = lt * self.cache.collateral * self.collateral_usd() / bv;
        if hf_est > 1.02 {
            return;
        }
        let t = &mut self.token;
        let (c, b, acct) = (t.collateral, t.borrow, t.account);
        if let Ok(out) = t.market.liquidation_call(c, b, acct, U256::MAX, now) {
            self.counts.liquidations += 1;
            let cd = self.product.collateral.decimals;
            let bd = self.product.borrow.decimals;
            let ev = EventRow {
                time: now,
                block,
                kind: Cow::Borrowed("liquidation"),
                actor: Cow::Borrowed("liquidator"),
                leverage_before: self.lr_estimate(),
                chunk: to_f64(out.collateral_to_liquidator + out.protocol_fee, cd),
                sold_usd: to_f64(out.collateral_to_liquidator + out.protocol_fee, cd) * self.collateral_usd(),
                bought_usd: to_f64(out.debt_repaid, bd) * self.borrow_usd(),
                ..EventRow::default()
            };
            sink.event(&ev);
            self.refresh_after_op();
        }
    }

    fn holders(&mut self, now: u64, block: u64, sink: &mut dyn Sink) {
        let nav = self.nav_estimate();
        while self.next_mint <= now as f64 {
            let size = self.draw_flow(true);
            self.holder_op(true, size, nav, now, block, sink);
        }
        while self.next_redeem <= now as f64 {
            let size = self.draw_flow(false);
            self.holder_op(false, size, nav, now, block, sink);
        }
    }

    /// The size (USD) of the next mint or redeem, and schedule the one after it.
    fn draw_flow(&mut self, mint: bool) -> f64 {
        let size = -(1.0 - self.rng.random::<f64>()).ln() * self.cfg.holders.mean_size_usd;
        let h = &self.cfg.holders;
        let rate = if mint { h.mints_per_day } else { h.redeems_per_day } / 86_400.0;
        let gap = exp_sample(&mut self.rng, rate);
        if mint {
            self.next_mint += gap;
        } else {
            self.next_redeem += gap;
        }
        size
    }

    /// One holder mint or redeem of `size` USD at NAV (a redeem takes at most half the holders'
    /// balance); the outcome goes to the sink either way.
    fn holder_op(&mut self, mint: bool, size: f64, nav: f64, now: u64, block: u64, sink: &mut dyn Sink) {
        if nav <= 0.0 {
            return;
        }
        let want = U256::from((size / nav * 1e6) as u128) * pow10(12);
        let q = if mint { want } else { want.min(self.token.ledger.balance_of(HOLDERS) / U256::from(2u64)) };
        if q.is_zero() {
            return;
        }
        self.refresh();
        let result = if mint {
            self.token.issue(HOLDERS, q, now).map(|_| ())
        } else {
            self.token.redeem(HOLDERS, q, now).map(|_| ())
        };
        let (kind, error) = match result {
            Ok(()) => {
                if mint {
                    self.counts.mints += 1;
                } else {
                    self.counts.redeems += 1;
                }
                (if mint { "mint" } else { "redeem" }, String::new())
            }
            Err(e) => (if mint { "mint_failed" } else { "redeem_failed" }, e.to_string()),
        };
        self.refresh_after_op();
        sink.event(&EventRow {
            time: now,
            block,
            kind: Cow::Borrowed(kind),
            actor: Cow::Borrowed("holders"),
            leverage_before: self.lr_estimate(),
            chunk: to_f64(q, 18),
            sold_usd: if mint { size } else { 0.0 },
            bought_usd: if mint { 0.0 } else { size },
            error,
            ..EventRow::default()
        });
    }

    /// Whether `shouldRebalance` could say anything but NONE: a cheap screen before the exact
    /// call. Near any boundary it defers to the exact view.
    fn maybe_due(&self, now: u64) -> bool {
        let f = &self.token.fli;
        if !f.twap_leverage_ratio.is_zero()
            || now.saturating_sub(f.global_last_trade_timestamp) > f.methodology.rebalance_interval
        {
            return true;
        }
        let lr = self.lr_estimate();
        let (lo, hi) = match self.cfg.keeper.bounds {
            Some((a, b)) => (Wad(a).to_f64(), Wad(b).to_f64()),
            None => (self.levels.0, self.levels.1),
        };
        !(lr > lo * (1.0 + 1e-9) && lr < hi * (1.0 - 1e-9))
    }

    fn call(
        &mut self,
        action: ShouldRebalance,
        exchange: &str,
        caller: Address,
        now: u64,
    ) -> Result<FliOutcome, keel_core::Error> {
        match action {
            ShouldRebalance::Rebalance => self.token.rebalance(caller, exchange, now),
            ShouldRebalance::IterateRebalance => self.token.iterate_rebalance(caller, exchange, now),
            ShouldRebalance::Ripcord => self.token.ripcord(caller, exchange, now),
            ShouldRebalance::None => unreachable!("NONE is never submitted"),
        }
    }

    /// Dry run on a copy (the `eth_call` a real keeper makes before sending).
    fn would_succeed(&mut self, action: ShouldRebalance, exchange: &str, caller: Address, now: u64) -> bool {
        self.flush_arbitrage();
        match action {
            ShouldRebalance::Rebalance => self.token.dry_run(|t| t.rebalance(caller, exchange, now)).is_ok(),
            ShouldRebalance::IterateRebalance => {
                self.token.dry_run(|t| t.iterate_rebalance(caller, exchange, now)).is_ok()
            }
            ShouldRebalance::Ripcord => self.token.dry_run(|t| t.ripcord(caller, exchange, now)).is_ok(),
            ShouldRebalance::None => false,
        }
    }

    fn failed_kind_of(action: ShouldRebalance) -> &'static str {
        match action {
            ShouldRebalance::Rebalance => "rebalance_failed",
            ShouldRebalance::IterateRebalance => "iterate_failed",
            ShouldRebalance::Ripcord => "ripcord_failed",
            ShouldRebalance::None => "none_failed",
        }
    }

    fn kind_of(action: ShouldRebalance) -> &'static str {
        match action {
            ShouldRebalance::Rebalance => "rebalance",
            ShouldRebalance::IterateRebalance => "iterate",
            ShouldRebalance::Ripcord => "ripcord",
            ShouldRebalance::None => "none",
        }
    }

    /// Book a call that landed: gas, counts, costs, event; re-read balances and pools.
    fn book_success(
        &mut self,
        action: ShouldRebalance,
        actor: Cow<'static, str>,
        out: &FliOutcome,
        now: u64,
        block: u64,
        sink: &mut dyn Sink,
    ) {
        let units = &self.cfg.keeper.gas_units;
        let ok_units = match action {
            ShouldRebalance::Rebalance => units.rebalance,
            ShouldRebalance::IterateRebalance => units.iterate,
            _ => units.ripcord,
        };
        let gas = self.gas_usd(ok_units);
        if actor.as_ref() != "keeper" {
            self.costs.gas_bots += gas
        } else {
            self.costs.gas_keeper += gas
        }
        match action {
            ShouldRebalance::Rebalance => self.counts.rebalances += 1,
            ShouldRebalance::IterateRebalance => self.counts.iterations += 1,
            _ => self.counts.ripcords += 1,
        }
        let ev = self.record_outcome(Self::kind_of(action), actor, out, gas, now, block);
        sink.event(&ev);
        self.refresh_after_op();
        self.read_pools();
    }

    #[allow(clippy::too_many_arguments)] // one call site per actor; the arguments are the call itself
    fn submit(
        &mut self,
        action: ShouldRebalance,
        exchange: &str,
        caller: Address,
        actor: Cow<'static, str>,
        now: u64,
        block: u64,
        sink: &mut dyn Sink,
    ) -> bool {
        let failed_units = self.cfg.keeper.gas_units.failed;
        self.flush_arbitrage();
        self.refresh();
        let is_bot = actor.as_ref() != "keeper";
        match self.call(action, exchange, caller, now) {
            Ok(out) => {
                self.book_success(action, actor.clone(), &out, now, block, sink);
                true
            }
            Err(e) => {
                let gas = self.gas_usd(failed_units);
                if is_bot {
                    self.costs.gas_bots += gas
                } else {
                    self.costs.gas_keeper += gas
                }
                self.counts.failed_calls += 1;
                sink.event(&EventRow {
                    time: now,
                    block,
                    kind: Cow::Borrowed(Self::failed_kind_of(action)),
                    actor: actor.clone(),
                    leverage_before: self.lr_estimate(),
                    gas_usd: gas,
                    error: e.to_string(),
                    ..EventRow::default()
                });
                false
            }
        }
    }

    fn keepers(&mut self, now: u64, block: u64, sink: &mut dyn Sink) {
        // Ripcord bots: every block, when the screen says the ratio is near the ripcord level.
        let ilr = self.levels.2;
        if self.cfg.keeper.ripcord_bots > 0
            && self.lr_estimate() >= ilr * 0.999
            && let Ok(list) = self.token.should_rebalance(now)
            && let Some((ex, _)) = list.iter().find(|(_, a)| *a == ShouldRebalance::Ripcord).cloned()
        {
            let reward = to_f64(self.token.current_ether_incentive(now).unwrap_or_default(), 18) * self.eth_usd();
            let cost = self.gas_usd(self.cfg.keeper.gas_units.ripcord);
            if !self.would_succeed(ShouldRebalance::Ripcord, &ex, Address::with_last_byte(0x40), now) {
                // Every bot's dry run says it would revert: none sends.
                self.counts.skipped_calls += 1;
            } else if reward - cost >= self.cfg.keeper.min_profit_usd {
                // All bots saw the same state; the first to land wins, the others revert.
                let n = self.cfg.keeper.ripcord_bots;
                let first = self.rng.random_range(0..n);
                for k in 0..n {
                    let bot = (first + k) % n;
                    let addr = Address::with_last_byte(0x40 + bot as u8);
                    self.submit(
                        ShouldRebalance::Ripcord,
                        &ex,
                        addr,
                        Cow::Owned(format!("bot-{bot}")),
                        now,
                        block,
                        sink,
                    );
                }
            } else {
                self.counts.unprofitable_ripcord_blocks += 1;
            }
        }
        // The operator's keeper: execute what it decided `latency` blocks ago, then poll.
        if let Some((at, action, ex)) = self.pending.clone()
            && block >= at
        {
            self.pending = None;
            self.submit(action, &ex, KEEPER, Cow::Borrowed("keeper"), now, block, sink);
        }
        if self.pending.is_none()
            && block >= self.next_poll
            && block.is_multiple_of(self.cfg.keeper.poll_every.max(1))
            && !self.token.fli.disengaging
            && self.maybe_due(now)
        {
            let list = match self.cfg.keeper.bounds {
                Some((lo, hi)) => self.token.should_rebalance_with_bounds(lo, hi, now),
                None => self.token.should_rebalance(now),
            };
            if let Ok(list) = list
                && let Some((ex, action)) = keeper_choice(&list, block)
            {
                let latency = self.cfg.keeper.latency_seconds / self.clock.block_time.max(1);
                if latency == 0 {
                    // Decided and sent in the same block: the dry run and the call see the same
                    // state, so one atomic call is both (a revert rolls back and is not sent).
                    self.send_or_skip(action, &ex, now, block, sink);
                } else if self.would_succeed(action, &ex, KEEPER, now) {
                    self.backoff = 1;
                    self.pending = Some((block + latency, action, ex));
                } else {
                    self.on_dry_run_failure(action, &ex, now, block, sink);
                }
            }
        }
    }

    /// Same-block keeper call: one atomic call serves as dry run and transaction (a revert
    /// rolls back and counts as not sent).
    fn send_or_skip(&mut self, action: ShouldRebalance, exchange: &str, now: u64, block: u64, sink: &mut dyn Sink) {
        self.flush_arbitrage();
        self.refresh();
        match self.call(action, exchange, KEEPER, now) {
            Ok(out) => {
                self.backoff = 1;
                self.book_success(action, Cow::Borrowed("keeper"), &out, now, block, sink);
            }
            Err(_) => self.on_dry_run_failure(action, exchange, now, block, sink),
        }
    }

    /// A keeper's dry run failed: end a TWAP stuck on a dust remainder, otherwise back off.
    fn on_dry_run_failure(
        &mut self,
        action: ShouldRebalance,
        exchange: &str,
        now: u64,
        block: u64,
        sink: &mut dyn Sink,
    ) {
        let dust = action == ShouldRebalance::IterateRebalance
            && self.token.dry_run(|t| t.iterate_rebalance(KEEPER, exchange, now)).err().and_then(|e| e.revert_reason())
                == Some("Quantity is 0");
        if dust {
            // The TWAP's remainder rounds to zero units: it can never trade. The operator ends
            // it (abort_twap, fli.md §17.6) instead of leaving it stuck.
            if self.token.abort_twap(OPERATOR, now).is_ok() {
                sink.event(&EventRow {
                    time: now,
                    block,
                    kind: Cow::Borrowed("twap_aborted"),
                    actor: Cow::Borrowed("operator"),
                    leverage_before: self.lr_estimate(),
                    ..EventRow::default()
                });
            }
            return;
        }
        // It would revert: do not send; back off exponentially (up to a day).
        self.counts.skipped_calls += 1;
        self.next_poll = block + self.backoff;
        let day_blocks = (86_400 / self.clock.block_time.max(1)).max(1);
        self.backoff = (self.backoff * 2).min(day_blocks);
    }

    fn sample(&mut self, now: u64, block: u64, sink: &mut dyn Sink) {
        self.flush_arbitrage();
        self.refresh();
        let t = &self.token;
        let lr = t.current_leverage_ratio(now).map(|v| Wad(v).to_f64()).unwrap_or(self.lr_estimate());
        let nav = t.nav(now).map(|n| Wad(n.per_token).to_f64()).unwrap_or(self.nav_estimate());
        let hf = t
            .market
            .account_data(t.account, now)
            .map(|d| if d.health_factor == U256::MAX { f64::INFINITY } else { Wad(d.health_factor).to_f64() })
            .unwrap_or(f64::NAN);
        let feed = if self.underlying_is_collateral { t.collateral } else { t.borrow };
        let oracle = t.market.reserves[feed].feed.answer as f64 / 1e8;
        let row = SeriesRow {
            time: now,
            block,
            price: self.price,
            oracle_price: oracle,
            pool_price: self.pool_price(),
            leverage: lr,
            nav,
            ideal_nav: self.ideal,
            hold_nav: self.nav0 * self.price / self.p0,
            collateral: self.cache.collateral,
            debt: self.cache.debt,
            health_factor: hf,
            gas_gwei: if self.cfg.costs.gas { self.gas_gwei() } else { 0.0 },
            supply: self.cache.supply,
        };
        if hf.is_finite() {
            self.min_hf = self.min_hf.min(hf);
        }
        sink.row(&row);
    }

    /// Step one block at `tick`.
    fn step(&mut self, tick: Tick, sink: &mut dyn Sink) -> Result<(), keel_core::Error> {
        let prev = self.price;
        self.clock.block += 1;
        self.clock.now = tick.time;
        self.price = tick.price;
        let (now, block) = (self.clock.now, self.clock.block);
        let r = (self.price / prev).ln();
        self.sum_r2 += r * r;
        // Ideal token: rebalanced every block at the target, no costs.
        self.ideal *= 1.0 + self.beta * (self.price / prev - 1.0);
        // Volatility for the gas model: EWMA of the absolute return scaled to one hour.
        let bt = self.clock.block_time.max(1) as f64;
        let hourly = r.abs() * (3_600.0 / bt).sqrt();
        let w = (bt / 3_600.0).min(1.0);
        self.vol_ewma = (1.0 - w) * self.vol_ewma + w * hourly;

        if self.cfg.costs.interest {
            self.token.market.accrue_all(now)?;
        }
        self.post_oracles(now);
        // Exposure peaks right after the move, before anyone acts: record it there.
        let lr_now = self.lr_estimate();
        if lr_now.is_finite() {
            self.max_lr = self.max_lr.max(lr_now);
            let bv = self.cache.debt * self.borrow_usd();
            if bv > 0.0 {
                let lt = self.product.lending.liquidation_threshold_bp as f64 / 1e4;
                self.min_hf = self.min_hf.min(lt * self.cache.collateral * self.collateral_usd() / bv);
            }
        }
        self.arbitrage();
        self.liquidate(now, block, sink);
        self.holders(now, block, sink);
        self.keepers(now, block, sink);
        if now / 86_400 > self.last_fee_day {
            self.last_fee_day = now / 86_400;
            self.read_levels();
            self.recenter_liquidity();
            let nav = self.nav_estimate();
            if let Ok(minted) = self.token.accrue_streaming_fee(now) {
                self.costs.streaming_fee += to_f64(minted, 18) * nav;
            }
            self.refresh_after_op();
        }
        // Metrics.
        if !self.engaged && self.token.fli.twap_leverage_ratio.is_zero() {
            self.engaged = true;
        }
        let nav = self.nav_estimate();
        let lr = self.lr_estimate();
        // Delever speed: from the first block above the band, through the peak, until the
        // ratio is back inside; leverage points removed per minute.
        if lr_now > self.levels.1 {
            let e = self.delever_episode.get_or_insert((now, lr_now));
            e.1 = e.1.max(lr_now);
        } else if let Some((t0, peak)) = self.delever_episode.take() {
            let minutes = (now.saturating_sub(t0) as f64 / 60.0).max(self.clock.block_time as f64 / 60.0);
            self.delever_speeds.push((peak - lr.min(peak)) / minutes);
            self.delever_minutes.push(minutes);
        }
        if self.engaged {
            self.counted_blocks += 1;
            if lr > self.levels.1 || lr < self.levels.0 {
                self.outside += 1;
            }
        }
        if self.nav_prev > 0.0 {
            self.worst_drop = self.worst_drop.min(nav / self.nav_prev - 1.0);
        }
        self.nav_prev = nav;
        if now >= self.next_day {
            self.daily.push((nav, self.ideal));
            self.next_day += 86_400;
        }
        if now >= self.next_sample {
            self.sample(now, block, sink);
            while self.next_sample <= now {
                self.next_sample += self.cfg.sample_every.max(1);
            }
        }
        Ok(())
    }

    /// Run the whole source; rows and events stream to `sink`.
    pub fn run(mut self, source: &mut dyn PriceSource, sink: &mut dyn Sink) -> Result<RunResult, keel_core::Error> {
        let total = source.len_hint();
        let start = self.clock.now;
        self.sample(start, 0, sink);
        self.next_sample = start + self.cfg.sample_every.max(1);
        self.next_day = start + 86_400;
        self.daily.push((self.nav0, self.ideal));
        let mut last_time = start;
        let mut first = true;
        while let Some(tick) = source.next_tick() {
            if first {
                self.clock.block_time = tick.time.saturating_sub(start).max(1);
                first = false;
            }
            last_time = tick.time;
            self.step(tick, sink)?;
            if self.clock.block.is_multiple_of(65_536) {
                sink.progress(self.clock.block, total);
            }
        }
        sink.progress(self.clock.block, total);
        self.sample(last_time, self.clock.block, sink);
        let nav_end = self.token.nav(last_time).map(|n| Wad(n.per_token).to_f64()).unwrap_or(self.nav_estimate());
        self.daily.push((nav_end, self.ideal));
        // Mint/redeem fees: tokens minted to the operator beyond the streaming fee.
        let fee_tokens = to_f64(self.token.ledger.balance_of(OPERATOR), 18);
        let stream_tokens = if nav_end > 0.0 { self.costs.streaming_fee / nav_end } else { 0.0 };
        self.costs.mint_redeem_fees = (fee_tokens - stream_tokens).max(0.0) * nav_end;
        let days = (last_time - start) as f64 / 86_400.0;
        let (te, daily_nav_returns, max_drawdown) = crate::metrics::daily_stats(&self.daily);
        let years = (days / 365.0).max(1e-9);
        let decay = ((self.beta - self.beta * self.beta) / 2.0 * self.sum_r2).exp();
        let summary = Summary {
            product: self.product.token.symbol.clone(),
            kind: keel_core::leveraged::Kind::LendingFli.name().to_string(),
            health_measure: keel_core::leveraged::Kind::LendingFli.health_name().to_string(),
            source: self.source_name.clone(),
            seed: self.cfg.seed,
            block_time: self.clock.block_time,
            blocks: self.clock.block,
            start,
            end: last_time,
            days,
            target_exposure: self.beta,
            min_leverage_ratio: Wad(self.token.fli.methodology.min_leverage_ratio).to_f64(),
            max_leverage_ratio: Wad(self.token.fli.methodology.max_leverage_ratio).to_f64(),
            incentivized_leverage_ratio: Wad(self.token.fli.incentive.incentivized_leverage_ratio).to_f64(),
            underlying_start: self.p0,
            underlying_end: self.price,
            underlying_return: self.price / self.p0 - 1.0,
            nav_start: self.nav0,
            nav_end,
            token_return: nav_end / self.nav0 - 1.0,
            ideal_return: self.ideal / self.nav0 - 1.0,
            return_vs_ideal: nav_end / self.nav0 - self.ideal / self.nav0,
            tracking_error: te,
            realised_volatility: (self.sum_r2 / years).sqrt(),
            predicted_decay: decay,
            predicted_return: (self.price / self.p0).powf(self.beta) * decay - 1.0,
            counts: self.counts,
            costs_usd: self.costs,
            min_health_factor: if self.min_hf.is_finite() { self.min_hf } else { 0.0 },
            max_leverage: self.max_lr,
            time_outside_band: if self.counted_blocks == 0 {
                0.0
            } else {
                self.outside as f64 / self.counted_blocks as f64
            },
            worst_block_nav_change: self.worst_drop,
            delever_speed: if self.delever_speeds.is_empty() {
                0.0
            } else {
                self.delever_speeds.iter().sum::<f64>() / self.delever_speeds.len() as f64
            },
            delever_minutes: self.delever_minutes.iter().cloned().fold(0.0, f64::max),
            warnings: self.warnings.clone(),
            venue: Default::default(),
        };
        Ok(RunResult { summary, daily_nav_returns, max_drawdown })
    }
}

/// The operator keeper's choice from `shouldRebalance`: keel's keeper policy
/// ([`keel_core::strategy::keeper::decide`], the one the service and the RPC keeper run) —
/// a ripcord first, otherwise the first exchange in the list that asks for a call.
fn keeper_choice(list: &[(String, ShouldRebalance)], block: u64) -> Option<(String, ShouldRebalance)> {
    use keel_core::strategy::keeper::{Action, Candidate, Memory, Observation, decide};
    let candidates = list
        .iter()
        .filter_map(|(ex, a)| {
            Action::from_enum(*a as u8).map(|action| Candidate { exchange: ex.clone(), action, chunk: U256::ZERO })
        })
        .collect();
    let o = Observation { id: String::new(), seq: block, blocked: None, candidates };
    let d = decide(&[o], &Memory::default(), 0).into_iter().next()?;
    let action = match d.action {
        Action::Rebalance => ShouldRebalance::Rebalance,
        Action::Iterate => ShouldRebalance::IterateRebalance,
        Action::Ripcord => ShouldRebalance::Ripcord,
    };
    Some((d.exchange, action))
}
