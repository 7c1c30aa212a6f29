//! keel-core's Compound v2 market (`venue::compound`) against Compound's `Comptroller`,
//! `CErc20` and `WhitePaperInterestRateModel`, from the compiled contracts
//! `@setprotocol/set-protocol-v2` ships (`external/abi/compound`), with its
//! `CompoundPriceOracleMock` and `StandardTokenMock`. Random sequences: two markets (an
//! 18-decimal volatile asset and a 6-decimal stable) with random collateral factors, reserve
//! factors and rate models, a random close factor and liquidation incentive, three users who
//! enter some markets, then random mints, redeems (by cTokens or underlying), borrows,
//! repayments (some above the debt), blocks passing, price moves and liquidations.
//!
//! Compound answers most failures with an error code instead of reverting, so each operation is
//! first called (`eth_call` as the user) and sent only when it would succeed: both sides must
//! succeed together or fail with the same cToken error code. After every operation each
//! market's totals, borrow index, cash, exchange rate and accrual block, and each user's
//! cTokens, stored borrow and account liquidity / shortfall, must be equal to the wei.

mod common;

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolValue};
use common::compound::{ICToken, IOracle, compare, deploy, ok};
use keel_conformance::{Chain, for_each_sequence};
use keel_core::error::LendingError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Call as `from`, then send if the answer is 0: `Ok` on success, else the error code (or
/// `u32::MAX` for a revert).
fn send(c: &mut Chain, from: Address, to: Address, data: Vec<u8>) -> Result<(), u32> {
    match c.call_from(from, to, data.clone()) {
        Err(_) => Err(u32::MAX),
        Ok(out) => {
            let code = U256::abi_decode(&out[..32]).unwrap();
            if !code.is_zero() {
                return Err(code.saturating_to::<u32>());
            }
            c.transact_from(from, to, data).map(|_| ()).map_err(|_| u32::MAX)
        }
    }
}

fn code(r: &Result<impl Sized, LendingError>) -> Result<(), u32> {
    match r {
        Ok(_) => Ok(()),
        Err(LendingError::Compound { code, .. }) => Err(*code),
        Err(_) => Err(u32::MAX),
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    both_refused: u64,
    liquidations: u64,
    /// Per operation kind: (accepted, refused by both).
    kinds: std::collections::BTreeMap<String, (u64, u64)>,
}

fn run_sequence(seed: u64, t: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = deploy(&mut rng);
    compare(&mut m, &format!("sequence {seed}: setup"));
    // every user starts with a deposit in each market, so most operations have something to act on
    for u in m.users.clone() {
        for k in 0..m.assets.len() {
            let (ct, id, dec) = (m.assets[k].ctoken, m.assets[k].id, m.assets[k].decimals);
            let amount = U256::from(10u64).pow(U256::from(dec as u64)) * U256::from(rng.random_range(1..50_000u64))
                / U256::from(m.keel.price(id, m.chain.now).unwrap() / U256::from(100_000_000u64));
            let now = m.chain.now;
            assert_eq!(code(&m.keel.mint(u, id, amount, now)), Ok(()));
            assert_eq!(send(&mut m.chain, u, ct, ICToken::mintCall { amount }.abi_encode()), Ok(()));
            t.ops += 1;
        }
    }
    compare(&mut m, &format!("sequence {seed}: deposits"));
    let n = rng.random_range(10..=60);
    for step in 0..n {
        let ui = rng.random_range(0..m.users.len());
        let u = m.users[ui];
        let k = rng.random_range(0..m.assets.len());
        let (ct, id, dec) = (m.assets[k].ctoken, m.assets[k].id, m.assets[k].decimals);
        let unit = U256::from(10u64).pow(U256::from(dec as u64));
        let now = m.chain.now;
        let frac = |rng: &mut ChaCha8Rng, x: U256| x * U256::from(rng.random_range(1..=1000u64)) / U256::from(1000u64);
        let kind = rng.random_range(0..14);
        let (label, keel, chain) = match kind {
            0 | 1 => {
                let amount =
                    unit * U256::from(rng.random_range(1..100_000u64)) / U256::from(rng.random_range(1..100u64));
                let r = code(&m.keel.mint(u, id, amount, now));
                (format!("mint {amount}"), r, send(&mut m.chain, u, ct, ICToken::mintCall { amount }.abi_encode()))
            }
            2 => {
                let held = m.keel.ctoken_balance(u, id);
                let tokens = if rng.random_bool(0.2) { held } else { frac(&mut rng, held).max(U256::from(1u8)) };
                let r = code(&m.keel.redeem(u, id, tokens, U256::ZERO, now));
                (
                    format!("redeem {tokens} cTokens"),
                    r,
                    send(&mut m.chain, u, ct, ICToken::redeemCall { tokens }.abi_encode()),
                )
            }
            3 => {
                let held = m.keel.supply_balance_stored(u, id).unwrap();
                let amount = frac(&mut rng, held).max(U256::from(1u8));
                let r = code(&m.keel.redeem(u, id, U256::ZERO, amount, now));
                let data = ICToken::redeemUnderlyingCall { amount }.abi_encode();
                (format!("redeem {amount} underlying"), r, send(&mut m.chain, u, ct, data))
            }
            4..=6 => {
                // a share of the account's liquidity (half the time nearly all), in the asset
                let (liq, _) = m.keel.account_liquidity(u, now).unwrap();
                let price = m.keel.underlying_price(id, now).unwrap();
                let share =
                    if rng.random_bool(0.5) { rng.random_range(950..=1010u64) } else { rng.random_range(1..=1000u64) };
                let amount = (liq * U256::from(share) / U256::from(1000u64) * U256::from(10u64).pow(U256::from(18u8))
                    / price)
                    .max(U256::from(1u8));
                let r = code(&m.keel.borrow(u, id, amount, now));
                (format!("borrow {amount}"), r, send(&mut m.chain, u, ct, ICToken::borrowCall { amount }.abi_encode()))
            }
            7 => {
                let owed = m.keel.borrow_balance_current(u, id, now).unwrap();
                let amount = match rng.random_range(0..10) {
                    0..=2 => U256::MAX,
                    3 => owed + U256::from(1u8),
                    _ => frac(&mut rng, owed).max(U256::from(1u8)),
                };
                let r = code(&m.keel.repay(u, id, amount, now));
                (
                    format!("repay {amount}"),
                    r,
                    send(&mut m.chain, u, ct, ICToken::repayBorrowCall { amount }.abi_encode()),
                )
            }
            8 => {
                let dt = rng.random_range(1..60 * 86_400u64);
                m.chain.warp(dt);
                t.ops += 1;
                compare(&mut m, &format!("sequence {seed} step {step}: {dt} s later"));
                continue;
            }
            9 | 10 => {
                // the volatile asset's price moves up to −40% / +25%
                let a = &m.assets[0];
                let (aid, act, adec) = (a.id, a.ctoken, a.decimals);
                let old = m.keel.price(aid, now).unwrap();
                let new = old * U256::from(rng.random_range(6_000..12_500u64)) / U256::from(10_000u64);
                m.keel.post_price(aid, i128::try_from(new).unwrap(), now);
                let price = new * U256::from(10u64).pow(U256::from(28 - adec as u64));
                ok(
                    m.chain.transact(m.oracle, IOracle::setUnderlyingPriceCall { cToken: act, price }.abi_encode()),
                    "price",
                );
                t.ops += 1;
                compare(&mut m, &format!("sequence {seed} step {step}: price {new}"));
                continue;
            }
            _ => {
                // the least liquid user is liquidated by the next one: debt in asset k,
                // collateral the other asset (or the same), a share of the close amount
                let u = *m
                    .users
                    .iter()
                    .max_by_key(|x| m.keel.account_liquidity(**x, now).map(|l| l.1).unwrap_or_default())
                    .unwrap();
                let liquidator = m.users[(m.users.iter().position(|x| *x == u).unwrap() + 1) % m.users.len()];
                let coll_k = if rng.random_bool(0.8) { 1 - k } else { k };
                let (coll_ct, coll_id) = (m.assets[coll_k].ctoken, m.assets[coll_k].id);
                let max = m.keel.max_liquidation_repay(u, id, coll_id, now).unwrap_or_default();
                let repay = match rng.random_range(0..10) {
                    0 => max + U256::from(1u8),
                    1..=4 => max,
                    _ => frac(&mut rng, max).max(U256::from(1u8)),
                };
                let r = m.keel.liquidate_borrow(liquidator, u, id, coll_id, repay, now);
                if r.is_ok() {
                    t.liquidations += 1;
                }
                let data = ICToken::liquidateBorrowCall { borrower: u, repayAmount: repay, cTokenCollateral: coll_ct }
                    .abi_encode();
                (
                    format!("liquidate {u} repaying {repay} against {coll_k}"),
                    code(&r),
                    send(&mut m.chain, liquidator, ct, data),
                )
            }
        };
        let what = format!("sequence {seed} step {step}: {label} of asset {k} by {u}");
        let name = label.split(' ').next().unwrap_or_default().to_string()
            + if label.contains("underlying") { " underlying" } else { "" };
        let e = t.kinds.entry(name).or_default();
        match (keel, chain) {
            (Ok(()), Ok(())) => e.0 += 1,
            (Err(a), Err(b)) if a == b => {
                e.1 += 1;
                t.both_refused += 1
            }
            (a, b) => panic!("{what}: keel {a:?}, Compound {b:?} (error codes; {} is a revert)", u32::MAX),
        }
        t.ops += 1;
        compare(&mut m, &what);
    }
}

#[test]
fn random_sequences_match_compound_to_the_wei() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    eprintln!(
        "compound v2: {n} sequences, {} operations ({} refused by both with the same code, {} liquidations); 0 mismatches",
        t.ops, t.both_refused, t.liquidations
    );
    for (k, (a, r)) in &t.kinds {
        eprintln!("  {k}: {a} accepted, {r} refused by both");
    }
}
