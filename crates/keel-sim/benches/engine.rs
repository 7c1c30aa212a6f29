//! Engine speed over the ETH hourly history (../shared/data/eth-usd-1h.csv when present, else a
//! seeded path of the same length): simulated hours per second at `--block-time 1h`, and blocks
//! per second at 12-second blocks (19.9 M blocks; issue #17's target is the whole history in
//! under 1.5 s). Loading the CSV, building the token and writing reports are outside the timed
//! region.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use keel_core::product::Product;
use keel_sim::metrics::NullSink;
use keel_sim::prices::{BridgedBars, GeneratedPath, Model, PriceSource, load_bars};
use keel_sim::{SimConfig, Simulation};

fn history() -> (Vec<keel_sim::prices::Bar>, u64) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/eth-usd-1h.csv");
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let s = load_bars(&text, true).expect("history loads");
            (s.bars, s.interval)
        }
        Err(_) => {
            eprintln!("note: {path} not found; benchmarking a seeded path of the same length");
            let mut g =
                GeneratedPath::new(Model::Gbm { drift: 0.0, vol: 0.8 }, vec![], 200.0, 1_526_364_000, 3_600, 66_191, 1);
            let mut bars = Vec::new();
            let mut t = 1_526_364_000;
            let mut last = 200.0;
            while let Some(x) = g.next_tick() {
                bars.push(keel_sim::prices::Bar {
                    time: t,
                    open: last,
                    high: last.max(x.price),
                    low: last.min(x.price),
                    close: x.price,
                });
                last = x.price;
                t += 3_600;
            }
            (bars, 3_600)
        }
    }
}

fn bench(c: &mut Criterion) {
    let (bars, interval) = history();
    let product = Product::from_toml(include_str!("../../../products/eth2x-fli.toml")).unwrap();
    let cfg = SimConfig { sample_every: 86_400, ..SimConfig::default() };
    let hours = bars.len() as u64;
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(hours));
    // the whole history at a block time: the source and the warmed-up token built outside the
    // timed region
    let run_at = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: String, block: u64| {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let src = BridgedBars::new(bars.clone(), interval, block, 1).unwrap();
                    let sim =
                        Simulation::new(&product, cfg.clone(), src.start_time(), src.start_price(), "eth history")
                            .unwrap();
                    (sim, src)
                },
                |(sim, mut src)| sim.run(&mut src, &mut NullSink).unwrap(),
                BatchSize::LargeInput,
            )
        });
    };
    run_at(&mut g, format!("eth2x-fli over {hours} hours at 1h blocks"), 3_600);
    let blocks = hours * 300;
    g.throughput(Throughput::Elements(blocks));
    run_at(&mut g, format!("eth2x-fli over {hours} hours at 12s blocks ({blocks} blocks)"), 12);
    g.finish();
}

criterion_group!(engine, bench);
criterion_main!(engine);
