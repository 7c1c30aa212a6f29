//! One interface for every leveraged token keel runs: [`LeveragedToken`].
//!
//! Lending FLI ([`crate::strategy::fli::FliToken`]), PerpV2 FLI
//! ([`crate::strategy::fli::perp_token::PerpFliToken`]) and the Synthetix-style tokens —
//! threshold, daily and continuous ([`crate::strategy::threshold::token::ThresholdToken`]) —
//! implement it, each in its own file here. The simulator, the keeper policy, the reports and
//! the service drive a token through this trait alone; a new kind of token (a Compound market,
//! another perp venue) implements it and its venue, and nothing else changes.
//!
//! Amounts are integers: USD and token amounts in wad, leverage as a signed wad (negative for
//! a token that gains when the underlying falls). The risk distances are analytics (`f64`),
//! derived from the position's linear exposure to the underlying.

mod any;
mod lending;
mod perp;
mod threshold;

pub use any::{AnyToken, VAMM_TVL_USD};

use crate::math::{I256, U256};
use crate::strategy::keeper::{Action, Candidate};
use alloy_primitives::Address;
use serde::Serialize;

/// Which methodology on which venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Set / Index Coop FLI on an Aave-style lending market with a Uniswap-style pool.
    LendingFli,
    /// The PerpV2 strategy extension on a Perp-v2-style account and vAMM.
    PerpFli,
    /// Synthetix-style reactive rebalancing when leverage leaves target ± θ.
    Threshold,
    /// Rebalanced once a day at a scheduled time, and intraday on a trigger.
    Daily,
    /// The IndexZoo Bear: continuous rebalancing inside safety margins, reverse splits.
    Continuous,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: [Kind; 5] = [Kind::LendingFli, Kind::PerpFli, Kind::Threshold, Kind::Daily, Kind::Continuous];

    /// The kind's name in files, summaries and the API.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LendingFli => "lending-fli",
            Kind::PerpFli => "perp-fli",
            Kind::Threshold => "threshold",
            Kind::Daily => "daily",
            Kind::Continuous => "continuous",
        }
    }

    /// The methodology and venue in a few words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::LendingFli => "fli (lending + v3 pool)",
            Kind::PerpFli => "fli (perp-v2 + vAMM)",
            Kind::Threshold => "threshold (synthetix perp)",
            Kind::Daily => "daily (synthetix perp)",
            Kind::Continuous => "continuous (synthetix perp)",
        }
    }

    /// The emergency action past the band: `ripcord` (FLI) or `close` (under the minimum margin).
    pub fn emergency_action(self) -> &'static str {
        match self {
            Kind::LendingFli | Kind::PerpFli => "ripcord",
            _ => "close",
        }
    }

    /// What the token's health figure is on this kind's venue.
    pub fn health_name(self) -> &'static str {
        match self {
            Kind::LendingFli => "health factor",
            _ => "margin ratio",
        }
    }
}

/// Where the methodology keeps the leverage (signed wad leverage ratios).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Band {
    /// The target.
    pub target: I256,
    /// The band's lower edge (in magnitude).
    pub min: I256,
    /// The band's upper edge (in magnitude).
    pub max: I256,
    /// The emergency action past the band, if the methodology has one.
    pub emergency: Option<Emergency>,
}

/// The emergency action and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Emergency {
    /// `ripcord` (FLI) or `close` (threshold tokens under their minimum margin).
    pub action: &'static str,
    /// The leverage at which it starts, when it is a leverage level.
    pub leverage: Option<I256>,
    /// The equity (USD wad) under which it starts, when it is a margin level.
    pub equity: Option<U256>,
}

/// The position as a linear exposure to the underlying: equity `V`, `units` of the underlying
/// held (negative short), at `price`. After a move to `P'`, equity is `V + units·(P' − P)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exposure {
    /// Signed units of the underlying (wad).
    pub units: I256,
    /// Equity, USD wad.
    pub equity: U256,
    /// The underlying's price the token values at, USD wad.
    pub price: U256,
}

impl Exposure {
    /// Signed leverage `units·P / V` as `f64` (0 without equity).
    pub fn leverage_f64(&self) -> f64 {
        let v = crate::math::to_f64(self.equity, 18);
        if v <= 0.0 { 0.0 } else { self.units_f64() * crate::math::to_f64(self.price, 18) / v }
    }

    /// Signed units as `f64`.
    pub fn units_f64(&self) -> f64 {
        let u = crate::math::to_f64(self.units.unsigned_abs(), 18);
        if self.units.is_negative() { -u } else { u }
    }

    /// The price at which |leverage| reaches `level` (> 0) on the adverse side, or `None` when
    /// it never does (no position, or moving the other way).
    pub fn price_at_leverage(&self, level: f64) -> Option<f64> {
        let p = crate::math::to_f64(self.price, 18);
        let q = self.units_f64();
        let c = crate::math::to_f64(self.equity, 18) - q * p; // cash: V − qP
        if q == 0.0 || level <= 0.0 {
            return None;
        }
        // |q|·P' / (c + q·P') = level  ⇒  P' = level·c / (|q| − level·q)
        let denom = q.abs() - level * q;
        if denom == 0.0 {
            return None;
        }
        let x = level * c / denom;
        (x.is_finite() && x > 0.0).then_some(x)
    }

    /// Fraction the price must move against the position for |leverage| to reach `level`
    /// (`None`: never, or already there).
    pub fn distance_to(&self, level: f64) -> Option<f64> {
        let p = crate::math::to_f64(self.price, 18);
        let x = self.price_at_leverage(level)?;
        let d = if self.units.is_negative() { x / p - 1.0 } else { 1.0 - x / p };
        (d >= 0.0).then_some(d)
    }

    /// The price at which equity falls to `equity` (USD), on the adverse side.
    pub fn price_at_equity(&self, equity: f64) -> Option<f64> {
        let q = self.units_f64();
        if q == 0.0 {
            return None;
        }
        let p = crate::math::to_f64(self.price, 18);
        let x = p + (equity - crate::math::to_f64(self.equity, 18)) / q;
        (x.is_finite() && x > 0.0).then_some(x)
    }
}

/// The token's health on its venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Health {
    /// Aave-style health factor (wad; liquidation below 1; `U256::MAX` without debt).
    HealthFactor(U256),
    /// Account value over position notional (wad; liquidation under the venue's maintenance).
    MarginRatio(U256),
}

/// Risk figures now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Risk {
    /// Signed leverage now (wad).
    pub leverage: I256,
    /// Health on the venue.
    pub health: Health,
    /// Fraction of adverse price move to liquidation (`None` without a position).
    pub to_liquidation: Option<f64>,
    /// Fraction of adverse price move to the emergency action (`None` without one).
    pub to_emergency: Option<f64>,
}

/// A holder's issue or redeem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Tokens issued to or redeemed from the holder (before fees in tokens).
    pub tokens: U256,
    /// Net value the holder paid in (issue) or received (redeem), USD wad at the token's prices.
    pub value: U256,
    /// Fees the token's fee recipient kept, USD wad.
    pub fee: U256,
}

/// A keeper call's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Done {
    /// What happened: `rebalance`, `iterate`, `ripcord`, `close`, `reverse-split`, `idle`.
    pub event: &'static str,
    /// Underlying units traded or ordered (signed, wad; 0 for none).
    pub traded: I256,
    /// Underlying units still to trade to reach the call's target (a TWAP's total), wad.
    pub total: U256,
    /// Leverage before the call, and the leverage the call aims at (signed wad; 0 unknown).
    pub leverage_before: I256,
    /// The call's target leverage.
    pub leverage_target: I256,
    /// Value sold and value bought, USD wad at the venue's prices (0 for an order not yet filled).
    pub sold: U256,
    /// Value bought.
    pub bought: U256,
    /// Venue fees paid now, USD wad.
    pub fee: U256,
    /// Ether paid to the caller as a reward (wad).
    pub reward: U256,
}

/// When the engine can skip reading the token: nothing is due while the underlying's price
/// stays strictly inside `(price_lo, price_hi)` and time is before `until`. Conservative by
/// construction (a token returns a narrower band when in doubt, or [`Screen::ALWAYS`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Screen {
    /// Lower price edge, USD.
    pub price_lo: f64,
    /// Upper price edge, USD.
    pub price_hi: f64,
    /// Time by which the token must be read again.
    pub until: u64,
}

impl Screen {
    /// Read the token every time.
    pub const ALWAYS: Screen = Screen { price_lo: f64::INFINITY, price_hi: 0.0, until: 0 };

    /// Is `price` at `now` inside the quiet region?
    pub fn quiet(&self, now: u64, price: f64) -> bool {
        now < self.until && price > self.price_lo && price < self.price_hi
    }
}

/// A leveraged token on its venue. Every `&mut self` operation is atomic: on error nothing
/// changed.
pub trait LeveragedToken {
    /// Which kind of token this is.
    fn kind(&self) -> Kind;

    /// Ticker.
    fn symbol(&self) -> &str;

    /// The methodology's band and emergency level.
    fn band(&self) -> Band;

    /// A new answer from the venue's price feed for the underlying (USD wad) at `now`.
    fn observe_price(&mut self, now: u64, price: U256) -> Result<(), crate::Error>;

    /// Total supply (wad).
    fn supply(&self) -> U256;

    /// `holder`'s balance (wad).
    fn balance_of(&self, holder: Address) -> U256;

    /// Every non-zero balance.
    fn balances(&self) -> Vec<(Address, U256)>;

    /// Move `amount` of `from`'s tokens to `to`.
    fn transfer(&mut self, from: Address, to: Address, amount: U256) -> Result<(), crate::Error>;

    /// Net asset value per token, USD wad (0 with no supply).
    fn nav_per_token(&self, now: u64) -> Result<U256, crate::Error>;

    /// The position as an exposure to the underlying.
    fn exposure(&self, now: u64) -> Result<Exposure, crate::Error>;

    /// Signed leverage in the methodology's terms (wad).
    fn leverage(&self, now: u64) -> Result<I256, crate::Error>;

    /// Health on the venue.
    fn health(&self, now: u64) -> Result<Health, crate::Error>;

    /// |leverage| at which the venue liquidates (wad-free `f64`, for distances).
    fn liquidation_leverage(&self) -> f64;

    /// Issue tokens to `holder` for `value` USD wad at NAV.
    fn issue(&mut self, holder: Address, value: U256, now: u64) -> Result<Flow, crate::Error>;

    /// USD per token a holder pays to issue now: NAV per token, or the first issue's price
    /// with no supply (1.0 by default).
    fn issue_price(&self, now: u64) -> Result<U256, crate::Error> {
        if self.supply().is_zero() { Ok(crate::math::WAD) } else { self.nav_per_token(now) }
    }

    /// Redeem `tokens` of `holder`'s balance at NAV.
    fn redeem(&mut self, holder: Address, tokens: U256, now: u64) -> Result<Flow, crate::Error>;

    /// The calls the methodology wants now (empty: nothing due). The keeper policy
    /// ([`crate::strategy::keeper::decide`]) chooses among them.
    fn wanted(&self, now: u64) -> Result<Vec<Candidate>, crate::Error>;

    /// Execute a call `wanted` returned, as `caller`.
    fn execute(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, crate::Error>;

    /// Accrue time-based fees up to `now`; returns their value, USD wad.
    fn accrue_fees(&mut self, now: u64) -> Result<U256, crate::Error>;

    /// Run `call` and undo it whatever the outcome: what a keeper's `eth_call` shows.
    fn dry_run(&mut self, caller: Address, call: &Candidate, now: u64) -> Result<Done, crate::Error>;

    /// The reward (ether, wad) whoever makes the emergency call now would receive.
    fn emergency_reward(&self, _now: u64) -> U256 {
        U256::ZERO
    }

    /// A call its keeper keeps failing on may be stuck for a reason the operator can clear (a
    /// TWAP whose remainder rounds to zero units): clear it as `operator` and say what was done.
    fn unstick(&mut self, _operator: Address, _call: &Candidate, _now: u64) -> Option<&'static str> {
        None
    }

    /// Issue and redeem are pro rata (the position scales with the supply), so leverage and NAV
    /// per token do not move with them — a driver's estimates need only rescaling.
    fn flows_keep_leverage(&self) -> bool {
        false
    }

    /// β, the target exposure to the underlying (`target_leverage` for most tokens; `1 − LR` for
    /// a lending token whose underlying is the borrowed asset).
    fn target_exposure(&self) -> f64 {
        let t = self.band().target;
        let v = crate::math::to_f64(t.unsigned_abs(), 18);
        if t.is_negative() { -v } else { v }
    }

    /// The methodology's |leverage| for a position whose |exposure|/equity is `x` (the same by
    /// default; `1 + x` for a lending token short its borrowed asset, whose ratio is collateral
    /// over equity).
    fn leverage_of_exposure(&self, x: f64) -> f64 {
        x
    }

    /// The venue's health figure at |leverage| `lev`, all else equal (for per-block estimates):
    /// the margin ratio `1/lev` by default.
    fn health_at_leverage(&self, lev: f64) -> f64 {
        if lev > 0.0 { 1.0 / lev } else { f64::INFINITY }
    }

    /// A new price of the underlying from the venue's feed, and what the venue's own keepers do
    /// on it (fill an executable delayed order, move a vAMM to the index). Returns what they did.
    /// The default only observes the price.
    fn on_price(&mut self, now: u64, price: U256) -> Result<Vec<String>, crate::Error> {
        self.observe_price(now, price)?;
        Ok(vec![])
    }

    /// Liquidate the token's account, as anyone may when the venue allows. Returns what the
    /// liquidator took (USD wad).
    fn liquidate(&mut self, _now: u64) -> Result<U256, crate::Error> {
        Err(crate::error::FliError::Revert("this venue's liquidation is not driven through the token interface").into())
    }

    /// Open the position toward the target (FLI's `engage`), as `operator`.
    fn engage(&mut self, _operator: Address, _now: u64) -> Result<Done, crate::Error> {
        Err(crate::error::FliError::Revert("this kind opens its position with the first issue; there is no engage")
            .into())
    }

    /// Apply a running product's changed settings (`new` validated, `old` what it ran with);
    /// returns the sections that changed. Refused for a change of venue or assets.
    fn apply_settings(
        &mut self,
        _new: &crate::product::AnyProduct,
        _old: &crate::product::AnyProduct,
    ) -> Result<Vec<String>, crate::Error> {
        Err(crate::error::FliError::Revert("settings of this kind are changed through its own setters").into())
    }

    /// The smallest value an issue may pay (a venue's per-order deposit), USD wad.
    fn min_issue_value(&self) -> U256 {
        U256::ZERO
    }

    /// Funding the token's venue account has paid (positive) or received (negative) to date,
    /// settled and pending, USD wad. Tokens on a venue without funding: 0.
    fn funding_paid(&self, _now: u64) -> Result<I256, crate::Error> {
        Ok(I256::ZERO)
    }

    /// The venue account's figures for a view (margin, position, a pending order), as text.
    fn venue_figures(&self, _now: u64) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }

    /// When the token can go unread (see [`Screen`]), given its `exposure` now (the caller has
    /// usually just read it). The default reads it every block.
    fn screen(&self, _now: u64, _exposure: &Exposure) -> Screen {
        Screen::ALWAYS
    }

    /// Risk figures now.
    fn risk(&self, now: u64) -> Result<Risk, crate::Error> {
        let e = self.exposure(now)?;
        let band = self.band();
        let to_emergency = band.emergency.and_then(|em| match (em.leverage, em.equity) {
            (Some(l), _) => e.distance_to(crate::math::to_f64(l.unsigned_abs(), 18)),
            (None, Some(v)) => {
                let p = crate::math::to_f64(e.price, 18);
                e.price_at_equity(crate::math::to_f64(v, 18))
                    .map(|x| if e.units.is_negative() { x / p - 1.0 } else { 1.0 - x / p })
                    .filter(|d| *d >= 0.0)
            }
            _ => None,
        });
        Ok(Risk {
            leverage: self.leverage(now)?,
            health: self.health(now)?,
            to_liquidation: e.distance_to(self.liquidation_leverage()),
            to_emergency,
        })
    }
}

/// The keeper candidate for a single-exchange token.
pub(crate) fn candidate(action: Action) -> Candidate {
    Candidate { exchange: String::new(), action, chunk: U256::ZERO }
}

/// An `f64` price edge shrunk toward `p` by `slack` (a fraction), for conservative screens.
pub(crate) fn shrink(edge: Option<f64>, p: f64, slack: f64, above: bool) -> f64 {
    match edge {
        Some(x) if above => p + (x - p) * (1.0 - slack),
        Some(x) => p - (p - x) * (1.0 - slack),
        None if above => f64::INFINITY,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wad(x: f64) -> U256 {
        U256::from((x * 1e6) as u128) * U256::from(1_000_000_000_000u64)
    }

    #[test]
    fn table_distances_follow_the_linear_exposure() {
        // (case, units, equity, price, level, expected price at level)
        let cases = [
            // 2x long: 1 unit at 2000 with 1000 equity (debt 1000); 3x at P' with P'/(P'−1000) = 3 ⇒ 1500
            ("2x long to 3x", 1.0, 1000.0, 2000.0, 3.0, 1500.0),
            // −1x short: −0.5 units at 2000, equity 1000 (cash 2000); 2x at P'/(2000 − 0.5P')·0.5 = 2 ⇒ 2666.67
            ("-1x short to 2x", -0.5, 1000.0, 2000.0, 2.0, 8000.0 / 3.0),
        ];
        for (case, units, equity, price, level, want) in cases {
            let u = wad(f64::abs(units));
            let e = Exposure {
                units: if units < 0.0 { -I256::try_from(u).unwrap() } else { I256::try_from(u).unwrap() },
                equity: wad(equity),
                price: wad(price),
            };
            let got = e.price_at_leverage(level).unwrap();
            assert!((got / want - 1.0).abs() < 1e-9, "case {case}: {got} vs {want}");
            let d = e.distance_to(level).unwrap();
            assert!((d - (got / price - 1.0).abs()).abs() < 1e-12, "case {case}");
        }
    }

    #[test]
    fn a_screen_is_quiet_only_inside_its_band_and_before_its_time() {
        let s = Screen { price_lo: 90.0, price_hi: 110.0, until: 100 };
        assert!(s.quiet(99, 100.0));
        assert!(!s.quiet(100, 100.0) && !s.quiet(50, 90.0) && !s.quiet(50, 110.0));
        assert!(!Screen::ALWAYS.quiet(0, 1.0));
    }
}
