//! keel-core's Uniswap v3 pool (`venue::amm`) against `UniswapV3Pool` from `@uniswap/v3-core`'s
//! published bytecode, on random sequences: a pool at a random price in a random fee tier,
//! 1–40 random positions (narrow and wide, in and out of range, overlapping), then random swaps — both directions,
//! exact input and exact output, with and without a price limit, small to pool-draining. After
//! every swap the amounts in and out, the sqrt price, the tick and the in-range liquidity must
//! be equal to the wei; a swap keel refuses for want of liquidity must be one the pool cannot
//! fill. At the end every position's fees, collected from the pool, must add up to the fees
//! keel booked less at most one wei per swap step and position (the pool's per-liquidity
//! fee growth rounds down; keel books the total). `docs/spec/conformance.md` lists what is
//! checked and the deliberate differences.

mod common;

use alloy_primitives::aliases::{I24, U160};
use alloy_primitives::{Address, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use common::uniswap::{IDriver, IFactory, IPool};
use keel_conformance::{Chain, artifact, for_each_sequence, own_bytecode};
use keel_core::error::AmmError;
use keel_core::venue::amm::{LiquidityPosition, Pool, PoolToken, sqrt_price_x96_from_f64, tick_spacing_for_fee};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

sol! {
    interface IToken {
        function mint(address to, uint256 amount) external;
    }
}

const MIN_SQRT_RATIO: u64 = 4_295_128_739;
fn max_sqrt_ratio() -> U160 {
    "1461446703485210103287273052203988822378723970342".parse().unwrap()
}

/// The pool on chain, its driver and keel's copy.
struct Pair {
    chain: Chain,
    pool: Address,
    driver: Address,
    keel: Pool,
    positions: Vec<LiquidityPosition>,
}

fn i24(t: i32) -> I24 {
    I24::try_from(t).unwrap()
}

fn slot0(c: &mut Chain, pool: Address) -> (U160, i32, u128) {
    let s = IPool::slot0Call::abi_decode_returns(&c.call(pool, IPool::slot0Call {}.abi_encode()).unwrap()).unwrap();
    let l =
        IPool::liquidityCall::abi_decode_returns(&c.call(pool, IPool::liquidityCall {}.abi_encode()).unwrap()).unwrap();
    (s.sqrtPriceX96, s.tick.as_i32(), l)
}

/// A random pool: fee tier, price, 1–12 positions; the same on chain and in keel.
fn setup(rng: &mut ChaCha8Rng) -> Pair {
    let mut chain = Chain::new();
    let fee = [500u32, 3000, 10000][rng.random_range(0..3)];
    let spacing = tick_spacing_for_fee(fee).unwrap();
    // token1/token0 from 1e-13 to 1e13 (USDC/WETH is about 5e8 or 2e-9 in raw units)
    let ratio = 10f64.powf(rng.random_range(-13.0..13.0));
    let sqrt_p = sqrt_price_x96_from_f64(ratio).unwrap();
    let probe = Pool::new("probe", token("A"), token("B"), fee, sqrt_p, &[]).unwrap();
    let tick = probe.tick();
    // wide positions and many narrow ones, so that swaps cross many initialised ticks
    let n = rng.random_range(1..=40);
    let mut positions = Vec::new();
    for _ in 0..n {
        let center = tick + rng.random_range(-400..=400) * spacing;
        let half = if rng.random_bool(0.6) { rng.random_range(1..=20) } else { rng.random_range(1..=1500) } * spacing;
        let lo = ((center - half).div_euclid(spacing) * spacing).max(-887_272 / spacing * spacing);
        let hi = ((center + half).div_euclid(spacing) * spacing).min(887_272 / spacing * spacing);
        if lo >= hi {
            continue;
        }
        let liquidity = 10u128.pow(rng.random_range(9..22)) * rng.random_range(1..100u128);
        positions.push(LiquidityPosition { tick_lower: lo, tick_upper: hi, liquidity });
    }
    let keel = Pool::new("conformance", token("T0"), token("T1"), fee, sqrt_p, &positions).unwrap();

    let code = own_bytecode("TestToken");
    let a = chain.deploy(&code, &("A".to_string(), U256::from(18u8)).abi_encode_params()).unwrap();
    let b = chain.deploy(&code, &("B".to_string(), U256::from(18u8)).abi_encode_params()).unwrap();
    let factory = chain
        .deploy(&artifact("@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"), &[])
        .unwrap();
    let created = chain
        .transact(factory, IFactory::createPoolCall { tokenA: a, tokenB: b, fee: fee.try_into().unwrap() }.abi_encode())
        .unwrap();
    let pool = Address::abi_decode(&created).unwrap();
    chain.transact(pool, IPool::initializeCall { sqrtPriceX96: sqrt_p }.abi_encode()).unwrap();
    let driver = chain.deploy(&own_bytecode("UniswapV3Driver"), &pool.abi_encode()).unwrap();
    for t in [a, b] {
        chain.transact(t, IToken::mintCall { to: driver, amount: U256::from(1u8) << 200 }.abi_encode()).unwrap();
    }
    for p in &positions {
        chain
            .transact(
                driver,
                IDriver::mintCall { tickLower: i24(p.tick_lower), tickUpper: i24(p.tick_upper), amount: p.liquidity }
                    .abi_encode(),
            )
            .unwrap();
    }
    Pair { chain, pool, driver, keel, positions }
}

fn token(s: &str) -> PoolToken {
    PoolToken { symbol: s.into(), decimals: 18 }
}

/// What one sequence did, for the summary line.
#[derive(Default)]
struct Tally {
    swaps: u64,
    limited: u64,
    refused: u64,
    steps: u64,
}

fn run_sequence(seed: u64, tally: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = setup(&mut rng);
    let ctx = |what: &str| format!("sequence {seed}: {what}");
    let (s, t, l) = slot0(&mut p.chain, p.pool);
    assert_eq!((s, t, l), (p.keel.sqrt_price_x96(), p.keel.tick(), p.keel.liquidity()), "{}", ctx("after setup"));
    let swaps = rng.random_range(1..=40);
    let mut steps = 0u64;
    for k in 0..swaps {
        let zero_for_one = rng.random_bool(0.5);
        let exact_in = rng.random_bool(0.5);
        let amount =
            U256::from(rng.random_range(1..1000u64)) * U256::from(10u8).pow(U256::from(rng.random_range(0..24u32)));
        let now = p.keel.sqrt_price_x96();
        let limit = if rng.random_bool(0.3) {
            // a limit strictly beyond the current price, up to ±30% in sqrt price
            let bp = U160::from(rng.random_range(1..3000u64));
            let ten_k = U160::from(10_000u64);
            let l = if zero_for_one { now * (ten_k - bp) / ten_k } else { now * (ten_k + bp) / ten_k };
            let l = l.clamp(U160::from(MIN_SQRT_RATIO + 1), max_sqrt_ratio() - U160::from(1));
            if l == now { None } else { Some(l) }
        } else {
            None
        };
        let what = ctx(&format!(
            "swap {k}: zero_for_one={zero_for_one} exact_in={exact_in} amount={amount} limit={limit:?} at {now}"
        ));
        let ours = if exact_in {
            p.keel.quote_exact_input(zero_for_one, amount, limit)
        } else {
            p.keel.quote_exact_output(zero_for_one, amount, limit)
        };
        let chain_limit = limit.unwrap_or(if zero_for_one {
            U160::from(MIN_SQRT_RATIO + 1)
        } else {
            max_sqrt_ratio() - U160::from(1)
        });
        let specified = if exact_in { I256::try_from(amount).unwrap() } else { -I256::try_from(amount).unwrap() };
        let call =
            IDriver::swapCall { zeroForOne: zero_for_one, amountSpecified: specified, sqrtPriceLimitX96: chain_limit }
                .abi_encode();
        match ours {
            Ok(o) => {
                let r = p
                    .chain
                    .transact(p.driver, call)
                    .unwrap_or_else(|e| panic!("{what}: keel filled, the pool reverted: {e}"));
                let r = IDriver::swapCall::abi_decode_returns(&r).unwrap();
                let (a0, a1) = (r._0, r._1);
                let (paid, got) = if zero_for_one { (a0, -a1) } else { (a1, -a0) };
                assert_eq!(paid, I256::try_from(o.amount_in).unwrap(), "{what}: amount in");
                assert_eq!(got, I256::try_from(o.amount_out).unwrap(), "{what}: amount out");
                let (s, t, l) = slot0(&mut p.chain, p.pool);
                assert_eq!(s, o.sqrt_price_x96, "{what}: sqrt price");
                assert_eq!(t, o.tick, "{what}: tick");
                assert_eq!(l, o.liquidity, "{what}: liquidity");
                if exact_in {
                    p.keel.swap_exact_input(zero_for_one, amount, U256::ZERO, limit).unwrap();
                } else {
                    p.keel.swap_exact_output(zero_for_one, amount, U256::MAX, limit).unwrap();
                }
                steps += o.steps as u64;
                tally.swaps += 1;
                tally.limited += limit.is_some() as u64;
            }
            Err(AmmError::InsufficientLiquidity { .. }) => {
                // keel refuses a swap it cannot fill; the pool would stop at the price bound short
                // of the amount (or revert on the output side): never fill it all.
                if let Ok(r) = p.chain.call(p.driver, call) {
                    let r = IDriver::swapCall::abi_decode_returns(&r).unwrap();
                    let filled = if exact_in == zero_for_one { r._0 } else { r._1 };
                    assert_ne!(filled.unsigned_abs(), amount, "{what}: keel refused a swap the pool fills in full");
                }
                tally.refused += 1;
            }
            Err(e) => panic!("{what}: keel refused: {e}"),
        }
        if rng.random_bool(0.2) {
            p.chain.warp(rng.random_range(1..86_400));
        }
    }
    // Fees: what the positions collect against what keel booked.
    let (mut c0, mut c1) = (U256::ZERO, U256::ZERO);
    for pos in &p.positions {
        let r = p
            .chain
            .transact(
                p.driver,
                IDriver::collectFeesCall { tickLower: i24(pos.tick_lower), tickUpper: i24(pos.tick_upper) }
                    .abi_encode(),
            )
            .unwrap();
        let r = IDriver::collectFeesCall::abi_decode_returns(&r).unwrap();
        c0 += U256::from(r._0);
        c1 += U256::from(r._1);
    }
    let slack = U256::from((steps + 1) * p.positions.len() as u64);
    for (side, collected, booked) in [("token0", c0, p.keel.fees0), ("token1", c1, p.keel.fees1)] {
        assert!(collected <= booked, "{}: LPs collected {collected} {side}, keel booked only {booked}", ctx("fees"));
        assert!(
            booked - collected <= slack,
            "{}: keel booked {booked} {side} of fees, LPs collected {collected} (more than {slack} wei of rounding apart)",
            ctx("fees")
        );
    }
    tally.steps += steps;
}

#[test]
fn random_swap_sequences_match_the_pool_to_the_wei() {
    let mut tally = Tally::default();
    let Some(n) = for_each_sequence(60, |seed| run_sequence(seed, &mut tally)) else { return };
    eprintln!(
        "uniswap v3: {n} sequences, {} swaps ({} with a price limit, {} swap steps), {} refusals for want of liquidity confirmed; 0 mismatches",
        tally.swaps, tally.limited, tally.steps, tally.refused
    );
    assert!(tally.swaps > n, "the sequences must mostly swap");
}
