//! A threshold-methodology token on a Synthetix-Perps-V2-style market (`methodologies.md`
//! §2.3–§2.10): mint and redeem at the exchange rate with price impact, leverage-scaled
//! redemption fee and exit load; keeper and user-triggered full rebalances through delayed
//! orders; the pending-order lock; close below the minimum margin and reopen above it; a
//! streaming fee on notional. Every operation is atomic: on error nothing changes.

use super::{
    Side, ThresholdError, ThresholdSettings, can_rebalance, deviation, exchange_rate, exit_load_rate, impact,
    implied_trade, limit_price, max_base_asset_amount, mint_out, rebalance_delta, redemption_fee, streaming_fee,
};
use crate::math::{I256, U256, add, pmul, sub};
use crate::venue::synthetix::PerpsMarket;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When the token trades back to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// §2.4: when |N/M₀ − L| ≥ θ.
    Threshold,
    /// `methodologies.md` §4: once a day at the scheduled time, and intraday on a trigger.
    Daily(crate::strategy::daily::DailySettings),
    /// `methodologies.md` §3 (mark basis): hold `L × NAV` within a tolerance, cut to the safe
    /// size when a safety margin is breached, re-lever when safe, reverse-split a cheap token.
    Continuous(crate::strategy::continuous::ContinuousSettings),
}

/// What an evaluation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evaluation {
    /// Nothing due (or an order is pending).
    Idle,
    /// A full rebalance order was submitted; Δq in base wad.
    Rebalanced(I256),
    /// Margin fell under the minimum: a closing order was submitted.
    Closed,
    /// Reverse split: every balance divided by this factor (floored).
    ReverseSplit(u64),
}

/// The token and its venue account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdToken {
    /// Settings.
    pub settings: ThresholdSettings,
    /// The venue (the token trades as `account`).
    pub market: PerpsMarket,
    /// The token's account on the venue.
    pub account: u64,
    /// Total supply (wad).
    pub supply: U256,
    /// Balances by holder.
    pub balances: BTreeMap<String, U256>,
    /// Last mint time by holder (for the exit load).
    pub last_mint: BTreeMap<String, u64>,
    /// The venue's max market value (base units) for the per-transaction cap.
    pub max_market_value: U256,
    /// The position was closed under the minimum margin.
    pub closed: bool,
    /// Streaming-fee clock (starts at the first deposit).
    pub fee_clock: Option<u64>,
    /// Fees paid to the recipient so far (redemption, streaming, keeper).
    pub fees_collected: U256,
    /// When the token trades back to target.
    pub policy: Policy,
    /// Time and price of the last rebalance order (the daily policy's reference).
    pub last_rebalance: Option<(u64, U256)>,
    /// Entry basis (§3.3): capital deposited net of redemptions, D.
    pub capital_base: U256,
    /// Entry basis: exposure at entry prices, X.
    pub entry_exposure: U256,
    /// |q| when X was last brought up to date.
    pub synced_size: U256,
    /// Ticker.
    #[serde(default)]
    pub symbol: String,
    /// The venue's last price of the underlying (USD wad), for the [`crate::leveraged`]
    /// interface; the methods here take the price explicitly.
    #[serde(default)]
    pub oracle_price: U256,
}

impl ThresholdToken {
    /// A token with no supply on `market`, trading as `account`.
    pub fn new(settings: ThresholdSettings, market: PerpsMarket, account: u64) -> Self {
        let max_market_value = market.params.max_market_value;
        Self {
            settings,
            market,
            account,
            supply: U256::ZERO,
            balances: BTreeMap::new(),
            last_mint: BTreeMap::new(),
            max_market_value,
            closed: false,
            fee_clock: None,
            fees_collected: U256::ZERO,
            policy: Policy::Threshold,
            last_rebalance: None,
            capital_base: U256::ZERO,
            entry_exposure: U256::ZERO,
            synced_size: U256::ZERO,
            symbol: String::new(),
            oracle_price: U256::ZERO,
        }
    }

    /// Remaining margin on the venue.
    pub fn remaining_margin(&self, now: u64, price: U256) -> Result<U256, ThresholdError> {
        Ok(self.market.remaining_margin(self.account, now, price)?)
    }

    /// Price per token (wad): remaining margin over supply, 1.0 with no supply.
    pub fn exchange_rate(&self, now: u64, price: U256) -> Result<U256, ThresholdError> {
        Ok(exchange_rate(self.remaining_margin(now, price)?, self.supply)?)
    }

    /// Signed position size (base wad).
    pub fn size(&self) -> I256 {
        self.market.positions.get(&self.account).map(|p| p.size).unwrap_or(I256::ZERO)
    }

    /// Current leverage `|q|·P / remaining margin` (wad; 0 with no margin).
    pub fn leverage(&self, now: u64, price: U256) -> Result<U256, ThresholdError> {
        let m = self.remaining_margin(now, price)?;
        if m.is_zero() {
            return Ok(U256::ZERO);
        }
        Ok(crate::math::pdiv(pmul(self.size().unsigned_abs(), price)?, m)?)
    }

    /// An order is waiting on the venue.
    pub fn pending(&self) -> bool {
        self.market.orders.contains_key(&self.account)
    }

    /// §2.4: the trigger against the stored margin.
    pub fn deviation(&self, price: U256) -> Result<U256, ThresholdError> {
        let stored = self.market.positions.get(&self.account).map(|p| p.margin).unwrap_or(U256::ZERO);
        let notional = pmul(self.size().unsigned_abs(), price)?;
        Ok(deviation(notional, stored, self.settings.target_leverage)?)
    }

    /// §2.4 and §2.6: a rebalance may start (not while closed and still under the minimum).
    pub fn can_rebalance(&self, now: u64, price: U256) -> Result<bool, ThresholdError> {
        let m = self.remaining_margin(now, price)?;
        if self.closed && m < self.settings.min_margin {
            return Ok(false);
        }
        match self.policy {
            Policy::Threshold => {
                Ok(can_rebalance(m, self.pending(), self.deviation(price)?, self.settings.rebalance_threshold))
            }
            Policy::Continuous(c) => {
                if m.is_zero() || self.pending() {
                    return Ok(false);
                }
                Ok(self.continuous_target(now, price, &c)?.is_some())
            }
            Policy::Daily(d) => {
                if m.is_zero() || self.pending() {
                    return Ok(false);
                }
                let Some((last, last_price)) = self.last_rebalance else { return Ok(true) };
                if self.size().is_zero() && !self.closed {
                    return Ok(true);
                }
                let due = crate::strategy::daily::due(&d, now, last, self.leverage(now, price)?, price, last_price);
                Ok(due != crate::strategy::daily::Due::No)
            }
        }
    }

    /// The notional the continuous policy wants now, or `None` when nothing is due (§3.6,
    /// venue model, mark basis).
    pub fn continuous_target(
        &self,
        now: u64,
        price: U256,
        c: &crate::strategy::continuous::ContinuousSettings,
    ) -> Result<Option<U256>, ThresholdError> {
        use crate::strategy::continuous::{Action, Tick, decide};
        let v = self.remaining_margin(now, price)?.saturating_sub(self.market.params.min_keeper_fee);
        let notional = pmul(self.size().unsigned_abs(), price)?;
        let target = pmul(v, self.settings.target_leverage)?;
        let tick = Tick {
            side: self.settings.side,
            account_value: v,
            notional,
            target_notional: target,
            maintenance: c.maintenance,
            initial: c.initial,
            lsm_min: c.lsm_min,
            mcsm_min: c.mcsm_min,
            partial_relever: c.partial_relever,
        };
        if c.seed_model {
            return self.seed_target(price, notional, c);
        }
        if c.entry_basis {
            // Safety first (rows 1–2 on the real notional); then exposure at entry against L·D.
            let safety = decide(&Tick { target_notional: notional, ..tick })?;
            if let Action::MandatoryDelever(n) | Action::ProtectiveDelever(n) = safety {
                return Ok(Some(n - pmul(n, c.tolerance)?));
            }
            let x = self.entry_exposure_now()?;
            let goal = pmul(self.capital_base, self.settings.target_leverage)?;
            if x.abs_diff(goal) <= pmul(goal, c.tolerance)? {
                return Ok(None);
            }
            if x > goal {
                return Ok(Some(notional.saturating_sub(x - goal)));
            }
            let want = notional + (goal - x);
            return Ok(match decide(&Tick { target_notional: want, ..tick })? {
                Action::Relever(n) if n > notional => Some(n),
                _ => None,
            });
        }
        let band = pmul(target, c.tolerance)?;
        Ok(match decide(&tick)? {
            // Aim inside the cap by the tolerance, so that the order's fees and the venue's
            // keeper deposit do not leave it a hair above and re-trigger next tick.
            Action::MandatoryDelever(n) | Action::ProtectiveDelever(n) => Some(n - pmul(n, c.tolerance)?),
            Action::Relever(n) | Action::ReduceToTarget(n) => (n.abs_diff(notional) > band).then_some(n),
            Action::Hold => None,
        })
    }

    /// §3.6 with the `seed` price levels (short, entry basis). The levels depend on the average
    /// entry `p̄ = X/|q|`, the entry exposure X and the capital D, so sizes are found by
    /// bisection on base units (0.0001 lots, rounded down). X follows the fills as the entry
    /// basis tracks it: a cut removes the traded notional at the price, an addition adds it.
    /// Like the venue model, a cut aims inside the floor by the tolerance (fees and impact).
    fn seed_target(
        &self,
        price: U256,
        notional: U256,
        c: &crate::strategy::continuous::ContinuousSettings,
    ) -> Result<Option<U256>, ThresholdError> {
        use crate::strategy::continuous::{largest_safe, seed_margins};
        let q = self.size().unsigned_abs();
        let x = self.entry_exposure_now()?;
        let d = self.capital_base;
        if d.is_zero() {
            return Ok(None);
        }
        let lambda = crate::math::pdiv(crate::math::WAD, c.initial)?;
        let lot = U256::from(100_000_000_000_000u64); // 0.0001 base units
        let safe = |p_bar: U256, x: U256| -> Result<bool, crate::math::MathError> {
            let (lsm, mcsm) = seed_margins(p_bar, x, d, c.maintenance, lambda, price)?;
            Ok(lsm >= c.lsm_min && mcsm >= c.mcsm_min)
        };
        if !q.is_zero() && !safe(crate::math::pdiv(x, q)?, x)? {
            // rows 1–2: the largest size whose margins clear both floors after the cut
            let cut = |q2: U256| -> Result<bool, crate::math::MathError> {
                if q2.is_zero() {
                    return Ok(true);
                }
                let x2 = x.saturating_sub(pmul(q - q2, price)?);
                safe(crate::math::pdiv(x2, q2)?, x2)
            };
            let n = pmul(largest_safe(q, lot, cut)?, price)?;
            return Ok(Some(n - pmul(n, c.tolerance)?));
        }
        let goal = pmul(d, self.settings.target_leverage)?;
        if x.abs_diff(goal) <= pmul(goal, c.tolerance)? {
            return Ok(None);
        }
        if x > goal {
            return Ok(Some(notional.saturating_sub(x - goal)));
        }
        // row 3: add Δx of exposure at the price; p̄ moves to (X + Δx)/(|q| + Δx/P)
        let after = |dx: U256| -> Result<bool, crate::math::MathError> {
            let q2 = add(q, crate::math::pdiv(dx, price)?, "size")?;
            let x2 = add(x, dx, "exposure")?;
            safe(crate::math::pdiv(x2, q2)?, x2)
        };
        let want = goal - x;
        if after(want)? {
            return Ok(Some(notional + want));
        }
        if !c.partial_relever {
            return Ok(None);
        }
        let dx = largest_safe(want, pmul(lot, price)?, after)?;
        Ok((!dx.is_zero()).then(|| notional + dx))
    }

    /// Entry exposure with any fills since the last sync folded in: a larger |q| adds the
    /// added units at the fill price, a smaller one removes the traded notional (floored at 0).
    pub fn entry_exposure_now(&self) -> Result<U256, ThresholdError> {
        let q = self.size().unsigned_abs();
        let fill = self.market.last_fills.get(&self.account).copied().unwrap_or(U256::ZERO);
        Ok(if q >= self.synced_size {
            add(self.entry_exposure, pmul(q - self.synced_size, fill)?, "entry exposure")?
        } else {
            self.entry_exposure.saturating_sub(pmul(self.synced_size - q, fill)?)
        })
    }

    fn sync_entry(&mut self) -> Result<(), ThresholdError> {
        self.entry_exposure = self.entry_exposure_now()?;
        self.synced_size = self.size().unsigned_abs();
        Ok(())
    }

    fn cap(&self, price: U256) -> Result<U256, ThresholdError> {
        Ok(max_base_asset_amount(self.max_market_value, price, self.settings.max_base_asset_amount_buffer)?)
    }

    fn withdraw(&mut self, amount: U256, now: u64, price: U256) -> Result<(), ThresholdError> {
        if !amount.is_zero() {
            let a = I256::try_from(amount).map_err(|_| crate::math::MathError::Overflow("int256"))?;
            self.market.transfer_margin(self.account, -a, now, price)?;
        }
        Ok(())
    }

    /// §2.7: mint for `base_in` (sUSD wad). Returns the tokens issued.
    pub fn mint(
        &mut self,
        holder: &str,
        base_in: U256,
        min_out: U256,
        now: u64,
        price: U256,
    ) -> Result<U256, ThresholdError> {
        self.atomically(|t| t.mint_inner(holder, base_in, min_out, now, price))
    }

    /// Run `f` on a copy and keep it only if `f` succeeds: every entry point is atomic.
    fn atomically<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ThresholdError>) -> Result<T, ThresholdError> {
        let mut next = self.clone();
        let out = f(&mut next)?;
        *self = next;
        Ok(out)
    }

    fn mint_inner(
        &mut self,
        holder: &str,
        base_in: U256,
        min_out: U256,
        now: u64,
        price: U256,
    ) -> Result<U256, ThresholdError> {
        if base_in.is_zero() {
            return Ok(U256::ZERO);
        }
        if self.pending() {
            return Err(ThresholdError::LeverageUpdatePending);
        }
        let rate = self.exchange_rate(now, price)?;
        if rate.is_zero() {
            return Err(ThresholdError::Inactive);
        }
        let limit = self.cap(price)?;
        if base_in > limit {
            return Err(ThresholdError::ExceedsLimit { amount: base_in, limit });
        }
        // No trade follows while closed (§2.6), so no impact is charged.
        let charged = if self.closed {
            U256::ZERO
        } else {
            let dq = implied_trade(self.settings.side, true, base_in, self.settings.target_leverage, price)?;
            impact(dq, price, self.market.fill_price(dq, price)?)?
        };
        let out = mint_out(base_in, charged, rate)?;
        if out < min_out {
            return Err(ThresholdError::InsufficientAmount { out, min_out });
        }
        let a = I256::try_from(base_in).map_err(|_| crate::math::MathError::Overflow("int256"))?;
        self.sync_entry()?;
        self.market.transfer_margin(self.account, a, now, price)?;
        self.capital_base = add(self.capital_base, sub(base_in, charged, "cash in")?, "capital")?;
        self.fee_clock.get_or_insert(now);
        self.supply = add(self.supply, out, "supply")?;
        let b = self.balances.entry(holder.to_string()).or_default();
        *b = add(*b, out, "balance")?;
        self.last_mint.insert(holder.to_string(), now);
        if self.can_rebalance(now, price)? {
            self.rebalance_inner(now, price, false)?;
        }
        Ok(out)
    }

    /// §2.8: redeem `tokens`. Returns what the holder is paid (sUSD wad).
    pub fn redeem(
        &mut self,
        holder: &str,
        tokens: U256,
        min_out: U256,
        now: u64,
        price: U256,
    ) -> Result<U256, ThresholdError> {
        self.atomically(|t| t.redeem_inner(holder, tokens, min_out, now, price))
    }

    fn redeem_inner(
        &mut self,
        holder: &str,
        tokens: U256,
        min_out: U256,
        now: u64,
        price: U256,
    ) -> Result<U256, ThresholdError> {
        if tokens.is_zero() {
            return Ok(U256::ZERO);
        }
        if self.pending() {
            return Err(ThresholdError::LeverageUpdatePending);
        }
        let balance = self.balances.get(holder).copied().unwrap_or(U256::ZERO);
        if tokens > balance {
            return Err(ThresholdError::InsufficientBalance { holder: holder.to_string(), balance, amount: tokens });
        }
        let base = pmul(tokens, self.exchange_rate(now, price)?)?;
        let limit = self.cap(price)?;
        if base > limit {
            return Err(ThresholdError::ExceedsLimit { amount: base, limit });
        }
        let l = self.settings.target_leverage;
        let fee = redemption_fee(base, l, self.settings.redemption_fee)?;
        let charged = if self.closed || self.size().is_zero() {
            U256::ZERO
        } else {
            let dq = implied_trade(self.settings.side, false, base, l, price)?;
            impact(dq, price, self.market.fill_price(dq, price)?)?
        };
        let load = pmul(
            base,
            exit_load_rate(
                self.settings.exit_load,
                self.settings.exit_load_window,
                now,
                self.last_mint.get(holder).copied(),
            )?,
        )?;
        let out = sub(
            base,
            add(add(fee, charged, "fee + impact")?, load, "fee + impact + load")?,
            "redeemed amount less fees",
        )?;
        if out < min_out {
            return Err(ThresholdError::InsufficientAmount { out, min_out });
        }
        // The venue refuses a withdrawal that would leave the position too thin: that is the
        // sequential-redeeming limit, reported as ExceedsLimit.
        let withdrawn = add(out, fee, "out + fee")?;
        if let Err(e) = self.withdraw(withdrawn, now, price) {
            return Err(match e {
                ThresholdError::Venue(_) => {
                    ThresholdError::ExceedsLimit { amount: base, limit: self.max_redeemable_base(now, price)? }
                }
                other => other,
            });
        }
        self.fees_collected = add(self.fees_collected, fee, "fees")?;
        self.sync_entry()?;
        self.capital_base = self.capital_base.saturating_sub(out);
        self.supply = sub(self.supply, tokens, "supply")?;
        let b = self.balances.entry(holder.to_string()).or_default();
        *b = sub(*b, tokens, "balance")?;
        if self.can_rebalance(now, price)? {
            self.rebalance_inner(now, price, false)?;
        }
        Ok(out)
    }

    /// The largest margin withdrawal the venue would accept now (bisection over wei; 0 when
    /// none), the base amount behind §2.8's `max_redeemable_now`.
    pub fn max_redeemable_base(&self, now: u64, price: U256) -> Result<U256, ThresholdError> {
        let (mut lo, mut hi) = (U256::ZERO, self.remaining_margin(now, price)?);
        while lo < hi {
            let mid = hi - (hi - lo) / U256::from(2);
            let mut trial = self.market.clone();
            let ok =
                I256::try_from(mid).ok().is_some_and(|a| trial.transfer_margin(self.account, -a, now, price).is_ok());
            if ok { lo = mid } else { hi = mid - U256::from(1) }
        }
        Ok(lo)
    }

    /// §2.5: a keeper-initiated rebalance (pays `rebalance_fee`). Returns Δq.
    pub fn rebalance(&mut self, now: u64, price: U256) -> Result<I256, ThresholdError> {
        if !self.can_rebalance(now, price)? {
            return Err(ThresholdError::CannotRebalance);
        }
        self.atomically(|t| t.rebalance_inner(now, price, true))
    }

    fn charge_streaming_fee(&mut self, now: u64, price: U256) -> Result<U256, ThresholdError> {
        let Some(t) = self.fee_clock else { return Ok(U256::ZERO) };
        let notional = pmul(self.size().unsigned_abs(), price)?;
        let fee = streaming_fee(notional, self.settings.streaming_fee, now.saturating_sub(t))?;
        if !fee.is_zero() {
            self.fee_clock = Some(now); // the clock advances only when a fee is charged
        }
        Ok(fee)
    }

    fn rebalance_inner(&mut self, now: u64, price: U256, keeper: bool) -> Result<I256, ThresholdError> {
        let streaming = self.charge_streaming_fee(now, price)?;
        let keeper_fee = if keeper { self.settings.rebalance_fee } else { U256::ZERO };
        let fees = add(streaming, keeper_fee, "fees")?;
        self.withdraw(fees, now, price)?;
        self.fees_collected = add(self.fees_collected, fees, "fees")?;
        let margin = self.remaining_margin(now, price)?;
        let notional = pmul(self.size().unsigned_abs(), price)?;
        let dq = match self.policy {
            Policy::Continuous(c) => {
                let want = self.continuous_target(now, price, &c)?.unwrap_or(notional);
                let q = I256::try_from(crate::math::pdiv(want, price)?)
                    .map_err(|_| crate::math::MathError::Overflow("int256"))?;
                let signed = if self.settings.side == Side::Short { -q } else { q };
                signed - self.size()
            }
            _ => rebalance_delta(
                self.settings.side,
                margin,
                self.market.params.min_keeper_fee,
                self.settings.target_leverage,
                price,
                notional,
            )?,
        };
        if dq.is_zero() {
            self.last_rebalance = Some((now, price));
            return Ok(dq);
        }
        let fill = self.market.fill_price(dq, price)?;
        let limit = limit_price(fill, dq, self.settings.slippage_tolerance)?;
        self.market.submit_delayed_order(self.account, dq, limit, now, price)?;
        self.closed = false;
        self.last_rebalance = Some((now, price));
        Ok(dq)
    }

    /// One evaluation (a keeper's tick): close under the minimum margin, otherwise rebalance
    /// when the trigger holds (paying the keeper fee).
    pub fn evaluate(&mut self, now: u64, price: U256) -> Result<Evaluation, ThresholdError> {
        if self.pending() {
            return Ok(Evaluation::Idle);
        }
        self.sync_entry()?;
        if let Policy::Continuous(c) = self.policy
            && !self.supply.is_zero()
        {
            let rate = self.exchange_rate(now, price)?;
            let factor = crate::strategy::continuous::reverse_split_factor(
                rate,
                c.reverse_split_threshold,
                c.reverse_split_ratio,
            )?;
            if factor > 1 && !rate.is_zero() {
                let f = U256::from(factor);
                for b in self.balances.values_mut() {
                    *b /= f;
                }
                self.supply = self.balances.values().fold(U256::ZERO, |a, b| a + *b);
                return Ok(Evaluation::ReverseSplit(factor));
            }
        }
        let size = self.size();
        let m = self.remaining_margin(now, price)?;
        if !size.is_zero() && m < self.settings.min_margin && !m.is_zero() {
            return self.atomically(|t| {
                let fill = t.market.fill_price(-size, price)?;
                let limit = limit_price(fill, -size, t.settings.slippage_tolerance)?;
                t.market.submit_delayed_order(t.account, -size, limit, now, price)?;
                t.closed = true;
                Ok(Evaluation::Closed)
            });
        }
        if self.can_rebalance(now, price)? {
            return Ok(Evaluation::Rebalanced(self.rebalance(now, price)?));
        }
        Ok(Evaluation::Idle)
    }

    /// The side, for reports.
    pub fn side(&self) -> Side {
        self.settings.side
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::synthetix::PerpsParams;

    fn w(s: &str) -> U256 {
        crate::math::Wad::parse(s).unwrap().0
    }

    fn token(side: Side, l: &str, theta: &str) -> ThresholdToken {
        let mut s = ThresholdSettings::defaults(side, w(l), w(theta));
        s.exit_load = U256::ZERO;
        ThresholdToken::new(s, crate::venue::synthetix::PerpsMarket::new(PerpsParams::eth_optimism(), 0), 1)
    }

    /// Let the venue keeper fill the pending order.
    fn fill(t: &mut ThresholdToken, now: u64, price: U256) {
        t.market.execute_delayed_order(t.account, now, price, false).unwrap();
    }

    #[test]
    fn first_mint_opens_the_position_after_the_order_fills() {
        let mut t = token(Side::Long, "2", "0.15");
        let p = w("2000");
        let out = t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        // At 1.0 less the implied trade's impact: 10 ETH at zero skew fill 0.01 above the oracle.
        assert_eq!(out, w("10000") - w("0.1"), "the first mint pays its own price impact");
        assert!(t.pending(), "the mint's own rebalance submitted an order");
        assert_eq!(t.mint("bob", w("1"), U256::ZERO, 1, p), Err(ThresholdError::LeverageUpdatePending));
        assert!(matches!(t.redeem("alice", w("1"), U256::ZERO, 1, p), Err(ThresholdError::LeverageUpdatePending)));
        fill(&mut t, 5, p);
        let lev = t.leverage(5, p).unwrap();
        assert!(lev > w("1.99") && lev < w("2.01"), "leverage after the fill {lev}");
        assert!(t.size().is_positive());
    }

    /// The entry exposure adds and removes units at the price they traded at: the token's own
    /// record of its last fill, not the venue's `lastPrice`, which a margin transfer moves to
    /// the oracle and a close clears (`perp.md` C1).
    #[test]
    fn entry_exposure_moves_at_the_fill_not_the_venues_last_price() {
        let mut t = token(Side::Long, "2", "0.15");
        let p = w("2000");
        t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        let opened = t.market.last_fills[&t.account];
        assert!(opened > p, "a buy at zero skew fills above the oracle");
        t.sync_entry().unwrap();
        let entry = t.entry_exposure;
        // a margin transfer at another price marks the venue's position there…
        t.market.transfer_margin(t.account, I256::try_from(w("1")).unwrap(), 10, w("2100")).unwrap();
        assert_eq!(t.market.positions[&t.account].last_price, w("2100"));
        assert_eq!(t.entry_exposure_now().unwrap(), entry, "…which is not a trade");
        // a close clears the venue's last price; the token still knows what it sold at
        let size = t.size();
        let closed = t.market.modify_position(t.account, -size, 20, p, None).unwrap();
        assert_eq!(t.market.positions[&t.account].last_price, U256::ZERO);
        let want = entry.saturating_sub(crate::math::pmul(size.unsigned_abs(), closed.price).unwrap());
        assert_eq!(t.entry_exposure_now().unwrap(), want);
    }

    #[test]
    fn seed_2x_rebalances_after_a_fall_of_theta_over_l_and_not_before() {
        let mut t = token(Side::Long, "2", "0.15");
        let p = w("2000");
        t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        assert_eq!(t.evaluate(60, w("1860")).unwrap(), Evaluation::Idle, "−7% is under θ/L");
        // θ/L = 7.5%; the venue's keeper deposit and fees leave the position a little under 2x
        // of the stored margin, so the trigger needs a slightly larger fall.
        assert!(t.deviation(w("1850")).unwrap() < w("0.15"));
        let down = w("1845");
        let dev = t.deviation(down).unwrap();
        assert!(dev >= w("0.15"), "deviation after −7.75%: {dev}");
        let before_fees = t.fees_collected;
        let Evaluation::Rebalanced(dq) = t.evaluate(120, down).unwrap() else { panic!("due") };
        assert!(dq.is_negative(), "a long delevers by selling");
        assert!(t.fees_collected >= before_fees + w("5"), "the keeper fee was charged");
        fill(&mut t, 125, down);
        let lev = t.leverage(125, down).unwrap();
        assert!(lev > w("1.99") && lev < w("2.01"), "back to target: {lev}");
        assert_eq!(t.rebalance(130, down), Err(ThresholdError::CannotRebalance));
    }

    #[test]
    fn redeem_charges_leverage_scaled_fee_and_refuses_overdraw() {
        let mut t = token(Side::Short, "3", "0.3");
        let p = w("2000");
        t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        let before = t.clone();
        let held = t.balances["alice"];
        assert!(matches!(
            t.redeem("alice", w("20000"), U256::ZERO, 10, p),
            Err(ThresholdError::InsufficientBalance { .. })
        ));
        assert!(matches!(t.redeem("alice", w("100"), w("100"), 10, p), Err(ThresholdError::InsufficientAmount { .. })));
        assert_eq!(t, before, "refusals change nothing");
        let rate = t.exchange_rate(10, p).unwrap();
        let out = t.redeem("alice", w("100"), U256::ZERO, 10, p).unwrap();
        let base = pmul(w("100"), rate).unwrap();
        let fee = pmul(pmul(base, w("3")).unwrap(), w("0.003")).unwrap();
        assert!(out <= base - fee, "paid {out}, at most {base} − {fee}");
        assert_eq!(t.supply, held - w("100"));
        assert_eq!(t.balances["alice"], held - w("100"));
    }

    #[test]
    fn closes_under_the_minimum_margin_and_reopens_on_deposit() {
        let mut t = token(Side::Long, "2", "0.15");
        let p = w("2000");
        t.mint("alice", w("150"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        // A −30% move takes a 2x token's margin from ~146 to ~60, under $100.
        let low = w("1400");
        assert_eq!(t.evaluate(60, low).unwrap(), Evaluation::Closed);
        fill(&mut t, 65, low);
        assert!(t.size().is_zero() && t.closed);
        assert_eq!(t.evaluate(120, low).unwrap(), Evaluation::Idle, "closed under the minimum: no rebalance");
        // A deposit lifts margin over $100: the mint's own rebalance reopens.
        t.mint("bob", w("200"), U256::ZERO, 180, low).unwrap();
        assert!(t.pending() && !t.closed);
        fill(&mut t, 185, low);
        let lev = t.leverage(185, low).unwrap();
        assert!(lev > w("1.98") && lev < w("2.02"), "reopened at target: {lev}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Supply is the sum of balances after any sequence, and a mint redeemed at once never
        /// returns more than was paid in.
        #[test]
        fn supply_is_the_sum_and_mint_redeem_creates_nothing(
            ops in proptest::collection::vec((0u8..4, 1u64..50_000, 0usize..3, -150i64..150), 1..25)
        ) {
            let mut t = token(Side::Long, "3", "0.3");
            let holders = ["a", "b", "c"];
            let mut now = 0u64;
            let mut price = 2000i64 * 100;
            for (op, amount, h, dp) in ops {
                now += 40;
                price = (price + dp).max(100);
                let p = U256::from(price as u64) * U256::from(10u64).pow(U256::from(16));
                let amt = U256::from(amount) * U256::from(10u64).pow(U256::from(18));
                let _ = t.market.execute_delayed_order(t.account, now - 20, p, false);
                match op {
                    0 => { let _ = t.mint(holders[h], amt, U256::ZERO, now, p); }
                    1 => {
                        let bal = t.balances.get(holders[h]).copied().unwrap_or_default();
                        let _ = t.redeem(holders[h], amt.min(bal), U256::ZERO, now, p);
                    }
                    2 => { let _ = t.evaluate(now, p); }
                    _ => {
                        // Mint and redeem at once (before the order fills, after it fills).
                        let mut probe = t.clone();
                        if let Ok(out) = probe.mint("probe", amt, U256::ZERO, now, p) {
                            let _ = probe.market.execute_delayed_order(probe.account, now + 5, p, false);
                            if let Ok(back) = probe.redeem("probe", out, U256::ZERO, now + 5, p) {
                                proptest::prop_assert!(back <= amt, "paid {} got back {}", amt, back);
                            }
                        }
                    }
                }
                let sum = t.balances.values().fold(U256::ZERO, |a, b| a + *b);
                proptest::prop_assert_eq!(sum, t.supply);
            }
        }
    }

    #[test]
    fn daily_policy_trades_at_the_scheduled_time_and_on_the_trigger() {
        let mut t = token(Side::Long, "3", "0.25");
        t.policy = Policy::Daily(crate::strategy::daily::DailySettings {
            side: Side::Long,
            target_leverage: w("3"),
            rebalance_time: 120,
            upper_trigger: w("4"),
            lower_trigger: None,
            adverse_only: false,
        });
        let day = 1_700_006_400; // a midnight UTC
        let p = w("2000");
        t.mint("alice", w("10000"), U256::ZERO, day + 1_000, p).unwrap();
        assert!(t.pending(), "the first mint opens at once");
        fill(&mut t, day + 1_005, p);
        // A 2% move later the same day: not the schedule, not the 4x trigger.
        assert_eq!(t.evaluate(day + 5_000, w("1960")).unwrap(), Evaluation::Idle);
        // The next day at 00:02: the scheduled rebalance, whatever the drift.
        assert!(matches!(t.evaluate(day + 86_400 + 130, w("1960")).unwrap(), Evaluation::Rebalanced(_)));
        fill(&mut t, day + 86_400 + 135, w("1960"));
        // An 11.2% fall takes a 3x to 4x: the intraday trigger fires.
        let low = w("1740");
        assert!(t.leverage(day + 86_400 + 3_600, low).unwrap() >= w("4"));
        assert!(matches!(t.evaluate(day + 86_400 + 3_600, low).unwrap(), Evaluation::Rebalanced(_)));
    }

    fn bear() -> ThresholdToken {
        let mut t = token(Side::Short, "2", "0.25");
        t.policy = Policy::Continuous(crate::strategy::continuous::ContinuousSettings {
            maintenance: w("0.0625"),
            initial: w("0.1"),
            lsm_min: w("0.3"),
            mcsm_min: w("0.15"),
            tolerance: w("0.005"),
            partial_relever: false,
            // The seed's $10 floor on tokens issued at $100; these start at 1.0.
            reverse_split_threshold: w("0.1"),
            reverse_split_ratio: 2,
            entry_basis: false,
            seed_model: false,
        });
        t
    }

    #[test]
    fn continuous_bear_delevers_when_unsafe_and_relevers_when_safe() {
        let mut t = bear();
        let p = w("100");
        t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        let lev = t.leverage(5, p).unwrap();
        assert!(lev > w("1.99") && lev < w("2.01"), "opened at −2x: {lev}");
        // A +2% move: the mark-basis target moves beyond the 0.5% tolerance, so it re-targets.
        assert!(matches!(t.evaluate(60, w("102")).unwrap(), Evaluation::Rebalanced(_)));
        fill(&mut t, 65, w("102"));
        // A +18% move against the short: leverage ~2.9 > the LSM cap of 2.62; cut to the cap.
        let high = w("120");
        let Evaluation::Rebalanced(dq) = t.evaluate(120, high).unwrap() else { panic!("protective delever due") };
        assert!(dq.is_positive(), "a short delevers by buying back");
        fill(&mut t, 125, high);
        let lev = t.leverage(125, high).unwrap();
        assert!(lev > w("2.58") && lev < w("2.62"), "cut to just inside the LSM cap (N/V 2.62): {lev}");
        // Row 4 next: above the target, reduce to it.
        assert!(matches!(t.evaluate(180, high).unwrap(), Evaluation::Rebalanced(_)));
        fill(&mut t, 185, high);
        let lev = t.leverage(185, high).unwrap();
        assert!(lev > w("1.98") && lev < w("2.02"), "back at target: {lev}");
        // A favourable fall lowers a short's leverage: re-lever to target (mark basis).
        let Evaluation::Rebalanced(dq) = t.evaluate(240, w("110")).unwrap() else { panic!("relever due") };
        assert!(dq.is_negative(), "a short re-levers by selling");
    }

    #[test]
    fn seed_price_levels_delever_by_bisection_where_the_venue_model_holds() {
        use crate::strategy::continuous::seed_margins;
        let mut t = bear();
        if let Policy::Continuous(ref mut c) = t.policy {
            c.entry_basis = true;
            c.seed_model = true;
        }
        let p = w("100");
        t.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        t.sync_entry().unwrap();
        let (x, d) = (t.entry_exposure, t.capital_base);
        assert!(x.abs_diff(w("20000")) < w("100") && d.abs_diff(w("10000")) < w("100"), "X {x} D {d}");
        // $110: the seed's levels (LiqP ≈ $178, MCP ≈ $140) leave both margins above their
        // floors (61%, 21%): nothing to do.
        assert_eq!(t.evaluate(60, w("110")).unwrap(), Evaluation::Idle);
        // $121: MCSM = (140 − 121)/140 ≈ 13.6% < 15%: mandatory delever, sized by bisection.
        let high = w("121");
        let Evaluation::Rebalanced(dq) = t.evaluate(120, high).unwrap() else { panic!("mandatory delever due") };
        assert!(dq.is_positive(), "a short delevers by buying back");
        fill(&mut t, 125, high);
        t.sync_entry().unwrap();
        let q = t.size().unsigned_abs();
        let p_bar = crate::math::pdiv(t.entry_exposure, q).unwrap();
        let lambda = w("10");
        let (lsm, mcsm) = seed_margins(p_bar, t.entry_exposure, t.capital_base, w("0.0625"), lambda, high).unwrap();
        assert!(mcsm >= w("0.15") && lsm >= w("0.3"), "safe after the cut: LSM {lsm} MCSM {mcsm}");
        assert!(mcsm < w("0.16"), "and no smaller than it needs to be: MCSM {mcsm}");
        // the venue model at the same state and price cuts to its closed-form LSM cap (N/V 2.62
        // on V ≈ $5 800), deeper than the seed model's cut
        let mut v = bear();
        if let Policy::Continuous(ref mut c) = v.policy {
            c.entry_basis = true;
        }
        v.mint("alice", w("10000"), U256::ZERO, 0, p).unwrap();
        fill(&mut v, 5, p);
        let Evaluation::Rebalanced(dv) = v.evaluate(120, high).unwrap() else { panic!("venue delever due") };
        assert!(dv > dq, "venue cut {dv} vs seed cut {dq}");
    }

    #[test]
    fn continuous_reverse_split_keeps_nav() {
        let mut t = bear();
        let p = w("100");
        t.mint("alice", w("500"), U256::ZERO, 0, p).unwrap();
        t.mint("bob", w("0.5"), U256::ZERO, 0, p).unwrap_err(); // pending order: refused
        fill(&mut t, 5, p);
        t.mint("bob", w("300"), U256::ZERO, 10, p).unwrap();
        fill(&mut t, 15, p);
        // Force a cheap token: more tokens for the same margin (as after losses).
        for b in t.balances.values_mut() {
            *b *= U256::from(300);
        }
        t.supply *= U256::from(300);
        let rate = t.exchange_rate(20, p).unwrap();
        assert!(rate < w("0.1"));
        let mut want = 1u64;
        while rate * U256::from(want) < w("0.1") {
            want *= 2;
        }
        let nav = pmul(t.supply, rate).unwrap();
        let e = t.evaluate(20, p).unwrap();
        let Evaluation::ReverseSplit(f) = e else { panic!("{e:?}") };
        assert_eq!(f, want, "the smallest power of 2 lifting {rate} over 0.1");
        assert!(f > 1);
        assert_eq!(t.supply, t.balances.values().fold(U256::ZERO, |a, b| a + *b));
        assert!(t.exchange_rate(20, p).unwrap() >= w("0.1"));
        let after = pmul(t.supply, t.exchange_rate(20, p).unwrap()).unwrap();
        assert!(nav.abs_diff(after) < w("0.001"), "NAV unchanged: {nav} vs {after}");
    }

    #[test]
    fn sequential_redeeming_splits_what_the_venue_cannot_release_at_once() {
        // A 20x token: redeeming 88% of supply at once would leave the position above the
        // venue's 55x, so it is refused with the largest amount that passes (§2.8).
        let mut t = token(Side::Long, "20", "0.5");
        let p = w("2000");
        t.mint("whale", w("23091"), U256::ZERO, 0, p).unwrap();
        fill(&mut t, 5, p);
        let held = t.balances["whale"];
        let big = pmul(held, w("0.88")).unwrap();
        let before = t.clone();
        let Err(ThresholdError::ExceedsLimit { limit, .. }) = t.redeem("whale", big, U256::ZERO, 400, p) else {
            panic!("one transaction cannot release 88%")
        };
        assert_eq!(t, before, "refused: nothing changed");
        assert!(limit > U256::ZERO && limit < pmul(big, t.exchange_rate(400, p).unwrap()).unwrap());
        // Sequentially: each step redeems what fits (the withdrawal includes the fee), then the
        // token's own rebalance fills and frees the next slice.
        let (mut left, mut now, mut steps) = (big, 400u64, 0);
        while !left.is_zero() {
            let rate = t.exchange_rate(now, p).unwrap();
            let fits =
                crate::math::pdiv(pmul(t.max_redeemable_base(now, p).unwrap(), w("0.9")).unwrap(), rate).unwrap();
            let step = left.min(fits);
            t.redeem("whale", step, U256::ZERO, now, p).unwrap();
            left -= step;
            if t.pending() {
                fill(&mut t, now + 5, p);
            }
            now += 10;
            steps += 1;
            assert!(steps < 40, "converges");
        }
        assert!(steps >= 2, "needed more than one transaction");
        assert_eq!(t.balances["whale"], held - big);
    }

    #[test]
    fn entry_basis_follows_the_seed_table() {
        // §5.3 on the venue: −2x, $10 000 at $100. After +15% the position is unchanged (the
        // entry exposure stays 20 000, so no trade), a mint of $1 400 makes D = 11 400 and the
        // token adds ~$2 800 of exposure: X/D back to 2.00.
        let mut t = bear();
        if let Policy::Continuous(ref mut c) = t.policy {
            c.entry_basis = true;
            c.lsm_min = w("0.05");
            c.mcsm_min = w("0.01");
        }
        t.market.params.taker_fee = U256::ZERO;
        t.market.params.maker_fee = U256::ZERO;
        t.market.params.min_keeper_fee = U256::ZERO;
        t.market.params.skew_scale = w("1000000000000");
        t.settings.streaming_fee = U256::ZERO;
        t.mint("alice", w("10000"), U256::ZERO, 0, w("100")).unwrap();
        fill(&mut t, 5, w("100"));
        t.sync_entry().unwrap();
        assert!(t.entry_exposure.abs_diff(w("20000")) < w("0.01"), "X {}", t.entry_exposure);
        assert_eq!(t.evaluate(60, w("115")).unwrap(), Evaluation::Idle, "a move changes neither X nor D");
        t.mint("bob", w("1400"), U256::ZERO, 120, w("115")).unwrap();
        assert!(t.capital_base.abs_diff(w("11400")) < w("0.01"), "D {}", t.capital_base);
        assert!(t.pending(), "the mint's own re-lever");
        fill(&mut t, 125, w("115"));
        t.sync_entry().unwrap();
        let lev = crate::math::pdiv(t.entry_exposure, t.capital_base).unwrap();
        assert!(lev.abs_diff(w("2")) < w("0.001"), "X/D back to 2.00: {lev}");
        assert!(t.entry_exposure.abs_diff(w("22800")) < w("0.5"), "X {}", t.entry_exposure);
    }
}
