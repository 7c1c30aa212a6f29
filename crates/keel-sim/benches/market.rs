//! The one market loop's speed: a year of the `default` scenario at 2 s blocks (15.8 M blocks)
//! for `eth2x-perp` and `eth-3x-threshold`, holders' flows on, as `keel backtest` runs them.
//! Funding on (the default premium process). Building the token is outside the timed region;
//! the path is generated inside it.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use keel_core::product::AnyProduct;
use keel_sim::agents::HolderConfig;
use keel_sim::funding::FundingModel;
use keel_sim::market::{MarketConfig, Venue, run_market};
use keel_sim::metrics::NullSink;
use keel_sim::prices::scenario;
use keel_sim::venues::{perp::PerpVenue, synthetix::SynthetixVenue};

const START: u64 = 1_704_067_200;

fn venue(p: &AnyProduct) -> Box<dyn Venue> {
    let funding = FundingModel::default();
    match p {
        AnyProduct::Perp(p) => {
            Box::new(PerpVenue::new(p, 1_000_000.0, 200_000_000.0, START, 2000.0).unwrap().with_funding(&funding, 1))
        }
        AnyProduct::Threshold(p) => {
            Box::new(SynthetixVenue::new(p, 1_000_000.0, START, 2000.0).unwrap().with_funding(&funding, 1))
        }
        AnyProduct::Lending(_) => unreachable!("the lending engine has its own bench"),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("market");
    g.sample_size(10);
    let blocks = 365 * 86_400 / 2;
    g.throughput(Throughput::Elements(blocks));
    for (name, text) in [
        ("eth2x-perp", include_str!("../../../products/eth2x-perp.toml")),
        ("eth-3x-threshold", include_str!("../../../products/eth-3x-threshold.toml")),
    ] {
        let product = AnyProduct::from_toml(text).unwrap();
        let cfg = MarketConfig {
            seed: 1,
            holders: HolderConfig::default(),
            sample_every: 3_600,
            source_name: "default".into(),
            ..MarketConfig::default()
        };
        g.bench_function(format!("{name}: a year of default at 2s blocks"), |b| {
            b.iter_batched(
                || (venue(&product), scenario("default", 2000.0, START, 2, 1).unwrap()),
                |(mut v, mut src)| run_market(v.as_mut(), &mut src, &cfg, &mut NullSink).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(market, bench);
criterion_main!(market);
