//! The HTTP API end to end on a real listener: roles, idempotency, every kind of bad input
//! (a 4xx with a clear message and no change to state), stale prices, the OpenAPI document,
//! metrics, the live stream and a restart.

mod common;

use common::{ETH2X, OP, Srv, setup};
use keel_server::testing::backends;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    for url in backends("api_bad") {
        let (s, holder, keeper, _oracle, _) = setup(&url);
        s.post("/products/eth2x/mint", &holder, json!({ "quantity": "10" }));
        let r = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("once"), Some(r#"{"quantity":"1"}"#));
        assert_eq!(r.status, 200);
        let bad_toml = ETH2X.replace("max_leverage_ratio = \"2.3\"", "max_leverage_ratio = \"1.9\"");
        let bad_product = json!({ "id": "bad", "toml": bad_toml }).to_string();
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, String, u16, &'a str);
        let h = Some(holder.as_str());
        let cases: Vec<Case> = vec![
            (
                "malformed JSON",
                "POST",
                "/products/eth2x/mint",
                h,
                None,
                "{quantity: 1".into(),
                400,
                "body: not valid JSON",
            ),
            ("not an object", "POST", "/products/eth2x/mint", h, None, "[1]".into(), 400, "must be a JSON object"),
            (
                "unknown field",
                "POST",
                "/products/eth2x/mint",
                h,
                None,
                r#"{"qty":"1"}"#.into(),
                400,
                "qty: unknown field",
            ),
            ("missing quantity", "POST", "/products/eth2x/mint", h, None, "{}".into(), 400, "quantity: is required"),
            (
                "negative amount",
                "POST",
                "/products/eth2x/mint",
                h,
                None,
                r#"{"quantity":"-1"}"#.into(),
                400,
                "quantity: must be positive",
            ),
            (
                "negative number",
                "POST",
                "/products/eth2x/redeem",
                h,
                None,
                r#"{"quantity":-2}"#.into(),
                400,
                "must be positive",
            ),
            (
                "zero amount",
                "POST",
                "/products/eth2x/mint",
                h,
                None,
                r#"{"quantity":"0"}"#.into(),
                400,
                "must be greater than 0",
            ),
            (
                "unknown product",
                "POST",
                "/products/nope/mint",
                h,
                None,
                r#"{"quantity":"1"}"#.into(),
                404,
                "no product 'nope'",
            ),
            (
                "redeem more than held",
                "POST",
                "/products/eth2x/redeem",
                h,
                None,
                r#"{"quantity":"12"}"#.into(),
                422,
                "Insufficient balance",
            ),
            (
                "mint past the supply cap",
                "POST",
                "/products/eth2x/mint",
                h,
                None,
                r#"{"quantity":"4990"}"#.into(),
                422,
                "Supply cap exceeded",
            ),
            (
                "wrong role",
                "POST",
                "/products/eth2x/mint",
                Some(&keeper),
                None,
                r#"{"quantity":"1"}"#.into(),
                403,
                "needs a key with role holder",
            ),
            ("holder engages", "POST", "/products/eth2x/engage", h, None, "{}".into(), 403, "role operator"),
            (
                "no key",
                "POST",
                "/products/eth2x/mint",
                None,
                None,
                r#"{"quantity":"1"}"#.into(),
                401,
                "needs an API key",
            ),
            (
                "unknown key",
                "POST",
                "/products/eth2x/mint",
                Some("nope"),
                None,
                r#"{"quantity":"1"}"#.into(),
                401,
                "unknown API key",
            ),
            (
                "idempotency key, other body",
                "POST",
                "/products/eth2x/mint",
                h,
                Some("once"),
                r#"{"quantity":"2"}"#.into(),
                409,
                "different request",
            ),
            (
                "bad address",
                "POST",
                "/products/eth2x/transfer",
                h,
                None,
                r#"{"to":"0x12","quantity":"1"}"#.into(),
                400,
                "to: '0x12' is not an address",
            ),
            ("bad product file", "POST", "/products", Some(OP), None, bad_product, 400, "max_leverage_ratio"),
            (
                "keys need a role",
                "POST",
                "/keys",
                Some(OP),
                None,
                r#"{"role":"admin"}"#.into(),
                400,
                "unknown role 'admin'",
            ),
            ("holder creates keys", "POST", "/keys", h, None, r#"{"role":"holder"}"#.into(), 403, "role operator"),
            (
                "bad page size",
                "GET",
                "/events?limit=abc",
                None,
                None,
                String::new(),
                400,
                "limit: must be a whole number",
            ),
            ("unknown route", "GET", "/nothing", None, None, String::new(), 404, "no such route"),
            (
                "unknown balance product",
                "GET",
                "/products/nope/balances/0x0000000000000000000000000000000000000001",
                None,
                None,
                String::new(),
                404,
                "no product",
            ),
        ];
        for (name, method, path, key, idem, body, status, msg) in cases {
            let before = (s.get("/health")["seq"].clone(), s.state());
            let r = s.req(method, path, key, idem, Some(&body));
            assert_eq!(r.status, status, "{url} {name}: {}", r.body);
            let m = r.body["message"].as_str().unwrap_or_default();
            assert!(m.contains(msg), "{url} {name}: {m}");
            assert_eq!((s.get("/health")["seq"].clone(), s.state()), before, "{url} {name}: state changed");
        }
        s.stop();
    }
}

#[test]
fn roles_idempotency_prices_keeper_calls_and_restart() {
    for url in backends("api_flow") {
        let (s, holder, keeper, oracle, _) = setup(&url);
        // idempotent mint: the retry returns the first result and mints nothing
        let first = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("m-1"), Some(r#"{"quantity":"10"}"#));
        assert_eq!(first.status, 200, "{}", first.body);
        let again = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("m-1"), Some(r#"{"quantity":"10"}"#));
        assert_eq!((again.status, &again.body, again.replayed), (200, &first.body, true));
        assert_eq!(s.get("/products/eth2x")["supply"], "10.01");
        let addr = first.body["holder"].as_str().unwrap();
        assert_eq!(s.get(&format!("/products/eth2x/balances/{addr}"))["balance"], "10");
        // operator engages; the view shows the TWAP in progress
        let e = s.post("/products/eth2x/engage", OP, json!({}));
        assert_eq!(e["event"]["name"], "Engaged");
        // a keeper off the allow-list is refused; the listed one may iterate after the cooldown
        let (stranger, _) = s.key("keeper");
        s.clock.0.fetch_add(60, Ordering::SeqCst);
        let r = s.req("POST", "/products/eth2x/iterate", Some(&stranger), None, Some("{}"));
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains("Address not permitted to call"));
        let it = s.post("/products/eth2x/iterate", &keeper, json!({ "exchange": "uniswap-v3" }));
        assert_eq!(it["event"]["name"], "RebalanceIterated", "{it}");
        // prices: stale after the heartbeat (+10%) blocks minting and says why; a push unblocks
        s.clock.0.fetch_add(4_000, Ordering::SeqCst);
        let v = s.wait_view(|v| v["blocked"].is_string());
        assert!(v["blocked"].as_str().unwrap().contains("stale"), "{v}");
        let r = s.req("POST", "/products/eth2x/mint", Some(&holder), None, Some(r#"{"quantity":"1"}"#));
        assert_eq!(r.status, 422);
        assert!(r.body["message"].as_str().unwrap().contains("minting is paused"), "{}", r.body);
        s.post("/products/eth2x/prices", &oracle, json!({ "price": "2100" }));
        s.post("/products/eth2x/prices", &oracle, json!({ "asset": "USDC", "price": "1" }));
        let v = s.wait_view(|v| v["blocked"].is_null());
        assert_eq!(v["prices"]["WETH"]["price"], "2100");
        s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
        // settings: a patch through the core's setters
        let p = s.req(
            "PATCH",
            "/products/eth2x/settings",
            Some(OP),
            None,
            Some(&json!({ "patch": "[methodology]\nrecentering_speed = \"6%\"" }).to_string()),
        );
        assert_eq!(p.status, 200, "{}", p.body);
        // the log: paged, with the idempotency key
        let page = s.get("/events?product=eth2x&limit=3");
        assert_eq!(page["events"].as_array().unwrap().len(), 3);
        let all = s.get("/events?limit=1000");
        let mints: Vec<&Value> = all["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "mint").collect();
        assert_eq!(mints.len(), 2, "the retried mint is in the log once");
        // restart: the same state from snapshot + log
        let before = s.state();
        let clock = s.clock.clone();
        s.stop();
        let s = Srv::start(&url, clock, false);
        let r = s.running.as_ref().unwrap().startup.clone();
        assert!(r.snapshot_seq > 0 || r.replayed > 0);
        assert_eq!(s.state(), before, "{url}: restart restores the state");
        let again = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("m-1"), Some(r#"{"quantity":"10"}"#));
        assert_eq!((again.status, again.replayed), (200, true), "idempotency survives a restart");
        s.stop();
    }
}

#[test]
fn openapi_metrics_dashboard_and_the_live_stream() {
    let url = keel_server::testing::sqlite_url("api_docs");
    let (s, holder, _, _, _) = setup(&url);
    let doc = s.get("/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path, _, _) in keel_server::http::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} documented");
    }
    assert_eq!(doc["paths"].as_object().unwrap().len(), {
        let mut p: Vec<&str> = keel_server::http::ROUTES.iter().map(|r| r.1).collect();
        p.dedup();
        p.len()
    });
    // every documented route is routed (a documented path never falls through to 404-route)
    for (method, path, _, _) in keel_server::http::ROUTES {
        let concrete = path
            .replace("{id}", "eth2x")
            .replace("{address}", "0x0000000000000000000000000000000000000001")
            .replace("{name}", "x");
        if *path == "/events/stream" {
            continue;
        }
        let r = s.req(&method.to_uppercase(), &concrete, None, None, Some(""));
        let msg = r.body["message"].as_str().unwrap_or_default().to_string();
        assert!(!msg.contains("no such route"), "{method} {path}: {msg}");
    }
    let html = s.req("GET", "/", None, None, None);
    assert!(matches!(html.body, Value::String(ref t) if t.contains("EventSource")));
    // the stream carries a mint
    let stream = s.agent.get(format!("{}/events/stream", s.base)).call().unwrap();
    let body = stream.into_body().into_reader();
    let t = std::thread::spawn(move || {
        let mut lines = BufReader::new(body).lines();
        while let Some(Ok(l)) = lines.next() {
            if l.starts_with("data:") && l.contains("\"kind\":\"mint\"") {
                return Some(l);
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(100));
    s.post("/products/eth2x/mint", &holder, json!({ "quantity": "3" }));
    let line = t.join().unwrap().expect("a mint on the stream");
    assert!(line.contains("\"quantity\":\"3\""), "{line}");
    let m = s.req("GET", "/metrics", None, None, None);
    let text = m.body.as_str().unwrap().to_string();
    for want in [
        "keel_leverage_ratio{product=\"eth2x\"}",
        "keel_nav_per_token_usd{product=\"eth2x\"}",
        "# TYPE keel_funding_paid_usd gauge",
        "keel_events_total{kind=\"mint\",product=\"eth2x\"}",
        "# HELP keel_rebalances_total",
        "# HELP keel_ripcords_total",
        "# HELP keel_keeper_failures_total",
        "keel_leverage_band{product=\"eth2x\",bound=\"max\"}",
        "keel_price_age_seconds{product=\"eth2x\",asset=\"WETH\"}",
        "keel_build_info{version=",
        "process_resident_memory_bytes",
        "keel_http_request_duration_seconds_bucket{route=\"/products/{id}/mint\",le=\"0.005\"}",
    ] {
        assert!(text.contains(want), "metrics lack {want}");
    }
    assert!(!text.contains("{}"), "no empty label set");
    s.stop();
}

#[test]
fn an_expired_idempotency_key_is_a_new_request_and_survives_a_restart() {
    for url in backends("api_ttl") {
        let (s, holder, _, _, _) = setup(&url);
        keel_server::set_idempotency_ttl(s.running.as_ref().unwrap(), 600).unwrap();
        let body = r#"{"quantity":"2"}"#;
        let first = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("daily-1"), Some(body));
        assert_eq!((first.status, first.replayed), (200, false));
        s.clock.0.fetch_add(300, Ordering::SeqCst);
        let r = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("daily-1"), Some(body));
        assert_eq!((r.status, r.replayed), (200, true), "within the TTL: the first result");
        s.clock.0.fetch_add(301, Ordering::SeqCst);
        let r = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("daily-1"), Some(body));
        assert_eq!((r.status, r.replayed), (200, false), "{url}: after the TTL a new request, logged without a clash");
        assert_eq!(r.body["balance"], "4");
        let bad = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("no spaces"), Some(body));
        assert_eq!(bad.status, 400);
        assert!(bad.body["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", bad.body);
        let clock = s.clock.clone();
        s.stop();
        let s = Srv::start(&url, clock, false);
        let r = s.req("POST", "/products/eth2x/mint", Some(&holder), Some("daily-1"), Some(body));
        assert_eq!(
            (r.status, r.replayed, r.body["balance"].as_str()),
            (200, true, Some("4")),
            "{url}: the latest use, after a restart"
        );
        s.stop();
    }
}
