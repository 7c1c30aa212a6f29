//! The engine: every refusal changes nothing; the log replays to the same state; invariants
//! hold over random sequences of holder operations.

use keel_core::{Address, U256};
use keel_server::engine::{Engine, Outcome};
use keel_server::model::{Actor, Call, Command, Idempotency, Request, Role, StoredEvent, parse_quantity};
use proptest::prelude::*;
use std::collections::HashMap;

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");
const T0: u64 = 1_700_000_000;

fn actor(role: Role, byte: u8) -> Actor {
    Actor { key_id: format!("{}-{byte}", role.name()), role, address: Address::with_last_byte(byte) }
}
fn op() -> Actor {
    actor(Role::Operator, 1)
}
fn keeper() -> Actor {
    actor(Role::Keeper, 2)
}
fn oracle() -> Actor {
    actor(Role::Oracle, 3)
}
fn holder(b: u8) -> Actor {
    actor(Role::Holder, 10 + b)
}
fn q(s: &str) -> U256 {
    parse_quantity("q", Some(&serde_json::Value::String(s.into()))).unwrap()
}
fn req(a: Actor, c: Command) -> Request {
    Request { actor: a, idempotency: None, command: c }
}

fn apply(e: &mut Engine, a: Actor, c: Command, now: u64) -> Result<StoredEvent, keel_server::ApiError> {
    match e.apply(&req(a, c), now, None)? {
        Outcome::Applied(ev) => Ok(*ev),
        Outcome::Replayed { .. } => panic!("unexpected replay"),
    }
}

fn mint(p: &str, s: &str) -> Command {
    Command::Mint { product: p.into(), quantity: q(s) }
}
fn redeem(p: &str, s: &str) -> Command {
    Command::Redeem { product: p.into(), quantity: q(s) }
}
fn price(p: &str, asset: &str, s: &str) -> Command {
    Command::ObservePrice { product: p.into(), asset: asset.into(), price: q(s) }
}
fn call(p: &str, c: Call) -> Command {
    Command::Call { product: p.into(), call: c, exchange: "uniswap-v3".into() }
}

/// A product with a keeper on its allow-list, two holders with tokens, engaged.
fn running() -> (Engine, Vec<StoredEvent>) {
    running_product("eth2x", ETH2X)
}

/// Product `id` from `toml`, a keeper on its allow-list, two holders with tokens, engaged.
fn running_product(id: &str, toml: &str) -> (Engine, Vec<StoredEvent>) {
    let mut e = Engine::new();
    let mut log = Vec::new();
    let create = Command::CreateProduct {
        id: id.into(),
        toml: toml.into(),
        allowed_callers: vec![keeper().address],
        anyone_callable: false,
    };
    log.push(apply(&mut e, op(), create, T0).unwrap());
    log.push(apply(&mut e, holder(1), mint(id, "10"), T0 + 1).unwrap());
    log.push(apply(&mut e, holder(2), mint(id, "5"), T0 + 2).unwrap());
    log.push(apply(&mut e, op(), call(id, Call::Engage), T0 + 3).unwrap());
    (e, log)
}

/// Everything the engine holds.
fn state(e: &Engine) -> String {
    serde_json::to_string(e).unwrap()
}

/// A snapshot of `e` loads back, and replaying `log` on a fresh engine gives, the same state.
fn assert_snapshot_and_replay(e: &Engine, log: &[StoredEvent], case: &str) {
    let snap: Engine = serde_json::from_str(&state(e)).unwrap();
    assert_eq!(state(&snap), state(e), "snapshot {case}");
    let mut r = Engine::new();
    for ev in log {
        r.replay(ev).unwrap();
    }
    assert_eq!(state(&r), state(e), "replay {case}");
}

#[test]
fn every_refusal_changes_nothing() {
    let (base, _) = running();
    let bad_toml = ETH2X.replace("max_leverage_ratio = \"2.3\"", "max_leverage_ratio = \"1.9\"");
    type Case = (&'static str, Actor, Command, Option<(&'static str, &'static str)>, u64, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("unknown product", holder(1), mint("nope", "1"), None, 10, 404, "no product 'nope'"),
        (
            "zero quantity",
            holder(1),
            Command::Mint { product: "eth2x".into(), quantity: U256::ZERO },
            None,
            10,
            422,
            "greater than 0",
        ),
        ("redeem more than held", holder(1), redeem("eth2x", "11"), None, 10, 422, "Insufficient balance"),
        ("redeem with no balance", holder(3), redeem("eth2x", "1"), None, 10, 422, "Insufficient balance"),
        ("mint past the supply cap", holder(1), mint("eth2x", "5000"), None, 10, 422, "Supply cap exceeded"),
        ("keeper mints", keeper(), mint("eth2x", "1"), None, 10, 403, "minting needs a key with role holder"),
        ("holder engages", holder(1), call("eth2x", Call::Engage), None, 10, 403, "needs a key with role operator"),
        ("holder rebalances", holder(1), call("eth2x", Call::Rebalance), None, 10, 403, "role keeper"),
        (
            "keeper not on the allow-list",
            actor(Role::Keeper, 99),
            call("eth2x", Call::Rebalance),
            None,
            100,
            403,
            "Address not permitted to call",
        ),
        (
            "a holder's settings",
            holder(1),
            Command::UpdateSettings {
                product: "eth2x".into(),
                patch: "[methodology]\nrecentering_speed = \"6%\"".into(),
            },
            None,
            10,
            403,
            "changing settings needs a key with role operator",
        ),
        ("oracle mints", oracle(), mint("eth2x", "1"), None, 10, 403, "role holder"),
        ("holder pushes a price", holder(1), price("eth2x", "WETH", "2000"), None, 10, 403, "role oracle"),
        (
            "price of a foreign asset",
            oracle(),
            price("eth2x", "WBTC", "60000"),
            None,
            10,
            400,
            "'WBTC' is not an asset",
        ),
        (
            "price with 9 decimals",
            oracle(),
            price("eth2x", "WETH", "2000.000000001"),
            None,
            10,
            400,
            "more than 8 decimals",
        ),
        (
            "max below target",
            op(),
            Command::CreateProduct {
                id: "bad".into(),
                toml: bad_toml,
                allowed_callers: vec![],
                anyone_callable: false,
            },
            None,
            10,
            400,
            "max_leverage_ratio",
        ),
        (
            "duplicate product",
            op(),
            Command::CreateProduct {
                id: "eth2x".into(),
                toml: ETH2X.into(),
                allowed_callers: vec![],
                anyone_callable: false,
            },
            None,
            10,
            409,
            "already exists",
        ),
        (
            "bad product id",
            op(),
            Command::CreateProduct {
                id: "ETH 2x".into(),
                toml: ETH2X.into(),
                allowed_callers: vec![],
                anyone_callable: false,
            },
            None,
            10,
            400,
            "must be 1-64 characters",
        ),
        (
            "patch a running lending market",
            op(),
            Command::UpdateSettings { product: "eth2x".into(), patch: "[lending]\nltv = \"90%\"".into() },
            None,
            10,
            400,
            "cannot change on a running product",
        ),
        (
            "patch breaking a rule",
            op(),
            Command::UpdateSettings {
                product: "eth2x".into(),
                patch: "[methodology]\nmin_leverage_ratio = \"2.1\"".into(),
            },
            None,
            10,
            400,
            "min_leverage_ratio",
        ),
        (
            "patch changing nothing",
            op(),
            Command::UpdateSettings {
                product: "eth2x".into(),
                patch: "[methodology]\nrecentering_speed = \"5%\"".into(),
            },
            None,
            10,
            400,
            "changes nothing",
        ),
        (
            "unknown exchange",
            keeper(),
            Command::Call { product: "eth2x".into(), call: Call::Rebalance, exchange: "sushi".into() },
            None,
            10,
            404,
            "no exchange 'sushi'",
        ),
        (
            "transfer to zero",
            holder(1),
            Command::Transfer { product: "eth2x".into(), to: Address::ZERO, quantity: q("1") },
            None,
            10,
            400,
            "zero address",
        ),
        ("stale price blocks minting", holder(1), mint("eth2x", "1"), None, 4_000, 422, "minting is paused"),
        ("stale price blocks redeeming", holder(1), redeem("eth2x", "1"), None, 4_000, 422, "redeeming is paused"),
        ("stale price blocks rebalancing", keeper(), call("eth2x", Call::Rebalance), None, 4_000, 422, "stale"),
        ("not liquidatable", holder(1), Command::Liquidate { product: "eth2x".into() }, None, 10, 422, "not below 1"),
        (
            "idempotency key with another body",
            holder(1),
            mint("eth2x", "2"),
            Some(("k1", "other")),
            10,
            409,
            "different request",
        ),
    ];
    for (name, a, c, idem, dt, status, msg) in cases {
        let mut e = base.clone();
        let mut records = HashMap::new();
        // a first use of the key, with a different request hash
        if let Some((k, _)) = idem {
            let r = Request {
                actor: a.clone(),
                idempotency: Some(Idempotency { scope: format!("{}:{k}", a.key_id), request_hash: "first".into() }),
                command: mint("eth2x", "1"),
            };
            e.apply_tracked(&r, T0 + dt, &mut records).unwrap();
        }
        let before = state(&e);
        let r = Request {
            actor: a.clone(),
            idempotency: idem.map(|(k, h)| Idempotency { scope: format!("{}:{k}", a.key_id), request_hash: h.into() }),
            command: c,
        };
        let got = e.apply_tracked(&r, T0 + dt, &mut records);
        let err = got.expect_err(name);
        assert_eq!(err.status(), status, "{name}: {err}");
        assert!(err.to_string().contains(msg), "{name}: {err}");
        assert_eq!(state(&e), before, "{name}: state changed");
    }
}

#[test]
fn idempotent_retry_returns_the_first_result_and_does_nothing_twice() {
    let (mut e, _) = running();
    let a = holder(1);
    let r = Request {
        actor: a.clone(),
        idempotency: Some(Idempotency { scope: format!("{}:abc", a.key_id), request_hash: "h".into() }),
        command: mint("eth2x", "1"),
    };
    let mut records = HashMap::new();
    let first = match e.apply_tracked(&r, T0 + 20, &mut records).unwrap() {
        Outcome::Applied(ev) => *ev,
        _ => panic!(),
    };
    let supply = e.products["eth2x"].token.lending().unwrap().ledger.total_supply();
    let before = state(&e);
    match e.apply_tracked(&r, T0 + 30, &mut records).unwrap() {
        Outcome::Replayed { status, seq } => {
            assert_eq!((status, seq), (first.status, first.seq));
        }
        _ => panic!("not replayed"),
    }
    assert_eq!(state(&e), before);
    assert_eq!(e.products["eth2x"].token.lending().unwrap().ledger.total_supply(), supply);
}

#[test]
fn idempotency_keys_expire_after_the_logged_ttl_and_replays_agree() {
    let (mut e, mut log) = running();
    log.push(apply(&mut e, Actor::system("config"), Command::SetIdempotencyTtl { seconds: 100 }, T0 + 10).unwrap());
    let a = holder(1);
    let keyed = |t: &str| Request {
        actor: a.clone(),
        idempotency: Some(Idempotency { scope: format!("{}:k", a.key_id), request_hash: t.into() }),
        command: mint("eth2x", "1"),
    };
    let mut rec = HashMap::new();
    let first = match e.apply_tracked(&keyed("h"), T0 + 20, &mut rec).unwrap() {
        Outcome::Applied(ev) => *ev,
        _ => panic!(),
    };
    log.push(first.clone());
    assert!(
        matches!(e.apply_tracked(&keyed("h"), T0 + 120, &mut rec).unwrap(), Outcome::Replayed { .. }),
        "within the TTL"
    );
    // after it: a new request, logged under its own scope so the unique index holds
    let again = match e.apply_tracked(&keyed("h"), T0 + 121, &mut rec).unwrap() {
        Outcome::Applied(ev) => *ev,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.request.idempotency.as_ref().unwrap().scope, format!("{}:k@{}", a.key_id, again.seq));
    log.push(again.clone());
    assert!(
        matches!(e.apply_tracked(&keyed("h"), T0 + 122, &mut rec).unwrap(), Outcome::Replayed { seq, .. } if seq == again.seq)
    );
    // a different body under an expired key is a new request too
    let mut fresh = Engine::new();
    for ev in &log {
        fresh.replay(ev).unwrap();
    }
    assert_eq!(state(&fresh), state(&e), "the log replays to the same state, TTL included");
    assert_eq!(e.products["eth2x"].token.lending().unwrap().ledger.balance_of(a.address), q("12"));
}

#[test]
fn the_log_replays_to_the_same_state_and_snapshots_round_trip() {
    let (mut e, mut log) = running();
    let mut t = T0 + 3;
    // a month of hourly prices, the keeper acting when told, holders coming and going
    let mut p = 2000.0f64;
    for h in 0..24 * 30u64 {
        t += 3600;
        p *= 1.0 + 0.012 * ((h as f64 * 0.7).sin() + 0.3 * (h as f64 * 0.13).cos());
        let ps = format!("{p:.2}");
        log.push(apply(&mut e, oracle(), price("eth2x", "WETH", &ps), t).unwrap());
        if h % 24 == 0 {
            log.push(apply(&mut e, oracle(), price("eth2x", "USDC", "1"), t).unwrap());
        }
        let v = keel_server::view::product_view(&e.products["eth2x"], e.seq, t);
        for (_, action) in v.should_rebalance {
            let c = match action.as_str() {
                "rebalance" => Call::Rebalance,
                "iterate" => Call::Iterate,
                "ripcord" => Call::Ripcord,
                _ => continue,
            };
            if let Ok(ev) = apply(&mut e, keeper(), call("eth2x", c), t) {
                log.push(ev);
            }
        }
        if h % 50 == 7 {
            log.push(apply(&mut e, holder(3), mint("eth2x", "2"), t).unwrap());
        }
        if h % 50 == 30 {
            log.push(apply(&mut e, holder(3), redeem("eth2x", "1"), t).unwrap());
        }
    }
    let kinds: std::collections::BTreeSet<&str> = log.iter().map(|e| e.request.command.kind()).collect();
    assert!(kinds.contains("rebalance") || kinds.contains("iterate"), "the keeper acted: {kinds:?}");
    let mut fresh = Engine::new();
    for ev in &log {
        fresh.replay(ev).unwrap();
    }
    assert_eq!(state(&fresh), state(&e), "replay reproduces the state");
    let snap: Engine = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(snap, e, "snapshot round-trips");
    // a tampered result is caught on replay
    let mut bad = log.clone();
    let i = bad.iter().position(|ev| ev.request.command.kind() == "mint").unwrap();
    bad[i].result["balance"] = serde_json::json!("999");
    let mut fresh = Engine::new();
    let err = bad.iter().try_for_each(|ev| fresh.replay(ev)).unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
}

#[derive(Debug, Clone)]
enum Op {
    Mint(u8, u32),
    Redeem(u8, u32),
    Transfer(u8, u8, u32),
    Price(u32),
    Wait(u32),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1u32..5_000).prop_map(|(h, m)| Op::Mint(h, m)),
        (0u8..3, 1u32..5_000).prop_map(|(h, m)| Op::Redeem(h, m)),
        (0u8..3, 0u8..3, 1u32..5_000).prop_map(|(a, b, m)| Op::Transfer(a, b, m)),
        (1_500u32..2_500).prop_map(Op::Price),
        (1u32..4_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Supply equals the sum of balances after every operation; a refused operation leaves
    /// the state byte-identical; minting then redeeming at once never returns more USD than
    /// was paid.
    #[test]
    fn holder_operations_keep_the_invariants(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let (mut e, _) = running();
        let mut t = T0 + 10;
        for o in ops {
            let (a, c) = match o {
                Op::Mint(h, m) => (holder(h), mint("eth2x", &format!("{}", m as f64 / 1000.0))),
                Op::Redeem(h, m) => (holder(h), redeem("eth2x", &format!("{}", m as f64 / 1000.0))),
                Op::Transfer(a, b, m) => (holder(a), Command::Transfer { product: "eth2x".into(), to: holder(b).address, quantity: q(&format!("{}", m as f64 / 1000.0)) }),
                Op::Price(p) => (oracle(), price("eth2x", "WETH", &p.to_string())),
                Op::Wait(s) => { t += s as u64; (oracle(), price("eth2x", "USDC", "1")) }
            };
            let before = state(&e);
            match e.apply(&req(a, c), t, None) {
                Ok(_) => {}
                Err(_) => prop_assert_eq!(state(&e), before),
            }
            let l = &e.products["eth2x"].token.lending().unwrap().ledger;
            prop_assert!(l.supply_matches_balances());
        }
        // round trip: mint then redeem the same quantity right away
        let h = holder(7);
        if let Ok(ev) = apply(&mut e, h.clone(), mint("eth2x", "1"), t) {
            let paid: f64 = ev.result["net_paid_usd"].as_str().unwrap().parse().unwrap();
            let out = apply(&mut e, h, redeem("eth2x", "1"), t).unwrap();
            let got: f64 = out.result["net_received_usd"].as_str().unwrap().parse().unwrap();
            prop_assert!(got <= paid, "paid {} got {}", paid, got);
        }
    }
}

#[test]
fn operators_are_equal_and_act_as_the_product_operator() {
    // issue #11 item 8: the README says the operator role manages products; a second
    // operator key was refused everything but creating its own products
    let (mut e, _) = running();
    let other = actor(Role::Operator, 98);
    let patch = Command::UpdateSettings {
        product: "eth2x".into(),
        patch: "[token]\nmint_fee = \"0.2%\"\nsymbol = \"ETH2X\"".into(),
    };
    let ev = apply(&mut e, other.clone(), patch, T0 + 10).unwrap();
    assert_eq!(ev.result["changed"], serde_json::json!(["token", "token.symbol"]), "{}", ev.result);
    assert_eq!(e.products["eth2x"].token.lending().unwrap().ledger.config.symbol, "ETH2X");
    let callers = Command::SetCallers {
        product: "eth2x".into(),
        callers: vec![Address::with_last_byte(77)],
        allowed: vec![true],
    };
    apply(&mut e, other.clone(), callers, T0 + 11).unwrap();
    apply(&mut e, other.clone(), Command::SetAnyoneCallable { product: "eth2x".into(), value: true }, T0 + 12).unwrap();
    // the fee recipient stays the product's operator account, whoever changed the settings
    assert_eq!(e.products["eth2x"].token.lending().unwrap().ledger.config.fee_recipient, op().address);
    // a settings patch that changes only the symbol is a change
    let only = Command::UpdateSettings { product: "eth2x".into(), patch: "[token]\nname = \"Renamed\"".into() };
    let ev = apply(&mut e, op(), only, T0 + 13).unwrap();
    assert_eq!(ev.result["changed"], serde_json::json!(["token.name"]));
}

const ETH3L: &str = include_str!("../../../products/eth-3x-threshold.toml");
const BEAR: &str = include_str!("../../../products/eth-minus2x-bear.toml");

fn view(e: &Engine, id: &str, now: u64) -> serde_json::Value {
    serde_json::to_value(keel_server::view::product_view(&e.products[id], e.seq, now)).unwrap()
}

#[test]
fn table_synthetix_style_products_run_in_the_service() {
    // (case, product file, kind, a price move that makes the methodology act)
    for (case, toml, kind, moved) in
        [("threshold 3x", ETH3L, "threshold", "1900"), ("the Bear", BEAR, "continuous", "2300")]
    {
        let mut e = Engine::new();
        let mut log = Vec::new();
        let create = Command::CreateProduct {
            id: "p".into(),
            toml: toml.into(),
            allowed_callers: vec![],
            anyone_callable: false,
        };
        let ev = apply(&mut e, op(), create, T0).unwrap();
        assert_eq!(ev.result["kind"], kind, "case {case}");
        log.push(ev);
        // the first mint opens the position with a delayed order; the venue's keeper fills it
        // at the first price observed once it is executable
        log.push(apply(&mut e, holder(1), mint("p", "10000"), T0 + 1).unwrap());
        let v = view(&e, "p", T0 + 1);
        assert!(v["blocked"].as_str().unwrap_or("").contains("pending"), "case {case}: {v}");
        assert!(apply(&mut e, holder(2), mint("p", "1"), T0 + 1).is_err(), "case {case}: mint waits for the order");
        let filled = apply(&mut e, oracle(), price("p", "ETH", "2000"), T0 + 5).unwrap();
        assert!(
            filled.result["venue"][0].as_str().unwrap_or("").starts_with("filled"),
            "case {case}: {}",
            filled.result
        );
        log.push(filled);
        let v = view(&e, "p", T0 + 5);
        assert_eq!(v["kind"], kind, "case {case}");
        assert!(v["blocked"].is_null(), "case {case}: {v}");
        let lev: f64 = v["leverage_ratio"].as_str().unwrap().parse().unwrap();
        let target: f64 = v["band"]["target"].as_str().unwrap().parse().unwrap();
        assert!((lev - target).abs() < 0.1, "case {case}: leverage {lev} vs target {target}");
        assert!(v["risk"]["margin_ratio"].is_string() && v["risk"]["to_liquidation"].is_string(), "case {case}: {v}");
        // holders: a second mint, a transfer, a redeem beyond the balance is refused
        log.push(apply(&mut e, holder(2), mint("p", "500"), T0 + 10).unwrap());
        log.push(apply(&mut e, oracle(), price("p", "ETH", "2000"), T0 + 12).unwrap());
        let to = holder(3).address;
        log.push(
            apply(&mut e, holder(2), Command::Transfer { product: "p".into(), to, quantity: q("100") }, T0 + 13)
                .unwrap(),
        );
        assert!(apply(&mut e, holder(3), redeem("p", "101"), T0 + 14).is_err(), "case {case}");
        // the keeper's call is refused until the methodology wants it, then sends the order
        let nothing = apply(&mut e, keeper(), call("p", Call::Rebalance), T0 + 20);
        assert!(nothing.is_err(), "case {case}: nothing is due yet");
        log.push(apply(&mut e, oracle(), price("p", "ETH", moved), T0 + 600).unwrap());
        let v = view(&e, "p", T0 + 600);
        assert_eq!(v["should_rebalance"]["venue"], "rebalance", "case {case}: {v}");
        log.push(apply(&mut e, keeper(), call("p", Call::Rebalance), T0 + 601).unwrap());
        log.push(apply(&mut e, oracle(), price("p", "ETH", moved), T0 + 605).unwrap());
        let v = view(&e, "p", T0 + 605);
        assert_eq!(v["should_rebalance"]["venue"], "none", "case {case}: back at target: {v}");
        // funding is the account's own cost line: the token is the whole skew here, so it pays
        // on either side (funding flows against the skew)
        let paid: f64 = v["funding_paid_usd"].as_str().expect("funding paid").parse().unwrap();
        assert!(paid > 0.0, "case {case}: funding {paid}");
        log.push(apply(&mut e, holder(3), redeem("p", "50"), T0 + 700).unwrap());
        // lending-only commands say so
        let engage = apply(&mut e, op(), call("p", Call::Engage), T0 + 701).unwrap_err();
        assert!(engage.to_string().contains("first issue"), "case {case}: {engage}");
        let callers = Command::SetAnyoneCallable { product: "p".into(), value: true };
        assert!(apply(&mut e, op(), callers, T0 + 701).unwrap_err().to_string().contains("lending FLI"), "case {case}");
        // a settings patch
        let patch = Command::UpdateSettings { product: "p".into(), patch: "[token]\nsymbol = \"NEW\"\n".into() };
        log.push(apply(&mut e, op(), patch, T0 + 702).unwrap());
        assert_eq!(view(&e, "p", T0 + 702)["symbol"], "NEW", "case {case}");
        // a snapshot loads back, and the log replays, to the same state
        assert_snapshot_and_replay(&e, &log, case);
    }
}

#[test]
fn a_perp_v2_product_runs_in_the_service() {
    let mut e = Engine::new();
    let mut log = Vec::new();
    let create = Command::CreateProduct {
        id: "perp".into(),
        toml: include_str!("../../../products/eth2x-perp.toml").into(),
        allowed_callers: vec![],
        anyone_callable: false,
    };
    let ev = apply(&mut e, op(), create, T0).unwrap();
    assert_eq!(ev.result["kind"], "perp-fli");
    log.push(ev);
    // the first issue is at 100 USD a token with the 0.1% mint fee on top, as
    // `DebtIssuanceModuleV2` takes it: $100 000 buys 1000 / 1.001 tokens
    let ev = apply(&mut e, holder(1), mint("perp", "1000"), T0 + 1).unwrap();
    assert_eq!(ev.result["paid_usd"], "100000", "{}", ev.result);
    assert_eq!(ev.result["quantity"], "999.000999000999000999", "{}", ev.result);
    log.push(ev);
    assert!(apply(&mut e, keeper(), call("perp", Call::Engage), T0 + 2).is_err(), "only the operator engages");
    log.push(apply(&mut e, op(), call("perp", Call::Engage), T0 + 2).unwrap());
    // the engage TWAP completes through the keeper's iterations
    let mut t = T0 + 2;
    loop {
        t += 60;
        log.push(apply(&mut e, oracle(), price("perp", "ETH", "2000"), t).unwrap());
        let v = view(&e, "perp", t);
        let due = v["should_rebalance"].as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
        if due == "none" {
            break;
        }
        assert_eq!(due, "iterate", "{v}");
        log.push(apply(&mut e, keeper(), call("perp", Call::Iterate), t + 1).unwrap());
        assert!(t < T0 + 3_600, "the TWAP ends");
    }
    let v = view(&e, "perp", t);
    let lev: f64 = v["leverage_ratio"].as_str().unwrap().parse().unwrap();
    assert!((lev - 2.0).abs() < 0.05, "engaged at the target: {v}");
    assert_eq!(v["supply_equals_balances"], true, "{v}");
    // the vAMM is moved to each posted index: no premium, no funding (and the line is there)
    assert_eq!(v["funding_paid_usd"], "0", "{v}");
    // a fall takes leverage out of the band: the keeper rebalances
    log.push(apply(&mut e, oracle(), price("perp", "ETH", "1700"), t + 100).unwrap());
    let v = view(&e, "perp", t + 100);
    assert_eq!(v["should_rebalance"]["venue"], "rebalance", "{v}");
    log.push(apply(&mut e, keeper(), call("perp", Call::Rebalance), t + 101).unwrap());
    // holders: transfer, redeem (the redeem fee stays as tokens to the fee recipient)
    let to = holder(2).address;
    log.push(
        apply(&mut e, holder(1), Command::Transfer { product: "perp".into(), to, quantity: q("100") }, t + 200)
            .unwrap(),
    );
    let r = apply(&mut e, holder(2), redeem("perp", "100"), t + 201).unwrap();
    assert_eq!(r.result["balance"], "0", "{}", r.result);
    log.push(r);
    assert_eq!(view(&e, "perp", t + 201)["supply_equals_balances"], true);
    // a settings patch
    let patch = Command::UpdateSettings {
        product: "perp".into(),
        patch: "[methodology]\nmax_leverage_ratio = \"2.4\"\n".into(),
    };
    log.push(apply(&mut e, op(), patch, t + 300).unwrap());
    assert_eq!(view(&e, "perp", t + 300)["band"]["max"], "2.4");
    // a snapshot of the state loads back to the same state (the stored token of any kind)
    assert_snapshot_and_replay(&e, &log, "");
}

const ETH2X_COMPOUND: &str = include_str!("../../../products/eth2x-fli-compound.toml");

#[test]
fn a_compound_product_runs_in_the_service() {
    let (mut e, mut log) = running_product("c", ETH2X_COMPOUND);
    let v = view(&e, "c", T0 + 3);
    assert_eq!(v["lending_account"]["protocol"], "compound-v2", "{v}");
    let hf: f64 = v["lending_account"]["health_factor"].as_str().unwrap().parse().unwrap();
    assert!(hf > 1.0, "{v}");
    // the engage TWAP completes through the keeper
    let mut now = T0 + 3;
    for _ in 0..10 {
        now += 31;
        log.push(apply(&mut e, oracle(), price("c", "WETH", "2000"), now).unwrap());
        if view(&e, "c", now)["should_rebalance"]["uniswap-v3"] != "iterate" {
            break;
        }
        log.push(apply(&mut e, keeper(), call("c", Call::Iterate), now).unwrap());
    }
    let lev: f64 = view(&e, "c", now)["leverage_ratio"].as_str().unwrap().parse().unwrap();
    assert!((lev - 2.0).abs() < 0.02, "engaged at {lev}");
    // a drop past the band: the keeper rebalances
    now += 86_401;
    log.push(apply(&mut e, oracle(), price("c", "WETH", "1700"), now).unwrap());
    assert_eq!(view(&e, "c", now)["should_rebalance"]["uniswap-v3"], "rebalance");
    log.push(apply(&mut e, keeper(), call("c", Call::Rebalance), now + 1).unwrap());
    // a healthy Compound account cannot be liquidated; settings of the running market are fixed
    let liq = apply(&mut e, keeper(), Command::Liquidate { product: "c".into() }, now + 2).unwrap_err();
    assert!(liq.to_string().contains("not below 1"), "{liq}");
    let patch = Command::UpdateSettings { product: "c".into(), patch: "[lending]\ncollateral_factor = \"80%\"".into() };
    assert!(apply(&mut e, op(), patch, now + 2).is_err());
    log.push(apply(&mut e, holder(1), redeem("c", "4"), now + 3).unwrap());
    // a snapshot loads back, and the log replays, to the same state
    assert_snapshot_and_replay(&e, &log, "");
}
