//! The keeper, the same code two ways: `keel keeper --server URL --key KEY` as its own process,
//! and `keel serve --keeper` in-process. Both finish an engage's TWAP with iterate calls.

mod common;

use common::{OP, agent, call, get, spawn};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// The ETH 2x product with a 1 s TWAP cooldown, so a test need not wait 30 s.
fn product() -> String {
    include_str!("../../../products/eth2x-fli.toml")
        .replace("twap_cooldown_period = \"30s\"", "twap_cooldown_period = \"1s\"")
}

fn engaged(base: &str, a: &ureq::Agent, allowed: &str) {
    let body = json!({ "id": "eth2x", "toml": product(), "allowed_callers": [allowed] });
    assert_eq!(call(a, base, "/products", OP, None, body).unwrap().0, 201);
    let (_, h) = call(a, base, "/keys", OP, None, json!({ "role": "holder" })).unwrap();
    let holder = h["key"].as_str().unwrap();
    assert_eq!(call(a, base, "/products/eth2x/mint", holder, None, json!({ "quantity": "20" })).unwrap().0, 200);
    let (s, v) = call(a, base, "/products/eth2x/engage", OP, None, json!({})).unwrap();
    assert_eq!(s, 200, "{v}");
    assert!(get(a, &format!("{base}/products/eth2x"))["twap_leverage_ratio"].is_string(), "a TWAP is in progress");
}

fn iterations(base: &str, a: &ureq::Agent) -> Vec<serde_json::Value> {
    let page = get(a, &format!("{base}/events?limit=1000"));
    page["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "iterate").cloned().collect()
}

#[test]
fn keel_keeper_over_http_finishes_the_twap() {
    let srv = spawn(&keel_server::testing::sqlite_url("keeper_http"), &[]);
    let a = agent();
    let (_, k) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "keeper" })).unwrap();
    engaged(&srv.base, &a, k["address"].as_str().unwrap());
    std::thread::sleep(Duration::from_millis(1_100));
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "keeper",
            "--server",
            &srv.base,
            "--key",
            k["key"].as_str().unwrap(),
            "--rounds",
            "12",
            "--interval",
            "600ms",
        ])
        .env("KEEL_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("eth2x iterate on uniswap-v3: done"), "{stdout}");
    let its = iterations(&srv.base, &a);
    assert!(!its.is_empty());
    assert!(its.iter().all(|e| e["actor"]["role"] == "keeper"));
    // one submission per decision: every iterate carries its own idempotency key
    let keys: std::collections::BTreeSet<_> =
        its.iter().map(|e| e["idempotency_key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys.len(), its.len());
    let view = get(&a, &format!("{}/products/eth2x", srv.base));
    assert!(view["twap_leverage_ratio"].is_null(), "the TWAP finished: {view}");
    srv.kill();
}

#[test]
fn keel_server_keeper_in_process_finishes_the_twap() {
    let keeper = "0x0000000000000000000000000000000000001234";
    let srv = spawn(&keel_server::testing::sqlite_url("keeper_inproc"), &["--keeper", "--keeper-address", keeper]);
    let a = agent();
    engaged(&srv.base, &a, keeper);
    let t0 = Instant::now();
    loop {
        let view = get(&a, &format!("{}/products/eth2x", srv.base));
        if view["twap_leverage_ratio"].is_null() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the in-process keeper did not finish the TWAP: {view}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let its = iterations(&srv.base, &a);
    assert!(!its.is_empty());
    assert!(its.iter().all(|e| e["actor"]["address"] == keeper));
    let metrics = a.get(format!("{}/metrics", srv.base)).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains("keel_keeper_submissions_total"), "metrics count the keeper");
    srv.kill();
}
