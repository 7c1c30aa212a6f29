//! An FLI token running on its venues: the ledger, the lending market, the pools of its
//! exchanges and the strategy state, with every entry point of `fli.md` §11–§15.
//!
//! Every entry point is all-or-nothing: it runs on the live state and, on any error, the
//! market, pools, strategy and ledger are restored to exactly what they were.

use super::{
    ExchangeSettings, ExecutionSettings, Fli, IncentiveSettings, Limit, MethodologySettings, RiskParams,
    ShouldRebalance, Sizing, Snapshot,
};
use crate::error::{Error, FliError, RuleViolation, TokenError};
use crate::math::{U256, WAD, Wad, mul_div_up, pdiv, pmul};
use crate::token::Ledger;
use crate::venue::amm::Pool;
use crate::venue::issuance::{Cash, Issuance, Issued};
use crate::venue::lending::AssetId;
use crate::venue::leverage::LeverageVenue;
pub use crate::venue::leverage::TradeReport;
use crate::venue::money_market::MoneyMarket;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The four numbers every rebalance-type event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notional {
    /// Leverage ratio measured at the start of the call.
    pub current_leverage_ratio: U256,
    /// The call's target (for `RebalanceIterated`: the TWAP target left after the call).
    pub new_leverage_ratio: U256,
    /// Collateral notional traded by this call.
    pub chunk: U256,
    /// Collateral notional needed to reach the target (for `RipcordCalled`: the reward paid).
    pub total: U256,
}

/// What an entry point can change, saved for rollback.
struct Checkpoint {
    market: crate::venue::money_market::Checkpoint,
    pools: Vec<crate::venue::amm::PoolState>,
    twap: U256,
    global_last: u64,
    exchange_last: Vec<u64>,
    ether_balance: U256,
    disengaging: bool,
    idle: U256,
    idle_unit: Option<U256>,
}

/// Events, named as the reference names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FliEvent {
    /// `Engaged(currentLR, newLR, chunk, total)`.
    Engaged(Notional),
    /// `Rebalanced(currentLR, newLR, chunk, total)`.
    Rebalanced(Notional),
    /// `RebalanceIterated(currentLR, twapLR after the call, chunk, total)`.
    RebalanceIterated(Notional),
    /// `RipcordCalled(currentLR, MAXLR, chunk, reward paid)`.
    RipcordCalled(Notional),
    /// `Disengaged(currentLR, 1e18, chunk, total)`.
    Disengaged(Notional),
    /// `TwapAborted(currentLR, target)` (keel §17.6), as `(current, target)`.
    TwapAborted(U256, U256),
    /// Settings changed.
    MethodologySettingsUpdated(MethodologySettings),
    /// Settings changed.
    ExecutionSettingsUpdated(ExecutionSettings),
    /// Settings changed.
    IncentiveSettingsUpdated(IncentiveSettings),
    /// An exchange was added: name and settings.
    ExchangeAdded(String, ExchangeSettings),
    /// An exchange was updated: name and settings.
    ExchangeUpdated(String, ExchangeSettings),
    /// An exchange was removed.
    ExchangeRemoved(String),
    /// Allow list changed: caller and new status.
    CallerStatusUpdated(Address, bool),
    /// Anyone-callable flag changed.
    AnyoneCallableUpdated(bool),
}

impl FliEvent {
    /// The rebalance numbers, for the events that carry them.
    pub fn notional(&self) -> Option<&Notional> {
        match self {
            FliEvent::Engaged(n)
            | FliEvent::Rebalanced(n)
            | FliEvent::RebalanceIterated(n)
            | FliEvent::RipcordCalled(n)
            | FliEvent::Disengaged(n) => Some(n),
            _ => None,
        }
    }
}

/// The result of a keeper or operator call: its event, the trade it made, the reward paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FliOutcome {
    /// The event emitted.
    pub event: FliEvent,
    /// The venue trade, if one was made.
    pub trade: Option<TradeReport>,
    /// Ripcord reward paid to the caller (wei).
    pub reward_paid: U256,
}

/// Assets moved by an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueReceipt {
    /// Tokens credited to the holder.
    pub quantity: U256,
    /// Tokens minted to the fee recipient.
    pub fee: U256,
    /// Collateral paid in by the holder (base units).
    pub collateral_in: U256,
    /// Borrow asset paid in by the holder from the token's cash (base units).
    pub cash_in: U256,
    /// Borrow asset borrowed and handed to the holder (base units).
    pub borrow_out: U256,
}

/// Assets moved by a redeem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemReceipt {
    /// Tokens burned from the holder.
    pub quantity: U256,
    /// Tokens minted to the fee recipient.
    pub fee: U256,
    /// Collateral returned to the holder.
    pub collateral_out: U256,
    /// Borrow-asset cash returned to the holder.
    pub cash_out: U256,
    /// Borrow asset paid in by the holder to repay debt.
    pub borrow_in: U256,
}

/// Net asset value at oracle prices (wad USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nav {
    /// Collateral value.
    pub collateral_value: U256,
    /// Debt value.
    pub debt_value: U256,
    /// Value of idle borrow-asset cash.
    pub cash_value: U256,
    /// `collateral + cash − debt` (0 when negative).
    pub equity: U256,
    /// Equity per whole token (0 with no supply).
    pub per_token: U256,
}

/// An FLI token and the venues it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FliToken {
    /// Balances and supply.
    pub ledger: Ledger,
    /// The lending market (Aave v3 or Compound v2).
    pub market: MoneyMarket,
    /// Pools by route name.
    pub pools: BTreeMap<String, Pool>,
    /// Strategy settings and state.
    pub fli: Fli,
    /// The token's address (its account on the market).
    pub account: Address,
    /// Collateral reserve id.
    pub collateral: AssetId,
    /// Borrow reserve id.
    pub borrow: AssetId,
    /// Borrow asset held by the token outside the market (surplus of a delever).
    pub idle_borrow: U256,
    /// Borrow asset per whole token that issue and redeem move (Set's default position unit,
    /// edited only by a delever's surplus); `None` in a state written before units were stored,
    /// read then as `idle_borrow / supply`.
    #[serde(default)]
    pub idle_borrow_unit: Option<U256>,
    /// Leverage-module protocol fee on received amounts.
    pub protocol_fee: Wad,
    /// Collateral per whole token for the first issue (base units), used when supply is 0.
    pub initial_collateral_per_token: U256,
    /// Trades fill at oracle prices with no fee or impact (frictionless studies).
    pub oracle_fill: bool,
    /// The underlying is the borrow asset (an inverse token), not the collateral.
    #[serde(default)]
    pub underlying_is_borrow: bool,
}

fn revert(s: &'static str) -> Error {
    FliError::Revert(s).into()
}

impl FliToken {
    // ---------------------------------------------------------------- plumbing

    /// Save what any entry point can change: reserve states, the token's market account,
    /// every pool's price state, the strategy's scalars and the token's cash.
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            market: self.market.checkpoint(self.account),
            pools: self.pools.values().map(|p| p.state()).collect(),
            twap: self.fli.twap_leverage_ratio,
            global_last: self.fli.global_last_trade_timestamp,
            exchange_last: self.fli.exchanges.iter().map(|(_, x)| x.last_trade_timestamp).collect(),
            ether_balance: self.fli.ether_balance,
            disengaging: self.fli.disengaging,
            idle: self.idle_borrow,
            idle_unit: self.idle_borrow_unit,
        }
    }

    fn restore(&mut self, cp: Checkpoint) {
        self.market.restore(cp.market);
        for (p, s) in self.pools.values_mut().zip(cp.pools) {
            p.set_state(s);
        }
        self.fli.twap_leverage_ratio = cp.twap;
        self.fli.global_last_trade_timestamp = cp.global_last;
        for ((_, x), t) in self.fli.exchanges.iter_mut().zip(cp.exchange_last) {
            x.last_trade_timestamp = t;
        }
        self.fli.ether_balance = cp.ether_balance;
        self.fli.disengaging = cp.disengaging;
        self.idle_borrow = cp.idle;
        self.idle_borrow_unit = cp.idle_unit;
    }

    /// Run `f`; on error restore everything it could have changed, exactly.
    fn atomically<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let cp = self.checkpoint();
        f(self).inspect_err(|_| self.restore(cp))
    }

    /// Run `f` and undo it whatever the outcome: a dry run (the `eth_call` a keeper makes
    /// before sending). Returns what the call would return.
    pub fn dry_run<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let cp = self.checkpoint();
        let out = f(self);
        self.restore(cp);
        out
    }

    /// The token's cash and its unit (see [`Cash`]) at the current supply.
    pub fn cash(&self) -> Result<Cash, Error> {
        let supply = self.ledger.total_supply();
        Ok(match self.idle_borrow_unit {
            Some(unit) => Cash::at_supply(self.idle_borrow, unit, supply)?,
            None => Cash::from_balance(self.idle_borrow, supply)?,
        })
    }

    fn set_cash(&mut self, c: Cash) {
        self.idle_borrow = c.balance;
        self.idle_borrow_unit = Some(c.unit);
    }

    /// A delever's surplus joins the cash and its unit (`calculateAndEditDefaultPosition`).
    fn add_cash(&mut self, surplus: U256) -> Result<(), Error> {
        if surplus.is_zero() {
            return Ok(());
        }
        let mut c = self.cash()?;
        c.add_surplus(surplus, self.ledger.total_supply())?;
        self.set_cash(c);
        Ok(())
    }

    fn only_operator(&self, caller: Address) -> Result<(), Error> {
        if caller != self.fli.operator {
            return Err(revert("Must be operator"));
        }
        Ok(())
    }

    fn only_allowed_caller(&self, caller: Address) -> Result<(), Error> {
        if !self.fli.anyone_callable && !self.fli.allowed_callers.contains(&caller) {
            return Err(revert("Address not permitted to call"));
        }
        Ok(())
    }

    fn no_rebalance_in_progress(&self) -> Result<(), Error> {
        if !self.fli.twap_leverage_ratio.is_zero() && !self.fli.override_no_rebalance_in_progress {
            return Err(revert("Rebalance is currently in progress"));
        }
        Ok(())
    }

    /// What the strategy reads at `now`: supply, balances and validated oracle prices.
    pub fn snapshot(&self, now: u64) -> Result<Snapshot, Error> {
        Ok(Snapshot {
            now,
            total_supply: self.ledger.total_supply(),
            collateral_balance: self.market.supply_balance(self.account, self.collateral, now)?,
            borrow_balance: self.market.debt_balance(self.account, self.borrow, now)?,
            collateral_price_e8: self.market.price(self.collateral, now)?,
            borrow_price_e8: self.market.price(self.borrow, now)?,
        })
    }

    /// LTV and threshold in force (eMode category's when one is set).
    pub fn risk(&self) -> RiskParams {
        let (ltv, lt, _) = self.market.risk_params(self.collateral, self.fli.emode_category);
        RiskParams { ltv_bp: ltv, liquidation_threshold_bp: lt }
    }

    /// `getCurrentLeverageRatio()`.
    pub fn current_leverage_ratio(&self, now: u64) -> Result<U256, Error> {
        let info = self.fli.action_info(&self.snapshot(now)?)?;
        Ok(Fli::leverage_ratio(&info)?)
    }

    /// `shouldRebalance()`.
    pub fn should_rebalance(&self, now: u64) -> Result<Vec<(String, ShouldRebalance)>, Error> {
        let lr = self.current_leverage_ratio(now)?;
        let m = &self.fli.methodology;
        Ok(self.fli.should_rebalance_at(lr, m.min_leverage_ratio, m.max_leverage_ratio, now)?)
    }

    /// `shouldRebalanceWithBounds(min, max)`.
    pub fn should_rebalance_with_bounds(
        &self,
        min: U256,
        max: U256,
        now: u64,
    ) -> Result<Vec<(String, ShouldRebalance)>, Error> {
        self.fli.check_bounds(min, max)?;
        let lr = self.current_leverage_ratio(now)?;
        Ok(self.fli.should_rebalance_at(lr, min, max, now)?)
    }

    /// Views of `getChunkRebalanceNotional` and friends for every exchange.
    pub fn evaluate(&self, now: u64) -> Result<super::Evaluation, Error> {
        Ok(self.fli.evaluate(&self.snapshot(now)?, None, self.risk())?)
    }

    /// `getCurrentEtherIncentive()`.
    pub fn current_ether_incentive(&self, now: u64) -> Result<U256, Error> {
        Ok(self.fli.ether_incentive_at(self.current_leverage_ratio(now)?))
    }

    /// NAV at oracle prices.
    pub fn nav(&self, now: u64) -> Result<Nav, Error> {
        self.nav_of(&self.snapshot(now)?)
    }

    /// NAV from a snapshot already read.
    pub fn nav_of(&self, s: &Snapshot) -> Result<Nav, Error> {
        let info = self.fli.action_info(s)?;
        let cash_value = pmul(info.borrow_price, self.idle_borrow)?;
        let gross = info.collateral_value + cash_value;
        let equity = gross.saturating_sub(info.borrow_value);
        let per_token = if s.total_supply.is_zero() { U256::ZERO } else { pdiv(equity, s.total_supply)? };
        Ok(Nav {
            collateral_value: info.collateral_value,
            debt_value: info.borrow_value,
            cash_value,
            equity,
            per_token,
        })
    }

    // ---------------------------------------------------------------- trades

    fn venue<'a>(&'a mut self, route: &str, now: u64) -> Result<LeverageVenue<'a>, Error> {
        let pool =
            self.pools.get_mut(route).ok_or_else(|| Error::Fli(FliError::UnknownExchange(format!("route {route}"))))?;
        Ok(LeverageVenue {
            market: &mut self.market,
            pool,
            account: self.account,
            collateral: self.collateral,
            borrow: self.borrow,
            protocol_fee: self.protocol_fee,
            now,
            oracle_fill: self.oracle_fill,
        })
    }

    fn check_limit(limit: Limit, is_lever: bool) -> Result<(), Error> {
        if let Limit::Saturated { borrow_value, limit_value } = limit {
            let (b, l) = (Wad(borrow_value).to_string(), Wad(limit_value).to_string());
            return Err(if is_lever {
                FliError::NoBorrowCapacity { borrow_value: b, limit: l }
            } else {
                FliError::CannotDelever { borrow_value: b, limit: l }
            }
            .into());
        }
        Ok(())
    }

    /// `_lever` / `_delever` of the reference: turn a chunk into venue amounts and trade.
    fn trade(
        &mut self,
        info: &super::ActionInfo,
        exchange: &str,
        chunk: U256,
        is_lever: bool,
        slippage: U256,
        now: u64,
    ) -> Result<TradeReport, Error> {
        let x = self.fli.exchange(exchange)?.clone();
        let units = pdiv(chunk, info.total_supply)?;
        if is_lever {
            let borrow_units = Fli::borrow_units(info, units)?;
            let min_receive = Fli::min_receive_units(units, slippage)?;
            self.venue(&x.lever_route, now)?.lever(borrow_units, min_receive, info.total_supply)
        } else {
            let min_repay = self.fli.min_repay_units(info, units, slippage)?;
            let r = self.venue(&x.delever_route, now)?.delever(units, min_repay, info.total_supply)?;
            self.add_cash(r.surplus)?;
            Ok(r)
        }
    }

    fn touch(&mut self, exchange: &str, now: u64) -> Result<(), Error> {
        self.fli.global_last_trade_timestamp = now;
        self.fli.exchange_mut(exchange)?.last_trade_timestamp = now;
        Ok(())
    }

    /// `_getAndValidateLeveragedInfo`: exchange enabled, supply, collateral and debt present.
    fn get_and_validate(&self, max_trade: U256, now: u64) -> Result<(super::ActionInfo, U256), Error> {
        if max_trade.is_zero() {
            return Err(revert("Must be valid exchange"));
        }
        let info = self.fli.action_info(&self.snapshot(now)?)?;
        if info.total_supply.is_zero() {
            return Err(revert("SetToken must have > 0 supply"));
        }
        if info.collateral_balance.is_zero() {
            return Err(revert("Collateral balance must be > 0"));
        }
        if info.borrow_balance.is_zero() {
            return Err(revert("Borrow balance must exist"));
        }
        let lr = Fli::leverage_ratio(&info)?;
        Ok((info, lr))
    }

    /// `_validateNormalRebalance`.
    fn validate_normal(&self, lr: U256, cooldown: u64, last: u64, now: u64) -> Result<(), Error> {
        let m = &self.fli.methodology;
        if lr >= self.fli.incentive.incentivized_leverage_ratio {
            return Err(revert("Must be below incentivized leverage ratio"));
        }
        let elapsed = now.checked_sub(last).ok_or(revert("Cooldown not elapsed or not valid leverage ratio"))?;
        if !(elapsed > cooldown || lr > m.max_leverage_ratio || lr < m.min_leverage_ratio) {
            return Err(revert("Cooldown not elapsed or not valid leverage ratio"));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- entry points

    /// `engage(exchange)` — operator: first lever from 1x toward TLR.
    pub fn engage(&mut self, caller: Address, exchange: &str, now: u64) -> Result<FliOutcome, Error> {
        self.only_operator(caller)?;
        self.atomically(|t| {
            let x = t.fli.exchange(exchange)?.clone();
            if x.twap_max_trade_size.is_zero() {
                return Err(revert("Must be valid exchange"));
            }
            let info = t.fli.action_info(&t.snapshot(now)?)?;
            if info.total_supply.is_zero() {
                return Err(revert("SetToken must have > 0 supply"));
            }
            if info.collateral_balance.is_zero() {
                return Err(revert("Collateral balance must be > 0"));
            }
            if !info.borrow_balance.is_zero() {
                return Err(revert("Debt must be 0"));
            }
            t.fli.twap_leverage_ratio = U256::ZERO; // keel §17.8
            let tlr = t.fli.methodology.target_leverage_ratio;
            let s = t.fli.size(&info, WAD, tlr, true, x.twap_max_trade_size, t.risk())?;
            Self::check_limit(s.limit, true)?;
            let slip = t.fli.execution.slippage_tolerance;
            let trade = t.trade(&info, exchange, s.chunk, true, slip, now)?;
            t.touch(exchange, now)?;
            if s.chunk < s.total {
                t.fli.twap_leverage_ratio = tlr;
            }
            t.fli.disengaging = false;
            Ok(FliOutcome {
                event: FliEvent::Engaged(Notional {
                    current_leverage_ratio: WAD,
                    new_leverage_ratio: tlr,
                    chunk: s.chunk,
                    total: s.total,
                }),
                trade: Some(trade),
                reward_paid: U256::ZERO,
            })
        })
    }

    /// `rebalance(exchange)` — allowed caller: one epoch rebalance toward the recentred target.
    pub fn rebalance(&mut self, caller: Address, exchange: &str, now: u64) -> Result<FliOutcome, Error> {
        self.only_allowed_caller(caller)?;
        if self.fli.disengaging {
            return Err(revert("Strategy is disengaging"));
        }
        self.atomically(|t| {
            let x = t.fli.exchange(exchange)?.clone();
            let (info, lr) = t.get_and_validate(x.twap_max_trade_size, now)?;
            t.validate_normal(lr, t.fli.methodology.rebalance_interval, t.fli.global_last_trade_timestamp, now)?;
            if !t.fli.twap_leverage_ratio.is_zero() {
                return Err(revert("Must call iterate"));
            }
            let new_lr = t.fli.recenter(lr)?;
            let is_lever = new_lr >= lr;
            let s = t.fli.size(&info, lr, new_lr, is_lever, x.twap_max_trade_size, t.risk())?;
            Self::check_limit(s.limit, is_lever)?;
            let slip = t.fli.execution.slippage_tolerance;
            let trade = t.trade(&info, exchange, s.chunk, is_lever, slip, now)?;
            t.touch(exchange, now)?;
            if s.chunk < s.total {
                t.fli.twap_leverage_ratio = new_lr;
            }
            Ok(FliOutcome {
                event: FliEvent::Rebalanced(Notional {
                    current_leverage_ratio: lr,
                    new_leverage_ratio: new_lr,
                    chunk: s.chunk,
                    total: s.total,
                }),
                trade: Some(trade),
                reward_paid: U256::ZERO,
            })
        })
    }

    /// `iterateRebalance(exchange)` — allowed caller: the next TWAP chunk.
    pub fn iterate_rebalance(&mut self, caller: Address, exchange: &str, now: u64) -> Result<FliOutcome, Error> {
        self.only_allowed_caller(caller)?;
        if self.fli.disengaging {
            return Err(revert("Strategy is disengaging"));
        }
        self.atomically(|t| {
            let x = t.fli.exchange(exchange)?.clone();
            let (info, lr) = t.get_and_validate(x.twap_max_trade_size, now)?;
            t.validate_normal(lr, t.fli.execution.twap_cooldown_period, x.last_trade_timestamp, now)?;
            let twap = t.fli.twap_leverage_ratio;
            if twap.is_zero() {
                return Err(revert("Not in TWAP state"));
            }
            let tlr = t.fli.methodology.target_leverage_ratio;
            let advantageous = (twap < tlr && lr >= twap) || (twap > tlr && lr <= twap);
            let (mut sizing, mut trade) =
                (Sizing { chunk: U256::ZERO, total: U256::ZERO, limit: Limit::Units(U256::ZERO) }, None);
            if !advantageous {
                let is_lever = twap >= lr;
                sizing = t.fli.size(&info, lr, twap, is_lever, x.twap_max_trade_size, t.risk())?;
                // keel §17.7: total 0 means the target is reached: no trade.
                if !sizing.total.is_zero() {
                    Self::check_limit(sizing.limit, is_lever)?;
                    let slip = t.fli.execution.slippage_tolerance;
                    trade = Some(t.trade(&info, exchange, sizing.chunk, is_lever, slip, now)?);
                }
            }
            t.touch(exchange, now)?;
            if sizing.chunk == sizing.total {
                t.fli.twap_leverage_ratio = U256::ZERO;
            }
            Ok(FliOutcome {
                event: FliEvent::RebalanceIterated(Notional {
                    current_leverage_ratio: lr,
                    new_leverage_ratio: t.fli.twap_leverage_ratio,
                    chunk: sizing.chunk,
                    total: sizing.total,
                }),
                trade,
                reward_paid: U256::ZERO,
            })
        })
    }

    /// `ripcord(exchange)` — anyone: delever toward MAXLR at or above ILR, for the reward.
    pub fn ripcord(&mut self, _caller: Address, exchange: &str, now: u64) -> Result<FliOutcome, Error> {
        self.atomically(|t| {
            let x = t.fli.exchange(exchange)?.clone();
            let (info, lr) = t.get_and_validate(x.incentivized_twap_max_trade_size, now)?;
            if lr < t.fli.incentive.incentivized_leverage_ratio {
                return Err(revert("Must be above incentivized leverage ratio"));
            }
            if x.last_trade_timestamp.saturating_add(t.fli.incentive.incentivized_twap_cooldown_period) >= now {
                return Err(revert("TWAP cooldown must have elapsed"));
            }
            let max = t.fli.methodology.max_leverage_ratio;
            let s = t.fli.size(&info, lr, max, false, x.incentivized_twap_max_trade_size, t.risk())?;
            Self::check_limit(s.limit, false)?;
            let slip = t.fli.incentive.incentivized_slippage_tolerance;
            let trade = t.trade(&info, exchange, s.chunk, false, slip, now)?;
            t.touch(exchange, now)?;
            t.fli.twap_leverage_ratio = U256::ZERO;
            let paid = t.fli.incentive.ether_reward.min(t.fli.ether_balance);
            t.fli.ether_balance -= paid;
            Ok(FliOutcome {
                event: FliEvent::RipcordCalled(Notional {
                    current_leverage_ratio: lr,
                    new_leverage_ratio: max,
                    chunk: s.chunk,
                    total: paid,
                }),
                trade: Some(trade),
                reward_paid: paid,
            })
        })
    }

    /// `disengage(exchange)` — operator: unwind toward 1x in chunks; the last step repays all
    /// debt. keel §17.2: timestamps updated, TWAP cleared, cooldown between steps, and
    /// rebalance/iterate refused until the debt is zero or [`FliToken::resume`].
    pub fn disengage(&mut self, caller: Address, exchange: &str, now: u64) -> Result<FliOutcome, Error> {
        self.only_operator(caller)?;
        self.atomically(|t| {
            let x = t.fli.exchange(exchange)?.clone();
            let (info, lr) = t.get_and_validate(x.twap_max_trade_size, now)?;
            if t.fli.disengaging && x.last_trade_timestamp.saturating_add(t.fli.execution.twap_cooldown_period) >= now {
                return Err(revert("TWAP cooldown must have elapsed"));
            }
            let s = t.fli.size(&info, lr, WAD, false, x.twap_max_trade_size, t.risk())?;
            let slip = t.fli.execution.slippage_tolerance;
            let trade = if s.total > s.chunk {
                Self::check_limit(s.limit, false)?;
                t.trade(&info, exchange, s.chunk, false, slip, now)?
            } else {
                let max_units = pdiv(pmul(s.total, WAD + slip)?, info.total_supply)?;
                let route = x.delever_route.clone();
                let r = t.venue(&route, now)?.delever_to_zero(max_units, info.total_supply)?;
                t.add_cash(r.surplus)?;
                r
            };
            t.touch(exchange, now)?;
            t.fli.twap_leverage_ratio = U256::ZERO;
            t.fli.disengaging = !t.market.debt_balance(t.account, t.borrow, now)?.is_zero();
            Ok(FliOutcome {
                event: FliEvent::Disengaged(Notional {
                    current_leverage_ratio: lr,
                    new_leverage_ratio: WAD,
                    chunk: s.chunk,
                    total: s.total,
                }),
                trade: Some(trade),
                reward_paid: U256::ZERO,
            })
        })
    }

    /// Operator ends an unwind early: rebalance and iterate are allowed again.
    pub fn resume(&mut self, caller: Address) -> Result<(), Error> {
        self.only_operator(caller)?;
        self.fli.disengaging = false;
        Ok(())
    }

    /// Operator clears a stuck TWAP (keel §17.6).
    pub fn abort_twap(&mut self, caller: Address, now: u64) -> Result<FliEvent, Error> {
        self.only_operator(caller)?;
        let lr = self.current_leverage_ratio(now)?;
        let target = self.fli.twap_leverage_ratio;
        self.fli.twap_leverage_ratio = U256::ZERO;
        Ok(FliEvent::TwapAborted(lr, target))
    }

    // ---------------------------------------------------------------- settings

    fn set_group(&mut self, caller: Address, apply: impl FnOnce(&mut Fli)) -> Result<(), Error> {
        self.only_operator(caller)?;
        self.no_rebalance_in_progress()?;
        let mut next = self.fli.clone();
        apply(&mut next);
        if let Some(v) =
            super::validate_non_exchange(&next.methodology, &next.execution, &next.incentive).into_iter().next()
        {
            return Err(FliError::Invalid(v).into());
        }
        self.fli = next;
        Ok(())
    }

    /// `setMethodologySettings` — operator, refused during a TWAP unless overridden.
    pub fn set_methodology_settings(&mut self, caller: Address, m: MethodologySettings) -> Result<FliEvent, Error> {
        self.set_group(caller, |f| f.methodology = m.clone())?;
        Ok(FliEvent::MethodologySettingsUpdated(m))
    }

    /// `setExecutionSettings`.
    pub fn set_execution_settings(&mut self, caller: Address, e: ExecutionSettings) -> Result<FliEvent, Error> {
        self.set_group(caller, |f| f.execution = e.clone())?;
        Ok(FliEvent::ExecutionSettingsUpdated(e))
    }

    /// `setIncentiveSettings`.
    pub fn set_incentive_settings(&mut self, caller: Address, i: IncentiveSettings) -> Result<FliEvent, Error> {
        self.set_group(caller, |f| f.incentive = i.clone())?;
        Ok(FliEvent::IncentiveSettingsUpdated(i))
    }

    fn check_route(&self, x: &ExchangeSettings) -> Result<(), Error> {
        for r in [&x.lever_route, &x.delever_route] {
            if !self.pools.contains_key(r) {
                return Err(FliError::UnknownExchange(format!("route {r} (no such pool)")).into());
            }
        }
        Ok(())
    }

    /// `addEnabledExchange` — appended with its timestamp reset to 0.
    pub fn add_enabled_exchange(
        &mut self,
        caller: Address,
        name: &str,
        mut x: ExchangeSettings,
    ) -> Result<FliEvent, Error> {
        self.only_operator(caller)?;
        if self.fli.exchange(name).map(|e| !e.twap_max_trade_size.is_zero()).unwrap_or(false) {
            return Err(revert("Exchange already enabled"));
        }
        if let Some(v) = super::validate_exchange(name, &x) {
            return Err(FliError::Invalid(v).into());
        }
        self.check_route(&x)?;
        x.last_trade_timestamp = 0;
        self.fli.exchanges.push((name.to_string(), x.clone()));
        Ok(FliEvent::ExchangeAdded(name.to_string(), x))
    }

    /// `updateEnabledExchange` — keeps the timestamp.
    pub fn update_enabled_exchange(
        &mut self,
        caller: Address,
        name: &str,
        mut x: ExchangeSettings,
    ) -> Result<FliEvent, Error> {
        self.only_operator(caller)?;
        let last = match self.fli.exchange(name) {
            Ok(e) if !e.twap_max_trade_size.is_zero() => e.last_trade_timestamp,
            _ => return Err(revert("Exchange not enabled")),
        };
        if let Some(v) = super::validate_exchange(name, &x) {
            return Err(FliError::Invalid(v).into());
        }
        self.check_route(&x)?;
        x.last_trade_timestamp = last;
        *self.fli.exchange_mut(name)? = x.clone();
        Ok(FliEvent::ExchangeUpdated(name.to_string(), x))
    }

    /// `removeEnabledExchange` — the last name moves into the removed slot.
    pub fn remove_enabled_exchange(&mut self, caller: Address, name: &str) -> Result<FliEvent, Error> {
        self.only_operator(caller)?;
        let idx = self
            .fli
            .exchanges
            .iter()
            .position(|(n, x)| n == name && !x.twap_max_trade_size.is_zero())
            .ok_or(revert("Exchange not enabled"))?;
        self.fli.exchanges.swap_remove(idx);
        Ok(FliEvent::ExchangeRemoved(name.to_string()))
    }

    /// `updateCallerStatus(callers, statuses)`.
    pub fn update_caller_status(
        &mut self,
        caller: Address,
        callers: &[Address],
        statuses: &[bool],
    ) -> Result<Vec<FliEvent>, Error> {
        self.only_operator(caller)?;
        if callers.len() != statuses.len() {
            return Err(revert("Array length mismatch"));
        }
        if callers.is_empty() {
            return Err(revert("Array length must be > 0"));
        }
        let uniq: std::collections::BTreeSet<_> = callers.iter().collect();
        if uniq.len() != callers.len() {
            return Err(revert("Cannot duplicate callers"));
        }
        let mut events = Vec::new();
        for (c, s) in callers.iter().zip(statuses) {
            if *s {
                self.fli.allowed_callers.insert(*c);
            } else {
                self.fli.allowed_callers.remove(c);
            }
            events.push(FliEvent::CallerStatusUpdated(*c, *s));
        }
        Ok(events)
    }

    /// `updateAnyoneCallable(status)`.
    pub fn update_anyone_callable(&mut self, caller: Address, status: bool) -> Result<FliEvent, Error> {
        self.only_operator(caller)?;
        self.fli.anyone_callable = status;
        Ok(FliEvent::AnyoneCallableUpdated(status))
    }

    /// `setOverrideNoRebalanceInProgress(flag)`.
    pub fn set_override_no_rebalance_in_progress(&mut self, caller: Address, flag: bool) -> Result<(), Error> {
        self.only_operator(caller)?;
        self.fli.override_no_rebalance_in_progress = flag;
        Ok(())
    }

    /// `setEModeCategory(id)`: record it and switch the token's market account.
    pub fn set_emode_category(&mut self, caller: Address, id: u8, now: u64) -> Result<(), Error> {
        self.only_operator(caller)?;
        self.market.set_user_emode(self.account, id, now)?;
        self.fli.emode_category = id;
        Ok(())
    }

    /// Fund the ripcord reward pool (anyone).
    pub fn fund_ether(&mut self, amount: U256) {
        self.fli.ether_balance += amount;
    }

    /// `withdrawEtherBalance` — operator, guarded like the setters; returns the amount.
    pub fn withdraw_ether_balance(&mut self, caller: Address) -> Result<U256, Error> {
        self.only_operator(caller)?;
        self.no_rebalance_in_progress()?;
        Ok(std::mem::take(&mut self.fli.ether_balance))
    }

    // ---------------------------------------------------------------- issue and redeem

    /// Issue `quantity` tokens to `holder` pro rata, as Set's `DebtIssuanceModule` with the
    /// leverage module's hooks does (`venue::issuance`): the holder brings collateral (and any
    /// cash share) for `quantity + fee` in units rounded up; the token borrows the debt share,
    /// rounded down, and hands it over. Leverage is unchanged. The first issue (no supply) takes
    /// `initial_collateral_per_token`.
    pub fn issue(&mut self, holder: Address, quantity: U256, now: u64) -> Result<IssueReceipt, Error> {
        if quantity.is_zero() {
            return Err(TokenError::ZeroAmount { what: "Issue" }.into());
        }
        let (total_q, fee) = self.ledger.issue_quantities(quantity)?;
        self.ledger.check_cap(total_q)?;
        let s = self.ledger.total_supply();
        let no_collateral = if s.is_zero() {
            self.initial_collateral_per_token.is_zero()
        } else {
            pdiv(self.market.position_balance(self.account, self.collateral, now)?, s)?.is_zero()
        };
        if no_collateral {
            return Err(TokenError::PaymentTooSmall(format!(
                "issuing {} tokens needs no collateral at current units; issue more",
                Wad(quantity)
            ))
            .into());
        }
        let r = if s.is_zero() {
            let collateral_in = mul_div_up(self.initial_collateral_per_token, total_q, WAD, "issue")?;
            self.atomically(|t| Ok(t.market.supply(t.account, t.collateral, collateral_in, now)?))?;
            Issued { position_in: collateral_in, collateral_in, ..Issued::default() }
        } else {
            let mut cash = self.cash()?;
            let r = self.issuance(now).issue(holder, total_q, s, &mut cash)?;
            self.set_cash(cash);
            r
        };
        self.ledger.mint(holder, quantity);
        let recipient = self.ledger.config.fee_recipient;
        self.ledger.mint(recipient, fee);
        Ok(IssueReceipt { quantity, fee, collateral_in: r.collateral_in, cash_in: r.cash_in, borrow_out: r.borrow_out })
    }

    /// Redeem `quantity` of `holder`'s tokens: the holder repays the debt share of
    /// `quantity − fee` (units rounded up, the debt accrued to now) and receives the collateral
    /// and cash shares (rounded down).
    pub fn redeem(&mut self, holder: Address, quantity: U256, now: u64) -> Result<RedeemReceipt, Error> {
        if quantity.is_zero() {
            return Err(TokenError::ZeroAmount { what: "Redeem" }.into());
        }
        self.ledger.check_balance(holder, quantity)?;
        let (net_q, fee) = self.ledger.redeem_quantities(quantity)?;
        let s = self.ledger.total_supply();
        let mut cash = self.cash()?;
        let r = self.issuance(now).redeem(holder, net_q, s, &mut cash)?;
        self.set_cash(cash);
        self.ledger.burn(holder, quantity);
        let recipient = self.ledger.config.fee_recipient;
        self.ledger.mint(recipient, fee);
        Ok(RedeemReceipt {
            quantity,
            fee,
            collateral_out: r.collateral_out,
            cash_out: r.cash_out,
            borrow_in: r.borrow_in,
        })
    }

    fn issuance(&mut self, now: u64) -> Issuance<'_> {
        Issuance {
            market: &mut self.market,
            account: self.account,
            collateral: self.collateral,
            borrow: self.borrow,
            now,
        }
    }

    /// Accrue the streaming fee to `now`.
    pub fn accrue_streaming_fee(&mut self, now: u64) -> Result<U256, Error> {
        Ok(self.ledger.accrue_streaming_fee(now)?)
    }

    /// Invariants a test or an auditor checks after every call.
    pub fn check_invariants(&self, now: u64) -> Result<(), String> {
        if !self.ledger.supply_matches_balances() {
            return Err("supply differs from the sum of balances".into());
        }
        if self.ledger.total_supply() > self.ledger.config.supply_cap {
            return Err("supply above cap".into());
        }
        let _ = self.market.supply_balance(self.account, self.collateral, now).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl From<RuleViolation> for Error {
    fn from(v: RuleViolation) -> Self {
        Error::Fli(FliError::Invalid(v))
    }
}
