//! The fast path is exact: a run that skips the work of quiet blocks and the run that does
//! every check on every block produce the same rows, the same events and the same summary —
//! compared as text, to the last digit — over crashes (ripcords), TWAP runs, holders' flows,
//! both lending protocols and several seeds. Today the lending venue's oracle quiet band is
//! held to this; the market loop's token screens are not yet exact (see the ignored test).

use keel_core::product::{AnyProduct, Product};
use keel_sim::agents::HolderConfig;
use keel_sim::market::{MarketConfig, run_market};
use keel_sim::prices::{PriceSource, scenario};
use keel_sim::{Costs, EventRow, SeriesRow, SimConfig, Simulation, Sink};

const START: u64 = 1_704_067_200;

fn text(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../../products/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Everything a run streams, as text.
#[derive(Default)]
struct Record {
    rows: Vec<String>,
    events: Vec<String>,
}

impl Sink for Record {
    fn row(&mut self, r: &SeriesRow) {
        self.rows.push(format!("{r:?}"));
    }
    fn event(&mut self, e: &EventRow) {
        self.events.push(format!("{e:?}"));
    }
}

fn flows() -> HolderConfig {
    HolderConfig { mints_per_day: 6.0, redeems_per_day: 6.0, mean_size_usd: 30_000.0 }
}

/// A lending product's run, fast or not: (rows, events, summary).
fn lending(name: &str, scen: &str, block: u64, seed: u64, costs: Costs, fast: bool) -> (Record, String) {
    let p = Product::from_toml(&text(name)).unwrap();
    let price = AnyProduct::Lending(Box::new(p.clone())).start_price();
    let mut src = scenario(scen, price, START, block, seed).unwrap();
    let cfg = SimConfig { seed, costs, holders: flows(), sample_every: 3_600, fast, ..SimConfig::default() };
    let sim = Simulation::new(&p, cfg, src.start_time(), src.start_price(), scen).unwrap();
    let mut rec = Record::default();
    let r = sim.run(&mut src, &mut rec).unwrap();
    (rec, format!("{:?}", r.summary))
}

/// Any other kind's run through the market loop, with screens or without.
fn market(name: &str, scen: &str, block: u64, seed: u64, fast: bool) -> (Record, String) {
    let p = AnyProduct::from_toml(&text(name)).unwrap();
    let mut src = scenario(scen, p.start_price(), START, block, seed).unwrap();
    let cfg = MarketConfig { seed, holders: flows(), sample_every: 3_600, screens: fast, ..MarketConfig::default() };
    let mut v = keel_sim::venues::build(
        &p,
        1_000_000.0,
        src.start_time(),
        src.start_price(),
        &keel_sim::funding::FundingModel::default(),
        seed,
    )
    .unwrap();
    let mut rec = Record::default();
    let r = run_market(v.as_mut(), &mut src, &cfg, &mut rec).unwrap();
    (rec, format!("{:?}", r.summary))
}

fn same(case: &str, fast: (Record, String), slow: (Record, String)) -> String {
    assert_eq!(fast.0.rows.len(), slow.0.rows.len(), "case {case}: rows");
    for (i, (a, b)) in fast.0.rows.iter().zip(&slow.0.rows).enumerate() {
        assert_eq!(a, b, "case {case}: row {i}");
    }
    assert_eq!(fast.0.events.len(), slow.0.events.len(), "case {case}: events");
    for (i, (a, b)) in fast.0.events.iter().zip(&slow.0.events).enumerate() {
        assert_eq!(a, b, "case {case}: event {i}");
    }
    assert_eq!(fast.1, slow.1, "case {case}: summary");
    fast.1
}

#[test]
fn table_lending_fast_path_equals_every_block() {
    // (case, product, scenario, block time, seed, costs)
    let cases = [
        ("aave, crash, 12 s", "eth2x-fli.toml", "crash", 12, 1, Costs::ALL),
        ("aave, crash, 12 s, seed 2", "eth2x-fli.toml", "crash", 12, 2, Costs::ALL),
        ("aave, zigzag, 12 s", "eth2x-fli.toml", "zigzag", 12, 3, Costs::ALL),
        ("aave, bear, 60 s, no costs", "eth2x-fli.toml", "bear", 60, 4, Costs::NONE),
        ("compound, crash, 12 s", "eth2x-fli-compound.toml", "crash", 12, 5, Costs::ALL),
        ("btc, crash, 30 s", "btc2x-fli.toml", "crash", 30, 6, Costs::ALL),
    ];
    let mut ripcords = 0;
    let mut iterations = 0;
    for (case, name, scen, block, seed, costs) in cases {
        let summary =
            same(case, lending(name, scen, block, seed, costs, true), lending(name, scen, block, seed, costs, false));
        ripcords += usize::from(!summary.contains("ripcords: 0"));
        iterations += usize::from(!summary.contains("iterations: 0"));
    }
    assert!(ripcords > 0 && iterations > 0, "the cases include ripcords and TWAP iterations");
}

/// The tokens' screens skip `Settle::Call` reads on quiet blocks; those reads are not free of
/// effects (a PerpV2 vAMM's price and funding, interest valued at the block's price), so the
/// rows differ from the second hour on (perp FLI on `crash`: pool price 1966.75 against
/// 1967.61 at block 600) though the final NAV agrees. Making the screened and the every-block
/// loop equal is issue #17's work; this is its test.
#[test]
#[ignore = "the market loop's screens are not yet byte-exact (issue #17)"]
fn table_market_loop_fast_path_equals_every_block() {
    // (case, product, scenario, block time, seed)
    let cases = [
        ("perp fli, crash", "eth2x-perp.toml", "crash", 12, 1),
        ("threshold, crash", "eth-3x-threshold.toml", "crash", 12, 2),
        ("short threshold, zigzag", "eth-minus1x-threshold.toml", "zigzag", 30, 3),
        ("daily, crash", "eth-3x-daily.toml", "crash", 30, 4),
        ("bear, crash", "eth-minus2x-bear.toml", "crash", 30, 5),
    ];
    for (case, name, scen, block, seed) in cases {
        same(case, market(name, scen, block, seed, true), market(name, scen, block, seed, false));
    }
}
