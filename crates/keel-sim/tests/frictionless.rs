//! The methodology's own effect, costs off: a token rebalanced to its target every block
//! follows the continuous formula; the FTX walk-through paths and the Synthetix 2x example.

use keel_core::product::Product;
use keel_sim::metrics::NullSink;
use keel_sim::prices::{FixedPath, Model, PriceSource};
use keel_sim::{Costs, EventRow, SeriesRow, SimConfig, Simulation, Sink};

/// A lending FLI product pinned at `tlr` (min = max = target, full recentering): any move
/// out of the one-point band triggers a rebalance back to the target. No fees. The oracle
/// posts every block (deviation threshold 0).
fn pinned(tlr: &str, inverse: bool) -> Product {
    let (coll, cdec, borr, bdec, price_c, price_b, under) = if inverse {
        ("USDC", 6, "WETH", 18, "1", "2000", "WETH")
    } else {
        ("WETH", 18, "USDC", 6, "2000", "1", "WETH")
    };
    let text = format!(
        r#"
[token]
name = "pinned"
symbol = "PIN"
supply_cap = "1000000000"
underlying = "{under}"
[collateral]
asset = "{coll}"
decimals = {cdec}
price = "{price_c}"
deviation = "0"
[borrow]
asset = "{borr}"
decimals = {bdec}
price = "{price_b}"
deviation = "0"
[lending]
ltv = "80%"
liquidation_threshold = "82.5%"
liquidation_bonus = "5%"
borrow_liquidity = "{liq}"
[methodology]
kind = "fli"
target_leverage_ratio = "{tlr}"
min_leverage_ratio = "{tlr}"
max_leverage_ratio = "{tlr}"
recentering_speed = "100%"
rebalance_interval = "365d"
[execution]
unutilized_leverage_percentage = "1%"
slippage_tolerance = "1%"
twap_cooldown_period = "0"
[incentive]
incentivized_leverage_ratio = "5"
incentivized_slippage_tolerance = "5%"
incentivized_twap_cooldown_period = "0"
ether_reward = "0"
[exchanges.oracle]
twap_max_trade_size = "1000000000"
incentivized_twap_max_trade_size = "1000000000"
"#,
        liq = if inverse { "100000000" } else { "1000000000" }
    );
    Product::from_toml(&text).unwrap()
}

fn frictionless(seed: u64) -> SimConfig {
    let mut cfg = SimConfig { seed, costs: Costs::NONE, initial_tvl_usd: 1_000_000.0, ..SimConfig::default() };
    cfg.keeper.latency_seconds = 0;
    cfg.keeper.ripcord_bots = 0;
    cfg.holders.mints_per_day = 0.0;
    cfg.holders.redeems_per_day = 0.0;
    cfg.sample_every = 86_400;
    cfg
}

/// Keeps every row.
#[derive(Default)]
struct Rows(Vec<SeriesRow>, Vec<EventRow>);
impl Sink for Rows {
    fn row(&mut self, r: &SeriesRow) {
        self.0.push(*r);
    }
    fn event(&mut self, e: &EventRow) {
        self.1.push(e.clone());
    }
}

#[test]
fn continuous_formula_within_a_tenth_of_a_percent() {
    // One year of GBM (80% vol) at 5-minute blocks; the formula uses the path's own returns.
    let bt = 300;
    let steps = 365 * 86_400 / bt;
    let mut decay = std::collections::BTreeMap::new();
    for (tlr, inverse, beta) in [("2", false, 2.0), ("3", false, 3.0), ("2", true, -1.0), ("3", true, -2.0)] {
        let product = pinned(tlr, inverse);
        let mut path = keel_sim::prices::GeneratedPath::new(
            Model::Gbm { drift: 0.0, vol: 0.8 },
            vec![],
            2000.0,
            1_704_067_200,
            bt,
            steps,
            7,
        );
        // Record the prices the token saw to compute the formula independently.
        let mut prices = vec![path.start_price()];
        let mut ticks = Vec::new();
        while let Some(t) = path.next_tick() {
            prices.push(t.price);
            ticks.push(t.price);
        }
        let mut src = FixedPath::new(1_704_067_200, bt, prices.clone());
        let sim = Simulation::new(&product, frictionless(7), src.start_time(), src.start_price(), "gbm").unwrap();
        let s = sim.run(&mut src, &mut NullSink).unwrap().summary;
        assert_eq!(s.target_exposure, beta);
        assert!(s.counts.rebalances as u64 > steps / 2, "rebalanced nearly every block: {}", s.counts.rebalances);
        // The oracle rounds prices to 8 decimals: the formula uses those.
        let q: Vec<f64> = prices.iter().map(|p| (p * 1e8).round() / 1e8).collect();
        let sum_r2: f64 = q.windows(2).map(|w| (w[1] / w[0]).ln().powi(2)).sum();
        let formula = (q[q.len() - 1] / q[0]).powf(beta) * ((beta - beta * beta) / 2.0 * sum_r2).exp();
        let got = 1.0 + s.token_return;
        let err = (got / formula - 1.0).abs();
        eprintln!("β {beta:+}: token {got:.6}, formula {formula:.6}, off by {:.5}%", err * 100.0);
        assert!(err < 0.001, "β {beta}: NAV ratio {got:.6} vs formula {formula:.6} ({:.4}% off)", err * 100.0);
        // The measured decay factor: what the token made over the power of the price move.
        decay.insert(format!("{beta:+}"), got / (q[q.len() - 1] / q[0]).powf(beta));
    }
    // (β − β²)/2 is −1 for both 2x and −1x, and −3 for both 3x and −2x: same path, same decay.
    for (a, b) in [("+2", "-1"), ("+3", "-2")] {
        let (x, y) = (decay[a], decay[b]);
        eprintln!("decay β {a}: {x:.6}, β {b}: {y:.6}");
        assert!((x / y - 1.0).abs() < 0.002, "decay β {a} {x:.6} vs β {b} {y:.6}");
    }
}

fn walk(prices: &[f64], tlr: &str) -> f64 {
    let product = pinned(tlr, false);
    let mut src = FixedPath::new(1_704_067_200, 86_400, prices.to_vec());
    let sim = Simulation::new(&product, frictionless(1), src.start_time(), src.start_price(), "walk").unwrap();
    sim.run(&mut src, &mut NullSink).unwrap().summary.token_return
}

#[test]
fn ftx_walk_through_paths_with_a_daily_rebalance() {
    // (path, expected 3x return) from the issuers' examples (methodologies.md §6.3).
    let cases: &[(&str, &[f64], f64)] = &[
        ("up then back", &[10_000.0, 11_000.0, 10_000.0], -0.0545),
        ("up twice", &[10_000.0, 11_000.0, 12_100.0], 0.69),
        ("down twice", &[10_000.0, 9_500.0, 9_000.0], -0.284),
    ];
    for (case, path, want) in cases {
        let got = walk(path, "3");
        eprintln!("{case}: 3x return {:.3}%", got * 100.0);
        assert!((got - want).abs() < 0.0006, "case {case}: {got:.5} vs {want}");
    }
}

#[test]
fn synthetix_2x_example_shows_in_the_leverage_series() {
    // ETH −7.5% takes a 2x token to about 2.18x before the keeper (one block later) rebalances.
    let product = pinned("2", false);
    let mut src = FixedPath::new(1_704_067_200, 3_600, vec![2000.0, 1850.0, 1850.0, 1850.0]);
    let mut cfg = frictionless(1);
    cfg.keeper.latency_seconds = 3_600;
    cfg.sample_every = 3_600;
    let sim = Simulation::new(&product, cfg, src.start_time(), src.start_price(), "seed 002").unwrap();
    let mut rows = Rows::default();
    sim.run(&mut src, &mut rows).unwrap();
    let lev: Vec<f64> = rows.0.iter().map(|r| r.leverage).collect();
    assert!((lev[0] - 2.0).abs() < 1e-9, "{lev:?}");
    assert!((lev[1] - 1.85 / 0.85).abs() < 1e-6, "2 · 0.925 / (2 · 0.925 − 1) = 2.176: {lev:?}");
    assert!((lev[2] - 2.0).abs() < 1e-6, "rebalanced back: {lev:?}");
    let rebalance = rows.1.iter().find(|e| e.kind == "rebalance").unwrap();
    // "reducing the borrowed funds by 15%": the delever sells 15% of the debt's worth.
    assert!((rebalance.leverage_before - 2.176).abs() < 0.001);
}
