//! A Synthetix-Perps-V2-style market (`perp.md` Part C): isolated-margin positions with a stored
//! margin, a fill price premium/discount by skew, maker/taker fees, velocity funding,
//! liquidation margin and premium, and the reference's checks in its order. Signed wad
//! arithmetic truncates toward zero in the reference's order (`multiplyDecimal`/`divideDecimal`).
//! Each call follows its `PerpsV2Market*` function: funding recomputed first, then
//! `_postTradeDetails` / `_updatePositionMargin` / `_trade`; the conformance suite
//! (`keel-conformance/tests/synthetix_perps_v2.rs`) checks it against the published bytecode.
//!
//! Off-chain delayed orders (C6) wait for a venue keeper between a minimum and a maximum age.
//! Differences kept on purpose (`conformance.md` §4): one maker/taker fee pair for every order
//! type; no dynamic (volatility) fee and no "Price too volatile"; one oracle, so no
//! off-chain/on-chain divergence check; flag and liquidate in one step, without the
//! `maxLiquidationDelta` / `maxPD` limits; a fill at or below zero is refused
//! (`Invalid price`) where the contract casts it to an unsigned integer.

use crate::math::{I256, MathError, U256, WAD, pdiv_i, pmul_i};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// A day, the funding rate's unit of time.
const DAY: i64 = 86_400;

/// Why the market refused an operation. Messages are the reference's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PerpsError {
    /// `Δq = 0`.
    #[error("Cannot submit empty order")]
    EmptyOrder,
    /// The position (before or after) is at or under its liquidation margin.
    #[error("Position can be liquidated")]
    CanLiquidate,
    /// Margin after fees would be negative, or under the minimum initial margin.
    #[error("Insufficient margin")]
    InsufficientMargin,
    /// Leverage after the trade above the market's maximum.
    #[error("Max leverage exceeded")]
    MaxLeverageExceeded,
    /// The side's open interest after the trade above `maxMarketValue`.
    #[error("Max market size exceeded")]
    MaxMarketSizeExceeded,
    /// The fill is worse than the caller's limit.
    #[error("Price impact exceeded")]
    PriceImpactExceeded,
    /// Liquidating a position that is not liquidatable.
    #[error("Position cannot be liquidated")]
    CannotLiquidate,
    /// One pending order per account.
    #[error("previous order exists")]
    PreviousOrderExists,
    /// No pending order for the account.
    #[error("no previous order")]
    NoOrder,
    /// A margin transfer or an immediate trade while the account has an order pending.
    #[error("Pending order exists")]
    PendingOrderExists,
    /// Executing an order in the second it was submitted: no price published after it yet.
    #[error("price not updated")]
    PriceNotUpdated,
    /// The order is younger than the minimum age.
    #[error("executability not reached")]
    ExecutabilityNotReached,
    /// The order is older than the maximum age; it can only be cancelled.
    #[error("order too old, use cancel")]
    OrderTooOld,
    /// Cancelling before the order is older than the maximum age.
    #[error("cannot cancel yet")]
    CannotCancelYet,
    /// The oracle price is zero.
    #[error("Invalid price: the oracle price must be above 0")]
    InvalidPrice,
    /// Arithmetic refused.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Market parameters (wad unless stated; sizes in base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpsParams {
    /// Maximum leverage (55).
    pub max_leverage: U256,
    /// Open-interest cap per side, base units.
    pub max_market_value: U256,
    /// Skew at which the premium is 100%.
    pub skew_scale: U256,
    /// Fee on skew-increasing trades.
    pub taker_fee: U256,
    /// Fee on skew-reducing trades.
    pub maker_fee: U256,
    /// Change of the daily funding rate per day at full skew.
    pub max_funding_velocity: U256,
    /// Floor of the liquidation fee (and the delayed-order keeper deposit), sUSD.
    pub min_keeper_fee: U256,
    /// Cap of the liquidation fee, sUSD.
    pub max_keeper_fee: U256,
    /// Liquidation fee as a share of notional.
    pub liquidation_fee_ratio: U256,
    /// Liquidation buffer as a share of notional.
    pub liquidation_buffer_ratio: U256,
    /// Minimum margin for a size-increasing order, sUSD.
    pub min_initial_margin: U256,
    /// Fee to the liquidator, sUSD.
    pub keeper_liquidation_fee: U256,
    /// Multiplier of the closing-impact premium.
    pub liquidation_premium_multiplier: U256,
    /// Seconds before a delayed order may execute.
    pub delayed_order_min_age: u64,
    /// Seconds after which a delayed order can only be cancelled.
    pub delayed_order_max_age: u64,
}

fn wad(s: &str) -> U256 {
    crate::math::Wad::parse(s).map(|w| w.0).unwrap_or(U256::ZERO)
}

impl PerpsParams {
    /// sETHPERP on Optimism (`perp.md` C7): the deployed values, with the repository defaults
    /// where the deployment files are silent (min initial margin 40, keeper liquidation fee 2),
    /// and the off-chain delayed-order fees the threshold methodology pays.
    pub fn eth_optimism() -> Self {
        Self {
            max_leverage: wad("55"),
            max_market_value: wad("22300"),
            skew_scale: wad("1000000"),
            taker_fee: wad("0.0006"),
            maker_fee: wad("0.000001"),
            max_funding_velocity: wad("9"),
            min_keeper_fee: wad("4"),
            max_keeper_fee: wad("100"),
            liquidation_fee_ratio: wad("0.0002"),
            liquidation_buffer_ratio: wad("0.0075"),
            min_initial_margin: wad("40"),
            keeper_liquidation_fee: wad("2"),
            liquidation_premium_multiplier: wad("1.5625"),
            delayed_order_min_age: 1,
            delayed_order_max_age: 30,
        }
    }
}

/// One account's position (isolated margin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// M₀: margin stored at the last modification, sUSD wad.
    pub margin: U256,
    /// q: signed size, base wad.
    pub size: I256,
    /// p₀: fill (trade) or oracle (margin transfer) price at the last modification.
    pub last_price: U256,
    /// Cumulative funding per unit at the last modification.
    pub last_funding: I256,
}

/// An off-chain delayed order waiting for a venue keeper (C6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayedOrder {
    /// The size change.
    pub size_delta: I256,
    /// The worst acceptable fill.
    pub desired_fill_price: U256,
    /// When it was submitted.
    pub intention_time: u64,
    /// The keeper deposit taken from margin (`minKeeperFee`).
    pub keeper_deposit: U256,
}

/// The outcome of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Price the trade filled at.
    pub price: U256,
    /// Fee paid from margin.
    pub fee: U256,
}

/// A market with its positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpsMarket {
    /// Parameters.
    pub params: PerpsParams,
    /// K: the sum of all signed sizes.
    pub skew: I256,
    /// Σ|q| over positions.
    pub market_size: U256,
    /// Daily funding rate at the last recomputation (signed wad).
    pub funding_rate: I256,
    /// Cumulative funding per unit at the last recomputation.
    pub funding: I256,
    /// When funding was last recomputed.
    pub funding_time: u64,
    /// Positions by account.
    pub positions: BTreeMap<u64, Position>,
    /// Pending delayed orders by account.
    pub orders: BTreeMap<u64, DelayedOrder>,
    /// The fill price of each account's last trade. keel's own record, kept after a close: the
    /// market's `lastPrice` is not it (a margin transfer or an order's deposit moves it, a close
    /// clears it).
    #[serde(default)]
    pub last_fills: BTreeMap<u64, U256>,
    /// Funding each account has paid (positive) or received (negative) into its margin at its
    /// modifications, to date. keel's own record; [`PerpsMarket::funding_paid_by`] adds what has
    /// accrued since.
    #[serde(default)]
    pub funding_paid: BTreeMap<u64, I256>,
}

fn i(x: U256) -> Result<I256, MathError> {
    I256::try_from(x).map_err(|_| MathError::Overflow("int256"))
}

fn same_side(a: I256, b: I256) -> bool {
    a.is_zero() || b.is_zero() || a.is_positive() == b.is_positive()
}

impl PerpsMarket {
    /// An empty market at time `now`.
    pub fn new(params: PerpsParams, now: u64) -> Self {
        Self {
            params,
            skew: I256::ZERO,
            market_size: U256::ZERO,
            funding_rate: I256::ZERO,
            funding: I256::ZERO,
            funding_time: now,
            positions: BTreeMap::new(),
            orders: BTreeMap::new(),
            last_fills: BTreeMap::new(),
            funding_paid: BTreeMap::new(),
        }
    }

    /// C2: `avg(P·(1 + K/S), P·(1 + (K+Δq)/S))`, in the reference's order.
    pub fn fill_price(&self, size_delta: I256, price: U256) -> Result<U256, PerpsError> {
        let (p, s) = (i(price)?, i(self.params.skew_scale)?);
        let before = p + pmul_i(p, pdiv_i(self.skew, s)?)?;
        let after = p + pmul_i(p, pdiv_i(self.skew + size_delta, s)?)?;
        let fill = pdiv_i(before + after, i(WAD * U256::from(2))?)?;
        if fill.is_negative() || fill.is_zero() {
            return Err(PerpsError::InvalidPrice);
        }
        Ok(fill.unsigned_abs())
    }

    /// C3 without the dynamic fee: taker on skew-increasing notional, maker on reducing, split
    /// when the trade flips the skew.
    pub fn order_fee(&self, size_delta: I256, fill: U256) -> Result<U256, PerpsError> {
        let notional = pmul_i(size_delta, i(fill)?)?;
        let (taker, maker) = (i(self.params.taker_fee)?, i(self.params.maker_fee)?);
        if same_side(self.skew + size_delta, self.skew) {
            let rate = if same_side(notional, self.skew) { taker } else { maker };
            return Ok(pmul_i(notional, rate)?.unsigned_abs());
        }
        let taker_size = pdiv_i(self.skew + size_delta, size_delta)?.unsigned_abs();
        let maker_size = WAD.saturating_sub(taker_size);
        let abs = notional.unsigned_abs();
        let t = crate::math::pmul(crate::math::pmul(abs, taker_size)?, self.params.taker_fee)?;
        let m = crate::math::pmul(crate::math::pmul(abs, maker_size)?, self.params.maker_fee)?;
        Ok(crate::math::add(t, m, "order fee")?)
    }

    /// C4: the daily funding rate at `now` (it drifts with the skew at `max_funding_velocity`).
    pub fn current_funding_rate(&self, now: u64) -> Result<I256, PerpsError> {
        let s = i(self.params.skew_scale)?;
        let one = i(WAD)?;
        let p_skew = pdiv_i(self.skew, s)?.clamp(-one, one);
        let velocity = pmul_i(p_skew, i(self.params.max_funding_velocity)?)?;
        Ok(self.funding_rate + pmul_i(velocity, self.elapsed(now)?)?)
    }

    fn elapsed(&self, now: u64) -> Result<I256, PerpsError> {
        let dt = now.saturating_sub(self.funding_time) as i64;
        Ok(pdiv_i(
            I256::try_from(dt).map_err(|_| MathError::Overflow("time"))? * i(WAD)?,
            I256::try_from(DAY).map_err(|_| MathError::Overflow("time"))? * i(WAD)?,
        )?)
    }

    /// C4: cumulative funding per unit at `now` and `price`, including the unrecorded part.
    pub fn next_funding(&self, now: u64, price: U256) -> Result<I256, PerpsError> {
        let next = self.current_funding_rate(now)?;
        let avg = -pdiv_i(self.funding_rate + next, i(WAD * U256::from(2))?)?;
        Ok(self.funding + pmul_i(pmul_i(avg, self.elapsed(now)?)?, i(price)?)?)
    }

    /// C4: fold funding up to `now` into the market (before every modification).
    pub fn recompute_funding(&mut self, now: u64, price: U256) -> Result<(), PerpsError> {
        let f = self.next_funding(now, price)?;
        self.funding_rate = self.current_funding_rate(now)?;
        self.funding = f;
        self.funding_time = now.max(self.funding_time);
        Ok(())
    }

    /// Book the funding `pos` accrued since its last modification as paid by `account` (funding
    /// recomputed first); called wherever the market re-bases a position's funding entry.
    fn book_funding(&mut self, account: u64, pos: &Position) -> Result<(), PerpsError> {
        if pos.size.is_zero() {
            return Ok(());
        }
        let credit = pmul_i(pos.size, self.funding - pos.last_funding)?;
        if !credit.is_zero() {
            *self.funding_paid.entry(account).or_default() -= credit;
        }
        Ok(())
    }

    /// Funding `account` has paid (positive) or received (negative) to date, at `now` and the
    /// oracle `price`: what its modifications booked plus what its position has accrued since.
    pub fn funding_paid_by(&self, account: u64, now: u64, price: U256) -> Result<I256, PerpsError> {
        let booked = self.funding_paid.get(&account).copied().unwrap_or_default();
        let Some(pos) = self.positions.get(&account).filter(|p| !p.size.is_zero()) else {
            return Ok(booked);
        };
        Ok(booked - pmul_i(pos.size, self.next_funding(now, price)? - pos.last_funding)?)
    }

    /// C1: `M₀ + pnl + accrued funding`, signed (negative when the position is under water).
    pub fn margin_plus_profit_funding(&self, pos: &Position, now: u64, price: U256) -> Result<I256, PerpsError> {
        self.margin_with_funding(pos, price, self.next_funding(now, price)?)
    }

    /// `_marginPlusProfitFunding` with the position marked at `mark` and the funding entry
    /// `funding`: on chain the market recomputes funding (at the oracle price) before it marks a
    /// position at a fill price, so the two can differ.
    fn margin_with_funding(&self, pos: &Position, mark: U256, funding: I256) -> Result<I256, PerpsError> {
        let pnl = pmul_i(pos.size, i(mark)? - i(pos.last_price)?)?;
        let funding = if pos.size.is_zero() { I256::ZERO } else { pmul_i(pos.size, funding - pos.last_funding)? };
        Ok(i(pos.margin)? + pnl + funding)
    }

    /// C1 on a trade: `M₀ + q₀·(fill − p₀) + accrued funding`. The old position is marked at the
    /// fill price, as `PerpsV2MarketBase._postTradeDetails` does, so a trade pays the skew
    /// premium on the traded size only; funding is folded in at the oracle `price` (the market
    /// recomputes funding before the trade, so none is left unrecorded at the fill).
    pub fn margin_at_fill(&self, pos: &Position, now: u64, price: U256, fill: U256) -> Result<I256, PerpsError> {
        self.margin_with_funding(pos, fill, self.next_funding(now, price)?)
    }

    /// C1: `max(0, M₀ + pnl + funding)`.
    pub fn remaining_margin(&self, account: u64, now: u64, price: U256) -> Result<U256, PerpsError> {
        let Some(pos) = self.positions.get(&account) else { return Ok(U256::ZERO) };
        let m = self.margin_plus_profit_funding(pos, now, price)?;
        Ok(if m.is_negative() { U256::ZERO } else { m.unsigned_abs() })
    }

    /// C5: `clamp(|q|·P·liquidationFeeRatio, minKeeperFee, maxKeeperFee)`.
    pub fn liquidation_fee(&self, size: I256, price: U256) -> Result<U256, PerpsError> {
        let notional = crate::math::pmul(size.unsigned_abs(), price)?;
        let prop = crate::math::pmul(notional, self.params.liquidation_fee_ratio)?;
        Ok(prop.min(self.params.max_keeper_fee).max(self.params.min_keeper_fee))
    }

    /// C5: `|q|·P·bufferRatio + liquidationFee + keeperLiquidationFee`.
    pub fn liquidation_margin(&self, size: I256, price: U256) -> Result<U256, PerpsError> {
        let notional = crate::math::pmul(size.unsigned_abs(), price)?;
        let buffer = crate::math::pmul(notional, self.params.liquidation_buffer_ratio)?;
        let fee = self.liquidation_fee(size, price)?;
        Ok(crate::math::add(
            crate::math::add(buffer, fee, "liquidation margin")?,
            self.params.keeper_liquidation_fee,
            "liquidation margin",
        )?)
    }

    /// C5: `(|q|/skewScale)·|q|·P·multiplier`, the closing impact at zero skew.
    pub fn liquidation_premium(&self, size: I256, price: U256) -> Result<U256, PerpsError> {
        if size.is_zero() {
            return Ok(U256::ZERO);
        }
        let q = size.unsigned_abs();
        let notional = crate::math::pmul(q, price)?;
        let share = crate::math::pdiv(q, self.params.skew_scale)?;
        Ok(crate::math::pmul(crate::math::pmul(share, notional)?, self.params.liquidation_premium_multiplier)?)
    }

    /// C5: `max(0, M₀ + pnl + funding − premium) ≤ liquidationMargin`, for an open position.
    pub fn can_liquidate(&self, account: u64, now: u64, price: U256) -> Result<bool, PerpsError> {
        let Some(pos) = self.positions.get(&account) else { return Ok(false) };
        self.position_can_liquidate(pos, price, self.next_funding(now, price)?)
    }

    fn position_can_liquidate(&self, pos: &Position, price: U256, funding: I256) -> Result<bool, PerpsError> {
        if pos.size.is_zero() {
            return Ok(false);
        }
        let m = self.margin_with_funding(pos, price, funding)? - i(self.liquidation_premium(pos.size, price)?)?;
        let m = if m.is_negative() { U256::ZERO } else { m.unsigned_abs() };
        Ok(m <= self.liquidation_margin(pos.size, price)?)
    }

    /// `_updatePositionMargin`: the position after moving `margin_delta` into (positive) or out
    /// of its margin with the position marked at `mark`, funding at the entry `funding`. A
    /// negative margin is `InsufficientMargin`; an open position left at or under its
    /// liquidation margin is `CanLiquidate` (deposits included); an open position's mark and
    /// funding entry move to `mark` and `funding`. A withdrawal from an open position must
    /// also leave more than the liquidation margin plus premium and — unless `order_size_delta`
    /// (the order it pays a deposit for) reduces the position — leverage within the maximum
    /// (no headroom) and at least the minimum initial margin.
    fn update_position_margin(
        &self,
        pos: &Position,
        order_size_delta: I256,
        mark: U256,
        funding: I256,
        margin_delta: I256,
    ) -> Result<Position, PerpsError> {
        let margin = self.margin_with_funding(pos, mark, funding)? + margin_delta;
        if margin.is_negative() {
            return Err(PerpsError::InsufficientMargin);
        }
        let margin = margin.unsigned_abs();
        let mut next = pos.clone();
        next.margin = margin;
        if pos.size.is_zero() {
            return Ok(next);
        }
        if margin <= self.liquidation_margin(pos.size, mark)? {
            return Err(PerpsError::CanLiquidate);
        }
        next.last_price = mark;
        next.last_funding = funding;
        if margin_delta.is_negative() {
            let floor = crate::math::add(
                self.liquidation_margin(pos.size, mark)?,
                self.liquidation_premium(pos.size, mark)?,
                "margin floor",
            )?;
            if margin <= floor {
                return Err(PerpsError::InsufficientMargin);
            }
            let after = pos.size + order_size_delta;
            let decreasing = same_side(pos.size, after) && after.unsigned_abs() < pos.size.unsigned_abs();
            if !decreasing {
                let notional = pmul_i(pos.size, i(mark)?)?;
                let leverage = pdiv_i(notional, i(margin)?)?.unsigned_abs();
                if leverage > self.params.max_leverage {
                    return Err(PerpsError::MaxLeverageExceeded);
                }
                if margin < self.params.min_initial_margin {
                    return Err(PerpsError::InsufficientMargin);
                }
            }
        }
        Ok(next)
    }

    /// `_postTradeDetails`: the position after trading `size_delta` at `fill` (oracle `price`,
    /// funding entry `funding`) and the fee, or the first failing check of C5 (the dynamic-fee
    /// check aside).
    fn post_trade_details(
        &self,
        old: &Position,
        size_delta: I256,
        price: U256,
        fill: U256,
        funding: I256,
    ) -> Result<(Position, U256), PerpsError> {
        // 1. empty order
        if size_delta.is_zero() {
            return Err(PerpsError::EmptyOrder);
        }
        // 2. the existing position is liquidatable
        if self.position_can_liquidate(old, price, funding)? {
            return Err(PerpsError::CanLiquidate);
        }
        let fee = self.order_fee(size_delta, fill)?;
        // 3–4. margin after the fee, the old position marked at the fill price (C1), against the
        //    old position's liquidation margin at the fill price
        let new_margin = self.margin_with_funding(old, fill, funding)? - i(fee)?;
        if new_margin.is_negative() {
            return Err(PerpsError::InsufficientMargin);
        }
        let new_margin = new_margin.unsigned_abs();
        if !old.size.is_zero() && new_margin <= self.liquidation_margin(old.size, fill)? {
            return Err(PerpsError::CanLiquidate);
        }
        let new_size = old.size + size_delta;
        let decreasing = same_side(old.size, new_size) && new_size.unsigned_abs() < old.size.unsigned_abs();
        // 5. minimum initial margin unless strictly reducing
        if !decreasing && crate::math::add(new_margin, fee, "margin + fee")? < self.params.min_initial_margin {
            return Err(PerpsError::InsufficientMargin);
        }
        // 6. above liquidation margin plus premium at the oracle price
        let floor = crate::math::add(
            self.liquidation_margin(new_size, price)?,
            self.liquidation_premium(new_size, price)?,
            "margin floor",
        )?;
        if new_margin <= floor {
            return Err(PerpsError::CanLiquidate);
        }
        // 7. leverage with the fee added back, 1% headroom
        let lev = pdiv_i(pmul_i(new_size, i(fill)?)?, i(crate::math::add(new_margin, fee, "margin + fee")?)?)?;
        if lev.unsigned_abs() > crate::math::add(self.params.max_leverage, WAD / U256::from(100), "max leverage")? {
            return Err(PerpsError::MaxLeverageExceeded);
        }
        // 8. open interest per side, unless reducing
        if !(same_side(old.size, new_size) && new_size.unsigned_abs() <= old.size.unsigned_abs()) {
            let new_skew = self.skew - old.size + new_size;
            let new_market = i(self.market_size)? - i(old.size.unsigned_abs())? + i(new_size.unsigned_abs())?;
            let side = if new_size.is_positive() { new_market + new_skew } else { new_market - new_skew };
            if (side / I256::try_from(2).map_err(|_| MathError::Overflow("int256"))?).unsigned_abs()
                > self.params.max_market_value
            {
                return Err(PerpsError::MaxMarketSizeExceeded);
            }
        }
        let next = Position { margin: new_margin, size: new_size, last_price: fill, last_funding: funding };
        Ok((next, fee))
    }

    /// `_trade` after funding is recomputed: the checks of [`Self::post_trade_details`], then
    /// the fill against `limit`, then the skew, the market size and the position move.
    fn trade(
        &mut self,
        account: u64,
        size_delta: I256,
        price: U256,
        fill: U256,
        limit: Option<U256>,
    ) -> Result<Fill, PerpsError> {
        let old = self.positions.get(&account).cloned().unwrap_or_default();
        let (new, fee) = self.post_trade_details(&old, size_delta, price, fill, self.funding)?;
        if let Some(limit) = limit {
            let worse = if size_delta.is_positive() { fill > limit } else { fill < limit };
            if worse {
                return Err(PerpsError::PriceImpactExceeded);
            }
        }
        self.skew = self.skew - old.size + new.size;
        self.market_size = self.market_size - old.size.unsigned_abs() + new.size.unsigned_abs();
        let new = if new.size.is_zero() { Position { margin: new.margin, ..Position::default() } } else { new };
        self.book_funding(account, &old)?;
        self.positions.insert(account, new);
        self.last_fills.insert(account, fill);
        Ok(Fill { price: fill, fee })
    }

    /// Apply `op` to a copy with funding recomputed at `now` and `price`, as every mutating
    /// call of the market does first; keep the copy only if `op` succeeds.
    fn atomically<T>(
        &mut self,
        now: u64,
        price: U256,
        op: impl FnOnce(&mut Self) -> Result<T, PerpsError>,
    ) -> Result<T, PerpsError> {
        if price.is_zero() {
            return Err(PerpsError::InvalidPrice);
        }
        let mut next = self.clone();
        next.recompute_funding(now, price)?;
        let out = op(&mut next)?;
        *self = next;
        Ok(out)
    }

    fn no_pending_order(&self, account: u64) -> Result<(), PerpsError> {
        if self.orders.contains_key(&account) { Err(PerpsError::PendingOrderExists) } else { Ok(()) }
    }

    /// `transferMargin`: deposit (positive) or withdraw (negative) margin at the oracle `price`,
    /// with the checks of `_updatePositionMargin` (an open position must stay above its
    /// liquidation margin; a withdrawal must also leave more than the liquidation margin plus
    /// premium, leverage within the maximum and at least the minimum initial margin). Refused
    /// while an order is pending. Returns the new margin; nothing changes on refusal.
    pub fn transfer_margin(&mut self, account: u64, delta: I256, now: u64, price: U256) -> Result<U256, PerpsError> {
        // `transferMargin` reads the price before `onlyIfNotPendingOrder`; `modifyPosition` after
        if price.is_zero() {
            return Err(PerpsError::InvalidPrice);
        }
        self.no_pending_order(account)?;
        self.atomically(now, price, |m| {
            let pos = m.positions.get(&account).cloned().unwrap_or_default();
            if delta.is_zero() {
                return Ok(pos.margin);
            }
            let next = m.update_position_margin(&pos, I256::ZERO, price, m.funding, delta)?;
            let margin = next.margin;
            m.book_funding(account, &pos)?;
            m.positions.insert(account, next);
            Ok(margin)
        })
    }

    /// `modifyPosition`: trade `size_delta` at the oracle `price`, refused with the first
    /// failing check of C5 (the dynamic-fee check aside), then when the fill is worse than
    /// `limit` (when given). Refused while an order is pending. Nothing changes on refusal.
    pub fn modify_position(
        &mut self,
        account: u64,
        size_delta: I256,
        now: u64,
        price: U256,
        limit: Option<U256>,
    ) -> Result<Fill, PerpsError> {
        self.no_pending_order(account)?;
        self.atomically(now, price, |m| {
            let fill = m.fill_price(size_delta, price)?;
            m.trade(account, size_delta, price, fill, limit)
        })
    }

    /// C6 (`submitOffchainDelayedOrder`): the trade is checked as it would fill now (the limit
    /// aside) and refused with its error; then the keeper deposit (`minKeeperFee`) leaves the
    /// margin, the position marked at the fill price, with the withdrawal checks of
    /// [`Self::transfer_margin`] (leverage and minimum margin only when the order does not
    /// reduce the position). One order per account.
    pub fn submit_delayed_order(
        &mut self,
        account: u64,
        size_delta: I256,
        desired_fill_price: U256,
        now: u64,
        price: U256,
    ) -> Result<(), PerpsError> {
        if self.orders.contains_key(&account) {
            return Err(PerpsError::PreviousOrderExists);
        }
        self.atomically(now, price, |m| {
            let pos = m.positions.get(&account).cloned().unwrap_or_default();
            let fill = m.fill_price(size_delta, price)?;
            m.post_trade_details(&pos, size_delta, price, fill, m.funding)?;
            let deposit = m.params.min_keeper_fee;
            let next = m.update_position_margin(&pos, size_delta, fill, m.funding, -i(deposit)?)?;
            m.book_funding(account, &pos)?;
            m.positions.insert(account, next);
            m.orders.insert(
                account,
                DelayedOrder { size_delta, desired_fill_price, intention_time: now, keeper_deposit: deposit },
            );
            Ok(())
        })
    }

    /// C6 (`executeOffchainDelayedOrder`): execute a pending order at `now` with the price
    /// published at `now` — older than the minimum age, younger than the maximum. When the
    /// owner executes, the deposit returns to the margin first (the position marked at the
    /// fill); a keeper is paid it. Returns the fill and the deposit paid to the executor (0
    /// for the owner). On any failure the order stays pending and nothing changes.
    pub fn execute_delayed_order(
        &mut self,
        account: u64,
        now: u64,
        price: U256,
        by_owner: bool,
    ) -> Result<(Fill, U256), PerpsError> {
        let order = self.orders.get(&account).cloned().ok_or(PerpsError::NoOrder)?;
        if now <= order.intention_time {
            return Err(PerpsError::PriceNotUpdated);
        }
        let age = now - order.intention_time;
        if age <= self.params.delayed_order_min_age {
            return Err(PerpsError::ExecutabilityNotReached);
        }
        if age >= self.params.delayed_order_max_age {
            return Err(PerpsError::OrderTooOld);
        }
        self.atomically(now, price, |m| {
            let fill = m.fill_price(order.size_delta, price)?;
            if by_owner && !order.keeper_deposit.is_zero() {
                let pos = m.positions.get(&account).cloned().unwrap_or_default();
                let next =
                    m.update_position_margin(&pos, order.size_delta, fill, m.funding, i(order.keeper_deposit)?)?;
                m.book_funding(account, &pos)?;
                m.positions.insert(account, next);
            }
            let f = m.trade(account, order.size_delta, price, fill, Some(order.desired_fill_price))?;
            m.orders.remove(&account);
            Ok((f, if by_owner { U256::ZERO } else { order.keeper_deposit }))
        })
    }

    /// C6 (`cancelOffchainDelayedOrder`): cancel a pending order once it is older than the
    /// maximum age. The deposit goes to a non-owner canceller (returned) or back to the owner's
    /// margin (funding recomputed, the position marked at `price`).
    pub fn cancel_delayed_order(
        &mut self,
        account: u64,
        now: u64,
        price: U256,
        by_owner: bool,
    ) -> Result<U256, PerpsError> {
        let order = self.orders.get(&account).cloned().ok_or(PerpsError::NoOrder)?;
        if now.saturating_sub(order.intention_time) <= self.params.delayed_order_max_age {
            return Err(PerpsError::CannotCancelYet);
        }
        if !by_owner {
            self.orders.remove(&account);
            return Ok(order.keeper_deposit);
        }
        self.atomically(now, price, |m| {
            let pos = m.positions.get(&account).cloned().unwrap_or_default();
            let next = m.update_position_margin(&pos, order.size_delta, price, m.funding, i(order.keeper_deposit)?)?;
            m.book_funding(account, &pos)?;
            m.positions.insert(account, next);
            m.orders.remove(&account);
            Ok(U256::ZERO)
        })
    }

    /// Liquidate a liquidatable position at the oracle price (`flagPosition` then
    /// `liquidatePosition` in one step): a pending order is dropped, its keeper deposit paid to
    /// the flagger; the position is closed and what is left of its margin after the fees goes
    /// to the fee pool. Returns the fees paid to the flagger and the liquidator (the deposit
    /// aside).
    pub fn liquidate(&mut self, account: u64, now: u64, price: U256) -> Result<U256, PerpsError> {
        if !self.can_liquidate(account, now, price)? {
            return Err(PerpsError::CannotLiquidate);
        }
        self.atomically(now, price, |m| {
            let pos = m.positions.get(&account).cloned().unwrap_or_default();
            let fees = crate::math::add(
                m.liquidation_fee(pos.size, price)?,
                m.params.keeper_liquidation_fee,
                "liquidation fees",
            )?;
            m.orders.remove(&account);
            m.book_funding(account, &pos)?;
            m.skew -= pos.size;
            m.market_size -= pos.size.unsigned_abs();
            m.positions.insert(account, Position::default());
            Ok(fees)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> U256 {
        crate::math::Wad::parse(s).unwrap().0
    }
    fn sw(s: &str) -> I256 {
        crate::math::SignedWad::parse(s).unwrap().0
    }

    fn market() -> PerpsMarket {
        PerpsMarket::new(PerpsParams::eth_optimism(), 1_000)
    }

    #[test]
    fn fill_price_by_skew() {
        let mut m = market();
        // Zero skew: buying 10 000 ETH at 2000 pays half of 1% → 2010.
        assert_eq!(m.fill_price(sw("10000"), w("2000")).unwrap(), w("2010"));
        // With a long skew of 10 000, a sale of 10 000 gets 2010 (reduces the skew: a discount on the premium).
        m.skew = sw("10000");
        assert_eq!(m.fill_price(sw("-10000"), w("2000")).unwrap(), w("2010"));
        assert_eq!(m.fill_price(sw("10000"), w("2000")).unwrap(), w("2030"));
    }

    #[test]
    fn fees_maker_taker_and_flip() {
        let mut m = market();
        // Zero skew, buy 10 at 2000: taker 0.06% of 20 000 = 12.
        assert_eq!(m.order_fee(sw("10"), w("2000")).unwrap(), w("12"));
        m.skew = sw("100");
        // Reducing the skew: maker 0.0001% of 20 000 = 0.02.
        assert_eq!(m.order_fee(sw("-10"), w("2000")).unwrap(), w("0.02"));
        // Flipping 100 long to 100 short with a sale of 200: half taker, half maker.
        let fee = m.order_fee(sw("-200"), w("2000")).unwrap();
        assert_eq!(fee, w("120") + w("0.2"), "200×2000 = 400 000; taker half 0.06% = 120, maker half = 0.2");
    }

    #[test]
    fn funding_drifts_with_skew_and_longs_pay() {
        let mut m = market();
        m.skew = sw("100000"); // 10% of skew scale
        // A day later the rate is 0.1 × 9 = 0.9 per day, and F fell by the average (0.45) × P.
        assert_eq!(m.current_funding_rate(1_000 + 86_400).unwrap(), sw("0.9"));
        assert_eq!(m.next_funding(1_000 + 86_400, w("2000")).unwrap(), sw("-900"));
        // A long of 1 owes 900 over that day; a short of 1 receives it.
        let pos = Position { margin: w("10000"), size: sw("1"), last_price: w("2000"), last_funding: I256::ZERO };
        assert_eq!(m.margin_plus_profit_funding(&pos, 1_000 + 86_400, w("2000")).unwrap(), sw("9100"));
        m.recompute_funding(1_000 + 86_400, w("2000")).unwrap();
        assert_eq!((m.funding_rate, m.funding), (sw("0.9"), sw("-900")));
    }

    /// `_postTradeDetails` marks the old position at the fill price: a trade changes the
    /// account's value at the oracle by the premium on the traded size and the fee, never by a
    /// premium on the size it already held (the bug the conformance review found).
    #[test]
    fn a_trade_pays_the_premium_on_the_traded_size_only() {
        let p = w("2000");
        for (case, open, delta) in [
            ("add to a long", "50", "25"),
            ("reduce a long", "50", "-25"),
            ("flip a long", "50", "-80"),
            ("add to a short", "-40", "-10"),
            ("reduce a short", "-40", "30"),
        ] {
            let mut m = market();
            m.skew = sw("20000"); // other traders' long skew: a large premium on buys
            m.transfer_margin(1, sw("100000"), 1_000, p).unwrap();
            m.modify_position(1, sw(open), 1_000, p, None).unwrap();
            let before = m.margin_plus_profit_funding(&m.positions[&1], 1_000, p).unwrap();
            let fill = m.fill_price(sw(delta), p).unwrap();
            let f = m.modify_position(1, sw(delta), 1_000, p, None).unwrap();
            assert_eq!(f.price, fill, "{case}");
            let after = m.margin_plus_profit_funding(&m.positions[&1], 1_000, p).unwrap();
            // value lost = Δq·(fill − P) + fee, to a wei of rounding per product
            let want = pmul_i(sw(delta), i(fill).unwrap() - i(p).unwrap()).unwrap() + i(f.fee).unwrap();
            let lost = before - after;
            assert!((lost - want).unsigned_abs() <= U256::from(2), "{case}: lost {lost}, want {want}");
        }
    }

    #[test]
    fn trade_checks_in_order() {
        let mut m = market();
        let p = w("2000");
        // A deposit, then a 5x long.
        m.transfer_margin(1, sw("1000"), 1_000, p).unwrap();
        let f = m.modify_position(1, sw("2.5"), 1_000, p, None).unwrap();
        assert_eq!(m.skew, sw("2.5"));
        assert_eq!(m.positions[&1].margin, w("1000") - f.fee);
        let before = m.clone();
        // Table: each refusal names the reference's message and changes nothing.
        let big = m.params.max_market_value + WAD;
        for (name, account, delta, deposit, want) in [
            ("empty order", 1u64, "0", None, PerpsError::EmptyOrder),
            ("above max leverage", 1, "30", None, PerpsError::MaxLeverageExceeded),
            ("no margin at all", 2, "1", None, PerpsError::InsufficientMargin),
            ("under the minimum initial margin", 3, "0.001", Some("30"), PerpsError::InsufficientMargin),
        ] {
            let mut m2 = m.clone();
            if let Some(d) = deposit {
                m2.transfer_margin(account, sw(d), 1_000, p).unwrap();
            }
            let snapshot = m2.clone();
            assert_eq!(m2.modify_position(account, sw(delta), 1_000, p, None), Err(want), "{name}");
            assert_eq!(m2, snapshot, "{name}: state unchanged");
        }
        // Open interest cap: a whale with plenty of margin cannot push a side past maxMarketValue.
        let mut m3 = m.clone();
        m3.transfer_margin(9, sw("1000000000"), 1_000, p).unwrap();
        let err = m3.modify_position(9, i(big).unwrap(), 1_000, p, None).unwrap_err();
        assert_eq!(err, PerpsError::MaxMarketSizeExceeded);
        // A limit the fill cannot meet.
        assert_eq!(
            m.clone().modify_position(1, sw("1"), 1_000, p, Some(w("2000"))),
            Err(PerpsError::PriceImpactExceeded)
        );
        assert_eq!(m, before);
    }

    #[test]
    fn liquidation_after_an_adverse_move() {
        let mut m = market();
        let p = w("2000");
        m.transfer_margin(1, sw("1000"), 1_000, p).unwrap();
        m.modify_position(1, sw("20"), 1_000, p, None).unwrap(); // 40x
        assert!(!m.can_liquidate(1, 1_000, p).unwrap());
        // −2.5% at 40x: the margin is gone.
        let low = w("1950");
        assert!(m.can_liquidate(1, 1_000, low).unwrap());
        assert_eq!(
            m.modify_position(1, sw("1"), 1_000, low, None),
            Err(PerpsError::CanLiquidate),
            "no trading a liquidatable position"
        );
        assert_eq!(m.transfer_margin(1, sw("-1"), 1_000, low), Err(PerpsError::InsufficientMargin));
        let fees = m.liquidate(1, 1_000, low).unwrap();
        // Fee: 0.02% of 39 000 = 7.8, between 4 and 100; plus the keeper's 2.
        assert_eq!(fees, w("7.8") + w("2"));
        assert_eq!((m.skew, m.market_size), (I256::ZERO, U256::ZERO));
        assert_eq!(m.liquidate(1, 1_000, low), Err(PerpsError::CannotLiquidate));
    }

    /// `_updatePositionMargin` as the Perps V2 suite found it: deposits are checked too, a
    /// withdrawal gets no leverage headroom and must leave the minimum initial margin, and the
    /// deposit an order takes marks the position at the order's fill.
    #[test]
    fn table_margin_transfers_as_the_market_checks_them() {
        let p = w("2000");
        let mut m = market();
        m.transfer_margin(1, sw("1000"), 1_000, p).unwrap();
        m.modify_position(1, sw("2.5"), 1_000, p, None).unwrap(); // 5x long
        m.transfer_margin(2, sw("100"), 1_000, p).unwrap();
        m.modify_position(2, sw("0.01"), 1_000, p, None).unwrap(); // $20 long on $100
        let notional = crate::math::pmul(w("2.5"), p).unwrap();
        // leaves 55.005x: within a trade's 1% headroom, past a withdrawal's limit
        let just_past = crate::math::pdiv(notional, w("55.005")).unwrap();
        let left = |m: &PerpsMarket, a: u64, at: U256| m.remaining_margin(a, 1_000, at).unwrap();
        let crash = w("1610"); // −19.5%: account 1 keeps ~$22 against a ~$36 liquidation margin
        for (case, account, delta, price, want) in [
            (
                "withdrawal past max leverage, inside the trade's headroom",
                1u64,
                -i(left(&m, 1, p) - just_past).unwrap(),
                p,
                Err(PerpsError::MaxLeverageExceeded),
            ),
            (
                "withdrawal under the minimum initial margin",
                2,
                -i(left(&m, 2, p) - w("30")).unwrap(),
                p,
                Err(PerpsError::InsufficientMargin),
            ),
            ("withdrawal down to the minimum initial margin", 2, -i(left(&m, 2, p) - w("40")).unwrap(), p, Ok(w("40"))),
            ("deposit that leaves the position liquidatable", 1, sw("1"), crash, Err(PerpsError::CanLiquidate)),
            (
                "deposit that lifts it above the liquidation margin",
                1,
                sw("1000"),
                crash,
                Ok(left(&m, 1, crash) + w("1000")),
            ),
            (
                "withdrawal of more than the margin",
                2,
                -i(left(&m, 2, p) + U256::from(1)).unwrap(),
                p,
                Err(PerpsError::InsufficientMargin),
            ),
        ] {
            let mut trial = m.clone();
            assert_eq!(trial.transfer_margin(account, delta, 1_000, price), want, "{case}");
            if want.is_err() {
                assert_eq!(trial, m, "{case}: nothing changed");
            }
        }
        // an order's deposit marks the open position at the order's fill price
        m.transfer_margin(3, sw("10000000"), 1_000, p).unwrap();
        m.modify_position(3, sw("20000"), 1_000, p, None).unwrap(); // a long skew: buys fill 2%+ above
        let before = m.positions[&1].clone();
        let fill = m.fill_price(sw("0.5"), p).unwrap();
        let want = m.margin_at_fill(&before, 1_000, p, fill).unwrap() - i(m.params.min_keeper_fee).unwrap();
        m.submit_delayed_order(1, sw("0.5"), w("3000"), 1_000, p).unwrap();
        assert_eq!(m.positions[&1].last_price, fill);
        assert_eq!(i(m.positions[&1].margin).unwrap(), want);
    }

    #[test]
    fn delayed_orders_wait_fill_or_expire() {
        let mut m = market();
        let p = w("2000");
        m.transfer_margin(1, sw("1000"), 1_000, p).unwrap();
        m.submit_delayed_order(1, sw("1"), w("2100"), 1_000, p).unwrap();
        assert_eq!(m.positions[&1].margin, w("996"), "the 4 sUSD keeper deposit leaves margin at once");
        assert_eq!(m.submit_delayed_order(1, sw("1"), w("2100"), 1_000, p), Err(PerpsError::PreviousOrderExists));
        let before = m.clone();
        for (name, now, want) in [
            ("same second: no price published after it", 1_000, PerpsError::PriceNotUpdated),
            ("at the minimum age", 1_001, PerpsError::ExecutabilityNotReached),
            ("at the maximum age", 1_030, PerpsError::OrderTooOld),
        ] {
            assert_eq!(m.execute_delayed_order(1, now, p, false).map(|_| ()), Err(want), "{name}");
            assert_eq!(m, before, "{name}: nothing changed");
        }
        assert_eq!(m.cancel_delayed_order(1, 1_010, p, false), Err(PerpsError::CannotCancelYet));
        // at exactly the maximum age it can neither execute nor be cancelled (`> maxAge`)
        assert_eq!(m.cancel_delayed_order(1, 1_030, p, false), Err(PerpsError::CannotCancelYet));
        assert_eq!(m.transfer_margin(1, sw("1"), 1_005, p), Err(PerpsError::PendingOrderExists));
        assert_eq!(m.modify_position(1, sw("1"), 1_005, p, None).map(|_| ()), Err(PerpsError::PendingOrderExists));
        // A price that moved past the limit: refused, still pending.
        assert_eq!(
            m.execute_delayed_order(1, 1_005, w("2150"), false).map(|_| ()),
            Err(PerpsError::PriceImpactExceeded)
        );
        let (fill, paid) = m.execute_delayed_order(1, 1_005, p, false).unwrap();
        assert_eq!(paid, w("4"), "a venue keeper earns the deposit");
        assert_eq!(m.positions[&1].size, sw("1"));
        assert!(m.orders.is_empty());
        assert!(fill.price > p, "a buy at zero skew pays a premium");
        // An order nobody executes is cancelled after more than 30 s; the owner gets the deposit back.
        m.submit_delayed_order(1, sw("-1"), w("1900"), 2_000, p).unwrap();
        let margin = m.positions[&1].margin;
        assert_eq!(m.cancel_delayed_order(1, 2_031, p, true).unwrap(), U256::ZERO);
        assert!(m.positions[&1].margin >= margin + w("4") - w("0.01"));
        // A trade that would fail is refused at submission, with its reason.
        assert_eq!(m.submit_delayed_order(1, sw("30"), w("3000"), 3_000, p), Err(PerpsError::MaxLeverageExceeded));
    }

    #[test]
    fn threshold_seed_2x_example_on_the_venue() {
        // methodologies.md §5.1 with a real venue: margin 1000, 2x long at 2000, ETH −7.5%.
        let mut m = market();
        m.params.taker_fee = U256::ZERO;
        m.params.maker_fee = U256::ZERO;
        m.params.skew_scale = w("1000000000000"); // negligible premium
        m.params.min_initial_margin = U256::ZERO;
        let p = w("2000");
        m.transfer_margin(7, sw("1000"), 1_000, p).unwrap();
        m.modify_position(7, sw("1"), 1_000, p, None).unwrap();
        let down = w("1850");
        let remaining = m.remaining_margin(7, 1_000, down).unwrap();
        let notional = crate::math::pmul(m.positions[&7].size.unsigned_abs(), down).unwrap();
        let dev = crate::strategy::threshold::deviation(notional, m.positions[&7].margin, w("2")).unwrap();
        assert!(dev.abs_diff(w("0.15")) < w("0.00001"), "deviation {dev}");
        assert!(remaining.abs_diff(w("850")) < w("0.01"), "remaining {remaining}");
    }
}
