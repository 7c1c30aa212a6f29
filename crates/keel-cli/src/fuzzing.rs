//! Fuzz target bodies: product TOML, price CSV, `strategy eval` state JSON and API request
//! bodies. Each takes arbitrary bytes and must never panic; an input it accepts must be usable
//! afterwards (a product that parses builds, a state that loads evaluates, a request the API
//! accepts leaves the service healthy).
//!
//! `fuzz/` runs them under libFuzzer (`cargo fuzz run product_toml`); `tests/fuzz_targets.rs`
//! runs them in CI over random and hand-picked inputs for a bounded number of cases.

use keel_core::product::AnyProduct;
use keel_core::strategy::fli::RiskParams;
use std::sync::OnceLock;

const T0: u64 = 1_700_000_000;

/// A product file: parse; a lending product that parses also builds on its venues.
pub fn product_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(AnyProduct::Lending(p)) = AnyProduct::from_toml(text) {
        // accepted means usable: building may refuse (checked arithmetic), never panic
        let _ = p.build(keel_core::Address::ZERO, T0);
    }
}

/// A price CSV: load it whole, with gaps allowed and refused, and through a window.
pub fn price_csv(data: &[u8]) {
    let _ = keel_sim::prices::load_bars_reader(data, true, None, None);
    if let Ok(s) = keel_sim::prices::load_bars_reader(data, false, Some(3_600), Some(T0)) {
        assert!(s.bars.windows(2).all(|w| w[0].time < w[1].time), "bars ascend");
        assert!(s.bars.iter().all(|b| b.low <= b.high && b.close > 0.0 && b.close.is_finite()));
    }
}

/// The product `strategy eval` is fuzzed against (the reference fixture of `fli.md`).
const FIXTURE: &str = include_str!("../tests/fixtures/reference-fixture.toml");

/// A `strategy eval` state file: load it into the fixture's strategy and evaluate it.
pub fn state_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(AnyProduct::Lending(p)) = AnyProduct::from_toml(FIXTURE) else { panic!("the fixture parses") };
    let Ok(mut fli) = p.strategy(keel_core::Address::ZERO) else { panic!("the fixture builds") };
    if let Ok(snap) = crate::eval::load_state(&mut fli, text) {
        let risk =
            RiskParams { ltv_bp: p.lending.ltv_bp, liquidation_threshold_bp: p.lending.liquidation_threshold_bp };
        let _ = fli.evaluate(&snap, None, risk);
    }
}

struct Api {
    base: String,
    agent: ureq::Agent,
    keys: Vec<String>,
    _running: keel_server::Running,
}

/// One service for the whole run: SQLite in a temp dir, a product, a key per role.
fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("keel_fuzz_api_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let url = format!("sqlite://{}", dir.join("keel.db").display());
        let cfg = keel_server::writer::WriterConfig { snapshot_every: 500, ..Default::default() };
        let running = keel_server::start(
            &keel_server::StoreConfig::new(&url, true),
            std::sync::Arc::new(keel_server::writer::SystemClock),
            cfg,
            "127.0.0.1:0".parse().expect("an address"),
        )
        .expect("the service starts");
        let op =
            keel_server::bootstrap_operator(&running, Some("fuzz-operator")).expect("a key").expect("the first key");
        let base = format!("http://{}", running.addr);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let post = |path: &str, key: &str, body: serde_json::Value| -> serde_json::Value {
            agent
                .post(format!("{base}{path}"))
                .header("Authorization", &format!("Bearer {key}"))
                .send_json(&body)
                .expect("a reply")
                .body_mut()
                .read_json()
                .expect("JSON")
        };
        let mut keys = vec![op.clone()];
        for role in ["keeper", "holder", "oracle", "public"] {
            let v = post("/keys", &op, serde_json::json!({ "role": role }));
            keys.push(v["key"].as_str().expect("a key").to_string());
        }
        let product = include_str!("../../../products/eth2x-fli.toml");
        post("/products", &op, serde_json::json!({ "id": "eth2x", "toml": product, "anyone_callable": true }));
        post("/products/eth2x/mint", &keys[2], serde_json::json!({ "quantity": "10" }));
        Api { base, agent, keys, _running: running }
    })
}

/// Routes a request can go to: method, path, which key (index into operator, keeper,
/// holder, oracle, public).
const ROUTES: &[(&str, &str, usize)] = &[
    ("POST", "/keys", 0),
    ("POST", "/products", 0),
    ("POST", "/products/eth2x/mint", 2),
    ("POST", "/products/eth2x/redeem", 2),
    ("POST", "/products/eth2x/transfer", 2),
    ("POST", "/products/eth2x/prices", 3),
    ("POST", "/products/eth2x/engage", 0),
    ("POST", "/products/eth2x/rebalance", 1),
    ("POST", "/products/eth2x/iterate", 1),
    ("POST", "/products/eth2x/ripcord", 4),
    ("POST", "/products/eth2x/disengage", 0),
    ("POST", "/products/eth2x/liquidate", 4),
    ("PATCH", "/products/eth2x/settings", 0),
    ("POST", "/products/eth2x/callers", 0),
    ("POST", "/products/eth2x/anyone-callable", 0),
    ("DELETE", "/products/eth2x/exchanges/uniswap-v3", 0),
    ("GET", "/events", 4),
];

/// An API request: the first byte picks the route, the rest is the body, sent to a live
/// service. No reply may be a 5xx, and the service stays healthy.
pub fn api_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let api = api();
    let (method, path, who) = ROUTES[pick as usize % ROUTES.len()];
    let path = if method == "GET" {
        format!("{path}?{}", String::from_utf8_lossy(body).replace(['#', ' ', '\n'], ""))
    } else {
        path.to_string()
    };
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", api.base))
        .header("Authorization", format!("Bearer {}", api.keys[who]))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    let Ok(req) = req else { return };
    let Ok(resp) = api.agent.run(req) else { return };
    let status = resp.status().as_u16();
    assert!(status < 500, "{method} {path} with {:?} gave {status}", String::from_utf8_lossy(body));
    let health = api.agent.get(format!("{}/health", api.base)).call().expect("health answers");
    assert_eq!(health.status().as_u16(), 200, "the service is healthy after {method} {path}");
}
