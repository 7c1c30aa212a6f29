//! FLI settings groups and their validation rules (`fli.md` §3–§4).

use crate::error::RuleViolation;
use crate::math::{U256, WAD, Wad};
use serde::{Deserialize, Serialize};

/// Methodology settings (`setMethodologySettings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodologySettings {
    /// Long-run target TLR (wad).
    pub target_leverage_ratio: U256,
    /// Floor of every rebalance target (wad).
    pub min_leverage_ratio: U256,
    /// Ceiling of every rebalance target; the ripcord target (wad).
    pub max_leverage_ratio: U256,
    /// Share of the gap to TLR closed per rebalance (wad fraction).
    pub recentering_speed: U256,
    /// Minimum seconds between epoch rebalances.
    pub rebalance_interval: u64,
}

/// Execution settings (`setExecutionSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSettings {
    /// Share of the LTV borrow limit left unused when levering (wad fraction).
    pub unutilized_leverage_percentage: U256,
    /// Slippage allowed on normal trades (wad fraction).
    pub slippage_tolerance: U256,
    /// Minimum seconds between two chunks on the same exchange.
    pub twap_cooldown_period: u64,
}

/// Incentive (ripcord) settings (`setIncentiveSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncentiveSettings {
    /// Reward paid to a ripcord caller (wei of the native asset).
    pub ether_reward: U256,
    /// At or above this LR anyone may ripcord (wad).
    pub incentivized_leverage_ratio: U256,
    /// Slippage allowed on ripcord trades (wad fraction).
    pub incentivized_slippage_tolerance: U256,
    /// Minimum seconds between two ripcords on the same exchange.
    pub incentivized_twap_cooldown_period: u64,
}

/// One exchange's settings (`addEnabledExchange` / `updateEnabledExchange`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeSettings {
    /// Cap on one normal chunk (collateral base units); 0 means "not enabled".
    pub twap_max_trade_size: U256,
    /// Cap on one ripcord chunk (collateral base units); 0 disables ripcord on this exchange.
    pub incentivized_twap_max_trade_size: U256,
    /// Last trade on this exchange (state, not configurable).
    pub last_trade_timestamp: u64,
    /// Route for levering: the name of the pool the trade goes through.
    pub lever_route: String,
    /// Route for delevering.
    pub delever_route: String,
}

fn r(v: U256) -> String {
    Wad(v).to_string()
}

fn push(out: &mut Vec<RuleViolation>, message: &'static str, detail: String) {
    out.push(RuleViolation { message, detail });
}

/// Every violated non-exchange rule, in the reference's order (`fli.md` §4). Setters return
/// the first; `keel product check` prints them all. Each condition is written as the
/// reference's `require(...)` reads, negated.
#[allow(clippy::nonminimal_bool)]
pub fn validate_non_exchange(
    m: &MethodologySettings,
    e: &ExecutionSettings,
    i: &IncentiveSettings,
) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    if !(m.min_leverage_ratio <= m.target_leverage_ratio && !m.min_leverage_ratio.is_zero()) {
        let d = if m.min_leverage_ratio.is_zero() {
            "min_leverage_ratio must be above 0".to_string()
        } else {
            format!(
                "min_leverage_ratio {} is above target_leverage_ratio {}",
                r(m.min_leverage_ratio),
                r(m.target_leverage_ratio)
            )
        };
        push(&mut out, "Must be valid min leverage", d);
    }
    if m.max_leverage_ratio < m.target_leverage_ratio {
        push(
            &mut out,
            "Must be valid max leverage",
            format!(
                "max_leverage_ratio {} is below target_leverage_ratio {}",
                r(m.max_leverage_ratio),
                r(m.target_leverage_ratio)
            ),
        );
    }
    if !(m.recentering_speed <= WAD && !m.recentering_speed.is_zero()) {
        push(
            &mut out,
            "Must be valid recentering speed",
            format!("recentering_speed {} must be above 0 and at most 1 (100%)", r(m.recentering_speed)),
        );
    }
    if e.unutilized_leverage_percentage > WAD {
        push(
            &mut out,
            "Unutilized leverage must be <100%",
            format!("unutilized_leverage_percentage {} is above 1 (100%)", r(e.unutilized_leverage_percentage)),
        );
    }
    if e.slippage_tolerance > WAD {
        push(
            &mut out,
            "Slippage tolerance must be <100%",
            format!("slippage_tolerance {} is above 1 (100%)", r(e.slippage_tolerance)),
        );
    }
    if i.incentivized_slippage_tolerance > WAD {
        push(
            &mut out,
            "Incentivized slippage tolerance must be <100%",
            format!("incentivized_slippage_tolerance {} is above 1 (100%)", r(i.incentivized_slippage_tolerance)),
        );
    }
    if i.incentivized_leverage_ratio < m.max_leverage_ratio {
        push(
            &mut out,
            "Incentivized leverage ratio must be > max leverage ratio",
            format!(
                "incentivized_leverage_ratio {} is below max_leverage_ratio {}",
                r(i.incentivized_leverage_ratio),
                r(m.max_leverage_ratio)
            ),
        );
    }
    if m.rebalance_interval < e.twap_cooldown_period {
        push(
            &mut out,
            "Rebalance interval must be greater than TWAP cooldown period",
            format!(
                "rebalance_interval {} s is below twap_cooldown_period {} s",
                m.rebalance_interval, e.twap_cooldown_period
            ),
        );
    }
    if e.twap_cooldown_period < i.incentivized_twap_cooldown_period {
        push(
            &mut out,
            "TWAP cooldown must be greater than incentivized TWAP cooldown",
            format!(
                "twap_cooldown_period {} s is below incentivized_twap_cooldown_period {} s",
                e.twap_cooldown_period, i.incentivized_twap_cooldown_period
            ),
        );
    }
    if m.target_leverage_ratio < WAD {
        push(
            &mut out,
            "Target leverage ratio must be >= 1e18",
            format!("target_leverage_ratio {} is below 1", r(m.target_leverage_ratio)),
        );
    }
    out
}

/// The exchange rule: `twap_max_trade_size ≠ 0`.
pub fn validate_exchange(name: &str, x: &ExchangeSettings) -> Option<RuleViolation> {
    if x.twap_max_trade_size.is_zero() {
        return Some(RuleViolation {
            message: "Max TWAP trade size must not be 0",
            detail: format!("exchanges.{name}.twap_max_trade_size is 0"),
        });
    }
    None
}
