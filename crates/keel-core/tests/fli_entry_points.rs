//! Entry-point semantics (`fli.md` §10–§15): roles, guards, TWAP transitions, exchanges, and
//! that every refused call leaves the whole token byte-for-byte unchanged.

mod common;
use common::*;
use keel_core::math::U256;
use keel_core::strategy::fli::{ExchangeSettings, FliEvent, FliToken};

/// An engaged token in the middle of its engage TWAP.
fn mid_twap() -> FliToken {
    let mut t = token_with_supply(2_000);
    t.engage(OPERATOR, "uniswap-v3", T0).unwrap();
    t
}

/// A fully engaged token at 2x, TWAP finished, at time `now` returned.
fn engaged() -> (FliToken, u64) {
    let mut t = mid_twap();
    let mut now = T0;
    while !t.fli.twap_leverage_ratio.is_zero() {
        now += 31;
        set_price(&mut t, usd(2000), now);
        t.iterate_rebalance(KEEPER, "uniswap-v3", now).unwrap();
    }
    (t, now)
}

fn exchange(max: u64, route: &str) -> ExchangeSettings {
    ExchangeSettings {
        twap_max_trade_size: wad(max),
        incentivized_twap_max_trade_size: wad(max * 2),
        last_trade_timestamp: 12345,
        lever_route: route.into(),
        delever_route: route.into(),
    }
}

type Call = Box<dyn Fn(&mut FliToken, u64) -> Result<(), keel_core::Error>>;

type Prep = Box<dyn Fn(&mut FliToken, u64)>;

fn none() -> Prep {
    Box::new(|_, _| {})
}

/// Post prices (and arbitrage) at `now + dt` before the call.
fn at_price(usd_e8: i128, dt: u64) -> Prep {
    Box::new(move |t, n| set_price(t, usd_e8, n + dt))
}

fn refused(name: &str, t: &FliToken, now: u64, prep: Prep, call: Call, want: &str) {
    let mut before = t.clone();
    prep(&mut before, now);
    let mut after = before.clone();
    let err = call(&mut after, now).expect_err(name);
    assert!(err.to_string().starts_with(want), "case: {name}: got '{err}', want '{want}'");
    assert!(after == before, "case: {name}: a refused call changed state");
}

#[test]
fn table_refusals_change_nothing() {
    let (engaged, now) = engaged();
    let twap = mid_twap();
    // A TWAP target left while the ratio sits inside the band.
    let mut in_band_twap = engaged.clone();
    in_band_twap.fli.twap_leverage_ratio = wad(2);
    let cases: Vec<(&str, &FliToken, u64, Prep, Call, &str)> = vec![
        (
            "engage by non-operator",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.engage(STRANGER, "uniswap-v3", n).map(|_| ())),
            "Must be operator",
        ),
        (
            "engage with debt",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.engage(OPERATOR, "uniswap-v3", n).map(|_| ())),
            "Debt must be 0",
        ),
        (
            "engage unknown exchange",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.engage(OPERATOR, "sushi", n).map(|_| ())),
            "Must be valid exchange",
        ),
        (
            "rebalance by stranger",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.rebalance(STRANGER, "uniswap-v3", n + 90_000).map(|_| ())),
            "Address not permitted to call",
        ),
        (
            "rebalance in band before interval",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 10).map(|_| ())),
            "Cooldown not elapsed or not valid leverage ratio",
        ),
        (
            "rebalance mid-TWAP in band before interval: cooldown message first",
            &in_band_twap,
            now,
            none(),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 10).map(|_| ())),
            "Cooldown not elapsed or not valid leverage ratio",
        ),
        (
            "rebalance mid-TWAP out of band: bypass, then must iterate",
            &twap,
            T0,
            at_price(usd(2000), 10),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 10).map(|_| ())),
            "Must call iterate",
        ),
        (
            "rebalance mid-TWAP after interval",
            &twap,
            T0,
            at_price(usd(2000), 86_401),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 86_401).map(|_| ())),
            "Must call iterate",
        ),
        (
            "iterate with no TWAP",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.iterate_rebalance(KEEPER, "uniswap-v3", n + 100).map(|_| ())),
            "Not in TWAP state",
        ),
        (
            "ripcord below ILR",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.ripcord(STRANGER, "uniswap-v3", n + 100).map(|_| ())),
            "Must be above incentivized leverage ratio",
        ),
        (
            "rebalance above ILR",
            &engaged,
            now,
            at_price(usd(1500), 100),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 100).map(|_| ())),
            "Must be below incentivized leverage ratio",
        ),
        (
            "stale oracle",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 90_000).map(|_| ())),
            "Oracle WETH / USD: answer is stale",
        ),
        (
            "non-positive oracle",
            &engaged,
            now,
            Box::new(|t, n| {
                let c = t.collateral;
                t.market.post_price(c, 0, n + 100);
            }),
            Box::new(|t, n| t.ripcord(STRANGER, "uniswap-v3", n + 100).map(|_| ())),
            "Oracle WETH / USD: answer is not positive",
        ),
        (
            "slippage beyond tolerance",
            &engaged,
            now,
            Box::new(|t, n| {
                // The pool trades at $3000 while the oracle says $2600: buying WETH for a lever
                // returns 13% less than the oracle-based minimum allows.
                set_price(t, usd(3000), n + 86_401);
                let c = t.collateral;
                t.market.post_price(c, usd(2600), n + 86_401);
            }),
            Box::new(|t, n| t.rebalance(KEEPER, "uniswap-v3", n + 86_401).map(|_| ())),
            "Slippage too high",
        ),
        (
            "setter mid-TWAP",
            &twap,
            T0,
            none(),
            Box::new(|t, _| {
                let m = t.fli.methodology.clone();
                t.set_methodology_settings(OPERATOR, m).map(|_| ())
            }),
            "Rebalance is currently in progress",
        ),
        (
            "withdraw ether mid-TWAP",
            &twap,
            T0,
            none(),
            Box::new(|t, _| t.withdraw_ether_balance(OPERATOR).map(|_| ())),
            "Rebalance is currently in progress",
        ),
        (
            "invalid setter",
            &engaged,
            now,
            none(),
            Box::new(|t, _| {
                let mut m = t.fli.methodology.clone();
                m.max_leverage_ratio = wad(1);
                t.set_methodology_settings(OPERATOR, m).map(|_| ())
            }),
            "Must be valid max leverage",
        ),
        (
            "add existing exchange",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.add_enabled_exchange(OPERATOR, "uniswap-v3", exchange(5, "uniswap-v3")).map(|_| ())),
            "Exchange already enabled",
        ),
        (
            "add exchange with max 0",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.add_enabled_exchange(OPERATOR, "b", exchange(0, "uniswap-v3")).map(|_| ())),
            "Max TWAP trade size must not be 0",
        ),
        (
            "update unknown exchange",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.update_enabled_exchange(OPERATOR, "b", exchange(5, "uniswap-v3")).map(|_| ())),
            "Exchange not enabled",
        ),
        (
            "remove unknown exchange",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.remove_enabled_exchange(OPERATOR, "b").map(|_| ())),
            "Exchange not enabled",
        ),
        (
            "caller arrays mismatch",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.update_caller_status(OPERATOR, &[KEEPER], &[]).map(|_| ())),
            "Array length mismatch",
        ),
        (
            "caller arrays empty",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.update_caller_status(OPERATOR, &[], &[]).map(|_| ())),
            "Array length must be > 0",
        ),
        (
            "caller duplicates",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.update_caller_status(OPERATOR, &[KEEPER, KEEPER], &[true, false]).map(|_| ())),
            "Cannot duplicate callers",
        ),
        (
            "issue past the cap",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.issue(HOLDER, wad(4_000), n).map(|_| ())),
            "Supply cap exceeded",
        ),
        (
            "redeem more than held",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.redeem(STRANGER, wad(1), n).map(|_| ())),
            "Insufficient balance",
        ),
        (
            "issue zero",
            &engaged,
            now,
            none(),
            Box::new(|t, n| t.issue(HOLDER, U256::ZERO, n).map(|_| ())),
            "Issue quantity must be greater than 0",
        ),
        (
            "transfer more than held",
            &engaged,
            now,
            none(),
            Box::new(|t, _| t.ledger.transfer(STRANGER, HOLDER, wad(1)).map_err(Into::into)),
            "Insufficient balance",
        ),
    ];
    for (name, t, now, prep, call, want) in cases {
        refused(name, t, now, prep, call, want);
    }
}

#[test]
fn override_lifts_the_setter_guard() {
    let mut t = mid_twap();
    let m = t.fli.methodology.clone();
    t.set_override_no_rebalance_in_progress(OPERATOR, true).unwrap();
    t.set_methodology_settings(OPERATOR, m).unwrap();
    t.abort_twap(OPERATOR, T0).unwrap();
    assert!(t.fli.twap_leverage_ratio.is_zero());
}

#[test]
fn advantageous_iterate_ends_the_twap_without_trading() {
    // A delever TWAP (target below TLR) whose target the market reached on its own.
    let (mut t, mut now) = engaged();
    now += 86_401;
    set_price(&mut t, usd(1650), now); // LR ≈ 2.5: out of band
    let out = t.rebalance(KEEPER, "uniswap-v3", now).unwrap();
    let FliEvent::Rebalanced(n) = out.event else { panic!() };
    assert!(n.chunk < n.total, "the delever is chunked: a TWAP toward {}", n.new_leverage_ratio);
    assert_ne!(t.fli.twap_leverage_ratio, t.fli.methodology.target_leverage_ratio);
    // The price recovers: LR falls below the TWAP target by itself.
    now += 31;
    set_price(&mut t, usd(2300), now);
    let pools_before = t.pools.clone();
    let out = t.iterate_rebalance(KEEPER, "uniswap-v3", now).unwrap();
    let FliEvent::RebalanceIterated(n) = out.event else { panic!() };
    assert_eq!((n.chunk, n.total, n.new_leverage_ratio), (U256::ZERO, U256::ZERO, U256::ZERO));
    assert!(out.trade.is_none());
    assert_eq!(t.pools, pools_before, "no trade");
    assert_eq!(t.fli.global_last_trade_timestamp, now, "timestamps still move");
}

#[test]
fn ripcord_pays_what_the_pool_holds() {
    let (mut t, mut now) = engaged();
    let _ = t.withdraw_ether_balance(OPERATOR).unwrap();
    t.fund_ether(wad(1) / U256::from(4u64));
    now += 100;
    set_price(&mut t, usd(1450), now);
    assert!(t.current_leverage_ratio(now).unwrap() >= t.fli.incentive.incentivized_leverage_ratio);
    assert_eq!(t.current_ether_incentive(now).unwrap(), wad(1) / U256::from(4u64));
    let out = t.ripcord(STRANGER, "uniswap-v3", now).unwrap();
    assert_eq!(out.reward_paid, wad(1) / U256::from(4u64));
    // Empty pool: the next ripcord still works and pays 0.
    now += 2;
    set_price(&mut t, usd(1300), now);
    let out = t.ripcord(STRANGER, "uniswap-v3", now).unwrap();
    assert_eq!(out.reward_paid, U256::ZERO);
    // Cooldown is per exchange and strict.
    assert_eq!(t.ripcord(STRANGER, "uniswap-v3", now + 1).unwrap_err().to_string(), "TWAP cooldown must have elapsed");
}

#[test]
fn exchanges_list_order_and_removal() {
    let (mut t, _) = engaged();
    t.pools.insert("b".into(), t.pools["uniswap-v3"].clone());
    t.pools.insert("c".into(), t.pools["uniswap-v3"].clone());
    let ev = t.add_enabled_exchange(OPERATOR, "b", exchange(5, "b")).unwrap();
    assert!(matches!(ev, FliEvent::ExchangeAdded(ref n, ref x) if n == "b" && x.last_trade_timestamp == 0));
    t.add_enabled_exchange(OPERATOR, "c", exchange(5, "c")).unwrap();
    t.remove_enabled_exchange(OPERATOR, "uniswap-v3").unwrap();
    let names: Vec<&str> = t.fli.exchanges.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["c", "b"], "the last name moves into the removed slot");
    t.update_enabled_exchange(OPERATOR, "b", exchange(7, "b")).unwrap();
    assert_eq!(t.fli.exchange("b").unwrap().twap_max_trade_size, wad(7));
    let e = t.add_enabled_exchange(OPERATOR, "d", exchange(5, "nowhere")).unwrap_err();
    assert!(e.to_string().contains("route nowhere"), "{e}");
}

#[test]
fn anyone_callable_opens_rebalance() {
    let (mut t, now) = engaged();
    let later = now + 86_401;
    set_price(&mut t, usd(2000), later);
    assert!(t.rebalance(STRANGER, "uniswap-v3", later).is_err());
    t.update_anyone_callable(OPERATOR, true).unwrap();
    // In band and at target the epoch rebalance has nothing to trade.
    let e = t.rebalance(STRANGER, "uniswap-v3", later);
    assert!(e.is_ok() || e.as_ref().unwrap_err().to_string().starts_with("Quantity is 0"), "{e:?}");
}

#[test]
fn issue_and_redeem_keep_leverage() {
    let (mut t, now) = engaged();
    let lr0 = t.current_leverage_ratio(now).unwrap();
    let r = t.issue(STRANGER, wad(100), now).unwrap();
    assert!(r.borrow_out > U256::ZERO, "a holder of a levered token receives its debt share");
    let lr1 = t.current_leverage_ratio(now).unwrap();
    let d = if lr1 > lr0 { lr1 - lr0 } else { lr0 - lr1 };
    // Pro-rata amounts round toward the token; on a 6-decimal debt that is ~1e-12 of leverage.
    assert!(d < U256::from(1_000_000_000u64), "leverage moved by {d} wei");
    let bal = t.ledger.balance_of(STRANGER);
    t.redeem(STRANGER, bal, now).unwrap();
    assert!(t.ledger.supply_matches_balances());
}
