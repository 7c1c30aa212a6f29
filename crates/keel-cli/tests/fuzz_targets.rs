//! The fuzz targets (`keel_cli::fuzzing`, run long by `cargo fuzz` in `fuzz/`) over random
//! and hand-picked inputs, for a bounded number of cases in CI. `KEEL_FUZZ_CASES=N` runs more.

use keel_cli::fuzzing;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("KEEL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

const PRODUCT: &str = include_str!("../../../products/eth2x-fli.toml");

/// Random edits of a real file: a line dropped, a value replaced, bytes flipped.
fn mutated(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let values = prop_oneof![
        Just("\"0\"".to_string()),
        Just("\"-1\"".to_string()),
        Just("\"1e308\"".to_string()),
        Just("\"0.00000001\"".to_string()),
        Just("\"115792089237316195423570985008687907853269984665640564039457584007913129639935\"".to_string()),
        Just("80".to_string()),
        Just("\"\"".to_string()),
        Just("[1, 2]".to_string()),
        "[0-9.%a-z\"]{0,12}".prop_map(|s| s),
    ];
    (0usize..200, values, proptest::collection::vec((0usize..4000, any::<u8>()), 0..3)).prop_map(
        move |(line, v, flips)| {
            let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
            let i = line % lines.len();
            if let Some((k, _)) = lines[i].split_once('=') {
                lines[i] = format!("{k}= {v}");
            } else if line % 7 == 0 {
                lines.remove(i);
            }
            let mut bytes = lines.join("\n").into_bytes();
            for (at, b) in flips {
                let n = bytes.len();
                bytes[at % n] = b;
            }
            bytes
        },
    )
}

fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "[0-9]{1,12}",
        Just("1e-9".to_string()),
        Just("1e308".to_string()),
        Just("NaN".to_string()),
        Just("2021-02-30".to_string()),
        Just("2020-03-12T10:00:00+0530".to_string()),
        "[0-9.e+-]{0,8}",
        Just(String::new()),
    ];
    proptest::collection::vec(proptest::collection::vec(field, 0..8), 0..12).prop_map(|rows| {
        let mut out = String::from("timestamp,open,high,low,close\n");
        for r in rows {
            out.push_str(&r.join(","));
            out.push('\n');
        }
        out.into_bytes()
    })
}

fn state_bytes() -> impl Strategy<Value = Vec<u8>> {
    let num = prop_oneof![
        Just("0".to_string()),
        Just("\"1\"".to_string()),
        Just("\"115792089237316195423570985008687907853269984665640564039457584007913129639935\"".to_string()),
        Just("-5".to_string()),
        Just("1e400".to_string()),
        Just("\"2000.5\"".to_string()),
        Just("null".to_string()),
        "[0-9]{1,30}",
    ];
    proptest::collection::vec(num, 9).prop_map(|v| {
        format!(
            r#"{{"now":{},"total_supply":{},"collateral_balance":{},"borrow_balance":{},"collateral_price":{},"borrow_price":{},"twap_leverage_ratio":{},"global_last_trade_timestamp":{},"ether_balance":{},"exchanges":{{"uniswap-v3":{{"last_trade_timestamp":0}}}}}}"#,
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]
        )
        .into_bytes()
    })
}

fn api_bytes() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        Just(r#"{"quantity":"1"}"#.to_string()),
        Just(
            r#"{"quantity":"115792089237316195423570985008687907853269984665640564039457584007913129639935"}"#
                .to_string()
        ),
        Just(r#"{"quantity":"0.000000000000000001"}"#.to_string()),
        Just(r#"{"price":"0.00000001"}"#.to_string()),
        Just(r#"{"price":"1000000000000"}"#.to_string()),
        Just(r#"{"price":"1e15"}"#.to_string()),
        Just(r#"{"price":"2001","asset":"USDC"}"#.to_string()),
        Just(r#"{"to":"0x00000000000000000000000000000000000000aa","quantity":"1"}"#.to_string()),
        Just(r#"{"patch":"[methodology]\nrecentering_speed = \"6%\""}"#.to_string()),
        Just(r#"{"patch":"[token]\nsymbol = \"\""}"#.to_string()),
        Just(r#"{"role":"holder","label":5}"#.to_string()),
        Just(r#"{"id":"x","toml":"[token]"}"#.to_string()),
        Just(r#"{"callers":["0x00000000000000000000000000000000000000aa"],"allowed":true}"#.to_string()),
        Just("after=9223372036854775808&limit=5".to_string()),
        Just("after=1&limit=1001".to_string()),
        "\\PC{0,40}",
    ];
    (any::<u8>(), body).prop_map(|(r, b)| {
        let mut v = vec![r];
        v.extend(b.into_bytes());
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn product_toml(data in mutated(PRODUCT)) { fuzzing::product_toml(&data); }

    #[test]
    fn price_csv(data in csv_bytes()) { fuzzing::price_csv(&data); }

    #[test]
    fn state_json(data in state_bytes()) { fuzzing::state_json(&data); }

    #[test]
    fn api_body(data in api_bytes()) { fuzzing::api_body(&data); }
}

#[test]
fn arbitrary_bytes_never_panic_any_target() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |data| {
            fuzzing::product_toml(&data);
            fuzzing::price_csv(&data);
            fuzzing::state_json(&data);
            Ok(())
        })
        .unwrap();
}
