//! A Compound-v2-style lending market (`venues.md` §5): cTokens with a stored exchange rate,
//! per-block simple interest with a borrow index, the WhitePaper and jump-rate (v2) models,
//! the Comptroller's collateral factors, market membership, hypothetical-liquidity checks,
//! close factor and liquidation incentive. Rounding is Compound's `Exponential`: truncating
//! everywhere except `mulExp`, which rounds half up.
//!
//! Compound counts interest in blocks; keel's clock is in seconds, so the block number is
//! `now / seconds_per_block`. Where the contracts return an error code without reverting, keel
//! returns [`LendingError::Compound`] with the same codes and changes nothing (the contracts
//! keep the interest accrual and, for a borrow, the market membership of a failed call; keel's
//! atomic calls do not — `docs/spec/conformance.md` lists it).

use crate::error::{LendingError, OracleError};
use crate::math::{U256, WAD, pow10};
use crate::oracle::PriceFeed;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::lending::{AccountData, AssetId, LiquidationOutcome};

/// Blocks per year in Compound's rate models (15-second blocks).
pub const BLOCKS_PER_YEAR: u64 = 2_102_400;
/// Largest borrow rate per block a cToken accepts (`borrowRateMaxMantissa`, 0.0005%).
pub const BORROW_RATE_MAX: U256 = alloy_primitives::uint!(500_000_000_000_000_U256);
/// Most markets an account may enter (keel's limit; the Comptroller's `maxAssets` is set to it).
pub const MAX_MARKETS: usize = 8;
const HALF: U256 = alloy_primitives::uint!(500_000_000_000_000_000_U256);

/// cToken error codes (`TokenErrorReporter.Error`).
pub mod token_error {
    /// An invalid argument (a transfer to the sender itself).
    pub const BAD_INPUT: u32 = 2;
    /// The comptroller rejected the action (the detail holds its code).
    pub const COMPTROLLER_REJECTION: u32 = 3;
    /// The comptroller could not compute the seize amount.
    pub const COMPTROLLER_CALCULATION_ERROR: u32 = 4;
    /// Liquidator and borrower are the same account.
    pub const INVALID_ACCOUNT_PAIR: u32 = 6;
    /// Liquidation amount of 0 or `uint(-1)`.
    pub const INVALID_CLOSE_AMOUNT_REQUESTED: u32 = 7;
    /// Arithmetic underflow or overflow.
    pub const MATH_ERROR: u32 = 9;
    /// Liquidation would seize more cTokens than the borrower holds.
    pub const TOKEN_INSUFFICIENT_BALANCE: u32 = 13;
    /// The market does not hold enough underlying.
    pub const TOKEN_INSUFFICIENT_CASH: u32 = 14;
}

/// Comptroller error codes (`ComptrollerErrorReporter.Error`).
pub mod comptroller_error {
    /// Liquidation of an account with no shortfall.
    pub const INSUFFICIENT_SHORTFALL: u32 = 3;
    /// The action would leave the account short of collateral.
    pub const INSUFFICIENT_LIQUIDITY: u32 = 4;
    /// The market is not listed.
    pub const MARKET_NOT_LISTED: u32 = 9;
    /// A price is zero or missing.
    pub const PRICE_ERROR: u32 = 13;
    /// The account is in too many markets.
    pub const TOO_MANY_ASSETS: u32 = 16;
    /// Liquidation repays more than the close factor allows.
    pub const TOO_MUCH_REPAY: u32 = 17;
}

fn fail(code: u32, detail: u32, message: impl Into<String>) -> LendingError {
    LendingError::Compound { code, detail, message: message.into() }
}

fn math(what: &str) -> LendingError {
    fail(token_error::MATH_ERROR, 0, format!("arithmetic underflow or overflow in {what}"))
}

fn rejected(detail: u32, action: &str) -> LendingError {
    let why = match detail {
        comptroller_error::INSUFFICIENT_LIQUIDITY => {
            "insufficient liquidity: the account's collateral times its collateral factors would not cover its borrows"
        }
        comptroller_error::INSUFFICIENT_SHORTFALL => "the account has no shortfall, so it cannot be liquidated",
        comptroller_error::TOO_MUCH_REPAY => "the repay amount exceeds the close factor times the borrow balance",
        comptroller_error::PRICE_ERROR => "a market's oracle price is zero",
        comptroller_error::TOO_MANY_ASSETS => "the account is already in the maximum number of markets",
        comptroller_error::MARKET_NOT_LISTED => "the market is not listed",
        _ => "rejected",
    };
    fail(token_error::COMPTROLLER_REJECTION, detail, format!("the comptroller rejected the {action}: {why}"))
}

/// `a · b / 1e18`, truncating (`mulScalarTruncate`).
fn mul_trunc(a: U256, b: U256) -> Result<U256, LendingError> {
    a.checked_mul(b).map(|p| p / WAD).ok_or_else(|| math("mulScalarTruncate"))
}

/// `(a · b + 0.5e18) / 1e18` (`mulExp`, half up).
fn mul_exp(a: U256, b: U256) -> Result<U256, LendingError> {
    a.checked_mul(b).and_then(|p| p.checked_add(HALF)).map(|p| p / WAD).ok_or_else(|| math("mulExp"))
}

/// `a · 1e18 / b`, truncating (`getExp`, `divExp`).
fn get_exp(a: U256, b: U256) -> Result<U256, LendingError> {
    if b.is_zero() {
        return Err(math("getExp (division by zero)"));
    }
    a.checked_mul(WAD).map(|p| p / b).ok_or_else(|| math("getExp"))
}

/// An interest-rate model: borrow rate per block from cash, borrows and reserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InterestRateModel {
    /// The original `WhitePaperInterestRateModel`: utilisation `borrows / (cash + borrows)`,
    /// annual rate `base + utilisation · multiplier`, divided by blocks per year on each read.
    WhitePaper {
        /// Annual base rate (mantissa).
        base_rate: U256,
        /// Annual slope (mantissa).
        multiplier: U256,
    },
    /// `JumpRateModelV2`: utilisation `borrows / (cash + borrows − reserves)`, a kink above
    /// which the jump multiplier applies; per-block parameters fixed at construction.
    JumpRateV2 {
        /// Base rate per block.
        base_per_block: U256,
        /// Slope per block below the kink.
        multiplier_per_block: U256,
        /// Slope per block above the kink.
        jump_per_block: U256,
        /// Utilisation at the kink (mantissa).
        kink: U256,
    },
}

impl InterestRateModel {
    /// A jump-rate model from annual figures, as `BaseJumpRateModelV2` stores them:
    /// `base/BPY`, `multiplier·1e18/(BPY·kink)`, `jump/BPY`.
    pub fn jump_rate_v2(base_per_year: U256, multiplier_per_year: U256, jump_per_year: U256, kink: U256) -> Self {
        let bpy = U256::from(BLOCKS_PER_YEAR);
        InterestRateModel::JumpRateV2 {
            base_per_block: base_per_year / bpy,
            multiplier_per_block: if kink.is_zero() { U256::ZERO } else { multiplier_per_year * WAD / (bpy * kink) },
            jump_per_block: jump_per_year / bpy,
            kink,
        }
    }

    /// A model that charges nothing (frictionless runs).
    pub fn zero() -> Self {
        InterestRateModel::WhitePaper { base_rate: U256::ZERO, multiplier: U256::ZERO }
    }

    /// `getBorrowRate(cash, borrows, reserves)`, per block.
    pub fn borrow_rate(&self, cash: U256, borrows: U256, reserves: U256) -> Result<U256, LendingError> {
        match *self {
            InterestRateModel::WhitePaper { base_rate, multiplier } => {
                let util = if borrows.is_zero() { U256::ZERO } else { get_exp(borrows, cash + borrows)? };
                let annual = util.checked_mul(multiplier).ok_or_else(|| math("rate"))? / WAD + base_rate;
                Ok(annual / U256::from(BLOCKS_PER_YEAR))
            }
            InterestRateModel::JumpRateV2 { base_per_block, multiplier_per_block, jump_per_block, kink } => {
                let util = if borrows.is_zero() {
                    U256::ZERO
                } else {
                    let d = (cash + borrows).checked_sub(reserves).ok_or_else(|| math("utilization"))?;
                    borrows * WAD / d
                };
                if util <= kink {
                    Ok(util * multiplier_per_block / WAD + base_per_block)
                } else {
                    let normal = kink * multiplier_per_block / WAD + base_per_block;
                    Ok((util - kink) * jump_per_block / WAD + normal)
                }
            }
        }
    }
}

/// Static configuration of a market (cToken and its Comptroller entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketConfig {
    /// Underlying symbol.
    pub symbol: String,
    /// Underlying decimals.
    pub decimals: u8,
    /// Collateral factor (mantissa, at most 0.9).
    pub collateral_factor: U256,
    /// Share of interest to reserves (mantissa).
    pub reserve_factor: U256,
    /// Exchange rate while the cToken has no supply (mantissa).
    pub initial_exchange_rate: U256,
    /// Interest-rate model.
    pub rate: InterestRateModel,
}

impl MarketConfig {
    /// A market with Compound's conventions: initial exchange rate 0.02 cToken-to-underlying
    /// with 8-decimal cTokens (`2·10^(decimals+8)`), collateral factor and reserve factor in
    /// basis points.
    pub fn new(
        symbol: &str,
        decimals: u8,
        collateral_factor_bp: u32,
        reserve_factor_bp: u32,
        rate: InterestRateModel,
    ) -> Self {
        let bp = U256::from(100_000_000_000_000u64);
        MarketConfig {
            symbol: symbol.to_string(),
            decimals,
            collateral_factor: U256::from(collateral_factor_bp) * bp,
            reserve_factor: U256::from(reserve_factor_bp) * bp,
            initial_exchange_rate: U256::from(2u64) * pow10(decimals as u32 + 8),
            rate,
        }
    }

    /// The Comptroller's and cToken's limits: collateral factor ≤ 0.9, reserve factor ≤ 1,
    /// initial exchange rate > 0, at most 28 decimals.
    pub fn validate(&self) -> Result<(), LendingError> {
        let bad = |m: String| Err(LendingError::InvalidConfig(format!("{}: {m}", self.symbol)));
        if self.collateral_factor > U256::from(900_000_000_000_000_000u64) {
            return bad(format!(
                "collateral factor {} must be at most 0.9 (Compound's maximum)",
                fmt(self.collateral_factor)
            ));
        }
        if self.reserve_factor > WAD {
            return bad(format!("reserve factor {} must be at most 1", fmt(self.reserve_factor)));
        }
        if self.initial_exchange_rate.is_zero() {
            return bad("initial exchange rate must be greater than zero".into());
        }
        if self.decimals > 28 {
            return bad(format!("decimals {} must be at most 28", self.decimals));
        }
        Ok(())
    }
}

fn fmt(m: U256) -> String {
    crate::math::Wad(m).to_string()
}

/// A market's running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MarketState {
    /// cTokens outstanding.
    pub total_supply: U256,
    /// Underlying owed by all borrowers, as of the last accrual.
    pub total_borrows: U256,
    /// Underlying kept as reserves.
    pub total_reserves: U256,
    /// Borrow index (mantissa, starts at 1).
    pub borrow_index: U256,
    /// Block of the last accrual.
    pub accrual_block: u64,
    /// Underlying held by the cToken.
    pub cash: U256,
}

impl MarketState {
    /// `exchangeRateStored`: `(cash + borrows − reserves) / supply`, or the initial rate.
    pub fn exchange_rate(&self, initial: U256) -> Result<U256, LendingError> {
        if self.total_supply.is_zero() {
            return Ok(initial);
        }
        let v =
            (self.cash + self.total_borrows).checked_sub(self.total_reserves).ok_or_else(|| math("exchange rate"))?;
        get_exp(v, self.total_supply)
    }
}

/// One market: configuration, totals and its price feed (USD, 8 decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    /// Configuration.
    pub config: MarketConfig,
    /// Totals.
    pub state: MarketState,
    /// Price feed of the underlying.
    pub feed: PriceFeed,
}

/// A borrower's debt in one market: principal at the borrow index of its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BorrowSnapshot {
    /// Balance at `interest_index`.
    pub principal: U256,
    /// Borrow index when `principal` was set.
    pub interest_index: U256,
}

/// An account: cToken balances, borrows and the markets it has entered, in entry order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Account {
    /// cToken balance per market.
    pub tokens: [U256; MAX_MARKETS],
    /// Borrow per market.
    pub borrows: [BorrowSnapshot; MAX_MARKETS],
    /// Markets entered (`accountAssets`).
    pub entered: Vec<AssetId>,
}

/// What an operation on an account can change (see [`CompoundMarket::checkpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    states: Vec<MarketState>,
    account: (Address, Option<Account>),
}

/// A Compound v2 market set: markets, accounts and the Comptroller's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompoundMarket {
    /// Markets by [`AssetId`].
    pub markets: Vec<Market>,
    accounts: BTreeMap<Address, Account>,
    /// Close factor (mantissa, above 0.05, at most 0.9).
    pub close_factor: U256,
    /// Liquidation incentive (mantissa, 1.0–1.5; 1.08 = 8% bonus).
    pub liquidation_incentive: U256,
    /// Seconds per block: `block = now / seconds_per_block`.
    pub seconds_per_block: u64,
}

impl CompoundMarket {
    /// An empty market set with close factor 0.5, liquidation incentive 1.08, 12-second blocks.
    pub fn new() -> Self {
        CompoundMarket {
            markets: Vec::new(),
            accounts: BTreeMap::new(),
            close_factor: WAD / U256::from(2u64),
            liquidation_incentive: U256::from(1_080_000_000_000_000_000u64),
            seconds_per_block: 12,
        }
    }

    /// Set the close factor and liquidation incentive within the Comptroller's bounds:
    /// `0.05 < close factor ≤ 0.9`, `1 ≤ incentive ≤ 1.5`.
    pub fn set_risk(&mut self, close_factor: U256, liquidation_incentive: U256) -> Result<(), LendingError> {
        let e16 = U256::from(10_000_000_000_000_000u64);
        if close_factor <= U256::from(5u64) * e16 || close_factor > U256::from(90u64) * e16 {
            return Err(LendingError::InvalidConfig(format!(
                "close factor {} must be above 0.05 and at most 0.9",
                fmt(close_factor)
            )));
        }
        if liquidation_incentive < WAD || liquidation_incentive > U256::from(150u64) * e16 {
            return Err(LendingError::InvalidConfig(format!(
                "liquidation incentive {} must be between 1 and 1.5",
                fmt(liquidation_incentive)
            )));
        }
        self.close_factor = close_factor;
        self.liquidation_incentive = liquidation_incentive;
        Ok(())
    }

    /// The block number at `now`.
    pub fn block(&self, now: u64) -> u64 {
        now / self.seconds_per_block.max(1)
    }

    /// List a market priced by `feed` (USD, 8 decimals); returns its id.
    pub fn add_market(&mut self, config: MarketConfig, feed: PriceFeed, now: u64) -> Result<AssetId, LendingError> {
        config.validate()?;
        if feed.decimals != 8 {
            return Err(LendingError::InvalidConfig(format!(
                "{}: the oracle's feeds must have 8 decimals",
                config.symbol
            )));
        }
        if self.markets.len() >= MAX_MARKETS {
            return Err(LendingError::InvalidConfig(format!("at most {MAX_MARKETS} markets")));
        }
        if self.markets.iter().any(|m| m.config.symbol == config.symbol) {
            return Err(LendingError::InvalidConfig(format!("{}: market already listed", config.symbol)));
        }
        let state = MarketState { borrow_index: WAD, accrual_block: self.block(now), ..MarketState::default() };
        self.markets.push(Market { config, state, feed });
        Ok(self.markets.len() - 1)
    }

    fn market(&self, a: AssetId) -> Result<&Market, LendingError> {
        self.markets.get(a).ok_or_else(|| LendingError::Unknown(format!("market {a}")))
    }

    /// The id of the market whose underlying is `symbol`.
    pub fn asset(&self, symbol: &str) -> Result<AssetId, LendingError> {
        self.markets
            .iter()
            .position(|m| m.config.symbol == symbol)
            .ok_or_else(|| LendingError::Unknown(format!("market {symbol}")))
    }

    /// Validated USD price of `a`'s underlying, 8 decimals.
    pub fn price(&self, a: AssetId, now: u64) -> Result<U256, OracleError> {
        match self.markets.get(a) {
            Some(m) => m.feed.latest(now),
            None => Err(OracleError::NoAnswer { feed: format!("market {a}") }),
        }
    }

    /// Post a price on `a`'s feed.
    pub fn post_price(&mut self, a: AssetId, answer: i128, now: u64) {
        if let Some(m) = self.markets.get_mut(a) {
            m.feed.post(answer, now);
        }
    }

    /// `getUnderlyingPrice`: USD per underlying base unit, scaled by 1e36 (`price_e8 ·
    /// 10^(28 − decimals)`).
    pub fn underlying_price(&self, a: AssetId, now: u64) -> Result<U256, LendingError> {
        let m = self.market(a)?;
        Ok(m.feed.latest(now)? * pow10(28 - m.config.decimals as u32))
    }

    /// `a`'s totals brought to the block of `now` (`accrueInterest`), not stored.
    pub fn accrued(&self, a: AssetId, now: u64) -> Result<MarketState, LendingError> {
        let m = self.market(a)?;
        let mut s = m.state;
        let block = self.block(now);
        if block == s.accrual_block {
            return Ok(s);
        }
        let delta = block.checked_sub(s.accrual_block).ok_or_else(|| {
            LendingError::Reverted(format!("{}: block {block} is before the last accrual", m.config.symbol))
        })?;
        let rate = m.config.rate.borrow_rate(s.cash, s.total_borrows, s.total_reserves)?;
        if rate > BORROW_RATE_MAX {
            return Err(LendingError::Reverted(format!(
                "{}: borrow rate is absurdly high ({} per block, limit 0.0005)",
                m.config.symbol,
                fmt(rate)
            )));
        }
        let factor = rate * U256::from(delta);
        let interest = mul_trunc(factor, s.total_borrows)?;
        s.total_borrows += interest;
        s.total_reserves += mul_trunc(m.config.reserve_factor, interest)?;
        s.borrow_index += mul_trunc(factor, s.borrow_index)?;
        s.accrual_block = block;
        Ok(s)
    }

    /// `accrueInterest` on market `a` to `now`.
    pub fn accrue_interest(&mut self, a: AssetId, now: u64) -> Result<(), LendingError> {
        self.markets[a].state = self.accrued(a, now)?;
        Ok(())
    }

    /// `borrowBalanceCurrent`: accrue market `a` to `now`, then `user`'s borrow balance.
    pub fn accrue_borrow_balance(&mut self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        self.accrue_interest(a, now)?;
        self.borrow_balance_stored(user, a)
    }

    /// Accrue every market to `now`.
    pub fn accrue_all(&mut self, now: u64) -> Result<(), LendingError> {
        // every market is accrued before any is stored (a failure stores nothing); no allocation:
        // the simulator calls this every block
        let mut states = [MarketState::default(); MAX_MARKETS];
        for (a, slot) in states.iter_mut().enumerate().take(self.markets.len()) {
            *slot = self.accrued(a, now)?;
        }
        for (m, s) in self.markets.iter_mut().zip(states) {
            m.state = s;
        }
        Ok(())
    }

    /// An account's cToken balance in `a`.
    pub fn ctoken_balance(&self, user: Address, a: AssetId) -> U256 {
        self.accounts.get(&user).map(|x| x.tokens[a]).unwrap_or_default()
    }

    /// The markets `user` has entered.
    pub fn entered(&self, user: Address) -> Vec<AssetId> {
        self.accounts.get(&user).map(|x| x.entered.clone()).unwrap_or_default()
    }

    fn stored_borrow(b: &BorrowSnapshot, index: U256) -> Result<U256, LendingError> {
        if b.principal.is_zero() {
            return Ok(U256::ZERO);
        }
        b.principal.checked_mul(index).map(|p| p / b.interest_index).ok_or_else(|| math("borrow balance"))
    }

    /// `borrowBalanceStored`: the debt at the market's last accrual.
    pub fn borrow_balance_stored(&self, user: Address, a: AssetId) -> Result<U256, LendingError> {
        let m = self.market(a)?;
        self.accounts
            .get(&user)
            .map_or(Ok(U256::ZERO), |acc| Self::stored_borrow(&acc.borrows[a], m.state.borrow_index))
    }

    /// `borrowBalanceCurrent` without storing the accrual: the debt at `now`.
    pub fn borrow_balance_current(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        let s = self.accrued(a, now)?;
        self.accounts.get(&user).map_or(Ok(U256::ZERO), |acc| Self::stored_borrow(&acc.borrows[a], s.borrow_index))
    }

    /// `balanceOf · exchangeRateStored` (truncating): the underlying the account's cTokens are
    /// worth at the last accrual — what the Compound FLI strategy reads.
    pub fn supply_balance_stored(&self, user: Address, a: AssetId) -> Result<U256, LendingError> {
        let m = self.market(a)?;
        let er = m.state.exchange_rate(m.config.initial_exchange_rate)?;
        mul_trunc(self.ctoken_balance(user, a), er)
    }

    /// `balanceOfUnderlying` without storing the accrual: what the account's cTokens are worth at
    /// `now` (truncating).
    pub fn supply_balance_current(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        mul_trunc(self.ctoken_balance(user, a), self.exchange_rate_current(a, now)?)
    }

    /// `enterMarkets`: count `assets` as collateral for `user` (already entered is fine).
    pub fn enter_markets(&mut self, user: Address, assets: &[AssetId]) -> Result<(), LendingError> {
        let mut acc = self.accounts.get(&user).cloned().unwrap_or_default();
        for &a in assets {
            self.market(a)?;
            if acc.entered.contains(&a) {
                continue;
            }
            if acc.entered.len() >= MAX_MARKETS {
                return Err(rejected(comptroller_error::TOO_MANY_ASSETS, "market entry"));
            }
            acc.entered.push(a);
        }
        self.accounts.insert(user, acc);
        Ok(())
    }

    /// `getHypotheticalAccountLiquidityInternal`: `(liquidity, shortfall)` in USD·1e18 after
    /// redeeming `redeem_tokens` of and borrowing `borrow` from `modify`, with `states` as the
    /// markets' totals (the operating markets accrued, the others as stored).
    fn liquidity(
        &self,
        acc: &Account,
        states: &[MarketState],
        modify: Option<(AssetId, U256, U256)>,
        now: u64,
    ) -> Result<(U256, U256), LendingError> {
        let (mut collateral, mut borrows) = (U256::ZERO, U256::ZERO);
        for &a in &acc.entered {
            let m = &self.markets[a];
            let s = &states[a];
            let er = s.exchange_rate(m.config.initial_exchange_rate)?;
            let price = self.underlying_price(a, now)?;
            if price.is_zero() {
                return Err(rejected(comptroller_error::PRICE_ERROR, "action"));
            }
            let to_denom = mul_exp(mul_exp(m.config.collateral_factor, er)?, price)?;
            collateral += mul_trunc(to_denom, acc.tokens[a])?;
            let debt = Self::stored_borrow(&acc.borrows[a], s.borrow_index)?;
            borrows += mul_trunc(price, debt)?;
            if let Some((x, redeem, borrow)) = modify
                && x == a
            {
                borrows += mul_trunc(to_denom, redeem)?;
                borrows += mul_trunc(price, borrow)?;
            }
        }
        Ok(if collateral > borrows { (collateral - borrows, U256::ZERO) } else { (U256::ZERO, borrows - collateral) })
    }

    fn states(&self) -> Vec<MarketState> {
        self.markets.iter().map(|m| m.state).collect()
    }

    /// `getAccountLiquidity` at the stored totals: `(liquidity, shortfall)`, USD·1e18.
    pub fn account_liquidity(&self, user: Address, now: u64) -> Result<(U256, U256), LendingError> {
        let empty = Account::default();
        let acc = self.accounts.get(&user).unwrap_or(&empty);
        self.liquidity(acc, &self.states(), None, now)
    }

    /// `mint`: supply `amount` of underlying for cTokens at the accrued exchange rate.
    /// Returns the cTokens minted.
    pub fn mint(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        let mut s = self.accrued(a, now)?;
        let er = s.exchange_rate(self.markets[a].config.initial_exchange_rate)?;
        let tokens = get_exp(amount, er)?;
        let mut acc = self.accounts.get(&user).cloned().unwrap_or_default();
        s.total_supply = s.total_supply.checked_add(tokens).ok_or_else(|| math("total supply"))?;
        acc.tokens[a] = acc.tokens[a].checked_add(tokens).ok_or_else(|| math("account tokens"))?;
        s.cash = s.cash.checked_add(amount).ok_or_else(|| math("cash"))?;
        self.markets[a].state = s;
        self.accounts.insert(user, acc);
        Ok(tokens)
    }

    /// `redeem` (`tokens`) or `redeemUnderlying` (`underlying`): exactly one is non-zero.
    /// Returns `(cTokens burned, underlying paid)`.
    pub fn redeem(
        &mut self,
        user: Address,
        a: AssetId,
        tokens: U256,
        underlying: U256,
        now: u64,
    ) -> Result<(U256, U256), LendingError> {
        let mut s = self.accrued(a, now)?;
        let er = s.exchange_rate(self.markets[a].config.initial_exchange_rate)?;
        let (burn, pay) =
            if !tokens.is_zero() { (tokens, mul_trunc(er, tokens)?) } else { (get_exp(underlying, er)?, underlying) };
        let mut acc = self.accounts.get(&user).cloned().unwrap_or_default();
        if acc.entered.contains(&a) {
            let mut states = self.states();
            states[a] = s;
            let (_, shortfall) = self.liquidity(&acc, &states, Some((a, burn, U256::ZERO)), now)?;
            if !shortfall.is_zero() {
                return Err(rejected(comptroller_error::INSUFFICIENT_LIQUIDITY, "redeem"));
            }
        }
        s.total_supply = s.total_supply.checked_sub(burn).ok_or_else(|| math("redeem (total supply)"))?;
        acc.tokens[a] =
            acc.tokens[a].checked_sub(burn).ok_or_else(|| math("redeem (more cTokens than the account holds)"))?;
        if s.cash < pay {
            return Err(fail(
                token_error::TOKEN_INSUFFICIENT_CASH,
                0,
                format!("the {} market holds {} but the redeem needs {}", self.markets[a].config.symbol, s.cash, pay),
            ));
        }
        if burn.is_zero() && !pay.is_zero() {
            return Err(LendingError::Reverted("redeemTokens zero: the amount is below one cToken".into()));
        }
        s.cash -= pay;
        self.markets[a].state = s;
        self.accounts.insert(user, acc);
        Ok((burn, pay))
    }

    /// `exchangeRateCurrent` without storing the accrual: underlying per cToken at `now`,
    /// scaled by 1e18.
    pub fn exchange_rate_current(&self, a: AssetId, now: u64) -> Result<U256, LendingError> {
        let s = self.accrued(a, now)?;
        s.exchange_rate(self.markets[a].config.initial_exchange_rate)
    }

    /// `transfer`: move `tokens` cTokens of `a` from `src` to `dst`. The comptroller's
    /// `transferAllowed` is its `redeemAllowed`: a source that counts the market as collateral
    /// must be left without shortfall, at the stored totals (a transfer accrues nothing).
    pub fn transfer(
        &mut self,
        src: Address,
        dst: Address,
        a: AssetId,
        tokens: U256,
        now: u64,
    ) -> Result<(), LendingError> {
        self.market(a)?;
        let mut from = self.accounts.get(&src).cloned().unwrap_or_default();
        if from.entered.contains(&a) {
            let (_, shortfall) = self.liquidity(&from, &self.states(), Some((a, tokens, U256::ZERO)), now)?;
            if !shortfall.is_zero() {
                return Err(rejected(comptroller_error::INSUFFICIENT_LIQUIDITY, "transfer"));
            }
        }
        if src == dst {
            return Err(fail(token_error::BAD_INPUT, 0, "a cToken transfer to the sender itself"));
        }
        from.tokens[a] =
            from.tokens[a].checked_sub(tokens).ok_or_else(|| math("transfer (more cTokens than the account holds)"))?;
        let mut to = self.accounts.get(&dst).cloned().unwrap_or_default();
        to.tokens[a] = to.tokens[a].checked_add(tokens).ok_or_else(|| math("transfer (account tokens)"))?;
        self.accounts.insert(src, from);
        self.accounts.insert(dst, to);
        Ok(())
    }

    /// `borrow`: enters the market if needed, checks liquidity at the accrued totals.
    pub fn borrow(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<(), LendingError> {
        let mut s = self.accrued(a, now)?;
        let mut acc = self.accounts.get(&user).cloned().unwrap_or_default();
        if !acc.entered.contains(&a) {
            if acc.entered.len() >= MAX_MARKETS {
                return Err(rejected(comptroller_error::TOO_MANY_ASSETS, "borrow"));
            }
            acc.entered.push(a);
        }
        if self.underlying_price(a, now)?.is_zero() {
            return Err(rejected(comptroller_error::PRICE_ERROR, "borrow"));
        }
        let mut states = self.states();
        states[a] = s;
        let (_, shortfall) = self.liquidity(&acc, &states, Some((a, U256::ZERO, amount)), now)?;
        if !shortfall.is_zero() {
            return Err(rejected(comptroller_error::INSUFFICIENT_LIQUIDITY, "borrow"));
        }
        if s.cash < amount {
            return Err(fail(
                token_error::TOKEN_INSUFFICIENT_CASH,
                0,
                format!(
                    "the {} market holds {} but the borrow needs {}",
                    self.markets[a].config.symbol, s.cash, amount
                ),
            ));
        }
        let owed = Self::stored_borrow(&acc.borrows[a], s.borrow_index)?;
        acc.borrows[a] = BorrowSnapshot {
            principal: owed.checked_add(amount).ok_or_else(|| math("borrow"))?,
            interest_index: s.borrow_index,
        };
        s.total_borrows = s.total_borrows.checked_add(amount).ok_or_else(|| math("total borrows"))?;
        s.cash -= amount;
        self.markets[a].state = s;
        self.accounts.insert(user, acc);
        Ok(())
    }

    /// `repayBorrowFresh` on accrued totals `s`; `U256::MAX` repays everything. Returns the
    /// amount repaid. Repaying more than the debt fails (`MATH_ERROR`), as in Compound.
    fn repay_fresh(s: &mut MarketState, acc: &mut Account, a: AssetId, amount: U256) -> Result<U256, LendingError> {
        let owed = Self::stored_borrow(&acc.borrows[a], s.borrow_index)?;
        let pay = if amount == U256::MAX { owed } else { amount };
        let left = owed.checked_sub(pay).ok_or_else(|| math("repay (more than the borrow balance)"))?;
        s.total_borrows = s.total_borrows.checked_sub(pay).ok_or_else(|| math("repay (total borrows)"))?;
        acc.borrows[a] = BorrowSnapshot { principal: left, interest_index: s.borrow_index };
        s.cash = s.cash.checked_add(pay).ok_or_else(|| math("cash"))?;
        Ok(pay)
    }

    /// `repayBorrow` (by the borrower or on its behalf).
    pub fn repay(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        let mut s = self.accrued(a, now)?;
        let mut acc = self.accounts.get(&user).cloned().unwrap_or_default();
        let paid = Self::repay_fresh(&mut s, &mut acc, a, amount)?;
        self.markets[a].state = s;
        self.accounts.insert(user, acc);
        Ok(paid)
    }

    /// `liquidateCalculateSeizeTokens`: cTokens of `collateral` seized for `repay` of
    /// `borrowed`, at the collateral market's exchange rate in `cs`.
    fn seize_tokens(
        &self,
        borrowed: AssetId,
        collateral: AssetId,
        cs: &MarketState,
        repay: U256,
        now: u64,
    ) -> Result<U256, LendingError> {
        let pb = self.underlying_price(borrowed, now)?;
        let pc = self.underlying_price(collateral, now)?;
        if pb.is_zero() || pc.is_zero() {
            return Err(fail(
                token_error::COMPTROLLER_CALCULATION_ERROR,
                comptroller_error::PRICE_ERROR,
                "a price is zero",
            ));
        }
        let er = cs.exchange_rate(self.markets[collateral].config.initial_exchange_rate)?;
        let num = mul_exp(self.liquidation_incentive, pb)?;
        let den = mul_exp(pc, er)?;
        mul_trunc(get_exp(num, den)?, repay)
    }

    /// `liquidateBorrow`: `liquidator` repays `repay` of `borrower`'s `borrowed` debt and
    /// receives `collateral` cTokens worth the repay times the liquidation incentive. Returns
    /// `(repaid, cTokens seized)`. Seizing the borrowed market's own cTokens reverts, as in
    /// this cToken version (`seize` is an external, non-reentrant call back into the cToken).
    pub fn liquidate_borrow(
        &mut self,
        liquidator: Address,
        borrower: Address,
        borrowed: AssetId,
        collateral: AssetId,
        repay: U256,
        now: u64,
    ) -> Result<(U256, U256), LendingError> {
        let mut states = self.states();
        states[borrowed] = self.accrued(borrowed, now)?;
        states[collateral] = self.accrued(collateral, now)?;
        let mut acc = self.accounts.get(&borrower).cloned().unwrap_or_default();
        let (_, shortfall) = self.liquidity(&acc, &states, None, now)?;
        if shortfall.is_zero() {
            return Err(rejected(comptroller_error::INSUFFICIENT_SHORTFALL, "liquidation"));
        }
        let owed = Self::stored_borrow(&acc.borrows[borrowed], states[borrowed].borrow_index)?;
        if repay > mul_trunc(self.close_factor, owed)? {
            return Err(rejected(comptroller_error::TOO_MUCH_REPAY, "liquidation"));
        }
        if borrower == liquidator {
            return Err(fail(token_error::INVALID_ACCOUNT_PAIR, 0, "the liquidator cannot be the borrower"));
        }
        if repay.is_zero() || repay == U256::MAX {
            return Err(fail(
                token_error::INVALID_CLOSE_AMOUNT_REQUESTED,
                0,
                "the repay amount must be positive and finite",
            ));
        }
        let seize = self.seize_tokens(borrowed, collateral, &states[collateral], repay, now)?;
        if seize > acc.tokens[collateral] {
            return Err(fail(
                token_error::TOKEN_INSUFFICIENT_BALANCE,
                0,
                "the liquidation would seize more cTokens than the borrower holds",
            ));
        }
        if borrowed == collateral {
            return Err(LendingError::Reverted(format!(
                "re-entered: a liquidation cannot seize the {} market's own cTokens (seize is a non-reentrant call back into the cToken)",
                self.market(borrowed)?.config.symbol
            )));
        }
        let mut bs = states[borrowed];
        let paid = Self::repay_fresh(&mut bs, &mut acc, borrowed, repay)?;
        states[borrowed] = bs;
        let mut liq = if liquidator == borrower {
            acc.clone()
        } else {
            self.accounts.get(&liquidator).cloned().unwrap_or_default()
        };
        acc.tokens[collateral] -= seize;
        liq.tokens[collateral] = liq.tokens[collateral].checked_add(seize).ok_or_else(|| math("seize"))?;
        self.markets[borrowed].state = states[borrowed];
        self.markets[collateral].state = states[collateral];
        self.accounts.insert(borrower, acc);
        self.accounts.insert(liquidator, liq);
        Ok((paid, seize))
    }

    /// The largest repay a liquidator can make at `now`: the close factor's share of the
    /// debt, reduced so the seized cTokens do not exceed the borrower's balance.
    pub fn max_liquidation_repay(
        &self,
        borrower: Address,
        borrowed: AssetId,
        collateral: AssetId,
        now: u64,
    ) -> Result<U256, LendingError> {
        let bs = self.accrued(borrowed, now)?;
        let cs = if collateral == borrowed { bs } else { self.accrued(collateral, now)? };
        let empty = Account::default();
        let acc = self.accounts.get(&borrower).unwrap_or(&empty);
        let owed = Self::stored_borrow(&acc.borrows[borrowed], bs.borrow_index)?;
        let mut repay = mul_trunc(self.close_factor, owed)?;
        let per = self.seize_tokens(borrowed, collateral, &cs, WAD, now)?; // cTokens per 1e18 repaid
        if !per.is_zero() && mul_trunc(per, repay)? > acc.tokens[collateral] {
            repay = acc.tokens[collateral] * WAD / per;
            while !repay.is_zero() && self.seize_tokens(borrowed, collateral, &cs, repay, now)? > acc.tokens[collateral]
            {
                repay -= U256::from(1u64);
            }
        }
        Ok(repay)
    }

    /// Account figures in the Aave shape (USD·1e8; health factor = collateral·CF ÷ debt,
    /// wad, `U256::MAX` with no debt), at the stored totals.
    pub fn account_data(&self, user: Address, now: u64) -> Result<AccountData, LendingError> {
        let empty = Account::default();
        let acc = self.accounts.get(&user).unwrap_or(&empty);
        let (mut coll, mut weighted, mut debt) = (U256::ZERO, U256::ZERO, U256::ZERO);
        let e10 = pow10(10);
        for &a in &acc.entered {
            let m = &self.markets[a];
            let er = m.state.exchange_rate(m.config.initial_exchange_rate)?;
            let price = self.underlying_price(a, now)?;
            let value = mul_trunc(mul_exp(er, price)?, acc.tokens[a])?;
            coll += value;
            weighted += mul_trunc(mul_exp(mul_exp(m.config.collateral_factor, er)?, price)?, acc.tokens[a])?;
            debt += mul_trunc(price, Self::stored_borrow(&acc.borrows[a], m.state.borrow_index)?)?;
        }
        let hf = if debt.is_zero() { U256::MAX } else { weighted * WAD / debt };
        let cf_bp = |v: U256| if coll.is_zero() { U256::ZERO } else { v * U256::from(10_000u64) / coll };
        Ok(AccountData {
            collateral_base: coll / e10,
            debt_base: debt / e10,
            avg_ltv_bp: cf_bp(weighted),
            avg_lt_bp: cf_bp(weighted),
            health_factor: hf,
            available_borrows_base: weighted.saturating_sub(debt) / e10,
        })
    }

    /// Liquidate as much as the Comptroller allows (at most `max_repay`), seizing `collateral`;
    /// the liquidator is an outside account. In Aave's outcome shape (collateral in underlying).
    pub fn liquidation_call(
        &mut self,
        collateral: AssetId,
        borrowed: AssetId,
        user: Address,
        max_repay: U256,
        now: u64,
    ) -> Result<LiquidationOutcome, LendingError> {
        let hf = self.account_data(user, now)?.health_factor;
        let repay = self.max_liquidation_repay(user, borrowed, collateral, now)?.min(max_repay);
        let liquidator = Address::with_last_byte(0xee);
        let (paid, seized) = self.liquidate_borrow(liquidator, user, borrowed, collateral, repay, now)?;
        let m = &self.markets[collateral];
        let er = m.state.exchange_rate(m.config.initial_exchange_rate)?;
        Ok(LiquidationOutcome {
            debt_repaid: paid,
            collateral_to_liquidator: mul_trunc(er, seized)?,
            protocol_fee: U256::ZERO,
            health_factor_before: hf,
        })
    }

    /// Save the markets' totals and `account`.
    pub fn checkpoint(&self, account: Address) -> Checkpoint {
        Checkpoint { states: self.states(), account: (account, self.accounts.get(&account).cloned()) }
    }

    /// Put back what [`CompoundMarket::checkpoint`] saved.
    pub fn restore(&mut self, cp: Checkpoint) {
        for (m, s) in self.markets.iter_mut().zip(cp.states) {
            m.state = s;
        }
        match cp.account {
            (a, Some(acc)) => {
                self.accounts.insert(a, acc);
            }
            (a, None) => {
                self.accounts.remove(&a);
            }
        }
    }
}

impl Default for CompoundMarket {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::math::Wad;

    fn e(x: u64, d: u32) -> U256 {
        U256::from(x) * pow10(d)
    }

    /// WETH (WhitePaper 2% + 30%, collateral factor 75%) and USDC markets, ETH at $2,000.
    pub(crate) fn two_markets() -> (CompoundMarket, AssetId, AssetId) {
        let mut m = CompoundMarket::new();
        let wp = InterestRateModel::WhitePaper { base_rate: e(2, 16), multiplier: e(3, 17) };
        let mut fe = PriceFeed::new("ETH / USD", 8, 3600, Wad::ZERO);
        fe.post(2000_00000000, 0);
        let mut fu = PriceFeed::new("USDC / USD", 8, 86_400, Wad::ZERO);
        fu.post(1_00000000, 0);
        let eth = m.add_market(MarketConfig::new("WETH", 18, 7500, 2000, wp), fe, 0).unwrap();
        let usdc = m.add_market(MarketConfig::new("USDC", 6, 7500, 1000, wp), fu, 0).unwrap();
        (m, eth, usdc)
    }

    #[test]
    fn exchange_rate_starts_at_initial_and_mint_floors() {
        let (mut m, eth, _) = two_markets();
        let a = Address::with_last_byte(1);
        let t = m.mint(a, eth, e(1, 18), 0).unwrap();
        // 1e18 · 1e18 / 2e26 = 5e9 cTokens (50 cETH with 8 decimals)
        assert_eq!(t, e(5, 9));
        assert_eq!(m.supply_balance_stored(a, eth).unwrap(), e(1, 18));
    }

    #[test]
    fn borrow_is_limited_by_collateral_factor() {
        let (mut m, eth, usdc) = two_markets();
        let (a, lender) = (Address::with_last_byte(1), Address::with_last_byte(2));
        m.mint(lender, usdc, e(1_000_000, 6), 0).unwrap();
        m.mint(a, eth, e(1, 18), 0).unwrap();
        // not entered: no collateral
        let err = m.borrow(a, usdc, e(1, 6), 0).unwrap_err();
        assert!(matches!(err, LendingError::Compound { code: 3, detail: 4, .. }), "{err}");
        m.enter_markets(a, &[eth]).unwrap();
        // 1 ETH · 2000 · 0.75 = 1500 USDC
        assert!(m.borrow(a, usdc, e(1500, 6) + U256::from(1u64), 0).is_err());
        m.borrow(a, usdc, e(1500, 6), 0).unwrap();
        assert_eq!(m.account_liquidity(a, 0).unwrap(), (U256::ZERO, U256::ZERO));
    }

    #[test]
    fn interest_accrues_per_block_and_liquidation_seizes_with_incentive() {
        let (mut m, eth, usdc) = two_markets();
        let (a, lender, liq) = (Address::with_last_byte(1), Address::with_last_byte(2), Address::with_last_byte(3));
        m.mint(lender, usdc, e(1_000_000, 6), 0).unwrap();
        m.mint(a, eth, e(1, 18), 0).unwrap();
        m.enter_markets(a, &[eth]).unwrap();
        m.borrow(a, usdc, e(1400, 6), 0).unwrap();
        // 11 s: same block, nothing accrues
        assert_eq!(m.accrued(usdc, 11).unwrap(), m.markets[usdc].state);
        m.accrue_all(12 * 1000).unwrap();
        assert!(m.borrow_balance_stored(a, usdc).unwrap() > e(1400, 6));
        assert!(m.liquidate_borrow(liq, a, usdc, eth, e(100, 6), 12_000).is_err());
        m.post_price(eth, 1800_00000000, 12_000);
        let max = m.max_liquidation_repay(a, usdc, eth, 12_000).unwrap();
        let owed = m.borrow_balance_stored(a, usdc).unwrap();
        assert_eq!(max, owed / U256::from(2u64));
        let err = m.liquidate_borrow(liq, a, usdc, eth, max + U256::from(1u64), 12_000).unwrap_err();
        assert!(matches!(err, LendingError::Compound { code: 3, detail: 17, .. }), "{err}");
        let (paid, seized) = m.liquidate_borrow(liq, a, usdc, eth, max, 12_000).unwrap();
        assert_eq!(paid, max);
        // value seized ≈ repay · 1.08 / 1800 ETH
        let got = m.supply_balance_stored(liq, eth).unwrap();
        let want = paid * e(108, 12) / U256::from(1800u64) / U256::from(100u64);
        assert!(got <= want && want - got < e(1, 9), "{got} {want}");
        assert_eq!(m.ctoken_balance(liq, eth), seized);
    }

    #[test]
    fn failed_calls_change_nothing() {
        let (mut m, eth, usdc) = two_markets();
        let a = Address::with_last_byte(1);
        m.mint(a, eth, e(1, 18), 0).unwrap();
        m.enter_markets(a, &[eth]).unwrap();
        let before = m.clone();
        assert!(m.borrow(a, usdc, e(1, 6), 120).is_err()); // no cash
        assert!(m.repay(a, usdc, e(1, 6), 120).is_err()); // no debt
        assert!(m.redeem(a, eth, e(1, 20), U256::ZERO, 120).is_err());
        assert_eq!(m, before);
    }

    #[test]
    fn jump_rate_v2_kinks() {
        let k = InterestRateModel::jump_rate_v2(U256::ZERO, e(4, 16), e(109, 16), e(8, 17));
        let below = k.borrow_rate(e(50, 6), e(50, 6), U256::ZERO).unwrap();
        let at = k.borrow_rate(e(20, 6), e(80, 6), U256::ZERO).unwrap();
        let above = k.borrow_rate(e(10, 6), e(90, 6), U256::ZERO).unwrap();
        assert!(below < at && at < above);
        // at the kink the annual rate is the multiplier (4%), within per-block rounding
        let annual = at * U256::from(BLOCKS_PER_YEAR);
        assert!(e(4, 16) - annual < U256::from(BLOCKS_PER_YEAR * 2), "{annual}");
    }

    #[test]
    fn table_ctoken_transfers_as_the_comptroller_allows_them() {
        let (mut m, eth, usdc) = two_markets();
        let (a, b, lender) = (Address::with_last_byte(1), Address::with_last_byte(2), Address::with_last_byte(3));
        m.mint(lender, usdc, e(1_000_000, 6), 0).unwrap();
        m.mint(a, eth, e(1, 18), 0).unwrap(); // 5e9 cTokens
        m.enter_markets(a, &[eth]).unwrap();
        m.borrow(a, usdc, e(1_200, 6), 0).unwrap(); // 1,500 of liquidity, 300 left: 1/5 of the cTokens
        // (case, from, to, cTokens, refused with (code, detail))
        let cases = [
            ("within the liquidity", a, b, e(9, 8), None),
            ("past the liquidity", a, b, e(2, 9), Some((token_error::COMPTROLLER_REJECTION, 4))),
            ("to itself", a, a, U256::from(1u8), Some((token_error::BAD_INPUT, 0))),
            ("more than held, not a member", b, a, e(1, 9), Some((token_error::MATH_ERROR, 0))),
            ("back, not a member", b, a, e(9, 8), None),
        ];
        for (case, from, to, tokens, refused) in cases {
            let before = m.clone();
            match (m.transfer(from, to, eth, tokens, 0), refused) {
                (Ok(()), None) => {}
                (Err(LendingError::Compound { code, detail, .. }), Some(want)) => {
                    assert_eq!((code, detail), want, "{case}");
                    assert_eq!(m, before, "{case}: a refused transfer changes nothing");
                }
                (got, want) => panic!("{case}: {got:?}, wanted a refusal {want:?}"),
            }
        }
        assert_eq!((m.ctoken_balance(a, eth), m.ctoken_balance(b, eth)), (e(5, 9), U256::ZERO));
    }
}
