//! A Perpetual-Protocol-v2-style ("Curie") cross-margin account for one market (`perp.md`
//! Part B): account value, free collateral by the conservative rule, margin ratio, the
//! initial- and maintenance-margin checks on trades, premium-based funding with its cap, and
//! liquidation with its partial-liquidation rule and penalty split. Signed wad arithmetic
//! truncating toward zero.
//!
//! Taker trades go through the vAMM as `Exchange._swap` does ([`vamm_swap`]: the exchange fee
//! replayed over the pool's steps, the Uniswap fee scaled away, the insurance fund's share) and
//! are booked as `ClearingHouse._openPosition` books them ([`PerpV2Market::settle_trade`]);
//! both are checked to the wei against `@perp/curie-contract`'s bytecode by keel-conformance.
//!
//! Funding accrues in Curie's Q96 units from the market and index TWAPs, the mark price is the
//! median of three prices from the vAMM's oracle (`venue::oracle`), and liquidation decides on
//! the account value as the vault reports it, with the insurance fund covering bad debt.
//!
//! Not modelled: maker orders and their fees and funding, other collateral, several markets
//! on one account.

use crate::math::{I256, MathError, U256, WAD, mul_div_down, mul_div_up, pdiv_i, pmul_i};
use crate::venue::amm::Pool;
use crate::venue::oracle::Oracle;
use alloy_primitives::U160;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why the clearing house refused an operation (reference error codes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PerpV2Error {
    /// Not enough free collateral by the initial-margin ratio after an open or increase.
    #[error("CH_NEFCI: not enough free collateral by initial margin ratio")]
    NotEnoughFreeCollateralIm,
    /// Not enough free collateral by the maintenance-margin ratio after a reduction.
    #[error("CH_NEFCM: not enough free collateral by maintenance margin ratio")]
    NotEnoughFreeCollateralMm,
    /// Withdrawing more than the free collateral.
    #[error("V_NEFC: not enough free collateral to withdraw {amount}; withdrawable {withdrawable}")]
    NotEnoughFreeCollateral {
        /// Requested, wad.
        amount: U256,
        /// The most that can leave, wad.
        withdrawable: U256,
    },
    /// Liquidating an account above its maintenance requirement.
    #[error("CH_EAV: account value is enough, the account cannot be liquidated")]
    EnoughAccountValue,
    /// A swap of nothing: the pool refuses a zero amount (`AS`, `UniswapV3Pool.swap`).
    #[error("AS: a swap needs a non-zero amount")]
    ZeroAmount,
    /// A zero trade or a zero price.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// The vAMM refused the swap (no liquidity, a bad price limit).
    #[error("vAMM: {0}")]
    Vamm(String),
    /// An exact-output swap without a price limit the vAMM cannot fill in full (`UB_UOA`).
    #[error("UB_UOA: the vAMM holds less than the exact output asked for")]
    UnmatchedOutput,
    /// The replayed swap and the pool's swap ended on different ticks (`EX_TKMM`).
    #[error("EX_TKMM: the replayed swap ended on tick {replay}, the pool on {pool}")]
    TickMismatch {
        /// Tick of the replay.
        replay: i32,
        /// Tick of the pool.
        pool: i32,
    },
    /// Arithmetic refused.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Clearing-house parameters (`perp.md` B7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpV2Params {
    /// Initial margin ratio (10%).
    pub im_ratio: U256,
    /// Maintenance margin ratio (6.25%).
    pub mm_ratio: U256,
    /// Liquidation penalty on the liquidated notional (2.5%).
    pub liquidation_penalty_ratio: U256,
    /// Funding cap per day (10%).
    pub max_funding_rate: U256,
    /// At or below this position value a liquidation takes the whole position ($100).
    pub min_partial_liquidate_value: U256,
    /// Decimals of the settlement token (USDC: 6). The vault reports account values in them,
    /// rounded toward −∞, and liquidation decides on that value.
    #[serde(default = "usdc_decimals")]
    pub settlement_decimals: u8,
}

fn usdc_decimals() -> u8 {
    6
}

impl Default for PerpV2Params {
    fn default() -> Self {
        let pct = |n: u64| U256::from(n) * U256::from(10u64).pow(U256::from(14)); // basis points
        Self {
            im_ratio: pct(1_000),
            mm_ratio: pct(625),
            liquidation_penalty_ratio: pct(250),
            max_funding_rate: pct(1_000),
            min_partial_liquidate_value: U256::from(100u64) * WAD,
            settlement_decimals: usdc_decimals(),
        }
    }
}

/// 100% in the contract's ratio units.
const ONE_HUNDRED_PERCENT: u32 = 1_000_000;

/// A market's fees (`MarketRegistry`), in the contract's 1e6 units (1 000 = 0.1%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketFees {
    /// `exchangeFeeRatio`: what a taker pays, in quote. `addPool` starts it at the pool's fee tier.
    pub exchange_fee_ratio: u32,
    /// `insuranceFundFeeRatio`: the insurance fund's share of the exchange fee (the rest goes to
    /// the makers).
    pub insurance_fund_fee_ratio: u32,
}

impl MarketFees {
    /// A new market's fees: the exchange fee equal to the pool's fee tier, no insurance share.
    pub fn of_pool(pool: &Pool) -> Self {
        Self { exchange_fee_ratio: pool.fee_pips, insurance_fund_fee_ratio: 0 }
    }
}

/// What a taker swap through the vAMM did (`Exchange._swap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VammSwap {
    /// `exchangedPositionSize`: what the taker's position changes by (signed base).
    pub exchanged_position_size: I256,
    /// `exchangedPositionNotional`: the quote exchanged before the fee (negative when paid).
    pub exchanged_position_notional: I256,
    /// The exchange fee, in quote.
    pub fee: U256,
    /// The insurance fund's part of the fee.
    pub insurance_fund_fee: U256,
}

impl VammSwap {
    /// The quote booked to the taker: the notional less the fee.
    pub fn quote(&self) -> I256 {
        self.exchanged_position_notional - I256::from_raw(self.fee)
    }
}

fn ratio_scaled(amount: U256, ratio: u32, up: bool) -> Result<U256, MathError> {
    // `SwapMath.calcAmountScaledByFeeRatio`
    let hundred = U256::from(ONE_HUNDRED_PERCENT);
    let rest = U256::from(ONE_HUNDRED_PERCENT - ratio);
    if up {
        mul_div_up(amount, hundred, rest, "fee scaling")
    } else {
        mul_div_down(amount, rest, hundred, "fee scaling")
    }
}

/// The price of the base in quote (wad) at a vAMM sqrt price, formatted as the contracts do
/// (`formatSqrtPriceX96ToPriceX96` then `formatX96ToX10_18`, both rounding down). With the
/// sqrt price of a tick it is the market TWAP over an interval the pool sat at that tick.
pub fn market_price(sqrt_price_x96: U160) -> Result<U256, MathError> {
    let sqrt = U256::from(sqrt_price_x96);
    let q96 = U256::from(1u64) << 96;
    let price_x96 = mul_div_down(sqrt, sqrt, q96, "market price")?;
    mul_div_down(price_x96, WAD, q96, "market price")
}

/// Price TWAP settings of a clearing house (`ClearingHouseConfig`), seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwapConfig {
    /// `_twapInterval`: the funding TWAPs (15 minutes).
    pub funding: u64,
    /// `_markPriceMarketTwapInterval` (30 minutes).
    pub mark_market: u64,
    /// `_markPricePremiumInterval` (15 minutes).
    pub mark_premium: u64,
}

impl Default for TwapConfig {
    fn default() -> Self {
        Self { funding: 900, mark_market: 1_800, mark_premium: 900 }
    }
}

/// The vAMM's sqrt price averaged over `interval` seconds before `now`
/// (`UniswapV3Broker.getSqrtMarketTwapX96`): the sqrt price at the oracle's average tick, or the
/// pool's own under 10 seconds.
pub fn market_twap_sqrt(oracle: &Oracle, pool: &Pool, now: u64, interval: u64) -> Result<U160, PerpV2Error> {
    if interval < 10 {
        return Ok(pool.sqrt_price_x96());
    }
    let tick = oracle.average_tick(now, interval, pool.tick()).map_err(|e| PerpV2Error::Vamm(e.to_string()))?;
    crate::venue::amm::sqrt_price_at_tick(tick).map_err(|e| PerpV2Error::Vamm(e.to_string()))
}

/// The market TWAP funding is settled with, as a Q96 price (`formatSqrtPriceX96ToPriceX96`):
/// over `twap.funding` seconds, shortened to the time since the market's first trade, and the
/// pool's current price before any trade (`Exchange._getFundingGrowthGlobalAndTwaps`).
pub fn funding_market_twap_x96(
    oracle: &Oracle,
    pool: &Pool,
    now: u64,
    first_trade: Option<u64>,
    twap: TwapConfig,
) -> Result<U256, PerpV2Error> {
    let interval = first_trade.map_or(0, |t| twap.funding.min(now.saturating_sub(t)));
    let sqrt = U256::from(market_twap_sqrt(oracle, pool, now, interval)?);
    Ok(mul_div_down(sqrt, sqrt, q96(), "market price")?)
}

/// B3, `AccountBalance._getMarkPrice`: the median of the 15-second market TWAP, the
/// `twap.mark_market` market TWAP and `index + premium`, the premium being the market TWAP less
/// `index_premium_twap` (the index's TWAP) over `twap.mark_premium` seconds.
pub fn mark_price(
    oracle: &Oracle,
    pool: &Pool,
    now: u64,
    index: U256,
    index_premium_twap: U256,
    twap: TwapConfig,
) -> Result<U256, PerpV2Error> {
    let price =
        |interval| -> Result<U256, PerpV2Error> { Ok(market_price(market_twap_sqrt(oracle, pool, now, interval)?)?) };
    let (short, long) = (price(15)?, price(twap.mark_market)?);
    let premium = i(price(twap.mark_premium)?)? - i(index_premium_twap)?;
    let with_premium = i(index)? + premium;
    if with_premium.is_negative() {
        return Err(PerpV2Error::Invalid("index plus premium is negative"));
    }
    let third = with_premium.unsigned_abs();
    // `PerpMath.findMedianOfThree`
    Ok(short.min(long).max(short.max(long).min(third)))
}

/// What the clearing house reads about the vAMM's past for funding and the mark price: the
/// pool's oracle, when the market first traded, and the TWAP windows. Whoever trades the pool
/// records each swap here ([`MarketTwaps::record`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketTwaps {
    /// The vAMM's observation ring.
    pub oracle: Oracle,
    /// When the market first traded (`None`: not yet; funding then reads the pool's price).
    pub first_trade: Option<u64>,
    /// The TWAP windows.
    pub twap: TwapConfig,
}

impl MarketTwaps {
    /// A market whose pool started at `now`, with room for `observations` oracle entries (at
    /// least one per block that moves the tick within the longest TWAP window).
    pub fn new(now: u64, observations: usize) -> Self {
        let mut oracle = Oracle::new(now);
        oracle.grow(observations.max(1));
        Self { oracle, first_trade: None, twap: TwapConfig::default() }
    }

    /// A swap at `now` moved the pool from `tick_before` / `sqrt_before`: the oracle records the
    /// tick that held until now (once a block) and the market has traded.
    pub fn record(&mut self, now: u64, tick_before: i32, sqrt_before: U160, pool: &Pool) {
        if pool.tick() != tick_before {
            self.oracle.write(now, tick_before);
        }
        if pool.sqrt_price_x96() != sqrt_before {
            self.first_trade.get_or_insert(now);
        }
    }

    /// [`funding_market_twap_x96`] of this market.
    pub fn funding_twap_x96(&self, pool: &Pool, now: u64) -> Result<U256, PerpV2Error> {
        funding_market_twap_x96(&self.oracle, pool, now, self.first_trade, self.twap)
    }

    /// [`mark_price`] of this market with the index as its own TWAP.
    pub fn mark(&self, pool: &Pool, now: u64, index: U256) -> Result<U256, PerpV2Error> {
        mark_price(&self.oracle, pool, now, index, index, self.twap)
    }
}

/// A taker swap on the vAMM as `Exchange._swap` makes it. `base_to_quote` sells base (a short,
/// or a long's reduction); `exact_input` fixes the input (else the output) at `amount`.
///
/// The clearing house charges its own exchange fee instead of the pool's: the amount sent to
/// the pool is scaled so that the pool's fee is cancelled out (`calcScaledAmountForSwaps`), and
/// the fee is found by replaying the swap over the pool's steps at the exchange fee ratio
/// (`OrderBook.replaySwap`: per step with liquidity, the step's fee — for a sale of base,
/// `⌈out · ratio⌉` in quote — and `⌈fee · insurance ratio⌉` of it to the insurance fund). The
/// position changes by the base exchanged with the pool fee scaled away, the notional by the
/// quote exchanged, and the taker pays the fee in quote. Changes `pool` only on success.
pub fn vamm_swap(
    pool: &mut Pool,
    fees: MarketFees,
    base_to_quote: bool,
    exact_input: bool,
    amount: U256,
    limit: Option<U160>,
) -> Result<VammSwap, PerpV2Error> {
    if amount.is_zero() {
        return Err(PerpV2Error::ZeroAmount);
    }
    if fees.exchange_fee_ratio >= ONE_HUNDRED_PERCENT || fees.insurance_fund_fee_ratio > ONE_HUNDRED_PERCENT {
        return Err(PerpV2Error::Invalid("fee ratios must be below 100%"));
    }
    let (uni, ex) = (pool.fee_pips, fees.exchange_fee_ratio);
    let hundred = U256::from(ONE_HUNDRED_PERCENT);
    let scaled = match (base_to_quote, exact_input) {
        (true, true) => ratio_scaled(amount, uni, true)?,
        (true, false) => ratio_scaled(amount, ex, true)?,
        // `calcAmountWithFeeRatioReplaced`: amount · (1 − exchange) / (1 − uniswap), rounded up
        (false, true) => {
            mul_div_up(amount, U256::from(ONE_HUNDRED_PERCENT - ex), U256::from(ONE_HUNDRED_PERCENT - uni), "fee")?
        }
        (false, false) => amount,
    };
    let replay_amount = i(if base_to_quote { scaled } else { amount })?;
    let replay_amount = if exact_input { replay_amount } else { -replay_amount };
    let (mut fee, mut insurance_fund_fee) = (U256::ZERO, U256::ZERO);
    let mut failed = None;
    let replay_fee = if base_to_quote { uni } else { ex };
    let replay = pool
        .replay_swap(base_to_quote, replay_amount, limit, replay_fee, &mut |step| {
            if step.liquidity == 0 || failed.is_some() {
                return;
            }
            let step_fee =
                if base_to_quote { mul_div_up(step.amount_out, U256::from(ex), hundred, "fee") } else { Ok(step.fee) };
            let step = step_fee.and_then(|f| {
                Ok((f, mul_div_up(f, U256::from(fees.insurance_fund_fee_ratio), hundred, "insurance fee")?))
            });
            match step {
                Ok((f, to_fund)) => {
                    fee += f;
                    insurance_fund_fee += to_fund;
                }
                Err(e) => failed = Some(e),
            }
        })
        .map_err(|e| PerpV2Error::Vamm(e.to_string()))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut next = pool.clone();
    let o = if exact_input {
        next.swap_exact_input(base_to_quote, scaled, U256::ZERO, limit)
    } else {
        next.swap_exact_output(base_to_quote, scaled, U256::MAX, limit)
    }
    .map_err(|e| match e {
        crate::error::AmmError::InsufficientLiquidity { .. } if !exact_input => PerpV2Error::UnmatchedOutput,
        e => PerpV2Error::Vamm(e.to_string()),
    })?;
    if o.tick != replay.tick {
        return Err(PerpV2Error::TickMismatch { replay: replay.tick, pool: o.tick });
    }
    // the pool's amounts: token0 is the base, token1 the quote
    let (base, quote) = if base_to_quote { (o.amount_in, o.amount_out) } else { (o.amount_out, o.amount_in) };
    let (size, notional) = if base_to_quote {
        (-i(ratio_scaled(base, uni, false)?)?, i(quote)?)
    } else if exact_input && quote == scaled {
        (i(base)?, -i(amount.checked_sub(fee).ok_or(MathError::Underflow("fee"))?)?)
    } else {
        (i(base)?, -i(ratio_scaled(quote, uni, false)?)?)
    };
    *pool = next;
    Ok(VammSwap { exchanged_position_size: size, exchanged_position_notional: notional, fee, insurance_fund_fee })
}

/// One trader's account in one market.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Settlement collateral (USDC at 18 decimals).
    pub collateral: I256,
    /// Realised PnL not yet settled into collateral.
    pub owed_realized_pnl: I256,
    /// Taker position size, signed base.
    pub base: I256,
    /// Taker open notional, signed quote (negative when base was bought).
    pub quote: I256,
    /// Global time-weighted premium when funding was last settled for this account.
    pub last_tw_premium: I256,
}

/// What a liquidation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liquidation {
    /// Base closed (signed as the position was).
    pub base_closed: I256,
    /// Penalty charged to the trader.
    pub penalty: U256,
    /// Paid to the liquidator.
    pub to_liquidator: U256,
    /// Paid to the insurance fund.
    pub to_insurance_fund: U256,
}

/// The clearing house for one market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpV2Market {
    /// Parameters.
    pub params: PerpV2Params,
    /// Global `twPremiumX96`: Σ (market TWAP − index TWAP, capped) · seconds, in Q96 quote per
    /// base (`Exchange._getFundingGrowthGlobalAndTwaps`).
    pub tw_premium: I256,
    /// When funding was last settled (`_lastSettledTimestampMap`).
    pub funding_time: u64,
    /// The account.
    pub account: Account,
    /// Funding the account has settled into its owed realised PnL, to date (positive: paid;
    /// keel's own record, not a contract field). [`PerpV2Market::funding_paid`] adds the pending.
    #[serde(default)]
    pub funding_settled: I256,
}

/// Positions and notionals below this many wei are dust (`AccountBalance._DUST`).
pub const DUST: u64 = 10;

fn q96() -> U256 {
    U256::from(1u64) << 96
}

fn i(x: U256) -> Result<I256, MathError> {
    I256::try_from(x).map_err(|_| MathError::Overflow("int256"))
}

fn nonneg(x: I256) -> U256 {
    if x.is_negative() { U256::ZERO } else { x.unsigned_abs() }
}

impl PerpV2Market {
    /// An empty account at `now`.
    pub fn new(params: PerpV2Params, now: u64) -> Self {
        Self {
            params,
            tw_premium: I256::ZERO,
            funding_time: now,
            account: Account::default(),
            funding_settled: I256::ZERO,
        }
    }

    /// B6 with prices in wad: [`PerpV2Market::accrue_funding_x96`] with the market price
    /// converted to Q96 (`formatX10_18ToX96`, rounding down).
    pub fn accrue_funding(&mut self, now: u64, market: U256, index: U256) -> Result<(), PerpV2Error> {
        self.accrue_funding_x96(now, mul_div_down(market, q96(), WAD, "market price")?, index)
    }

    /// B6, `Exchange._getFundingGrowthGlobalAndTwaps` at a settlement in a new block: add
    /// `(marketTwapX96 − indexTwapX96) · (now − last)` to the global premium, the difference
    /// capped at `indexTwapX96 · maxFundingRate` either way (`_getDeltaTwapX96`);
    /// `index_twap` is in wad and is converted as the contract does. A settlement in the block
    /// of the last one adds nothing.
    pub fn accrue_funding_x96(&mut self, now: u64, market_twap_x96: U256, index_twap: U256) -> Result<(), PerpV2Error> {
        if now > self.funding_time {
            let index_x96 = mul_div_down(index_twap, q96(), WAD, "index price")?;
            let cap = crate::math::pmul(index_x96, self.params.max_funding_rate)?;
            let delta = if market_twap_x96 > index_x96 {
                i((market_twap_x96 - index_x96).min(cap))?
            } else {
                -i((index_x96 - market_twap_x96).min(cap))?
            };
            let dt = I256::try_from(now - self.funding_time).map_err(|_| MathError::Overflow("time"))?;
            self.tw_premium += delta * dt;
        }
        self.funding_time = now.max(self.funding_time);
        Ok(())
    }

    /// B6: funding the account owes (positive) or is owed since its last settlement:
    /// `base · (twPremiumX96 − lastSeen) / 2⁹⁶ / 86 400`, each division truncating toward zero
    /// (`Funding.calcPendingFundingPaymentWithLiquidityCoefficient`).
    pub fn pending_funding(&self) -> Result<I256, PerpV2Error> {
        let d = self.tw_premium - self.account.last_tw_premium;
        let magnitude = mul_div_down(self.account.base.unsigned_abs(), d.unsigned_abs(), q96(), "funding")?;
        let signed = if self.account.base.is_negative() != d.is_negative() { -i(magnitude)? } else { i(magnitude)? };
        Ok(signed / I256::try_from(86_400u64).map_err(|_| MathError::Overflow("day"))?)
    }

    /// Funding paid to date (positive) or received (negative): what was settled plus what is
    /// pending.
    pub fn funding_paid(&self) -> Result<I256, PerpV2Error> {
        Ok(self.funding_settled + self.pending_funding()?)
    }

    /// B4: `base · mark`.
    pub fn position_value(&self, mark: U256) -> Result<I256, PerpV2Error> {
        Ok(pmul_i(self.account.base, i(mark)?)?)
    }

    /// B4: collateral + owed realised PnL − pending funding.
    pub fn total_collateral_value(&self) -> Result<I256, PerpV2Error> {
        Ok(self.account.collateral + self.account.owed_realized_pnl - self.pending_funding()?)
    }

    /// B4: total collateral value + unrealised PnL (`position value + open notional`).
    pub fn account_value(&self, mark: U256) -> Result<I256, PerpV2Error> {
        Ok(self.total_collateral_value()? + self.position_value(mark)? + self.account.quote)
    }

    /// B4: `|min(quote, 0) + (base < 0 ? base·mark : 0)|`.
    pub fn total_debt_value(&self, mark: U256) -> Result<U256, PerpV2Error> {
        let q = if self.account.quote.is_negative() { self.account.quote } else { I256::ZERO };
        let b = if self.account.base.is_negative() { self.position_value(mark)? } else { I256::ZERO };
        Ok((q + b).unsigned_abs())
    }

    /// B4: `min(total collateral value, account value) − debt · ratio` (the conservative rule).
    pub fn free_collateral(&self, mark: U256, ratio: U256) -> Result<I256, PerpV2Error> {
        let base = self.total_collateral_value()?.min(self.account_value(mark)?);
        Ok(base - i(crate::math::pmul(self.total_debt_value(mark)?, ratio)?)?)
    }

    /// B4: account value over |position value| (0 with no position).
    pub fn margin_ratio(&self, mark: U256) -> Result<I256, PerpV2Error> {
        let pv = self.position_value(mark)?;
        if pv.is_zero() {
            return Ok(I256::ZERO);
        }
        Ok(pdiv_i(self.account_value(mark)?, i(pv.unsigned_abs())?)?)
    }

    /// Deposit collateral.
    pub fn deposit(&mut self, amount: U256) -> Result<(), PerpV2Error> {
        self.account.collateral += i(amount)?;
        Ok(())
    }

    /// Withdraw `amount` (wad, whole units of the settlement token) as `Vault.withdraw` does
    /// (`_settleAndDecreaseBalance`, B4): pending funding is settled into the owed realised PnL;
    /// the amount may not exceed the free collateral by the initial-margin ratio nor the
    /// settlement balance (collateral + owed PnL, less funding), both cut to whole settlement
    /// units, and nothing leaves an account whose collateral plus unrealised PnL is negative
    /// (`V_NEFC`); then the owed PnL moves into the collateral, rounded toward −∞ to whole units
    /// (the remainder below a unit is given up, as the vault does). Nothing changes on refusal.
    pub fn withdraw(&mut self, amount: U256, mark: U256) -> Result<(), PerpV2Error> {
        let unit = crate::math::pow10(u32::from(18u8.saturating_sub(self.params.settlement_decimals)));
        if amount % unit != U256::ZERO {
            return Err(PerpV2Error::Invalid("a withdrawal must be whole units of the settlement token"));
        }
        let mut next = self.clone();
        next.settle_funding()?;
        let mut withdrawable = U256::ZERO;
        if !next.account_value(mark)?.is_negative() {
            let balance = next.account.collateral + next.account.owed_realized_pnl;
            let free = nonneg(next.free_collateral(mark, next.params.im_ratio)?);
            if balance.is_positive() && !free.is_zero() {
                withdrawable = free.min(balance.unsigned_abs()) / unit * unit;
            }
        }
        if amount > withdrawable {
            return Err(PerpV2Error::NotEnoughFreeCollateral { amount, withdrawable });
        }
        let owed = to_settlement_units(next.account.owed_realized_pnl, next.params.settlement_decimals)?;
        next.account.collateral = next.account.collateral - i(amount)? + owed;
        next.account.owed_realized_pnl = I256::ZERO;
        *self = next;
        Ok(())
    }

    fn settle_funding(&mut self) -> Result<(), PerpV2Error> {
        let f = self.pending_funding()?;
        self.account.owed_realized_pnl -= f;
        self.funding_settled += f;
        self.account.last_tw_premium = self.tw_premium;
        Ok(())
    }

    /// Book `base` for `quote` on the position, realising PnL against it, and remove a position
    /// left as dust; no margin check. Returns the realised PnL.
    fn book(&mut self, base: I256, quote: I256) -> Result<I256, PerpV2Error> {
        let a = &mut self.account;
        let (size, open_notional) = (a.base, a.quote);
        let mut pnl = I256::ZERO;
        if !size.is_zero() && size.is_negative() != base.is_negative() {
            let closed_ratio = mul_div_down(base.unsigned_abs(), WAD, size.unsigned_abs(), "closed ratio")?;
            pnl = if closed_ratio <= WAD {
                quote + pmul_i(open_notional, i(closed_ratio)?)?
            } else {
                open_notional + pdiv_i(quote, i(closed_ratio)?)?
            };
        }
        a.base += base;
        a.quote += quote - pnl;
        a.owed_realized_pnl += pnl;
        let dust = I256::try_from(DUST).map_err(|_| MathError::Overflow("int256"))?;
        if a.base.abs() < dust && a.quote.abs() < dust {
            (a.base, a.quote, a.last_tw_premium) = (I256::ZERO, I256::ZERO, I256::ZERO);
        }
        Ok(pnl)
    }

    /// Trade `base_delta` (positive buys) at `fill`, valuing the account at `mark` afterwards:
    /// [`PerpV2Market::settle_trade`] with the quote `−base_delta · fill`.
    pub fn trade(&mut self, base_delta: I256, fill: U256, mark: U256) -> Result<I256, PerpV2Error> {
        if fill.is_zero() {
            return Err(PerpV2Error::Invalid("a trade needs a non-zero size, fill and mark"));
        }
        let quote = -pmul_i(base_delta, i(fill)?)?;
        self.settle_trade(base_delta, quote, mark)
    }

    /// Book a taker trade of `base` for `quote` (signed as the account sees them: buying base
    /// pays quote) as `ClearingHouse._openPosition` does, then check the margin at `mark`.
    /// Funding is settled first. A reduction realises `quote + openNotional · r` with `r =
    /// ⌊|base| · 1e18 / |size|⌋`; a reversal realises `openNotional + quote · 1e18 / r`
    /// (`Exchange._getPnlToBeRealized`, truncating toward zero). A position left below 10 wei
    /// of base and of quote is removed, dust and all (`_deregisterBaseToken`). Opens,
    /// increases and reversals need free collateral ≥ 0 by the initial ratio (`CH_NEFCI`);
    /// reductions by the maintenance ratio (`CH_NEFCM`). Returns the realised PnL. Nothing
    /// changes on refusal.
    pub fn settle_trade(&mut self, base: I256, quote: I256, mark: U256) -> Result<I256, PerpV2Error> {
        if base.is_zero() || mark.is_zero() {
            return Err(PerpV2Error::Invalid("a trade needs a non-zero size, fill and mark"));
        }
        let mut next = self.clone();
        next.settle_funding()?;
        let size = next.account.base;
        let reducing = !size.is_zero() && size.is_negative() != base.is_negative();
        let pnl = next.book(base, quote)?;
        let after = next.account.base;
        let reversed = !size.is_zero() && !after.is_zero() && size.is_negative() != after.is_negative();
        let increases = !reducing || reversed;
        let ratio = if increases { next.params.im_ratio } else { next.params.mm_ratio };
        if next.free_collateral(mark, ratio)?.is_negative() {
            return Err(if increases {
                PerpV2Error::NotEnoughFreeCollateralIm
            } else {
                PerpV2Error::NotEnoughFreeCollateralMm
            });
        }
        *self = next;
        Ok(pnl)
    }

    /// The account value as the vault reports it (`Vault.getAccountValue` back in wad): in
    /// whole units of the settlement token, rounded toward −∞.
    pub fn reported_account_value(&self, mark: U256) -> Result<I256, PerpV2Error> {
        to_settlement_units(self.account_value(mark)?, self.params.settlement_decimals)
    }

    /// B5: the maintenance requirement for liquidation, `|position value| · mmRatio`.
    pub fn liquidation_requirement(&self, mark: U256) -> Result<I256, PerpV2Error> {
        Ok(i(crate::math::pmul(self.position_value(mark)?.unsigned_abs(), self.params.mm_ratio)?)?)
    }

    /// B5: liquidatable when the reported account value is below the maintenance requirement
    /// (`ClearingHouse._isLiquidatable`) and there is a position.
    pub fn is_liquidatable(&self, mark: U256) -> Result<bool, PerpV2Error> {
        if self.account.base.is_zero() {
            return Ok(false);
        }
        Ok(self.reported_account_value(mark)? < self.liquidation_requirement(mark)?)
    }

    /// B5: the share of the position a liquidator may take (`getLiquidatablePositionSize`, one
    /// market): all of it at or below $100 of position value or when the reported account value
    /// is under half the requirement, else half. 0 when not liquidatable.
    pub fn liquidation_share(&self, mark: U256) -> Result<U256, PerpV2Error> {
        let (av, req) = (self.reported_account_value(mark)?, self.liquidation_requirement(mark)?);
        if av >= req || self.account.base.is_zero() {
            return Ok(U256::ZERO);
        }
        if self.position_value(mark)?.unsigned_abs() <= self.params.min_partial_liquidate_value {
            return Ok(WAD);
        }
        let two = I256::try_from(2).map_err(|_| MathError::Overflow("int256"))?;
        Ok(if av >= req / two { WAD / U256::from(2) } else { WAD })
    }

    /// B5, `ClearingHouse._liquidate` of the trader's whole allowance: settle funding, close the
    /// allowed size at the mark price as a trade (`notional = size · mark`, truncated; PnL
    /// realised as in [`PerpV2Market::settle_trade`], no margin check), charge the penalty
    /// `⌊|notional| · penaltyRatio⌋` (half to the liquidator and the rest to the insurance fund;
    /// all to the liquidator when the reported account value was negative), and, when the
    /// account is left without a position and its settlement value below zero, have the
    /// insurance fund cover the bad debt (`Vault.settleBadDebt`, in whole settlement units).
    /// Nothing changes on refusal.
    pub fn liquidate(&mut self, mark: U256) -> Result<Liquidation, PerpV2Error> {
        let mut next = self.clone();
        next.settle_funding()?;
        if !next.is_liquidatable(mark)? {
            return Err(PerpV2Error::EnoughAccountValue);
        }
        let bad_debt = next.reported_account_value(mark)?.is_negative();
        let size = next.account.base;
        let share = next.liquidation_share(mark)?;
        // `positionSize.mulRatio(ratio)`: truncated toward zero
        let liquidated = if share == WAD { size } else { pmul_i(size, i(share)?)? };
        let notional = pmul_i(liquidated, i(mark)?)?;
        next.book(-liquidated, notional)?;
        let penalty = crate::math::pmul(notional.unsigned_abs(), self.params.liquidation_penalty_ratio)?;
        next.account.owed_realized_pnl -= i(penalty)?;
        let (to_liquidator, to_insurance_fund) =
            if bad_debt { (penalty, U256::ZERO) } else { (penalty / U256::from(2), penalty - penalty / U256::from(2)) };
        if next.account.base.is_zero() {
            let value = next.total_collateral_value()?;
            let units = to_settlement_units(value, self.params.settlement_decimals)?;
            if units.is_negative() {
                next.account.collateral -= units;
            }
        }
        *self = next;
        Ok(Liquidation { base_closed: -liquidated, penalty, to_liquidator, to_insurance_fund })
    }
}

/// A wad amount in whole units of a token with `decimals` (back in wad), rounded toward −∞
/// (`SettlementTokenMath.formatSettlementToken`).
fn to_settlement_units(x: I256, decimals: u8) -> Result<I256, PerpV2Error> {
    let unit = I256::try_from(crate::math::pow10(u32::from(18u8.saturating_sub(decimals))))
        .map_err(|_| MathError::Overflow("int256"))?;
    let q = x / unit;
    let q = if x.is_negative() && x % unit != I256::ZERO { q - I256::ONE } else { q };
    Ok(q * unit)
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

    fn long_5x() -> PerpV2Market {
        let mut m = PerpV2Market::new(PerpV2Params::default(), 0);
        m.deposit(w("1000")).unwrap();
        m.trade(sw("2.5"), w("2000"), w("2000")).unwrap(); // 5000 notional on 1000: 5x
        m
    }

    #[test]
    fn values_of_a_long() {
        let m = long_5x();
        assert_eq!(m.account.quote, sw("-5000"));
        assert_eq!(m.position_value(w("2100")).unwrap(), sw("5250"));
        assert_eq!(m.account_value(w("2100")).unwrap(), sw("1250"), "1000 + 250 unrealised");
        assert_eq!(m.total_debt_value(w("2100")).unwrap(), w("5000"), "the quote borrowed");
        // Conservative: min(1000, 1250) − 5000 × 10% = 500.
        assert_eq!(m.free_collateral(w("2100"), m.params.im_ratio).unwrap(), sw("500"));
        assert_eq!(m.margin_ratio(w("2000")).unwrap(), sw("0.2"));
    }

    /// `Vault.withdraw` (`_settleAndDecreaseBalance`): whole USDC only; at most the smaller of
    /// the free collateral and the settlement balance, cut to whole USDC; nothing from an account
    /// worth less than nothing; the owed PnL moves into the balance rounded toward −∞.
    #[test]
    fn table_withdrawals_as_the_vault_settles_them() {
        // (case, owed realised PnL, mark, amount, Ok(collateral after) or Err(withdrawable))
        type Case = (&'static str, &'static str, &'static str, &'static str, Result<&'static str, &'static str>);
        let cases: [Case; 7] = [
            ("free collateral 500 of a 5x long", "0", "2000", "500", Ok("500")),
            ("a micro-dollar more is refused", "0", "2000", "500.000001", Err("500")),
            ("owed profit settles into the balance", "10.0000005", "2000", "100", Ok("910")),
            ("an owed loss rounds toward −∞", "-10.0000005", "2000", "100", Ok("889.999999")),
            ("an owed loss lowers the free collateral", "-300", "2000", "201", Err("200")),
            ("an account worth less than nothing: nothing leaves", "0", "1500", "0.000001", Err("0")),
            ("a part of a micro-dollar is not an amount", "0", "2000", "0.0000001", Err("invalid")),
        ];
        for (case, owed, mark, amount, want) in cases {
            let mut m = long_5x();
            m.account.owed_realized_pnl = sw(owed);
            let before = m.clone();
            match (m.withdraw(w(amount), w(mark)), want) {
                (Ok(()), Ok(c)) => {
                    assert_eq!(m.account.collateral, sw(c), "{case}");
                    assert_eq!(m.account.owed_realized_pnl, I256::ZERO, "{case}: owed PnL settled");
                }
                (Err(PerpV2Error::NotEnoughFreeCollateral { withdrawable, .. }), Err(x)) if x != "invalid" => {
                    assert_eq!(withdrawable, w(x), "{case}");
                    assert_eq!(m, before, "{case}: nothing changed");
                }
                (Err(PerpV2Error::Invalid(_)), Err("invalid")) => assert_eq!(m, before, "{case}"),
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn margin_checks_on_trades_and_withdrawals() {
        let mut m = long_5x();
        let before = m.clone();
        // 10x is the limit: 7.5 more ETH (20 000 notional on 1000) fails CH_NEFCI.
        assert_eq!(m.trade(sw("7.5"), w("2000"), w("2000")), Err(PerpV2Error::NotEnoughFreeCollateralIm));
        assert_eq!(m, before, "nothing changed");
        // Free collateral 1000 − 500 = 500 can leave; 501 cannot.
        assert!(matches!(m.withdraw(w("501"), w("2000")), Err(PerpV2Error::NotEnoughFreeCollateral { .. })));
        m.withdraw(w("500"), w("2000")).unwrap();
        // Closing half at 2100 realises 125 of profit.
        m.trade(sw("-1.25"), w("2100"), w("2100")).unwrap();
        assert_eq!(m.account.owed_realized_pnl, sw("125"));
        assert_eq!((m.account.base, m.account.quote), (sw("1.25"), sw("-2500")));
    }

    #[test]
    fn table_realised_pnl_as_the_exchange_computes_it() {
        // The worked examples in `Exchange._getPnlToBeRealized`: long 20 base for 252.53, then…
        let cases = [
            ("reduce half: short 10 for 137.5", "-10", "137.5", "11.235", "10", "-126.265"),
            ("reverse: short 30 for 337.5", "-30", "337.5", "-27.53", "-10", "112.5"),
            ("close: short 20 for 250", "-20", "250", "-2.53", "0", "0"),
            ("increase: long 5 for 70", "5", "-70", "0", "25", "-322.53"),
        ];
        for (name, base, quote, pnl, size, notional) in cases {
            let mut m = PerpV2Market::new(PerpV2Params::default(), 0);
            m.deposit(w("1000")).unwrap();
            m.settle_trade(sw("20"), sw("-252.53"), w("12.6265")).unwrap();
            let realised = m.settle_trade(sw(base), sw(quote), w("12.5")).unwrap();
            assert_eq!(realised, sw(pnl), "{name}: realised");
            assert_eq!(m.account.owed_realized_pnl, sw(pnl), "{name}: owed");
            assert_eq!((m.account.base, m.account.quote), (sw(size), sw(notional)), "{name}: position");
        }
    }

    #[test]
    fn a_position_left_as_dust_is_removed() {
        let mut m = PerpV2Market::new(PerpV2Params::default(), 0);
        m.deposit(w("1000")).unwrap();
        let n = |x: i64| I256::try_from(x).unwrap();
        m.settle_trade(n(1000), n(-1000), w("100")).unwrap();
        // sell 991 of the 1 000 wei of base for 991 wei: 9 wei of base and of quote are left
        m.settle_trade(n(-991), n(991), w("100")).unwrap();
        assert_eq!((m.account.base, m.account.quote), (I256::ZERO, I256::ZERO));
    }

    fn vamm_pool() -> Pool {
        use crate::venue::amm::{LiquidityPosition, PoolToken};
        let t = |s: &str| PoolToken { symbol: s.into(), decimals: 18 };
        let sqrt = crate::venue::amm::sqrt_price_at_tick(76_000).unwrap(); // ≈ 1 998 vUSD a vETH
        let full = LiquidityPosition { tick_lower: -887_220, tick_upper: 887_220, liquidity: 10u128.pow(24) };
        Pool::new("vAMM", t("vETH"), t("vUSD"), 3000, sqrt, &[full]).unwrap()
    }

    #[test]
    fn table_vamm_swaps_charge_the_exchange_fee_in_quote() {
        // (case, base to quote, exact input, amount, exchange fee, insurance share)
        let cases = [
            ("sell 1 vETH, fee as the pool's", true, true, "1", 3000, 0),
            ("sell 1 vETH at a 0.1% exchange fee, 10% to the fund", true, true, "1", 1000, 100_000),
            ("buy 1 vETH by output, 0.1%", false, false, "1", 1000, 100_000),
            ("buy with 2 000 vUSD, 0.25%", false, true, "2000", 2500, 250_000),
            ("sell for 2 000 vUSD, no fee", true, false, "2000", 0, 0),
        ];
        for (name, b2q, exact_in, amount, ex, share) in cases {
            let mut pool = vamm_pool();
            let fees = MarketFees { exchange_fee_ratio: ex, insurance_fund_fee_ratio: share };
            let s = vamm_swap(&mut pool, fees, b2q, exact_in, w(amount), None).unwrap();
            let notional = s.exchanged_position_notional.unsigned_abs();
            // the fee is the exchange ratio of the quote a sale receives or a purchase pays
            // (fee included), within a wei a step
            let gross = if b2q { notional } else { notional + s.fee };
            let want = crate::math::mul_div_down(gross, U256::from(ex), U256::from(1_000_000u64), "").unwrap();
            let gap = if s.fee > want { s.fee - want } else { want - s.fee };
            assert!(gap <= U256::from(2u64), "{name}: fee {} vs {want}", s.fee);
            let fund = crate::math::mul_div_up(s.fee, U256::from(share), U256::from(1_000_000u64), "").unwrap();
            assert_eq!(s.insurance_fund_fee, fund, "{name}: insurance share");
            // the exact side is what the taker asked for
            let exact = if b2q == exact_in { s.exchanged_position_size.unsigned_abs() } else { notional };
            let exact = if !b2q && exact_in {
                notional + s.fee
            } else if b2q && !exact_in {
                notional - s.fee
            } else {
                exact
            };
            assert_eq!(exact, w(amount), "{name}: the exact amount");
            assert_eq!(s.exchanged_position_size.is_negative(), b2q, "{name}: direction");
            assert_eq!(s.quote(), s.exchanged_position_notional - I256::from_raw(s.fee), "{name}: booked quote");
        }
    }

    #[test]
    fn a_refused_vamm_swap_changes_nothing() {
        let mut pool = vamm_pool();
        let before = pool.clone();
        let fees = MarketFees::of_pool(&pool);
        // more base out than the pool holds by output: UB_UOA
        let e = vamm_swap(&mut pool, fees, false, false, w("1000000000"), None).unwrap_err();
        assert_eq!(e, PerpV2Error::UnmatchedOutput);
        assert_eq!(
            vamm_swap(&mut pool, fees, true, true, U256::ZERO, None).unwrap_err().to_string(),
            "AS: a swap needs a non-zero amount"
        );
        let bad = MarketFees { exchange_fee_ratio: 1_000_000, insurance_fund_fee_ratio: 0 };
        assert!(matches!(vamm_swap(&mut pool, bad, true, true, w("1"), None), Err(PerpV2Error::Invalid(_))));
        assert_eq!(pool, before);
    }

    #[test]
    fn funding_is_capped_and_longs_pay_a_premium() {
        let mut m = long_5x();
        // Market 1% over index for a day: a long of 2.5 pays 2.5 × 20 = 50.
        m.accrue_funding(86_400, w("2020"), w("2000")).unwrap();
        assert_eq!(m.pending_funding().unwrap(), sw("50"));
        assert_eq!(m.total_collateral_value().unwrap(), sw("950"));
        // A 30% premium is capped at 10% a day: 2.5 × 200 more.
        m.accrue_funding(2 * 86_400, w("2600"), w("2000")).unwrap();
        assert_eq!(m.pending_funding().unwrap(), sw("550"));
    }

    #[test]
    fn liquidation_partial_then_full_with_the_penalty_split() {
        // Margin ratio at 1840: (1000 − 400) / 4600 = 13%: safe.
        let m = long_5x();
        assert!(!m.is_liquidatable(w("1840")).unwrap());
        assert_eq!(m.clone().liquidate(w("1840")), Err(PerpV2Error::EnoughAccountValue));
        // At 1660: AV 150 < 6.25% × 4150 = 259.4, and ≥ half of it: half the position.
        let mut m2 = m.clone();
        assert_eq!(m2.liquidation_share(w("1660")).unwrap(), WAD / U256::from(2));
        let l = m2.liquidate(w("1660")).unwrap();
        assert_eq!(l.base_closed, sw("-1.25"));
        assert_eq!(l.penalty, w("51.875"), "2.5% of 1.25 × 1660");
        assert_eq!(l.to_liquidator + l.to_insurance_fund, l.penalty);
        assert_eq!(l.to_liquidator, l.to_insurance_fund);
        // At 1580: AV −50 (bad debt) — the whole position, the penalty all to the liquidator.
        let mut m3 = m.clone();
        assert_eq!(m3.liquidation_share(w("1580")).unwrap(), WAD);
        let l = m3.liquidate(w("1580")).unwrap();
        assert_eq!(l.base_closed, sw("-2.5"));
        assert_eq!((l.to_liquidator, l.to_insurance_fund), (l.penalty, U256::ZERO));
        assert!(m3.account.base.is_zero());
    }
}
