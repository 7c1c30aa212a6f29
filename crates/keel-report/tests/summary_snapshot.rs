//! The summary a user reads, pinned: a seeded 60-day crash run at 1-hour blocks. A change in
//! any figure (a rule, a cost, a rounding) shows up here as a snapshot diff to review.

use keel_core::product::Product;
use keel_sim::metrics::NullSink;
use keel_sim::prices::{PriceSource, scenario};
use keel_sim::{SimConfig, Simulation};

#[test]
fn crash_summary_table() {
    let product = Product::from_toml(include_str!("../../../products/eth2x-fli.toml")).unwrap();
    let mut src = scenario("crash", 2000.0, 1_704_067_200, 3_600, 7).unwrap();
    let sim = Simulation::new(
        &product,
        SimConfig { seed: 7, ..SimConfig::default() },
        src.start_time(),
        src.start_price(),
        "scenario crash",
    )
    .unwrap();
    let summary = sim.run(&mut src, &mut NullSink).unwrap().summary;
    insta::assert_snapshot!(keel_report::summary_table(&summary));
}
