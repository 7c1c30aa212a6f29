//! An Aave-v3-style lending market (`venues.md` §1): reserves with ray indexes, the two-slope
//! rate model, accrual, LTV / liquidation threshold / bonus, close factor, caps, health factor
//! and liquidation. Rounding is Aave's half-up (`ray_mul`, `percent_mul`, …).
//!
//! Every operation validates on a copy of the reserve state brought to `now` and commits only
//! when every check has passed, so a failed call leaves the market exactly as it was.

use crate::error::{LendingError, OracleError};
use crate::math::{RAY, U256, add, percent_div, percent_mul, pow10, ray_div, ray_mul, sub, wad_div};
use crate::oracle::PriceFeed;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Index of a reserve in its market.
pub type AssetId = usize;

/// Seconds per year used by Aave's interest math.
pub const SECONDS_PER_YEAR: u64 = 31_536_000;
/// Health factor below which the close factor is 100% (0.95 wad).
pub const CLOSE_FACTOR_HF_THRESHOLD: U256 = alloy_primitives::uint!(950_000_000_000_000_000_U256);
/// Health factor of 1 (wad).
pub const HEALTH_FACTOR_ONE: U256 = crate::math::WAD;

/// The two-slope interest-rate model (all ray, per year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateModel {
    /// Optimal usage `U*`.
    pub optimal_usage: U256,
    /// Base variable borrow rate.
    pub base: U256,
    /// Slope below `U*`.
    pub slope1: U256,
    /// Slope above `U*`.
    pub slope2: U256,
}

impl RateModel {
    fn pct(p: u64) -> U256 {
        RAY * U256::from(p) / U256::from(100u64)
    }
    /// Aave deployment template `rateStrategyVolatileOne` (WETH, WBTC): 45%, 0, 7%, 300%.
    pub fn volatile_one() -> Self {
        RateModel { optimal_usage: Self::pct(45), base: U256::ZERO, slope1: Self::pct(7), slope2: Self::pct(300) }
    }
    /// Aave deployment template `rateStrategyStableOne` (USDC, USDT): 90%, 0, 4%, 60%.
    pub fn stable_one() -> Self {
        RateModel { optimal_usage: Self::pct(90), base: U256::ZERO, slope1: Self::pct(4), slope2: Self::pct(60) }
    }
    /// A model with no interest at all (frictionless runs).
    pub fn zero() -> Self {
        RateModel { optimal_usage: Self::pct(90), base: U256::ZERO, slope1: U256::ZERO, slope2: U256::ZERO }
    }
}

/// Static configuration of a reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveConfig {
    /// Asset symbol.
    pub symbol: String,
    /// Decimals of the base unit.
    pub decimals: u8,
    /// LTV in basis points.
    pub ltv_bp: u32,
    /// Liquidation threshold in basis points.
    pub liquidation_threshold_bp: u32,
    /// Liquidation bonus in basis points (≥ 10 000; 10 500 = 5%).
    pub liquidation_bonus_bp: u32,
    /// Share of the bonus to the treasury, basis points.
    pub liquidation_protocol_fee_bp: u32,
    /// Share of interest to the treasury, basis points.
    pub reserve_factor_bp: u32,
    /// Supply cap in whole tokens (0 = none).
    pub supply_cap: u64,
    /// Borrow cap in whole tokens (0 = none).
    pub borrow_cap: u64,
    /// Reserve active.
    pub active: bool,
    /// Reserve frozen (no new supply or borrow).
    pub frozen: bool,
    /// Reserve paused (nothing moves).
    pub paused: bool,
    /// Variable borrowing enabled.
    pub borrowing_enabled: bool,
    /// eMode category of the asset (0 = none).
    pub emode_category: u8,
    /// Interest-rate model.
    pub rate: RateModel,
}

impl ReserveConfig {
    /// A reserve with Aave-template-like defaults: active, borrowable, no caps, 10% reserve
    /// factor and 10% liquidation protocol fee.
    pub fn new(
        symbol: &str,
        decimals: u8,
        ltv_bp: u32,
        liquidation_threshold_bp: u32,
        liquidation_bonus_bp: u32,
        rate: RateModel,
    ) -> Self {
        ReserveConfig {
            symbol: symbol.to_string(),
            decimals,
            ltv_bp,
            liquidation_threshold_bp,
            liquidation_bonus_bp,
            liquidation_protocol_fee_bp: 1_000,
            reserve_factor_bp: 1_000,
            supply_cap: 0,
            borrow_cap: 0,
            active: true,
            frozen: false,
            paused: false,
            borrowing_enabled: true,
            emode_category: 0,
            rate,
        }
    }

    /// Aave's configuration rules: `ltv ≤ threshold`, `threshold · bonus ≤ 100%`, bonus ≥ 100%.
    pub fn validate(&self) -> Result<(), LendingError> {
        let bad = |m: String| Err(LendingError::InvalidConfig(format!("{}: {m}", self.symbol)));
        if self.ltv_bp > self.liquidation_threshold_bp {
            return bad(format!(
                "ltv {} bp must not exceed the liquidation threshold {} bp",
                self.ltv_bp, self.liquidation_threshold_bp
            ));
        }
        if self.liquidation_threshold_bp != 0 && self.liquidation_bonus_bp <= 10_000 {
            return bad(format!("liquidation bonus {} bp must be above 10000 bp (100%)", self.liquidation_bonus_bp));
        }
        if (self.liquidation_threshold_bp as u64) * (self.liquidation_bonus_bp as u64) > 10_000 * 10_000 {
            return bad(format!(
                "liquidation threshold {} bp times bonus {} bp must not exceed 100% (a liquidation would pay more collateral than exists)",
                self.liquidation_threshold_bp, self.liquidation_bonus_bp
            ));
        }
        if self.liquidation_protocol_fee_bp > 10_000 || self.reserve_factor_bp > 10_000 {
            return bad("protocol fee and reserve factor must be at most 10000 bp".into());
        }
        if self.rate.optimal_usage.is_zero() || self.rate.optimal_usage > RAY {
            return bad("optimal usage must be in (0, 100%]".into());
        }
        Ok(())
    }
}

/// Dynamic state of a reserve (all integers; `Copy` so that operations work on a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveState {
    /// Supply index (ray).
    pub liquidity_index: U256,
    /// Variable borrow index (ray).
    pub variable_borrow_index: U256,
    /// Current supply rate (ray per year).
    pub liquidity_rate: U256,
    /// Current variable borrow rate (ray per year).
    pub variable_borrow_rate: U256,
    /// Last accrual time.
    pub last_update: u64,
    /// Treasury's scaled claim not yet minted.
    pub accrued_to_treasury: U256,
    /// Total scaled aToken supply.
    pub scaled_supply: U256,
    /// Total scaled variable debt.
    pub scaled_debt: U256,
    /// Underlying held by the reserve.
    pub available: U256,
    /// Memo of the last accrual's interest factors: `(dt, liquidity rate, linear factor,
    /// borrow rate, compound factor)`. A pure function of its inputs; steady blocks reuse it.
    pub factor_memo: (u64, U256, U256, U256, U256),
    /// Memo of `rayMul(scaled_debt, variable_borrow_index)` for the treasury's accrual:
    /// `(scaled_debt, index, value)`.
    pub debt_memo: (U256, U256, U256),
}

/// A reserve: configuration, state and the market oracle's feed for the asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    /// Configuration.
    pub config: ReserveConfig,
    /// State.
    pub state: ReserveState,
    /// Price feed (USD, 8 decimals).
    pub feed: PriceFeed,
}

/// An eMode category's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EModeCategory {
    /// LTV, basis points.
    pub ltv_bp: u32,
    /// Liquidation threshold, basis points.
    pub liquidation_threshold_bp: u32,
    /// Liquidation bonus, basis points.
    pub liquidation_bonus_bp: u32,
}

/// Most reserves one market lists (accounts are fixed-size values, copied without allocation).
pub const MAX_RESERVES: usize = 8;

/// A user's positions: scaled balances per reserve (indexed by [`AssetId`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Scaled aToken balance per reserve.
    pub scaled_supply: [U256; MAX_RESERVES],
    /// Scaled variable debt per reserve.
    pub scaled_debt: [U256; MAX_RESERVES],
    /// Whether each supplied reserve counts as collateral.
    pub collateral_enabled: [bool; MAX_RESERVES],
    /// eMode category (0 = none).
    pub emode: u8,
}

/// A user's aggregate position in the market's base currency (USD, 8 decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountData {
    /// Collateral value.
    pub collateral_base: U256,
    /// Debt value.
    pub debt_base: U256,
    /// Weighted LTV, basis points.
    pub avg_ltv_bp: U256,
    /// Weighted liquidation threshold, basis points.
    pub avg_lt_bp: U256,
    /// Health factor (wad); `U256::MAX` without debt.
    pub health_factor: U256,
    /// Remaining borrowing power.
    pub available_borrows_base: U256,
}

/// What a liquidation moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationOutcome {
    /// Debt repaid by the liquidator (debt asset base units).
    pub debt_repaid: U256,
    /// Collateral paid to the liquidator (collateral base units).
    pub collateral_to_liquidator: U256,
    /// Collateral paid to the treasury as protocol fee.
    pub protocol_fee: U256,
    /// Health factor before the liquidation.
    pub health_factor_before: U256,
}

/// The values an accrual changes (memo keys are rebuilt from the state when applied).
struct Accrual {
    liquidity_index: U256,
    variable_borrow_index: U256,
    treasury_add: U256,
    linear: U256,
    compound: U256,
    debt_value: Option<U256>,
    dt: u64,
    now: u64,
}

impl Accrual {
    fn apply(&self, s: &mut ReserveState) {
        s.factor_memo = (self.dt, s.liquidity_rate, self.linear, s.variable_borrow_rate, self.compound);
        if let Some(v) = self.debt_value {
            s.debt_memo = (s.scaled_debt, self.variable_borrow_index, v);
        }
        s.liquidity_index = self.liquidity_index;
        s.variable_borrow_index = self.variable_borrow_index;
        s.accrued_to_treasury += self.treasury_add;
        s.last_update = self.now;
    }
}

/// Saved reserve states and accounts, to undo a composite operation.
#[derive(Debug, Clone)]
pub struct MarketCheckpoint {
    states: Vec<ReserveState>,
    account: (Address, Option<Account>),
}

/// The market: reserves, eMode categories and accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LendingMarket {
    /// Reserves by [`AssetId`].
    pub reserves: Vec<Reserve>,
    /// eMode categories by id.
    pub emodes: BTreeMap<u8, EModeCategory>,
    accounts: BTreeMap<Address, Account>,
    /// Address that receives liquidation protocol fees.
    pub treasury: Address,
}

fn income_of(s: &ReserveState, now: u64) -> Result<U256, LendingError> {
    if now <= s.last_update {
        return Ok(s.liquidity_index);
    }
    Ok(ray_mul(linear_interest(s.liquidity_rate, now - s.last_update), s.liquidity_index)?)
}

fn debt_index_of(s: &ReserveState, now: u64) -> Result<U256, LendingError> {
    if now <= s.last_update {
        return Ok(s.variable_borrow_index);
    }
    Ok(ray_mul(compound_interest(s.variable_borrow_rate, now - s.last_update)?, s.variable_borrow_index)?)
}

fn linear_interest(rate: U256, dt: u64) -> U256 {
    RAY + rate * U256::from(dt) / U256::from(SECONDS_PER_YEAR)
}

fn compound_interest(rate: U256, dt: u64) -> Result<U256, LendingError> {
    if dt == 0 {
        return Ok(RAY);
    }
    let exp = U256::from(dt);
    let exp_m1 = U256::from(dt - 1);
    let exp_m2 = U256::from(dt.saturating_sub(2));
    let spy = U256::from(SECONDS_PER_YEAR);
    let base2 = ray_mul(rate, rate)? / (spy * spy);
    let base3 = ray_mul(base2, rate)? / spy;
    let second = exp * exp_m1 * base2 / U256::from(2u64);
    let third = exp * exp_m1 * exp_m2 * base3 / U256::from(6u64);
    Ok(RAY + rate * exp / spy + second + third)
}

impl LendingMarket {
    /// A market from its serialised parts (`venue::money_market` reads snapshots field by
    /// field).
    pub(crate) fn from_parts(
        reserves: Vec<Reserve>,
        emodes: BTreeMap<u8, EModeCategory>,
        accounts: BTreeMap<Address, Account>,
        treasury: Address,
    ) -> Self {
        LendingMarket { reserves, emodes, accounts, treasury }
    }

    /// An empty market.
    pub fn new() -> Self {
        LendingMarket {
            reserves: Vec::new(),
            emodes: BTreeMap::new(),
            accounts: BTreeMap::new(),
            treasury: Address::with_last_byte(0xfe),
        }
    }

    /// Add a reserve priced by `feed` (USD, 8 decimals); returns its id.
    pub fn add_reserve(&mut self, config: ReserveConfig, feed: PriceFeed, now: u64) -> Result<AssetId, LendingError> {
        config.validate()?;
        if feed.decimals != 8 {
            return Err(LendingError::InvalidConfig(format!(
                "{}: the market oracle's feeds must have 8 decimals",
                config.symbol
            )));
        }
        if self.reserves.len() >= MAX_RESERVES {
            return Err(LendingError::InvalidConfig(format!(
                "{}: a market lists at most {MAX_RESERVES} reserves",
                config.symbol
            )));
        }
        if self.reserves.iter().any(|r| r.config.symbol == config.symbol) {
            return Err(LendingError::InvalidConfig(format!("{}: reserve already listed", config.symbol)));
        }
        self.reserves.push(Reserve {
            config,
            state: ReserveState {
                liquidity_index: RAY,
                variable_borrow_index: RAY,
                liquidity_rate: U256::ZERO,
                variable_borrow_rate: U256::ZERO,
                last_update: now,
                accrued_to_treasury: U256::ZERO,
                scaled_supply: U256::ZERO,
                scaled_debt: U256::ZERO,
                available: U256::ZERO,
                factor_memo: (0, U256::ZERO, RAY, U256::ZERO, RAY),
                debt_memo: (U256::ZERO, U256::ZERO, U256::ZERO),
            },
            feed,
        });
        // Rates stay 0 until the first action updates them, as `ReserveLogic.init` leaves them
        // (with a base rate the debt index would otherwise grow before anything is borrowed).
        Ok(self.reserves.len() - 1)
    }

    /// Register an eMode category.
    pub fn set_emode_category(&mut self, id: u8, cat: EModeCategory) -> Result<(), LendingError> {
        if id == 0 {
            return Err(LendingError::InvalidConfig("eMode category 0 means 'none' and cannot be configured".into()));
        }
        if cat.ltv_bp > cat.liquidation_threshold_bp {
            return Err(LendingError::InvalidConfig("eMode ltv must not exceed its liquidation threshold".into()));
        }
        self.emodes.insert(id, cat);
        Ok(())
    }

    /// The reserve id of `symbol`.
    pub fn asset(&self, symbol: &str) -> Result<AssetId, LendingError> {
        self.reserves
            .iter()
            .position(|r| r.config.symbol == symbol)
            .ok_or_else(|| LendingError::Unknown(format!("reserve {symbol}")))
    }

    fn reserve(&self, a: AssetId) -> Result<&Reserve, LendingError> {
        self.reserves.get(a).ok_or_else(|| LendingError::Unknown(format!("reserve id {a}")))
    }

    /// Validated oracle price of `a` at `now` (USD, 8 decimals).
    pub fn price(&self, a: AssetId, now: u64) -> Result<U256, OracleError> {
        self.reserves[a].feed.latest(now)
    }

    /// Post a price to the feed of `a` (what an oracle transmitter does).
    pub fn post_price(&mut self, a: AssetId, answer: i128, now: u64) {
        self.reserves[a].feed.post(answer, now);
    }

    /// Supply index at `now` without writing (Aave `getNormalizedIncome`).
    pub fn normalized_income(&self, a: AssetId, now: u64) -> Result<U256, LendingError> {
        income_of(&self.reserve(a)?.state, now)
    }

    /// Variable borrow index at `now` without writing (Aave `getNormalizedVariableDebt`).
    pub fn normalized_debt(&self, a: AssetId, now: u64) -> Result<U256, LendingError> {
        debt_index_of(&self.reserve(a)?.state, now)
    }

    /// A user's aToken balance at `now`, interest included.
    pub fn supply_balance(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        let scaled = self.accounts.get(&user).and_then(|acc| acc.scaled_supply.get(a).copied()).unwrap_or_default();
        if scaled.is_zero() {
            return Ok(U256::ZERO);
        }
        Ok(ray_mul(scaled, self.normalized_income(a, now)?)?)
    }

    /// A user's variable debt at `now`, interest included.
    pub fn debt_balance(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        let scaled = self.accounts.get(&user).and_then(|acc| acc.scaled_debt.get(a).copied()).unwrap_or_default();
        if scaled.is_zero() {
            return Ok(U256::ZERO);
        }
        Ok(ray_mul(scaled, self.normalized_debt(a, now)?)?)
    }

    /// The LTV and liquidation threshold that apply to collateral `a` for a user in `emode`.
    pub fn risk_params(&self, a: AssetId, emode: u8) -> (u32, u32, u32) {
        let c = &self.reserves[a].config;
        if emode != 0
            && c.emode_category == emode
            && let Some(cat) = self.emodes.get(&emode)
        {
            return (cat.ltv_bp, cat.liquidation_threshold_bp, cat.liquidation_bonus_bp);
        }
        (c.ltv_bp, c.liquidation_threshold_bp, c.liquidation_bonus_bp)
    }

    /// Aggregate position of `user` at `now` (Aave `calculateUserAccountData`).
    pub fn account_data(&self, user: Address, now: u64) -> Result<AccountData, LendingError> {
        match self.accounts.get(&user) {
            Some(acc) => self.account_data_of(acc, now),
            None => self.account_data_of(&Account::default(), now),
        }
    }

    fn account_data_of(&self, acc: &Account, now: u64) -> Result<AccountData, LendingError> {
        self.account_data_with(acc, now, None)
    }

    /// Account data with reserve `ov.0`'s state replaced by `ov.1` (an operation's pending state).
    fn account_data_with(
        &self,
        acc: &Account,
        now: u64,
        ov: Option<(AssetId, &ReserveState)>,
    ) -> Result<AccountData, LendingError> {
        let mut collateral = U256::ZERO;
        let mut debt = U256::ZERO;
        let mut ltv_sum = U256::ZERO;
        let mut lt_sum = U256::ZERO;
        for (a, r) in self.reserves.iter().enumerate() {
            let sup = acc.scaled_supply[a];
            let dbt = acc.scaled_debt[a];
            let (ltv, lt, _) = self.risk_params(a, acc.emode);
            let uses_collateral = acc.collateral_enabled[a] && lt != 0 && !sup.is_zero();
            if !uses_collateral && dbt.is_zero() {
                continue;
            }
            let price = r.feed.latest(now)?;
            let unit = pow10(r.config.decimals as u32);
            let st = match ov {
                Some((i, st)) if i == a => st,
                _ => &r.state,
            };
            if uses_collateral {
                let bal = ray_mul(sup, income_of(st, now)?)?;
                let v = crate::math::div(price * bal, unit, "account value")?;
                collateral += v;
                ltv_sum += v * U256::from(ltv);
                lt_sum += v * U256::from(lt);
            }
            if !dbt.is_zero() {
                let bal = ray_mul(dbt, debt_index_of(st, now)?)?;
                debt += crate::math::div(price * bal, unit, "account value")?;
            }
        }
        let (avg_ltv, avg_lt) =
            if collateral.is_zero() { (U256::ZERO, U256::ZERO) } else { (ltv_sum / collateral, lt_sum / collateral) };
        let hf = if debt.is_zero() { U256::MAX } else { wad_div(percent_mul(collateral, avg_lt)?, debt)? };
        let borrow_power = percent_mul(collateral, avg_ltv)?;
        Ok(AccountData {
            collateral_base: collateral,
            debt_base: debt,
            avg_ltv_bp: avg_ltv,
            avg_lt_bp: avg_lt,
            health_factor: hf,
            available_borrows_base: borrow_power.saturating_sub(debt),
        })
    }

    /// What bringing reserve `a` to `now` changes (Aave `updateState`), computed read-only;
    /// `None` when there is nothing to do.
    fn accrual(&self, a: AssetId, now: u64) -> Result<Option<Accrual>, LendingError> {
        let r = self.reserve(a)?;
        let s = &r.state;
        if now <= s.last_update {
            return Ok(None);
        }
        let dt = now - s.last_update;
        let (mdt, mlr, mlin, mbr, mcomp) = &s.factor_memo;
        let same = *mdt == dt;
        let linear = if same && *mlr == s.liquidity_rate { *mlin } else { linear_interest(s.liquidity_rate, dt) };
        let compound = if same && *mbr == s.variable_borrow_rate {
            *mcomp
        } else {
            compound_interest(s.variable_borrow_rate, dt)?
        };
        let mut x = Accrual {
            liquidity_index: s.liquidity_index,
            variable_borrow_index: s.variable_borrow_index,
            treasury_add: U256::ZERO,
            linear,
            compound,
            debt_value: None,
            dt,
            now,
        };
        if !s.liquidity_rate.is_zero() {
            x.liquidity_index = ray_mul(linear, s.liquidity_index)?;
        }
        if !s.scaled_debt.is_zero() {
            x.variable_borrow_index = ray_mul(compound, s.variable_borrow_index)?;
            let rf = r.config.reserve_factor_bp;
            if rf != 0 {
                let (md, mi, mv) = &s.debt_memo;
                let prev = if *md == s.scaled_debt && *mi == s.variable_borrow_index {
                    *mv
                } else {
                    ray_mul(s.scaled_debt, s.variable_borrow_index)?
                };
                let cur = ray_mul(s.scaled_debt, x.variable_borrow_index)?;
                x.debt_value = Some(cur);
                let mint = percent_mul(cur.saturating_sub(prev), U256::from(rf))?;
                if !mint.is_zero() {
                    x.treasury_add = ray_div(mint, x.liquidity_index)?;
                }
            }
        }
        Ok(Some(x))
    }

    /// Reserve state brought to `now` (Aave `updateState`), not written.
    fn accrued(&self, a: AssetId, now: u64) -> Result<ReserveState, LendingError> {
        let mut s = self.reserve(a)?.state;
        if let Some(x) = self.accrual(a, now)? {
            x.apply(&mut s);
        }
        Ok(s)
    }

    /// Recompute rates from the state's liquidity and debt (Aave `updateInterestRates`).
    fn with_rates(&self, a: AssetId, mut s: ReserveState) -> Result<ReserveState, LendingError> {
        let c = &self.reserves[a].config;
        let m = c.rate;
        let total_debt = ray_mul(s.scaled_debt, s.variable_borrow_index)?;
        let usage = if total_debt.is_zero() { U256::ZERO } else { ray_div(total_debt, s.available + total_debt)? };
        let borrow_rate = if usage > m.optimal_usage {
            let excess = ray_div(usage - m.optimal_usage, RAY - m.optimal_usage)?;
            m.base + m.slope1 + ray_mul(m.slope2, excess)?
        } else {
            m.base + ray_div(ray_mul(m.slope1, usage)?, m.optimal_usage)?
        };
        s.variable_borrow_rate = borrow_rate;
        // `_getOverallBorrowRate`: the debt-weighted rate, `(debt·1e9 ⊙ rate) ⊘ debt·1e9` in ray
        // arithmetic, which rounds (for variable debt only, it is the rate to within a few wei)
        let overall = if total_debt.is_zero() {
            U256::ZERO
        } else {
            let debt_ray = crate::math::mul(total_debt, U256::from(1_000_000_000u64), "debt in ray")?;
            ray_div(ray_mul(debt_ray, borrow_rate)?, debt_ray)?
        };
        s.liquidity_rate = percent_mul(ray_mul(overall, usage)?, U256::from(10_000 - c.reserve_factor_bp))?;
        Ok(s)
    }

    /// Bring every reserve to `now` (what any touching transaction would do). Operations do it
    /// themselves and balances are read at `now`, so nothing needs to call it every block.
    pub fn accrue_all(&mut self, now: u64) -> Result<(), LendingError> {
        // Compute every reserve's change first so that an error leaves all of them untouched.
        if self.reserves.len() == 2 {
            let (a, b) = (self.accrual(0, now)?, self.accrual(1, now)?);
            if let Some(a) = a {
                a.apply(&mut self.reserves[0].state);
            }
            if let Some(b) = b {
                b.apply(&mut self.reserves[1].state);
            }
            return Ok(());
        }
        let changes = (0..self.reserves.len()).map(|a| self.accrual(a, now)).collect::<Result<Vec<_>, _>>()?;
        for (r, x) in self.reserves.iter_mut().zip(changes) {
            if let Some(x) = x {
                x.apply(&mut r.state);
            }
        }
        Ok(())
    }

    /// What an operation on `account` can change: every reserve's state and that account.
    pub fn checkpoint(&self, account: Address) -> MarketCheckpoint {
        MarketCheckpoint {
            states: self.reserves.iter().map(|r| r.state).collect(),
            account: (account, self.accounts.get(&account).copied()),
        }
    }

    /// Put back what [`LendingMarket::checkpoint`] saved.
    pub fn restore(&mut self, cp: MarketCheckpoint) {
        for (r, s) in self.reserves.iter_mut().zip(cp.states) {
            r.state = s;
        }
        let (a, acc) = cp.account;
        match acc {
            Some(acc) => {
                self.accounts.insert(a, acc);
            }
            None => {
                self.accounts.remove(&a);
            }
        }
    }

    fn account_or_new(&self, user: Address) -> Account {
        self.accounts.get(&user).copied().unwrap_or_default()
    }

    fn check_active(c: &ReserveConfig, need_unfrozen: bool) -> Result<(), LendingError> {
        if !c.active {
            return Err(LendingError::ReserveInactive);
        }
        if c.paused {
            return Err(LendingError::ReservePaused);
        }
        if need_unfrozen && c.frozen {
            return Err(LendingError::ReserveFrozen);
        }
        Ok(())
    }

    /// Supply `amount` of `a` for `user` (who pays it in).
    pub fn supply(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<(), LendingError> {
        let c = &self.reserve(a)?.config;
        if amount.is_zero() {
            return Err(LendingError::InvalidAmount);
        }
        Self::check_active(c, true)?;
        let mut s = self.accrued(a, now)?;
        if c.supply_cap != 0 {
            let total =
                add(ray_mul(s.scaled_supply + s.accrued_to_treasury, s.liquidity_index)?, amount, "supply cap")?;
            if total > U256::from(c.supply_cap) * pow10(c.decimals as u32) {
                return Err(LendingError::SupplyCapExceeded);
            }
        }
        let scaled = ray_div(amount, s.liquidity_index)?;
        if scaled.is_zero() {
            return Err(LendingError::InvalidScaledAmount);
        }
        let ltv_nonzero = c.ltv_bp != 0;
        s.available = add(s.available, amount, "reserve liquidity")?;
        s.scaled_supply = add(s.scaled_supply, scaled, "scaled supply")?;
        let s = self.with_rates(a, s)?;
        let mut acc = self.account_or_new(user);
        let first = acc.scaled_supply[a].is_zero();
        acc.scaled_supply[a] += scaled;
        if first && ltv_nonzero {
            acc.collateral_enabled[a] = true;
        }
        self.reserves[a].state = s;
        self.accounts.insert(user, acc);
        Ok(())
    }

    /// Withdraw `amount` (or everything with `U256::MAX`) of `a`; returns the amount paid out.
    pub fn withdraw(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        let c = self.reserve(a)?.config.clone();
        let mut s = self.accrued(a, now)?;
        let mut acc = self.account_or_new(user);
        let balance = ray_mul(acc.scaled_supply[a], s.liquidity_index)?;
        let amount = if amount == U256::MAX { balance } else { amount };
        if amount.is_zero() {
            return Err(LendingError::InvalidAmount);
        }
        if amount > balance {
            return Err(LendingError::NotEnoughUserBalance);
        }
        Self::check_active(&c, false)?;
        if amount > s.available {
            return Err(LendingError::NotEnoughLiquidity {
                asset: c.symbol.clone(),
                available: s.available.to_string(),
                requested: amount.to_string(),
            });
        }
        let scaled = ray_div(amount, s.liquidity_index)?;
        if scaled.is_zero() {
            return Err(LendingError::InvalidScaledAmount);
        }
        acc.scaled_supply[a] = if amount == balance { U256::ZERO } else { acc.scaled_supply[a].saturating_sub(scaled) };
        s.scaled_supply = s.scaled_supply.saturating_sub(scaled);
        s.available -= amount;
        let s = self.with_rates(a, s)?;
        let was_collateral = acc.collateral_enabled[a];
        if acc.scaled_supply[a].is_zero() {
            acc.collateral_enabled[a] = false;
        }
        if was_collateral && acc.scaled_debt.iter().any(|d| !d.is_zero()) {
            let data = self.account_data_with(&acc, now, Some((a, &s)))?;
            if data.health_factor < HEALTH_FACTOR_ONE {
                return Err(LendingError::HealthFactorTooLow);
            }
        }
        self.reserves[a].state = s;
        self.accounts.insert(user, acc);
        Ok(amount)
    }

    /// Borrow `amount` of `a` at variable rate for `user` (who receives it).
    pub fn borrow(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<(), LendingError> {
        let c = self.reserve(a)?.config.clone();
        if amount.is_zero() {
            return Err(LendingError::InvalidAmount);
        }
        Self::check_active(&c, true)?;
        if !c.borrowing_enabled {
            return Err(LendingError::BorrowingNotEnabled);
        }
        let mut s = self.accrued(a, now)?;
        if c.borrow_cap != 0 {
            let total = add(ray_mul(s.scaled_debt, s.variable_borrow_index)?, amount, "borrow cap")?;
            if total > U256::from(c.borrow_cap) * pow10(c.decimals as u32) {
                return Err(LendingError::BorrowCapExceeded);
            }
        }
        let mut acc = self.account_or_new(user);
        if acc.emode != 0 && c.emode_category != acc.emode {
            return Err(LendingError::InconsistentEmodeCategory);
        }
        let data = self.account_data_of(&acc, now)?;
        if data.collateral_base.is_zero() {
            return Err(LendingError::CollateralBalanceZero);
        }
        if data.avg_ltv_bp.is_zero() {
            return Err(LendingError::LtvValidationFailed);
        }
        if data.health_factor <= HEALTH_FACTOR_ONE {
            return Err(LendingError::HealthFactorTooLow);
        }
        let price = self.price(a, now)?;
        let amount_base = price * amount / pow10(c.decimals as u32);
        let needed = percent_div(add(data.debt_base, amount_base, "borrow")?, data.avg_ltv_bp)?;
        if needed > data.collateral_base {
            return Err(LendingError::CollateralCannotCoverBorrow);
        }
        if amount > s.available {
            return Err(LendingError::NotEnoughLiquidity {
                asset: c.symbol.clone(),
                available: s.available.to_string(),
                requested: amount.to_string(),
            });
        }
        let scaled = ray_div(amount, s.variable_borrow_index)?;
        if scaled.is_zero() {
            return Err(LendingError::InvalidScaledAmount);
        }
        s.scaled_debt = add(s.scaled_debt, scaled, "scaled debt")?;
        s.available -= amount;
        let s = self.with_rates(a, s)?;
        acc.scaled_debt[a] += scaled;
        self.reserves[a].state = s;
        self.accounts.insert(user, acc);
        Ok(())
    }

    /// Repay up to `amount` (`U256::MAX` = all) of `user`'s debt in `a`; returns the amount
    /// actually taken from the payer (`min(amount, debt)`).
    pub fn repay(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        let c = self.reserve(a)?.config.clone();
        let mut s = self.accrued(a, now)?;
        let mut acc = self.account_or_new(user);
        if amount.is_zero() {
            return Err(LendingError::InvalidAmount);
        }
        Self::check_active(&c, false)?;
        let debt = ray_mul(acc.scaled_debt[a], s.variable_borrow_index)?;
        if debt.is_zero() {
            return Err(LendingError::NoDebt);
        }
        let pay = amount.min(debt);
        let scaled = ray_div(pay, s.variable_borrow_index)?;
        if scaled.is_zero() {
            return Err(LendingError::InvalidScaledAmount);
        }
        acc.scaled_debt[a] = if pay == debt { U256::ZERO } else { acc.scaled_debt[a].saturating_sub(scaled) };
        s.scaled_debt = s.scaled_debt.saturating_sub(scaled);
        s.available = add(s.available, pay, "reserve liquidity")?;
        let s = self.with_rates(a, s)?;
        self.reserves[a].state = s;
        self.accounts.insert(user, acc);
        Ok(pay)
    }

    /// Switch `user` to eMode `category` (0 = none); refused if it would leave HF below 1.
    pub fn set_user_emode(&mut self, user: Address, category: u8, now: u64) -> Result<(), LendingError> {
        if category != 0 && !self.emodes.contains_key(&category) {
            return Err(LendingError::Unknown(format!("eMode category {category}")));
        }
        let mut acc = self.account_or_new(user);
        if category != 0 {
            for (a, d) in acc.scaled_debt.iter().enumerate().take(self.reserves.len()) {
                if !d.is_zero() && self.reserves[a].config.emode_category != category {
                    return Err(LendingError::InconsistentEmodeCategory);
                }
            }
        }
        // `EModeLogic.executeSetUserEMode` checks the health factor only when the user leaves a
        // category (entering one can only raise it)
        let previous = acc.emode;
        acc.emode = category;
        if previous != 0 && self.account_data_of(&acc, now)?.health_factor < HEALTH_FACTOR_ONE {
            return Err(LendingError::HealthFactorTooLow);
        }
        self.accounts.insert(user, acc);
        Ok(())
    }

    /// `user`'s eMode category.
    pub fn user_emode(&self, user: Address) -> u8 {
        self.accounts.get(&user).map(|a| a.emode).unwrap_or(0)
    }

    /// Liquidate `user`: the liquidator repays up to `debt_to_cover` of `debt_asset` and receives
    /// the matching `collateral_asset` plus the bonus (`venues.md` §1.10). The liquidator's
    /// payment and receipt are returned; its wallet is not modelled here.
    pub fn liquidation_call(
        &mut self,
        collateral_asset: AssetId,
        debt_asset: AssetId,
        user: Address,
        debt_to_cover: U256,
        now: u64,
    ) -> Result<LiquidationOutcome, LendingError> {
        self.liquidation_call_by(Address::ZERO, collateral_asset, debt_asset, user, debt_to_cover, false, now)
    }

    /// [`LendingMarket::liquidation_call`] by `liquidator`, who receives the collateral as
    /// aTokens when `receive_a_token` (`_liquidateATokens`): the collateral reserve's state and
    /// rates are then left as they were (the aToken moves scaled balances at the normalised
    /// income), no underlying liquidity is needed, and a liquidator with no balance before uses
    /// the aTokens as collateral when the reserve's LTV is not zero.
    #[allow(clippy::too_many_arguments)]
    pub fn liquidation_call_by(
        &mut self,
        liquidator: Address,
        collateral_asset: AssetId,
        debt_asset: AssetId,
        user: Address,
        debt_to_cover: U256,
        receive_a_token: bool,
        now: u64,
    ) -> Result<LiquidationOutcome, LendingError> {
        let cc = self.reserve(collateral_asset)?.config.clone();
        let dc = self.reserve(debt_asset)?.config.clone();
        let mut ds = self.accrued(debt_asset, now)?;
        let mut acc = self.account_or_new(user);
        let data = self.account_data_of(&acc, now)?;
        let user_debt = ray_mul(acc.scaled_debt[debt_asset], ds.variable_borrow_index)?;
        let close_factor = if data.health_factor > CLOSE_FACTOR_HF_THRESHOLD { 5_000u64 } else { 10_000u64 };
        let max_debt = percent_mul(user_debt, U256::from(close_factor))?;
        let actual_debt = debt_to_cover.min(max_debt);
        Self::check_active(&cc, false)?;
        Self::check_active(&dc, false)?;
        if data.health_factor >= HEALTH_FACTOR_ONE {
            return Err(LendingError::HealthFactorNotBelowThreshold);
        }
        let (_, lt, bonus) = self.risk_params(collateral_asset, acc.emode);
        if lt == 0 || !acc.collateral_enabled[collateral_asset] {
            return Err(LendingError::CollateralCannotBeLiquidated);
        }
        if user_debt.is_zero() {
            return Err(LendingError::CurrencyNotBorrowed);
        }
        if actual_debt.is_zero() {
            return Err(LendingError::InvalidAmount);
        }
        let mut cs = if collateral_asset == debt_asset { ds } else { self.accrued(collateral_asset, now)? };
        let user_collateral = ray_mul(acc.scaled_supply[collateral_asset], cs.liquidity_index)?;
        let cp = self.price(collateral_asset, now)?;
        let dp = self.price(debt_asset, now)?;
        let cu = pow10(cc.decimals as u32);
        let du = pow10(dc.decimals as u32);
        let bonus = U256::from(bonus);
        let base_collateral = dp * actual_debt * cu / (cp * du);
        let max_collateral = percent_mul(base_collateral, bonus)?;
        let (collateral_amount, debt_needed) = if max_collateral > user_collateral {
            (user_collateral, percent_div(cp * user_collateral * du / (dp * cu), bonus)?)
        } else {
            (max_collateral, actual_debt)
        };
        let protocol_fee = if cc.liquidation_protocol_fee_bp != 0 {
            let bonus_part = collateral_amount - percent_div(collateral_amount, bonus)?;
            percent_mul(bonus_part, U256::from(cc.liquidation_protocol_fee_bp))?
        } else {
            U256::ZERO
        };
        let to_liquidator = collateral_amount - protocol_fee;
        if !receive_a_token && to_liquidator > cs.available {
            return Err(LendingError::NotEnoughLiquidity {
                asset: cc.symbol.clone(),
                available: cs.available.to_string(),
                requested: to_liquidator.to_string(),
            });
        }
        // Debt side.
        let debt_scaled = ray_div(debt_needed, ds.variable_borrow_index)?;
        acc.scaled_debt[debt_asset] =
            if debt_needed >= user_debt { U256::ZERO } else { acc.scaled_debt[debt_asset].saturating_sub(debt_scaled) };
        ds.scaled_debt = ds.scaled_debt.saturating_sub(debt_scaled);
        ds.available = add(ds.available, debt_needed, "reserve liquidity")?;
        if collateral_asset == debt_asset {
            cs = ds;
        }
        // Collateral side: burn the liquidator's part, move the fee to the treasury.
        // As the aToken does: two rounded scaled amounts leave the user (a wei of scaled balance
        // can remain when all the collateral is taken); the fee is cut to what is left when the
        // rounding would take more (`LiquidationLogic`'s "1 wei imprecision" guard); collateral
        // use ends when the amounts taken equal the balance.
        let burn_scaled = ray_div(to_liquidator, cs.liquidity_index)?;
        let left = sub(acc.scaled_supply[collateral_asset], burn_scaled, "liquidation")?;
        let mut protocol_fee = protocol_fee;
        if ray_div(protocol_fee, cs.liquidity_index)? > left {
            protocol_fee = ray_mul(left, cs.liquidity_index)?;
        }
        let fee_scaled = ray_div(protocol_fee, cs.liquidity_index)?;
        acc.scaled_supply[collateral_asset] = sub(left, fee_scaled, "liquidation fee")?;
        if collateral_amount == user_collateral {
            acc.collateral_enabled[collateral_asset] = false;
        }
        if !receive_a_token {
            cs.scaled_supply = cs.scaled_supply.saturating_sub(burn_scaled);
            cs.available -= to_liquidator;
        }
        let ds = self.with_rates(debt_asset, if collateral_asset == debt_asset { cs } else { ds })?;
        self.reserves[debt_asset].state = ds;
        if collateral_asset == debt_asset {
            // one reserve: the debt side's update is the reserve's
        } else if !receive_a_token {
            let cs = self.with_rates(collateral_asset, cs)?;
            self.reserves[collateral_asset].state = cs;
        }
        self.accounts.insert(user, acc);
        if receive_a_token {
            let mut l = self.account_or_new(liquidator);
            if l.scaled_supply[collateral_asset].is_zero() && cc.ltv_bp != 0 {
                l.collateral_enabled[collateral_asset] = true;
            }
            l.scaled_supply[collateral_asset] += burn_scaled;
            self.accounts.insert(liquidator, l);
        }
        if !fee_scaled.is_zero() {
            let mut t = self.account_or_new(self.treasury);
            t.scaled_supply[collateral_asset] += fee_scaled;
            self.accounts.insert(self.treasury, t);
        }
        Ok(LiquidationOutcome {
            debt_repaid: debt_needed,
            collateral_to_liquidator: to_liquidator,
            protocol_fee,
            health_factor_before: data.health_factor,
        })
    }
}

impl Default for LendingMarket {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole US dollars as an 8-decimal oracle answer.
    fn usd(x: i128) -> i128 {
        x * 100_000_000
    }
    use crate::math::Wad;

    const T0: u64 = 1_700_000_000;

    fn market() -> (LendingMarket, AssetId, AssetId) {
        let mut m = LendingMarket::new();
        let mut eth = PriceFeed::new("ETH / USD", 8, 3600, Wad::parse("0.005").unwrap());
        eth.post(usd(2000), T0);
        let mut stable = PriceFeed::new("USDC / USD", 8, 86_400, Wad::parse("0.0025").unwrap());
        stable.post(usd(1), T0);
        let w = m
            .add_reserve(ReserveConfig::new("WETH", 18, 8_000, 8_250, 10_500, RateModel::volatile_one()), eth, T0)
            .unwrap();
        let u = m
            .add_reserve(ReserveConfig::new("USDC", 6, 8_000, 8_500, 10_500, RateModel::stable_one()), stable, T0)
            .unwrap();
        let lp = Address::with_last_byte(1);
        m.supply(lp, u, U256::from(10_000_000_000_000u64), T0).unwrap(); // 10M USDC
        (m, w, u)
    }

    fn eth(n: u64) -> U256 {
        U256::from(n) * U256::from(10u64).pow(U256::from(18))
    }
    fn usdc(n: u64) -> U256 {
        U256::from(n) * U256::from(1_000_000u64)
    }

    #[test]
    fn borrow_accrues_interest_and_health_factor() {
        let (mut m, w, u) = market();
        let user = Address::with_last_byte(2);
        m.supply(user, w, eth(10), T0).unwrap();
        m.borrow(user, u, usdc(10_000), T0).unwrap();
        let d = m.account_data(user, T0).unwrap();
        // HF = 20000 · 0.825 / 10000 = 1.65
        assert_eq!(d.health_factor, U256::from(1_650_000_000_000_000_000u64));
        let later = m.debt_balance(user, u, T0 + SECONDS_PER_YEAR).unwrap();
        assert!(later > usdc(10_000), "debt grows with time");
        // utilisation 0.1% → rate ≈ 4% · 0.1/90 → tiny but positive
        assert!(later < usdc(10_001));
        let before = m.clone();
        let e = m.borrow(user, u, usdc(7_000), T0).unwrap_err();
        assert_eq!(e, LendingError::CollateralCannotCoverBorrow);
        assert_eq!(m, before, "a refused borrow changes nothing");
    }

    #[test]
    fn withdraw_refused_below_health_factor_one() {
        let (mut m, w, u) = market();
        let user = Address::with_last_byte(2);
        m.supply(user, w, eth(10), T0).unwrap();
        m.borrow(user, u, usdc(15_000), T0).unwrap();
        let before = m.clone();
        assert_eq!(m.withdraw(user, w, eth(2), T0).unwrap_err(), LendingError::HealthFactorTooLow);
        assert_eq!(m, before);
        // HF 1.1 → 1.045 after 0.5 ETH: allowed.
        m.withdraw(user, w, eth(1) / U256::from(2u64), T0).unwrap();
    }

    #[test]
    fn table_operation_errors() {
        let (m0, w, u) = market();
        let user = Address::with_last_byte(3);
        type Op = Box<dyn Fn(&mut LendingMarket) -> Result<(), LendingError>>;
        let cases: Vec<(&str, Op, &str)> = vec![
            ("supply zero", Box::new(move |m| m.supply(user, w, U256::ZERO, T0)), "26: Amount must be greater than 0"),
            (
                "borrow without collateral",
                Box::new(move |m| m.borrow(user, u, usdc(1), T0)),
                "34: The collateral balance is 0",
            ),
            (
                "repay without debt",
                Box::new(move |m| m.repay(user, u, usdc(1), T0).map(|_| ())),
                "39: To repay on behalf of a user an explicit amount to repay is needed (no debt of this type)",
            ),
            (
                "withdraw more than held",
                Box::new(move |m| m.withdraw(user, w, eth(1), T0).map(|_| ())),
                "32: User cannot withdraw more than the available balance",
            ),
            (
                "supply cap",
                Box::new(move |m| {
                    m.reserves[w].config.supply_cap = 5;
                    m.supply(user, w, eth(6), T0)
                }),
                "51: Supply cap is exceeded",
            ),
            (
                "frozen",
                Box::new(move |m| {
                    m.reserves[w].config.frozen = true;
                    m.supply(user, w, eth(1), T0)
                }),
                "28: Action cannot be performed because the reserve is frozen",
            ),
            (
                "stale oracle",
                Box::new(move |m| {
                    m.supply(user, w, eth(1), T0)?;
                    m.borrow(user, u, usdc(1), T0 + 10_000)
                }),
                "Oracle ETH / USD: answer is stale (updated 10000 s ago, limit 3960 s)",
            ),
            (
                "liquidate healthy",
                Box::new(move |m| m.liquidation_call(w, u, user, usdc(1), T0).map(|_| ())),
                "45: Health factor is not below the threshold",
            ),
        ];
        for (case, op, msg) in cases {
            let mut m = m0.clone();
            let e = op(&mut m).unwrap_err();
            assert_eq!(e.to_string(), msg, "case: {case}");
        }
    }

    #[test]
    fn liquidation_pays_bonus_and_close_factor() {
        let (mut m, w, u) = market();
        let user = Address::with_last_byte(2);
        m.supply(user, w, eth(10), T0).unwrap();
        m.borrow(user, u, usdc(15_000), T0).unwrap();
        // ETH 2000 → 1800: HF = 18000·0.825/15000 = 0.99 → close factor 50%
        m.post_price(w, usd(1800), T0 + 1);
        let out = m.liquidation_call(w, u, user, U256::MAX, T0 + 1).unwrap();
        assert_eq!(out.debt_repaid, usdc(7_500));
        // floor(7500 / 1800 ETH) = 4.166…666, then percentMul(·, 10 500) half-up: 4.374…999 ETH,
        // 10% of the bonus part to the treasury.
        let total = out.collateral_to_liquidator + out.protocol_fee;
        assert_eq!(total, U256::from(4_374_999_999_999_999_999u64));
        assert!(out.protocol_fee > U256::ZERO);
        assert!(m.account_data(user, T0 + 1).unwrap().health_factor > HEALTH_FACTOR_ONE);
        // ETH 1800 → 1000: HF below 0.95 → close factor 100%, all collateral taken
        m.post_price(w, usd(1000), T0 + 2);
        let out2 = m.liquidation_call(w, u, user, U256::MAX, T0 + 2).unwrap();
        assert_eq!(m.supply_balance(user, w, T0 + 2).unwrap(), U256::ZERO);
        assert!(out2.debt_repaid < usdc(7_500), "bad debt remains when collateral runs out");
    }

    #[test]
    fn compound_interest_matches_aave_formula() {
        // 5% a year for one year ≈ e^0.05 − the third-order Taylor of the binomial.
        let r = RAY * U256::from(5u64) / U256::from(100u64);
        let c = compound_interest(r, SECONDS_PER_YEAR).unwrap();
        let f = crate::math::to_f64(c, 27);
        assert!((f - 1.05127).abs() < 1e-4, "{f}");
        assert_eq!(compound_interest(r, 0).unwrap(), RAY);
    }
}
