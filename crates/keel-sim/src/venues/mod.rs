//! The agents of each venue a token can live on, behind [`crate::market::Venue`]: the lending
//! market ([`crate::engine::Simulation`]), the PerpV2 vAMM ([`perp`]) and the Synthetix-style
//! perps market ([`synthetix`]).

pub mod perp;
pub mod synthetix;

use crate::funding::FundingModel;
use crate::market::Venue;
use keel_core::leveraged::LeveragedToken;
use keel_core::product::AnyProduct;

/// The price band inside which the venue cannot liquidate `t` (its liquidator's screen): the
/// liquidation price from the linear exposure, pulled toward the price by `1 − keep` for the
/// terms the linear model leaves out (fees, funding, a premium). No position: no band edge.
pub(crate) fn liquidation_safe_band(t: &dyn LeveragedToken, now: u64, keep: f64) -> (f64, f64) {
    match t.exposure(now) {
        Ok(e) if !e.units.is_zero() => {
            let p = keel_core::math::to_f64(e.price, 18);
            match e.price_at_leverage(t.liquidation_leverage()) {
                Some(x) if x < p => (p - (p - x) * keep, f64::INFINITY),
                Some(x) => (0.0, p + (x - p) * keep),
                None => (0.0, f64::INFINITY),
            }
        }
        Ok(_) => (0.0, f64::INFINITY),
        // unreadable: no quiet region, the liquidator checks every block
        Err(_) => (0.0, 0.0),
    }
}

/// The venue and agents of a perp-venue product, `tvl_usd` issued at the start at `price`, the
/// rest of the market making funding by `funding` (seeded by `seed`). (A lending product's
/// venue is [`crate::engine::Simulation`], which also warms the token up.)
pub fn build(
    product: &AnyProduct,
    tvl_usd: f64,
    start: u64,
    price: f64,
    funding: &FundingModel,
    seed: u64,
) -> Result<Box<dyn Venue>, String> {
    Ok(match product {
        AnyProduct::Perp(p) => {
            Box::new(perp::PerpVenue::new(p, tvl_usd, 200_000_000.0, start, price)?.with_funding(funding, seed))
        }
        AnyProduct::Threshold(p) => {
            Box::new(synthetix::SynthetixVenue::new(p, tvl_usd, start, price)?.with_funding(funding, seed))
        }
        AnyProduct::Lending(_) => return Err("a lending product runs through keel_sim::Simulation".into()),
    })
}
