//! Can a product start? `keel product check` runs this after the file's rules: the product is
//! built on its venues at its own prices, issued and engaged as a backtest starts it, and run
//! through a few hours of a gently moving market. A product whose rules pass but whose market
//! cannot be set up (a lending market too shallow for its own whales, a leverage its venue
//! refuses) is reported here, before anyone backtests, sweeps or serves it.

use crate::agents::HolderConfig;
use crate::metrics::NullSink;
use crate::prices::FixedPath;
use crate::{SimConfig, Simulation};
use keel_core::product::AnyProduct;

const START: u64 = 1_700_000_000;

/// A flat market with a small wobble: `hours` of blocks `block_time` apart around `p0`.
fn wobble(p0: f64, block_time: u64, hours: u64) -> FixedPath {
    let n = hours * 3600 / block_time + 1;
    let prices = (0..n).map(|i| p0 * (1.0 + 0.002 * (i as f64 * 0.01).sin())).collect();
    FixedPath::new(START, block_time, prices)
}

/// Start `product` as `keel backtest` does and run it for a few hours; `Err` says why it
/// cannot start, in the simulator's words.
pub fn start_check(product: &AnyProduct) -> Result<(), String> {
    match product {
        AnyProduct::Lending(p) => {
            let price = if p.token.underlying == p.collateral.asset { p.collateral.price } else { p.borrow.price };
            let mut source = wobble(price.to_f64(), 12, 6);
            let cfg = SimConfig {
                holders: HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 },
                ..SimConfig::default()
            };
            let sim = Simulation::new(p, cfg, START, price.to_f64(), "start check").map_err(|e| e.to_string())?;
            sim.run(&mut source, &mut NullSink).map(|_| ()).map_err(|e| e.to_string())
        }
        AnyProduct::Threshold(p) => {
            let mut source = wobble(p.price.to_f64(), 2, 2);
            let none = HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
            crate::threshold::run_threshold_with_flows(p, &mut source, 100_000.0, &none, 1).map(|_| ())
        }
        AnyProduct::Perp(p) => {
            let mut source = wobble(p.price.to_f64(), 2, 2);
            let none = HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
            crate::perp_fli::run_perp_fli_with_flows(p, &mut source, 1_000_000.0, 200_000_000.0, &none, 1).map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bundled product starts (`btc2x-fli.toml` did not: its 70% LTV could not carry the
    /// simulated market's other borrowers, error 36).
    #[test]
    fn every_bundled_product_starts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../products");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let p = AnyProduct::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            start_check(&p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 7, "{n} products");
    }
}
