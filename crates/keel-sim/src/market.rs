//! One simulation loop for every token that implements
//! [`keel_core::leveraged::LeveragedToken`]. A market is a price path, the token's venue with its
//! agents ([`Venue`]), holders, the token's keeper and public bots, on one clock. Inside each
//! block, in this order:
//!
//! 1. the clock advances and the reference price moves (the ideal token follows it);
//! 2. the venue's agents act ([`Venue::agents`]: price feed, interest, arbitrage, liquidity
//!    providers, the venue's own keepers, liquidators);
//! 3. holders issue and redeem (Poisson arrivals, through the interface);
//! 4. public bots race for the emergency call's reward when it is due and pays; the operator's
//!    keeper executes what it decided `latency` ago, then polls what the methodology wants —
//!    unless the token's [`Screen`] says nothing can be due — and the keeper policy
//!    ([`keel_core::strategy::keeper::decide`]) picks the call, dry-run first, backing off when
//!    it would revert;
//! 5. once a day time-based fees accrue; metrics are recorded, rows sampled.
//!
//! The kind of token selects the venue's agents, not a different loop.
//!
//! [`Screen`]: keel_core::leveraged::Screen

use crate::agents::{HolderConfig, KeeperConfig, PoissonFlows};
use crate::engine::RunResult;
use crate::metrics::{CostBreakdown, Counts, EventRow, SeriesRow, Sink, Summary};
use crate::prices::PriceSource;
use crate::units::{price_wad, wad_f64};
use keel_core::Address;
use keel_core::leveraged::{Done, Health, LeveragedToken, Screen};
use keel_core::math::{I256, U256};
use keel_core::strategy::keeper::{Action, Candidate, Memory, Observation, decide};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Holders, as one account.
pub const HOLDERS: Address = Address::with_last_byte(0x03);
/// The operator's keeper.
pub const KEEPER: Address = Address::with_last_byte(0x02);
/// The operator (fee recipient; clears a stuck TWAP).
pub const OPERATOR: Address = Address::with_last_byte(0x01);

/// A token on its venue with the venue's agents.
pub trait Venue {
    /// The token.
    fn token(&self) -> &dyn LeveragedToken;
    /// The token, to operate on.
    fn token_mut(&mut self) -> &mut dyn LeveragedToken;
    /// The venue's agents after the price moved to `price` (`p` as a wad). Events go to `ev`;
    /// returns true when the token's position changed.
    fn agents(&mut self, now: u64, block: u64, price: f64, p: U256, ev: &mut dyn FnMut(EventRow)) -> bool;
    /// Bring lazily kept venue state up to date before `what` (a venue keeps only what that
    /// needs: a holder's issue does not read the pools a keeper's trade goes through).
    fn settle(&mut self, now: u64, p: U256, what: Settle);
    /// Re-read what the agents cache after the token changed.
    fn refresh(&mut self, now: u64);
    /// Re-read after a holder's issue or redeem (by default as after any change).
    fn refresh_after_flow(&mut self, now: u64) {
        self.refresh(now)
    }
    /// Venue-specific figures for the summary's `venue` object.
    fn figures(&self) -> BTreeMap<String, f64>;
    /// The pool or mark price the venue trades at, USD (for charts).
    fn trade_price(&self, price: f64) -> f64 {
        price
    }
    /// The oracle's answer for the underlying, USD (for charts).
    fn oracle_price(&self, price: f64) -> f64 {
        price
    }
    /// Add the venue's own costs (interest, fees paid at fills, keeper deposits, funding).
    fn add_costs(&self, _costs: &mut CostBreakdown) {}
    /// How the venue's funding is made, for the summary (empty: a venue without funding).
    fn funding_model(&self) -> String {
        String::new()
    }
    /// Started (an engage's TWAP done, a first order filled): band metrics count from here.
    fn engaged(&self) -> bool;
}

/// What the venue is settled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// A holder's issue or redeem.
    Flow,
    /// A keeper's or bot's call (it may trade).
    Call,
    /// Reading the token for a sample or the day's fees.
    Read,
}

/// How a run is set up around the venue.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// Seed of the holders' and bots' streams.
    pub seed: u64,
    /// Holders' flows.
    pub holders: HolderConfig,
    /// The operator's keeper and the public bots.
    pub keeper: KeeperConfig,
    /// Seconds between rows.
    pub sample_every: u64,
    /// ETH price (USD) for gas and rewards when the underlying is not ETH.
    pub eth_usd: f64,
    /// Description of the price source.
    pub source_name: String,
    /// Gas on.
    pub gas: bool,
    /// Skip reading the token while its screen says nothing can be due (on by default; off
    /// reads it every block — the differential tests compare the two).
    pub screens: bool,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            seed: 1,
            holders: HolderConfig::default(),
            keeper: KeeperConfig::default(),
            sample_every: 3_600,
            eth_usd: 2_000.0,
            source_name: String::new(),
            gas: true,
            screens: true,
        }
    }
}

fn f_signed(x: I256) -> f64 {
    let v = wad_f64(x.unsigned_abs());
    if x.is_negative() { -v } else { v }
}

/// Cached linear exposure, for per-block estimates between exact reads.
#[derive(Clone, Copy, Default)]
struct Cache {
    units: f64,
    cash: f64,
    supply: f64,
}

impl Cache {
    fn read(t: &dyn LeveragedToken, now: u64) -> Cache {
        Self::read_with_screen(t, now).0
    }

    /// The cache and the token's screen from one read of its exposure.
    fn read_with_screen(t: &dyn LeveragedToken, now: u64) -> (Cache, Screen) {
        match t.exposure(now) {
            Ok(e) => {
                let units = e.units_f64();
                let p = wad_f64(e.price);
                let cache = Cache { units, cash: wad_f64(e.equity) - units * p, supply: wad_f64(t.supply()) };
                (cache, t.screen(now, &e))
            }
            Err(_) => (Cache::default(), Screen::ALWAYS),
        }
    }

    fn nav(&self, p: f64) -> f64 {
        if self.supply <= 0.0 { 0.0 } else { (self.cash + self.units * p) / self.supply }
    }

    /// |exposure| / equity.
    fn exposure_leverage(&self, p: f64) -> f64 {
        let v = self.cash + self.units * p;
        if v <= 0.0 { f64::INFINITY } else { (self.units * p / v).abs() }
    }
}

fn health_f64(h: Health) -> f64 {
    match h {
        Health::HealthFactor(x) | Health::MarginRatio(x) if x == U256::MAX => f64::INFINITY,
        Health::HealthFactor(x) | Health::MarginRatio(x) => wad_f64(x),
    }
}

fn wad_of_usd(usd: f64) -> U256 {
    U256::from((usd.max(0.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64)
}

/// A run in progress.
struct Run<'a> {
    cfg: &'a MarketConfig,
    sink: &'a mut dyn Sink,
    counts: Counts,
    costs: CostBreakdown,
    rng: ChaCha8Rng,
    cache: Cache,
    screen: Screen,
    now: u64,
    block: u64,
    price: f64,
    p: U256,
    block_time: u64,
    vol_ewma: f64,
    eth_market: bool,
    beta: f64,
    emergency: Option<f64>,
    pending: Option<(u64, Candidate)>,
    next_poll: u64,
    backoff: u64,
    /// Extremes since the last row.
    ext: Extremes,
}

/// The extremes of the price, NAV, leverage and health since the last row, so a row (and a
/// chart drawn from rows) keeps every peak and trough that happened between samples.
#[derive(Clone, Copy)]
struct Extremes {
    price: (f64, f64),
    nav: (f64, f64),
    leverage: (f64, f64),
    health_low: f64,
}

impl Extremes {
    const EMPTY: Extremes = Extremes {
        price: (f64::INFINITY, f64::NEG_INFINITY),
        nav: (f64::INFINITY, f64::NEG_INFINITY),
        leverage: (f64::INFINITY, f64::NEG_INFINITY),
        health_low: f64::INFINITY,
    };

    fn widen(range: &mut (f64, f64), v: f64) {
        range.0 = range.0.min(v);
        range.1 = range.1.max(v);
    }

    /// The market and the token's NAV at a block.
    #[inline]
    fn market(&mut self, price: f64, nav: f64) {
        Self::widen(&mut self.price, price);
        if nav.is_finite() {
            Self::widen(&mut self.nav, nav);
        }
    }

    /// Leverage and health of an engaged token at a block.
    #[inline]
    fn exposure(&mut self, leverage: f64, health: f64) {
        if leverage.is_finite() {
            Self::widen(&mut self.leverage, leverage);
        }
        if !health.is_nan() {
            self.health_low = self.health_low.min(health);
        }
    }

    /// `(low, high)`, NaN when nothing was seen.
    fn range(r: (f64, f64)) -> (f64, f64) {
        if r.0 <= r.1 { r } else { (f64::NAN, f64::NAN) }
    }
}

impl Run<'_> {
    fn eth_usd(&self) -> f64 {
        if self.eth_market { self.price } else { self.cfg.eth_usd }
    }

    fn gas_gwei(&self) -> f64 {
        self.cfg.keeper.gas.gwei(self.vol_ewma)
    }

    fn gas_usd(&self, units: u64) -> f64 {
        if !self.cfg.gas {
            return 0.0;
        }
        units as f64 * self.gas_gwei() * 1e-9 * self.eth_usd()
    }

    /// Methodology leverage estimated from the cache.
    fn leverage(&self, v: &dyn Venue) -> f64 {
        v.token().leverage_of_exposure(self.cache.exposure_leverage(self.price))
    }

    /// After a holder's flow: a pro-rata token only rescales (leverage, NAV and the screen hold).
    fn reread_after_flow(&mut self, v: &mut dyn Venue) {
        if !v.token().flows_keep_leverage() {
            return self.reread(v);
        }
        v.refresh_after_flow(self.now);
        let supply = wad_f64(v.token().supply());
        if self.cache.supply > 0.0 {
            let k = supply / self.cache.supply;
            self.cache = Cache { units: self.cache.units * k, cash: self.cache.cash * k, supply };
        } else {
            self.reread(v);
        }
    }

    fn reread(&mut self, v: &mut dyn Venue) {
        v.refresh(self.now);
        (self.cache, self.screen) = Cache::read_with_screen(v.token(), self.now);
    }

    fn event(&mut self, e: EventRow) {
        self.sink.event(&e);
    }

    /// Book a call that landed.
    fn book(&mut self, v: &dyn Venue, call: &Candidate, actor: Cow<'static, str>, d: &Done) {
        let units = &self.cfg.keeper.gas_units;
        let gas = self.gas_usd(match call.action {
            Action::Rebalance => units.rebalance,
            Action::Iterate => units.iterate,
            Action::Ripcord => units.ripcord,
        });
        if actor.as_ref() == "keeper" {
            self.costs.gas_keeper += gas
        } else {
            self.costs.gas_bots += gas
        }
        match d.event {
            "rebalance" => self.counts.rebalances += 1,
            "iterate" => self.counts.iterations += 1,
            "ripcord" => self.counts.ripcords += 1,
            "close" => self.counts.closes += 1,
            "reverse-split" => self.counts.reverse_splits += 1,
            _ => {}
        }
        let (sold, bought, fee) = (wad_f64(d.sold), wad_f64(d.bought), wad_f64(d.fee));
        // impact: the shortfall against the reference price beyond the fee (venues that fill at
        // the index report none)
        let impact = if d.sold.is_zero() { 0.0 } else { sold - bought - fee };
        self.costs.pool_fees += fee;
        self.costs.price_impact += impact;
        let reward = wad_f64(d.reward);
        self.costs.ether_rewards += reward * self.eth_usd();
        let lev_before = if d.leverage_before.is_zero() { self.leverage(v) } else { f_signed(d.leverage_before).abs() };
        let target = if d.leverage_target.is_zero() { self.beta.abs() } else { f_signed(d.leverage_target).abs() };
        self.event(EventRow {
            time: self.now,
            block: self.block,
            kind: Cow::Borrowed(d.event),
            actor,
            leverage_before: lev_before,
            target,
            chunk: f_signed(d.traded).abs(),
            total: if call.action == Action::Ripcord { 0.0 } else { wad_f64(d.total) },
            sold_usd: sold,
            bought_usd: bought,
            pool_fee_usd: fee,
            impact_usd: impact,
            gas_usd: gas,
            reward_eth: reward,
            error: String::new(),
        });
    }

    /// Send `call` as `caller`; book it either way. True when it landed.
    fn submit(&mut self, v: &mut dyn Venue, call: &Candidate, caller: Address, actor: Cow<'static, str>) -> bool {
        v.settle(self.now, self.p, Settle::Call);
        match v.token_mut().execute(caller, call, self.now) {
            Ok(d) => {
                self.book(v, call, actor, &d);
                self.reread(v);
                true
            }
            Err(e) => {
                let gas = self.gas_usd(self.cfg.keeper.gas_units.failed);
                if actor.as_ref() == "keeper" {
                    self.costs.gas_keeper += gas
                } else {
                    self.costs.gas_bots += gas
                }
                self.counts.failed_calls += 1;
                let lev = self.leverage(v);
                self.event(EventRow {
                    time: self.now,
                    block: self.block,
                    kind: Cow::Owned(format!("{}_failed", call.action.name())),
                    actor,
                    leverage_before: lev,
                    gas_usd: gas,
                    error: e.to_string(),
                    ..EventRow::default()
                });
                false
            }
        }
    }

    /// The keeper's dry run failed: clear what the operator can, otherwise back off.
    fn on_dry_run_failure(&mut self, v: &mut dyn Venue, call: &Candidate) {
        if let Some(what) = v.token_mut().unstick(OPERATOR, call, self.now) {
            let lev = self.leverage(v);
            self.event(EventRow {
                time: self.now,
                block: self.block,
                kind: Cow::Borrowed(what),
                actor: Cow::Borrowed("operator"),
                leverage_before: lev,
                ..EventRow::default()
            });
            self.reread(v);
            return;
        }
        self.counts.skipped_calls += 1;
        self.next_poll = self.block + self.backoff;
        let day_blocks = (86_400 / self.block_time.max(1)).max(1);
        self.backoff = (self.backoff * 2).min(day_blocks);
    }

    fn bots(&mut self, v: &mut dyn Venue) {
        let k = &self.cfg.keeper;
        let Some(level) = self.emergency else { return };
        if k.ripcord_bots == 0 || self.leverage(v) < level * 0.999 {
            return;
        }
        v.settle(self.now, self.p, Settle::Call);
        let Ok(wanted) = v.token().wanted(self.now) else { return };
        let Some(call) = wanted.into_iter().find(|c| c.action == Action::Ripcord) else { return };
        let reward = wad_f64(v.token().emergency_reward(self.now)) * self.eth_usd();
        if reward <= 0.0 {
            return; // nothing pays a public caller: the operator's keeper acts
        }
        let cost = self.gas_usd(k.gas_units.ripcord);
        if v.token_mut().dry_run(Address::with_last_byte(0x40), &call, self.now).is_err() {
            // every bot's dry run says it would revert: none sends
            self.counts.skipped_calls += 1;
        } else if reward - cost >= k.min_profit_usd {
            // all bots saw the same state; the first to land wins, the others revert
            let n = k.ripcord_bots;
            let first = self.rng.random_range(0..n);
            for i in 0..n {
                let bot = (first + i) % n;
                self.submit(v, &call, Address::with_last_byte(0x40 + bot as u8), Cow::Owned(format!("bot-{bot}")));
            }
        } else {
            self.counts.unprofitable_ripcord_blocks += 1;
        }
    }

    fn keeper(&mut self, v: &mut dyn Venue) {
        if let Some((at, call)) = self.pending.clone()
            && self.block >= at
        {
            self.pending = None;
            self.submit(v, &call, KEEPER, Cow::Borrowed("keeper"));
        }
        let k = &self.cfg.keeper;
        if self.pending.is_some()
            || self.block < self.next_poll
            || !self.block.is_multiple_of(k.poll_every.max(1))
            || (self.cfg.screens && self.screen.quiet(self.now, self.price))
        {
            return;
        }
        v.settle(self.now, self.p, Settle::Call);
        let candidates = match v.token().wanted(self.now) {
            Ok(c) => c,
            Err(_) => {
                self.counts.skipped_calls += 1;
                return;
            }
        };
        if candidates.is_empty() {
            (self.cache, self.screen) = Cache::read_with_screen(v.token(), self.now);
            return;
        }
        let o = Observation { id: String::new(), seq: self.block, blocked: None, candidates };
        let Some(d) = decide(&[o], &Memory::default(), 0).into_iter().next() else { return };
        let call = Candidate { exchange: d.exchange, action: d.action, chunk: U256::ZERO };
        let latency = k.latency_seconds / self.block_time.max(1);
        if latency == 0 {
            // decided and sent in the same block: the dry run and the call see the same state,
            // so one atomic call is both (a revert rolls back and is not sent)
            v.settle(self.now, self.p, Settle::Call);
            match v.token_mut().execute(KEEPER, &call, self.now) {
                Ok(done) => {
                    self.backoff = 1;
                    self.book(v, &call, Cow::Borrowed("keeper"), &done);
                    self.reread(v);
                }
                Err(_) => self.on_dry_run_failure(v, &call),
            }
        } else if v.token_mut().dry_run(KEEPER, &call, self.now).is_ok() {
            self.backoff = 1;
            self.pending = Some((self.block + latency, call));
        } else {
            self.on_dry_run_failure(v, &call);
        }
    }

    /// Holders' mints and redeems due by now; each is settled before and re-read after (the
    /// venue books what changed between reads with no operation as interest).
    fn holders(&mut self, v: &mut dyn Venue, flows: &mut PoissonFlows) {
        while let Some(usd) = flows.next_mint(self.now) {
            v.settle(self.now, self.p, Settle::Flow);
            let lev = self.leverage(v);
            let result = v.token_mut().issue(HOLDERS, wad_of_usd(usd), self.now);
            if self.flow_event(result, true, usd, lev) {
                self.reread_after_flow(v);
            }
        }
        while let Some(usd) = flows.next_redeem(self.now) {
            v.settle(self.now, self.p, Settle::Flow);
            let t = v.token();
            let nav = t.nav_per_token(self.now).map(wad_f64).unwrap_or(0.0);
            let held = t.balance_of(HOLDERS);
            if nav <= 0.0 || held.is_zero() {
                continue;
            }
            let want = wad_of_usd(usd / nav).min(held / U256::from(2u64));
            if want.is_zero() {
                continue;
            }
            let lev = self.leverage(v);
            let result = v.token_mut().redeem(HOLDERS, want, self.now);
            if self.flow_event(result, false, usd, lev) {
                self.reread_after_flow(v);
            }
        }
    }

    fn flow_event(
        &mut self,
        result: Result<keel_core::leveraged::Flow, keel_core::Error>,
        mint: bool,
        usd: f64,
        lev: f64,
    ) -> bool {
        let (kind, error, tokens, ok) = match result {
            Ok(f) => {
                if mint {
                    self.counts.mints += 1
                } else {
                    self.counts.redeems += 1
                }
                self.costs.mint_redeem_fees += wad_f64(f.fee);
                (if mint { "mint" } else { "redeem" }, String::new(), wad_f64(f.tokens), true)
            }
            Err(e) => {
                self.counts.refused_flows += 1;
                (if mint { "mint_failed" } else { "redeem_failed" }, e.to_string(), 0.0, false)
            }
        };
        self.event(EventRow {
            time: self.now,
            block: self.block,
            kind: Cow::Borrowed(kind),
            actor: Cow::Borrowed("holders"),
            leverage_before: lev,
            chunk: tokens,
            sold_usd: if mint { usd } else { 0.0 },
            bought_usd: if mint { 0.0 } else { usd },
            error,
            ..EventRow::default()
        });
        ok
    }

    /// Write a row: the state at this block and the extremes since the last row (then reset).
    fn sample(&mut self, v: &mut dyn Venue, ideal: f64, nav0: f64, p0: f64) -> SeriesRow {
        v.settle(self.now, self.p, Settle::Read);
        self.cache = Cache::read(v.token(), self.now);
        let t = v.token();
        let nav = t.nav_per_token(self.now).map(wad_f64).unwrap_or_else(|_| self.cache.nav(self.price));
        let lev = t.leverage(self.now).map(|l| f_signed(l).abs()).unwrap_or_else(|_| self.leverage(v));
        let health = t.health(self.now).map(health_f64).unwrap_or(f64::NAN);
        let e = t.exposure(self.now).ok();
        let mut ext = std::mem::replace(&mut self.ext, Extremes::EMPTY);
        ext.market(self.price, nav);
        if v.engaged() {
            ext.exposure(lev, health);
        }
        let (price_low, price_high) = Extremes::range(ext.price);
        let (nav_low, nav_high) = Extremes::range(ext.nav);
        let (leverage_low, leverage_high) = Extremes::range(ext.leverage);
        let row = SeriesRow {
            time: self.now,
            block: self.block,
            price: self.price,
            price_low,
            price_high,
            oracle_price: v.oracle_price(self.price),
            pool_price: v.trade_price(self.price),
            leverage: lev,
            leverage_low,
            leverage_high,
            nav,
            nav_low,
            nav_high,
            ideal_nav: ideal,
            hold_nav: nav0 * self.price / p0,
            collateral: e.map(|e| e.units_f64().abs()).unwrap_or(0.0),
            debt: e.map(|e| (e.units_f64() * wad_f64(e.price) - wad_f64(e.equity)).max(0.0)).unwrap_or(0.0),
            health_factor: health,
            health_low: if ext.health_low.is_finite() { ext.health_low } else { f64::NAN },
            gas_gwei: if self.cfg.gas { self.gas_gwei() } else { 0.0 },
            supply: wad_f64(t.supply()),
            costs_usd: {
                let mut c = self.costs;
                v.add_costs(&mut c);
                crate::sweep::total_cost(&c)
            },
            funding_usd: t.funding_paid(self.now).map(f_signed).unwrap_or(0.0),
        };
        self.sink.row(&row);
        row
    }
}

/// Run `venue` over `source`; rows and events stream to `sink`.
pub fn run_market(
    venue: &mut dyn Venue,
    source: &mut dyn PriceSource,
    cfg: &MarketConfig,
    sink: &mut dyn Sink,
) -> Result<RunResult, keel_core::Error> {
    let t0 = source.start_time();
    let p0 = source.start_price();
    let total = source.len_hint();
    let token = venue.token();
    let band = token.band();
    let kind = token.kind();
    let beta = token.target_exposure();
    let (lo, hi) = (wad_f64(band.min.unsigned_abs()), wad_f64(band.max.unsigned_abs()));
    let emergency = band.emergency.and_then(|e| e.leverage).map(|l| wad_f64(l.unsigned_abs()));
    let eth_market = token.symbol().to_uppercase().contains("ETH");
    let mut flows = PoissonFlows::new(&cfg.holders, t0, cfg.seed);
    let mut r = Run {
        cfg,
        sink,
        counts: Counts::default(),
        costs: CostBreakdown::default(),
        rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x626f_7473),
        cache: Cache::default(),
        screen: Screen::ALWAYS,
        now: t0,
        block: 0,
        price: p0,
        p: price_wad(p0).ok_or(keel_core::math::MathError::Overflow("price"))?,
        block_time: 1,
        vol_ewma: 0.0,
        eth_market,
        beta,
        emergency,
        pending: None,
        next_poll: 0,
        backoff: 1,
        ext: Extremes::EMPTY,
    };
    (r.cache, r.screen) = Cache::read_with_screen(token, t0);
    let nav0 = token.nav_per_token(t0).map(wad_f64).unwrap_or(0.0);
    let mut ideal = nav0;
    let mut prev = p0;
    let (mut sum_r2, mut max_lr, mut min_health) = (0.0f64, 0.0f64, f64::INFINITY);
    let (mut outside, mut counted, mut worst, mut nav_prev) = (0u64, 0u64, 0.0f64, nav0);
    let mut daily = vec![(nav0, ideal)];
    let (mut next_day, mut next_sample) = (t0 + 86_400, t0 + cfg.sample_every.max(1));
    let mut episode: Option<(u64, f64)> = None;
    let (mut speeds, mut minutes) = (Vec::new(), Vec::new());
    // the summary's extremes are the rows' extremes, so a chart of the rows shows them
    let extremes_of = |row: &SeriesRow, max_lr: &mut f64, min_health: &mut f64| {
        if row.leverage_high.is_finite() {
            *max_lr = max_lr.max(row.leverage_high);
        }
        if !row.health_low.is_nan() {
            *min_health = min_health.min(row.health_low);
        }
    };
    let row = r.sample(venue, ideal, nav0, p0);
    extremes_of(&row, &mut max_lr, &mut min_health);
    let mut last_row = row.time;
    while let Some(tick) = source.next_tick() {
        // 1. the clock and the price
        if r.block == 0 {
            r.block_time = tick.time.saturating_sub(t0).max(1);
        }
        r.block += 1;
        r.now = tick.time;
        r.price = tick.price;
        r.p = price_wad(tick.price).ok_or(keel_core::math::MathError::Overflow("price"))?;
        let ret = (r.price / prev).ln();
        sum_r2 += ret * ret;
        ideal *= (1.0 + beta * (r.price / prev - 1.0)).max(0.0);
        prev = r.price;
        // volatility for the gas model: EWMA of the absolute return scaled to one hour
        let bt = r.block_time as f64;
        let w = (bt / 3_600.0).min(1.0);
        r.vol_ewma = (1.0 - w) * r.vol_ewma + w * ret.abs() * (3_600.0 / bt).sqrt();

        // 2. the venue's agents
        let (now, block, price, p) = (r.now, r.block, r.price, r.p);
        let mut liquidations = 0;
        let changed = venue.agents(now, block, price, p, &mut |e: EventRow| {
            if e.kind == "liquidation" {
                liquidations += 1;
            }
            r.sink.event(&e);
        });
        r.counts.liquidations += liquidations;
        if changed {
            (r.cache, r.screen) = Cache::read_with_screen(venue.token(), now);
        }
        // exposure peaks right after the move, before anyone acts: record it there
        let lr_now = r.leverage(venue);
        if venue.engaged() && lr_now.is_finite() {
            r.ext.exposure(lr_now, venue.token().health_at_leverage(lr_now));
        }

        // 3. holders; 4. bots and the keeper
        r.holders(venue, &mut flows);
        r.bots(venue);
        r.keeper(venue);

        // 5. fees and metrics
        if now >= next_day {
            venue.settle(now, p, Settle::Read);
            if let Ok(v) = venue.token_mut().accrue_fees(now) {
                r.costs.streaming_fee += wad_f64(v);
            }
            r.reread(venue);
            daily.push((r.cache.nav(price), ideal));
            next_day += 86_400;
        }
        let lr = r.leverage(venue);
        let nav = r.cache.nav(price);
        r.ext.market(price, nav);
        if venue.engaged() {
            counted += 1;
            if lr > hi || lr < lo {
                outside += 1;
            }
            // delever speed: from the first block above the band, through the peak, until the
            // ratio is back inside; leverage points removed per minute
            if lr_now > hi {
                let e = episode.get_or_insert((now, lr_now));
                e.1 = e.1.max(lr_now);
            } else if let Some((s, peak)) = episode.take() {
                let m = (now.saturating_sub(s) as f64 / 60.0).max(bt / 60.0);
                speeds.push((peak - lr.min(peak)) / m);
                minutes.push(m);
            }
        }
        if nav_prev > 0.0 {
            worst = worst.min(nav / nav_prev - 1.0);
        }
        nav_prev = nav;
        if now >= next_sample {
            let row = r.sample(venue, ideal, nav0, p0);
            extremes_of(&row, &mut max_lr, &mut min_health);
            last_row = row.time;
            while next_sample <= now {
                next_sample += cfg.sample_every.max(1);
            }
        }
        if block.is_multiple_of(65_536) {
            r.sink.progress(block, total);
        }
    }
    r.sink.progress(r.block, total);
    // the last block, unless it was just sampled
    if r.now > last_row {
        let row = r.sample(venue, ideal, nav0, p0);
        extremes_of(&row, &mut max_lr, &mut min_health);
    }
    let (now, price) = (r.now, r.price);
    let nav_end = venue.token().nav_per_token(now).map(wad_f64).unwrap_or_else(|_| r.cache.nav(price));
    daily.push((nav_end, ideal));
    venue.add_costs(&mut r.costs);
    let days = now.saturating_sub(t0) as f64 / 86_400.0;
    let (te, daily_nav_returns, max_drawdown) = crate::metrics::daily_stats(&daily);
    let years = (days / 365.0).max(1e-9);
    let decay = ((beta - beta * beta) / 2.0 * sum_r2).exp();
    let nav0 = if nav0 > 0.0 { nav0 } else { 1.0 };
    let summary = Summary {
        product: venue.token().symbol().to_string(),
        kind: kind.name().to_string(),
        health_measure: kind.health_name().to_string(),
        source: cfg.source_name.clone(),
        seed: cfg.seed,
        block_time: r.block_time,
        blocks: r.block,
        start: t0,
        end: now,
        days,
        target_exposure: beta,
        min_leverage_ratio: lo,
        max_leverage_ratio: hi,
        incentivized_leverage_ratio: emergency.unwrap_or(0.0),
        underlying_start: p0,
        underlying_end: price,
        underlying_return: price / p0 - 1.0,
        nav_start: nav0,
        nav_end,
        token_return: nav_end / nav0 - 1.0,
        ideal_return: ideal / nav0 - 1.0,
        return_vs_ideal: nav_end / nav0 - ideal / nav0,
        tracking_error: te,
        realised_volatility: (sum_r2 / years).sqrt(),
        predicted_decay: decay,
        predicted_return: (price / p0).powf(beta) * decay - 1.0,
        counts: r.counts,
        costs_usd: r.costs,
        min_health_factor: if min_health.is_finite() { min_health } else { 0.0 },
        max_leverage: max_lr,
        time_outside_band: if counted == 0 { 0.0 } else { outside as f64 / counted as f64 },
        worst_block_nav_change: worst,
        delever_speed: if speeds.is_empty() { 0.0 } else { speeds.iter().sum::<f64>() / speeds.len() as f64 },
        delever_minutes: minutes.iter().cloned().fold(0.0, f64::max),
        warnings: Vec::new(),
        venue: venue.figures(),
        funding: venue.funding_model(),
        run: None,
    };
    Ok(RunResult { summary, daily_nav_returns, max_drawdown })
}

/// Run any product file's token over `source` with `tvl_usd` issued at the start (0 or less:
/// the product's default) and `holders`' flows, on the chain's default keeper settings; a perp
/// venue's funding made by `funding`.
#[allow(clippy::too_many_arguments)]
pub fn run_product(
    product: &keel_core::product::AnyProduct,
    source: &mut dyn PriceSource,
    tvl_usd: f64,
    holders: HolderConfig,
    seed: u64,
    source_name: &str,
    funding: &crate::funding::FundingModel,
    sink: &mut dyn Sink,
) -> Result<RunResult, String> {
    use keel_core::product::AnyProduct;
    let (t0, p0) = (source.start_time(), source.start_price());
    match product {
        AnyProduct::Lending(p) => {
            let cfg = crate::SimConfig { seed, initial_tvl_usd: tvl_usd, holders, ..crate::SimConfig::default() };
            let sim = crate::Simulation::new(p, cfg, t0, p0, source_name).map_err(|e| format!("cannot start: {e}"))?;
            sim.run(source, sink).map_err(|e| e.to_string())
        }
        other => {
            let mut cfg = MarketConfig { seed, holders, source_name: source_name.into(), ..MarketConfig::default() };
            cfg.keeper.gas.base_gwei = crate::clock::OPTIMISM.base_gas_gwei;
            let tvl = if tvl_usd > 0.0 { tvl_usd } else { 1_000_000.0 };
            let mut v =
                crate::venues::build(other, tvl, t0, p0, funding, seed).map_err(|e| format!("cannot start: {e}"))?;
            run_market(v.as_mut(), source, &cfg, sink).map_err(|e| e.to_string())
        }
    }
}
