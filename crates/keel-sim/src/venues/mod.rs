//! The agents of each venue a token can live on, behind [`crate::market::Venue`]: the lending
//! market ([`crate::engine::Simulation`]), the PerpV2 vAMM ([`perp`]) and the Synthetix-style
//! perps market ([`synthetix`]).

pub mod perp;
pub mod synthetix;

use crate::market::Venue;
use keel_core::product::AnyProduct;

/// The venue and agents of a perp-venue product, `tvl_usd` issued at the start at `price`.
/// (A lending product's venue is [`crate::engine::Simulation`], which also warms the token up.)
pub fn build(product: &AnyProduct, tvl_usd: f64, start: u64, price: f64) -> Result<Box<dyn Venue>, String> {
    Ok(match product {
        AnyProduct::Perp(p) => Box::new(perp::PerpVenue::new(p, tvl_usd, 200_000_000.0, start, price)?),
        AnyProduct::Threshold(p) => Box::new(synthetix::SynthetixVenue::new(p, tvl_usd, start, price)?),
        AnyProduct::Lending(_) => return Err("a lending product runs through keel_sim::Simulation".into()),
    })
}
