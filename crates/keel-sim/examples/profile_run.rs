//! Runs ETH2x over the ETH hourly history at 1h blocks with components switched off in turn,
//! to see where a block's time goes (for profiling; not part of the product).
use keel_core::product::Product;
use keel_sim::metrics::NullSink;
use keel_sim::prices::{BridgedBars, PriceSource, load_bars};
use keel_sim::{Costs, SimConfig, Simulation};

fn main() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/eth-usd-1h.csv")).unwrap();
    let s = load_bars(&text, true).unwrap();
    let product = Product::from_toml(include_str!("../../../products/eth2x-fli.toml")).unwrap();
    let base = SimConfig { sample_every: 86_400, ..SimConfig::default() };
    let mut no_holders = base.clone();
    no_holders.holders.mints_per_day = 0.0;
    no_holders.holders.redeems_per_day = 0.0;
    let variants: Vec<(&str, SimConfig)> = vec![
        ("default", base.clone()),
        ("no interest", SimConfig { costs: Costs { interest: false, ..Costs::ALL }, ..base.clone() }),
        (
            "no pool (oracle fills, no arbitrage)",
            SimConfig { costs: Costs { pool: false, ..Costs::ALL }, ..base.clone() },
        ),
        ("no holders", no_holders),
        ("costs none", SimConfig { costs: Costs::NONE, ..base.clone() }),
    ];
    let only = std::env::args().nth(1);
    for (name, cfg) in variants.into_iter().filter(|(n, _)| only.as_deref().is_none_or(|o| n.starts_with(o))) {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut src = BridgedBars::new(s.bars.clone(), s.interval, 3_600, 1).unwrap();
            let sim = Simulation::new(&product, cfg.clone(), src.start_time(), src.start_price(), "eth").unwrap();
            let t = std::time::Instant::now();
            let r = sim.run(&mut src, &mut NullSink).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            std::hint::black_box(r);
        }
        eprintln!("{name:<40} {:>7.1} ms  {:>9.0} hours/s", best * 1e3, s.bars.len() as f64 / best);
    }
}
