//! Every settings rule of `fli.md` §4 and keel's own product checks, each with its message.

use keel_core::error::ProductError;
use keel_core::product::Product;

const BASE: &str = include_str!("../../../products/eth2x-fli.toml");

/// Replace `key = ...` inside `[section]` of the base product with `key = value`.
fn with(section: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut in_section = false;
    let mut done = false;
    for line in BASE.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_section && !done {
                out.push_str(&format!("{key} = {value}\n"));
                done = true;
            }
            in_section = t == format!("[{section}]");
        }
        if in_section && t.split('=').next().map(str::trim) == Some(key) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if in_section && !done {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

fn messages(text: &str) -> Vec<String> {
    match Product::from_toml(text) {
        Ok(_) => vec![],
        Err(ProductError::Rules(v)) => v.iter().map(|r| r.message.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn shipped_products_are_valid() {
    for f in ["eth2x-fli.toml", "btc2x-fli.toml", "eth2x-fli-compound.toml"] {
        let text = std::fs::read_to_string(format!("{}/../../products/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        Product::from_toml(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn table_reference_rules() {
    // (case, section, key, value, expected first message)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("1 min above target", "methodology", "min_leverage_ratio", "\"2.1\"", "Must be valid min leverage"),
        ("1 min zero", "methodology", "min_leverage_ratio", "\"0\"", "Must be valid min leverage"),
        ("2 max below target", "methodology", "max_leverage_ratio", "\"1.9\"", "Must be valid max leverage"),
        ("3 recentering zero", "methodology", "recentering_speed", "\"0\"", "Must be valid recentering speed"),
        ("3 recentering above 100%", "methodology", "recentering_speed", "\"101%\"", "Must be valid recentering speed"),
        (
            "4 unutilized above 100%",
            "execution",
            "unutilized_leverage_percentage",
            "\"1.01\"",
            "Unutilized leverage must be <100%",
        ),
        ("5 slippage above 100%", "execution", "slippage_tolerance", "\"100.01%\"", "Slippage tolerance must be <100%"),
        (
            "6 incentivized slippage above 100%",
            "incentive",
            "incentivized_slippage_tolerance",
            "\"2\"",
            "Incentivized slippage tolerance must be <100%",
        ),
        (
            "7 ILR below max",
            "incentive",
            "incentivized_leverage_ratio",
            "\"2.29\"",
            "Incentivized leverage ratio must be > max leverage ratio",
        ),
        (
            "8 interval below cooldown",
            "methodology",
            "rebalance_interval",
            "\"10s\"",
            "Rebalance interval must be greater than TWAP cooldown period",
        ),
        (
            "9 cooldown below incentivized cooldown",
            "incentive",
            "incentivized_twap_cooldown_period",
            "\"31s\"",
            "TWAP cooldown must be greater than incentivized TWAP cooldown",
        ),
        (
            "exchange max trade 0",
            "exchanges.uniswap-v3",
            "twap_max_trade_size",
            "\"0\"",
            "Max TWAP trade size must not be 0",
        ),
        (
            "keel: ripcord beyond liquidation",
            "incentive",
            "incentivized_leverage_ratio",
            "\"6\"",
            "Incentivized leverage ratio must be below the liquidation leverage",
        ),
        ("keel: ltv above threshold", "lending", "ltv", "\"90%\"", "LTV must not exceed the liquidation threshold"),
        ("keel: supply cap zero", "token", "supply_cap", "\"0\"", "Supply cap must be > 0"),
        ("keel: fee of 100%", "token", "mint_fee", "\"100%\"", "Fee must be below 100%"),
        (
            "keel: pool fee tier",
            "exchanges.uniswap-v3",
            "pool_fee",
            "\"0.2%\"",
            "Pool fee must be a Uniswap v3 fee tier",
        ),
    ];
    for (case, section, key, value, want) in cases {
        let got = messages(&with(section, key, value));
        assert_eq!(got.first().map(String::as_str), Some(*want), "case: {case}; all: {got:?}");
    }
}

#[test]
fn rule_10_target_below_one() {
    let text = with("methodology", "target_leverage_ratio", "\"0.9\"");
    let text = text.replace("min_leverage_ratio = \"1.74\"", "min_leverage_ratio = \"0.5\"");
    assert_eq!(messages(&text), vec!["Target leverage ratio must be >= 1e18"]);
}

#[test]
fn edge_equalities_are_allowed() {
    // ILR == MAX and 100% slippages pass although the messages say ">" and "<100%".
    for (section, key, value) in [
        ("incentive", "incentivized_leverage_ratio", "\"2.3\""),
        ("execution", "slippage_tolerance", "\"100%\""),
        ("execution", "unutilized_leverage_percentage", "\"1\""),
        ("methodology", "rebalance_interval", "\"30s\""),
        ("incentive", "incentivized_twap_cooldown_period", "\"30s\""),
        ("methodology", "min_leverage_ratio", "\"2\""),
    ] {
        assert!(messages(&with(section, key, value)).is_empty(), "{section}.{key} = {value}");
    }
}

#[test]
fn every_violation_is_listed_with_context() {
    let text = with("methodology", "max_leverage_ratio", "\"1.9\"");
    let text = text.replace("min_leverage_ratio = \"1.74\"", "min_leverage_ratio = \"2.1\"");
    let err = Product::from_toml(&text).unwrap_err();
    let ProductError::Rules(v) = err else { panic!("{err}") };
    let msgs: Vec<String> = v.iter().map(|r| r.to_string()).collect();
    assert_eq!(msgs[0], "Must be valid min leverage: min_leverage_ratio 2.1 is above target_leverage_ratio 2");
    assert_eq!(msgs[1], "Must be valid max leverage: max_leverage_ratio 1.9 is below target_leverage_ratio 2");
}

#[test]
fn table_field_errors_name_the_field() {
    let cases: &[(&str, String, &str)] = &[
        (
            "too many decimals",
            with("methodology", "target_leverage_ratio", "\"2.0000000000000000001\""),
            "field `methodology.target_leverage_ratio`: '2.0000000000000000001' has more than 18 decimals",
        ),
        (
            "not a number",
            with("methodology", "max_leverage_ratio", "\"abc\""),
            "field `methodology.max_leverage_ratio`: 'abc' is not a decimal number",
        ),
        (
            "bad duration",
            with("execution", "twap_cooldown_period", "\"soon\""),
            "field `execution.twap_cooldown_period`: 'soon' is not a duration (use 30s, 50m, 1h, 1d or whole seconds)",
        ),
        (
            "negative",
            with("token", "supply_cap", "\"-5\""),
            "field `token.supply_cap`: '-5' is negative; a non-negative number is required",
        ),
        (
            "trade size finer than wei",
            with("exchanges.uniswap-v3", "twap_max_trade_size", "\"0.0000000000000000001\""),
            "field `exchanges.uniswap-v3.twap_max_trade_size`: '0.0000000000000000001' has more than 18 decimals",
        ),
        (
            "bp precision",
            with("lending", "ltv", "\"80.005%\""),
            "field `lending.ltv`: '80.005%' must be a whole number of basis points (0.01%)",
        ),
        (
            "typo",
            with("methodology", "target_leverage", "\"2\""),
            "unknown field `methodology.target_leverage` (check the spelling; see products/eth2x-fli.toml for the keys)",
        ),
        ("missing", BASE.replace("recentering_speed = \"5%\"\n", ""), "missing field `methodology.recentering_speed`"),
        (
            "kind",
            with("methodology", "kind", "\"daily\""),
            "field `methodology.kind`: 'daily' is not supported on a lending product yet (supported: fli)",
        ),
    ];
    for (case, text, want) in cases {
        assert_eq!(Product::from_toml(text).unwrap_err().to_string(), *want, "case: {case}");
    }
}

#[test]
fn numbers_and_strings_both_work() {
    let text = with("methodology", "target_leverage_ratio", "2.0")
        .replace("rebalance_interval = \"1d\"", "rebalance_interval = 86400");
    let p = Product::from_toml(&text).unwrap();
    assert_eq!(p.methodology.target_leverage_ratio.to_string(), "2000000000000000000");
    assert_eq!(p.methodology.rebalance_interval, 86_400);
}

#[test]
fn calldata_in_struct_order() {
    let p = Product::from_toml(BASE).unwrap();
    let c = p.calldata();
    assert_eq!(c[0].0, "setMethodologySettings");
    assert_eq!(
        c[0].1,
        ["2000000000000000000", "1740000000000000000", "2300000000000000000", "50000000000000000", "86400"]
    );
    assert_eq!(c[1].1, ["10000000000000000", "20000000000000000", "30"]);
    assert_eq!(c[2].1, ["1000000000000000000", "2700000000000000000", "50000000000000000", "1"]);
    assert_eq!(c[3].1, ["10000000000000000000", "0", "20000000000000000000", "0x", "0x"]);
}

const COMPOUND: &str = include_str!("../../../products/eth2x-fli-compound.toml");

#[test]
fn table_compound_market_rules() {
    // (case, line replaced in the Compound product, replacement, expected first message)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "aave field on compound",
            "collateral_factor = \"75%\"",
            "ltv = \"75%\"",
            "field `lending.ltv`: 'ltv' is not a setting of a compound-v2 market",
        ),
        (
            "supply cap on compound",
            "close_factor = \"50%\"",
            "collateral_supply_cap = \"10\"",
            "field `lending.collateral_supply_cap`: 'collateral_supply_cap' is not a setting of a compound-v2 market",
        ),
        (
            "unknown protocol",
            "protocol = \"compound-v2\"",
            "protocol = \"euler\"",
            "field `lending.protocol`: 'euler' is not a lending protocol keel models",
        ),
        (
            "collateral factor above 90%",
            "collateral_factor = \"75%\"",
            "collateral_factor = \"91%\"",
            "Collateral factor must be at most 90% (Compound's maximum)",
        ),
        (
            "close factor at 5%",
            "close_factor = \"50%\"",
            "close_factor = \"5%\"",
            "Close factor must be above 5% and at most 90% (Compound's bounds)",
        ),
        (
            "close factor above 90%",
            "close_factor = \"50%\"",
            "close_factor = \"95%\"",
            "Close factor must be above 5% and at most 90% (Compound's bounds)",
        ),
        (
            "incentive above 50%",
            "liquidation_incentive = \"8%\"",
            "liquidation_incentive = \"51%\"",
            "Liquidation incentive must be at most 50% (Compound's maximum)",
        ),
        (
            "ripcord at the liquidation leverage",
            "collateral_factor = \"75%\"",
            "collateral_factor = \"62.96%\"",
            "Incentivized leverage ratio must be below the liquidation leverage",
        ),
    ];
    for (case, from, to, want) in cases {
        assert!(COMPOUND.contains(from), "{case}: the product has no `{from}`");
        let got = messages(&COMPOUND.replace(from, to));
        assert!(got.first().is_some_and(|m| m.starts_with(want)), "{case}: got {got:?}, want {want}");
    }
    // an Aave product refuses Compound's fields
    let aave = BASE.replace("ltv = \"80%\"", "ltv = \"80%\"\ncollateral_factor = \"75%\"");
    let got = messages(&aave);
    assert!(got[0].contains("'collateral_factor' is not a setting of a aave-v3 market"), "{got:?}");
}

#[test]
fn compound_product_defaults_to_divide_first_sizing() {
    use keel_core::strategy::fli::SizingOrder;
    use keel_core::venue::money_market::Protocol;
    let p = Product::from_toml(COMPOUND).unwrap();
    assert_eq!(p.lending.protocol, Protocol::CompoundV2);
    assert_eq!(p.sizing_order, SizingOrder::DivideFirst);
    assert_eq!(
        (p.lending.ltv_bp, p.lending.liquidation_threshold_bp, p.lending.liquidation_bonus_bp),
        (7_500, 7_500, 800)
    );
    let aave = Product::from_toml(BASE).unwrap();
    assert_eq!((aave.lending.protocol, aave.sizing_order), (Protocol::AaveV3, SizingOrder::AaveV3));
    // tables name the protocol
    let any = |t: &str| keel_core::product::AnyProduct::from_toml(t).unwrap().describe();
    assert_eq!((any(COMPOUND), any(BASE)), ("fli (compound-v2 + v3 pool)".into(), "fli (aave-v3 + v3 pool)".into()));
}
