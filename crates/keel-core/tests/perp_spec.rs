//! PerpV2 FLI (perp.md Part A): the §A11 worked example to the wei, signed recentering and
//! sizing, the single-enum shouldRebalance, and validation on magnitudes.

use keel_core::math::{I256, U256};
use keel_core::product::{AnyProduct, PerpProduct};
use keel_core::strategy::fli::ShouldRebalance;
use keel_core::strategy::fli::perp::{PerpFli, PerpSnapshot};

fn i(s: &str) -> I256 {
    I256::from_dec_str(&s.replace('_', "")).unwrap()
}
fn u(s: &str) -> U256 {
    U256::from_str_radix(&s.replace('_', ""), 10).unwrap()
}

const FIXTURE: &str = include_str!("../../keel-cli/tests/fixtures/perp-fixture.toml");

fn fixture(short: bool) -> PerpFli {
    let text = if short {
        FIXTURE.replace("\"2\"", "\"-2\"").replace("\"1.7\"", "\"-1.7\"").replace("\"2.3\"", "\"-2.3\"")
    } else {
        FIXTURE.to_string()
    };
    PerpProduct::from_toml(&text).unwrap().strategy().unwrap()
}

fn engage_snapshot() -> PerpSnapshot {
    PerpSnapshot {
        now: 1_700_000_000,
        total_supply: u("100_000_000_000_000_000_000"),
        collateral: i("10_000_000_000_000_000_000_000"),
        base_balance: I256::ZERO,
        quote_balance: I256::ZERO,
        owed_realized_pnl: I256::ZERO,
        pending_funding: I256::ZERO,
        base_price: i("1_000_000_000_000_000_000_000"),
    }
}

#[test]
fn a11_engage_long() {
    let f = fixture(false);
    let s = engage_snapshot();
    let (chunk, total) = f.engage_size(&s).unwrap();
    assert_eq!(total, i("20_000_000_000_000_000_000"));
    assert_eq!(chunk, i("20_000_000_000_000_000_000"), "|chunk| = |total|: no TWAP");
    let (units, bound) =
        PerpFli::trade_units(chunk, s.total_supply, s.base_price, u("15_000_000_000_000_000")).unwrap();
    assert_eq!(units, i("200_000_000_000_000_000"), "0.2 vETH per token, buy");
    assert_eq!(bound, u("203_000_000_000_000_000_000"), "at most 203 vUSD per token");
}

#[test]
fn a11_engage_capped_and_short() {
    let mut f = fixture(false);
    f.exchange.twap_max_trade_size = u("10_000_000_000_000_000_000");
    let (chunk, total) = f.engage_size(&engage_snapshot()).unwrap();
    assert_eq!(
        (chunk, total),
        (i("10_000_000_000_000_000_000"), i("20_000_000_000_000_000_000")),
        "a TWAP with target 2e18"
    );
    let mut f = fixture(true);
    f.exchange.twap_max_trade_size = u("10_000_000_000_000_000_000");
    let s = engage_snapshot();
    let (chunk, total) = f.engage_size(&s).unwrap();
    assert_eq!(total, i("-20_000_000_000_000_000_000"));
    assert_eq!(chunk, i("-10_000_000_000_000_000_000"));
    let (units, bound) =
        PerpFli::trade_units(chunk, s.total_supply, s.base_price, u("15_000_000_000_000_000")).unwrap();
    assert_eq!(units, i("-100_000_000_000_000_000"), "sell 0.1 vETH per token");
    assert_eq!(bound, u("98_500_000_000_000_000_000"), "for at least 98.5 vUSD per token");
}

#[test]
fn signed_leverage_recentering_and_sizing() {
    // The state: 10 000 collateral, +20 vETH, −20 000 open notional, ETH $1100.
    let s = PerpSnapshot {
        now: 1_700_000_000,
        total_supply: u("100_000_000_000_000_000_000"),
        collateral: i("10_000_000_000_000_000_000_000"),
        base_balance: i("20_000_000_000_000_000_000"),
        quote_balance: i("-20_000_000_000_000_000_000_000"),
        owed_realized_pnl: I256::ZERO,
        pending_funding: I256::ZERO,
        base_price: i("1_100_000_000_000_000_000_000"),
    };
    let (bpv, lr) = PerpFli::leverage(&s).unwrap();
    assert_eq!(bpv, i("22_000_000_000_000_000_000_000"));
    assert_eq!(lr, i("1_833_333_333_333_333_333"), "22 000 / 12 000");
    let f = fixture(false);
    let new = f.recenter(lr).unwrap();
    // 0.05·2 + floor(0.95 · 1.8333…) = 0.1 + 1.741666666666666666
    assert_eq!(new, i("1_841_666_666_666_666_666"));
    let (chunk, total) = PerpFli::size(lr, new, s.base_balance, f.exchange.twap_max_trade_size).unwrap();
    // trunc(8_333_333_333_333_333e18 / 1.8333e18) = 4_545_454_545_454_545, × 20
    assert_eq!(total, i("90_909_090_909_090_900"));
    assert_eq!(chunk, total);

    // The mirror-image short, beyond the ripcord level (|LR| 2.75 ≥ 2.6).
    let short = PerpSnapshot {
        base_balance: i("-20_000_000_000_000_000_000"),
        quote_balance: i("20_000_000_000_000_000_000_000"),
        ..s
    };
    let f = fixture(true);
    let e = f.evaluate(&short, None).unwrap();
    assert_eq!(e.leverage_ratio, i("-2_750_000_000_000_000_000"));
    assert!(e.is_ripcord && !e.is_lever);
    assert_eq!(
        e.new_leverage_ratio,
        i("-2_300_000_000_000_000_000"),
        "ripcord target is MAXLR as configured (negative)"
    );
    // pdiv_i(0.45e18, −2.75e18) truncates toward zero: −163_636_363_636_363_636; × −20
    assert_eq!(e.total, i("3_272_727_272_727_272_720"), "buy base back");
    assert_eq!(e.chunk, e.total);
    assert_eq!((e.sell_asset, e.buy_asset), ("quote", "base"));
}

#[test]
fn table_should_rebalance_single_enum() {
    let mut f = fixture(false);
    f.last_trade_timestamp = 1_000;
    let (min, max) = (f.methodology.min_leverage_ratio, f.methodology.max_leverage_ratio);
    let cases = [
        ("ripcord at |ILR|", i("2_600_000_000_000_000_000"), I256::ZERO, 1_061, ShouldRebalance::Ripcord),
        ("ripcord within cooldown", i("2_600_000_000_000_000_000"), I256::ZERO, 1_060, ShouldRebalance::None),
        ("short beyond |ILR|", i("-2_700_000_000_000_000_000"), I256::ZERO, 1_061, ShouldRebalance::Ripcord),
        (
            "iterate after cooldown",
            i("2_000_000_000_000_000_000"),
            i("2_000_000_000_000_000_000"),
            4_001,
            ShouldRebalance::IterateRebalance,
        ),
        (
            "iterate before cooldown",
            i("2_000_000_000_000_000_000"),
            i("2_000_000_000_000_000_000"),
            4_000,
            ShouldRebalance::None,
        ),
        ("out of band", i("2_300_000_000_000_000_001"), I256::ZERO, 1_001, ShouldRebalance::Rebalance),
        ("in band", i("2_300_000_000_000_000_000"), I256::ZERO, 1_001, ShouldRebalance::None),
        ("interval", i("2_000_000_000_000_000_000"), I256::ZERO, 87_401, ShouldRebalance::Rebalance),
    ];
    for (case, lr, twap, now, want) in cases {
        f.twap_leverage_ratio = twap;
        assert_eq!(f.should_rebalance_at(lr, min, max, now).unwrap(), want, "case {case}");
    }
}

#[test]
fn table_validation_on_magnitudes() {
    let cases: &[(&str, &str, &str)] = &[
        ("min_leverage_ratio = \"1.7\"", "min_leverage_ratio = \"2.1\"", "Must be valid min leverage"),
        ("max_leverage_ratio = \"2.3\"", "max_leverage_ratio = \"1.9\"", "Must be valid max leverage"),
        (
            "incentivized_leverage_ratio = \"2.6\"",
            "incentivized_leverage_ratio = \"2.2\"",
            "Incentivized leverage ratio must be > max leverage ratio",
        ),
        (
            "min_leverage_ratio = \"1.7\"",
            "min_leverage_ratio = \"-1.7\"",
            "Leverage ratios must share one sign: target, min and max are all long (positive) or all short (negative)",
        ),
        (
            "incentivized_twap_max_trade_size = \"25\"",
            "incentivized_twap_max_trade_size = \"15\"",
            "Max TWAP trade size must not be greater than incentivized max TWAP trade size",
        ),
        ("slippage_tolerance = \"1.5%\"", "slippage_tolerance = \"101%\"", "Slippage tolerance must be <100%"),
    ];
    for (from, to, want) in cases {
        let text = FIXTURE.replacen(from, to, 1);
        let e = AnyProduct::from_toml(&text).unwrap_err().to_string();
        assert!(e.starts_with(want), "{to}: {e}");
    }
    // A short token keeps a positive ILR (as the reference tests do) and validates on magnitudes.
    let short = FIXTURE.replace("\"2\"", "\"-2\"").replace("\"1.7\"", "\"-1.7\"").replace("\"2.3\"", "\"-2.3\"");
    assert!(matches!(AnyProduct::from_toml(&short).unwrap(), AnyProduct::Perp(_)));
}

#[test]
fn table_venue_fee_settings() {
    let shipped = include_str!("../../../products/eth2x-perp.toml");
    let set = |key: &str, value: &str| {
        let line = shipped.lines().find(|l| l.starts_with(&format!("{key} ="))).expect("key in the product");
        shipped.replacen(line, &format!("{key} = \"{value}\""), 1)
    };
    // (case, key, value, the error it must give; "" = accepted)
    let cases = [
        ("the pool's tier", "exchange_fee_ratio", "0.05%", ""),
        ("no fee", "exchange_fee_ratio", "0%", ""),
        ("100% cannot be charged", "exchange_fee_ratio", "100%", "below 100%"),
        ("finer than the contract's 1e-6", "exchange_fee_ratio", "0.00005%", "steps of 0.0001%"),
        ("all of the fee to the fund", "insurance_fund_fee_ratio", "100%", ""),
        ("more than all of it", "insurance_fund_fee_ratio", "101%", "at most 100%"),
    ];
    for (case, key, value, want) in cases {
        let r = AnyProduct::from_toml(&set(key, value));
        match (r, want) {
            (Ok(_), "") => {}
            (Err(e), w) if !w.is_empty() => {
                let e = e.to_string();
                assert!(e.contains(key) && e.contains(w), "{case}: {e}");
            }
            (r, _) => panic!("{case}: {r:?}"),
        }
    }
}
