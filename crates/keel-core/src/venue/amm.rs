//! A Uniswap-v3-style concentrated-liquidity pool (`venues.md` §2).
//!
//! The tick math (sqrt price ↔ tick, amount deltas, one swap step) comes from the
//! `uniswap-v3-sdk` crate; this module holds the pool's state and runs the swap loop over an
//! in-memory tick list exactly as `UniswapV3Pool.swap` does: one step per initialised tick *or*
//! bitmap word boundary, because every step rounds and skipping a boundary would change the
//! result by a wei.

use crate::error::AmmError;
use crate::math::{U256, pow10};
use alloy_primitives::aliases::{I24, U24};
use alloy_primitives::{I256, U160, U512};
use serde::{Deserialize, Serialize};
use uniswap_v3_sdk::prelude::{
    MAX_SQRT_RATIO, MAX_TICK_I32, MIN_SQRT_RATIO, MIN_TICK_I32, add_delta, compute_swap_step, get_amount_0_delta,
    get_amount_1_delta, get_sqrt_ratio_at_tick, get_tick_at_sqrt_ratio,
};

/// One side of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolToken {
    /// Asset symbol, e.g. `USDC`.
    pub symbol: String,
    /// Decimals of the asset's base unit.
    pub decimals: u8,
}

/// An initialised tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickInfo {
    /// Tick index (a multiple of the pool's spacing).
    pub index: i32,
    /// Liquidity added when the price crosses this tick upward.
    pub liquidity_net: i128,
    /// Total liquidity referencing this tick.
    pub liquidity_gross: u128,
}

/// A liquidity position used to build a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidityPosition {
    /// Lower tick (inclusive).
    pub tick_lower: i32,
    /// Upper tick (exclusive).
    pub tick_upper: i32,
    /// Liquidity `L`.
    pub liquidity: u128,
}

/// The part of a pool a swap changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    sqrt_price_x96: U160,
    tick: i32,
    liquidity: u128,
    fees0: U256,
    fees1: U256,
}

/// Result of a swap or quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOutcome {
    /// Input taken from the trader, fee included.
    pub amount_in: U256,
    /// Output paid to the trader.
    pub amount_out: U256,
    /// Fee part of `amount_in` (in the input token).
    pub fee: U256,
    /// Sqrt price after the swap.
    pub sqrt_price_x96: U160,
    /// Tick after the swap.
    pub tick: i32,
    /// In-range liquidity after the swap.
    pub liquidity: u128,
    /// Number of loop steps (initialised ticks or word boundaries visited).
    pub steps: u32,
}

/// Fee tiers and their tick spacings (`venues.md` §2.4).
pub fn tick_spacing_for_fee(fee_pips: u32) -> Result<i32, AmmError> {
    match fee_pips {
        100 => Ok(1),
        500 => Ok(10),
        3_000 => Ok(60),
        10_000 => Ok(200),
        other => Err(AmmError::InvalidPool(format!(
            "fee {other} pips is not a Uniswap v3 fee tier (100, 500, 3000 or 10000)"
        ))),
    }
}

fn tick_err(e: impl std::fmt::Display) -> AmmError {
    AmmError::TickMath(e.to_string())
}

fn i24(t: i32) -> Result<I24, AmmError> {
    I24::try_from(t).map_err(|_| AmmError::TickMath(format!("tick {t} out of range")))
}

/// The sqrt price (Q64.96) at `tick` (`TickMath.getSqrtRatioAtTick`).
pub fn sqrt_price_at_tick(tick: i32) -> Result<U160, AmmError> {
    get_sqrt_ratio_at_tick(i24(tick)?).map_err(tick_err)
}

/// The sqrt price (Q64.96) of a raw price ratio token1/token0 given as `f64`, for targets
/// (an arbitrageur's goal), not for money: fast, within an ulp of the exact value.
pub fn sqrt_price_x96_from_f64(ratio: f64) -> Result<U160, AmmError> {
    let x = ratio.sqrt() * 2f64.powi(96);
    if !x.is_finite() || x <= 0.0 {
        return Err(AmmError::InvalidPool("price must be positive".into()));
    }
    let s = if x < 3.0e38 {
        U160::from(x as u128)
    } else {
        let e = x.log2().floor() as i32 - 100;
        U160::from((x / 2f64.powi(e)) as u128) << (e as usize)
    };
    Ok(s.clamp(MIN_SQRT_RATIO + U160::from(1), MAX_SQRT_RATIO - U160::from(1)))
}

/// `sqrt(num/den) · 2^96`, floored: the sqrt price of a raw price ratio token1/token0.
pub fn sqrt_price_x96_from_ratio(num: U256, den: U256) -> Result<U160, AmmError> {
    if num.is_zero() || den.is_zero() {
        return Err(AmmError::InvalidPool("price must be positive".into()));
    }
    let q: U512 = (U512::from(num) << 192usize) / U512::from(den);
    let r = q.root(2);
    if r.bit_len() > 160 {
        return Err(AmmError::InvalidPool("price out of range".into()));
    }
    let s: U160 = r.to();
    if s < MIN_SQRT_RATIO || s >= MAX_SQRT_RATIO {
        return Err(AmmError::InvalidPool("price out of the tick range".into()));
    }
    Ok(s)
}

/// A Uniswap v3 pool: price, in-range liquidity and initialised ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Name used in messages and reports.
    pub name: String,
    /// The token that sorts first.
    pub token0: PoolToken,
    /// The other token.
    pub token1: PoolToken,
    /// Fee in pips (hundredths of a basis point).
    pub fee_pips: u32,
    /// Tick spacing of the fee tier.
    pub tick_spacing: i32,
    sqrt_price_x96: U160,
    tick: i32,
    liquidity: u128,
    /// Initialised ticks; fixed after construction, shared between copies of the pool.
    ticks: std::sync::Arc<[TickInfo]>,
    /// Cumulative swap fees earned by LPs, in token0 base units.
    pub fees0: U256,
    /// Cumulative swap fees earned by LPs, in token1 base units.
    pub fees1: U256,
}

impl Pool {
    /// Build a pool at `sqrt_price_x96` from a list of positions.
    pub fn new(
        name: impl Into<String>,
        token0: PoolToken,
        token1: PoolToken,
        fee_pips: u32,
        sqrt_price_x96: U160,
        positions: &[LiquidityPosition],
    ) -> Result<Self, AmmError> {
        let tick_spacing = tick_spacing_for_fee(fee_pips)?;
        if sqrt_price_x96 < MIN_SQRT_RATIO || sqrt_price_x96 >= MAX_SQRT_RATIO {
            return Err(AmmError::InvalidPool("sqrt price out of range".into()));
        }
        let tick = get_tick_at_sqrt_ratio(sqrt_price_x96).map_err(tick_err)?.as_i32();
        let mut ticks: std::collections::BTreeMap<i32, TickInfo> = Default::default();
        let mut liquidity: u128 = 0;
        for (i, p) in positions.iter().enumerate() {
            let bad = |why: &str| AmmError::InvalidPool(format!("position {i}: {why}"));
            if p.tick_lower >= p.tick_upper {
                return Err(bad("tick_lower must be below tick_upper"));
            }
            if p.tick_lower < MIN_TICK_I32 || p.tick_upper > MAX_TICK_I32 {
                return Err(bad("ticks outside the valid range"));
            }
            if p.tick_lower % tick_spacing != 0 || p.tick_upper % tick_spacing != 0 {
                return Err(bad("ticks must be multiples of the tick spacing"));
            }
            if p.liquidity == 0 || p.liquidity > i128::MAX as u128 {
                return Err(bad("liquidity must be positive and fit in int128"));
            }
            let l = p.liquidity as i128;
            for (idx, delta) in [(p.tick_lower, l), (p.tick_upper, -l)] {
                let t = ticks.entry(idx).or_insert(TickInfo { index: idx, liquidity_net: 0, liquidity_gross: 0 });
                t.liquidity_net = t.liquidity_net.checked_add(delta).ok_or_else(|| bad("liquidity overflow"))?;
                t.liquidity_gross =
                    t.liquidity_gross.checked_add(p.liquidity).ok_or_else(|| bad("liquidity overflow"))?;
            }
            if p.tick_lower <= tick && tick < p.tick_upper {
                liquidity = liquidity.checked_add(p.liquidity).ok_or_else(|| bad("liquidity overflow"))?;
            }
        }
        Ok(Pool {
            name: name.into(),
            token0,
            token1,
            fee_pips,
            tick_spacing,
            sqrt_price_x96,
            tick,
            liquidity,
            ticks: ticks.into_values().collect::<Vec<_>>().into(),
            fees0: U256::ZERO,
            fees1: U256::ZERO,
        })
    }

    /// Build a pool for a pair at USD prices from a liquidity profile: each band is a
    /// `(half_width, usd_value)` pair, a position from `price/(1+w)` to `price·(1+w)` worth
    /// `usd_value` at the current price. Setup helper; integer math throughout.
    pub fn from_profile(
        name: impl Into<String>,
        token0: PoolToken,
        token1: PoolToken,
        fee_pips: u32,
        usd_price0: U256,
        usd_price1: U256,
        bands: &[(u32, U256)],
    ) -> Result<Self, AmmError> {
        // price1per0 (raw) = (p0 / 10^d0) / (p1 / 10^d1)
        let num = usd_price0 * pow10(token1.decimals as u32);
        let den = usd_price1 * pow10(token0.decimals as u32);
        let sqrt_p = sqrt_price_x96_from_ratio(num, den)?;
        let spacing = tick_spacing_for_fee(fee_pips)?;
        let tick = get_tick_at_sqrt_ratio(sqrt_p).map_err(tick_err)?.as_i32();
        let mut positions = Vec::with_capacity(bands.len());
        for &(half_width_bp, usd) in bands {
            // ticks for ×(1 + w): ln(1+w)/ln(1.0001) ≈ w_bp for small w; computed by bisection on
            // the exact tick math so the band is at least the requested width.
            let width_ticks = ticks_for_ratio_bp(half_width_bp)?;
            let lower = ((tick - width_ticks).div_euclid(spacing)) * spacing;
            let upper = ((tick + width_ticks).div_euclid(spacing) + 1) * spacing;
            let lower = lower.max(MIN_TICK_I32.div_euclid(spacing) * spacing + spacing);
            let upper = upper.min(MAX_TICK_I32.div_euclid(spacing) * spacing);
            // Value of a reference liquidity, then scale linearly.
            let l_ref: u128 = 1_000_000_000_000_000_000;
            let (a0, a1) = amounts_for_liquidity(sqrt_p, lower, upper, l_ref)?;
            let v_ref =
                a0 * usd_price0 / pow10(token0.decimals as u32) + a1 * usd_price1 / pow10(token1.decimals as u32);
            if v_ref.is_zero() {
                return Err(AmmError::InvalidPool("band too narrow to hold value".into()));
            }
            let l = usd * U256::from(l_ref) / v_ref;
            let l: u128 = u128::try_from(l).map_err(|_| AmmError::InvalidPool("liquidity too large".into()))?;
            if l > 0 {
                positions.push(LiquidityPosition { tick_lower: lower, tick_upper: upper, liquidity: l });
            }
        }
        Pool::new(name, token0, token1, fee_pips, sqrt_p, &positions)
    }

    /// The mutable part of the pool (price, tick, liquidity, fee counters).
    pub fn state(&self) -> PoolState {
        PoolState {
            sqrt_price_x96: self.sqrt_price_x96,
            tick: self.tick,
            liquidity: self.liquidity,
            fees0: self.fees0,
            fees1: self.fees1,
        }
    }

    /// Put back a [`Pool::state`].
    pub fn set_state(&mut self, s: PoolState) {
        self.sqrt_price_x96 = s.sqrt_price_x96;
        self.tick = s.tick;
        self.liquidity = s.liquidity;
        self.fees0 = s.fees0;
        self.fees1 = s.fees1;
    }

    /// Current sqrt price (Q64.96).
    pub fn sqrt_price_x96(&self) -> U160 {
        self.sqrt_price_x96
    }

    /// Current tick.
    pub fn tick(&self) -> i32 {
        self.tick
    }

    /// In-range liquidity.
    pub fn liquidity(&self) -> u128 {
        self.liquidity
    }

    /// Initialised ticks, ascending.
    pub fn ticks(&self) -> &[TickInfo] {
        &self.ticks
    }

    /// The index (0 or 1) of a token by symbol.
    pub fn index_of(&self, symbol: &str) -> Option<u8> {
        if self.token0.symbol == symbol {
            Some(0)
        } else if self.token1.symbol == symbol {
            Some(1)
        } else {
            None
        }
    }

    /// Price of token1 in token0 whole units as `f64` (analytics and charts only).
    pub fn price1_in_0_f64(&self) -> f64 {
        // through f64 from all 160 bits: a pool quoting a cheap collateral has a sqrt price
        // above 2^128
        let s = crate::math::to_f64(U256::from(self.sqrt_price_x96), 0) / 2f64.powi(96);
        let raw = s * s; // token1 raw per token0 raw
        // whole token1 per whole token0 = raw · 10^(d0 − d1); invert for token0 per token1
        let per0 = raw * 10f64.powi(self.token0.decimals as i32 - self.token1.decimals as i32);
        1.0 / per0
    }

    /// `(zero_for_one)` for a swap selling `symbol`.
    pub fn direction_selling(&self, symbol: &str) -> Result<bool, AmmError> {
        match self.index_of(symbol) {
            Some(0) => Ok(true),
            Some(_) => Ok(false),
            None => Err(AmmError::InvalidPool(format!("pool {} does not trade {symbol}", self.name))),
        }
    }

    /// Quote an exact-input swap without changing state.
    pub fn quote_exact_input(
        &self,
        zero_for_one: bool,
        amount_in: U256,
        sqrt_price_limit: Option<U160>,
    ) -> Result<SwapOutcome, AmmError> {
        if amount_in.is_zero() {
            return Err(AmmError::ZeroAmount);
        }
        let specified = I256::try_from(amount_in).map_err(|_| AmmError::InvalidPool("amount too large".into()))?;
        let out = self.run_swap(zero_for_one, specified, sqrt_price_limit)?;
        if out.remaining != I256::ZERO && sqrt_price_limit.is_none() {
            return Err(AmmError::InsufficientLiquidity {
                pool: self.name.clone(),
                filled: (amount_in - out.remaining.into_raw()).to_string(),
                requested: amount_in.to_string(),
            });
        }
        Ok(out.outcome)
    }

    /// Quote an exact-output swap without changing state.
    pub fn quote_exact_output(
        &self,
        zero_for_one: bool,
        amount_out: U256,
        sqrt_price_limit: Option<U160>,
    ) -> Result<SwapOutcome, AmmError> {
        if amount_out.is_zero() {
            return Err(AmmError::ZeroAmount);
        }
        let specified = -I256::try_from(amount_out).map_err(|_| AmmError::InvalidPool("amount too large".into()))?;
        let out = self.run_swap(zero_for_one, specified, sqrt_price_limit)?;
        if out.remaining != I256::ZERO && sqrt_price_limit.is_none() {
            return Err(AmmError::InsufficientLiquidity {
                pool: self.name.clone(),
                filled: (amount_out - out.remaining.unsigned_abs()).to_string(),
                requested: amount_out.to_string(),
            });
        }
        Ok(out.outcome)
    }

    /// Exact-input swap with a minimum output; changes state only on success.
    pub fn swap_exact_input(
        &mut self,
        zero_for_one: bool,
        amount_in: U256,
        min_out: U256,
        sqrt_price_limit: Option<U160>,
    ) -> Result<SwapOutcome, AmmError> {
        let o = self.quote_exact_input(zero_for_one, amount_in, sqrt_price_limit)?;
        if o.amount_out < min_out {
            return Err(AmmError::SlippageTooHigh { received: o.amount_out.to_string(), minimum: min_out.to_string() });
        }
        self.apply(zero_for_one, &o);
        Ok(o)
    }

    /// Exact-output swap with a maximum input; changes state only on success.
    pub fn swap_exact_output(
        &mut self,
        zero_for_one: bool,
        amount_out: U256,
        max_in: U256,
        sqrt_price_limit: Option<U160>,
    ) -> Result<SwapOutcome, AmmError> {
        let o = self.quote_exact_output(zero_for_one, amount_out, sqrt_price_limit)?;
        if o.amount_in > max_in {
            return Err(AmmError::SlippageTooHigh { received: o.amount_in.to_string(), minimum: max_in.to_string() });
        }
        self.apply(zero_for_one, &o);
        Ok(o)
    }

    /// Move the price toward `target` by trading in from the side that pushes it there, at most
    /// `max_in` of input. Returns `None` when the price is already at the target.
    pub fn swap_toward(&mut self, target: U160, max_in: U256) -> Result<Option<(bool, SwapOutcome)>, AmmError> {
        let target = target.clamp(MIN_SQRT_RATIO + U160::from(1), MAX_SQRT_RATIO - U160::from(1));
        if target == self.sqrt_price_x96 || max_in.is_zero() {
            return Ok(None);
        }
        let zero_for_one = target < self.sqrt_price_x96;
        let o = self.quote_exact_input(zero_for_one, max_in, Some(target))?;
        if o.amount_in.is_zero() {
            return Ok(None);
        }
        self.apply(zero_for_one, &o);
        Ok(Some((zero_for_one, o)))
    }

    /// Move the price to `target` as a swap with unlimited input and that price limit would,
    /// without computing amounts: every step of such a swap reaches its target, so the end
    /// state (sqrt price, tick, liquidity after each crossing) is the same. The arbitrageur of
    /// a simulation uses this when only the pool's state matters. Returns the steps taken.
    pub fn move_price_to(&mut self, target: U160) -> Result<u32, AmmError> {
        let one = U160::from(1);
        let target = target.clamp(MIN_SQRT_RATIO + one, MAX_SQRT_RATIO - one);
        if target == self.sqrt_price_x96 {
            return Ok(0);
        }
        let zero_for_one = target < self.sqrt_price_x96;
        let (mut sqrt_price, mut tick, mut liquidity) = (self.sqrt_price_x96, self.tick, self.liquidity);
        let mut steps = 0;
        while sqrt_price != target {
            steps += 1;
            let start = sqrt_price;
            let boundary = self.next_boundary(tick, zero_for_one)?;
            sqrt_price = if zero_for_one { boundary.2.max(target) } else { boundary.2.min(target) };
            self.end_step(zero_for_one, start, sqrt_price, boundary, &mut tick, &mut liquidity)?;
        }
        self.sqrt_price_x96 = sqrt_price;
        self.tick = tick;
        self.liquidity = liquidity;
        Ok(steps)
    }

    fn apply(&mut self, zero_for_one: bool, o: &SwapOutcome) {
        self.sqrt_price_x96 = o.sqrt_price_x96;
        self.tick = o.tick;
        self.liquidity = o.liquidity;
        if zero_for_one {
            self.fees0 += o.fee;
        } else {
            self.fees1 += o.fee;
        }
    }

    /// Mirrors the next-initialised-tick search of `TickBitmap`: the result never leaves the
    /// current 256-tick word.
    fn next_initialized_tick_within_one_word(&self, tick: i32, lte: bool) -> (i32, bool) {
        let spacing = self.tick_spacing;
        let compressed = tick.div_euclid(spacing);
        if lte {
            let word_pos = compressed >> 8;
            let minimum = (word_pos << 8) * spacing;
            // largest initialised index ≤ tick
            let pos = self.ticks.partition_point(|t| t.index <= tick);
            match pos.checked_sub(1).map(|i| self.ticks[i].index) {
                Some(index) if index >= minimum => (index, true),
                _ => (minimum, false),
            }
        } else {
            let word_pos = (compressed + 1) >> 8;
            let maximum = (((word_pos + 1) << 8) - 1) * spacing;
            // smallest initialised index > tick
            let pos = self.ticks.partition_point(|t| t.index <= tick);
            match self.ticks.get(pos).map(|t| t.index) {
                Some(index) if index <= maximum => (index, true),
                _ => (maximum, false),
            }
        }
    }

    /// The next boundary a swap step runs to: `(tick_next, initialized, sqrt price there)`.
    fn next_boundary(&self, tick: i32, zero_for_one: bool) -> Result<(i32, bool, U160), AmmError> {
        let (tick_next, initialized) = self.next_initialized_tick_within_one_word(tick, zero_for_one);
        let tick_next = tick_next.clamp(MIN_TICK_I32, MAX_TICK_I32);
        Ok((tick_next, initialized, get_sqrt_ratio_at_tick(i24(tick_next)?).map_err(tick_err)?))
    }

    /// After a step from `start` ended at `sqrt_price`: cross the boundary if reached (adding its
    /// liquidity net), else recompute the tick if the price moved.
    #[allow(clippy::too_many_arguments)]
    fn end_step(
        &self,
        zero_for_one: bool,
        start: U160,
        sqrt_price: U160,
        boundary: (i32, bool, U160),
        tick: &mut i32,
        liquidity: &mut u128,
    ) -> Result<(), AmmError> {
        let (tick_next, initialized, sqrt_next) = boundary;
        if sqrt_price == sqrt_next {
            if initialized {
                let mut net = self.liquidity_net_at(tick_next);
                if zero_for_one {
                    net = -net;
                }
                *liquidity = add_delta(*liquidity, net).map_err(tick_err)?;
            }
            *tick = if zero_for_one { tick_next - 1 } else { tick_next };
        } else if sqrt_price != start {
            *tick = get_tick_at_sqrt_ratio(sqrt_price).map_err(tick_err)?.as_i32();
        }
        Ok(())
    }

    fn liquidity_net_at(&self, index: i32) -> i128 {
        match self.ticks.binary_search_by_key(&index, |t| t.index) {
            Ok(i) => self.ticks[i].liquidity_net,
            Err(_) => 0,
        }
    }

    /// The swap loop of `UniswapV3Pool.swap`, without state changes.
    fn run_swap(&self, zero_for_one: bool, amount_specified: I256, limit: Option<U160>) -> Result<RunResult, AmmError> {
        self.run_swap_with(zero_for_one, amount_specified, limit, self.fee_pips, &mut |_| {})
    }

    /// The swap loop of `UniswapV3Pool.swap` charged at `fee_pips` instead of the pool's fee,
    /// without state changes, handing every step to `on_step`: what Perp v2's
    /// `OrderBook.replaySwap` runs to price its exchange fee (`venue::perp_v2::vamm_swap`).
    /// Amounts are signed as in the pool: positive `amount_specified` is an exact input.
    pub fn replay_swap(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        limit: Option<U160>,
        fee_pips: u32,
        on_step: &mut dyn FnMut(&SwapStep),
    ) -> Result<SwapOutcome, AmmError> {
        if fee_pips >= 1_000_000 {
            return Err(AmmError::InvalidPool(format!("fee {fee_pips} pips is 100% or more")));
        }
        Ok(self.run_swap_with(zero_for_one, amount_specified, limit, fee_pips, on_step)?.outcome)
    }

    fn run_swap_with(
        &self,
        zero_for_one: bool,
        amount_specified: I256,
        limit: Option<U160>,
        fee_pips: u32,
        on_step: &mut dyn FnMut(&SwapStep),
    ) -> Result<RunResult, AmmError> {
        let one = U160::from(1);
        let limit = limit.unwrap_or(if zero_for_one { MIN_SQRT_RATIO + one } else { MAX_SQRT_RATIO - one });
        if zero_for_one {
            if !(limit < self.sqrt_price_x96 && limit > MIN_SQRT_RATIO) {
                return Err(AmmError::InvalidPriceLimit("selling token0 needs a limit below the current price".into()));
            }
        } else if !(limit > self.sqrt_price_x96 && limit < MAX_SQRT_RATIO) {
            return Err(AmmError::InvalidPriceLimit("selling token1 needs a limit above the current price".into()));
        }
        let fee = U24::from(fee_pips);
        let exact_input = amount_specified >= I256::ZERO;
        let mut remaining = amount_specified;
        let mut calculated = I256::ZERO;
        let mut sqrt_price = self.sqrt_price_x96;
        let mut tick = self.tick;
        let mut liquidity = self.liquidity;
        let mut fee_total = U256::ZERO;
        let mut steps = 0u32;
        while remaining != I256::ZERO && sqrt_price != limit {
            steps += 1;
            let start = sqrt_price;
            let boundary = self.next_boundary(tick, zero_for_one)?;
            let sqrt_next = boundary.2;
            let target = if zero_for_one { sqrt_next.max(limit) } else { sqrt_next.min(limit) };
            let (new_sqrt, mut amount_in, amount_out, mut fee_amount) =
                compute_swap_step(sqrt_price, target, liquidity, remaining, fee).map_err(tick_err)?;
            if exact_input && new_sqrt != target {
                // v3-core's `SwapMath.computeSwapStep`: a step that stops short of its target
                // recomputes the input from the prices (rounded up) and takes the rest of the
                // remaining amount as the LP fee. The SDK follows v4-core, which keeps the
                // input at the amount less fee: same totals, a few wei less fee to LPs
                // (`docs/spec/venues.md` §2, found by the conformance suite).
                amount_in = if zero_for_one {
                    get_amount_0_delta(new_sqrt, sqrt_price, liquidity, true)
                } else {
                    get_amount_1_delta(sqrt_price, new_sqrt, liquidity, true)
                }
                .map_err(tick_err)?;
                fee_amount = remaining.into_raw() - amount_in;
            }
            on_step(&SwapStep { amount_in, amount_out, fee: fee_amount, liquidity });
            sqrt_price = new_sqrt;
            fee_total += fee_amount;
            if exact_input {
                remaining = I256::from_raw(remaining.into_raw() - amount_in - fee_amount);
                calculated = I256::from_raw(calculated.into_raw() - amount_out);
            } else {
                remaining = I256::from_raw(remaining.into_raw() + amount_out);
                calculated = I256::from_raw(calculated.into_raw() + amount_in + fee_amount);
            }
            self.end_step(zero_for_one, start, sqrt_price, boundary, &mut tick, &mut liquidity)?;
        }
        let (amount_in, amount_out) = if exact_input {
            (amount_specified.into_raw() - remaining.into_raw(), calculated.unsigned_abs())
        } else {
            (calculated.into_raw(), amount_specified.unsigned_abs() - remaining.unsigned_abs())
        };
        Ok(RunResult {
            remaining,
            outcome: SwapOutcome {
                amount_in,
                amount_out,
                fee: fee_total,
                sqrt_price_x96: sqrt_price,
                tick,
                liquidity,
                steps,
            },
        })
    }
}

/// One step of a swap: from the price to the next initialised tick (or the word's edge), or
/// to where the amount ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapStep {
    /// Input of the step, fee excluded.
    pub amount_in: U256,
    /// Output of the step.
    pub amount_out: U256,
    /// Fee of the step, in the input token.
    pub fee: U256,
    /// In-range liquidity during the step.
    pub liquidity: u128,
}

struct RunResult {
    remaining: I256,
    outcome: SwapOutcome,
}

/// Token amounts (rounded up, as a mint pays) held by liquidity `l` in `[lower, upper)` at
/// `sqrt_p`.
pub fn amounts_for_liquidity(sqrt_p: U160, lower: i32, upper: i32, l: u128) -> Result<(U256, U256), AmmError> {
    let sa = get_sqrt_ratio_at_tick(i24(lower)?).map_err(tick_err)?;
    let sb = get_sqrt_ratio_at_tick(i24(upper)?).map_err(tick_err)?;
    if sqrt_p <= sa {
        Ok((get_amount_0_delta(sa, sb, l, true).map_err(tick_err)?, U256::ZERO))
    } else if sqrt_p < sb {
        Ok((
            get_amount_0_delta(sqrt_p, sb, l, true).map_err(tick_err)?,
            get_amount_1_delta(sa, sqrt_p, l, true).map_err(tick_err)?,
        ))
    } else {
        Ok((U256::ZERO, get_amount_1_delta(sa, sb, l, true).map_err(tick_err)?))
    }
}

/// Smallest tick count `n` with `1.0001^n ≥ 1 + bp/10 000`.
fn ticks_for_ratio_bp(bp: u32) -> Result<i32, AmmError> {
    // sqrt(1 + bp/1e4)·2^96 as the target, then search the tick whose sqrt ratio reaches it.
    let target = sqrt_price_x96_from_ratio(U256::from(10_000u64 + bp as u64), U256::from(10_000u64))?;
    let (mut lo, mut hi) = (0i32, MAX_TICK_I32);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if get_sqrt_ratio_at_tick(i24(mid)?).map_err(tick_err)? >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc() -> PoolToken {
        PoolToken { symbol: "USDC".into(), decimals: 6 }
    }
    fn weth() -> PoolToken {
        PoolToken { symbol: "WETH".into(), decimals: 18 }
    }

    fn pool() -> Pool {
        let wad = U256::from(10u64).pow(U256::from(18));
        Pool::from_profile(
            "USDC/WETH 0.05%",
            usdc(),
            weth(),
            500,
            wad,
            U256::from(2000u64) * wad,
            &[(100, U256::from(20_000_000u64) * wad), (2_000, U256::from(80_000_000u64) * wad)],
        )
        .unwrap()
    }

    #[test]
    fn price_is_where_it_was_built() {
        let p = pool();
        let px = p.price1_in_0_f64();
        assert!((px - 2000.0).abs() / 2000.0 < 1e-6, "price {px}");
    }

    #[test]
    fn swap_pays_fee_and_impact() {
        let mut p = pool();
        let before = p.clone();
        // sell 1 000 000 USDC for WETH
        let o = p.swap_exact_input(true, U256::from(1_000_000_000_000u64), U256::ZERO, None).unwrap();
        let weth_out = crate::math::to_f64(o.amount_out, 18);
        assert!(weth_out < 500.0 * (1.0 - 0.0005), "fee and impact reduce output: {weth_out}");
        assert!(weth_out > 490.0, "but a deep pool gives most of it: {weth_out}");
        assert_eq!(o.fee, U256::from(500_000_000u64), "0.05% of the input");
        assert!(p.price1_in_0_f64() > before.price1_in_0_f64(), "buying WETH raises its price");
    }

    #[test]
    fn quote_equals_swap_and_slippage_check_changes_nothing() {
        let mut p = pool();
        let q = p.quote_exact_input(false, U256::from(10u64).pow(U256::from(19)), None).unwrap();
        let before = p.clone();
        let err = p
            .swap_exact_input(false, U256::from(10u64).pow(U256::from(19)), q.amount_out + U256::from(1), None)
            .unwrap_err();
        assert!(err.to_string().starts_with("Slippage too high"));
        assert_eq!(p, before);
        let s = p.swap_exact_input(false, U256::from(10u64).pow(U256::from(19)), q.amount_out, None).unwrap();
        assert_eq!(s, q);
    }

    #[test]
    fn exact_output_inverts_exact_input() {
        let p = pool();
        let out = p.quote_exact_input(true, U256::from(5_000_000_000u64), None).unwrap();
        let back = p.quote_exact_output(true, out.amount_out, None).unwrap();
        assert!(back.amount_in <= U256::from(5_000_000_000u64));
        assert!(U256::from(5_000_000_000u64) - back.amount_in <= U256::from(2u64));
    }

    #[test]
    fn empty_pool_reports_insufficient_liquidity() {
        let p = Pool::new("empty", usdc(), weth(), 3000, U160::from(1u128 << 96), &[]).unwrap();
        let err = p.quote_exact_input(true, U256::from(1u64), None).unwrap_err();
        assert!(matches!(err, AmmError::InsufficientLiquidity { .. }), "{err}");
    }

    #[test]
    fn swap_toward_reaches_target() {
        let mut p = pool();
        let target = p.sqrt_price_x96() * U160::from(1001u64) / U160::from(1000u64);
        let (dir, _) = p.swap_toward(target, U256::MAX >> 2).unwrap().unwrap();
        assert!(!dir);
        assert_eq!(p.sqrt_price_x96(), target);
    }

    #[test]
    fn move_price_to_ends_where_an_unlimited_swap_ends() {
        for (num, den) in [(1001u64, 1000u64), (999, 1000), (3, 2), (1, 2), (1_000_000, 1_000_001)] {
            let mut a = pool();
            let mut b = a.clone();
            let target = a.sqrt_price_x96() * U160::from(num) / U160::from(den);
            let zero_for_one = target < a.sqrt_price_x96();
            let o = a.quote_exact_input(zero_for_one, U256::MAX >> 4, Some(target)).unwrap();
            a.apply(zero_for_one, &o);
            b.move_price_to(target).unwrap();
            assert_eq!(
                (a.sqrt_price_x96(), a.tick(), a.liquidity()),
                (b.sqrt_price_x96(), b.tick(), b.liquidity()),
                "ratio {num}/{den}"
            );
        }
    }

    #[test]
    fn f64_sqrt_price_is_close_to_exact() {
        let exact = sqrt_price_x96_from_ratio(U256::from(500_000_000u64), U256::from(1u64)).unwrap();
        let fast = sqrt_price_x96_from_f64(5e8).unwrap();
        let d = if exact > fast { exact - fast } else { fast - exact };
        assert!(d < exact / U160::from(1_000_000_000_000u64), "{exact} vs {fast}");
    }

    #[test]
    fn bad_positions_are_refused() {
        let cases = [
            (
                LiquidityPosition { tick_lower: 10, tick_upper: 0, liquidity: 1 },
                "position 0: tick_lower must be below tick_upper",
            ),
            (
                LiquidityPosition { tick_lower: 5, tick_upper: 20, liquidity: 1 },
                "position 0: ticks must be multiples of the tick spacing",
            ),
            (
                LiquidityPosition { tick_lower: 0, tick_upper: 20, liquidity: 0 },
                "position 0: liquidity must be positive and fit in int128",
            ),
        ];
        for (pos, msg) in cases {
            let e = Pool::new("x", usdc(), weth(), 500, U160::from(1u128 << 96), &[pos]).unwrap_err();
            assert_eq!(e.to_string(), format!("Invalid pool: {msg}"));
        }
        assert!(Pool::new("x", usdc(), weth(), 1234, U160::from(1u128 << 96), &[]).is_err());
    }
}
