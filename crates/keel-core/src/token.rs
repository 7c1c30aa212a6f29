//! The leveraged token's ledger: balances, supply, supply cap, transfers, issue/redeem fee
//! arithmetic and the streaming fee (Set's `StreamingFeeModule` inflation).

use crate::error::TokenError;
use crate::math::{U256, WAD, Wad, mul_div_down, pmul, sub};
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds in a year for the streaming fee (Set uses 365.25 days).
pub const STREAMING_FEE_YEAR: u64 = 31_557_600;

/// Token-level settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenConfig {
    /// Display name.
    pub name: String,
    /// Ticker.
    pub symbol: String,
    /// Maximum total supply (18-decimal base units).
    pub supply_cap: U256,
    /// Fee on issue, as a fraction of the quantity (paid in tokens to the fee recipient).
    pub mint_fee: Wad,
    /// Fee on redeem, as a fraction of the quantity.
    pub redeem_fee: Wad,
    /// Yearly streaming fee, accrued by inflating supply to the fee recipient.
    pub streaming_fee: Wad,
    /// Receives mint, redeem and streaming fees.
    pub fee_recipient: Address,
}

/// Balances and supply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Settings.
    pub config: TokenConfig,
    balances: BTreeMap<Address, U256>,
    total_supply: U256,
    /// Last time the streaming fee was accrued.
    pub last_fee_accrual: u64,
}

impl Ledger {
    /// An empty ledger; the streaming fee starts accruing at `now`.
    pub fn new(config: TokenConfig, now: u64) -> Result<Self, TokenError> {
        for (name, fee) in
            [("mint_fee", config.mint_fee), ("redeem_fee", config.redeem_fee), ("streaming_fee", config.streaming_fee)]
        {
            if fee.0 >= WAD {
                return Err(TokenError::InvalidFee(format!("{name} {fee} must be below 100%")));
            }
        }
        Ok(Ledger { config, balances: BTreeMap::new(), total_supply: U256::ZERO, last_fee_accrual: now })
    }

    /// Total supply.
    pub fn total_supply(&self) -> U256 {
        self.total_supply
    }

    /// Balance of `holder`.
    pub fn balance_of(&self, holder: Address) -> U256 {
        self.balances.get(&holder).copied().unwrap_or_default()
    }

    /// All non-zero balances, by holder.
    pub fn balances(&self) -> impl Iterator<Item = (&Address, &U256)> {
        self.balances.iter()
    }

    /// Move `amount` from `from` to `to`.
    pub fn transfer(&mut self, from: Address, to: Address, amount: U256) -> Result<(), TokenError> {
        if amount.is_zero() {
            return Err(TokenError::ZeroAmount { what: "Transfer" });
        }
        self.check_balance(from, amount)?;
        self.debit(from, amount);
        self.credit(to, amount);
        Ok(())
    }

    /// Refuse if `holder` holds less than `amount`.
    pub fn check_balance(&self, holder: Address, amount: U256) -> Result<(), TokenError> {
        let bal = self.balance_of(holder);
        if bal < amount {
            return Err(TokenError::InsufficientBalance {
                holder: holder.to_string(),
                balance: bal.to_string(),
                requested: amount.to_string(),
            });
        }
        Ok(())
    }

    /// Refuse if supply would exceed the cap after minting `amount`.
    pub fn check_cap(&self, amount: U256) -> Result<(), TokenError> {
        let would_be = self
            .total_supply
            .checked_add(amount)
            .ok_or(TokenError::Math(crate::math::MathError::Overflow("supply")))?;
        if would_be > self.config.supply_cap {
            return Err(TokenError::SupplyCapExceeded {
                would_be: Wad(would_be).to_string(),
                cap: Wad(self.config.supply_cap).to_string(),
            });
        }
        Ok(())
    }

    /// Issue fee for `quantity`: `(quantity + fee, fee)` (Set `calculateTotalFees` on issue).
    pub fn issue_quantities(&self, quantity: U256) -> Result<(U256, U256), TokenError> {
        let fee = pmul(quantity, self.config.mint_fee.0)?;
        Ok((quantity + fee, fee))
    }

    /// Redeem fee for `quantity`: `(quantity − fee, fee)`.
    pub fn redeem_quantities(&self, quantity: U256) -> Result<(U256, U256), TokenError> {
        let fee = pmul(quantity, self.config.redeem_fee.0)?;
        Ok((sub(quantity, fee, "redeem fee")?, fee))
    }

    /// Mint `amount` to `to` (cap checked by the caller with [`Ledger::check_cap`]).
    pub fn mint(&mut self, to: Address, amount: U256) {
        self.total_supply += amount;
        self.credit(to, amount);
    }

    /// Burn `amount` from `from` (balance checked by the caller).
    pub fn burn(&mut self, from: Address, amount: U256) {
        self.total_supply -= amount;
        self.debit(from, amount);
    }

    fn credit(&mut self, to: Address, amount: U256) {
        if !amount.is_zero() {
            *self.balances.entry(to).or_default() += amount;
        }
    }

    fn debit(&mut self, from: Address, amount: U256) {
        if let Some(b) = self.balances.get_mut(&from) {
            *b -= amount;
            if b.is_zero() {
                self.balances.remove(&from);
            }
        }
    }

    /// Streaming fee inflation due at `now` without minting it:
    /// `fee% = Δt · streaming_fee / year`, `minted = fee% · supply / (1 − fee%)`.
    pub fn pending_streaming_fee(&self, now: u64) -> Result<U256, TokenError> {
        let dt = now.saturating_sub(self.last_fee_accrual);
        if dt == 0 || self.total_supply.is_zero() || self.config.streaming_fee.0.is_zero() {
            return Ok(U256::ZERO);
        }
        let pct = U256::from(dt) * self.config.streaming_fee.0 / U256::from(STREAMING_FEE_YEAR);
        if pct >= WAD {
            return Err(TokenError::InvalidFee("streaming fee due exceeds 100% of supply".into()));
        }
        Ok(mul_div_down(pct, self.total_supply, WAD - pct, "streaming fee")?)
    }

    /// Accrue the streaming fee to `now`; returns the tokens minted to the fee recipient.
    pub fn accrue_streaming_fee(&mut self, now: u64) -> Result<U256, TokenError> {
        let minted = self.pending_streaming_fee(now)?;
        if !minted.is_zero() {
            let r = self.config.fee_recipient;
            self.mint(r, minted);
        }
        self.last_fee_accrual = self.last_fee_accrual.max(now);
        Ok(minted)
    }

    /// The invariant `supply == Σ balances`.
    pub fn supply_matches_balances(&self) -> bool {
        self.balances.values().fold(U256::ZERO, |a, b| a + *b) == self.total_supply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(
            TokenConfig {
                name: "T".into(),
                symbol: "T".into(),
                supply_cap: U256::from(100u64) * WAD,
                mint_fee: Wad::parse("0.001").unwrap(),
                redeem_fee: Wad::parse("0.001").unwrap(),
                streaming_fee: Wad::parse("0.0195").unwrap(),
                fee_recipient: Address::with_last_byte(9),
            },
            0,
        )
        .unwrap()
    }

    #[test]
    fn transfer_and_errors() {
        let mut l = ledger();
        let (a, b) = (Address::with_last_byte(1), Address::with_last_byte(2));
        l.mint(a, WAD);
        l.transfer(a, b, WAD / U256::from(4u64)).unwrap();
        assert!(l.supply_matches_balances());
        let before = l.clone();
        let e = l.transfer(a, b, WAD).unwrap_err();
        assert!(e.to_string().starts_with("Insufficient balance"), "{e}");
        assert_eq!(l, before);
        assert_eq!(l.transfer(a, b, U256::ZERO).unwrap_err().to_string(), "Transfer quantity must be greater than 0");
        assert!(l.check_cap(U256::from(100u64) * WAD).is_err());
    }

    #[test]
    fn streaming_fee_one_year_dilutes_by_the_fee() {
        let mut l = ledger();
        l.mint(Address::with_last_byte(1), U256::from(100u64) * WAD);
        let minted = l.accrue_streaming_fee(STREAMING_FEE_YEAR).unwrap();
        // holders keep 1 − 1.95% of the supply
        let share = crate::math::to_f64(l.balance_of(Address::with_last_byte(1)) * WAD / l.total_supply(), 18);
        assert!((share - 0.9805).abs() < 1e-12, "{share}");
        assert!(minted > U256::ZERO);
        assert!(l.supply_matches_balances());
    }

    #[test]
    fn fee_quantities() {
        let l = ledger();
        let (tot, fee) = l.issue_quantities(U256::from(1000u64) * WAD).unwrap();
        assert_eq!(fee, WAD);
        assert_eq!(tot, U256::from(1001u64) * WAD);
        let (net, fee) = l.redeem_quantities(U256::from(1000u64) * WAD).unwrap();
        assert_eq!((net, fee), (U256::from(999u64) * WAD, WAD));
    }
}
