//! Property tests over random sequences of mints, redeems, transfers, price moves, time and
//! keeper calls: no panic, no value created, and every call either succeeds with the
//! invariants intact or fails and leaves the state byte-for-byte unchanged.

mod common;
use common::*;
use keel_core::math::{U256, pmul, pow10};
use keel_core::strategy::fli::{FliEvent, FliToken, ShouldRebalance};
use keel_core::{Address, Wad};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Issue(u8, u64),
    Redeem(u8, u16),
    Transfer(u8, u8, u16),
    Price(i16),
    Advance(u32),
    Keeper,
    Rebalance,
    Iterate,
    Ripcord,
    Disengage,
    Engage,
    StreamingFee,
}

fn holder(i: u8) -> Address {
    Address::with_last_byte(0x10 + i % 4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 1u64..500).prop_map(|(h, q)| Op::Issue(h, q)),
        3 => (0u8..4, 1u16..=10_000).prop_map(|(h, f)| Op::Redeem(h, f)),
        2 => (0u8..4, 0u8..4, 1u16..=10_000).prop_map(|(a, b, f)| Op::Transfer(a, b, f)),
        4 => (-1_500i16..1_500).prop_map(Op::Price),
        4 => prop_oneof![1u32..120, 1u32..200_000].prop_map(Op::Advance),
        8 => Just(Op::Keeper),
        1 => Just(Op::Rebalance),
        1 => Just(Op::Iterate),
        1 => Just(Op::Ripcord),
        1 => Just(Op::Disengage),
        1 => Just(Op::Engage),
        1 => Just(Op::StreamingFee),
    ]
}

struct World {
    t: FliToken,
    now: u64,
    price_e8: i128,
}

fn check_invariants(w: &World, what: &str) {
    w.t.check_invariants(w.now).unwrap_or_else(|e| panic!("after {what}: {e}"));
    let debt = w.t.market.debt_balance(w.t.account, w.t.borrow, w.now).unwrap();
    if !debt.is_zero()
        && w.t.market.price(w.t.collateral, w.now).is_ok()
        && let Ok(lr) = w.t.current_leverage_ratio(w.now)
    {
        assert_eq!(lr, independent_leverage(&w.t, w.now), "after {what}: LR is cV / (cV − bV)");
    }
}

fn apply(w: &mut World, op: &Op) -> Result<Option<FliEvent>, keel_core::Error> {
    let now = w.now;
    let ex = "uniswap-v3";
    let t = &mut w.t;
    match op {
        Op::Issue(h, q) => t.issue(holder(*h), wad(*q) / U256::from(10u64), now).map(|_| None),
        Op::Redeem(h, f) => {
            let q = t.ledger.balance_of(holder(*h)) * U256::from(*f) / U256::from(10_000u64);
            t.redeem(holder(*h), q, now).map(|_| None)
        }
        Op::Transfer(a, b, f) => {
            let q = t.ledger.balance_of(holder(*a)) * U256::from(*f) / U256::from(10_000u64);
            t.ledger.transfer(holder(*a), holder(*b), q).map(|_| None).map_err(Into::into)
        }
        Op::Keeper => match t.should_rebalance(now)?[0].1 {
            ShouldRebalance::None => Ok(None),
            ShouldRebalance::Rebalance => t.rebalance(KEEPER, ex, now).map(|o| Some(o.event)),
            ShouldRebalance::IterateRebalance => t.iterate_rebalance(KEEPER, ex, now).map(|o| Some(o.event)),
            ShouldRebalance::Ripcord => t.ripcord(STRANGER, ex, now).map(|o| Some(o.event)),
        },
        Op::Rebalance => t.rebalance(KEEPER, ex, now).map(|o| Some(o.event)),
        Op::Iterate => t.iterate_rebalance(KEEPER, ex, now).map(|o| Some(o.event)),
        Op::Ripcord => t.ripcord(STRANGER, ex, now).map(|o| Some(o.event)),
        Op::Disengage => t.disengage(OPERATOR, ex, now).map(|o| Some(o.event)),
        Op::Engage => t.engage(OPERATOR, ex, now).map(|o| Some(o.event)),
        Op::StreamingFee => t.accrue_streaming_fee(now).map(|_| None),
        Op::Price(_) | Op::Advance(_) => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World { t: token_with_supply(200), now: T0, price_e8: usd(2000) };
        w.t.engage(OPERATOR, "uniswap-v3", T0).unwrap();
        for i in 0..4 {
            w.t.ledger.transfer(HOLDER, holder(i), wad(50)).unwrap();
        }
        for op in &ops {
            match op {
                Op::Price(bp) => {
                    let p = w.price_e8 * (10_000 + *bp as i128) / 10_000;
                    w.price_e8 = p.max(usd(50));
                    set_price(&mut w.t, w.price_e8, w.now);
                    continue;
                }
                Op::Advance(s) => {
                    w.now += *s as u64;
                    set_price(&mut w.t, w.price_e8, w.now);
                    continue;
                }
                _ => {}
            }
            let before = w.t.clone();
            match apply(&mut w, op) {
                Err(_) => prop_assert!(w.t == before, "{op:?} failed but changed state"),
                Ok(ev) => {
                    check_invariants(&w, &format!("{op:?}"));
                    if let Some(FliEvent::Rebalanced(n)) = ev {
                        let m = &w.t.fli.methodology;
                        prop_assert!(n.new_leverage_ratio >= m.min_leverage_ratio && n.new_leverage_ratio <= m.max_leverage_ratio,
                            "rebalance target {} outside the clamp", Wad(n.new_leverage_ratio));
                        if n.chunk == n.total {
                            let lr = Wad(w.t.current_leverage_ratio(w.now).unwrap()).to_f64();
                            let target = Wad(n.new_leverage_ratio).to_f64();
                            prop_assert!((lr - target).abs() / target < 0.03, "after a complete rebalance LR {lr} is far from {target}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mint_then_redeem_creates_no_value(q in 1u64..5_000, walk in proptest::collection::vec(-800i16..800, 0..6), fee_free in any::<bool>()) {
        let mut p = eth2x();
        if fee_free {
            p.token.mint_fee = Wad::ZERO;
            p.token.redeem_fee = Wad::ZERO;
        }
        let mut t = p.build(OPERATOR, T0).unwrap();
        t.update_caller_status(OPERATOR, &[KEEPER], &[true]).unwrap();
        t.issue(HOLDER, wad(300), T0).unwrap();
        t.engage(OPERATOR, "uniswap-v3", T0).unwrap();
        let mut now = T0;
        let mut price = usd(2000);
        for bp in walk {
            now += 31;
            price = price * (10_000 + bp as i128) / 10_000;
            set_price(&mut t, price, now);
            let _ = t.iterate_rebalance(KEEPER, "uniswap-v3", now);
        }
        let cp = t.market.price(t.collateral, now).unwrap() * pow10(10);
        let bp = t.market.price(t.borrow, now).unwrap() * pow10(22);
        let who = Address::with_last_byte(0x55);
        let i = t.issue(who, wad(q) / U256::from(100u64), now).unwrap();
        let r = t.redeem(who, i.quantity, now).unwrap();
        let paid = pmul(cp, i.collateral_in).unwrap() + pmul(bp, i.cash_in).unwrap() + pmul(bp, r.borrow_in).unwrap();
        let got = pmul(cp, r.collateral_out).unwrap() + pmul(bp, r.cash_out).unwrap() + pmul(bp, i.borrow_out).unwrap();
        prop_assert!(got <= paid, "mint then redeem returned {} for {}", Wad(got), Wad(paid));
        if fee_free {
            // Without fees each asset on its own rounds toward the token.
            prop_assert!(i.collateral_in >= r.collateral_out);
            prop_assert!(r.borrow_in >= i.borrow_out);
        }
    }
}
