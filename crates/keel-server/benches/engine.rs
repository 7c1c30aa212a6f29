//! The service's pure costs per request: applying a mint or a redeem to the engine, and
//! computing a product's view (what readers get). HTTP and the store's commit are measured by
//! the load test (README, `keel serve`), not here.

use criterion::{Criterion, criterion_group, criterion_main};
use keel_core::{Address, U256};
use keel_server::engine::Engine;
use keel_server::model::{Actor, Command, Request, Role};
use std::hint::black_box;

const T0: u64 = 1_700_000_000;

fn setup() -> Engine {
    let mut e = Engine::new();
    let op = Actor { key_id: "op".into(), role: Role::Operator, address: Address::with_last_byte(1) };
    let toml =
        include_str!("../../../products/eth2x-fli.toml").replace("supply_cap = \"5000\"", "supply_cap = \"100000000\"");
    let create = Command::CreateProduct { id: "eth2x".into(), toml, allowed_callers: vec![], anyone_callable: false };
    e.apply(&Request { actor: op.clone(), idempotency: None, command: create }, T0, None).unwrap();
    let h = holder(0);
    e.apply(
        &Request {
            actor: h,
            idempotency: None,
            command: Command::Mint { product: "eth2x".into(), quantity: U256::from(10u64).pow(U256::from(20u64)) },
        },
        T0,
        None,
    )
    .unwrap();
    let engage = Command::Call {
        product: "eth2x".into(),
        call: keel_server::model::Call::Engage,
        exchange: "uniswap-v3".into(),
    };
    e.apply(&Request { actor: op, idempotency: None, command: engage }, T0 + 1, None).unwrap();
    e
}

fn holder(i: u8) -> Actor {
    Actor { key_id: format!("h{i}"), role: Role::Holder, address: Address::with_last_byte(10 + i) }
}

fn bench(c: &mut Criterion) {
    let mut e = setup();
    let q = U256::from(10u64).pow(U256::from(15u64)); // 0.001 tokens
    let mut n = 0u64;
    c.bench_function("engine: mint then redeem 0.001 tokens", |b| {
        b.iter(|| {
            n += 1;
            let h = holder((n % 8) as u8);
            let m = Request {
                actor: h.clone(),
                idempotency: None,
                command: Command::Mint { product: "eth2x".into(), quantity: q },
            };
            black_box(e.apply(&m, T0 + 10, None).unwrap());
            let r = Request {
                actor: h,
                idempotency: None,
                command: Command::Redeem { product: "eth2x".into(), quantity: q },
            };
            black_box(e.apply(&r, T0 + 10, None).unwrap());
        })
    });
    let p = &e.products["eth2x"];
    c.bench_function("view: a product's state", |b| {
        b.iter(|| black_box(keel_server::view::product_view(p, 1, T0 + 10)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
