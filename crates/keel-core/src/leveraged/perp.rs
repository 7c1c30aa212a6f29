//! [`LeveragedToken`] for the PerpV2 FLI token: a Perp-v2-style account trading a vAMM,
//! issued and redeemed at NAV with its share of the position traded on the vAMM, the trade's
//! cost to the issuer or redeemer (Set's `PerpV2LeverageModuleV2`, `perp.md` A8a).

use super::{Band, Done, Emergency, Exposure, Flow, Health, Kind, LeveragedToken, Screen, candidate, shrink};
use crate::Error;
use crate::error::{FliError, TokenError};
use crate::math::{I256, U256, WAD, mul_div_down, pmul, to_f64};
use crate::strategy::fli::ShouldRebalance;
use crate::strategy::fli::perp_token::{PerpFliToken, venue_reason};
use crate::strategy::keeper::{Action, Candidate};
use alloy_primitives::Address;

fn venue(e: crate::venue::perp_v2::PerpV2Error) -> Error {
    FliError::Revert(venue_reason(&e)).into()
}

impl PerpFliToken {
    fn credit(&mut self, holder: Address, amount: U256) {
        if !amount.is_zero() {
            *self.holders.entry(holder).or_default() += amount;
        }
    }
}

impl LeveragedToken for PerpFliToken {
    fn kind(&self) -> Kind {
        Kind::PerpFli
    }

    fn symbol(&self) -> &str {
        &self.symbol
    }

    fn band(&self) -> Band {
        let m = &self.fli.methodology;
        Band {
            target: m.target_leverage_ratio,
            min: m.min_leverage_ratio,
            max: m.max_leverage_ratio,
            emergency: Some(Emergency {
                action: "ripcord",
                leverage: Some(self.fli.incentive.incentivized_leverage_ratio),
                equity: None,
            }),
        }
    }

    fn observe_price(&mut self, _now: u64, price: U256) -> Result<(), Error> {
        self.index_price = price;
        Ok(())
    }

    fn supply(&self) -> U256 {
        self.supply
    }

    fn balance_of(&self, holder: Address) -> U256 {
        self.holders.get(&holder).copied().unwrap_or_default()
    }

    fn balances(&self) -> Vec<(Address, U256)> {
        self.holders.iter().map(|(a, v)| (*a, *v)).collect()
    }

    fn transfer(&mut self, from: Address, to: Address, amount: U256) -> Result<(), Error> {
        if amount.is_zero() {
            return Err(TokenError::ZeroAmount { what: "Transfer" }.into());
        }
        let held = self.balance_of(from);
        if amount > held {
            return Err(TokenError::InsufficientBalance {
                holder: from.to_string(),
                balance: crate::math::Wad(held).to_string(),
                requested: crate::math::Wad(amount).to_string(),
            }
            .into());
        }
        if held == amount {
            self.holders.remove(&from);
        } else {
            self.holders.insert(from, held - amount);
        }
        self.credit(to, amount);
        Ok(())
    }

    fn nav_per_token(&self, _now: u64) -> Result<U256, Error> {
        Ok(PerpFliToken::nav_per_token(self)?)
    }

    fn exposure(&self, _now: u64) -> Result<Exposure, Error> {
        let av = self.market.account_value(self.index_price).map_err(venue)?;
        let equity = if av.is_negative() { U256::ZERO } else { av.unsigned_abs() };
        Ok(Exposure { units: self.market.account.base, equity, price: self.index_price })
    }

    fn leverage(&self, now: u64) -> Result<I256, Error> {
        Ok(self.leverage_ratio(now)?)
    }

    fn health(&self, _now: u64) -> Result<Health, Error> {
        let mr = self.market.margin_ratio(self.index_price).map_err(venue)?;
        Ok(Health::MarginRatio(if mr.is_negative() { U256::ZERO } else { mr.unsigned_abs() }))
    }

    fn liquidation_leverage(&self) -> f64 {
        let mm = to_f64(self.market.params.mm_ratio, 18);
        if mm <= 0.0 { f64::INFINITY } else { 1.0 / mm }
    }

    fn issue(&mut self, holder: Address, value: U256, now: u64) -> Result<Flow, Error> {
        // tokens at NAV (the initial NAV for the first issue) plus the cost of trading their
        // base on the vAMM, which the issuer pays (`perp.md` A8a); the mint fee is on top, as
        // `DebtIssuanceModuleV2` takes it: the issuer pays for `tokens + fee` at the same unit
        let nav = self.issue_price(now)?;
        let tokens = self.issue_size(value, nav, self.mint_fee)?;
        let fee = pmul(tokens, self.mint_fee)?;
        let after = crate::math::add(self.supply, crate::math::add(tokens, fee, "issue")?, "supply")?;
        if !self.supply_cap.is_zero() && after > self.supply_cap {
            return Err(TokenError::SupplyCapExceeded {
                would_be: crate::math::Wad(after).to_string(),
                cap: crate::math::Wad(self.supply_cap).to_string(),
            }
            .into());
        }
        let paid = self.issue_tokens(tokens, fee, value)?;
        let r = self.fee_recipient;
        self.credit(holder, tokens);
        self.credit(r, fee);
        Ok(Flow { tokens, value: paid, fee: pmul(fee, nav)? })
    }

    fn issue_price(&self, now: u64) -> Result<U256, Error> {
        if self.supply.is_zero() { Ok(self.initial_nav) } else { LeveragedToken::nav_per_token(self, now) }
    }

    fn redeem(&mut self, holder: Address, tokens: U256, _now: u64) -> Result<Flow, Error> {
        let held = self.balance_of(holder);
        if tokens.is_zero() || tokens > held {
            return Err(TokenError::InsufficientBalance {
                holder: holder.to_string(),
                balance: crate::math::Wad(held).to_string(),
                requested: crate::math::Wad(tokens).to_string(),
            }
            .into());
        }
        // the redeem fee stays in the token, as tokens to the fee recipient; the module's hook
        // trades the position of all the tokens (`DebtIssuanceModuleV2`), pays for the rest
        let fee = mul_div_down(tokens, self.redeem_fee, WAD, "redeem fee")?;
        let nav = PerpFliToken::nav_per_token(self)?;
        let mut next = self.clone();
        let value = PerpFliToken::redeem(&mut next, tokens, fee)?;
        // `tokens ≤ held` was checked: the balance is there to debit
        if held == tokens {
            next.holders.remove(&holder);
        } else {
            next.holders.insert(holder, held - tokens);
        }
        let r = next.fee_recipient;
        next.credit(r, fee);
        *self = next;
        Ok(Flow { tokens, value, fee: pmul(fee, nav)? })
    }

    fn wanted(&self, now: u64) -> Result<Vec<Candidate>, Error> {
        Ok(match self.should_rebalance(now)? {
            ShouldRebalance::None => vec![],
            ShouldRebalance::Rebalance => vec![candidate(Action::Rebalance)],
            ShouldRebalance::IterateRebalance => vec![candidate(Action::Iterate)],
            ShouldRebalance::Ripcord => vec![candidate(Action::Ripcord)],
        })
    }

    fn execute(&mut self, _caller: Address, call: &Candidate, now: u64) -> Result<Done, Error> {
        let (trade, reward) = match call.action {
            Action::Rebalance => (Some(self.rebalance(now)?), U256::ZERO),
            Action::Iterate => (self.iterate_rebalance(now)?, U256::ZERO),
            Action::Ripcord => {
                let (t, paid) = self.ripcord(now)?;
                (Some(t), paid)
            }
        };
        let mut d = Done { event: call.action.name(), reward, ..Done::default() };
        if let Some(t) = trade {
            d.traded = t.base;
            d.fee = t.fee;
            let value = pmul(t.base.unsigned_abs(), self.index_price)?;
            // a buy pays quote for base, a sell receives quote for base
            (d.sold, d.bought) = if t.base.is_negative() { (value, t.quote) } else { (t.quote, value) };
        }
        Ok(d)
    }

    fn dry_run(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, Error> {
        self.clone().execute(caller, call, now)
    }

    fn on_price(&mut self, now: u64, price: U256) -> Result<Vec<String>, Error> {
        // the index moves; the arbitrageur trades the vAMM to it (its liquidity re-centred once
        // the price is 20% from where it was placed); funding settles at a zero premium
        if price.is_zero() {
            return Err(crate::math::MathError::DivisionByZero("price").into());
        }
        let mut next = self.clone();
        next.index_price = price;
        // the vAMM is pinned to the index here, so the mark is the index
        next.venue_mark = None;
        let mut did = Vec::new();
        let center = if next.pool_center.is_zero() { price } else { next.pool_center };
        let moved = (to_f64(price, 18) / to_f64(center, 18)).ln().abs();
        if moved >= 0.2 && !next.pool_tvl.is_zero() {
            next.pool = crate::strategy::fli::perp_token::vamm(price, next.pool_tvl, 500)?;
            next.pool_center = price;
            did.push("vAMM liquidity re-centred".to_string());
        } else {
            let sqrt = crate::venue::amm::sqrt_price_x96_from_ratio(price, WAD)?;
            next.pool.move_price_to(sqrt)?;
        }
        next.market.accrue_funding(now, price, price).map_err(venue)?;
        // the first price of a 15-second window records the tick the window's swaps are held to
        let tick = next.pool.tick();
        next.guards.observe(now, tick);
        *self = next;
        Ok(did)
    }

    fn liquidate(&mut self, _now: u64) -> Result<U256, Error> {
        let p = self.index_price;
        if !self.market.is_liquidatable(p).map_err(venue)? {
            return Err(FliError::Revert("the margin ratio is above maintenance; nothing to liquidate").into());
        }
        let mut next = self.clone();
        let out = next.market.liquidate(p).map_err(venue)?;
        *self = next;
        Ok(out.penalty)
    }

    fn engage(&mut self, _operator: Address, now: u64) -> Result<Done, Error> {
        let before = self.leverage_ratio(now).unwrap_or(I256::ZERO);
        let t = PerpFliToken::engage(self, now)?;
        Ok(Done { event: "engage", traded: t.base, leverage_before: before, fee: t.fee, ..Done::default() })
    }

    fn apply_settings(
        &mut self,
        new: &crate::product::AnyProduct,
        old: &crate::product::AnyProduct,
    ) -> Result<Vec<String>, Error> {
        use crate::product::AnyProduct;
        let (AnyProduct::Perp(new), AnyProduct::Perp(old)) = (new, old) else {
            return Err(FliError::Revert("a product cannot change its kind; create a new product").into());
        };
        if new.base != old.base || new.venue != old.venue || new.collateral != old.collateral {
            return Err(FliError::Revert(
                "the venue and its assets cannot change on a running product; create a new product",
            )
            .into());
        }
        let mut changed = Vec::new();
        if new.methodology != old.methodology {
            self.fli.methodology = new.methodology.clone();
            changed.push("methodology".to_string());
        }
        if new.execution != old.execution {
            self.fli.execution = new.execution.clone();
            changed.push("execution".to_string());
        }
        if new.incentive != old.incentive {
            self.fli.incentive = new.incentive.clone();
            changed.push("incentive".to_string());
        }
        if new.exchange != old.exchange {
            self.fli.exchange = new.exchange.clone();
            changed.push("exchange".to_string());
        }
        let (n, o) = (&new.token, &old.token);
        if n.supply_cap != o.supply_cap || n.mint_fee != o.mint_fee || n.redeem_fee != o.redeem_fee {
            (self.supply_cap, self.mint_fee, self.redeem_fee) = (n.supply_cap, n.mint_fee.0, n.redeem_fee.0);
            changed.push("token".to_string());
        }
        if n.symbol != o.symbol {
            self.symbol = n.symbol.clone();
            changed.push("token.symbol".to_string());
        }
        if n.name != o.name {
            changed.push("token.name".to_string());
        }
        Ok(changed)
    }

    fn funding_paid(&self, _now: u64) -> Result<I256, Error> {
        self.market.funding_paid().map_err(venue)
    }

    fn venue_figures(&self, _now: u64) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        out.insert("size".into(), crate::math::SignedWad(self.market.account.base).to_string());
        out.insert("collateral_usd".into(), crate::math::SignedWad(self.market.account.collateral).to_string());
        if let Ok(mr) = self.market.margin_ratio(self.index_price) {
            out.insert("margin_ratio".into(), crate::math::SignedWad(mr).to_string());
        }
        out.insert("index_price".into(), crate::math::Wad(self.index_price).to_string());
        if !self.fli.twap_leverage_ratio.is_zero() {
            out.insert("twap_leverage_ratio".into(), crate::math::SignedWad(self.fli.twap_leverage_ratio).to_string());
        }
        out
    }

    fn emergency_reward(&self, _now: u64) -> U256 {
        self.fli.incentive.ether_reward.min(self.fli.ether_balance)
    }

    fn accrue_fees(&mut self, now: u64) -> Result<U256, Error> {
        if self.streaming_fee.is_zero() || now <= self.last_fee_accrual {
            self.last_fee_accrual = self.last_fee_accrual.max(now);
            return Ok(U256::ZERO);
        }
        let pct = mul_div_down(
            U256::from(now - self.last_fee_accrual),
            self.streaming_fee,
            U256::from(crate::token::STREAMING_FEE_YEAR),
            "streaming fee",
        )?;
        self.last_fee_accrual = now;
        if pct >= WAD {
            return Ok(U256::ZERO);
        }
        // Set's StreamingFeeModule: inflate supply so the recipient holds `pct` of it
        let minted = mul_div_down(pct, self.supply, WAD - pct, "streaming fee")?;
        self.supply = crate::math::add(self.supply, minted, "supply")?;
        let r = self.fee_recipient;
        self.credit(r, minted);
        Ok(pmul(minted, PerpFliToken::nav_per_token(self)?)?)
    }

    fn screen(&self, now: u64, e: &Exposure) -> Screen {
        if !self.fli.twap_leverage_ratio.is_zero() || self.supply.is_zero() {
            return Screen::ALWAYS;
        }
        let m = &self.fli.methodology;
        let mag = |x: I256| to_f64(x.unsigned_abs(), 18);
        let (lo, hi) = (mag(m.min_leverage_ratio), mag(m.max_leverage_ratio));
        let p = to_f64(e.price, 18);
        let (below, above) = if e.units.is_negative() {
            (e.price_at_leverage(lo), e.price_at_leverage(hi))
        } else {
            (e.price_at_leverage(hi), e.price_at_leverage(lo))
        };
        let due = self.fli.last_trade_timestamp + m.rebalance_interval;
        // funding moves the ratio between reads (held near zero by the arbitrageur): re-read daily
        Screen {
            price_lo: shrink(below, p, 0.02, false),
            price_hi: shrink(above, p, 0.02, true),
            until: due.min(now + 86_400),
        }
    }
}
