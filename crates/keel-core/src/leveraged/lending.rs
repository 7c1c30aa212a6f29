//! [`LeveragedToken`] for the lending FLI token: an Aave-style account (collateral supplied,
//! stablecoin borrowed) rebalanced through a pool by `rebalance` / `iterateRebalance` /
//! `ripcord`.

use super::{Band, Done, Emergency, Exposure, Flow, Health, Kind, LeveragedToken, Screen, shrink};
use crate::Error;
use crate::math::{I256, MathError, U256, mul_div_down, pdiv, pmul, pow10};
use crate::strategy::fli::FliToken;
use crate::strategy::keeper::{Action, Candidate};
use alloy_primitives::Address;

fn signed(x: U256) -> Result<I256, Error> {
    I256::try_from(x).map_err(|_| MathError::Overflow("int256").into())
}

impl FliToken {
    /// A call's outcome in the interface's terms: units from the event's notional (collateral
    /// units), values at the oracle.
    fn done(&self, action: Action, out: &crate::strategy::fli::FliOutcome, now: u64) -> Result<Done, Error> {
        let (cadj, badj) = (self.fli.collateral_decimal_adjustment, self.fli.borrow_decimal_adjustment);
        let cp = self.market.price(self.collateral, now)? * pow10(10);
        let bp = self.market.price(self.borrow, now)? * pow10(10);
        let mut d = Done { event: action.name(), reward: out.reward_paid, ..Done::default() };
        if let Some(n) = out.event.notional() {
            d.leverage_before = signed(n.current_leverage_ratio)?;
            d.leverage_target = signed(n.new_leverage_ratio)?;
            d.total = Self::wad_units(n.total, cadj)?;
        }
        if let Some(t) = &out.trade {
            let c_units = Self::wad_units(if t.is_lever { t.bought } else { t.sold }, cadj)?;
            d.traded = if t.is_lever { signed(c_units)? } else { -signed(c_units)? };
            let value = |amount: U256, lever_side: bool| -> Result<U256, Error> {
                // lever sells the borrow asset, delever the collateral
                Ok(if lever_side {
                    pmul(Self::wad_units(amount, badj)?, bp)?
                } else {
                    pmul(Self::wad_units(amount, cadj)?, cp)?
                })
            };
            d.sold = value(t.sold, t.is_lever)?;
            d.bought = value(t.bought, !t.is_lever)?;
            d.fee = value(t.pool_fee, t.is_lever)?;
        }
        Ok(d)
    }

    /// Base units of an asset with decimal adjustment `adj` (`28 − decimals`) as wad units.
    fn wad_units(amount: U256, adj: u32) -> Result<U256, Error> {
        Ok(mul_div_down(amount, pow10(adj), pow10(10), "units")?)
    }
}

impl LeveragedToken for FliToken {
    fn kind(&self) -> Kind {
        Kind::LendingFli
    }

    fn symbol(&self) -> &str {
        &self.ledger.config.symbol
    }

    fn band(&self) -> Band {
        let m = &self.fli.methodology;
        let s = |x: U256| I256::try_from(x).unwrap_or(I256::MAX);
        Band {
            target: s(m.target_leverage_ratio),
            min: s(m.min_leverage_ratio),
            max: s(m.max_leverage_ratio),
            emergency: Some(Emergency {
                action: "ripcord",
                leverage: Some(s(self.fli.incentive.incentivized_leverage_ratio)),
                equity: None,
            }),
        }
    }

    fn observe_price(&mut self, now: u64, price: U256) -> Result<(), Error> {
        let answer = i128::try_from(price / pow10(10)).map_err(|_| MathError::Overflow("price"))?;
        let feed = if self.underlying_is_borrow { self.borrow } else { self.collateral };
        self.market.post_price(feed, answer.max(1), now);
        Ok(())
    }

    fn supply(&self) -> U256 {
        self.ledger.total_supply()
    }

    fn balance_of(&self, holder: Address) -> U256 {
        self.ledger.balance_of(holder)
    }

    fn balances(&self) -> Vec<(Address, U256)> {
        self.ledger.balances().map(|(a, v)| (*a, *v)).collect()
    }

    fn transfer(&mut self, from: Address, to: Address, amount: U256) -> Result<(), Error> {
        Ok(self.ledger.transfer(from, to, amount)?)
    }

    fn nav_per_token(&self, now: u64) -> Result<U256, Error> {
        Ok(self.nav(now)?.per_token)
    }

    fn exposure(&self, now: u64) -> Result<Exposure, Error> {
        let s = self.snapshot(now)?;
        let nav = self.nav_of(&s)?;
        Ok(if self.underlying_is_borrow {
            // short the borrow asset: units = −(debt − idle cash)
            let debt = Self::wad_units(s.borrow_balance, self.fli.borrow_decimal_adjustment)?;
            let idle = Self::wad_units(self.idle_borrow, self.fli.borrow_decimal_adjustment)?;
            let units = signed(idle)? - signed(debt)?;
            Exposure { units, equity: nav.equity, price: s.borrow_price_e8 * pow10(10) }
        } else {
            let units = Self::wad_units(s.collateral_balance, self.fli.collateral_decimal_adjustment)?;
            Exposure { units: signed(units)?, equity: nav.equity, price: s.collateral_price_e8 * pow10(10) }
        })
    }

    fn leverage(&self, now: u64) -> Result<I256, Error> {
        signed(self.current_leverage_ratio(now)?)
    }

    fn health(&self, now: u64) -> Result<Health, Error> {
        Ok(Health::HealthFactor(self.market.account_data(self.account, now)?.health_factor))
    }

    fn liquidation_leverage(&self) -> f64 {
        // health factor 1 ⇔ LT·C = D ⇔ C/(C − D) = 1/(1 − LT)
        let lt = self.risk().liquidation_threshold_bp as f64 / 10_000.0;
        if lt >= 1.0 { f64::INFINITY } else { 1.0 / (1.0 - lt) }
    }

    fn issue(&mut self, holder: Address, value: U256, now: u64) -> Result<Flow, Error> {
        let nav = self.nav(now)?.per_token;
        let quantity = if self.ledger.total_supply().is_zero() || nav.is_zero() {
            // the first issue: at the initial collateral per token, valued at the oracle
            let per = Self::wad_units(self.initial_collateral_per_token, self.fli.collateral_decimal_adjustment)?;
            let price = self.market.price(self.collateral, now)? * pow10(10);
            pdiv(value, pmul(per, price)?.max(U256::from(1)))?
        } else {
            pdiv(value, nav)?
        };
        let r = self.issue(holder, quantity, now)?;
        let paid = pmul(r.quantity + r.fee, nav)?;
        Ok(Flow { tokens: r.quantity, value: paid, fee: pmul(r.fee, nav)? })
    }

    fn redeem(&mut self, holder: Address, tokens: U256, now: u64) -> Result<Flow, Error> {
        let nav = self.nav(now)?.per_token;
        let r = self.redeem(holder, tokens, now)?;
        Ok(Flow { tokens, value: pmul(tokens - r.fee, nav)?, fee: pmul(r.fee, nav)? })
    }

    fn wanted(&self, now: u64) -> Result<Vec<Candidate>, Error> {
        Ok(self
            .should_rebalance(now)?
            .into_iter()
            .filter_map(|(exchange, a)| {
                Action::from_enum(a as u8).map(|action| Candidate { exchange, action, chunk: U256::ZERO })
            })
            .collect())
    }

    fn execute(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, Error> {
        let out = match call.action {
            Action::Rebalance => self.rebalance(caller, &call.exchange, now)?,
            Action::Iterate => self.iterate_rebalance(caller, &call.exchange, now)?,
            Action::Ripcord => self.ripcord(caller, &call.exchange, now)?,
        };
        self.done(call.action, &out, now)
    }

    fn dry_run(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, Error> {
        let out = FliToken::dry_run(self, |t| match call.action {
            Action::Rebalance => t.rebalance(caller, &call.exchange, now),
            Action::Iterate => t.iterate_rebalance(caller, &call.exchange, now),
            Action::Ripcord => t.ripcord(caller, &call.exchange, now),
        })?;
        self.done(call.action, &out, now)
    }

    fn emergency_reward(&self, now: u64) -> U256 {
        self.current_ether_incentive(now).unwrap_or_default()
    }

    fn unstick(&mut self, operator: Address, call: &Candidate, now: u64) -> Option<&'static str> {
        if call.action != Action::Iterate {
            return None;
        }
        let dust = FliToken::dry_run(self, |t| t.iterate_rebalance(operator, &call.exchange, now))
            .err()
            .and_then(|e| e.revert_reason())
            == Some("Quantity is 0");
        // the TWAP's remainder rounds to zero units: it can never trade; the operator ends it
        // (abort_twap, fli.md §17.6)
        (dust && self.abort_twap(operator, now).is_ok()).then_some("twap_aborted")
    }

    fn flows_keep_leverage(&self) -> bool {
        true
    }

    fn target_exposure(&self) -> f64 {
        let lr = crate::math::to_f64(self.fli.methodology.target_leverage_ratio, 18);
        if self.underlying_is_borrow { 1.0 - lr } else { lr }
    }

    fn leverage_of_exposure(&self, x: f64) -> f64 {
        if self.underlying_is_borrow { 1.0 + x } else { x }
    }

    fn health_at_leverage(&self, lev: f64) -> f64 {
        // HF = LT·C/D and lev = C/(C − D) ⇒ HF = LT·lev/(lev − 1)
        let lt = self.risk().liquidation_threshold_bp as f64 / 10_000.0;
        if lev <= 1.0 { f64::INFINITY } else { lt * lev / (lev - 1.0) }
    }

    fn accrue_fees(&mut self, now: u64) -> Result<U256, Error> {
        let nav = self.nav(now)?.per_token;
        let minted = self.accrue_streaming_fee(now)?;
        Ok(pmul(minted, nav)?)
    }

    fn screen(&self, now: u64, e: &Exposure) -> Screen {
        if !self.fli.twap_leverage_ratio.is_zero() || self.ledger.total_supply().is_zero() {
            return Screen::ALWAYS;
        }
        let m = &self.fli.methodology;
        let (lo, hi) = (crate::math::to_f64(m.min_leverage_ratio, 18), crate::math::to_f64(m.max_leverage_ratio, 18));
        let p = crate::math::to_f64(e.price, 18);
        // leverage rises as a long's price falls: the max is reached below, the min above
        // the band in exposure terms: LR − 1 for a token short its borrowed asset
        let (lo, hi) = if self.underlying_is_borrow { (lo - 1.0, hi - 1.0) } else { (lo, hi) };
        let at = |l: f64| if l > 0.0 { e.price_at_leverage(l) } else { None };
        let (below, above) = if e.units.is_negative() { (at(lo), at(hi)) } else { (at(hi), at(lo)) };
        let interval_due = self.fli.global_last_trade_timestamp + self.fli.methodology.rebalance_interval;
        // interest moves the ratio between reads (well inside the 2% margin over a day): re-read daily
        Screen {
            price_lo: shrink(below, p, 0.02, false),
            price_hi: shrink(above, p, 0.02, true),
            until: interval_due.min(now + 86_400),
        }
    }
}
