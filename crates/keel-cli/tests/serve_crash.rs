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

/// What a client sent: (idempotency key, holder key id, kind, quantity in milli-tokens).
#[derive(Clone, Debug)]
struct Sent {
    idem: String,
    kind: &'static str,
    milli: u64,
}

fn crash_and_recover(db: &str) {
    let srv = spawn(db, &["--snapshot-every", "100"]);
    let a = agent();
    let (s, _) = call(&a, &srv.base, "/products", OP, None, json!({ "id": "eth2x", "toml": ETH2X })).unwrap();
    assert_eq!(s, 201);
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
    let threads: Vec<_> = holders
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            let (key, base, acked, in_flight, count, dead) =
                (key.clone(), srv.base.clone(), acked.clone(), in_flight.clone(), count.clone(), dead.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut held = 0u64;
                for n in 0.. {
                    let redeem = held > 50 && n % 3 == 2;
                    let milli = if redeem { held / 2 } else { 10 + (n * 7 + i as u64 * 13) % 90 };
                    let sent = Sent { idem: format!("c{i}-{n}"), kind: if redeem { "redeem" } else { "mint" }, milli };
                    let path = format!("/products/eth2x/{}", sent.kind);
                    let body = json!({ "quantity": format!("{}", milli as f64 / 1000.0) });
                    match call(&a, &base, &path, &key, Some(&sent.idem), body) {
                        Ok((200, _)) => {
                            held = if redeem { held - milli } else { held + milli };
                            acked.lock().unwrap().push((i, sent));
                            count.fetch_add(1, Ordering::SeqCst);
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
    while count.load(Ordering::SeqCst) < 400 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut child = srv.child;
    dead.store(true, Ordering::SeqCst);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let in_flight = in_flight.lock().unwrap().clone();
    assert!(acked.len() >= 400, "only {} acknowledged", acked.len());

    let srv = spawn(db, &["--snapshot-every", "100"]);
    let events = all_events(&a, &srv.base);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_holder: BTreeMap<String, i128> = BTreeMap::new();
    for e in &events {
        if let Some(k) = e["idempotency_key"].as_str() {
            *seen.entry(k.split_once(':').unwrap().1.to_string()).or_default() += 1;
        }
        let kind = e["kind"].as_str().unwrap();
        if kind == "mint" || kind == "redeem" {
            let q: f64 = e["result"]["quantity"].as_str().unwrap().parse().unwrap();
            let m = (q * 1000.0).round() as i128;
            *per_holder.entry(e["actor"]["address"].as_str().unwrap().to_string()).or_default() +=
                if kind == "mint" { m } else { -m };
        }
    }
    for (i, s) in &acked {
        assert_eq!(seen.get(&s.idem), Some(&1), "acknowledged {} by client {i} must be in the log once", s.idem);
    }
    assert!(seen.values().all(|n| *n == 1), "no request twice");
    for (i, (_, addr)) in holders.iter().enumerate() {
        let b = get(&a, &format!("{}/products/eth2x/balances/{addr}", srv.base));
        let bal: f64 = b["balance"].as_str().unwrap().parse().unwrap();
        let want = per_holder.get(&addr.to_lowercase()).copied().unwrap_or(0);
        assert_eq!((bal * 1000.0).round() as i128, want, "holder {i}: balance equals its logged mints and redeems");
        let acked_net: i128 = acked
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, s)| if s.kind == "mint" { s.milli as i128 } else { -(s.milli as i128) })
            .sum();
        let maybe: i128 = in_flight
            .iter()
            .filter(|(j, s)| *j == i && seen.contains_key(&s.idem))
            .map(|(_, s)| if s.kind == "mint" { s.milli as i128 } else { -(s.milli as i128) })
            .sum();
        assert_eq!(
            want,
            acked_net + maybe,
            "holder {i}: acknowledged requests (and only in-flight extras) are in the state"
        );
    }
    let view = get(&a, &format!("{}/products/eth2x", srv.base));
    assert_eq!(view["supply_equals_balances"], true, "supply equals the sum of balances");
    // a retry of the requests in flight at the kill does nothing twice
    for (i, s) in &in_flight {
        let path = format!("/products/eth2x/{}", s.kind);
        let body = json!({ "quantity": format!("{}", s.milli as f64 / 1000.0) });
        let (status, _) = call(&a, &srv.base, &path, &holders[*i].0, Some(&s.idem), body).unwrap();
        assert_eq!(status, 200);
    }
    let events2 = all_events(&a, &srv.base);
    let retried_new = in_flight.iter().filter(|(_, s)| !seen.contains_key(&s.idem)).count();
    assert_eq!(events2.len(), events.len() + retried_new, "retries of logged requests add nothing");
    srv.kill();
    eprintln!(
        "{db}: {} acknowledged, {} in flight at SIGKILL, {} events after restart",
        acked.len(),
        in_flight.len(),
        events.len()
    );
}

#[test]
fn sigkill_loses_no_acknowledged_request_sqlite() {
    crash_and_recover(&keel_server::testing::sqlite_url("crash"));
}

#[test]
fn sigkill_loses_no_acknowledged_request_postgres() {
    if let Some(url) = keel_server::testing::postgres_url("crash") {
        crash_and_recover(&url);
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
