//! A PerpV2 FLI token's venue: the index price feed; makers who re-centre the vAMM's liquidity
//! once the price has moved 20% from where it was placed; an arbitrageur who keeps the vAMM at
//! the index (applied before each of the token's trades — between them no one trades the pool,
//! so the premium, and with it funding, is zero); anyone liquidating an account under its
//! maintenance margin. The token is issued and engaged at the start, its TWAP completed by the
//! keeper at the first blocks' pace.

use crate::market::{HOLDERS, OPERATOR, Settle, Venue};
use crate::metrics::EventRow;
use crate::units::{price_wad, wad_f64};
use keel_core::leveraged::LeveragedToken;
use keel_core::math::{U256, WAD};
use keel_core::product::PerpProduct;
use keel_core::strategy::fli::perp_token::{PerpFliToken, vamm};
use keel_core::venue::amm::sqrt_price_x96_from_ratio;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The token, its vAMM and the agents around them.
pub struct PerpVenue {
    /// The token.
    pub token: PerpFliToken,
    pool_tvl: U256,
    pool_center: f64,
    /// Liquidation is impossible while the price stays inside this band.
    safe: (f64, f64),
    liquidations: u64,
    recentres: u64,
}

impl PerpVenue {
    /// `product` issued for `tvl_usd` at 100 USD a token and engaged at `start_price`; the vAMM
    /// holds `pool_tvl_usd` at the 0.05% tier.
    pub fn new(
        product: &PerpProduct,
        tvl_usd: f64,
        pool_tvl_usd: f64,
        start: u64,
        start_price: f64,
    ) -> Result<Self, String> {
        let price0 = price_wad(start_price).ok_or_else(|| format!("start price {start_price} cannot be used"))?;
        let pool_tvl = U256::from(pool_tvl_usd.max(1.0) as u128) * WAD;
        let mut token = product.build(price0, pool_tvl, OPERATOR, start).map_err(|e| e.to_string())?;
        token.fli.ether_balance = U256::from(1_000u64) * WAD;
        let value = U256::from((tvl_usd.max(1.0) * 1e6) as u128) * U256::from(1_000_000_000_000u64);
        LeveragedToken::issue(&mut token, HOLDERS, value, start).map_err(|e| format!("issue: {e}"))?;
        token.engage(start).map_err(|e| format!("engage: {e}"))?;
        let mut v =
            PerpVenue { token, pool_tvl, pool_center: start_price, safe: (0.0, 0.0), liquidations: 0, recentres: 0 };
        v.refresh(start);
        Ok(v)
    }
}

impl Venue for PerpVenue {
    fn token(&self) -> &dyn LeveragedToken {
        &self.token
    }

    fn token_mut(&mut self) -> &mut dyn LeveragedToken {
        &mut self.token
    }

    fn agents(&mut self, now: u64, block: u64, price: f64, p: U256, ev: &mut dyn FnMut(EventRow)) -> bool {
        self.token.index_price = p;
        if (price / self.pool_center - 1.0).abs() > 0.2
            && let Ok(pool) = vamm(p, self.pool_tvl, 500)
        {
            self.token.pool = pool;
            self.pool_center = price;
            self.recentres += 1;
        }
        if price > self.safe.0 && price < self.safe.1 {
            return false;
        }
        self.settle(now, p, Settle::Read);
        if self.token.market.is_liquidatable(p).unwrap_or(false) && self.token.market.liquidate(p).is_ok() {
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
        false
    }

    fn settle(&mut self, now: u64, p: U256, what: Settle) {
        // the token's trades and its holders' issues and redeems go through the vAMM (`perp.md`
        // A8a); the arbitrageur has brought it to the index before either
        if matches!(what, Settle::Call | Settle::Flow)
            && let Ok(sqrt) = sqrt_price_x96_from_ratio(p, WAD)
        {
            let _ = self.token.pool.move_price_to(sqrt);
            // the first trade of a 15-second window records the tick its swaps are held to
            // (`perp.md` B1), here after the arbitrageur's move
            let tick = self.token.pool.tick();
            self.token.guards.observe(now, tick);
        }
        let _ = self.token.market.accrue_funding(now, p, p);
    }

    fn refresh(&mut self, now: u64) {
        // liquidation under the maintenance margin: |leverage| ≥ 1/mm, 2% inside for safety
        self.safe = super::liquidation_safe_band(&self.token, now, 0.98);
    }

    fn figures(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("vamm_recentres".to_string(), self.recentres as f64),
            ("liquidations".to_string(), self.liquidations as f64),
            ("ether_left".to_string(), wad_f64(self.token.fli.ether_balance)),
        ])
    }

    fn engaged(&self) -> bool {
        self.token.fli.twap_leverage_ratio.is_zero()
    }
}
