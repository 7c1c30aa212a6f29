//! One simulation loop for every token that implements
//! [`keel_core::leveraged::LeveragedToken`]. A market is a price path, the token's venue with its
//! agents ([`Venue`]), holders and the token's keeper, on one clock. Inside each block, in this
//! order:
//!
//! 1. the clock advances and the reference price moves (the ideal token follows it);
//! 2. the venue's agents act ([`Venue::agents`]: price feed, arbitrage, liquidity providers, the
//!    venue's own keepers, liquidators);
//! 3. holders issue and redeem (Poisson arrivals, through the interface);
//! 4. the token's keeper reads what the methodology wants and the keeper policy
//!    ([`keel_core::strategy::keeper::decide`]) picks the call — unless the token's
//!    [`Screen`] says nothing can be due at this price and time;
//! 5. once a day time-based fees accrue; metrics are recorded, rows sampled.
//!
//! The kind of token selects the venue's agents, not a different loop.

use crate::agents::{GasUnits, HolderConfig, PoissonFlows};
use crate::clock::ChainProfile;
use crate::engine::RunResult;
use crate::metrics::{CostBreakdown, Counts, EventRow, SeriesRow, Sink, Summary};
use crate::prices::PriceSource;
use crate::units::{price_wad, wad_f64};
use keel_core::Address;
use keel_core::leveraged::{Done, Health, LeveragedToken};
use keel_core::math::{I256, U256};
use keel_core::strategy::keeper::{Memory, Observation, decide};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Holders, as one account.
pub const HOLDERS: Address = Address::with_last_byte(0x03);
/// The token's keeper.
pub const KEEPER: Address = Address::with_last_byte(0x02);
/// The operator (fee recipient).
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
    /// Bring lazily kept venue state up to date before a token operation.
    fn settle(&mut self, now: u64, p: U256);
    /// Recompute the agents' own screens after the token changed.
    fn refresh(&mut self, now: u64);
    /// The chain the venue runs on (gas).
    fn chain(&self) -> ChainProfile;
    /// Venue-specific figures for the summary's `venue` object.
    fn figures(&self) -> BTreeMap<String, f64>;
    /// The pool or mark price the venue trades at, USD (for charts).
    fn trade_price(&self, price: f64) -> f64 {
        price
    }
    /// Add the venue's own costs (fees paid at fills, keeper deposits) to the run's costs.
    fn add_costs(&self, _costs: &mut CostBreakdown) {}
    /// Started (an engage's TWAP done, a first order filled): metrics count from here.
    fn engaged(&self) -> bool;
}

/// How a run is set up around the venue.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// Seed of the holders' stream.
    pub seed: u64,
    /// Holders' flows.
    pub holders: HolderConfig,
    /// Seconds between rows.
    pub sample_every: u64,
    /// ETH price for gas when the underlying is not ETH.
    pub eth_usd: Option<f64>,
    /// Description of the price source.
    pub source_name: String,
    /// Gas on.
    pub gas: bool,
    /// Skip reading the token while its [`keel_core::leveraged::Screen`] says nothing can be
    /// due (on by default; off reads it every block — the differential tests compare the two).
    pub screens: bool,
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
    fn nav(&self, p: f64) -> f64 {
        if self.supply <= 0.0 { 0.0 } else { (self.cash + self.units * p) / self.supply }
    }
    fn leverage(&self, p: f64) -> f64 {
        let v = self.cash + self.units * p;
        if v <= 0.0 { f64::INFINITY } else { (self.units * p / v).abs() }
    }
}

fn read_cache(t: &dyn LeveragedToken, now: u64) -> Cache {
    match t.exposure(now) {
        Ok(e) => {
            let units = e.units_f64();
            let p = wad_f64(e.price);
            Cache { units, cash: wad_f64(e.equity) - units * p, supply: wad_f64(t.supply()) }
        }
        Err(_) => Cache::default(),
    }
}

fn health_f64(h: Health) -> f64 {
    match h {
        Health::HealthFactor(x) | Health::MarginRatio(x) => {
            if x == U256::MAX {
                f64::INFINITY
            } else {
                wad_f64(x)
            }
        }
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
    let chain = venue.chain();
    let band = venue.token().band();
    let kind = venue.token().kind();
    let beta = f_signed(band.target);
    let (lo, hi) = (wad_f64(band.min.unsigned_abs()), wad_f64(band.max.unsigned_abs()));
    let units = GasUnits::default();
    let eth_market = venue.token().symbol().to_uppercase().contains("ETH");
    let gas_usd = |price: f64, u: u64| {
        if !cfg.gas {
            return 0.0;
        }
        let eth = if eth_market { price } else { cfg.eth_usd.unwrap_or(2_000.0) };
        u as f64 * chain.base_gas_gwei * 1e-9 * eth
    };
    let mut counts = Counts::default();
    let mut costs = CostBreakdown::default();
    let mut flows = PoissonFlows::new(&cfg.holders, t0, cfg.seed);
    let mem = Memory::default();
    let (mut next_attempt, mut failures) = (0u64, 0u32);
    let mut cache = read_cache(venue.token(), t0);
    let mut screen = venue.token().screen(t0);
    let nav0 = venue.token().nav_per_token(t0).map(wad_f64).unwrap_or(0.0);
    let mut ideal = nav0;
    let (mut prev, mut price, mut now, mut block) = (p0, p0, t0, 0u64);
    let (mut sum_r2, mut max_lr, mut min_health) = (0.0f64, 0.0f64, f64::INFINITY);
    let (mut outside, mut counted, mut worst, mut nav_prev) = (0u64, 0u64, 0.0f64, nav0);
    let mut daily = vec![(nav0, ideal)];
    let (mut next_day, mut next_sample) = (t0 + 86_400, t0);
    let mut episode: Option<(u64, f64)> = None;
    let (mut speeds, mut minutes) = (Vec::new(), Vec::new());
    let mut block_time = 0u64;
    let mut fee_tokens_value = 0.0;

    let sample = |venue: &mut dyn Venue, now: u64, block: u64, price: f64, ideal: f64, sink: &mut dyn Sink| -> f64 {
        let t = venue.token();
        let nav = t.nav_per_token(now).map(wad_f64).unwrap_or(0.0);
        let lev = t.leverage(now).map(f_signed).unwrap_or(0.0);
        let health = t.health(now).map(health_f64).unwrap_or(f64::NAN);
        let e = t.exposure(now).ok();
        sink.row(&SeriesRow {
            time: now,
            block,
            price,
            oracle_price: e.map(|e| wad_f64(e.price)).unwrap_or(price),
            pool_price: venue.trade_price(price),
            leverage: lev.abs(),
            nav,
            ideal_nav: ideal,
            hold_nav: nav0 * price / p0,
            collateral: e.map(|e| e.units_f64().abs()).unwrap_or(0.0),
            debt: e.map(|e| (e.units_f64() * wad_f64(e.price) - wad_f64(e.equity)).max(0.0)).unwrap_or(0.0),
            health_factor: health,
            gas_gwei: if cfg.gas { chain.base_gas_gwei } else { 0.0 },
            supply: wad_f64(t.supply()),
        });
        health
    };
    if venue.engaged() {
        let h = sample(venue, t0, 0, p0, ideal, sink);
        if h.is_finite() {
            min_health = min_health.min(h);
        }
    }
    while let Some(tick) = source.next_tick() {
        if block == 0 {
            block_time = tick.time.saturating_sub(t0).max(1);
        }
        block += 1;
        now = tick.time;
        price = tick.price;
        let p = price_wad(price).ok_or(keel_core::math::MathError::Overflow("price"))?;
        let r = (price / prev).ln();
        sum_r2 += r * r;
        ideal *= (1.0 + beta * (price / prev - 1.0)).max(0.0);
        prev = price;

        // 2. the venue's agents
        let mut changed = venue.agents(now, block, price, p, &mut |e: EventRow| {
            if e.kind == "liquidation" {
                counts.liquidations += 1;
            }
            sink.event(&e);
        });
        if changed {
            cache = read_cache(venue.token(), now);
            screen = venue.token().screen(now);
        }
        let lr_now = cache.leverage(price);
        if venue.engaged() && lr_now.is_finite() {
            max_lr = max_lr.max(lr_now);
        }

        // 3. holders
        while let Some(usd) = flows.next_mint(now) {
            venue.settle(now, p);
            let value = U256::from((usd.max(0.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match venue.token_mut().issue(HOLDERS, value, now) {
                Ok(f) => {
                    counts.mints += 1;
                    costs.mint_redeem_fees += wad_f64(f.fee);
                    sink.event(&EventRow {
                        time: now,
                        block,
                        kind: Cow::Borrowed("mint"),
                        actor: Cow::Borrowed("holders"),
                        chunk: wad_f64(f.tokens),
                        bought_usd: wad_f64(f.value),
                        ..Default::default()
                    });
                    changed = true;
                }
                Err(e) => refused(&mut counts, sink, now, block, "mint_failed", e),
            }
        }
        while let Some(usd) = flows.next_redeem(now) {
            venue.settle(now, p);
            let t = venue.token_mut();
            let nav = t.nav_per_token(now).map(wad_f64).unwrap_or(0.0);
            let held = t.balance_of(HOLDERS);
            if nav <= 0.0 || held.is_zero() {
                continue;
            }
            let want = U256::from((usd / nav * 1e6) as u128) * U256::from(1_000_000_000_000u64);
            match t.redeem(HOLDERS, want.min(held / U256::from(2u64)), now) {
                Ok(f) => {
                    counts.redeems += 1;
                    costs.mint_redeem_fees += wad_f64(f.fee);
                    sink.event(&EventRow {
                        time: now,
                        block,
                        kind: Cow::Borrowed("redeem"),
                        actor: Cow::Borrowed("holders"),
                        chunk: wad_f64(f.tokens),
                        sold_usd: wad_f64(f.value),
                        ..Default::default()
                    });
                    changed = true;
                }
                Err(e) => refused(&mut counts, sink, now, block, "redeem_failed", e),
            }
        }
        if changed {
            venue.refresh(now);
            cache = read_cache(venue.token(), now);
            screen = venue.token().screen(now);
        }

        // 4. the token's keeper
        if now >= next_attempt && !(cfg.screens && screen.quiet(now, price)) {
            venue.settle(now, p);
            let wanted = venue.token().wanted(now);
            match wanted {
                Ok(candidates) if !candidates.is_empty() => {
                    let o = Observation { id: String::new(), seq: block, blocked: None, candidates };
                    if let Some(d) = decide(&[o], &mem, now * 1000).into_iter().next() {
                        let call = keel_core::strategy::keeper::Candidate {
                            exchange: d.exchange.clone(),
                            action: d.action,
                            chunk: U256::ZERO,
                        };
                        let lev_before = cache.leverage(price);
                        match venue.token_mut().execute(KEEPER, &call, now) {
                            Ok(done) => {
                                failures = 0;
                                book(
                                    &mut counts,
                                    &mut costs,
                                    &done,
                                    if eth_market { price } else { cfg.eth_usd.unwrap_or(2_000.0) },
                                );
                                let gas = gas_usd(price, units.rebalance);
                                costs.gas_keeper += gas;
                                sink.event(&EventRow {
                                    time: now,
                                    block,
                                    kind: Cow::Borrowed(done.event),
                                    actor: Cow::Borrowed("keeper"),
                                    leverage_before: lev_before,
                                    target: beta.abs(),
                                    chunk: f_signed(done.traded).abs(),
                                    pool_fee_usd: wad_f64(done.fee),
                                    gas_usd: gas,
                                    reward_eth: wad_f64(done.reward),
                                    ..Default::default()
                                });
                            }
                            Err(e) => {
                                counts.failed_calls += 1;
                                costs.gas_keeper += gas_usd(price, units.failed);
                                next_attempt = keel_core::strategy::threshold::next_attempt(now, 60, failures);
                                failures = failures.saturating_add(1).min(16);
                                sink.event(&EventRow {
                                    time: now,
                                    block,
                                    kind: Cow::Owned(format!("{}_failed", call.action.name())),
                                    actor: Cow::Borrowed("keeper"),
                                    leverage_before: lev_before,
                                    error: e.to_string(),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                    venue.refresh(now);
                    cache = read_cache(venue.token(), now);
                    screen = venue.token().screen(now);
                }
                Ok(_) => screen = venue.token().screen(now),
                Err(_) => {
                    counts.skipped_calls += 1;
                    next_attempt = keel_core::strategy::threshold::next_attempt(now, 60, failures);
                    failures = failures.saturating_add(1).min(16);
                }
            }
        }

        // 5. fees and metrics
        if now >= next_day {
            venue.settle(now, p);
            if let Ok(v) = venue.token_mut().accrue_fees(now) {
                costs.streaming_fee += wad_f64(v);
                fee_tokens_value += wad_f64(v);
            }
            cache = read_cache(venue.token(), now);
            let nav = venue.token().nav_per_token(now).map(wad_f64).unwrap_or(0.0);
            daily.push((nav, ideal));
            next_day += 86_400;
        }
        let lr = cache.leverage(price);
        let nav = cache.nav(price);
        if venue.engaged() {
            counted += 1;
            if lr > hi || lr < lo {
                outside += 1;
            }
            if lr_now > hi {
                let e = episode.get_or_insert((now, lr_now));
                e.1 = e.1.max(lr_now);
            } else if let Some((s, peak)) = episode.take() {
                let m = (now.saturating_sub(s) as f64 / 60.0).max(block_time as f64 / 60.0);
                speeds.push((peak - lr.min(peak)) / m);
                minutes.push(m);
            }
            if nav_prev > 0.0 {
                worst = worst.min(nav / nav_prev - 1.0);
            }
        }
        nav_prev = nav;
        if now >= next_sample && venue.engaged() {
            venue.settle(now, p);
            cache = read_cache(venue.token(), now);
            let h = sample(venue, now, block, price, ideal, sink);
            if h.is_finite() {
                min_health = min_health.min(h);
            }
            while next_sample <= now {
                next_sample += cfg.sample_every.max(1);
            }
        }
        if block.is_multiple_of(65_536) {
            sink.progress(block, total);
        }
    }
    sink.progress(block, total);
    let p_end = price_wad(price).unwrap_or(U256::from(1));
    venue.settle(now, p_end);
    let h = sample(venue, now, block, price, ideal, sink);
    if h.is_finite() {
        min_health = min_health.min(h);
    }
    let nav_end = venue.token().nav_per_token(now).map(wad_f64).unwrap_or(0.0);
    daily.push((nav_end, ideal));
    let _ = fee_tokens_value;
    venue.add_costs(&mut costs);
    let days = now.saturating_sub(t0) as f64 / 86_400.0;
    let (te, daily_nav_returns, max_drawdown) = crate::metrics::daily_stats(&daily);
    let years = (days / 365.0).max(1e-9);
    let decay = ((beta - beta * beta) / 2.0 * sum_r2).exp();
    let nav0 = if nav0 > 0.0 { nav0 } else { 1.0 };
    let emergency = band.emergency.and_then(|e| e.leverage).map(|l| wad_f64(l.unsigned_abs())).unwrap_or(0.0);
    let summary = Summary {
        product: venue.token().symbol().to_string(),
        kind: kind.name().to_string(),
        health_measure: kind.health_name().to_string(),
        source: cfg.source_name.clone(),
        seed: cfg.seed,
        block_time,
        blocks: block,
        start: t0,
        end: now,
        days,
        target_exposure: beta,
        min_leverage_ratio: lo,
        max_leverage_ratio: hi,
        incentivized_leverage_ratio: emergency,
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
        counts,
        costs_usd: costs,
        min_health_factor: if min_health.is_finite() { min_health } else { 0.0 },
        max_leverage: max_lr,
        time_outside_band: if counted == 0 { 0.0 } else { outside as f64 / counted as f64 },
        worst_block_nav_change: worst,
        delever_speed: if speeds.is_empty() { 0.0 } else { speeds.iter().sum::<f64>() / speeds.len() as f64 },
        delever_minutes: minutes.iter().cloned().fold(0.0, f64::max),
        warnings: Vec::new(),
        venue: venue.figures(),
    };
    Ok(RunResult { summary, daily_nav_returns, max_drawdown })
}

fn book(counts: &mut Counts, costs: &mut CostBreakdown, done: &Done, eth_usd: f64) {
    match done.event {
        "rebalance" => counts.rebalances += 1,
        "iterate" => counts.iterations += 1,
        "ripcord" => counts.ripcords += 1,
        "close" => counts.closes += 1,
        "reverse-split" => counts.reverse_splits += 1,
        _ => {}
    }
    costs.pool_fees += wad_f64(done.fee);
    costs.ether_rewards += wad_f64(done.reward) * eth_usd;
}

fn refused(counts: &mut Counts, sink: &mut dyn Sink, now: u64, block: u64, kind: &'static str, e: keel_core::Error) {
    counts.refused_flows += 1;
    sink.event(&EventRow {
        time: now,
        block,
        kind: Cow::Borrowed(kind),
        actor: Cow::Borrowed("holders"),
        error: e.to_string(),
        ..Default::default()
    });
}

/// Run any product file's token over `source` with `tvl_usd` issued at the start and `holders`'
/// flows: the lending engine for lending FLI, [`run_market`] over the kind's venue otherwise.
pub fn run_product(
    product: &keel_core::product::AnyProduct,
    source: &mut dyn PriceSource,
    tvl_usd: f64,
    holders: HolderConfig,
    seed: u64,
    source_name: &str,
    sink: &mut dyn Sink,
) -> Result<RunResult, String> {
    use keel_core::product::AnyProduct;
    let (t0, p0) = (source.start_time(), source.start_price());
    let cfg = MarketConfig {
        seed,
        holders,
        sample_every: 3_600,
        eth_usd: None,
        source_name: source_name.into(),
        gas: true,
        screens: true,
    };
    match product {
        AnyProduct::Lending(p) => {
            let cfg = crate::SimConfig { seed, initial_tvl_usd: tvl_usd, holders, ..crate::SimConfig::default() };
            let sim = crate::Simulation::new(p, cfg, t0, p0, source_name).map_err(|e| format!("cannot start: {e}"))?;
            sim.run(source, sink).map_err(|e| e.to_string())
        }
        AnyProduct::Perp(p) => {
            let mut v = crate::venues::perp::PerpVenue::new(p, tvl_usd, 200_000_000.0, t0, p0)
                .map_err(|e| format!("cannot start: {e}"))?;
            run_market(&mut v, source, &cfg, sink).map_err(|e| e.to_string())
        }
        AnyProduct::Threshold(p) => {
            let mut v = crate::venues::synthetix::SynthetixVenue::new(p, tvl_usd, t0, p0)
                .map_err(|e| format!("cannot start: {e}"))?;
            run_market(&mut v, source, &cfg, sink).map_err(|e| e.to_string())
        }
    }
}
