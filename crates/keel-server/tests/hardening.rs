//! Issue #11: inputs that used to stop the service for good, key material in public, a
//! database removed or rolled back under the service, PostgreSQL going away. Each test names
//! the defect it pins.

mod common;

use common::{ETH2X, OP, Srv, T0, setup};
use keel_server::StoreConfig;
use keel_server::testing::{backends, sqlite_url};
use keel_server::writer::{ManualClock, WriterConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn sqlite_file(url: &str) -> String {
    url.strip_prefix("sqlite://").unwrap().to_string()
}

/// Defects 1 and 2: the smallest price the API accepts (and a product file at it) used to be
/// committed, then panic the writer while building the view, and every restart panicked on
/// replay. Now such a price is either refused with the field and the range, or accepted and
/// everything after it works, including a restart.
#[test]
fn the_smallest_prices_never_brick_the_service() {
    let url = sqlite_url("tiny_price");
    let (s, holder, _, oracle, _) = setup(&url);
    s.post("/products/eth2x/mint", &holder, json!({ "quantity": "2" }));
    for price in ["0.00000001", "0.0000001", "0.000000001", "1000000000001", "2000"] {
        let r =
            s.req("POST", "/products/eth2x/prices", Some(&oracle), None, Some(&json!({ "price": price }).to_string()));
        assert!(r.status == 200 || r.status == 400, "{price}: {} {}", r.status, r.body);
        if r.status == 400 {
            assert_eq!(r.body["field"], "price", "{price}: {}", r.body);
        }
        assert_eq!(s.get("/health")["status"], "ok", "{price}: the writer is alive");
        assert!(s.get("/products/eth2x")["seq"].as_u64().is_some());
    }
    let r = s.req("POST", "/products/eth2x/prices", Some(&oracle), None, Some(r#"{"price":"0.000000001"}"#));
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("more than 8 decimals"), "{}", r.body);
    let r = s.req("POST", "/products/eth2x/prices", Some(&oracle), None, Some(r#"{"price":"1000000000001"}"#));
    assert!(r.body["message"].as_str().unwrap().contains("0.00000001 to 1000000000000"), "{}", r.body);
    // a product file at the smallest price
    let tiny = ETH2X.replace("price = \"2000\"", "price = \"0.00000001\"");
    let r = s.req("POST", "/products", Some(OP), None, Some(&json!({ "id": "tiny", "toml": tiny }).to_string()));
    assert!(r.status == 201 || r.status == 400, "{}", r.body);
    s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
    // the views without when they were computed
    let views = |s: &Srv| {
        let mut v = s.get("/products");
        for p in v.as_array_mut().unwrap() {
            let o = p.as_object_mut().unwrap();
            o.remove("seq");
            o.remove("as_of");
        }
        v
    };
    let before = views(&s);
    let clock = s.clock.clone();
    s.stop();
    let s = Srv::start(&url, clock, false);
    assert_eq!(views(&s), before, "a restart replays every accepted price");
    s.stop();
}

/// Defect 3: `decimals = 78` panicked `keel product check` and killed the writer.
#[test]
fn out_of_range_decimals_are_refused_naming_the_field() {
    let url = sqlite_url("decimals");
    let (s, _, _, _, _) = setup(&url);
    for (d, field) in [("78", "collateral.decimals"), ("255", "collateral.decimals"), ("29", "collateral.decimals")] {
        let toml = ETH2X.replace("decimals = 18", &format!("decimals = {d}"));
        let r = s.req("POST", "/products", Some(OP), None, Some(&json!({ "id": "d", "toml": toml }).to_string()));
        assert_eq!(r.status, 400, "{d}: {}", r.body);
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains(field) && msg.contains("from 0 to 28"), "{d}: {msg}");
    }
    assert_eq!(s.get("/health")["status"], "ok");
    s.stop();
}

/// Defect 5: a retried `POST /keys` returned a new key that was never stored.
/// Defect 7: `GET /events` showed every key's unsalted SHA-256.
#[test]
fn a_retried_key_creation_returns_the_same_working_key_and_no_hash_is_public() {
    for url in backends("keys") {
        let (s, _, _, _, _) = setup(&url);
        let body = r#"{"role":"holder","label":"desk 1"}"#;
        let a = s.req("POST", "/keys", Some(OP), Some("new-holder"), Some(body));
        let b = s.req("POST", "/keys", Some(OP), Some("new-holder"), Some(body));
        assert_eq!((a.status, a.replayed), (201, false), "{}", a.body);
        assert_eq!((b.status, b.replayed), (201, true), "{}", b.body);
        assert_eq!(a.body, b.body, "the retry returns the first reply, key included");
        let key = a.body["key"].as_str().unwrap();
        let r = s.req("POST", "/products/eth2x/mint", Some(key), None, Some(r#"{"quantity":"1"}"#));
        assert_eq!(r.status, 200, "the key works: {}", r.body);
        // no key material in public: neither the key nor any hash of it
        let events = s.get("/events?limit=1000").to_string();
        let sha = keel_server::model::sha256_hex(OP.as_bytes());
        assert!(!events.contains(&sha), "the unkeyed hash of the operator key is not public");
        assert!(!events.contains("\"hash\""), "no hash field in public events");
        assert!(!events.contains(key));
        // and not in the database either: only keyed hashes
        if let Some(path) = url.strip_prefix("sqlite://") {
            let db = std::fs::read(path).unwrap();
            let wal = std::fs::read(format!("{path}-wal")).unwrap_or_default();
            let all = [db, wal].concat();
            assert!(
                !all.windows(sha.len()).any(|w| w == sha.as_bytes()),
                "the database holds no plain SHA-256 of a key"
            );
        }
        s.stop();
    }
}

/// Defects 6 and 10: the SQLite file deleted under load: writes got 200 and /health said ok;
/// the restart quietly created an empty database.
#[test]
fn a_database_file_removed_under_the_service_stops_it_and_is_never_recreated() {
    let url = sqlite_url("deleted");
    let (s, holder, _, _, _) = setup(&url);
    s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
    let path = sqlite_file(&url);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let r = s.req("POST", "/products/eth2x/mint", Some(&holder), None, Some(r#"{"quantity":"1"}"#));
    assert_eq!(r.status, 503, "no write is acknowledged once the file is gone: {}", r.body);
    let h = s.req("GET", "/health", None, None, None);
    assert_eq!(h.status, 503);
    assert_eq!(h.body["status"], "stopped");
    assert!(h.body["reason"].as_str().unwrap().contains("removed or replaced"), "{}", h.body);
    let reason = s.running.as_ref().unwrap().wait_for_signal_or_failure();
    assert!(reason.unwrap().contains("removed or replaced"));
    let clock = s.clock.clone();
    s.stop();
    // a restart without --init refuses, saying how to create one
    let err = keel_server::start(
        &StoreConfig::new(&url, false),
        clock,
        WriterConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("--init"), "{err}");
}

/// Defect 11: a log with a hole, an edited row, an edited snapshot or a rollback below what was
/// acknowledged started silently.
#[test]
fn a_log_that_was_edited_or_rolled_back_refuses_to_start() {
    let url = sqlite_url("tamper");
    let (s, holder, _, _, _) = setup(&url);
    for _ in 0..3 {
        s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
    }
    let clock = s.clock.clone();
    s.stop();
    let path = sqlite_file(&url);
    let backup = format!("{path}.bak");
    std::fs::copy(&path, &backup).unwrap();
    let s = Srv::start(&url, clock.clone(), false);
    for _ in 0..30 {
        s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
    }
    s.stop();
    let start = |url: &str| {
        keel_server::start(
            &StoreConfig::new(url, false),
            clock.clone(),
            WriterConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .map(|r| r.shutdown())
    };
    let sql = |q: &str| {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(q).unwrap();
    };
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c.query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0)).unwrap();
        assert!(n > 0, "a snapshot was saved before the clean stop");
    }
    let good = std::fs::read(&path).unwrap();
    let restore = || std::fs::write(&path, &good).unwrap();
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        ("a deleted row", Box::new(|| sql("DELETE FROM events WHERE seq = 3")), "the log has a hole"),
        (
            "an edited product definition",
            Box::new(|| {
                sql("UPDATE events SET request = replace(request, '2.3', '2.4') WHERE kind = 'product_created'")
            }),
            "does not match its chain hash",
        ),
        (
            "an edited snapshot",
            Box::new(|| sql("UPDATE snapshots SET state = replace(state, '\"seq\":', '\"seq\": ')")),
            "snapshot's text does not match",
        ),
        ("the newest events gone", Box::new(|| sql("DELETE FROM events WHERE seq > 20")), "rolled back"),
        (
            "an older copy of the database",
            Box::new(|| {
                std::fs::copy(&backup, &path).unwrap();
            }),
            "rolled back",
        ),
    ];
    for (name, tamper, want) in cases {
        restore();
        tamper();
        let err = start(&url).err().unwrap_or_else(|| panic!("{name}: started"));
        assert!(err.to_string().contains(want), "{name}: {err}");
    }
    restore();
    start(&url).unwrap().unwrap();
}

/// Defect 9: after PostgreSQL dropped the connection the writer never reconnected.
#[test]
fn the_writer_reconnects_when_postgresql_drops_it_and_loses_nothing() {
    let Some(url) = keel_server::testing::postgres_url("reconnect") else { return };
    let (s, holder, _, _, _) = setup(&url);
    s.post("/products/eth2x/mint", &holder, json!({ "quantity": "1" }));
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let base = std::env::var("KEEL_TEST_POSTGRES").unwrap();
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&dbname]).unwrap();
    // the first write after the drop is refused (not acknowledged), then the writer is back
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..200 {
        let r = s.req(
            "POST",
            "/products/eth2x/mint",
            Some(&holder),
            Some(&format!("after-{i}")),
            Some(r#"{"quantity":"1"}"#),
        );
        match r.status {
            200 => ok += 1,
            503 => refused += 1,
            other => panic!("{other}: {}", r.body),
        }
        if ok >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok >= 3, "writes resumed after the reconnect ({refused} refused meanwhile)");
    assert_eq!(s.get("/health")["status"], "ok");
    let supply = s.get("/products/eth2x")["supply"].clone();
    let clock = s.clock.clone();
    s.stop();
    let s = Srv::start(&url, clock, false);
    assert_eq!(s.get("/products/eth2x")["supply"], supply, "what was acknowledged is in the log");
    s.stop();
}

/// `/events?after=` at or above 2^63 wrapped to the oldest events; framework refusals were not
/// JSON.
#[test]
fn paging_bounds_and_framework_refusals_are_json() {
    let url = sqlite_url("paging");
    let (s, _, _, _, _) = setup(&url);
    let r = s.req("GET", "/events?after=9223372036854775808", None, None, None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.req("GET", "/events?after=9223372036854775807", None, None, None);
    assert_eq!((r.status, r.body["events"].as_array().map(|a| a.len())), (200, Some(0)));
    let r = s.req("PUT", "/products", None, None, None);
    assert_eq!(r.status, 405);
    assert_eq!(r.body["error"], "method_not_allowed", "{}", r.body);
    let r = s.req("GET", "/products/%FF", None, None, None);
    assert!(r.body.is_object(), "{}", r.body);
    let r = s.req("GET", &format!("/products/{}", "a".repeat(9000)), None, None, None);
    assert_eq!((r.status, r.body["error"].as_str()), (414, Some("uri_too_long")), "{}", r.body);
    let r = s.req("GET", &format!("/products/{}", "a".repeat(5000)), None, None, None);
    assert_eq!(r.status, 404);
    assert!(r.body["message"].as_str().unwrap().len() < 200, "an excerpt, not the whole id: {}", r.body);
    // a body over the limit: the server answers before reading it, so talk to the socket
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(s.base.strip_prefix("http://").unwrap()).unwrap();
        let head = format!(
            "POST /products/eth2x/mint HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OP}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            3 << 20
        );
        c.write_all(head.as_bytes()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&vec![b' '; 3 << 20]);
        });
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        let _ = writer.join();
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        assert!(out.contains("\"error\":\"payload_too_large\""), "{out}");
    }
    // a label that is not a string, or too long
    for (label, want) in [(json!(5), "must be a string"), (json!("x".repeat(201)), "at most 200")] {
        let r = s.req("POST", "/keys", Some(OP), None, Some(&json!({ "role": "holder", "label": label }).to_string()));
        assert_eq!(r.status, 400);
        assert!(r.body["message"].as_str().unwrap().contains(want), "{}", r.body);
    }
    s.stop();
}

/// Defect 12: idempotency records lived in memory for ever. They now live in the log only:
/// the engine holds none, and a key is recognised after a restart and across batches.
#[test]
fn idempotency_is_looked_up_in_the_log() {
    let url = sqlite_url("idem_log");
    let (s, holder, _, _, _) = setup(&url);
    for i in 0..50 {
        let r =
            s.req("POST", "/products/eth2x/mint", Some(&holder), Some(&format!("k{i}")), Some(r#"{"quantity":"1"}"#));
        assert_eq!(r.status, 200);
    }
    for i in 0..50 {
        let r =
            s.req("POST", "/products/eth2x/mint", Some(&holder), Some(&format!("k{i}")), Some(r#"{"quantity":"1"}"#));
        assert!(r.replayed, "k{i}");
    }
    assert_eq!(s.get("/products/eth2x")["supply"], "50.05");
    let _ = (T0, Arc::new(ManualClock::default()).0.load(Ordering::SeqCst));
    s.stop();
}

/// Every file in `products/` is served — lending FLI, PerpV2 FLI, threshold, daily, continuous
/// — never a parse error or a failure after it was accepted. `btc2x-fli.toml` used to be
/// refused: its 70% LTV could not carry the simulated market.
#[test]
fn every_bundled_product_is_served_or_refused_with_the_reason() {
    let url = sqlite_url("bundled");
    let (s, holder, _, _, _) = setup(&url);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../products");
    let mut served = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let path = f.unwrap().path();
        let toml = std::fs::read_to_string(&path).unwrap();
        let id = path.file_stem().unwrap().to_string_lossy().replace('.', "-");
        let r = s.req("POST", "/products", Some(OP), None, Some(&json!({ "id": id, "toml": toml }).to_string()));
        match r.status {
            201 => {
                let m =
                    s.req("POST", &format!("/products/{id}/mint"), Some(&holder), None, Some(r#"{"quantity":"100"}"#));
                assert_eq!(m.status, 200, "{id}: {}", m.body);
                served.push(id);
            }
            400 => assert!(r.body["message"].as_str().unwrap().contains("`keel backtest`"), "{id}: {}", r.body),
            other => panic!("{id}: {other} {}", r.body),
        }
    }
    served.sort();
    for id in
        ["eth2x-fli", "btc2x-fli", "eth-3x-threshold", "eth-minus1x-threshold", "eth-3x-daily", "eth-minus2x-bear"]
    {
        assert!(served.contains(&id.to_string()), "{id} is served: {served:?}");
    }
    s.stop();
}
