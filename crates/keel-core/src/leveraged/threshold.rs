//! [`LeveragedToken`] for the Synthetix-style tokens — threshold, daily and continuous (the
//! Bear): a position on a perps market with delayed orders, minted and redeemed at the
//! exchange rate. The token's keeper call is one evaluation: close under the minimum margin,
//! a reverse split, or a full rebalance order when the policy's trigger holds.

use super::{Band, Done, Emergency, Exposure, Flow, Health, Kind, LeveragedToken, Screen, candidate, shrink};
use crate::Error;
use crate::math::{I256, MathError, U256, pdiv, pmul, to_f64};
use crate::strategy::keeper::{Action, Candidate};
use crate::strategy::threshold::token::{Evaluation, Policy, ThresholdToken};
use crate::strategy::threshold::{Side, ThresholdError};
use alloy_primitives::Address;

fn signed(x: U256) -> Result<I256, Error> {
    I256::try_from(x).map_err(|_| MathError::Overflow("int256").into())
}

impl ThresholdToken {
    fn signed_for_side(&self, x: U256) -> Result<I256, Error> {
        let v = signed(x)?;
        Ok(if self.settings.side == Side::Short { -v } else { v })
    }

    /// Would an evaluation act now (close, reverse split, rebalance)? Pure.
    fn evaluation_due(&self, now: u64) -> Result<Option<Action>, Error> {
        let price = self.oracle_price;
        if self.pending() {
            return Ok(None);
        }
        if let Policy::Continuous(c) = self.policy
            && !self.supply.is_zero()
        {
            let rate = self.exchange_rate(now, price)?;
            let f = crate::strategy::continuous::reverse_split_factor(
                rate,
                c.reverse_split_threshold,
                c.reverse_split_ratio,
            )?;
            if f > 1 && !rate.is_zero() {
                return Ok(Some(Action::Rebalance));
            }
        }
        let m = self.remaining_margin(now, price)?;
        if !self.size().is_zero() && m < self.settings.min_margin && !m.is_zero() {
            return Ok(Some(Action::Ripcord));
        }
        if !self.can_rebalance(now, price)? {
            return Ok(None);
        }
        // a trigger whose delta rounds to nothing submits no order: nothing is due (else a
        // keeper would call, and pay gas, every block on a token closed to dust)
        match self.clone().rebalance(now, price) {
            Ok(dq) if dq.is_zero() => Ok(None),
            _ => Ok(Some(Action::Rebalance)),
        }
    }
}

impl LeveragedToken for ThresholdToken {
    fn kind(&self) -> Kind {
        match self.policy {
            Policy::Threshold => Kind::Threshold,
            Policy::Daily(_) => Kind::Daily,
            Policy::Continuous(_) => Kind::Continuous,
        }
    }

    fn symbol(&self) -> &str {
        &self.symbol
    }

    fn band(&self) -> Band {
        let l = self.settings.target_leverage;
        let (lo, hi) = match self.policy {
            Policy::Threshold => {
                let t = self.settings.rebalance_threshold;
                (l.saturating_sub(t), l + t)
            }
            Policy::Daily(d) => (d.lower_trigger.unwrap_or(U256::ZERO), d.upper_trigger),
            Policy::Continuous(c) => {
                let t = pmul(l, c.tolerance).unwrap_or_default();
                (l.saturating_sub(t), l + t)
            }
        };
        let s = |x: U256| self.signed_for_side(x).unwrap_or(I256::ZERO);
        Band {
            target: s(l),
            min: s(lo),
            max: s(hi),
            emergency: Some(Emergency { action: "close", leverage: None, equity: Some(self.settings.min_margin) }),
        }
    }

    fn observe_price(&mut self, _now: u64, price: U256) -> Result<(), Error> {
        if price.is_zero() {
            return Err(MathError::DivisionByZero("price").into());
        }
        self.oracle_price = price;
        Ok(())
    }

    fn supply(&self) -> U256 {
        self.supply
    }

    fn balance_of(&self, holder: Address) -> U256 {
        self.balances.get(&holder.to_string()).copied().unwrap_or_default()
    }

    fn balances(&self) -> Vec<(Address, U256)> {
        self.balances.iter().filter_map(|(k, v)| k.parse::<Address>().ok().map(|a| (a, *v))).collect()
    }

    fn transfer(&mut self, from: Address, to: Address, amount: U256) -> Result<(), Error> {
        let (f, t) = (from.to_string(), to.to_string());
        let held = self.balances.get(&f).copied().unwrap_or_default();
        if amount.is_zero() || amount > held {
            return Err(crate::strategy::threshold::ThresholdError::InsufficientBalance {
                holder: f,
                balance: held,
                amount,
            }
            .into());
        }
        if held == amount {
            self.balances.remove(&f);
        } else {
            self.balances.insert(f.clone(), held - amount);
        }
        *self.balances.entry(t.clone()).or_default() += amount;
        // the exit load follows the tokens: the receiver's window runs from the later mint
        if let Some(m) = self.last_mint.get(&f).copied() {
            let e = self.last_mint.entry(t).or_insert(m);
            *e = (*e).max(m);
        }
        Ok(())
    }

    fn nav_per_token(&self, now: u64) -> Result<U256, Error> {
        if self.supply.is_zero() {
            return Ok(U256::ZERO);
        }
        Ok(self.exchange_rate(now, self.oracle_price)?)
    }

    fn exposure(&self, now: u64) -> Result<Exposure, Error> {
        Ok(Exposure {
            units: self.size(),
            equity: self.remaining_margin(now, self.oracle_price)?,
            price: self.oracle_price,
        })
    }

    fn leverage(&self, now: u64) -> Result<I256, Error> {
        self.signed_for_side(ThresholdToken::leverage(self, now, self.oracle_price)?)
    }

    fn health(&self, now: u64) -> Result<Health, Error> {
        let m = self.remaining_margin(now, self.oracle_price)?;
        let n = pmul(self.size().unsigned_abs(), self.oracle_price)?;
        Ok(Health::MarginRatio(if n.is_zero() { U256::MAX } else { pdiv(m, n)? }))
    }

    fn liquidation_leverage(&self) -> f64 {
        // liquidation when margin ≤ |q|·P·buffer + fees: about 1 / buffer for a large position
        let b = to_f64(self.market.params.liquidation_buffer_ratio, 18)
            + to_f64(self.market.params.liquidation_fee_ratio, 18);
        if b <= 0.0 { f64::INFINITY } else { 1.0 / b }
    }

    fn issue(&mut self, holder: Address, value: U256, now: u64) -> Result<Flow, Error> {
        let tokens = self.mint(&holder.to_string(), value, U256::ZERO, now, self.oracle_price)?;
        Ok(Flow { tokens, value, fee: U256::ZERO })
    }

    fn redeem(&mut self, holder: Address, tokens: U256, now: u64) -> Result<Flow, Error> {
        let before = self.fees_collected;
        let value = ThresholdToken::redeem(self, &holder.to_string(), tokens, U256::ZERO, now, self.oracle_price)?;
        Ok(Flow { tokens, value, fee: self.fees_collected.saturating_sub(before) })
    }

    fn wanted(&self, now: u64) -> Result<Vec<Candidate>, Error> {
        Ok(self.evaluation_due(now)?.map(candidate).into_iter().collect())
    }

    fn execute(&mut self, _caller: Address, _call: &Candidate, now: u64) -> Result<Done, Error> {
        let e = self.evaluate(now, self.oracle_price)?;
        let (event, traded) = match e {
            Evaluation::Idle => ("idle", I256::ZERO),
            // a trigger whose delta rounds to nothing submits no order
            Evaluation::Rebalanced(dq) if dq.is_zero() => ("idle", dq),
            Evaluation::Rebalanced(dq) => ("rebalance", dq),
            Evaluation::Closed => ("close", -self.size()),
            Evaluation::ReverseSplit(_) => ("reverse-split", I256::ZERO),
        };
        // the order's venue fee is paid when the venue's keeper fills it
        Ok(Done { event, traded, ..Done::default() })
    }

    fn dry_run(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, Error> {
        self.clone().execute(caller, call, now)
    }

    fn on_price(&mut self, now: u64, price: U256) -> Result<Vec<String>, Error> {
        // the venue's keeper fills the pending order once executable, at this price; past the
        // maximum age a refused order is cancelled
        let mut next = self.clone();
        next.observe_price(now, price)?;
        let mut did = Vec::new();
        if let Some(order) = next.market.orders.get(&next.account).cloned()
            && now > order.intention_time + next.market.params.delayed_order_min_age
        {
            let account = next.account;
            match next.market.execute_delayed_order(account, now, price, false) {
                Ok(_) => did.push(format!("filled {}", crate::math::SignedWad(order.size_delta))),
                Err(e) if now.saturating_sub(order.intention_time) > next.market.params.delayed_order_max_age => {
                    next.market.cancel_delayed_order(account, now, price, false).map_err(ThresholdError::from)?;
                    did.push(format!("cancelled ({e})"));
                }
                Err(e) => did.push(format!("refused ({e})")),
            }
        }
        *self = next;
        Ok(did)
    }

    fn liquidate(&mut self, now: u64) -> Result<U256, Error> {
        let p = self.oracle_price;
        if !self.market.can_liquidate(self.account, now, p).map_err(ThresholdError::from)? {
            return Err(crate::error::FliError::Revert(
                "the position is above its liquidation margin; nothing to liquidate",
            )
            .into());
        }
        let mut next = self.clone();
        let account = next.account;
        let fee = next.market.liquidate(account, now, p).map_err(ThresholdError::from)?;
        *self = next;
        Ok(fee)
    }

    fn apply_settings(
        &mut self,
        new: &crate::product::AnyProduct,
        old: &crate::product::AnyProduct,
    ) -> Result<Vec<String>, Error> {
        use crate::product::AnyProduct;
        let (AnyProduct::Threshold(new), AnyProduct::Threshold(old)) = (new, old) else {
            return Err(crate::error::FliError::Revert("a product cannot change its kind; create a new product").into());
        };
        if new.underlying != old.underlying || new.venue != old.venue {
            return Err(crate::error::FliError::Revert(
                "the underlying and the venue cannot change on a running product; create a new product",
            )
            .into());
        }
        let mut changed = Vec::new();
        if new.settings != old.settings {
            self.settings = new.settings.clone();
            changed.push("methodology".to_string());
        }
        if new.policy != old.policy {
            self.policy = new.policy;
            changed.push("policy".to_string());
        }
        if new.symbol != old.symbol {
            self.symbol = new.symbol.clone();
            changed.push("token.symbol".to_string());
        }
        if new.name != old.name {
            changed.push("token.name".to_string());
        }
        Ok(changed)
    }

    fn min_issue_value(&self) -> U256 {
        // every order pays the venue's keeper deposit: an issue must cover it twice
        self.market.params.min_keeper_fee.saturating_mul(U256::from(2u64))
    }

    fn funding_paid(&self, now: u64) -> Result<I256, Error> {
        Ok(self.market.funding_paid_by(self.account, now, self.oracle_price).map_err(ThresholdError::from)?)
    }

    fn venue_figures(&self, now: u64) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        out.insert("size".into(), crate::math::SignedWad(self.size()).to_string());
        if let Some(pos) = self.market.positions.get(&self.account) {
            out.insert("margin_usd".into(), crate::math::Wad(pos.margin).to_string());
        }
        if let Ok(m) = self.remaining_margin(now, self.oracle_price) {
            out.insert("remaining_margin_usd".into(), crate::math::Wad(m).to_string());
        }
        if let Some(o) = self.market.orders.get(&self.account) {
            out.insert("pending_order".into(), crate::math::SignedWad(o.size_delta).to_string());
            out.insert("pending_since".into(), o.intention_time.to_string());
        }
        out.insert("closed".into(), self.closed.to_string());
        out
    }

    fn accrue_fees(&mut self, _now: u64) -> Result<U256, Error> {
        // the streaming fee is charged on notional with each rebalance (§2.9)
        Ok(U256::ZERO)
    }

    fn screen(&self, now: u64, e: &Exposure) -> Screen {
        if self.policy != Policy::Threshold || self.pending() || self.supply.is_zero() || self.closed {
            return Screen::ALWAYS;
        }
        let q = to_f64(self.size().unsigned_abs(), 18);
        if q == 0.0 {
            return Screen::ALWAYS;
        }
        let p = to_f64(self.oracle_price, 18);
        // §2.4's trigger is against the stored margin: |q|·P / M₀ − L reaches ±θ at fixed prices
        let stored = self.market.positions.get(&self.account).map(|x| to_f64(x.margin, 18)).unwrap_or(0.0);
        let (l, t) = (to_f64(self.settings.target_leverage, 18), to_f64(self.settings.rebalance_threshold, 18));
        let (mut lo, mut hi) = (((l - t) * stored / q).max(0.0), (l + t) * stored / q);
        // close under the minimum margin: on the adverse side
        if let Some(x) = e.price_at_equity(to_f64(self.settings.min_margin, 18)) {
            if self.settings.side == Side::Long { lo = lo.max(x) } else { hi = hi.min(x) }
        }
        if !(lo < p && p < hi) {
            return Screen::ALWAYS;
        }
        // funding moves the margin between reads (held near zero by the skew arbitrage): re-read daily
        Screen {
            price_lo: shrink(Some(lo), p, 0.01, false),
            price_hi: shrink(Some(hi), p, 0.01, true),
            until: now + 86_400,
        }
    }
}
