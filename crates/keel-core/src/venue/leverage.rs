//! The leverage module: atomic lever, delever and delever-to-zero against a lending market
//! and a pool, as Set's `AaveV3LeverageModule` executes them (`fli.md` §9 table). Amounts
//! arrive in per-token units and are multiplied back by the supply here.

use crate::error::{AmmError, Error, FliError};
use crate::math::{U256, Wad, mul_div_down, pmul, pow10};
use crate::venue::amm::Pool;
use crate::venue::lending::AssetId;
use crate::venue::money_market::MoneyMarket;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// What one venue trade did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeReport {
    /// True for lever (borrow asset sold), false for delever (collateral sold).
    pub is_lever: bool,
    /// Amount sold (base units of the sold asset).
    pub sold: U256,
    /// Amount bought (base units of the bought asset).
    pub bought: U256,
    /// Minimum the trade had to return.
    pub min_receive: U256,
    /// Pool fee paid, in the sold asset.
    pub pool_fee: U256,
    /// Leverage-module protocol fee, in the bought asset.
    pub protocol_fee: U256,
    /// Debt repaid (delever) or collateral supplied (lever).
    pub applied: U256,
    /// Borrow asset left over after repaying (delever to zero, or over-repay).
    pub surplus: U256,
}

/// The accounts and assets one trade touches.
pub struct LeverageVenue<'a> {
    /// The lending market.
    pub market: &'a mut MoneyMarket,
    /// The pool of the exchange's route.
    pub pool: &'a mut Pool,
    /// The token's account on the market.
    pub account: Address,
    /// Collateral reserve.
    pub collateral: AssetId,
    /// Borrow reserve.
    pub borrow: AssetId,
    /// Protocol fee on received amounts (0 by default).
    pub protocol_fee: Wad,
    /// Time of the call.
    pub now: u64,
    /// Fill at the market oracle's prices with no fee and no impact instead of trading the
    /// pool (frictionless studies, `--costs none`).
    pub oracle_fill: bool,
}

impl LeverageVenue<'_> {
    /// Sell `amount` of reserve `sold` for the other asset, at least `min_out`: through the pool,
    /// or at oracle prices when `oracle_fill` is set. Returns `(out, pool fee)`.
    fn swap(&mut self, sold: AssetId, amount: U256, min_out: U256) -> Result<(U256, U256), Error> {
        let bought = if sold == self.collateral { self.borrow } else { self.collateral };
        if self.oracle_fill {
            let ps = self.market.price(sold, self.now)?;
            let pb = self.market.price(bought, self.now)?;
            let ds = self.market.decimals(sold) as u32;
            let db = self.market.decimals(bought) as u32;
            // out = amount · p_sold / p_bought, rescaled from the sold to the bought decimals.
            let out = mul_div_down(amount * ps, pow10(db), pb * pow10(ds), "oracle fill")?;
            if out < min_out {
                return Err(
                    AmmError::SlippageTooHigh { received: out.to_string(), minimum: min_out.to_string() }.into()
                );
            }
            return Ok((out, U256::ZERO));
        }
        let symbol = self.market.symbol(sold).to_string();
        let dir = self.pool.direction_selling(&symbol)?;
        let o = self.pool.swap_exact_input(dir, amount, min_out, None)?;
        Ok((o.amount_out, o.fee))
    }

    /// Borrow `borrow_units·S`, swap for collateral (at least `min_receive_units·S`), supply it.
    /// Callers run this inside a transaction that restores state on error.
    pub fn lever(&mut self, borrow_units: U256, min_receive_units: U256, supply: U256) -> Result<TradeReport, Error> {
        let send = pmul(borrow_units, supply)?;
        let min_recv = pmul(min_receive_units, supply)?;
        if send.is_zero() {
            return Err(FliError::Revert("Quantity is 0").into());
        }
        self.market.borrow(self.account, self.borrow, send, self.now)?;
        let (out, pool_fee) = self.swap(self.borrow, send, min_recv)?;
        let fee = pmul(out, self.protocol_fee.0)?;
        let to_supply = out - fee;
        self.market.supply(self.account, self.collateral, to_supply, self.now)?;
        Ok(TradeReport {
            is_lever: true,
            sold: send,
            bought: out,
            min_receive: min_recv,
            pool_fee,
            protocol_fee: fee,
            applied: to_supply,
            surplus: U256::ZERO,
        })
    }

    /// Withdraw `collateral_units·S`, swap for the borrow asset (at least `min_repay_units·S`),
    /// repay: on Aave anything above the debt stays with the token as surplus; on Compound more
    /// than the debt is refused, as `CompoundLeverageModule` reverts
    /// ([`MoneyMarket::repay_in_delever`]).
    pub fn delever(
        &mut self,
        collateral_units: U256,
        min_repay_units: U256,
        supply: U256,
    ) -> Result<TradeReport, Error> {
        let send = pmul(collateral_units, supply)?;
        let min_recv = pmul(min_repay_units, supply)?;
        if send.is_zero() {
            return Err(FliError::Revert("Quantity is 0").into());
        }
        self.market.withdraw(self.account, self.collateral, send, self.now)?;
        let (out, pool_fee) = self.swap(self.collateral, send, min_recv)?;
        let fee = pmul(out, self.protocol_fee.0)?;
        let repay = out - fee;
        let repaid = self.market.repay_in_delever(self.account, self.borrow, repay, self.now)?;
        Ok(TradeReport {
            is_lever: false,
            sold: send,
            bought: out,
            min_receive: min_recv,
            pool_fee,
            protocol_fee: fee,
            applied: repaid,
            surplus: repay - repaid,
        })
    }

    /// Withdraw `max_collateral_units·S`, swap all of it, repay the whole debt as the protocol's
    /// module reads it ([`MoneyMarket::debt_to_clear`]: on Compound with interest to now); the
    /// rest is surplus. On Aave it fails with `Borrow balance is zero` when there is no debt.
    pub fn delever_to_zero(&mut self, max_collateral_units: U256, supply: U256) -> Result<TradeReport, Error> {
        let send = pmul(max_collateral_units, supply)?;
        let Some(debt) = self.market.debt_to_clear(self.account, self.borrow, self.now)? else {
            return Err(FliError::Revert("Borrow balance is zero").into());
        };
        if send.is_zero() {
            return Err(FliError::Revert("Quantity is 0").into());
        }
        self.market.withdraw(self.account, self.collateral, send, self.now)?;
        let (out, pool_fee) = self.swap(self.collateral, send, debt)?;
        let repaid =
            if debt.is_zero() { U256::ZERO } else { self.market.repay(self.account, self.borrow, debt, self.now)? };
        Ok(TradeReport {
            is_lever: false,
            sold: send,
            bought: out,
            min_receive: debt,
            pool_fee,
            protocol_fee: U256::ZERO,
            applied: repaid,
            surplus: out - repaid,
        })
    }
}
