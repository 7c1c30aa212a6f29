//! A threshold, daily or continuous token's venue, Synthetix-Perps-style: the price feed; a
//! venue keeper who executes the token's pending delayed order as soon as it is executable
//! (cancels it past the maximum age); anyone liquidating a liquidatable position; and the rest
//! of the market as one account. With funding on ([`crate::funding`]) that account is the crowd:
//! every step it holds `oi_per_bp_usd / price` of open interest per 0.01% a day the venue's
//! funding rate lies below the crowd's rate (short when above), so the velocity rule moves the
//! rate toward the crowd's, the token's own position added to the skew. With funding off it
//! trades the skew back to zero after each fill, so funding stays near zero. The first holders'
//! deposit is minted at the start; its order opens the position.

use crate::funding::{Crowd, FundingModel};
use crate::market::{HOLDERS, Settle, Venue};
use crate::metrics::EventRow;
use crate::units::{price_wad, wad_f64};
use keel_core::leveraged::LeveragedToken;
use keel_core::math::{I256, U256};
use keel_core::product::ThresholdProduct;
use keel_core::strategy::threshold::token::ThresholdToken;
use std::borrow::Cow;
use std::collections::BTreeMap;

const ARB: u64 = 2;

/// The token on its perps market, and the agents around it.
pub struct SynthetixVenue {
    /// The token.
    pub token: ThresholdToken,
    safe: (f64, f64),
    filled: u64,
    cancelled: u64,
    refused: u64,
    liquidations: u64,
    venue_fees: f64,
    keeper_deposits: f64,
    opened: bool,
    /// The rest of the market (`None`: funding off).
    crowd: Option<Crowd>,
    /// How funding is made, for the summary.
    funding_model: String,
    crowd_refused: u64,
    start: u64,
    /// The last block's time and price (the funding figures are read at them).
    last: (u64, U256),
    crowd_acted: u64,
    /// When the liquidator's screen is next re-read while funding moves the margin.
    screen_at: u64,
}

impl SynthetixVenue {
    /// `product` with `deposit_usd` minted by the holders at `start_price`.
    pub fn new(product: &ThresholdProduct, deposit_usd: f64, start: u64, start_price: f64) -> Result<Self, String> {
        let p = price_wad(start_price).ok_or_else(|| format!("start price {start_price} cannot be used"))?;
        let mut token = product.build(start);
        token.observe_price(start, p).map_err(|e| e.to_string())?;
        let deposit = U256::from((deposit_usd.max(0.0) * 1e6).round() as u128) * U256::from(1_000_000_000_000u64);
        LeveragedToken::issue(&mut token, HOLDERS, deposit, start)
            .map_err(|e| format!("cannot issue the first tokens: {e}"))?;
        let big = I256::try_from(U256::from(10u64).pow(U256::from(30))).unwrap_or_default();
        token.market.transfer_margin(ARB, big, start, p).map_err(|e| e.to_string())?;
        let mut v = SynthetixVenue {
            token,
            safe: (0.0, 0.0),
            filled: 0,
            cancelled: 0,
            refused: 0,
            liquidations: 0,
            venue_fees: 0.0,
            keeper_deposits: 0.0,
            opened: false,
            crowd: None,
            funding_model: FundingModel::Off.describe(),
            crowd_refused: 0,
            start,
            screen_at: 0,
            last: (start, p),
            crowd_acted: start,
        };
        v.refresh(start);
        Ok(v)
    }

    /// The same venue with the rest of the market of `model` (seeded by `seed`): funding on.
    pub fn with_funding(mut self, model: &FundingModel, seed: u64) -> Self {
        self.crowd = Crowd::new(model, seed, self.start);
        self.funding_model = model.describe();
        self
    }

    /// The crowd's step. Left alone, the crowd's open interest `γ·(rate − venue rate)` (γ:
    /// `oi_per_bp_usd` per 0.01% a day) against the token's size `q` moves the venue's rate by
    /// the velocity rule toward `r* = rate + q/γ` at the speed `v·γ/S` a day (v the maximum
    /// velocity, S the skew scale). The crowd trades to the open interest that moves the rate
    /// exactly as far as that relaxation would by the next step — stable for any step or block
    /// time — within the venue's open-interest cap.
    fn crowd_acts(&mut self, now: u64, price: f64, p: U256) {
        let Some(crowd) = &mut self.crowd else { return };
        let dt = (now.saturating_sub(self.crowd_acted)).max(crowd.process().step) as f64 / 86_400.0;
        self.crowd_acted = now;
        let rate = crowd.advance(now);
        let gamma = crowd.process().oi_per_bp_usd / price / 0.0001;
        let f = crate::units::signed_wad_f64;
        let q = f(self.token.size());
        let m = &mut self.token.market;
        let Ok(now_rate) = m.current_funding_rate(now) else {
            self.crowd_refused += 1;
            return;
        };
        let (r, skew) = (f(now_rate), f(m.skew));
        let (scale, velocity) = (wad_f64(m.params.skew_scale), wad_f64(m.params.max_funding_velocity));
        if scale <= 0.0 || velocity <= 0.0 {
            return;
        }
        let have = m.positions.get(&ARB).map_or(0.0, |q| f(q.size));
        let others = skew - have;
        let target = rate + q / gamma;
        let next = target + (r - target) * (-velocity * gamma / scale * dt).exp();
        // the venue caps each side's open interest: the crowd's side holds what the others on
        // it leave (a hair under, for rounding); reducing is always allowed
        let cap = 0.999 * wad_f64(m.params.max_market_value);
        let others_size = wad_f64(m.market_size) - have.abs();
        let (others_long, others_short) = ((others_size + others) / 2.0, (others_size - others) / 2.0);
        let (lo, hi) = (-(cap - others_short).max(0.0), (cap - others_long).max(0.0));
        let want = (scale * (next - r) / (velocity * dt) - others).clamp(lo.min(have.min(0.0)), hi.max(have.max(0.0)));
        let delta = want - have;
        // under $1 000 of change the crowd waits for the next step
        if (delta * price).abs() < 1_000.0 {
            return;
        }
        let Some(size) = crate::units::signed_wad(delta) else { return };
        if m.modify_position(ARB, size, now, p, None).is_err() {
            self.crowd_refused += 1;
        }
    }
}

impl Venue for SynthetixVenue {
    fn token(&self) -> &dyn LeveragedToken {
        &self.token
    }

    fn token_mut(&mut self) -> &mut dyn LeveragedToken {
        &mut self.token
    }

    fn agents(&mut self, now: u64, block: u64, price: f64, p: U256, ev: &mut dyn FnMut(EventRow)) -> bool {
        self.token.oracle_price = p;
        let t = &mut self.token;
        let mut changed = false;
        // the venue keeper fills the order as soon as it is executable — within the block, at
        // `intention + min age + 1 s` when blocks are longer than that — at this block's price
        if let Some(order) = t.market.orders.get(&t.account).cloned() {
            let min_age = t.market.params.delayed_order_min_age;
            let exec_time = now.min(order.intention_time + min_age + 1);
            if exec_time > order.intention_time + min_age {
                let fee = t
                    .market
                    .fill_price(order.size_delta, p)
                    .and_then(|fp| t.market.order_fee(order.size_delta, fp))
                    .unwrap_or(U256::ZERO);
                match t.market.execute_delayed_order(t.account, exec_time, p, false) {
                    Ok((_, paid)) => {
                        self.filled += 1;
                        self.keeper_deposits += wad_f64(paid);
                        self.venue_fees += wad_f64(fee);
                        self.opened = true;
                        changed = true;
                        ev(EventRow {
                            time: now,
                            block,
                            kind: Cow::Borrowed("fill"),
                            actor: Cow::Borrowed("venue keeper"),
                            chunk: wad_f64(order.size_delta.unsigned_abs()),
                            pool_fee_usd: wad_f64(fee),
                            ..Default::default()
                        });
                    }
                    Err(_) => self.refused += 1,
                }
            }
            if t.pending()
                && now.saturating_sub(order.intention_time) > t.market.params.delayed_order_max_age
                && t.market.cancel_delayed_order(t.account, now, p, false).is_ok()
            {
                self.cancelled += 1;
                self.keeper_deposits += wad_f64(order.keeper_deposit);
                changed = true;
            }
            if self.crowd.is_none() && !t.market.skew.is_zero() {
                let k = t.market.skew;
                let _ = t.market.modify_position(ARB, -k, now, p, None);
            }
        }
        self.last = (now, p);
        if self.crowd.as_ref().is_some_and(|c| c.due(now)) {
            self.crowd_acts(now, price, p);
            // funding moves the margin between the token's operations: re-read hourly
            if now >= self.screen_at {
                self.screen_at = now + 3_600;
                changed = true;
            }
        }
        if changed {
            self.refresh(now);
        }
        if price > self.safe.0 && price < self.safe.1 {
            return changed;
        }
        let t = &mut self.token;
        if t.market.can_liquidate(t.account, now, p).unwrap_or(false) && t.market.liquidate(t.account, now, p).is_ok() {
            self.liquidations += 1;
            ev(EventRow {
                time: now,
                block,
                kind: Cow::Borrowed("liquidation"),
                actor: Cow::Borrowed("liquidator"),
                ..Default::default()
            });
            self.refresh(now);
            return true;
        }
        changed
    }

    fn settle(&mut self, _now: u64, _p: U256, _what: Settle) {}

    fn refresh(&mut self, now: u64) {
        // the liquidation margin adds fees and a premium to the buffer: 10% inside for them;
        // funding moves the margin between operations (held near zero by the skew arbitrage)
        self.safe = super::liquidation_safe_band(&self.token, now, 0.9);
    }

    fn figures(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::from([
            ("orders_filled".to_string(), self.filled as f64),
            ("orders_cancelled".to_string(), self.cancelled as f64),
            ("orders_refused".to_string(), self.refused as f64),
            ("liquidations".to_string(), self.liquidations as f64),
            ("venue_fees_usd".to_string(), self.venue_fees),
            ("keeper_deposits_usd".to_string(), self.keeper_deposits),
            ("fees_to_recipient_usd".to_string(), wad_f64(self.token.fees_collected)),
        ]);
        if self.crowd.is_some() {
            out.insert("crowd_refused".to_string(), self.crowd_refused as f64);
        }
        out
    }

    fn add_costs(&self, costs: &mut crate::metrics::CostBreakdown) {
        costs.pool_fees += self.venue_fees;
        costs.venue_keeper_fees += self.keeper_deposits;
        let t = &self.token;
        if let Ok(f) = t.market.funding_paid_by(t.account, self.last.0, self.last.1) {
            costs.funding += crate::units::signed_wad_f64(f);
        }
    }

    fn funding_model(&self) -> String {
        self.funding_model.clone()
    }

    fn engaged(&self) -> bool {
        self.opened
    }
}
