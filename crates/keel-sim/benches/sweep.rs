//! Sweep speed: one-year paths of hourly steps for `products/eth2x-fli.toml` (GBM, 80%
//! volatility), on every core, reported as paths per second. The bar is 10,000 such
//! paths in under 60 s on 2 cores, i.e. at least 167 paths/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keel_sim::SimConfig;
use keel_sim::prices::Model;
use keel_sim::sweep::{Market, SweepConfig, run_sweep};

const PATHS: usize = 64;

fn bench(c: &mut Criterion) {
    let cfg = SweepConfig {
        product_toml: include_str!("../../../products/eth2x-fli.toml").to_string(),
        grid: vec![("methodology.max_leverage_ratio".into(), vec!["2.3".into()])],
        paths: PATHS,
        market: Market::Model { model: Model::Gbm { drift: 0.0, vol: 0.8 }, shocks: vec![] },
        horizon: 365 * 86_400,
        block_time: 3_600,
        seed: 1,
        sim: SimConfig { sample_every: 86_400, ..SimConfig::default() },
        p0: 2000.0,
        funding: keel_sim::funding::FundingModel::default(),
    };
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PATHS as u64));
    g.bench_function(format!("{PATHS} one-year hourly paths, all cores"), |b| {
        b.iter(|| run_sweep(&cfg, &|_, _| {}).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
