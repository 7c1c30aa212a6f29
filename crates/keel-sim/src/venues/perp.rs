//! A PerpV2 FLI token's venue: the index price feed; makers who re-centre the vAMM's liquidity
//! once the price has moved 20% from where it was placed; the rest of the market
//! ([`crate::funding`]): with funding on, arbitrageurs and other traders who trade the vAMM
//! toward the index plus the crowd's premium every step, with a capacity, while the clearing
//! house accrues funding from the market and index TWAPs as Curie does
//! ([`PerpFliToken::settle_block`]); with funding off, an arbitrageur who keeps the vAMM at the
//! index (applied before each of the token's trades — between them no one trades the pool, so
//! the premium, and with it funding, is zero); anyone liquidating an account under its
//! maintenance margin. The token is issued and engaged at the start, its TWAP completed by the
//! keeper at the first blocks' pace.

use crate::funding::{Crowd, FundingModel};
use crate::market::{HOLDERS, OPERATOR, Settle, Venue};
use crate::metrics::EventRow;
use crate::units::{price_wad, wad_f64};
use keel_core::leveraged::LeveragedToken;
use keel_core::math::{U256, WAD};
use keel_core::product::PerpProduct;
use keel_core::strategy::fli::perp_token::{PerpFliToken, vamm};
use keel_core::venue::amm::sqrt_price_x96_from_ratio;
use keel_core::venue::perp_v2::MarketTwaps;
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
    /// The rest of the market (`None`: funding off).
    crowd: Option<Crowd>,
    /// How funding is made, for the summary.
    funding_model: String,
    /// The vAMM's oracle and TWAP windows, as the clearing house reads them.
    twaps: MarketTwaps,
    /// When the crowd last traded (once a block).
    crowd_acted: u64,
    /// The pool's tick and price before the token's call, to record its swap.
    before_call: Option<(i32, keel_core::U160)>,
    crowd_refused: u64,
    start: u64,
    /// When the liquidator's screen is next re-read while funding moves the margin.
    screen_at: u64,
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
        let mut v = PerpVenue {
            token,
            pool_tvl,
            pool_center: start_price,
            safe: (0.0, 0.0),
            liquidations: 0,
            recentres: 0,
            crowd: None,
            funding_model: FundingModel::Off.describe(),
            // the vAMM has traded at the start price for an hour before the run: its TWAPs
            // (up to 30 minutes) have a history from the first block
            twaps: MarketTwaps::new(start.saturating_sub(3_600), 1_024),
            crowd_acted: start,
            before_call: None,
            crowd_refused: 0,
            start,
            screen_at: 0,
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

    /// The crowd's action at `now` (once a block): the clearing house settles the block, then
    /// the crowd trades the vAMM toward the index plus its premium, at most its capacity.
    fn crowd_acts(&mut self, now: u64, price: f64, p: U256) {
        let Some(crowd) = &mut self.crowd else { return };
        if self.crowd_acted == now {
            return;
        }
        // capacity is per step: blocks longer than a step give the crowd that many steps' worth
        let steps = (now.saturating_sub(self.crowd_acted) as f64 / crowd.process().step.max(1) as f64).clamp(1.0, 1e6);
        self.crowd_acted = now;
        let rate = crowd.advance(now);
        let capacity = crowd.process().capacity_usd * steps;
        // the clearing house settles funding at the crowd's first trade of the block (the mark
        // price is only read for the token's own calls, in `settle`)
        let t = &mut self.token;
        let accrued = self.twaps.funding_twap_x96(&t.pool, now).and_then(|x| t.market.accrue_funding_x96(now, x, p));
        if accrued.is_err() {
            self.crowd_refused += 1;
            return;
        }
        t.index_price = p;
        // inside the venue's 10% price band, as its guard requires of every swap
        let target = price * (1.0 + rate.clamp(-0.09, 0.09));
        let pool = &mut self.token.pool;
        let (tick, sqrt) = (pool.tick(), pool.sqrt_price_x96());
        let Some(goal) = price_wad(target).and_then(|t| sqrt_price_x96_from_ratio(t, WAD).ok()) else { return };
        // the input side: base to push the price down, quote to push it up
        // (bounded so any accepted capacity and block time converts to a wad amount)
        let max_in = (if goal < sqrt { capacity / price } else { capacity }).min(1e14);
        let Some(max_in) = price_wad(max_in) else { return };
        if pool.swap_toward(goal, max_in).is_err() {
            self.crowd_refused += 1;
        }
        self.twaps.record(now, tick, sqrt, &self.token.pool);
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
            let (tick, sqrt) = (self.token.pool.tick(), self.token.pool.sqrt_price_x96());
            self.token.pool = pool;
            self.pool_center = price;
            self.recentres += 1;
            if self.crowd.is_some() {
                self.twaps.record(now, tick, sqrt, &self.token.pool);
            }
        }
        if self.crowd.as_ref().is_some_and(|c| c.due(now)) {
            self.crowd_acts(now, price, p);
            // funding moves the margin between the token's operations: re-read hourly
            if now >= self.screen_at {
                self.screen_at = now + 3_600;
                self.refresh(now);
            }
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
        if self.crowd.is_some() {
            // the crowd acts before the token's trade or a holder's flow (once a block); the
            // clearing house settles the block the token trades in
            if matches!(what, Settle::Call | Settle::Flow) {
                self.crowd_acts(now, keel_core::math::to_f64(p, 18), p);
                if self.token.settle_block(&self.twaps, now, p).is_err() {
                    self.crowd_refused += 1;
                }
                self.before_call = Some((self.token.pool.tick(), self.token.pool.sqrt_price_x96()));
            }
            return;
        }
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
        // the token's swap, if it made one, goes into the vAMM's oracle
        if let Some((tick, sqrt)) = self.before_call.take() {
            self.twaps.record(now, tick, sqrt, &self.token.pool);
        }
        // liquidation under the maintenance margin: |leverage| ≥ 1/mm, 2% inside for safety
        self.safe = super::liquidation_safe_band(&self.token, now, 0.98);
    }

    fn figures(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::from([
            ("vamm_recentres".to_string(), self.recentres as f64),
            ("liquidations".to_string(), self.liquidations as f64),
            ("ether_left".to_string(), wad_f64(self.token.fli.ether_balance)),
        ]);
        if self.crowd.is_some() {
            out.insert("crowd_refused".to_string(), self.crowd_refused as f64);
        }
        out
    }

    fn trade_price(&self, price: f64) -> f64 {
        // the vAMM's own price of the base when it is not pinned to the index
        match self.crowd {
            Some(_) => keel_core::venue::perp_v2::market_price(self.token.pool.sqrt_price_x96()).map_or(price, wad_f64),
            None => price,
        }
    }

    fn add_costs(&self, costs: &mut crate::metrics::CostBreakdown) {
        if let Ok(f) = self.token.market.funding_paid() {
            costs.funding += crate::units::signed_wad_f64(f);
        }
    }

    fn funding_model(&self) -> String {
        self.funding_model.clone()
    }

    fn engaged(&self) -> bool {
        self.token.fli.twap_leverage_ratio.is_zero()
    }
}
