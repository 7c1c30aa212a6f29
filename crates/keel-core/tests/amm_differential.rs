//! keel's synchronous swap loop against the uniswap-v3-sdk's own `v3_swap` (which mirrors
//! `UniswapV3Pool.swap`), on random swaps through a multi-position pool: identical to the wei.

use keel_core::math::{U256, pow10};
use keel_core::venue::amm::{Pool, PoolToken};
use proptest::prelude::*;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use uniswap_v3_sdk::prelude::{Tick, TickListDataProvider, v3_swap};

/// Poll a future that never waits (the in-memory tick provider answers at once).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory provider never waits"),
    }
}

fn pool() -> Pool {
    let wad = pow10(18);
    Pool::from_profile(
        "USDC/WETH",
        PoolToken { symbol: "USDC".into(), decimals: 6 },
        PoolToken { symbol: "WETH".into(), decimals: 18 },
        500,
        wad,
        U256::from(2_000u64) * wad,
        &[10u32, 20, 40, 70, 120, 200, 350, 600, 1_000, 1_800, 3_000, 6_000, 12_000, 25_000]
            .map(|bp| (bp, U256::from(3_000_000u64 + bp as u64 * 1_000) * wad)),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn swap_loop_matches_the_sdk(zero_for_one in any::<bool>(), exp in 0u32..6, mant in 1u64..1000, exact_in in any::<bool>()) {
        let p = pool();
        // Amounts that cross bands: 1k–100M USDC or 0.1–100k WETH (output side for exact-out).
        let base = if zero_for_one == exact_in { 9 } else { 17 };
        let amount = U256::from(mant) * pow10(base + exp) / U256::from(10u64);
        let ticks: Vec<Tick> = p.ticks().iter().map(|t| Tick::new(t.index, t.liquidity_gross, t.liquidity_net)).collect();
        let provider = TickListDataProvider::new(ticks, p.tick_spacing);
        let specified = if exact_in { alloy_primitives::I256::try_from(amount).unwrap() } else { -alloy_primitives::I256::try_from(amount).unwrap() };
        let sdk = ready(v3_swap(
            alloy_primitives::aliases::U24::from(p.fee_pips), p.sqrt_price_x96(), p.tick(), p.liquidity(), p.tick_spacing,
            &provider, zero_for_one, specified, None,
        ));
        let ours = if exact_in { p.quote_exact_input(zero_for_one, amount, None) } else { p.quote_exact_output(zero_for_one, amount, None) };
        match (sdk, ours) {
            (Ok(s), Ok(o)) => {
                prop_assert!(s.amount_specified_remaining.is_zero());
                prop_assert_eq!(s.sqrt_price_x96, o.sqrt_price_x96);
                prop_assert_eq!(s.tick_current, o.tick);
                prop_assert_eq!(s.liquidity, o.liquidity);
                if exact_in {
                    prop_assert_eq!(s.amount_calculated.unsigned_abs(), o.amount_out);
                    prop_assert_eq!(amount, o.amount_in);
                } else {
                    prop_assert_eq!(s.amount_calculated.into_raw(), o.amount_in);
                    prop_assert_eq!(amount, o.amount_out);
                }
            }
            (Ok(s), Err(_)) => prop_assert!(!s.amount_specified_remaining.is_zero(), "keel refused a swap the pool fills"),
            (Err(_), Ok(o)) => prop_assert!(false, "the SDK refused a swap keel filled: {o:?}"),
            (Err(_), Err(_)) => {}
        }
    }
}
