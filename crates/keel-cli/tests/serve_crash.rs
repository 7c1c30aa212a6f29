//! Crash test: `keel serve` under concurrent mints and redeems is killed with SIGKILL; after a
//! restart every acknowledged request is in the state, none twice, and supply equals the sum
//! of balances. On SQLite and on PostgreSQL.

mod common;

use common::{OP, agent, call, get, spawn};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");

fn all_events(a: &ureq::Agent, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = get(a, &format!("{base}/events?after={after}&limit=1000"));
        let evs = page["events"].as_array().unwrap().clone();
        if evs.is_empty() {
            return out;
        }
        after = evs.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(evs);
    }
}

/// What a client sent: (idempotency key, kind, quantity in milli-units of the product's lot).
#[derive(Clone, Debug)]
struct Sent {
    idem: String,
    kind: &'static str,
    milli: u64,
}

/// A product under the crash test: its file and the tokens in one lot (mints are 0.01–0.1 lot).
struct Case {
    id: &'static str,
    toml: &'static str,
    lot: f64,
    /// The venue fills delayed orders on price observations: an oracle posts every 100 ms, and
    /// holders retry a mint or redeem refused while an order is pending.
    oracle: Option<&'static str>,
    /// Acknowledged requests before the kill (a perp-venue token takes one order a second: its
    /// mints and redeems wait for the pending order).
    min_acked: usize,
}

/// A decimal token amount as wad units.
fn wad(s: &str) -> i128 {
    let w = keel_core::Wad::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    i128::try_from(w.0).unwrap()
}

fn quantity(case: &Case, milli: u64) -> String {
    format!("{}", milli as f64 / 1000.0 * case.lot)
}

fn crash_and_recover(db: &str, case: &Case) {
    let srv = spawn(db, &["--snapshot-every", "100"]);
    let a = agent();
    let (s, v) = call(&a, &srv.base, "/products", OP, None, json!({ "id": case.id, "toml": case.toml })).unwrap();
    assert_eq!(s, 201, "{v}");
    let holders: Vec<(String, String)> = (0..8)
        .map(|_| {
            let (_, v) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "holder" })).unwrap();
            (v["key"].as_str().unwrap().to_string(), v["address"].as_str().unwrap().to_string())
        })
        .collect();
    let acked: Arc<Mutex<Vec<(usize, Sent)>>> = Arc::default();
    let in_flight: Arc<Mutex<Vec<(usize, Sent)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let oracle = case.oracle.map(|asset| {
        let (_, v) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "oracle" })).unwrap();
        let (key, base, dead) = (v["key"].as_str().unwrap().to_string(), srv.base.clone(), dead.clone());
        let path = format!("/products/{}/prices", case.id);
        std::thread::spawn(move || {
            let a = agent();
            while !dead.load(Ordering::SeqCst) {
                let _ = call(&a, &base, &path, &key, None, json!({ "asset": asset, "price": "2000" }));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let lot = case.lot;
    let threads: Vec<_> = holders
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            let (key, base, acked, in_flight, count, dead) =
                (key.clone(), srv.base.clone(), acked.clone(), in_flight.clone(), count.clone(), dead.clone());
            let id = case.id;
            std::thread::spawn(move || {
                let a = agent();
                let mut held = 0u64;
                for n in 0.. {
                    let redeem = held > 50 && n % 3 == 2;
                    let milli = if redeem { held / 2 } else { 10 + (n * 7 + i as u64 * 13) % 90 };
                    let sent = Sent { idem: format!("c{i}-{n}"), kind: if redeem { "redeem" } else { "mint" }, milli };
                    let path = format!("/products/{id}/{}", sent.kind);
                    let body = json!({ "quantity": format!("{}", milli as f64 / 1000.0 * lot) });
                    match call(&a, &base, &path, &key, Some(&sent.idem), body) {
                        Ok((200, v)) => {
                            let balance: f64 = v["balance"].as_str().unwrap().parse().unwrap();
                            held = (balance / lot * 1000.0).floor() as u64;
                            acked.lock().unwrap().push((i, sent));
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((422, v)) if lot > 1.0 => {
                            // a perp-venue token refuses while its order is pending (filled at
                            // the next price) or when the venue's margin rules say no: nothing
                            // is logged, the client carries on
                            let m = v["message"].as_str().unwrap_or("");
                            assert!(m.contains("Pending") || m.contains("margin"), "client {i}: {v}");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Ok((status, v)) => panic!("client {i}: unexpected {status} {v}"),
                        Err(_) => {
                            assert!(dead.load(Ordering::SeqCst), "client {i}: request failed before the kill");
                            in_flight.lock().unwrap().push((i, sent));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while count.load(Ordering::SeqCst) < case.min_acked && t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut child = srv.child;
    dead.store(true, Ordering::SeqCst);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    if let Some(t) = oracle {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let in_flight = in_flight.lock().unwrap().clone();
    assert!(acked.len() >= case.min_acked, "{}: only {} acknowledged", case.id, acked.len());

    let srv = spawn(db, &["--snapshot-every", "100"]);
    let events = all_events(&a, &srv.base);
    let mut seen: HashMap<String, usize> = HashMap::new();
    // what the log says each request did to its holder's balance, wad units
    let mut logged: HashMap<String, i128> = HashMap::new();
    let mut per_holder: BTreeMap<String, i128> = BTreeMap::new();
    for e in &events {
        let kind = e["kind"].as_str().unwrap();
        let delta = if kind == "mint" || kind == "redeem" {
            // exact: wad units (summing rounded floats drifts over many small fills)
            let m = wad(e["result"]["quantity"].as_str().unwrap());
            let d = if kind == "mint" { m } else { -m };
            *per_holder.entry(e["actor"]["address"].as_str().unwrap().to_string()).or_default() += d;
            d
        } else {
            0
        };
        if let Some(k) = e["idempotency_key"].as_str() {
            let k = k.split_once(':').unwrap().1.to_string();
            *seen.entry(k.clone()).or_default() += 1;
            logged.insert(k, delta);
        }
    }
    for (i, s) in &acked {
        assert_eq!(seen.get(&s.idem), Some(&1), "acknowledged {} by client {i} must be in the log once", s.idem);
    }
    assert!(seen.values().all(|n| *n == 1), "no request twice");
    for (i, (_, addr)) in holders.iter().enumerate() {
        let b = get(&a, &format!("{}/products/{}/balances/{addr}", srv.base, case.id));
        let bal = wad(b["balance"].as_str().unwrap());
        let want = per_holder.get(&addr.to_lowercase()).copied().unwrap_or(0);
        assert_eq!(bal, want, "holder {i}: balance equals its logged mints and redeems");
        let acked_net: i128 = acked.iter().filter(|(j, _)| *j == i).map(|(_, s)| logged[&s.idem]).sum();
        let maybe: i128 =
            in_flight.iter().filter(|(j, s)| *j == i && seen.contains_key(&s.idem)).map(|(_, s)| logged[&s.idem]).sum();
        assert_eq!(
            want,
            acked_net + maybe,
            "holder {i}: acknowledged requests (and only in-flight extras) are in the state"
        );
    }
    let view = get(&a, &format!("{}/products/{}", srv.base, case.id));
    assert_eq!(view["supply_equals_balances"], true, "supply equals the sum of balances");
    // a retry of the requests in flight at the kill does nothing twice
    for (i, s) in &in_flight {
        if !seen.contains_key(&s.idem) {
            continue; // never logged: a retry would be a new request
        }
        let path = format!("/products/{}/{}", case.id, s.kind);
        let (status, _) =
            call(&a, &srv.base, &path, &holders[*i].0, Some(&s.idem), json!({ "quantity": quantity(case, s.milli) }))
                .unwrap();
        assert_eq!(status, 200);
    }
    let events2 = all_events(&a, &srv.base);
    assert_eq!(events2.len(), events.len(), "retries of logged requests add nothing");
    srv.kill();
    eprintln!(
        "{db} ({}): {} acknowledged, {} in flight at SIGKILL, {} events after restart",
        case.id,
        acked.len(),
        in_flight.len(),
        events.len()
    );
}

const CASES: [Case; 3] = [
    Case { id: "p", toml: ETH2X, lot: 1.0, oracle: None, min_acked: 400 },
    Case {
        id: "p",
        toml: include_str!("../../../products/eth-3x-threshold.toml"),
        lot: 10000.0,
        oracle: Some("ETH"),
        min_acked: 25,
    },
    Case {
        id: "p",
        toml: include_str!("../../../products/eth-minus2x-bear.toml"),
        lot: 10000.0,
        oracle: Some("ETH"),
        min_acked: 25,
    },
];

/// Lending FLI, a threshold token and the Bear, each on a fresh SQLite database.
#[test]
fn sigkill_loses_no_acknowledged_request_sqlite() {
    for (n, case) in CASES.iter().enumerate() {
        crash_and_recover(&keel_server::testing::sqlite_url(&format!("crash{n}")), case);
    }
}

#[test]
fn sigkill_loses_no_acknowledged_request_postgres() {
    for (n, case) in CASES.iter().enumerate() {
        if let Some(url) = keel_server::testing::postgres_url(&format!("crash{n}")) {
            crash_and_recover(&url, case);
        }
    }
}

#[test]
fn sigterm_shuts_down_cleanly_and_a_restart_restores_the_state() {
    let db = keel_server::testing::sqlite_url("term");
    let srv = spawn(&db, &[]);
    let a = agent();
    assert_eq!(call(&a, &srv.base, "/products", OP, None, json!({ "id": "eth2x", "toml": ETH2X })).unwrap().0, 201);
    let (_, h) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "holder" })).unwrap();
    let (key, addr) = (h["key"].as_str().unwrap().to_string(), h["address"].as_str().unwrap().to_string());
    assert_eq!(
        call(&a, &srv.base, "/products/eth2x/mint", &key, Some("t-1"), json!({ "quantity": "3" })).unwrap().0,
        200
    );
    let mut child = srv.child;
    let st = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let srv = spawn(&db, &[]);
    let b = get(&a, &format!("{}/products/eth2x/balances/{addr}", srv.base));
    assert_eq!(b["balance"], "3");
    let (s, _) = call(&a, &srv.base, "/products/eth2x/mint", &key, Some("t-1"), json!({ "quantity": "3" })).unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        get(&a, &format!("{}/products/eth2x/balances/{addr}", srv.base))["balance"],
        "3",
        "the retry did nothing"
    );
    srv.kill();
}

/// Issue #11 (defects 6 and 10): a service whose database file is removed must not stay up
/// looking healthy: the next write is refused, `/health` fails and the process exits non-zero
/// so a supervisor restarts it — and the restart refuses to create an empty database.
#[test]
fn a_removed_database_makes_the_process_exit_non_zero() {
    let db = keel_server::testing::sqlite_url("removed");
    let srv = spawn(&db, &[]);
    let a = agent();
    assert_eq!(call(&a, &srv.base, "/products", OP, None, json!({ "id": "eth2x", "toml": ETH2X })).unwrap().0, 201);
    let path = db.strip_prefix("sqlite://").unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let (status, body) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "holder" })).unwrap();
    assert_eq!(status, 503, "{body}");
    let mut child = srv.child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the process is still up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!code.success(), "exit status {code:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--db", &db, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--init"), "{}", String::from_utf8_lossy(&out.stderr));
}
