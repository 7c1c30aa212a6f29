//! The worked examples of `fli.md` §18, reproduced to the wei through the same pure layer
//! `keel strategy eval` and the entry points use, plus the boundary semantics of §12.

use keel_core::Address;
use keel_core::math::U256;
use keel_core::strategy::fli::{
    ExchangeSettings, ExecutionSettings, Fli, IncentiveSettings, Limit, MethodologySettings, RiskParams,
    ShouldRebalance, SizingOrder, Snapshot,
};

fn u(s: &str) -> U256 {
    U256::from_str_radix(&s.replace('_', ""), 10).unwrap()
}
fn e18(x: u64) -> U256 {
    U256::from(x) * u("1_000_000_000_000_000_000")
}
fn frac(num: u64, den: u64) -> U256 {
    e18(1) * U256::from(num) / U256::from(den)
}

const T0: u64 = 1_700_000_000;

/// The reference unit-test fixture (`fli.md` §3.6).
fn fixture() -> Fli {
    Fli::new(
        MethodologySettings {
            target_leverage_ratio: e18(2),
            min_leverage_ratio: frac(17, 10),
            max_leverage_ratio: frac(23, 10),
            recentering_speed: frac(5, 100),
            rebalance_interval: 86_400,
        },
        ExecutionSettings {
            unutilized_leverage_percentage: frac(1, 100),
            slippage_tolerance: frac(1, 100),
            twap_cooldown_period: 3_000,
        },
        IncentiveSettings {
            ether_reward: e18(1),
            incentivized_leverage_ratio: frac(26, 10),
            incentivized_slippage_tolerance: frac(5, 100),
            incentivized_twap_cooldown_period: 60,
        },
        vec![(
            "uniswap-v3".into(),
            ExchangeSettings {
                twap_max_trade_size: u("500_000_000_000_000_000"),
                incentivized_twap_max_trade_size: e18(2),
                last_trade_timestamp: T0,
                lever_route: "uniswap-v3".into(),
                delever_route: "uniswap-v3".into(),
            },
        )],
        Address::ZERO,
        ("WETH", 18),
        ("USDC", 6),
    )
    .unwrap()
}

const RISK: RiskParams = RiskParams { ltv_bp: 7_500, liquidation_threshold_bp: 8_000 };

fn snap(now: u64, c: &str, b: &str, eth_usd: u64) -> Snapshot {
    Snapshot {
        now,
        total_supply: e18(1),
        collateral_balance: u(c),
        borrow_balance: u(b),
        collateral_price_e8: U256::from(eth_usd) * U256::from(100_000_000u64),
        borrow_price_e8: U256::from(100_000_000u64),
    }
}

#[test]
fn s18_1_engage() {
    let f = fixture();
    let info = f.action_info(&snap(T0, "1_000_000_000_000_000_000", "0", 1000)).unwrap();
    assert_eq!(info.collateral_price, e18(1000), "cP = 1000e8 · 10^10");
    assert_eq!(info.borrow_price, u("1_000_000_000_000_000_000_000_000_000_000"), "bP = 1e8 · 10^22");
    let s = f.size(&info, e18(1), e18(2), true, u("500_000_000_000_000_000"), RISK).unwrap();
    assert_eq!(s.total, u("1_000_000_000_000_000_000"));
    assert_eq!(s.limit, Limit::Units(u("742_500_000_000_000_000")));
    assert_eq!(s.chunk, u("500_000_000_000_000_000"));
    assert!(s.chunk < s.total, "a TWAP starts with target TLR");
    let units = keel_core::math::pdiv(s.chunk, info.total_supply).unwrap();
    assert_eq!(units, u("500_000_000_000_000_000"));
    assert_eq!(Fli::borrow_units(&info, units).unwrap(), u("500_000_000"));
    assert_eq!(Fli::min_receive_units(units, frac(1, 100)).unwrap(), u("495_000_000_000_000_000"));
}

#[test]
fn s18_2_iterate_after_engage() {
    let mut f = fixture();
    f.twap_leverage_ratio = e18(2);
    f.global_last_trade_timestamp = T0;
    let st = snap(T0 + 1, "1_500_000_000_000_000_000", "500_000_000", 1000);
    let info = f.action_info(&st).unwrap();
    let lr = Fli::leverage_ratio(&info).unwrap();
    assert_eq!(lr, u("1_500_000_000_000_000_000"));
    let s = f.size(&info, lr, e18(2), true, u("500_000_000_000_000_000"), RISK).unwrap();
    assert_eq!(s.total, u("500_000_000_000_000_000"));
    assert_eq!(s.limit, Limit::Units(u("613_750_000_000_000_000")));
    assert_eq!(s.chunk, u("500_000_000_000_000_000"));
    assert_eq!(s.chunk, s.total, "the TWAP ends: total lands exactly on the cap");
    assert_eq!(Fli::borrow_units(&info, s.chunk).unwrap(), u("500_000_000"));
    assert_eq!(Fli::min_receive_units(s.chunk, frac(1, 100)).unwrap(), u("495_000_000_000_000_000"));

    // The parent's divide-first order trades one wei less and borrows one USDC unit less.
    f.sizing_order = SizingOrder::DivideFirst;
    let d = f.size(&info, lr, e18(2), true, u("500_000_000_000_000_000"), RISK).unwrap();
    assert_eq!(d.total, u("499_999_999_999_999_999"));
    assert_eq!(d.chunk, d.total);
    assert_eq!(Fli::borrow_units(&info, d.chunk).unwrap(), u("499_999_999"));

    // shouldRebalance: NONE until t0 + 3000 < now, then ITERATE_REBALANCE.
    f.sizing_order = SizingOrder::AaveV3;
    let at = |now| {
        f.should_rebalance_at(lr, f.methodology.min_leverage_ratio, f.methodology.max_leverage_ratio, now).unwrap()[0].1
    };
    assert_eq!(at(T0 + 3_000), ShouldRebalance::None, "at exactly the cooldown: NONE");
    assert_eq!(at(T0 + 3_001), ShouldRebalance::IterateRebalance);

    // After the fill: C = 2e18, B = 1e9, LR = 2 exactly.
    let after = f.action_info(&snap(T0 + 3_001, "2_000_000_000_000_000_000", "1_000_000_000", 1000)).unwrap();
    assert_eq!(Fli::leverage_ratio(&after).unwrap(), e18(2));
}

#[test]
fn s18_3_ripcord() {
    let mut f = fixture();
    f.ether_balance = e18(1);
    f.global_last_trade_timestamp = T0;
    let st = snap(T0 + 61, "2_000_000_000_000_000_000", "1_000_000_000", 800);
    let info = f.action_info(&st).unwrap();
    assert_eq!(info.collateral_value, e18(1600));
    assert_eq!(info.borrow_value, e18(1000));
    let lr = Fli::leverage_ratio(&info).unwrap();
    assert_eq!(lr, u("2_666_666_666_666_666_666"));
    let (min, max) = (f.methodology.min_leverage_ratio, f.methodology.max_leverage_ratio);
    assert_eq!(
        f.should_rebalance_at(lr, min, max, T0 + 60).unwrap()[0].1,
        ShouldRebalance::None,
        "e.last + 60 < now is strict"
    );
    assert_eq!(f.should_rebalance_at(lr, min, max, T0 + 61).unwrap()[0].1, ShouldRebalance::Ripcord);
    f.twap_leverage_ratio = e18(2);
    assert_eq!(
        f.should_rebalance_at(lr, min, max, T0 + 61).unwrap()[0].1,
        ShouldRebalance::Ripcord,
        "RIPCORD wins mid-TWAP"
    );
    f.twap_leverage_ratio = U256::ZERO;

    let s = f.size(&info, lr, f.methodology.max_leverage_ratio, false, e18(2), RISK).unwrap();
    assert_eq!(s.total, u("274_999_999_999_999_999"));
    assert_eq!(s.limit, Limit::Units(u("437_500_000_000_000_000")));
    assert_eq!(s.chunk, u("274_999_999_999_999_999"));
    let units = keel_core::math::pdiv(s.chunk, info.total_supply).unwrap();
    assert_eq!(f.min_repay_units(&info, units, frac(5, 100)).unwrap(), u("208_999_999"));
    assert_eq!(f.ether_incentive_at(lr), e18(1));

    // After the fill: LR ≈ 2.3000000038.
    let after = f.action_info(&snap(T0 + 61, "1_725_000_000_000_000_001", "780_000_001", 800)).unwrap();
    let lr_after = Fli::leverage_ratio(&after).unwrap();
    assert!(lr_after > frac(23, 10) && lr_after < frac(23_000_001, 10_000_000), "{lr_after}");
}

#[test]
fn s18_3_from_the_reference_state() {
    // The reference unit test reaches $800 with B = 999_999_999 (its iterate divided first).
    let mut f = fixture();
    let st = snap(T0 + 61, "2_000_000_000_000_000_000", "999_999_999", 800);
    let info = f.action_info(&st).unwrap();
    let lr = Fli::leverage_ratio(&info).unwrap();
    assert_eq!(lr, u("2_666_666_662_222_222_229"));
    let s = f.size(&info, lr, f.methodology.max_leverage_ratio, false, e18(2), RISK).unwrap();
    assert_eq!(s.total, u("274_999_997_124_999_999"));
    assert_eq!(s.chunk, s.total);
    let units = keel_core::math::pdiv(s.chunk, info.total_supply).unwrap();
    assert_eq!(f.min_repay_units(&info, units, frac(5, 100)).unwrap(), u("208_999_997"));
    f.sizing_order = SizingOrder::DivideFirst;
    assert_eq!(
        f.size(&info, lr, f.methodology.max_leverage_ratio, false, e18(2), RISK).unwrap().total,
        u("274_999_997_124_999_998")
    );
}

#[test]
fn recentering_example_of_the_seed() {
    // RS 5%, LR 1.9 → 1.905 (the seed's "1.995" is a typo; methodologies.md §5.2).
    let mut f = fixture();
    f.methodology.min_leverage_ratio = frac(15, 10);
    assert_eq!(f.recenter(frac(19, 10)).unwrap(), frac(1905, 1000));
    // Clamp: far below the band the target is MINLR; just outside it can land inside.
    let f = fixture();
    assert_eq!(f.recenter(frac(12, 10)).unwrap(), frac(17, 10));
    assert_eq!(f.recenter(frac(31, 10)).unwrap(), frac(23, 10));
    assert_eq!(f.recenter(frac(169, 100)).unwrap(), frac(17055, 10000));
}

/// §12's boundary table, one row per case.
#[test]
fn table_should_rebalance_boundaries() {
    let base = fixture();
    let (min, max) = (base.methodology.min_leverage_ratio, base.methodology.max_leverage_ratio);
    struct Case {
        name: &'static str,
        lr: U256,
        twap: U256,
        global_last: u64,
        ex_last: u64,
        now: u64,
        want: ShouldRebalance,
    }
    let cases = [
        Case {
            name: "at ILR exactly: ripcord",
            lr: frac(26, 10),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 61,
            want: ShouldRebalance::Ripcord,
        },
        Case {
            name: "above ILR within cooldown",
            lr: frac(27, 10),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 60,
            want: ShouldRebalance::None,
        },
        Case {
            name: "just below ILR, out of band",
            lr: frac(26, 10) - U256::from(1),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 1,
            want: ShouldRebalance::Rebalance,
        },
        Case {
            name: "at MAX exactly: not out of band",
            lr: frac(23, 10),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 1,
            want: ShouldRebalance::None,
        },
        Case {
            name: "one wei above MAX",
            lr: frac(23, 10) + U256::from(1),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 1,
            want: ShouldRebalance::Rebalance,
        },
        Case {
            name: "at MIN exactly",
            lr: frac(17, 10),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 1,
            want: ShouldRebalance::None,
        },
        Case {
            name: "one wei below MIN",
            lr: frac(17, 10) - U256::from(1),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 1,
            want: ShouldRebalance::Rebalance,
        },
        Case {
            name: "interval exactly elapsed: none",
            lr: e18(2),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 86_400,
            want: ShouldRebalance::None,
        },
        Case {
            name: "interval exceeded",
            lr: e18(2),
            twap: U256::ZERO,
            global_last: T0,
            ex_last: T0,
            now: T0 + 86_401,
            want: ShouldRebalance::Rebalance,
        },
        Case {
            name: "TWAP, cooldown not passed, out of band: no bypass",
            lr: frac(15, 10),
            twap: e18(2),
            global_last: T0,
            ex_last: T0,
            now: T0 + 3_000,
            want: ShouldRebalance::None,
        },
        Case {
            name: "TWAP, cooldown passed",
            lr: e18(2),
            twap: e18(2),
            global_last: T0,
            ex_last: T0,
            now: T0 + 3_001,
            want: ShouldRebalance::IterateRebalance,
        },
    ];
    for c in cases {
        let mut f = base.clone();
        f.twap_leverage_ratio = c.twap;
        f.global_last_trade_timestamp = c.global_last;
        f.exchanges[0].1.last_trade_timestamp = c.ex_last;
        assert_eq!(f.should_rebalance_at(c.lr, min, max, c.now).unwrap()[0].1, c.want, "case: {}", c.name);
    }
}

#[test]
fn custom_bounds_widen_only() {
    let mut f = fixture();
    f.global_last_trade_timestamp = T0;
    let lr = frac(231, 100);
    let (min, max) = (f.methodology.min_leverage_ratio, f.methodology.max_leverage_ratio);
    assert_eq!(f.should_rebalance_at(lr, min, max, T0 + 1).unwrap()[0].1, ShouldRebalance::Rebalance);
    f.check_bounds(frac(16, 10), frac(24, 10)).unwrap();
    assert_eq!(f.should_rebalance_at(lr, frac(16, 10), frac(24, 10), T0 + 1).unwrap()[0].1, ShouldRebalance::None);
    let e = f.check_bounds(frac(18, 10), frac(24, 10)).unwrap_err();
    assert!(e.to_string().starts_with("Custom bounds must be valid"), "{e}");
    let e = f.check_bounds(frac(16, 10), frac(22, 10)).unwrap_err();
    assert!(e.to_string().starts_with("Custom bounds must be valid"), "{e}");
}

#[test]
fn chunk_view_ripcord_branch_at_ilr_exactly() {
    // keel §17.9: at LR == ILR the view reports the ripcord sizes (incentivized cap, MAXLR).
    let mut f = fixture();
    f.ether_balance = e18(3);
    // C = 2.6 ETH at $1000, B chosen so LR = 2.6 exactly: bV = cV·(1 − 1/2.6) = 1600.
    let st = snap(T0 + 61, "2_600_000_000_000_000_000", "1_600_000_000", 1000);
    let ev = f.evaluate(&st, None, RISK).unwrap();
    assert_eq!(ev.leverage_ratio, frac(26, 10));
    assert!(ev.is_ripcord && !ev.is_lever);
    assert_eq!(ev.new_leverage_ratio, frac(23, 10));
    assert_eq!(ev.ether_incentive, e18(1), "min(reward, balance)");
    assert_eq!(ev.should_rebalance[0].1, ShouldRebalance::Ripcord);
    // total = pdiv(pmul(0.3e18, 2.6e18), 2.6e18) = 0.3e18; under the 2 ETH ripcord cap.
    assert_eq!(ev.total_rebalance_notional[0].1, frac(3, 10));
    assert_eq!(ev.chunk_rebalance_notional[0].1, frac(3, 10));
    assert_eq!(ev.sizes[0].1, frac(3, 10), "delever sizes are in collateral units");
    assert_eq!((ev.sell_asset.as_str(), ev.buy_asset.as_str()), ("WETH", "USDC"));
}

#[test]
fn lever_sizes_are_in_borrow_units_and_saturation_reports_zero() {
    let f = fixture();
    let ev = f.evaluate(&snap(T0 + 100_000, "1_500_000_000_000_000_000", "500_000_000", 1000), None, RISK).unwrap();
    assert!(ev.is_lever);
    // recentre 1.5 → max(1.7, 0.1 + 0.95·1.5 = 1.525) = 1.7; total = 0.2·1.5/1.5 = 0.2 ETH
    assert_eq!(ev.new_leverage_ratio, frac(17, 10));
    assert_eq!(ev.total_rebalance_notional[0].1, frac(2, 10));
    assert_eq!(ev.sizes[0].1, u("200_000_000"), "0.2 ETH at $1000 = 200 USDC");
    // Above the liquidation threshold the delever limit saturates: the view reports 0.
    let ev = f.evaluate(&snap(T0 + 100_000, "2_000_000_000_000_000_000", "1_700_000_000", 1000), None, RISK).unwrap();
    assert!(ev.is_ripcord);
    assert_eq!(ev.chunk_rebalance_notional[0].1, U256::ZERO);
    assert!(ev.total_rebalance_notional[0].1 > U256::ZERO);
}

#[test]
fn insolvent_snapshot_is_an_error_not_a_number() {
    let f = fixture();
    let e = f.evaluate(&snap(T0, "1_000_000_000_000_000_000", "1_000_000_000", 1000), None, RISK).unwrap_err();
    assert_eq!(e.to_string(), "Position is insolvent: borrow value is not below collateral value");
}

#[test]
fn compound_delever_limit_uses_the_buffered_collateral_factor() {
    // C = 2 ETH at $1000, B = 1200 USDC; collateral factor 75% for both limits, 1% unutilized.
    use keel_core::venue::money_market::Protocol;
    let cf = RiskParams { ltv_bp: 7_500, liquidation_threshold_bp: 7_500 };
    let mut f = fixture();
    let info = f.action_info(&snap(T0, "2_000_000_000_000_000_000", "1_200_000_000", 1000)).unwrap();
    // Aave v3: the threshold alone, C·(cV·LT − bV)/(cV·LT) = 2·300/1500
    assert_eq!(f.limit(&info, false, cf).unwrap(), Limit::Units(u("400_000_000_000_000_000")));
    // Compound: cV·CF·(1 − u) = 1485, so 2·285/1485, floored
    f.protocol = Protocol::CompoundV2;
    assert_eq!(f.limit(&info, false, cf).unwrap(), Limit::Units(u("383_838_383_838_383_838")));
    // the lever limit is the same rule on both: (1485 − 1200)/1000 ETH
    assert_eq!(f.limit(&info, true, cf).unwrap(), Limit::Units(u("285_000_000_000_000_000")));
    f.protocol = Protocol::AaveV3;
    assert_eq!(f.limit(&info, true, cf).unwrap(), Limit::Units(u("285_000_000_000_000_000")));
}
