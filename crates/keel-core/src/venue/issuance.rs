//! Issue and redeem of a levered lending token as Set's `DebtIssuanceModule` does with a
//! leverage module's hooks (`fli.md` §9, `conformance.md` §2.6): the module first syncs the
//! token's units from its balances — collateral `pdiv(position, S)` rounded down, debt
//! `ceil(debt · 1e18 / S)` rounded up — then moves `units × quantity`: an issuer brings
//! `ceil(collateral unit · q)` of the market's position tokens (cTokens, aTokens) and any cash
//! share, and receives `floor(debt unit · q)` newly borrowed; a redeemer repays
//! `ceil(debt unit · q)` and receives `floor(collateral unit · q)` and the cash share. Every
//! rounding favours the token.
//!
//! Cash (borrow asset the token holds outside the market, left by a delever) keeps a
//! stored unit, as Set's default position does: issue and redeem move `unit × q` and leave the
//! unit; only a delever's surplus edits it (`Position.calculateAndEditDefaultPosition`), so cash
//! that arrived otherwise stays out of the units, and a streaming fee dilutes it
//! ([`Cash::at_supply`]).

use crate::error::Error;
use crate::math::{MathError, U256, add, pdiv, pdiv_up, pmul, pmul_up, sub};
use crate::venue::lending::AssetId;
use crate::venue::money_market::MoneyMarket;
use alloy_primitives::Address;

/// Borrow asset the token holds outside the market and its unit per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cash {
    /// Base units held.
    pub balance: U256,
    /// Base units per whole token that issue and redeem move (Set's default position unit).
    pub unit: U256,
}

impl Cash {
    /// Cash of a token whose unit was never stored (a state written before units existed):
    /// the unit is the balance over the supply, rounded down.
    pub fn from_balance(balance: U256, supply: U256) -> Result<Self, MathError> {
        let unit = if supply.is_zero() { U256::ZERO } else { pdiv(balance, supply)? };
        Ok(Cash { balance, unit })
    }

    /// Cash with a stored `unit` at supply `supply`: the unit, but never more than the balance
    /// over the supply. The supply can grow without the cash — a streaming fee mints tokens —
    /// and Set then scales every unit down by its position multiplier; capping the stored unit
    /// gives the same dilution for cash held in the units, and keeps `unit × supply` within the
    /// balance, so every holder's share can be paid.
    pub fn at_supply(balance: U256, unit: U256, supply: U256) -> Result<Self, MathError> {
        let cap = Cash::from_balance(balance, supply)?.unit;
        Ok(Cash { balance, unit: unit.min(cap) })
    }

    /// `surplus` arrives from a delever at supply `supply`: the unit becomes
    /// `(balance after − airdropped) / supply`, where airdropped is what the old unit did not
    /// account for (`Position.calculateDefaultEditPositionUnit`).
    pub fn add_surplus(&mut self, surplus: U256, supply: U256) -> Result<(), MathError> {
        let before = self.balance;
        self.balance = self.balance.checked_add(surplus).ok_or(MathError::Overflow("cash"))?;
        self.unit = if self.balance.is_zero() || supply.is_zero() {
            U256::ZERO
        } else {
            let airdropped = sub(before, pmul(self.unit, supply)?, "cash below its units")?;
            pdiv(sub(self.balance, airdropped, "cash below its units")?, supply)?
        };
        Ok(())
    }
}

/// What an issue moved (base units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Issued {
    /// Position tokens brought to the token (cTokens on Compound; aToken amount on Aave).
    pub position_in: U256,
    /// Underlying the issuer paid for them (on Compound only what it lacked in cTokens).
    pub collateral_in: U256,
    /// Borrow asset paid in for the cash share.
    pub cash_in: U256,
    /// Borrow asset borrowed and handed to the issuer.
    pub borrow_out: U256,
}

/// What a redeem moved (base units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Redeemed {
    /// Position tokens handed to the redeemer.
    pub position_out: U256,
    /// Underlying the redeemer received for them.
    pub collateral_out: U256,
    /// Borrow asset paid out of the cash share.
    pub cash_out: U256,
    /// Borrow asset the redeemer paid in to repay debt.
    pub borrow_in: U256,
    /// What of `borrow_in` exceeded the debt and stays with the token as cash (outside the
    /// units). On Compound Set's module reverts there (`repayBorrow` refuses more than the
    /// borrow balance); keel repays the debt (`conformance.md` §4).
    pub surplus: U256,
}

/// What an issue or redeem of a quantity moves, from the synced units: Set's
/// `getRequiredComponentIssuanceUnits` / `…RedemptionUnits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    /// Position tokens in (issue, rounded up) or out (redeem, rounded down).
    pub position: U256,
    /// Cash in (issue, rounded up) or out (redeem, rounded down).
    pub cash: U256,
    /// Debt out (issue, rounded down) or in (redeem, rounded up).
    pub debt: U256,
}

/// The accounts and assets an issue or redeem touches.
pub struct Issuance<'a> {
    /// The lending market.
    pub market: &'a mut MoneyMarket,
    /// The token's account on the market.
    pub account: Address,
    /// Collateral reserve.
    pub collateral: AssetId,
    /// Borrow reserve.
    pub borrow: AssetId,
    /// Time of the call.
    pub now: u64,
}

impl Issuance<'_> {
    /// What issuing (`redeem == false`) or redeeming `quantity` at `supply` moves, without
    /// moving it. The debt is the stored balance on issue (`moduleIssueHook` syncs without
    /// accruing) and the balance accrued to now on redeem (`moduleRedeemHook`).
    pub fn amounts(&self, quantity: U256, supply: U256, cash_unit: U256, redeem: bool) -> Result<Amounts, Error> {
        if supply.is_zero() {
            return Err(MathError::DivisionByZero("the units of a token with no supply").into());
        }
        let m = &*self.market;
        let position = m.position_balance(self.account, self.collateral, self.now)?;
        let debt = if redeem {
            m.debt_current(self.account, self.borrow, self.now)?
        } else {
            m.debt_balance(self.account, self.borrow, self.now)?
        };
        let (collateral_unit, debt_unit) = (pdiv(position, supply)?, pdiv_up(debt, supply)?);
        Ok(if redeem {
            Amounts {
                position: pmul(collateral_unit, quantity)?,
                cash: pmul(cash_unit, quantity)?,
                debt: pmul_up(debt_unit, quantity)?,
            }
        } else {
            Amounts {
                position: pmul_up(collateral_unit, quantity)?,
                cash: pmul_up(cash_unit, quantity)?,
                debt: pmul(debt_unit, quantity)?,
            }
        })
    }

    /// Issue `quantity` (fees included) at supply `supply` (> 0) to `holder`: take the
    /// collateral and cash shares of [`Issuance::amounts`], borrow the debt share for the
    /// holder. All or nothing.
    pub fn issue(&mut self, holder: Address, quantity: U256, supply: U256, cash: &mut Cash) -> Result<Issued, Error> {
        let a = self.amounts(quantity, supply, cash.unit, false)?;
        let (c, b, account, now) = (self.collateral, self.borrow, self.account, self.now);
        let collateral_in = self.atomically(holder, |m| {
            let paid =
                if a.position.is_zero() { U256::ZERO } else { m.position_in(holder, account, c, a.position, now)? };
            if !a.debt.is_zero() {
                m.borrow(account, b, a.debt, now)?;
            }
            Ok(paid)
        })?;
        cash.balance = add(cash.balance, a.cash, "cash")?;
        Ok(Issued { position_in: a.position, collateral_in, cash_in: a.cash, borrow_out: a.debt })
    }

    /// Redeem `quantity` (fees deducted) at supply `supply` (> 0, before the burn) for
    /// `holder`: accrue the debt, repay the debt share of [`Issuance::amounts`], hand over the
    /// collateral and cash shares. All or nothing.
    pub fn redeem(
        &mut self,
        holder: Address,
        quantity: U256,
        supply: U256,
        cash: &mut Cash,
    ) -> Result<Redeemed, Error> {
        let a = self.amounts(quantity, supply, cash.unit, true)?;
        let left = sub(cash.balance, a.cash, "the cash share above the cash held")?;
        let (c, b, account, now) = (self.collateral, self.borrow, self.account, self.now);
        let (repaid, collateral_out) = self.atomically(holder, |m| {
            m.accrue_debt(account, b, now)?;
            let repaid = if a.debt.is_zero() { U256::ZERO } else { m.repay(account, b, a.debt, now)? };
            let out =
                if a.position.is_zero() { U256::ZERO } else { m.position_out(account, holder, c, a.position, now)? };
            Ok((repaid, out))
        })?;
        let surplus = a.debt - repaid;
        cash.balance = add(left, surplus, "cash")?;
        Ok(Redeemed { position_out: a.position, collateral_out, cash_out: a.cash, borrow_in: a.debt, surplus })
    }

    /// Run `f` on the market; on error put back the token's and the holder's accounts and
    /// every market total.
    fn atomically<T>(
        &mut self,
        holder: Address,
        f: impl FnOnce(&mut MoneyMarket) -> Result<T, crate::error::LendingError>,
    ) -> Result<T, Error> {
        let (cp, hp) = (self.market.checkpoint(self.account), self.market.checkpoint(holder));
        f(self.market).map_err(|e| {
            self.market.restore(hp);
            self.market.restore(cp);
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::pow10;

    fn e(x: u64, d: u32) -> U256 {
        U256::from(x) * pow10(d)
    }

    /// A Compound WETH/USDC pair, a lender's USDC and a token account with 10 WETH of cTokens
    /// and 8,000 USDC of debt at a supply of 3 tokens.
    fn levered() -> (MoneyMarket, Address, AssetId, AssetId) {
        let (mut m, eth, usdc) = crate::venue::compound::tests::two_markets();
        let (token, lender) = (Address::with_last_byte(0x70), Address::with_last_byte(0x1e));
        m.mint(lender, usdc, e(20_000, 6), 0).unwrap();
        m.mint(token, eth, e(10, 18), 0).unwrap();
        m.enter_markets(token, &[eth, usdc]).unwrap();
        m.borrow(token, usdc, e(8_000, 6), 0).unwrap();
        (MoneyMarket::CompoundV2(m), token, eth, usdc)
    }

    #[test]
    fn table_cash_unit_after_a_surplus() {
        // (case, balance, unit, surplus, supply, balance after, unit after)
        let cases = [
            ("first surplus", 0u64, 0u64, 1_000u64, 3u64, 1_000u64, 333u64),
            // 999 is in the units, 4 were airdropped: (1,503 − 4) / 3
            ("dust outside the units stays outside", 1_003, 333, 500, 3, 1_503, 499),
            ("nothing left", 0, 0, 0, 3, 0, 0),
        ];
        for (case, balance, unit, surplus, supply, balance_after, unit_after) in cases {
            let mut c = Cash { balance: U256::from(balance), unit: U256::from(unit) };
            c.add_surplus(U256::from(surplus), e(supply, 18)).unwrap();
            assert_eq!((c.balance, c.unit), (U256::from(balance_after), U256::from(unit_after)), "{case}");
        }
    }

    #[test]
    fn table_cash_unit_at_a_supply() {
        // (case, balance, stored unit, supply, unit read)
        let cases = [
            ("as stored", 1_000u64, 333u64, 3u64, 333u64),
            ("a streaming fee grew the supply: capped at balance / supply", 1_000, 333, 4, 250),
            ("no supply", 1_000, 333, 0, 0),
        ];
        for (case, balance, unit, supply, read) in cases {
            let c = Cash::at_supply(U256::from(balance), U256::from(unit), e(supply, 18)).unwrap();
            assert_eq!(c.unit, U256::from(read), "{case}");
        }
    }

    #[test]
    fn issue_and_redeem_round_the_units_first_and_for_the_token() {
        let (mut m, token, eth, usdc) = levered();
        let holder = Address::with_last_byte(0x11);
        let supply = e(3, 18);
        let mut cash = Cash::default();
        let mut i = Issuance { market: &mut m, account: token, collateral: eth, borrow: usdc, now: 0 };
        let a = i.amounts(U256::from(1u8), supply, U256::ZERO, false).unwrap();
        // one wei of token: a cToken unit rounded up, no debt (rounded down)
        assert_eq!((a.position, a.debt), (U256::from(1u8), U256::ZERO));
        let r = i.issue(holder, e(1, 18), supply, &mut cash).unwrap();
        // 10 WETH at the initial rate (2e26) is 5e10 cTokens; over 3 tokens the unit rounds
        // down to 16,666,666,666
        assert_eq!(r.position_in, U256::from(16_666_666_666u64));
        // the holder bought them: ceil(16,666,666,666 · 2e26 / 1e18) wei
        assert_eq!(r.collateral_in, U256::from(16_666_666_666u64) * e(2, 8));
        // the debt unit rounds up: ceil(8e9 / 3) = 2,666,666,667 per token
        assert_eq!(r.borrow_out, U256::from(2_666_666_667u64));
        let supply = e(4, 18);
        let out = i.redeem(holder, e(1, 18), supply, &mut cash).unwrap();
        assert!(out.position_out <= r.position_in && out.borrow_in >= r.borrow_out, "{out:?} after {r:?}");
        assert_eq!(out.surplus, U256::ZERO);
    }

    #[test]
    fn a_refused_issue_changes_nothing_for_token_or_holder() {
        let (mut m, token, eth, usdc) = levered();
        let holder = Address::with_last_byte(0x11);
        let before = m.clone();
        let mut cash = Cash::default();
        let mut i = Issuance { market: &mut m, account: token, collateral: eth, borrow: usdc, now: 0 };
        // the debt share of 20 more tokens (53,333 USDC) is more than the market's cash
        let err = i.issue(holder, e(20, 18), e(3, 18), &mut cash).unwrap_err();
        assert!(err.to_string().contains("cash") || err.to_string().contains("borrow"), "{err}");
        assert_eq!(m, before, "the holder's cTokens and the market's totals are put back");
        assert_eq!(cash, Cash::default());
    }

    #[test]
    fn a_redeem_of_everything_repays_the_debt_and_keeps_the_rest() {
        let (mut m, token, eth, usdc) = levered();
        let holder = Address::with_last_byte(0x11);
        let mut cash = Cash::default();
        let mut i = Issuance { market: &mut m, account: token, collateral: eth, borrow: usdc, now: 0 };
        // 8,000 USDC over 3 tokens: unit 2,666,666,667, three of them are 1 over the debt,
        // where Set's Compound module reverts
        let out = i.redeem(holder, e(3, 18), e(3, 18), &mut cash).unwrap();
        assert_eq!((out.borrow_in, out.surplus), (U256::from(8_000_000_001u64), U256::from(1u8)));
        assert_eq!(cash, Cash { balance: U256::from(1u8), unit: U256::ZERO });
        assert_eq!(m.debt_balance(token, usdc, 0).unwrap(), U256::ZERO);
        // 3 × 16,666,666,666 cTokens go out; the 2 the unit rounded off stay
        assert_eq!(m.position_balance(token, eth, 0).unwrap(), U256::from(2u8));
    }
}
