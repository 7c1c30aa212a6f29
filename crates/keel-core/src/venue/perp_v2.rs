//! A Perpetual-Protocol-v2-style ("Curie") cross-margin account for one market (`perp.md`
//! Part B): account value, free collateral by the conservative rule, margin ratio, the
//! initial- and maintenance-margin checks on trades, premium-based funding with its cap, and
//! liquidation with its partial-liquidation rule and penalty split. Signed wad arithmetic
//! truncating toward zero.
//!
//! Not modelled yet: the virtual AMM (trades here fill at a price the caller gives, e.g. a
//! quote from a Uniswap v3 pool in `venue::amm`), the mark price's median of TWAPs (the caller
//! passes the mark), maker orders, other collateral, and the insurance fund's bad-debt cover.

use crate::math::{I256, MathError, U256, WAD, pdiv_i, pmul_i};
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
    /// A zero trade or a zero price.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
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
        }
    }
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
    /// Global time-weighted premium (quote per base, summed over seconds / 86 400 at use).
    pub tw_premium: I256,
    /// When funding was last accrued.
    pub funding_time: u64,
    /// The account.
    pub account: Account,
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
        Self { params, tw_premium: I256::ZERO, funding_time: now, account: Account::default() }
    }

    /// B6: accrue the premium of `market` over `index` since the last accrual, capped at
    /// ±index·maxFundingRate per day.
    pub fn accrue_funding(&mut self, now: u64, market: U256, index: U256) -> Result<(), PerpV2Error> {
        let dt = now.saturating_sub(self.funding_time);
        let cap = i(crate::math::pmul(index, self.params.max_funding_rate)?)?;
        let premium = (i(market)? - i(index)?).clamp(-cap, cap);
        self.tw_premium += premium * I256::try_from(dt).map_err(|_| MathError::Overflow("time"))?;
        self.funding_time = now.max(self.funding_time);
        Ok(())
    }

    /// B6: funding the account owes (positive) or is owed since its last settlement:
    /// `base · (twPremium − lastSeen) / 86 400`.
    pub fn pending_funding(&self) -> Result<I256, PerpV2Error> {
        let d = self.tw_premium - self.account.last_tw_premium;
        Ok(pmul_i(self.account.base, d)? / I256::try_from(86_400u64).map_err(|_| MathError::Overflow("day"))?)
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

    /// Withdraw at most the free collateral by the initial-margin ratio. Nothing changes on refusal.
    pub fn withdraw(&mut self, amount: U256, mark: U256) -> Result<(), PerpV2Error> {
        let withdrawable = nonneg(self.free_collateral(mark, self.params.im_ratio)?);
        if amount > withdrawable {
            return Err(PerpV2Error::NotEnoughFreeCollateral { amount, withdrawable });
        }
        self.account.collateral -= i(amount)?;
        Ok(())
    }

    fn settle_funding(&mut self) -> Result<(), PerpV2Error> {
        let f = self.pending_funding()?;
        self.account.owed_realized_pnl -= f;
        self.account.last_tw_premium = self.tw_premium;
        Ok(())
    }

    /// Trade `base_delta` (positive buys) at `fill`, valuing the account at `mark` afterwards.
    /// Opens, increases and reversals need free collateral ≥ 0 by the initial ratio
    /// (`CH_NEFCI`); reductions by the maintenance ratio (`CH_NEFCM`). Realised PnL of the
    /// closed part goes to owed realised PnL. Nothing changes on refusal.
    pub fn trade(&mut self, base_delta: I256, fill: U256, mark: U256) -> Result<(), PerpV2Error> {
        if base_delta.is_zero() || fill.is_zero() || mark.is_zero() {
            return Err(PerpV2Error::Invalid("a trade needs a non-zero size, fill and mark"));
        }
        let mut next = self.clone();
        next.settle_funding()?;
        let a = &mut next.account;
        let old = a.base;
        let quote_delta = -pmul_i(base_delta, i(fill)?)?;
        let reducing = !old.is_zero() && old.is_positive() != base_delta.is_positive();
        if reducing {
            // Close min(|Δ|, |old|) at its share of the open notional; any excess opens the other side.
            let closed = if base_delta.unsigned_abs() > old.unsigned_abs() { -old } else { base_delta };
            let share = pdiv_i(
                closed.unsigned_abs().try_into().map_err(|_| MathError::Overflow("int256"))?,
                i(old.unsigned_abs())?,
            )?;
            let released = pmul_i(a.quote, share)?;
            let closed_quote = -pmul_i(closed, i(fill)?)?;
            a.owed_realized_pnl += released + closed_quote;
            a.quote -= released;
            a.base += closed;
            let rest = base_delta - closed;
            if !rest.is_zero() {
                a.base += rest;
                a.quote += -pmul_i(rest, i(fill)?)?;
            }
        } else {
            a.base += base_delta;
            a.quote += quote_delta;
        }
        let increases = next.account.base.unsigned_abs() > old.unsigned_abs()
            || (!old.is_zero() && !next.account.base.is_zero() && old.is_positive() != next.account.base.is_positive());
        let ratio = if increases { next.params.im_ratio } else { next.params.mm_ratio };
        if next.free_collateral(mark, ratio)?.is_negative() {
            return Err(if increases {
                PerpV2Error::NotEnoughFreeCollateralIm
            } else {
                PerpV2Error::NotEnoughFreeCollateralMm
            });
        }
        *self = next;
        Ok(())
    }

    /// B5: liquidatable when account value < |position value| · mm.
    pub fn is_liquidatable(&self, mark: U256) -> Result<bool, PerpV2Error> {
        let pv = self.position_value(mark)?;
        if pv.is_zero() {
            return Ok(false);
        }
        let req = crate::math::pmul(pv.unsigned_abs(), self.params.mm_ratio)?;
        Ok(self.account_value(mark)? < i(req)?)
    }

    /// B5: the share of the position a liquidator may take: all of it at or below $100 of
    /// position value or below half the maintenance requirement, else half (one market).
    pub fn liquidation_share(&self, mark: U256) -> Result<U256, PerpV2Error> {
        let pv = self.position_value(mark)?.unsigned_abs();
        if pv <= self.params.min_partial_liquidate_value {
            return Ok(WAD);
        }
        let req = crate::math::pmul(pv, self.params.mm_ratio)?;
        if self.account_value(mark)? >= i(req / U256::from(2))? { Ok(WAD / U256::from(2)) } else { Ok(WAD) }
    }

    /// B5: liquidate at the mark price: close the allowed share, realise its PnL, charge the
    /// penalty (half to the liquidator and half to the insurance fund, all to the liquidator
    /// when the account value was negative).
    pub fn liquidate(&mut self, mark: U256) -> Result<Liquidation, PerpV2Error> {
        if !self.is_liquidatable(mark)? {
            return Err(PerpV2Error::EnoughAccountValue);
        }
        let bad_debt = self.account_value(mark)?.is_negative();
        let share = self.liquidation_share(mark)?;
        let mut next = self.clone();
        next.settle_funding()?;
        let closed = -pmul_i(next.account.base, i(share)?)?;
        let released = pmul_i(next.account.quote, i(share)?)?;
        let closed_quote = -pmul_i(closed, i(mark)?)?;
        next.account.owed_realized_pnl += released + closed_quote;
        next.account.quote -= released;
        next.account.base += closed;
        let notional = crate::math::pmul(closed.unsigned_abs(), mark)?;
        let penalty = crate::math::pmul(notional, self.params.liquidation_penalty_ratio)?;
        next.account.owed_realized_pnl -= i(penalty)?;
        let (to_liquidator, to_insurance_fund) =
            if bad_debt { (penalty, U256::ZERO) } else { (penalty / U256::from(2), penalty - penalty / U256::from(2)) };
        *self = next;
        Ok(Liquidation { base_closed: closed, penalty, to_liquidator, to_insurance_fund })
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
