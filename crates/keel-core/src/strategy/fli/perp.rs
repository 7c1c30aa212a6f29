//! The FLI methodology on a perp venue: Set's PerpV2 leverage strategy extension
//! (`perp.md` Part A). Leverage is signed (negative for a short token), every ratio comparison
//! is on magnitudes, arithmetic truncates toward zero, and there is one exchange with one clock.
//! This module holds the settings, their validation and the pure sizing and views that
//! `keel strategy eval` and the entry points share.

use super::ShouldRebalance;
use crate::error::{FliError, RuleViolation};
use crate::math::{I256, SignedWad, U256, WAD, Wad, pdiv_i, pmul_i};
use serde::{Deserialize, Serialize};

fn abs(x: I256) -> U256 {
    x.unsigned_abs()
}

fn i(x: U256) -> Result<I256, FliError> {
    I256::try_from(x).map_err(|_| FliError::Math(crate::math::MathError::Overflow("int256")))
}

/// PerpV2 methodology settings (signed ratios; negative for a short token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpMethodology {
    /// Target leverage ratio (signed wad).
    pub target_leverage_ratio: I256,
    /// Floor, compared by magnitude (signed wad).
    pub min_leverage_ratio: I256,
    /// Ceiling and ripcord target, compared by magnitude (signed wad).
    pub max_leverage_ratio: I256,
    /// Share of the gap closed per rebalance (wad fraction).
    pub recentering_speed: U256,
    /// Minimum seconds between epoch rebalances.
    pub rebalance_interval: u64,
}

/// PerpV2 execution settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpExecution {
    /// Slippage on normal trades (wad fraction).
    pub slippage_tolerance: U256,
    /// Minimum seconds between chunks.
    pub twap_cooldown_period: u64,
}

/// PerpV2 incentive settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpIncentive {
    /// Ripcord reward (wei).
    pub ether_reward: U256,
    /// Ripcord level, compared by magnitude (signed wad).
    pub incentivized_leverage_ratio: I256,
    /// Slippage on ripcord trades.
    pub incentivized_slippage_tolerance: U256,
    /// Minimum seconds between ripcords.
    pub incentivized_twap_cooldown_period: u64,
}

/// PerpV2 exchange settings (base-asset wad).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpExchange {
    /// Cap on one normal chunk.
    pub twap_max_trade_size: U256,
    /// Cap on one ripcord chunk.
    pub incentivized_twap_max_trade_size: U256,
}

fn r(v: I256) -> String {
    SignedWad(v).to_string()
}

/// Every violated rule of `perp.md` §A4 in the reference's order, then keel's sign rule.
pub fn validate_perp(
    m: &PerpMethodology,
    e: &PerpExecution,
    inc: &PerpIncentive,
    x: &PerpExchange,
) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let mut push = |message: &'static str, detail: String| out.push(RuleViolation { message, detail });
    let (min, tlr, max, ilr) = (
        abs(m.min_leverage_ratio),
        abs(m.target_leverage_ratio),
        abs(m.max_leverage_ratio),
        abs(inc.incentivized_leverage_ratio),
    );
    if min > tlr || min.is_zero() {
        push(
            "Must be valid min leverage",
            format!(
                "|min_leverage_ratio| {} must be above 0 and at most |target_leverage_ratio| {}",
                r(m.min_leverage_ratio),
                r(m.target_leverage_ratio)
            ),
        );
    }
    if max < tlr {
        push(
            "Must be valid max leverage",
            format!(
                "|max_leverage_ratio| {} is below |target_leverage_ratio| {}",
                r(m.max_leverage_ratio),
                r(m.target_leverage_ratio)
            ),
        );
    }
    if m.recentering_speed > WAD || m.recentering_speed.is_zero() {
        push(
            "Must be valid recentering speed",
            format!("recentering_speed {} must be above 0 and at most 1 (100%)", Wad(m.recentering_speed)),
        );
    }
    if e.slippage_tolerance > WAD {
        push(
            "Slippage tolerance must be <100%",
            format!("slippage_tolerance {} is above 1 (100%)", Wad(e.slippage_tolerance)),
        );
    }
    if inc.incentivized_slippage_tolerance > WAD {
        push(
            "Incentivized slippage tolerance must be <100%",
            format!("incentivized_slippage_tolerance {} is above 1 (100%)", Wad(inc.incentivized_slippage_tolerance)),
        );
    }
    if ilr < max {
        push(
            "Incentivized leverage ratio must be > max leverage ratio",
            format!(
                "|incentivized_leverage_ratio| {} is below |max_leverage_ratio| {}",
                r(inc.incentivized_leverage_ratio),
                r(m.max_leverage_ratio)
            ),
        );
    }
    if m.rebalance_interval < e.twap_cooldown_period {
        push(
            "Rebalance interval must be greater than TWAP cooldown period",
            format!(
                "rebalance_interval {} s is below twap_cooldown_period {} s",
                m.rebalance_interval, e.twap_cooldown_period
            ),
        );
    }
    if e.twap_cooldown_period < inc.incentivized_twap_cooldown_period {
        push(
            "TWAP cooldown must be greater than incentivized TWAP cooldown",
            format!(
                "twap_cooldown_period {} s is below incentivized_twap_cooldown_period {} s",
                e.twap_cooldown_period, inc.incentivized_twap_cooldown_period
            ),
        );
    }
    let signs = [m.target_leverage_ratio, m.min_leverage_ratio, m.max_leverage_ratio];
    if signs.iter().any(|v| v.is_zero())
        || !(signs.iter().all(|v| v.is_positive()) || signs.iter().all(|v| v.is_negative()))
    {
        push(
            "Leverage ratios must share one sign: target, min and max are all long (positive) or all short (negative)",
            format!(
                "target {}, min {}, max {}",
                r(m.target_leverage_ratio),
                r(m.min_leverage_ratio),
                r(m.max_leverage_ratio)
            ),
        );
    }
    if x.twap_max_trade_size.is_zero() {
        push("Max TWAP trade size must not be 0", "twap_max_trade_size is 0".into());
    }
    if x.twap_max_trade_size > x.incentivized_twap_max_trade_size {
        push(
            "Max TWAP trade size must not be greater than incentivized max TWAP trade size",
            format!(
                "twap_max_trade_size {} is above incentivized_twap_max_trade_size {}",
                Wad(x.twap_max_trade_size),
                Wad(x.incentivized_twap_max_trade_size)
            ),
        );
    }
    out
}

/// What the strategy reads from the venue at one instant (`_createActionInfo`), all wad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpSnapshot {
    /// Time of the call.
    pub now: u64,
    /// Token supply.
    pub total_supply: U256,
    /// Collateral in the venue vault (scaled to 18 decimals).
    pub collateral: I256,
    /// Taker position size in base (signed).
    pub base_balance: I256,
    /// Taker open notional in quote (signed).
    pub quote_balance: I256,
    /// Realized PnL not yet settled.
    pub owed_realized_pnl: I256,
    /// Funding not yet settled, signed as value to add.
    pub pending_funding: I256,
    /// Base price from the feed (the TWAP), wad.
    pub base_price: I256,
}

/// The answer of the views on a snapshot (`keel strategy eval` for a perp product).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpEvaluation {
    /// Current leverage ratio (signed).
    pub leverage_ratio: I256,
    /// `shouldRebalance` (or with bounds).
    pub should_rebalance: ShouldRebalance,
    /// Target of the next trade.
    pub new_leverage_ratio: I256,
    /// `|new| > |current|`.
    pub is_lever: bool,
    /// The ripcord branch was taken (`|LR| ≥ |ILR|`).
    pub is_ripcord: bool,
    /// Total base to trade to reach the target (signed: positive buys base).
    pub total: I256,
    /// This call's chunk (signed).
    pub chunk: I256,
    /// The asset sold (`base` or `quote`).
    pub sell_asset: &'static str,
    /// The asset bought.
    pub buy_asset: &'static str,
    /// `getCurrentEtherIncentive`.
    pub ether_incentive: U256,
}

/// The PerpV2 strategy: settings and state (one exchange, one timestamp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpFli {
    /// Methodology settings.
    pub methodology: PerpMethodology,
    /// Execution settings.
    pub execution: PerpExecution,
    /// Incentive settings.
    pub incentive: PerpIncentive,
    /// The exchange's trade caps.
    pub exchange: PerpExchange,
    /// TWAP target (signed; 0 = none).
    pub twap_leverage_ratio: I256,
    /// Last trade of any kind.
    pub last_trade_timestamp: u64,
    /// Native balance paying ripcord rewards.
    pub ether_balance: U256,
}

impl PerpFli {
    /// A strategy with validated settings.
    pub fn new(
        methodology: PerpMethodology,
        execution: PerpExecution,
        incentive: PerpIncentive,
        exchange: PerpExchange,
    ) -> Result<Self, FliError> {
        if let Some(v) = validate_perp(&methodology, &execution, &incentive, &exchange).into_iter().next() {
            return Err(v.into());
        }
        Ok(PerpFli {
            methodology,
            execution,
            incentive,
            exchange,
            twap_leverage_ratio: I256::ZERO,
            last_trade_timestamp: 0,
            ether_balance: U256::ZERO,
        })
    }

    /// `(basePositionValue, LR)` per §A5; LR is 0 when the account value is 0 or less.
    pub fn leverage(s: &PerpSnapshot) -> Result<(I256, I256), FliError> {
        // The venue reads a taker position under 10 wei as none.
        let base = if s.base_balance.unsigned_abs() < U256::from(10u64) { I256::ZERO } else { s.base_balance };
        let bpv = pmul_i(s.base_price, base)?;
        let ov = |v: Option<I256>| v.ok_or(FliError::Math(crate::math::MathError::Overflow("account value")));
        let total_collateral =
            ov(s.collateral.checked_add(s.owed_realized_pnl).and_then(|x| x.checked_add(s.pending_funding)))?;
        let account_value = ov(total_collateral.checked_add(ov(bpv.checked_add(s.quote_balance))?))?;
        if account_value <= I256::ZERO {
            return Ok((bpv, I256::ZERO));
        }
        Ok((bpv, pdiv_i(bpv, account_value)?))
    }

    /// Recentering on magnitudes, sign restored from `lr` (`lr ≤ 0` gives a negative target).
    pub fn recenter(&self, lr: I256) -> Result<I256, FliError> {
        let m = &self.methodology;
        let a = crate::math::pmul(abs(m.target_leverage_ratio), m.recentering_speed)?;
        let b = crate::math::pmul(WAD - m.recentering_speed, abs(lr))?;
        let n = abs(m.min_leverage_ratio).max(abs(m.max_leverage_ratio).min(a + b));
        let n = i(n)?;
        Ok(if lr > I256::ZERO { n } else { -n })
    }

    /// `(chunk, total)` toward `new_lr`: `total = pmul_i(pdiv_i(newLR − LR, LR), base)`,
    /// `chunk = sign(total) · min(|total|, max_trade)` with sign(0) positive.
    pub fn size(lr: I256, new_lr: I256, base_balance: I256, max_trade: U256) -> Result<(I256, I256), FliError> {
        if lr.is_zero() {
            return Err(FliError::Revert("Current leverage ratio must NOT be 0"));
        }
        let diff =
            new_lr.checked_sub(lr).ok_or(FliError::Math(crate::math::MathError::Overflow("leverage difference")))?;
        let total = pmul_i(pdiv_i(diff, lr)?, base_balance)?;
        Ok((Self::cap(total, max_trade)?, total))
    }

    /// Engage sizing: `total = pdiv_i(pmul_i(collateral, TLR), basePrice)`.
    pub fn engage_size(&self, s: &PerpSnapshot) -> Result<(I256, I256), FliError> {
        let total = pdiv_i(pmul_i(s.collateral, self.methodology.target_leverage_ratio)?, s.base_price)?;
        Ok((Self::cap(total, self.exchange.twap_max_trade_size)?, total))
    }

    fn cap(total: I256, max_trade: U256) -> Result<I256, FliError> {
        let c = i(total.unsigned_abs().min(max_trade))?;
        Ok(if total >= I256::ZERO { c } else { -c })
    }

    /// `shouldRebalance` per §A10 (custom bounds used only in the out-of-band test).
    pub fn should_rebalance_at(&self, lr: I256, min: I256, max: I256, now: u64) -> Result<ShouldRebalance, FliError> {
        let lr_abs = abs(lr);
        let last = self.last_trade_timestamp;
        Ok(if lr_abs >= abs(self.incentive.incentivized_leverage_ratio) {
            if last.saturating_add(self.incentive.incentivized_twap_cooldown_period) < now {
                ShouldRebalance::Ripcord
            } else {
                ShouldRebalance::None
            }
        } else if !self.twap_leverage_ratio.is_zero() {
            if last.saturating_add(self.execution.twap_cooldown_period) < now {
                ShouldRebalance::IterateRebalance
            } else {
                ShouldRebalance::None
            }
        } else {
            let elapsed = now
                .checked_sub(last)
                .ok_or(FliError::Revert("SafeMath: subtraction overflow (now is before the last trade)"))?;
            if elapsed > self.methodology.rebalance_interval || lr_abs > abs(max) || lr_abs < abs(min) {
                ShouldRebalance::Rebalance
            } else {
                ShouldRebalance::None
            }
        })
    }

    /// Custom bounds must widen the band: `|min| ≤ |MINLR|`, `|max| ≥ |MAXLR|`.
    pub fn check_bounds(&self, min: I256, max: I256) -> Result<(), FliError> {
        let m = &self.methodology;
        if abs(min) > abs(m.min_leverage_ratio) || abs(max) < abs(m.max_leverage_ratio) {
            return Err(FliError::Invalid(RuleViolation {
                message: "Custom bounds must be valid",
                detail: format!(
                    "|custom min| {} must be at most |min_leverage_ratio| {} and |custom max| {} at least |max_leverage_ratio| {}",
                    r(min),
                    r(m.min_leverage_ratio),
                    r(max),
                    r(m.max_leverage_ratio)
                ),
            }));
        }
        Ok(())
    }

    /// Everything the views say on a snapshot: LR, `shouldRebalance`, and
    /// `getChunkRebalanceNotional` (keel: ripcord branch at `|LR| ≥ |ILR|`, fli.md §17.9).
    pub fn evaluate(&self, s: &PerpSnapshot, bounds: Option<(I256, I256)>) -> Result<PerpEvaluation, FliError> {
        let (_, lr) = Self::leverage(s)?;
        let (min, max) = match bounds {
            Some((lo, hi)) => {
                self.check_bounds(lo, hi)?;
                (lo, hi)
            }
            None => (self.methodology.min_leverage_ratio, self.methodology.max_leverage_ratio),
        };
        let should = self.should_rebalance_at(lr, min, max, s.now)?;
        let is_ripcord = abs(lr) >= abs(self.incentive.incentivized_leverage_ratio);
        let new_lr = if is_ripcord {
            self.methodology.max_leverage_ratio
        } else if !self.twap_leverage_ratio.is_zero() {
            self.twap_leverage_ratio
        } else {
            self.recenter(lr)?
        };
        let base = if s.base_balance.unsigned_abs() < U256::from(10u64) { I256::ZERO } else { s.base_balance };
        let max_trade =
            if is_ripcord { self.exchange.incentivized_twap_max_trade_size } else { self.exchange.twap_max_trade_size };
        let (chunk, total) = Self::size(lr, new_lr, base, max_trade)?;
        let increase = abs(new_lr) > abs(lr);
        let (sell, buy) = match (new_lr > I256::ZERO, increase) {
            (true, true) | (false, false) => ("quote", "base"),
            (true, false) | (false, true) => ("base", "quote"),
        };
        let ether_incentive = if is_ripcord { self.incentive.ether_reward.min(self.ether_balance) } else { U256::ZERO };
        Ok(PerpEvaluation {
            leverage_ratio: lr,
            should_rebalance: should,
            new_leverage_ratio: new_lr,
            is_lever: increase,
            is_ripcord,
            total,
            chunk,
            sell_asset: sell,
            buy_asset: buy,
            ether_incentive,
        })
    }

    /// The venue trade for a chunk (§A7): per-token base units and the opposite bound.
    pub fn trade_units(chunk: I256, supply: U256, base_price: I256, slippage: U256) -> Result<(I256, U256), FliError> {
        let units = pdiv_i(chunk, i(supply)?)?;
        let q = pdiv_i(pmul_i(units.abs(), base_price)?, i(WAD)?)?;
        let factor = if units > I256::ZERO { i(WAD + slippage)? } else { i(WAD.saturating_sub(slippage))? };
        Ok((units, pmul_i(q, factor)?.unsigned_abs()))
    }
}
