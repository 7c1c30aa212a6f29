//! Randomized operation sequences against the service's engine, with the inputs an adversary
//! would pick: prices from 1e-12 to 1e15 USD, asset decimals 0–80, amounts from 1 wei to
//! 2^256−1, every command and role, time jumps. After every operation the views of every
//! product are computed (as the writer does before it commits); nothing may panic. At the end
//! the accepted events replay into a fresh engine to the same state, and through a snapshot.
//!
//! `KEEL_RANDOM_CASES=N` runs N sequences (CI runs the default; a longer run is
//! `KEEL_RANDOM_CASES=20000 cargo test -p keel-server --release --test engine_random`).

use keel_core::{Address, U256};
use keel_server::engine::{Engine, Outcome};
use keel_server::model::{Actor, Call, Command, Idempotency, KeyRecord, Request, Role, StoredEvent};
use proptest::prelude::*;
use std::collections::HashMap;

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");
const T0: u64 = 1_700_000_000;

fn actor(role: Role, byte: u8) -> Actor {
    Actor { key_id: format!("{}-{byte}", role.name()), role, address: Address::with_last_byte(byte) }
}

/// A price as a wad: `mantissa · 10^exp` USD, exp from −30 to 15 (so 1e-12 … 1e15 and finer
/// than 8 decimals, which must be refused, not misread).
fn price_strategy() -> impl Strategy<Value = U256> {
    (1u64..10_000, 0u32..46).prop_map(|(m, e)| {
        // wad = m · 10^(e − 30 + 18 − 4): m has 4 digits after the point
        let scale = e as i64 - 16;
        let m = U256::from(m);
        if scale >= 0 {
            m * U256::from(10u64).pow(U256::from(scale as u64))
        } else {
            m / U256::from(10u64).pow(U256::from((-scale) as u64)).max(U256::from(1u64))
        }
    })
}

/// Token amounts from 1 wei to 2^256 − 1, mostly of a size a holder would use.
fn amount_strategy() -> impl Strategy<Value = U256> {
    prop_oneof![
        1 => Just(U256::from(1u64)),
        1 => Just(U256::MAX),
        2 => (0u32..256).prop_map(|b| U256::from(1u64) << b as usize),
        8 => (1u64..100_000).prop_map(|m| U256::from(m) * U256::from(10u64).pow(U256::from(15u64))),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Create { id: u8, cdec: u8, bdec: u8, cprice: String, icpt: String },
    Price { id: u8, collateral: bool, price: U256 },
    Move { id: u8, permille: u32 },
    Mint { id: u8, holder: u8, q: U256 },
    Redeem { id: u8, holder: u8, q: U256 },
    Transfer { id: u8, from: u8, to: u8, q: U256 },
    Call { id: u8, call: u8 },
    Liquidate { id: u8 },
    Settings { id: u8, patch: u8 },
    Key { label_len: usize },
    Ttl { secs: u64 },
    Wait { secs: u64 },
    Retry { idx: usize },
}

const PATCHES: &[&str] = &[
    "[methodology]\nrecentering_speed = \"6%\"",
    "[token]\nsymbol = \"X\"",
    "[token]\nmint_fee = \"99.99%\"",
    "[execution]\ntwap_cooldown_period = \"0s\"",
    "[incentive]\nincentivized_leverage_ratio = \"1.1\"",
    "[exchanges.uniswap-v3]\ntwap_max_trade_size = \"0.000000000000000001\"",
    "[exchanges.sushi]\ntwap_max_trade_size = \"5\"\nincentivized_twap_max_trade_size = \"10\"",
    "[collateral]\nprice = \"1\"",
    "[token]\nname = \"\"",
];

fn op_strategy() -> impl Strategy<Value = Op> {
    let prices = prop_oneof![
        Just("0.00000001".to_string()),
        Just("1000000000000".to_string()),
        Just("2000".to_string()),
        Just("0.000000001".to_string()),
        Just("1e15".to_string()),
        (1u64..10_000_000).prop_map(|p| format!("{}", p as f64 / 1000.0)),
    ];
    let icpt = prop_oneof![Just("0.5".to_string()), Just("0.000001".to_string()), Just("1000000".to_string())];
    prop_oneof![
        1 => (0u8..2, 0u8..81, 0u8..81, prices, icpt).prop_map(|(id, cdec, bdec, cprice, icpt)| Op::Create { id, cdec, bdec, cprice, icpt }),
        3 => (0u8..2, any::<bool>(), price_strategy()).prop_map(|(id, collateral, price)| Op::Price { id, collateral, price }),
        8 => (0u8..2, 500u32..2_000).prop_map(|(id, permille)| Op::Move { id, permille }),
        5 => (0u8..2, 0u8..3, amount_strategy()).prop_map(|(id, holder, q)| Op::Mint { id, holder, q }),
        4 => (0u8..2, 0u8..3, amount_strategy()).prop_map(|(id, holder, q)| Op::Redeem { id, holder, q }),
        2 => (0u8..2, 0u8..3, 0u8..4, amount_strategy()).prop_map(|(id, from, to, q)| Op::Transfer { id, from, to, q }),
        5 => (0u8..2, 0u8..5).prop_map(|(id, call)| Op::Call { id, call }),
        1 => (0u8..2).prop_map(|id| Op::Liquidate { id }),
        2 => (0u8..2, 0u8..PATCHES.len() as u8).prop_map(|(id, patch)| Op::Settings { id, patch }),
        1 => prop_oneof![Just(0usize), Just(10), Just(201), Just(1_500_000)].prop_map(|label_len| Op::Key { label_len }),
        1 => (0u64..100_000).prop_map(|secs| Op::Ttl { secs }),
        4 => prop_oneof![8 => 1u64..120, 2 => 120u64..7_200, 1 => 7_200u64..(40 * 86_400)].prop_map(|secs| Op::Wait { secs }),
        2 => (0usize..64).prop_map(|idx| Op::Retry { idx }),
    ]
}

fn product_toml(cdec: u8, bdec: u8, cprice: &str, icpt: &str) -> String {
    ETH2X
        .replace("decimals = 18", &format!("decimals = {cdec}"))
        .replace("decimals = 6", &format!("decimals = {bdec}"))
        .replace("price = \"2000\"", &format!("price = \"{cprice}\""))
        .replace("initial_collateral_per_token = \"0.5\"", &format!("initial_collateral_per_token = \"{icpt}\""))
}

fn command(op: &Op, e: &Engine) -> Option<(Actor, Command)> {
    let pid = |id: u8| format!("p{id}");
    let op_actor = actor(Role::Operator, 1);
    let keeper = actor(Role::Keeper, 2);
    Some(match op {
        Op::Create { id, cdec, bdec, cprice, icpt } => (
            op_actor,
            Command::CreateProduct {
                id: pid(*id),
                toml: product_toml(*cdec, *bdec, cprice, icpt),
                allowed_callers: vec![keeper.address],
                anyone_callable: false,
            },
        ),
        Op::Price { id, collateral, price } => {
            let t = e.products.get(&pid(*id))?.token.lending()?;
            let asset = t.market.symbol(if *collateral { t.collateral } else { t.borrow }).to_string();
            (actor(Role::Oracle, 3), Command::ObservePrice { product: pid(*id), asset, price: *price })
        }
        Op::Move { id, permille } => {
            // the collateral moves by permille/1000 from its last price (8 decimals, as oracles)
            let p = e.products.get(&pid(*id))?;
            let t = p.token.lending()?;
            let sym = t.market.symbol(t.collateral).to_string();
            let last = p.prices.get(&sym)?.0;
            let unit = U256::from(10_000_000_000u64);
            let price = (last * U256::from(*permille) / U256::from(1000u64)) / unit * unit;
            (actor(Role::Oracle, 3), Command::ObservePrice { product: pid(*id), asset: sym, price })
        }
        Op::Mint { id, holder, q } => {
            (actor(Role::Holder, 10 + holder), Command::Mint { product: pid(*id), quantity: *q })
        }
        Op::Redeem { id, holder, q } => {
            (actor(Role::Holder, 10 + holder), Command::Redeem { product: pid(*id), quantity: *q })
        }
        Op::Transfer { id, from, to, q } => (
            actor(Role::Holder, 10 + from),
            Command::Transfer { product: pid(*id), to: Address::with_last_byte(10 + to), quantity: *q },
        ),
        Op::Call { id, call } => {
            let c = [Call::Engage, Call::Rebalance, Call::Iterate, Call::Ripcord, Call::Disengage][*call as usize];
            let a = if matches!(c, Call::Engage | Call::Disengage) { op_actor } else { keeper };
            (a, Command::Call { product: pid(*id), call: c, exchange: "uniswap-v3".into() })
        }
        Op::Liquidate { id } => (actor(Role::Public, 4), Command::Liquidate { product: pid(*id) }),
        Op::Settings { id, patch } => {
            (op_actor, Command::UpdateSettings { product: pid(*id), patch: PATCHES[*patch as usize].into() })
        }
        Op::Key { label_len } => (
            op_actor,
            Command::CreateKey {
                key: KeyRecord {
                    hash: format!("{:064x}", e.seq + 1),
                    role: Role::Holder,
                    address: Address::with_last_byte(50),
                    label: "l".repeat(*label_len),
                },
            },
        ),
        Op::Ttl { secs } => (op_actor, Command::SetIdempotencyTtl { seconds: *secs }),
        Op::Wait { .. } | Op::Retry { .. } => return None,
    })
}

fn cases() -> u32 {
    std::env::var("KEEL_RANDOM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_never_panic_and_always_replay(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let mut e = Engine::new();
        let mut log: Vec<StoredEvent> = Vec::new();
        let mut records = HashMap::new();
        let mut sent: Vec<Request> = Vec::new();
        let mut t = T0;
        let mut ops = ops;
        // every sequence starts with a product at the file's own settings, minted and engaged
        let ten = U256::from(10u64).pow(U256::from(19u64));
        for (k, op) in [
            Op::Create { id: 0, cdec: 18, bdec: 6, cprice: "2000".into(), icpt: "0.5".into() },
            Op::Mint { id: 0, holder: 0, q: ten },
            Op::Call { id: 0, call: 0 },
        ].into_iter().enumerate() {
            ops.insert(k, op);
        }
        for (i, op) in ops.iter().enumerate() {
            let req = match op {
                Op::Wait { secs } => { t += secs; continue; }
                Op::Retry { idx } => match sent.get(idx % sent.len().max(1)) { Some(r) => r.clone(), None => continue },
                _ => match command(op, &e) {
                    Some((a, c)) => {
                        let idem = (i % 3 == 0).then(|| Idempotency { scope: format!("{}:k{i}", a.key_id), request_hash: format!("h{i}") });
                        Request { actor: a, idempotency: idem, command: c }
                    }
                    None => continue,
                },
            };
            let before = serde_json::to_string(&e).unwrap();
            match e.apply_tracked(&req, t, &mut records) {
                Ok(Outcome::Applied(ev)) => log.push(*ev),
                Ok(Outcome::Replayed { .. }) => prop_assert_eq!(&serde_json::to_string(&e).unwrap(), &before, "a replay changed the state"),
                Err(err) => {
                    prop_assert!(!err.to_string().is_empty());
                    prop_assert_eq!(&serde_json::to_string(&e).unwrap(), &before, "a refusal changed the state: {}", err);
                }
            }
            if req.idempotency.is_some() { sent.push(req); }
            // what the writer computes before it commits
            for p in e.products.values() {
                let v = keel_server::view::product_view(p, e.seq, t);
                prop_assert!(serde_json::to_string(&v).is_ok());
                prop_assert!(p.token.lending().unwrap().ledger.supply_matches_balances());
            }
        }
        if std::env::var("KEEL_RANDOM_STATS").is_ok() {
            let kinds: Vec<&str> = log.iter().map(|e| e.request.command.kind()).collect();
            eprintln!("accepted {} of {}: {:?}", log.len(), ops.len(), kinds);
        }
        let mut fresh = Engine::new();
        for ev in &log {
            fresh.replay(ev).map_err(|x| TestCaseError::fail(format!("replay: {x}")))?;
        }
        prop_assert_eq!(serde_json::to_string(&fresh).unwrap(), serde_json::to_string(&e).unwrap());
        let snap: Engine = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        prop_assert_eq!(snap, e);
    }
}
