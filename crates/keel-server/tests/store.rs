//! The event log on SQLite and PostgreSQL: append, page, snapshot, load; a batch is one
//! transaction; the database itself refuses an idempotency key twice.

use keel_core::{Address, U256};
use keel_server::engine::{Engine, Outcome};
use keel_server::model::{Actor, Command, Idempotency, Request, Role, StoredEvent};
use keel_server::store::{self, OpenMode};
use keel_server::testing::backends;

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");
const T0: u64 = 1_700_000_000;

fn holder(b: u8) -> Actor {
    Actor { key_id: format!("h{b}"), role: Role::Holder, address: Address::with_last_byte(b) }
}

fn events(n: usize) -> (Engine, Vec<StoredEvent>) {
    let mut e = Engine::new();
    let mut out = Vec::new();
    let op = Actor { key_id: "op".into(), role: Role::Operator, address: Address::with_last_byte(1) };
    let mut push = |e: &mut Engine, r: Request, t: u64| match e.apply(&r, t, None).unwrap() {
        Outcome::Applied(ev) => out.push(*ev),
        _ => panic!(),
    };
    push(
        &mut e,
        Request {
            actor: op,
            idempotency: None,
            command: Command::CreateProduct {
                id: "eth2x".into(),
                toml: ETH2X.into(),
                allowed_callers: vec![],
                anyone_callable: false,
            },
        },
        T0,
    );
    for i in 0..n {
        let a = holder(10 + (i % 3) as u8);
        let r = Request {
            actor: a.clone(),
            idempotency: Some(Idempotency { scope: format!("{}:k{i}", a.key_id), request_hash: format!("h{i}") }),
            command: Command::Mint { product: "eth2x".into(), quantity: U256::from(10u64).pow(U256::from(17u64)) },
        };
        push(&mut e, r, T0 + i as u64);
    }
    (e, out)
}

#[test]
fn append_load_page_and_snapshot() {
    for url in backends("store") {
        let (engine, evs) = events(40);
        let mut s = store::open(&url, OpenMode::Create).unwrap();
        s.append(&evs[..10]).unwrap();
        s.append(&evs[10..25]).unwrap();
        // a snapshot at 25, then more events
        let mut at25 = Engine::new();
        for ev in &evs[..25] {
            at25.replay(ev).unwrap();
        }
        let chain = s.hash_at(25).unwrap().unwrap();
        s.save_snapshot(&at25, &chain).unwrap();
        s.append(&evs[25..]).unwrap();
        drop(s);
        let mut s = store::open(&url, OpenMode::Existing).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.engine.seq, 25, "{url}");
        assert_eq!(loaded.tail, evs[25..].to_vec(), "{url}");
        let mut e = loaded.engine;
        for ev in &loaded.tail {
            e.replay(ev).unwrap();
        }
        assert_eq!(e, engine, "{url}: snapshot + tail = the state");
        // paging
        let page = s.events(None, 0, 7).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>(), "{url}");
        let page = s.events(Some("eth2x"), 38, 100).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![39, 40, 41], "{url}");
        assert!(s.events(Some("other"), 0, 100).unwrap().is_empty(), "{url}");
    }
}

#[test]
fn a_batch_is_all_or_nothing_and_an_idempotency_key_is_stored_once() {
    for url in backends("atomic") {
        let (_, evs) = events(5);
        let mut s = store::open(&url, OpenMode::Create).unwrap();
        s.append(&evs[..4]).unwrap();
        // event 5 is new; a copy of event 4 with another seq reuses its idempotency key
        let mut dup = evs[3].clone();
        dup.seq = 6;
        let err = s.append(&[evs[4].clone(), dup]).unwrap_err();
        assert!(!err.to_string().is_empty());
        let all = s.events(None, 0, 100).unwrap();
        assert_eq!(all.len(), 4, "{url}: nothing of the failed batch was kept");
        s.append(&evs[4..5]).unwrap();
        assert_eq!(s.events(None, 0, 100).unwrap().len(), 5, "{url}");
    }
}

#[test]
fn bad_urls_are_explained() {
    for (url, want) in [("mysql://x", "use sqlite://PATH or postgres://"), ("sqlite://", "needs a file path")] {
        let err = store::open(url, OpenMode::Create).err().expect(url).to_string();
        assert!(err.contains(want), "{url}: {err}");
    }
}
