//! Speed of the FLI hot paths: `should_rebalance` (targets < 1 µs) and a full `rebalance`
//! including the lending-market calls and the Uniswap v3 swap (target < 20 µs).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use keel_core::Address;
use keel_core::math::{U256, pow10};
use keel_core::product::Product;
use keel_core::strategy::fli::FliToken;
use keel_core::venue::amm::sqrt_price_x96_from_ratio;
use std::hint::black_box;

const T0: u64 = 1_700_000_000;
const OP: Address = Address::with_last_byte(1);
const KEEPER: Address = Address::with_last_byte(2);

fn set_price(t: &mut FliToken, usd_e8: i128, now: u64) {
    let (c, b) = (t.collateral, t.borrow);
    t.market.post_price(c, usd_e8, now);
    t.market.post_price(b, 100_000_000, now);
    let target =
        sqrt_price_x96_from_ratio(pow10(18) * U256::from(100_000_000u64), U256::from(usd_e8 as u128) * pow10(6))
            .unwrap();
    for p in t.pools.values_mut() {
        p.swap_toward(target, U256::MAX >> 4).unwrap();
    }
}

/// ETH2x engaged at 2x, then a day later ETH +8%: a lever rebalance is due.
fn due() -> (FliToken, u64) {
    let mut p = Product::from_toml(include_str!("../../../products/eth2x-fli.toml")).unwrap();
    p.token.initial_collateral_per_token = pow10(18) / U256::from(20u64);
    let mut t = p.build(OP, T0).unwrap();
    t.update_caller_status(OP, &[KEEPER], &[true]).unwrap();
    t.issue(Address::with_last_byte(3), U256::from(2_000u64) * pow10(18), T0).unwrap();
    t.engage(OP, "uniswap-v3", T0).unwrap();
    let mut now = T0;
    while !t.fli.twap_leverage_ratio.is_zero() {
        now += 31;
        set_price(&mut t, usd(2000), now);
        t.iterate_rebalance(KEEPER, "uniswap-v3", now).unwrap();
    }
    now += 86_401;
    set_price(&mut t, usd(2160), now);
    (t, now)
}

fn benches(c: &mut Criterion) {
    let (t, now) = due();
    c.bench_function("should_rebalance (token: balances, oracle checks, LR, enums)", |b| {
        b.iter(|| black_box(t.should_rebalance(black_box(now)).unwrap()))
    });
    let snap = t.snapshot(now).unwrap();
    let lr = t.current_leverage_ratio(now).unwrap();
    let m = t.fli.methodology.clone();
    c.bench_function("should_rebalance (pure: from a snapshot's LR)", |b| {
        b.iter(|| {
            black_box(
                t.fli.should_rebalance_at(black_box(lr), m.min_leverage_ratio, m.max_leverage_ratio, now).unwrap(),
            )
        })
    });
    let risk = t.risk();
    c.bench_function("evaluate (LR, shouldRebalance, chunk sizes)", |b| {
        b.iter(|| black_box(t.fli.evaluate(black_box(&snap), None, risk).unwrap()))
    });
    c.bench_function("rebalance (borrow, v3 swap, supply; atomic)", |b| {
        b.iter_batched_ref(
            || t.clone(),
            |tok| black_box(tok.rebalance(KEEPER, "uniswap-v3", now).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("lending: accrue_all one hour (2 reserves, treasury)", |b| {
        b.iter_batched_ref(
            || (t.market.clone(), now),
            |(m, n)| {
                *n += 3_600;
                m.accrue_all(*n).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("lending: ray_mul", |b| {
        let (x, y) =
            (U256::from(1_234_567_890_123_456_789_012_345_678u128), U256::from(1_000_000_123_456_789_012_345_678u128));
        b.iter(|| keel_core::math::ray_mul(black_box(x), black_box(y)).unwrap())
    });
    let pool = t.pools["uniswap-v3"].clone();
    c.bench_function("v3 quote: 20k USDC exact input", |b| {
        b.iter(|| black_box(pool.quote_exact_input(true, black_box(U256::from(20_000_000_000u64)), None).unwrap()))
    });
}

criterion_group!(fli, benches);
criterion_main!(fli);

/// Whole US dollars as an 8-decimal oracle answer.
#[allow(dead_code)]
fn usd(x: i128) -> i128 {
    x * 100_000_000
}
