//! The FLI ("flexible leverage index") methodology on a lending market, with Aave v3
//! semantics (`fli.md`). This module holds the strategy's settings and state and its pure
//! calculations and views; [`token::FliToken`] runs the entry points against the venues.
//!
//! Every formula is evaluated in the order `fli.md` writes it, each `pmul`/`pdiv` floored
//! before the next step: one wei decides whether a TWAP ends.

pub mod perp;
pub mod perp_token;
pub mod settings;
pub mod token;

pub use settings::{
    ExchangeSettings, ExecutionSettings, IncentiveSettings, MethodologySettings, validate_exchange,
    validate_non_exchange,
};
pub use token::{FliEvent, FliOutcome, FliToken, IssueReceipt, Nav, Notional, RedeemReceipt, TradeReport};

use crate::error::{FliError, RuleViolation};
use crate::math::{U256, WAD, Wad, pdiv, pmul, pow10, sub};
use crate::venue::money_market::Protocol;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which order computes the total rebalance notional and the minimum repay amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SizingOrder {
    /// Aave v3 extension: multiply first, then divide (the default; Sherlock M-006 fix).
    #[default]
    AaveV3,
    /// Compound / Aave v2 compatibility: divide first.
    DivideFirst,
}

/// The answer of `shouldRebalance` for one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShouldRebalance {
    /// Nothing to do.
    None = 0,
    /// `rebalance` can be called.
    Rebalance = 1,
    /// `iterateRebalance` can be called.
    IterateRebalance = 2,
    /// `ripcord` can be called.
    Ripcord = 3,
}

impl ShouldRebalance {
    /// The reference enum name (`NONE`, `REBALANCE`, `ITERATE_REBALANCE`, `RIPCORD`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShouldRebalance::None => "NONE",
            ShouldRebalance::Rebalance => "REBALANCE",
            ShouldRebalance::IterateRebalance => "ITERATE_REBALANCE",
            ShouldRebalance::Ripcord => "RIPCORD",
        }
    }
}

/// What the strategy reads from the world at one instant (the inputs of `_createActionInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Time of the call.
    pub now: u64,
    /// Token supply `S`.
    pub total_supply: U256,
    /// Collateral balance `C` (aToken, base units).
    pub collateral_balance: U256,
    /// Borrow balance `B` (variable debt, base units).
    pub borrow_balance: U256,
    /// Collateral oracle answer, USD with 8 decimals.
    pub collateral_price_e8: U256,
    /// Borrow-asset oracle answer, USD with 8 decimals.
    pub borrow_price_e8: U256,
}

/// LTV and liquidation threshold (basis points) that apply to the token's collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskParams {
    /// LTV, basis points.
    pub ltv_bp: u32,
    /// Liquidation threshold, basis points.
    pub liquidation_threshold_bp: u32,
}

/// The valuation of one snapshot (`fli.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// `C`.
    pub collateral_balance: U256,
    /// `B`.
    pub borrow_balance: U256,
    /// `cV = pmul(cP, C)`.
    pub collateral_value: U256,
    /// `bV = pmul(bP, B)`.
    pub borrow_value: U256,
    /// `cP = raw_c · 10^(28 − dc)`.
    pub collateral_price: U256,
    /// `bP = raw_b · 10^(28 − db)`.
    pub borrow_price: U256,
    /// `S`.
    pub total_supply: U256,
}

/// A limit from §8 that may have saturated (keel §17.3: never wraps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The limit in collateral base units.
    Units(U256),
    /// The subtraction would underflow: `borrow_value` exceeds `limit_value`.
    Saturated {
        /// `bV`.
        borrow_value: U256,
        /// `netBorrowLimit` or `netRepayLimit`.
        limit_value: U256,
    },
}

impl Limit {
    /// The limit with saturation reported as 0 (views).
    pub fn units_or_zero(self) -> U256 {
        match self {
            Limit::Units(u) => u,
            Limit::Saturated { .. } => U256::ZERO,
        }
    }
}

/// Chunk and total of one sizing (§7), plus the limit that bounded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Size traded in this call (collateral base units).
    pub chunk: U256,
    /// Size needed to reach the call's target.
    pub total: U256,
    /// The venue limit of §8.
    pub limit: Limit,
}

/// What the methodology would do on a snapshot: the `keel strategy eval` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Current leverage ratio (wad).
    pub leverage_ratio: U256,
    /// `shouldRebalance` (or with bounds) per exchange, in list order.
    pub should_rebalance: Vec<(String, ShouldRebalance)>,
    /// Target of the next trade as `getChunkRebalanceNotional` chooses it.
    pub new_leverage_ratio: U256,
    /// `new > current`.
    pub is_lever: bool,
    /// The ripcord branch was taken (`LR ≥ ILR`, keel §17.9).
    pub is_ripcord: bool,
    /// Total notional to reach the target, collateral base units, per exchange.
    pub total_rebalance_notional: Vec<(String, U256)>,
    /// Chunk notional per exchange, collateral base units.
    pub chunk_rebalance_notional: Vec<(String, U256)>,
    /// `getChunkRebalanceNotional` sizes: borrow units when levering, else collateral units.
    pub sizes: Vec<(String, U256)>,
    /// The asset sold by the next trade.
    pub sell_asset: String,
    /// The asset bought.
    pub buy_asset: String,
    /// `getCurrentEtherIncentive`.
    pub ether_incentive: U256,
}

/// The FLI strategy: settings, exchanges, TWAP state, roles and the ripcord reward pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fli {
    /// Methodology settings.
    pub methodology: MethodologySettings,
    /// Execution settings.
    pub execution: ExecutionSettings,
    /// Incentive settings.
    pub incentive: IncentiveSettings,
    /// Enabled exchanges in list order, each with its settings and last-trade timestamp.
    pub exchanges: Vec<(String, ExchangeSettings)>,
    /// TWAP target; 0 when no TWAP is in progress.
    pub twap_leverage_ratio: U256,
    /// Last trade on any exchange.
    pub global_last_trade_timestamp: u64,
    /// Native-asset balance that pays ripcord rewards.
    pub ether_balance: U256,
    /// The operator.
    pub operator: Address,
    /// Addresses allowed to call `rebalance` / `iterateRebalance`.
    pub allowed_callers: BTreeSet<Address>,
    /// Anyone may call `rebalance` / `iterateRebalance`.
    pub anyone_callable: bool,
    /// Lift the "no rebalance in progress" guard on setters (Sherlock M-003).
    pub override_no_rebalance_in_progress: bool,
    /// eMode category selected for the token's account (0 = none).
    pub emode_category: u8,
    /// An unwind is under way (keel §17.2).
    pub disengaging: bool,
    /// `28 − collateral decimals`.
    pub collateral_decimal_adjustment: u32,
    /// `28 − borrow decimals`.
    pub borrow_decimal_adjustment: u32,
    /// Sizing order (Aave v3 by default).
    pub sizing_order: SizingOrder,
    /// The lending protocol, which sets the delever limit's rule (§8).
    #[serde(default)]
    pub protocol: Protocol,
    /// Collateral asset symbol.
    pub collateral_asset: String,
    /// Borrow asset symbol.
    pub borrow_asset: String,
}

/// `28 − decimals`, refusing assets with more than 28 decimals.
pub fn decimal_adjustment(decimals: u8) -> Result<u32, RuleViolation> {
    if decimals > 28 {
        return Err(RuleViolation {
            message: "Asset decimals must be at most 28",
            detail: format!("decimals {decimals}"),
        });
    }
    Ok(28 - decimals as u32)
}

impl Fli {
    /// A strategy with the given settings, validated as the constructor does.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        methodology: MethodologySettings,
        execution: ExecutionSettings,
        incentive: IncentiveSettings,
        exchanges: Vec<(String, ExchangeSettings)>,
        operator: Address,
        collateral: (&str, u8),
        borrow: (&str, u8),
    ) -> Result<Self, FliError> {
        for (name, x) in &exchanges {
            if let Some(v) = validate_exchange(name, x) {
                return Err(v.into());
            }
        }
        if let Some(v) = validate_non_exchange(&methodology, &execution, &incentive).into_iter().next() {
            return Err(v.into());
        }
        Ok(Fli {
            methodology,
            execution,
            incentive,
            exchanges,
            twap_leverage_ratio: U256::ZERO,
            global_last_trade_timestamp: 0,
            ether_balance: U256::ZERO,
            operator,
            allowed_callers: BTreeSet::new(),
            anyone_callable: false,
            override_no_rebalance_in_progress: false,
            emode_category: 0,
            disengaging: false,
            collateral_decimal_adjustment: decimal_adjustment(collateral.1)?,
            borrow_decimal_adjustment: decimal_adjustment(borrow.1)?,
            sizing_order: SizingOrder::AaveV3,
            protocol: Protocol::AaveV3,
            collateral_asset: collateral.0.to_string(),
            borrow_asset: borrow.0.to_string(),
        })
    }

    /// The settings record of `name`, or `Must be valid exchange`.
    pub fn exchange(&self, name: &str) -> Result<&ExchangeSettings, FliError> {
        self.exchanges
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, x)| x)
            .ok_or_else(|| FliError::UnknownExchange(name.to_string()))
    }

    pub(crate) fn exchange_mut(&mut self, name: &str) -> Result<&mut ExchangeSettings, FliError> {
        self.exchanges
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, x)| x)
            .ok_or_else(|| FliError::UnknownExchange(name.to_string()))
    }

    /// Valuation of a snapshot (`_createActionInfo`).
    pub fn action_info(&self, s: &Snapshot) -> Result<ActionInfo, FliError> {
        let cp = s.collateral_price_e8 * pow10(self.collateral_decimal_adjustment);
        let bp = s.borrow_price_e8 * pow10(self.borrow_decimal_adjustment);
        Ok(ActionInfo {
            collateral_balance: s.collateral_balance,
            borrow_balance: s.borrow_balance,
            collateral_value: pmul(cp, s.collateral_balance)?,
            borrow_value: pmul(bp, s.borrow_balance)?,
            collateral_price: cp,
            borrow_price: bp,
            total_supply: s.total_supply,
        })
    }

    /// `LR = pdiv(cV, cV − bV)`; keel refuses `bV ≥ cV` with a clear error.
    pub fn leverage_ratio(info: &ActionInfo) -> Result<U256, FliError> {
        if info.collateral_value.is_zero() && info.borrow_value.is_zero() {
            return Err(FliError::Revert("Collateral balance must be > 0"));
        }
        if info.borrow_value >= info.collateral_value {
            return Err(FliError::Insolvent);
        }
        Ok(pdiv(info.collateral_value, info.collateral_value - info.borrow_value)?)
    }

    /// Recentering (§6): `max(MINLR, min(MAXLR, pmul(TLR, RS) + pmul(1 − RS, LR)))`.
    pub fn recenter(&self, lr: U256) -> Result<U256, FliError> {
        let m = &self.methodology;
        let a = pmul(m.target_leverage_ratio, m.recentering_speed)?;
        let b = pmul(sub(WAD, m.recentering_speed, "recentering")?, lr)?;
        Ok(m.min_leverage_ratio.max(m.max_leverage_ratio.min(a + b)))
    }

    /// Borrow (lever) or repay (delever) limit in collateral units (§8). Aave v3: LTV ×
    /// (1 − unutilized) to lever, the liquidation threshold to delever. Compound v2: the
    /// collateral factor × (1 − unutilized) for both (`_calculateMaxBorrowCollateral` of the
    /// Compound FLI).
    pub fn limit(&self, info: &ActionInfo, is_lever: bool, risk: RiskParams) -> Result<Limit, FliError> {
        let bp14 = U256::from(100_000_000_000_000u64);
        if is_lever || self.protocol == Protocol::CompoundV2 {
            let factor = if is_lever { risk.ltv_bp } else { risk.liquidation_threshold_bp };
            let net = pmul(
                pmul(info.collateral_value, U256::from(factor) * bp14)?,
                sub(WAD, self.execution.unutilized_leverage_percentage, "unutilized")?,
            )?;
            if info.borrow_value > net {
                return Ok(Limit::Saturated { borrow_value: info.borrow_value, limit_value: net });
            }
            if is_lever {
                Ok(Limit::Units(pdiv(net - info.borrow_value, info.collateral_price)?))
            } else {
                Ok(Limit::Units(pdiv(pmul(info.collateral_balance, net - info.borrow_value)?, net)?))
            }
        } else {
            let net = pmul(info.collateral_value, U256::from(risk.liquidation_threshold_bp) * bp14)?;
            if info.borrow_value > net {
                return Ok(Limit::Saturated { borrow_value: info.borrow_value, limit_value: net });
            }
            Ok(Limit::Units(pdiv(pmul(info.collateral_balance, net - info.borrow_value)?, net)?))
        }
    }

    /// Chunk and total (§7) toward `new_lr` from `lr`, capped by `max_trade`.
    pub fn size(
        &self,
        info: &ActionInfo,
        lr: U256,
        new_lr: U256,
        is_lever: bool,
        max_trade: U256,
        risk: RiskParams,
    ) -> Result<Sizing, FliError> {
        let diff = if is_lever {
            sub(new_lr, lr, "leverage ratio difference")?
        } else {
            sub(lr, new_lr, "leverage ratio difference")?
        };
        let total = match self.sizing_order {
            SizingOrder::AaveV3 => pdiv(pmul(diff, info.collateral_balance)?, lr)?,
            SizingOrder::DivideFirst => pmul(pdiv(diff, lr)?, info.collateral_balance)?,
        };
        let limit = self.limit(info, is_lever, risk)?;
        let chunk = limit.units_or_zero().min(total).min(max_trade);
        Ok(Sizing { chunk, total, limit })
    }

    /// `pdiv(pmul(units, cP), bP)`: collateral units to borrow units (`_calculateBorrowUnits`).
    pub fn borrow_units(info: &ActionInfo, collateral_units: U256) -> Result<U256, FliError> {
        Ok(pdiv(pmul(collateral_units, info.collateral_price)?, info.borrow_price)?)
    }

    /// `pmul(units, 1 − slippage)` (`_calculateMinCollateralReceiveUnits`).
    pub fn min_receive_units(collateral_units: U256, slippage: U256) -> Result<U256, FliError> {
        Ok(pmul(collateral_units, sub(WAD, slippage, "slippage")?)?)
    }

    /// Minimum repay units (§9), in the product's sizing order.
    pub fn min_repay_units(&self, info: &ActionInfo, collateral_units: U256, slippage: U256) -> Result<U256, FliError> {
        let keep = sub(WAD, slippage, "slippage")?;
        Ok(match self.sizing_order {
            SizingOrder::AaveV3 => {
                pdiv(pmul(pmul(collateral_units, info.collateral_price)?, keep)?, info.borrow_price)?
            }
            SizingOrder::DivideFirst => {
                pmul(pdiv(pmul(collateral_units, info.collateral_price)?, info.borrow_price)?, keep)?
            }
        })
    }

    /// `shouldRebalance` / `shouldRebalanceWithBounds` (§12) for a measured `lr`.
    pub fn should_rebalance_at(
        &self,
        lr: U256,
        min: U256,
        max: U256,
        now: u64,
    ) -> Result<Vec<(String, ShouldRebalance)>, FliError> {
        let inc = &self.incentive;
        let mut out = Vec::with_capacity(self.exchanges.len());
        for (name, x) in &self.exchanges {
            let v = if lr >= inc.incentivized_leverage_ratio {
                if x.last_trade_timestamp.saturating_add(inc.incentivized_twap_cooldown_period) < now {
                    ShouldRebalance::Ripcord
                } else {
                    ShouldRebalance::None
                }
            } else if !self.twap_leverage_ratio.is_zero() {
                if x.last_trade_timestamp.saturating_add(self.execution.twap_cooldown_period) < now {
                    ShouldRebalance::IterateRebalance
                } else {
                    ShouldRebalance::None
                }
            } else {
                let elapsed = now
                    .checked_sub(self.global_last_trade_timestamp)
                    .ok_or(FliError::Revert("SafeMath: subtraction overflow (now is before the last trade)"))?;
                if elapsed > self.methodology.rebalance_interval || lr > max || lr < min {
                    ShouldRebalance::Rebalance
                } else {
                    ShouldRebalance::None
                }
            };
            out.push((name.clone(), v));
        }
        Ok(out)
    }

    /// Check custom bounds: `custom_min ≤ MINLR` and `custom_max ≥ MAXLR`.
    pub fn check_bounds(&self, min: U256, max: U256) -> Result<(), FliError> {
        if min > self.methodology.min_leverage_ratio || max < self.methodology.max_leverage_ratio {
            return Err(FliError::Invalid(RuleViolation {
                message: "Custom bounds must be valid",
                detail: format!(
                    "custom min {} must be at most min_leverage_ratio {} and custom max {} at least max_leverage_ratio {}",
                    Wad(min),
                    Wad(self.methodology.min_leverage_ratio),
                    Wad(max),
                    Wad(self.methodology.max_leverage_ratio)
                ),
            }));
        }
        Ok(())
    }

    /// `getCurrentEtherIncentive`: `LR ≥ ILR ? min(reward, balance) : 0`.
    pub fn ether_incentive_at(&self, lr: U256) -> U256 {
        if lr >= self.incentive.incentivized_leverage_ratio {
            self.incentive.ether_reward.min(self.ether_balance)
        } else {
            U256::ZERO
        }
    }

    /// Everything the methodology would do on a snapshot (views only, no state change):
    /// leverage ratio, `shouldRebalance` (custom bounds when given), and
    /// `getChunkRebalanceNotional` for every enabled exchange.
    pub fn evaluate(
        &self,
        snap: &Snapshot,
        bounds: Option<(U256, U256)>,
        risk: RiskParams,
    ) -> Result<Evaluation, FliError> {
        let info = self.action_info(snap)?;
        let lr = Self::leverage_ratio(&info)?;
        let (min, max) = match bounds {
            Some((lo, hi)) => {
                self.check_bounds(lo, hi)?;
                (lo, hi)
            }
            None => (self.methodology.min_leverage_ratio, self.methodology.max_leverage_ratio),
        };
        let should = self.should_rebalance_at(lr, min, max, snap.now)?;
        // keel §17.9: the ripcord branch at LR ≥ ILR, as ripcord itself uses.
        let is_ripcord = lr >= self.incentive.incentivized_leverage_ratio;
        let new_lr = if is_ripcord {
            self.methodology.max_leverage_ratio
        } else if !self.twap_leverage_ratio.is_zero() {
            self.twap_leverage_ratio
        } else {
            self.recenter(lr)?
        };
        let is_lever = new_lr > lr;
        let mut totals = Vec::new();
        let mut chunks = Vec::new();
        let mut sizes = Vec::new();
        for (name, x) in &self.exchanges {
            let max_trade = if is_ripcord { x.incentivized_twap_max_trade_size } else { x.twap_max_trade_size };
            let s = self.size(&info, lr, new_lr, is_lever, max_trade, risk)?;
            let size = if is_lever { Self::borrow_units(&info, s.chunk)? } else { s.chunk };
            totals.push((name.clone(), s.total));
            chunks.push((name.clone(), s.chunk));
            sizes.push((name.clone(), size));
        }
        let (sell, buy) = if is_lever {
            (&self.borrow_asset, &self.collateral_asset)
        } else {
            (&self.collateral_asset, &self.borrow_asset)
        };
        Ok(Evaluation {
            leverage_ratio: lr,
            should_rebalance: should,
            new_leverage_ratio: new_lr,
            is_lever,
            is_ripcord,
            total_rebalance_notional: totals,
            chunk_rebalance_notional: chunks,
            sizes,
            sell_asset: sell.clone(),
            buy_asset: buy.clone(),
            ether_incentive: self.ether_incentive_at(lr),
        })
    }
}
