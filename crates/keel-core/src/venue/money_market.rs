//! The lending market a lending token lives on, whichever protocol it is: Aave v3
//! ([`LendingMarket`]) or Compound v2 ([`CompoundMarket`]). The token, the leverage module,
//! the simulator and the service call this one interface; only this file looks at the kind.
//!
//! Where the two protocols differ in what a caller can ask for, the interface says which
//! reading it gives: balances are what the protocol's FLI strategy reads (Aave: the aToken and
//! debt-token balances at `now`; Compound: `balanceOf · exchangeRateStored` and
//! `borrowBalanceStored`), a repay larger than the debt repays the debt (Aave caps; on
//! Compound the caller asks for the debt, as Set's module does), and a liquidation repays as
//! much as the protocol allows.

use crate::error::{LendingError, OracleError};
use crate::math::U256;
use crate::oracle::PriceFeed;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use super::compound::{self, CompoundMarket};
use super::lending::{AccountData, AssetId, LendingMarket, LiquidationOutcome, MarketCheckpoint};

/// Which protocol a lending product's market follows (`[lending] protocol` in a product file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// Aave v3 (the default).
    #[default]
    AaveV3,
    /// Compound v2.
    CompoundV2,
}

impl Protocol {
    /// The name used in product files: `aave-v3` or `compound-v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::AaveV3 => "aave-v3",
            Protocol::CompoundV2 => "compound-v2",
        }
    }
}

/// A lending market of either protocol.
///
/// Serialised as an Aave market's own fields (the form snapshots had before Compound existed)
/// or as `{"compound_v2": {…}}`. It is read key by key, not through serde's buffered untagged
/// enums, which cannot hold the `i128` price answers of large prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyMarket {
    /// An Aave v3 market.
    AaveV3(LendingMarket),
    /// A Compound v2 market set.
    CompoundV2(CompoundMarket),
}

const COMPOUND_KEY: &str = "compound_v2";

impl Serialize for MoneyMarket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            MoneyMarket::AaveV3(m) => m.serialize(s),
            MoneyMarket::CompoundV2(m) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(COMPOUND_KEY, m)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for MoneyMarket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Market;
        impl<'de> serde::de::Visitor<'de> for Market {
            type Value = MoneyMarket;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an Aave v3 market's fields or {\"compound_v2\": …}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MoneyMarket, A::Error> {
                use serde::de::Error;
                let (mut reserves, mut emodes, mut accounts, mut treasury) = (None, None, None, None);
                let mut compound = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        COMPOUND_KEY => compound = Some(map.next_value()?),
                        "reserves" => reserves = Some(map.next_value()?),
                        "emodes" => emodes = Some(map.next_value()?),
                        "accounts" => accounts = Some(map.next_value()?),
                        "treasury" => treasury = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                if let Some(m) = compound {
                    return Ok(MoneyMarket::CompoundV2(m));
                }
                Ok(MoneyMarket::AaveV3(LendingMarket::from_parts(
                    reserves.ok_or_else(|| A::Error::missing_field("reserves"))?,
                    emodes.ok_or_else(|| A::Error::missing_field("emodes"))?,
                    accounts.ok_or_else(|| A::Error::missing_field("accounts"))?,
                    treasury.ok_or_else(|| A::Error::missing_field("treasury"))?,
                )))
            }
        }
        d.deserialize_map(Market)
    }
}

/// What [`MoneyMarket::checkpoint`] saved. Both variants hold one account inline and live
/// briefly on the stack of an entry point; boxing either would allocate on every call.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Checkpoint {
    /// Aave's reserve states and account.
    AaveV3(MarketCheckpoint),
    /// Compound's market totals and account.
    CompoundV2(compound::Checkpoint),
}

impl From<LendingMarket> for MoneyMarket {
    fn from(m: LendingMarket) -> Self {
        MoneyMarket::AaveV3(m)
    }
}

impl From<CompoundMarket> for MoneyMarket {
    fn from(m: CompoundMarket) -> Self {
        MoneyMarket::CompoundV2(m)
    }
}

impl MoneyMarket {
    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            MoneyMarket::AaveV3(_) => Protocol::AaveV3,
            MoneyMarket::CompoundV2(_) => Protocol::CompoundV2,
        }
    }

    /// The Aave market, if this is one.
    pub fn aave(&self) -> Option<&LendingMarket> {
        match self {
            MoneyMarket::AaveV3(m) => Some(m),
            MoneyMarket::CompoundV2(_) => None,
        }
    }

    /// The Compound market, if this is one.
    pub fn compound(&self) -> Option<&CompoundMarket> {
        match self {
            MoneyMarket::AaveV3(_) => None,
            MoneyMarket::CompoundV2(m) => Some(m),
        }
    }

    /// The price feed of asset `a`. Panics on an id the market did not hand out.
    pub fn feed(&self, a: AssetId) -> &PriceFeed {
        match self {
            MoneyMarket::AaveV3(m) => &m.reserves[a].feed,
            MoneyMarket::CompoundV2(m) => &m.markets[a].feed,
        }
    }

    /// Symbol of asset `a`.
    pub fn symbol(&self, a: AssetId) -> &str {
        match self {
            MoneyMarket::AaveV3(m) => &m.reserves[a].config.symbol,
            MoneyMarket::CompoundV2(m) => &m.markets[a].config.symbol,
        }
    }

    /// Decimals of asset `a`.
    pub fn decimals(&self, a: AssetId) -> u8 {
        match self {
            MoneyMarket::AaveV3(m) => m.reserves[a].config.decimals,
            MoneyMarket::CompoundV2(m) => m.markets[a].config.decimals,
        }
    }

    /// Validated USD price of `a`, 8 decimals.
    pub fn price(&self, a: AssetId, now: u64) -> Result<U256, OracleError> {
        match self {
            MoneyMarket::AaveV3(m) => m.price(a, now),
            MoneyMarket::CompoundV2(m) => m.price(a, now),
        }
    }

    /// Post a price on `a`'s feed.
    pub fn post_price(&mut self, a: AssetId, answer: i128, now: u64) {
        match self {
            MoneyMarket::AaveV3(m) => m.post_price(a, answer, now),
            MoneyMarket::CompoundV2(m) => m.post_price(a, answer, now),
        }
    }

    /// Count `assets` as `user`'s collateral: Compound's `enterMarkets`; on Aave supplying
    /// already does it, so nothing happens.
    pub fn enter_markets(&mut self, user: Address, assets: &[AssetId]) -> Result<(), LendingError> {
        match self {
            MoneyMarket::AaveV3(_) => Ok(()),
            MoneyMarket::CompoundV2(m) => m.enter_markets(user, assets),
        }
    }

    /// Supply `amount` of `a` (Aave `supply`, Compound `mint`).
    pub fn supply(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<(), LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.supply(user, a, amount, now),
            MoneyMarket::CompoundV2(m) => m.mint(user, a, amount, now).map(|_| ()),
        }
    }

    /// Withdraw `amount` of `a`, everything with `U256::MAX` (Aave `withdraw`, Compound
    /// `redeemUnderlying` / `redeem`). Returns the amount paid out.
    pub fn withdraw(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.withdraw(user, a, amount, now),
            MoneyMarket::CompoundV2(m) => {
                let (tokens, underlying) =
                    if amount == U256::MAX { (m.ctoken_balance(user, a), U256::ZERO) } else { (U256::ZERO, amount) };
                if tokens.is_zero() && underlying.is_zero() {
                    return Err(LendingError::InvalidAmount);
                }
                m.redeem(user, a, tokens, underlying, now).map(|(_, paid)| paid)
            }
        }
    }

    /// Borrow `amount` of `a`.
    pub fn borrow(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<(), LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.borrow(user, a, amount, now),
            MoneyMarket::CompoundV2(m) => m.borrow(user, a, amount, now),
        }
    }

    /// Repay up to `amount` of `user`'s debt in `a` (at most the debt; `U256::MAX` for all).
    /// Returns the amount repaid.
    pub fn repay(&mut self, user: Address, a: AssetId, amount: U256, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.repay(user, a, amount, now),
            MoneyMarket::CompoundV2(m) => {
                let owed = m.borrow_balance_current(user, a, now)?;
                if owed.is_zero() {
                    return Err(LendingError::NoDebt);
                }
                m.repay(user, a, amount.min(owed), now)
            }
        }
    }

    /// Repay `amount` of `user`'s debt in `a` with the proceeds of a delever, as the protocol's
    /// Set leverage module does. Aave v3 repays at most the debt (none when there is none) and
    /// the rest stays with the account; Compound's `repayBorrow` refuses more than the borrow
    /// balance, so `CompoundLeverageModule.delever` reverts ("Repay failed"). Returns the amount
    /// repaid.
    pub fn repay_in_delever(
        &mut self,
        user: Address,
        a: AssetId,
        amount: U256,
        now: u64,
    ) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => {
                if m.debt_balance(user, a, now)?.is_zero() {
                    return Ok(U256::ZERO);
                }
                m.repay(user, a, amount, now)
            }
            MoneyMarket::CompoundV2(m) => m.repay(user, a, amount, now),
        }
    }

    /// The debt a delever to zero repays, as the protocol's Set leverage module reads it: Aave's
    /// variable debt balance, `None` when there is none (`AaveV3LeverageModule` refuses,
    /// "Borrow balance is zero"); Compound's `borrowBalanceCurrent`, which accrues the market to
    /// `now` (`CompoundLeverageModule` checks nothing and repays it, zero included).
    pub fn debt_to_clear(&mut self, user: Address, a: AssetId, now: u64) -> Result<Option<U256>, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => {
                let debt = m.debt_balance(user, a, now)?;
                Ok((!debt.is_zero()).then_some(debt))
            }
            MoneyMarket::CompoundV2(m) => m.accrue_borrow_balance(user, a, now).map(Some),
        }
    }

    /// `user`'s supplied balance of `a` as the protocol's FLI strategy reads it.
    pub fn supply_balance(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.supply_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.supply_balance_stored(user, a),
        }
    }

    /// `user`'s debt in `a` as the protocol's FLI strategy reads it.
    pub fn debt_balance(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.debt_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.borrow_balance_stored(user, a),
        }
    }

    /// `user`'s supplied balance of `a` with interest to `now`, whether or not the market has
    /// accrued (Aave: as `supply_balance`; Compound: `balanceOfUnderlying`, not stored).
    pub fn supply_balance_current(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.supply_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.supply_balance_current(user, a, now),
        }
    }

    /// `user`'s debt in `a` with interest to `now` (Compound: `borrowBalanceCurrent`, not
    /// stored).
    pub fn debt_balance_current(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.debt_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.borrow_balance_current(user, a, now),
        }
    }

    /// `user`'s debt in `a` as a Set leverage module syncs it before a redeem: Aave's variable
    /// debt at `now`; Compound's `borrowBalanceCurrent`, which accrues the market to `now`.
    pub fn accrue_debt(&mut self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.debt_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.accrue_borrow_balance(user, a, now),
        }
    }

    /// [`MoneyMarket::accrue_debt`] without storing the accrual.
    pub fn debt_current(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.debt_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => m.borrow_balance_current(user, a, now),
        }
    }

    /// `user`'s position in `a` in the tokens a Set holds for it: the aToken balance on Aave
    /// (underlying at `now`), the cToken balance on Compound.
    pub fn position_balance(&self, user: Address, a: AssetId, now: u64) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.supply_balance(user, a, now),
            MoneyMarket::CompoundV2(m) => Ok(m.ctoken_balance(user, a)),
        }
    }

    /// An issuer brings `units` of position in `a` to `account`, paying underlying for what it
    /// lacks. Aave: supplying `units` for the account adds the scaled balance an aToken transfer
    /// of `units` would (`rayDiv(units, index)` both ways). Compound: the holder mints its
    /// shortfall at the accrued exchange rate (`ceil(shortfall · rate / 1e18)` underlying, at
    /// least the shortfall in cTokens; any excess stays the holder's) and transfers `units`
    /// cTokens. Returns the underlying the holder paid.
    pub fn position_in(
        &mut self,
        holder: Address,
        account: Address,
        a: AssetId,
        units: U256,
        now: u64,
    ) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.supply(account, a, units, now).map(|()| units),
            MoneyMarket::CompoundV2(m) => {
                let short = units.saturating_sub(m.ctoken_balance(holder, a));
                let paid = if short.is_zero() {
                    U256::ZERO
                } else {
                    let rate = m.exchange_rate_current(a, now)?;
                    let paid = crate::math::mul_div_up(short, rate, crate::math::WAD, "cTokens to buy")
                        .map_err(|e| LendingError::Reverted(e.to_string()))?;
                    m.mint(holder, a, paid, now)?;
                    paid
                };
                m.transfer(holder, account, a, units, now)?;
                Ok(paid)
            }
        }
    }

    /// `account` hands `units` of position in `a` to `holder`, who takes underlying. Aave:
    /// withdraw `units` to the holder. Compound: transfer `units` cTokens (the comptroller checks
    /// the account's liquidity), which the holder redeems. Returns the underlying paid out.
    pub fn position_out(
        &mut self,
        account: Address,
        holder: Address,
        a: AssetId,
        units: U256,
        now: u64,
    ) -> Result<U256, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.withdraw(account, a, units, now),
            MoneyMarket::CompoundV2(m) => {
                m.transfer(account, holder, a, units, now)?;
                m.redeem(holder, a, units, U256::ZERO, now).map(|(_, paid)| paid)
            }
        }
    }

    /// Collateral, debt and health factor in Aave's shape (Compound: collateral factor for
    /// both LTV and threshold).
    pub fn account_data(&self, user: Address, now: u64) -> Result<AccountData, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.account_data(user, now),
            MoneyMarket::CompoundV2(m) => m.account_data(user, now),
        }
    }

    /// `(LTV, liquidation threshold, liquidation bonus)` of `a` in basis points under eMode
    /// `emode` (Compound: the collateral factor twice and the liquidation incentive).
    pub fn risk_params(&self, a: AssetId, emode: u8) -> (u32, u32, u32) {
        match self {
            MoneyMarket::AaveV3(m) => m.risk_params(a, emode),
            MoneyMarket::CompoundV2(m) => {
                let bp = |x: U256| (x / U256::from(100_000_000_000_000u64)).saturating_to::<u32>();
                let cf = bp(m.markets[a].config.collateral_factor);
                (cf, cf, bp(m.liquidation_incentive))
            }
        }
    }

    /// Liquidate `user` as far as the protocol allows (at most `max_repay`).
    pub fn liquidation_call(
        &mut self,
        collateral: AssetId,
        debt: AssetId,
        user: Address,
        max_repay: U256,
        now: u64,
    ) -> Result<LiquidationOutcome, LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.liquidation_call(collateral, debt, user, max_repay, now),
            MoneyMarket::CompoundV2(m) => m.liquidation_call(collateral, debt, user, max_repay, now),
        }
    }

    /// Switch `user`'s eMode category (Aave only).
    pub fn set_user_emode(&mut self, user: Address, category: u8, now: u64) -> Result<(), LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.set_user_emode(user, category, now),
            MoneyMarket::CompoundV2(_) => Err(LendingError::Reverted(
                "eMode is an Aave v3 feature; a Compound v2 market has no eMode categories".into(),
            )),
        }
    }

    /// Accrue interest everywhere to `now`.
    pub fn accrue_all(&mut self, now: u64) -> Result<(), LendingError> {
        match self {
            MoneyMarket::AaveV3(m) => m.accrue_all(now),
            MoneyMarket::CompoundV2(m) => m.accrue_all(now),
        }
    }

    /// Save what an operation on `account` can change.
    pub fn checkpoint(&self, account: Address) -> Checkpoint {
        match self {
            MoneyMarket::AaveV3(m) => Checkpoint::AaveV3(m.checkpoint(account)),
            MoneyMarket::CompoundV2(m) => Checkpoint::CompoundV2(m.checkpoint(account)),
        }
    }

    /// Put back what [`MoneyMarket::checkpoint`] saved (a checkpoint of the other protocol
    /// is ignored: it cannot have come from this market).
    pub fn restore(&mut self, cp: Checkpoint) {
        match (self, cp) {
            (MoneyMarket::AaveV3(m), Checkpoint::AaveV3(cp)) => m.restore(cp),
            (MoneyMarket::CompoundV2(m), Checkpoint::CompoundV2(cp)) => m.restore(cp),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::Wad;
    use crate::venue::compound::{InterestRateModel, MarketConfig};
    use crate::venue::lending::{RateModel, ReserveConfig};

    fn feed(answer: i128) -> PriceFeed {
        let mut f = PriceFeed::new("X / USD", 8, 3600, Wad::ZERO);
        f.post(answer, 0);
        f
    }

    #[test]
    fn table_snapshots_round_trip_with_any_price() {
        // (case, market); a price above u64 (1e12 USD) is what serde's untagged enums cannot hold
        let huge = 100_000_000_000_000_000_000i128;
        let mut aave = LendingMarket::new();
        aave.add_reserve(ReserveConfig::new("WETH", 18, 8000, 8250, 10500, RateModel::zero()), feed(huge), 0).unwrap();
        let mut compound = CompoundMarket::new();
        compound
            .add_market(MarketConfig::new("WETH", 18, 7500, 2000, InterestRateModel::zero()), feed(huge), 0)
            .unwrap();
        for (case, m) in [("aave", MoneyMarket::AaveV3(aave.clone())), ("compound", MoneyMarket::CompoundV2(compound))]
        {
            let text = serde_json::to_string(&m).unwrap();
            let back: MoneyMarket = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(back, m, "{case}");
        }
        // an Aave snapshot written before MoneyMarket existed is the market's own fields
        let legacy = serde_json::to_string(&aave).unwrap();
        assert_eq!(serde_json::from_str::<MoneyMarket>(&legacy).unwrap(), MoneyMarket::AaveV3(aave));
    }
}
