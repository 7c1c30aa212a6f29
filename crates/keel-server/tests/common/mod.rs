//! Shared by the API tests: a server on a real listener with a manual clock, and requests.
#![allow(dead_code)]

use keel_server::Running;
use keel_server::writer::{ManualClock, WriterConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const ETH2X: &str = include_str!("../../../../products/eth2x-fli.toml");
pub const OP: &str = "operator-test-key";
pub const T0: u64 = 1_700_000_000;

pub struct Srv {
    pub running: Option<Running>,
    pub base: String,
    pub agent: ureq::Agent,
    pub clock: Arc<ManualClock>,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

impl Srv {
    pub fn start(url: &str, clock: Arc<ManualClock>, init: bool) -> Srv {
        let cfg = WriterConfig { refresh: Duration::from_millis(50), snapshot_every: 25, ..WriterConfig::default() };
        let store = keel_server::testing::store_config(url, init);
        let running = keel_server::start(&store, clock.clone(), cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
        keel_server::bootstrap_operator(&running, Some(OP)).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Srv { base: format!("http://{}", running.addr), running: Some(running), agent, clock }
    }

    pub fn req(&self, method: &str, path: &str, key: Option<&str>, idem: Option<&str>, body: Option<&str>) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(k) = key {
            b = b.header("Authorization", format!("Bearer {k}"));
        }
        if let Some(i) = idem {
            b = b.header("Idempotency-Key", i);
        }
        b = b.header("Content-Type", "application/json");
        let r = b.body(body.unwrap_or("").to_string()).unwrap();
        let mut resp = self.agent.run(r).unwrap();
        let status = resp.status().as_u16();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body, replayed }
    }

    pub fn get(&self, path: &str) -> Value {
        let r = self.req("GET", path, None, None, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    pub fn post(&self, path: &str, key: &str, body: Value) -> Value {
        let r = self.req("POST", path, Some(key), None, Some(&body.to_string()));
        assert!(r.status < 300, "POST {path}: {} {}", r.status, r.body);
        r.body
    }

    pub fn key(&self, role: &str) -> (String, String) {
        let v = self.post("/keys", OP, json!({ "role": role }));
        (v["key"].as_str().unwrap().to_string(), v["address"].as_str().unwrap().to_string())
    }

    /// The product's state without the time it was computed at.
    pub fn state(&self) -> Value {
        let mut v = self.get("/products/eth2x");
        v.as_object_mut().unwrap().remove("as_of");
        v
    }

    pub fn wait_view(&self, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let v = self.get("/products/eth2x");
            if f(&v) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("view never reached the expected state: {}", self.get("/products/eth2x"));
    }

    pub fn stop(mut self) {
        self.running.take().unwrap().shutdown().unwrap();
    }
}

pub fn setup(url: &str) -> (Srv, String, String, String, String) {
    let clock = Arc::new(ManualClock::default());
    clock.0.store(T0, Ordering::SeqCst);
    let s = Srv::start(url, clock, true);
    let (keeper, keeper_addr) = s.key("keeper");
    let created = s.post("/products", OP, json!({ "id": "eth2x", "toml": ETH2X, "allowed_callers": [keeper_addr] }));
    assert_eq!(created["symbol"], "ETH2x-FLI");
    let (holder, _) = s.key("holder");
    let (oracle, _) = s.key("oracle");
    (s, holder, keeper, oracle, keeper_addr)
}
