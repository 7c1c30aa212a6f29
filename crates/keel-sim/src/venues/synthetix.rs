//! A threshold, daily or continuous token's venue, Synthetix-Perps-style: the price feed; a
//! venue keeper who executes the token's pending delayed order as soon as it is executable
//! (cancels it past the maximum age); anyone liquidating a liquidatable position; and the rest
//! of the market as one arbitrage account that trades the skew back to zero after each fill, so
//! funding does not run away as it would on a market holding one position. The first holders'
//! deposit is minted at the start; its order opens the position.

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
        };
        v.refresh(start);
        Ok(v)
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
            if !t.market.skew.is_zero() {
                let k = t.market.skew;
                let _ = t.market.modify_position(ARB, -k, now, p, None);
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
        BTreeMap::from([
            ("orders_filled".to_string(), self.filled as f64),
            ("orders_cancelled".to_string(), self.cancelled as f64),
            ("orders_refused".to_string(), self.refused as f64),
            ("liquidations".to_string(), self.liquidations as f64),
            ("venue_fees_usd".to_string(), self.venue_fees),
            ("keeper_deposits_usd".to_string(), self.keeper_deposits),
            ("fees_to_recipient_usd".to_string(), wad_f64(self.token.fees_collected)),
        ])
    }

    fn add_costs(&self, costs: &mut crate::metrics::CostBreakdown) {
        costs.pool_fees += self.venue_fees;
        costs.venue_keeper_fees += self.keeper_deposits;
    }

    fn engaged(&self) -> bool {
        self.opened
    }
}
