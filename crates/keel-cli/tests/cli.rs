//! The `keel` binary's contract: exit codes, messages and `strategy eval --json` integers.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel")).args(args).current_dir(root()).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn tmp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

const FIXTURE: &str = "crates/keel-cli/tests/fixtures/reference-fixture.toml";

fn eval_json(state: &str, extra: &[&str]) -> serde_json::Value {
    let p = tmp(&format!("state-{}.json", state.len() + extra.len()), state);
    let mut args = vec!["strategy", "eval", "--product", FIXTURE, "--state", p.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let o = keel(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "eval failed: {err}");
    serde_json::from_str(&out).unwrap()
}

fn state(c: &str, b: &str, price: &str, twap: &str, now: u64, last: u64) -> String {
    format!(
        r#"{{"now": {now}, "total_supply": "1000000000000000000", "collateral_balance": "{c}", "borrow_balance": "{b}",
            "collateral_price": "{price}", "borrow_price": "1", "twap_leverage_ratio": "{twap}",
            "global_last_trade_timestamp": {last}, "exchanges": {{"uniswap-v3": {{"last_trade_timestamp": {last}}}}},
            "ether_balance": "1000000000000000000"}}"#
    )
}

#[test]
fn product_check_valid_and_invalid() {
    let o = keel(&["product", "check", "products/eth2x-fli.toml"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.starts_with("ok: ETH2x-FLI"), "{out}");
    assert_eq!(out.lines().count(), 1, "one-line summary");

    let bad = std::fs::read_to_string(root().join("products/eth2x-fli.toml"))
        .unwrap()
        .replace("max_leverage_ratio = \"2.3\"", "max_leverage_ratio = \"1.9\"")
        .replace("rebalance_interval = \"1d\"", "rebalance_interval = \"10s\"");
    let p = tmp("bad.toml", &bad);
    let o = keel(&["product", "check", p.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("Must be valid max leverage: max_leverage_ratio 1.9 is below target_leverage_ratio 2"),
        "{err}"
    );
    assert!(err.contains("Rebalance interval must be greater than TWAP cooldown period"), "{err}");
    assert!(!err.contains("Incentivized leverage ratio must be > max leverage ratio"), "{err}");
}

#[test]
fn calldata_prints_quoted_arrays() {
    let o = keel(&["product", "calldata", "products/eth2x-fli.toml"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains(
            r#"["2000000000000000000","1740000000000000000","2300000000000000000","50000000000000000","86400"]"#
        ),
        "{out}"
    );
    let o = keel(&["product", "calldata", "products/eth2x-fli.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["setExecutionSettings"], serde_json::json!(["10000000000000000", "20000000000000000", "30"]));
}

#[test]
fn eval_engage_state_18_1() {
    let v = eval_json(&state("1000000000000000000", "0", "1000", "0", 1_700_000_000, 1_699_999_000), &[]);
    assert_eq!(v["leverage_ratio"], "1000000000000000000");
    assert_eq!(v["should_rebalance"]["uniswap-v3"], "REBALANCE", "1x is below MIN");
    assert_eq!(v["is_lever"], true);
    // recentre 1.0 → max(1.7, 0.1 + 0.95) = 1.7; total 0.7 ETH; chunk capped at 0.5 ETH
    assert_eq!(v["new_leverage_ratio"], "1700000000000000000");
    assert_eq!(v["total_rebalance_notional"]["uniswap-v3"], "700000000000000000");
    assert_eq!(v["chunk_rebalance_notional"]["uniswap-v3"], "500000000000000000");
    assert_eq!(v["sizes"]["uniswap-v3"], "500000000", "borrow units (USDC) when levering");
    assert_eq!(v["ether_incentive"], "0");
}

#[test]
fn eval_iterate_state_18_2() {
    let s = state("1500000000000000000", "500000000", "1000", "2000000000000000000", 1_700_003_000, 1_700_000_000);
    let v = eval_json(&s, &[]);
    assert_eq!(v["leverage_ratio"], "1500000000000000000");
    assert_eq!(v["should_rebalance"]["uniswap-v3"], "NONE", "cooldown not passed at exactly t0 + 3000");
    assert_eq!(v["new_leverage_ratio"], "2000000000000000000");
    assert_eq!(v["total_rebalance_notional"]["uniswap-v3"], "500000000000000000");
    assert_eq!(v["chunk_rebalance_notional"]["uniswap-v3"], "500000000000000000");
    assert_eq!(v["sizes"]["uniswap-v3"], "500000000");
    let s = state("1500000000000000000", "500000000", "1000", "2000000000000000000", 1_700_003_001, 1_700_000_000);
    assert_eq!(eval_json(&s, &[])["should_rebalance"]["uniswap-v3"], "ITERATE_REBALANCE");
}

#[test]
fn eval_ripcord_state_18_3() {
    let v = eval_json(&state("2000000000000000000", "1000000000", "800", "0", 1_700_000_061, 1_700_000_000), &[]);
    assert_eq!(v["leverage_ratio"], "2666666666666666666");
    assert_eq!(v["should_rebalance"]["uniswap-v3"], "RIPCORD");
    assert_eq!(v["new_leverage_ratio"], "2300000000000000000");
    assert_eq!(v["is_lever"], false);
    assert_eq!(v["total_rebalance_notional"]["uniswap-v3"], "274999999999999999");
    assert_eq!(v["chunk_rebalance_notional"]["uniswap-v3"], "274999999999999999");
    assert_eq!(v["sizes"]["uniswap-v3"], "274999999999999999", "collateral units when delevering");
    assert_eq!(v["ether_incentive"], "1000000000000000000");
    let v = eval_json(&state("2000000000000000000", "999999999", "800", "0", 1_700_000_061, 1_700_000_000), &[]);
    assert_eq!(v["leverage_ratio"], "2666666662222222229");
    assert_eq!(v["chunk_rebalance_notional"]["uniswap-v3"], "274999997124999999");
}

#[test]
fn eval_custom_bounds() {
    // LR 2.31: out of the 1.7–2.3 band but inside 1.6–2.4.
    let s = state("2310000000000000000", "1310000000", "1000", "0", 1_700_000_100, 1_700_000_000);
    assert_eq!(eval_json(&s, &[])["should_rebalance"]["uniswap-v3"], "REBALANCE");
    assert_eq!(eval_json(&s, &["--min", "1.6", "--max", "2.4"])["should_rebalance"]["uniswap-v3"], "NONE");
    assert_eq!(
        eval_json(&s, &["--min", "1600000000000000000", "--max", "2400000000000000000"])["should_rebalance"]["uniswap-v3"],
        "NONE"
    );
    let p = tmp("bounds.json", &s);
    let o = keel(&[
        "strategy",
        "eval",
        "--product",
        FIXTURE,
        "--state",
        p.to_str().unwrap(),
        "--min",
        "1.8",
        "--max",
        "2.4",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("Custom bounds must be valid"), "{}", text(&o).1);
}

#[test]
fn table_bad_state_files_name_the_field() {
    let good = state("2000000000000000000", "1000000000", "800", "0", 1_700_000_061, 1_700_000_000);
    let cases: &[(&str, String, &str)] = &[
        ("missing now", good.replace(r#""now": 1700000061, "#, ""), "missing field `now`"),
        (
            "negative price",
            good.replace(r#""collateral_price": "800""#, r#""collateral_price": "-800""#),
            "field `collateral_price`",
        ),
        (
            "zero price",
            good.replace(r#""collateral_price": "800""#, r#""collateral_price": "0""#),
            "field `collateral_price` must be positive",
        ),
        (
            "price too precise",
            good.replace(r#""collateral_price": "800""#, r#""collateral_price": "800.123456789""#),
            "has more than 8 decimals",
        ),
        (
            "balance not integer",
            good.replace(r#""borrow_balance": "1000000000""#, r#""borrow_balance": "1e9""#),
            "field `borrow_balance` must be a non-negative whole number",
        ),
        ("unknown exchange", good.replace("uniswap-v3", "sushi"), "field `exchanges.sushi`"),
        ("not json", "{".to_string(), "state file is not valid JSON"),
        (
            "insolvent",
            good.replace(r#""borrow_balance": "1000000000""#, r#""borrow_balance": "1600000000""#),
            "Position is insolvent",
        ),
    ];
    for (case, s, want) in cases {
        let p = tmp(&format!("bad-{}.json", case.replace(' ', "-")), s);
        let o = keel(&["strategy", "eval", "--product", FIXTURE, "--state", p.to_str().unwrap(), "--json"]);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "case {case} should fail");
        assert!(err.contains(want), "case {case}: {err}");
    }
}

#[test]
fn help_explains() {
    let o = keel(&["strategy", "eval", "--help"]);
    let (out, _) = text(&o);
    assert!(out.contains("shouldRebalance") && out.contains("--min"), "{out}");
}

const PERP_STATE: &str = r#"{"now": 1700000000, "total_supply": "100000000000000000000",
 "collateral_balance": "10000000000000000000000", "base_balance": "20000000000000000000",
 "quote_balance": "-20000000000000000000000", "owed_realized_pnl": "0", "pending_funding": "0",
 "base_price": "1100", "twap_leverage_ratio": "0", "global_last_trade_timestamp": 1699900000,
 "exchanges": {"perp-v2": {"last_trade_timestamp": 1699900000}}, "ether_balance": "1000000000000000000"}"#;

#[test]
fn perp_eval_json_signed_sizes() {
    let p = tmp("perp-state.json", PERP_STATE);
    let o = keel(&[
        "strategy",
        "eval",
        "--product",
        "crates/keel-cli/tests/fixtures/perp-fixture.toml",
        "--state",
        p.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["leverage_ratio"], "1833333333333333333");
    assert_eq!(v["should_rebalance"]["perp-v2"], "REBALANCE", "the interval has passed");
    assert_eq!(v["new_leverage_ratio"], "1841666666666666666");
    assert_eq!(v["is_lever"], true);
    assert_eq!(v["total_rebalance_notional"]["perp-v2"], "90909090909090900");
    assert_eq!(v["chunk_rebalance_notional"]["perp-v2"], "90909090909090900");
    assert_eq!(v["sizes"]["perp-v2"], "90909090909090900", "signed base units: positive buys base");
    assert_eq!((v["sell_asset"].as_str(), v["buy_asset"].as_str()), (Some("vUSD"), Some("vETH")));
    assert_eq!(v["ether_incentive"], "0");
    // The short mirror: beyond the ripcord level, buy base back, reward due.
    let short = PERP_STATE
        .replace("\"base_balance\": \"20000000000000000000\"", "\"base_balance\": \"-20000000000000000000\"")
        .replace("\"quote_balance\": \"-20000000000000000000000\"", "\"quote_balance\": \"20000000000000000000000\"");
    let p = tmp("perp-short.json", &short);
    let o = keel(&[
        "strategy",
        "eval",
        "--product",
        "crates/keel-cli/tests/fixtures/perp-fixture-short.toml",
        "--state",
        p.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["leverage_ratio"], "-2750000000000000000");
    assert_eq!(v["should_rebalance"]["perp-v2"], "RIPCORD");
    assert_eq!(v["new_leverage_ratio"], "-2300000000000000000");
    assert_eq!(v["sizes"]["perp-v2"], "3272727272727272720");
    assert_eq!(v["ether_incentive"], "1000000000000000000");
    // Custom bounds take signed ratios for a short token.
    let o = keel(&[
        "strategy",
        "eval",
        "--product",
        "crates/keel-cli/tests/fixtures/perp-fixture-short.toml",
        "--state",
        p.to_str().unwrap(),
        "--min",
        "-1.6",
        "--max",
        "-2.4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn perp_products_check_and_calldata() {
    let o = keel(&["product", "check", "products/eth2x-perp.toml"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.starts_with("ok: ETH2x-PERP"), "{}", text(&o).0);
    let o = keel(&["product", "calldata", "products/eth2x-perp.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["setMethodologySettings"],
        serde_json::json!([
            "2000000000000000000",
            "1700000000000000000",
            "2300000000000000000",
            "100000000000000000",
            "86400"
        ])
    );
    assert_eq!(v["setExchangeSettings"], serde_json::json!(["10000000000000000000", "20000000000000000000"]));
    let bad = std::fs::read_to_string(root().join("products/eth2x-perp.toml"))
        .unwrap()
        .replace("min_leverage_ratio = \"1.7\"", "min_leverage_ratio = \"-1.7\"");
    let p = tmp("bad-perp.toml", &bad);
    let o = keel(&["product", "check", p.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("Leverage ratios must share one sign"), "{}", text(&o).1);
    // Perp products backtest on the Perp-v2-style account and vAMM.
    let o = keel(&[
        "backtest",
        "--product",
        "products/eth2x-perp.toml",
        "--scenario",
        "calm",
        "--block-time",
        "1h",
        "--quiet",
        "--out",
        std::env::temp_dir().join("keel-perp-bt").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let out = text(&o).0;
    assert!(out.starts_with("product         ETH2x-PERP (β +2.00, perp-fli)"), "{out}");
    assert!(out.contains("scenario calm") && out.contains(" 0 liquidations"), "{out}");
    assert!(out.contains("min margin ratio"), "{out}");
    assert!(!out.contains(" 0 mints"), "flows ran: {out}");
}

#[test]
fn big_json_numbers_are_exact() {
    // Balances as bare JSON numbers beyond 2^64 keep every digit; fractions are refused.
    let s = state("2000000000000000000", "1000000000", "800", "0", 1_700_000_061, 1_700_000_000)
        .replace("\"collateral_balance\": \"2000000000000000000\"", "\"collateral_balance\": 2000000000000000000")
        .replace("\"total_supply\": \"1000000000000000000\"", "\"total_supply\": 1000000000000000000");
    assert_eq!(eval_json(&s, &[])["leverage_ratio"], "2666666666666666666");
    let big = s.replace("\"borrow_balance\": \"1000000000\"", "\"borrow_balance\": 1000000000.5");
    let p = tmp("fraction.json", &big);
    let o = keel(&["strategy", "eval", "--product", FIXTURE, "--state", p.to_str().unwrap(), "--json"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("field `borrow_balance`"), "{}", text(&o).1);
}

#[test]
fn every_bundled_product_checks_and_names_its_methodology() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(root().join("products")).unwrap() {
        let path = entry.unwrap().path();
        let rel = format!("products/{}", path.file_name().unwrap().to_string_lossy());
        let o = keel(&["product", "check", &rel]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{rel}: {}", String::from_utf8_lossy(&o.stderr));
        let kind = ["fli on", "threshold on", "daily on", "continuous on"].iter().find(|k| out.contains(*k));
        seen.push(kind.copied().unwrap_or_else(|| panic!("{rel}: {out}")));
    }
    for k in ["fli on", "threshold on", "daily on", "continuous on"] {
        assert!(seen.contains(&k), "a bundled product for each methodology: {seen:?}");
    }
}

/// Issue #11: each bad product value is refused by `keel product check` naming the field and
/// the rule (several used to pass, one panicked, one was blamed on the wrong field).
#[test]
fn table_bad_product_values_name_the_field() {
    let base = std::fs::read_to_string(root().join("products/eth2x-fli.toml")).unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "decimals 78 (a crash before)",
            "decimals = 18",
            "decimals = 78",
            "field `collateral.decimals`: '78' is not a whole number of decimals from 0 to 28",
        ),
        ("decimals 255, wrong field", "decimals = 18", "decimals = 255", "field `collateral.decimals`: '255'"),
        (
            "heartbeat 0s",
            "heartbeat = \"1h\"",
            "heartbeat = \"0s\"",
            "field `collateral.heartbeat`: 0 s is outside the accepted range 1 s to 30 d",
        ),
        (
            "deviation 10000%",
            "deviation = \"0.5%\"",
            "deviation = \"10000%\"",
            "field `collateral.deviation`: 10000% is not below 100%",
        ),
        (
            "empty name",
            "name = \"ETH 2x Flexible Leverage Index\"",
            "name = \"\"",
            "field `token.name`: must not be empty",
        ),
        ("empty symbol", "symbol = \"ETH2x-FLI\"", "symbol = \" \"", "field `token.symbol`: must not be empty"),
        (
            "9-decimal price",
            "price = \"2000\"",
            "price = \"2000.000000001\"",
            "field `collateral.price`: '2000.000000001' has more than 8 decimals",
        ),
        (
            "price above the band",
            "price = \"2000\"",
            "price = \"1e15\"",
            "field `collateral.price`: '1e15' is not a decimal number",
        ),
        (
            "a quantity with a sign",
            "supply_cap = \"5000\"",
            "supply_cap = \"+5000\"",
            "field `token.supply_cap`: '+5000' is not a decimal number",
        ),
        (
            "digit separators",
            "supply_cap = \"5000\"",
            "supply_cap = \"5_000\"",
            "field `token.supply_cap`: '5_000' is not a decimal number",
        ),
        (
            "a pool outside its range",
            "decimals = 6",
            "decimals = 28",
            "a pool would quote 1.000e48 USDC base units per WETH base unit, outside the range keel supports",
        ),
    ];
    for (name, from, to, want) in cases {
        let edited = base.replacen(from, to, 1);
        let edited = if *name == "a pool outside its range" {
            edited
                .replacen("decimals = 18", "decimals = 0", 1)
                .replacen("price = \"2000\"", "price = \"1000000000000\"", 1)
                .replacen("price = \"1\"", "price = \"0.00000001\"", 1)
                .replacen("initial_collateral_per_token = \"0.5\"", "initial_collateral_per_token = \"1\"", 1)
                .replacen("twap_max_trade_size = \"10\"", "twap_max_trade_size = \"1\"", 1)
                .replacen("incentivized_twap_max_trade_size = \"20\"", "incentivized_twap_max_trade_size = \"2\"", 1)
        } else {
            edited
        };
        assert_ne!(edited, base, "{name}: the case edits the file");
        let p = tmp(&format!("bad-{}.toml", name.replace(' ', "-")), &edited);
        let o = keel(&["product", "check", p.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

/// Issue #11: `keel backtest` without `--product` ran only from the repository root; bad
/// numbers, dates and prices got a parser's message or none.
#[test]
fn backtest_inputs_refused_with_the_flag_and_the_rule() {
    let bars = "timestamp,open,high,low,close\n1600000000,100,101,99,100\n1600003600,100,102,99,101\n1600007200,101,103,100,102\n";
    let csv = tmp("three-bars.csv", bars);
    let out = std::env::temp_dir().join(format!("keel-cli-out-{}", std::process::id()));
    let elsewhere = std::env::temp_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["backtest", "--prices", csv.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap()])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(o.status.success(), "the built-in product runs from any directory: {}", text(&o).1);
    let tiny = tmp("tiny.csv", "0,1,1,1,1\n3600,1,1,1e-9,1\n7200,1,1,1,1\n");
    let huge = tmp("huge.csv", "0,1,1,1,1\n3600,1,1e308,1,1\n7200,1,1,1,1\n");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("negative tvl", vec!["--tvl", "-5"], "--tvl -5: give a positive USD amount"),
        ("absurd tvl", vec!["--tvl", "1e300"], "--tvl 1e300: give a positive USD amount up to"),
        (
            "an impossible date",
            vec!["--prices", csv.to_str().unwrap(), "--from", "2021-02-30"],
            "--from: time '2021-02-30'",
        ),
        ("a tiny price", vec!["--prices", tiny.to_str().unwrap()], "line 2: low 1e-9 is outside the accepted range"),
        ("a huge price", vec!["--prices", huge.to_str().unwrap()], "line 2: high 1e308 is outside the accepted range"),
    ];
    for (name, args, want) in cases {
        let mut all = vec!["backtest", "--quiet", "--out", out.to_str().unwrap()];
        all.extend(args);
        let o = keel(&all);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{name}: accepted");
        assert!(err.contains(want), "{name}: {err}");
    }
    // +0530 is five and a half hours (it was read as 530 hours): the window holds two bars
    let o = keel(&[
        "backtest",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--prices",
        csv.to_str().unwrap(),
        "--from",
        "2020-09-13T18:26:40+0530",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout.contains("2 hourly bars from 2020-09-13 13:26"), "{stdout}");
}

/// Issue #11: a misspelt `--grid` key made every point invalid and exited 0 with an empty table.
#[test]
fn a_misspelt_grid_key_names_the_closest_one() {
    let o = keel(&["sweep", "--grid", "methodology.max_leverge_ratio=2.2,2.4", "--paths", "1", "--scenario", "gbm"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("did you mean methodology.max_leverage_ratio?"), "{err}");
}

#[test]
fn table_shell_tools_completions_man_page_and_keeper_modes() {
    // (case, arguments, exit 0?, what stdout or stderr holds)
    let cases: [(&str, &[&str], bool, &str); 6] = [
        ("bash completions", &["completions", "bash"], true, "complete -F _keel"),
        ("zsh completions", &["completions", "zsh"], true, "#compdef keel"),
        ("fish completions", &["completions", "fish"], true, "complete -c keel"),
        ("man page", &["man"], true, ".TH keel 1"),
        ("an unknown shell", &["completions", "tcsh"], false, "possible values"),
        ("keeper without a mode", &["keeper"], false, "keel keeper --rpc URL --config keeper.toml"),
    ];
    for (case, args, ok, want) in cases {
        let o = keel(args);
        let (out, err) = text(&o);
        assert_eq!(o.status.success(), ok, "case {case}: {err}");
        assert!(out.contains(want) || err.contains(want), "case {case}: {out}{err}");
        if ok {
            assert!(out.contains("backtest"), "case {case}: every subcommand is there");
        }
    }
    let (out, _) = text(&keel(&["keeper", "--help"]));
    assert!(out.contains("--server URL --key KEY") && out.contains("--rpc URL"), "{out}");
}

#[test]
fn json_summaries_are_the_files() {
    let dir = std::env::temp_dir().join(format!("keel-cli-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = |sub: &str| dir.join(sub).to_str().unwrap().to_string();
    let o = keel(&["backtest", "--scenario", "calm", "--block-time", "1h", "--quiet", "--json", "--out", &out("b")]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("b/summary.json")).unwrap()).unwrap();
    assert_eq!(printed, file);
    assert!(printed["run"]["command"].as_str().unwrap().starts_with("keel backtest --scenario calm --seed 1"));
    let o = keel(&[
        "compare",
        "--products",
        "products/eth2x-fli.toml",
        "products/eth2x-perp.toml",
        "--scenario",
        "calm",
        "--block-time",
        "1h",
        "--json",
        "--out",
        &out("c"),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(rows.as_array().map(|r| r.len()), Some(2));
    assert!(rows[0]["return"].is_f64() && rows[1]["token"] == "ETH2x-PERP", "{rows}");
    let o = keel(&[
        "sweep",
        "--grid",
        "methodology.max_leverage_ratio=2.3,2.4",
        "--scenario",
        "gbm:vol=80%",
        "--horizon",
        "30d",
        "--paths",
        "4",
        "--quiet",
        "--json",
        "--out",
        &out("s"),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(rows.as_array().map(|r| r.len()), Some(2), "{rows}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_out_directory_holding_other_files_is_refused_and_left_alone() {
    let dir = std::env::temp_dir().join(format!("keel-cli-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.csv"), "a sweep's results").unwrap();
    let o = keel(&["backtest", "--scenario", "calm", "--block-time", "1h", "--quiet", "--out", dir.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("results.csv") && err.contains("new or empty directory"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing written");
    assert_eq!(std::fs::read_to_string(dir.join("results.csv")).unwrap(), "a sweep's results");
    let _ = std::fs::remove_dir_all(&dir);
}
