//! The keeper: collectors → strategy → executors. [`decide`] is a pure function from the
//! products' views and the keeper's memory to the calls to make; [`run`] is the loop around it,
//! generic over where views come from and where calls go ([`KeeperIo`]): in-process (the
//! server's `--keeper`) or over HTTP (`keel keeper --server`). The same code either way.
//!
//! Each decision carries an idempotency key derived from the state it was made on; a call that
//! was not acknowledged is retried with the same key, so one decision is never executed twice.
//! Refusals back off exponentially per product and exchange.

use crate::model::{Actor, Call, Command, Idempotency, Request, sha256_hex};
use crate::view::ProductView;
use crate::writer::{Shared, Submitter};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A call the keeper decided to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Product id.
    pub product: String,
    /// Exchange.
    pub exchange: String,
    /// Which call.
    pub call: Call,
    /// The state it was decided on (event sequence number).
    pub seq: u64,
    /// Idempotency key: one per decision.
    pub idempotency_key: String,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Acknowledged (perhaps as the replay of an earlier attempt).
    Done(serde_json::Value),
    /// Refused by the server: status and message. Not retried with this key.
    Refused(u16, String),
    /// Not delivered or not acknowledged: retried with the same key.
    Lost(String),
}

#[derive(Debug, Clone, Default)]
struct Backoff {
    failures: u32,
    until_ms: u64,
}

/// What the keeper remembers between rounds.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    backoff: HashMap<(String, String), Backoff>,
    /// Last state acted on, per product: no second decision on the same state.
    acted: HashMap<String, u64>,
    /// Decisions sent but not acknowledged, per product: resent as they are.
    pending: HashMap<String, Decision>,
}

/// Keeper settings.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// First back-off after a refusal.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig {
            interval: Duration::from_secs(1),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
        }
    }
}

fn call_of(action: &str) -> Option<Call> {
    match action {
        "rebalance" => Some(Call::Rebalance),
        "iterate" => Some(Call::Iterate),
        "ripcord" => Some(Call::Ripcord),
        _ => None,
    }
}

/// The strategy: what to call now. At most one call per product per round (a ripcord before
/// anything else); nothing on a product whose price is stale, whose state was already acted
/// on, or whose exchange is backing off. Unacknowledged decisions are resent first, unchanged.
pub fn decide(views: &[ProductView], mem: &Memory, now_ms: u64) -> Vec<Decision> {
    let mut out = Vec::new();
    for v in views {
        if let Some(d) = mem.pending.get(&v.id) {
            out.push(d.clone());
            continue;
        }
        if v.blocked.is_some() || mem.acted.get(&v.id).is_some_and(|s| *s >= v.seq) {
            continue;
        }
        let mut best: Option<(u8, &String, Call)> = None;
        for (exchange, action) in &v.should_rebalance {
            let Some(call) = call_of(action) else { continue };
            let b = mem.backoff.get(&(v.id.clone(), exchange.clone()));
            if b.is_some_and(|b| b.until_ms > now_ms) {
                continue;
            }
            let rank = if call == Call::Ripcord { 0 } else { 1 };
            if best.is_none_or(|(r, _, _)| rank < r) {
                best = Some((rank, exchange, call));
            }
        }
        if let Some((_, exchange, call)) = best {
            out.push(Decision {
                product: v.id.clone(),
                exchange: exchange.clone(),
                call,
                seq: v.seq,
                idempotency_key: format!("keeper-{}-{}-{}-{}", v.id, exchange, call.name(), v.seq),
            });
        }
    }
    out
}

/// Fold a submission's result into the memory.
pub fn record(mem: &mut Memory, d: &Decision, result: &Submitted, now_ms: u64, cfg: &KeeperConfig) {
    let key = (d.product.clone(), d.exchange.clone());
    match result {
        Submitted::Done(_) => {
            mem.pending.remove(&d.product);
            mem.acted.insert(d.product.clone(), d.seq);
            mem.backoff.remove(&key);
        }
        Submitted::Refused(..) => {
            mem.pending.remove(&d.product);
            mem.acted.insert(d.product.clone(), d.seq);
            let b = mem.backoff.entry(key).or_default();
            b.failures += 1;
            let wait = cfg.backoff_base.as_millis() as u64 * 2u64.saturating_pow(b.failures - 1);
            b.until_ms = now_ms + wait.min(cfg.backoff_max.as_millis() as u64);
        }
        Submitted::Lost(_) => {
            mem.pending.insert(d.product.clone(), d.clone());
            let b = mem.backoff.entry(key).or_default();
            b.failures += 1;
            b.until_ms = now_ms + cfg.backoff_base.as_millis() as u64;
        }
    }
}

/// Where views come from and calls go.
pub trait KeeperIo {
    /// Every product's current view.
    fn views(&mut self) -> Result<Vec<ProductView>, String>;
    /// Make the call.
    fn submit(&mut self, d: &Decision) -> Submitted;
    /// Count a failure (metrics).
    fn failed(&mut self) {}
}

/// One line of the keeper's log.
#[derive(Debug, Clone)]
pub struct KeeperLog {
    /// The decision.
    pub decision: Decision,
    /// Its result.
    pub result: Submitted,
}

/// Run rounds until `stop` is set (or `rounds` have run).
pub fn run(
    io: &mut dyn KeeperIo,
    cfg: &KeeperConfig,
    stop: &AtomicBool,
    rounds: Option<u64>,
    mut log: impl FnMut(&KeeperLog),
) {
    let t0 = Instant::now();
    let mut mem = Memory::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && rounds.is_none_or(|r| n < r) {
        n += 1;
        match io.views() {
            Ok(views) => {
                let now_ms = t0.elapsed().as_millis() as u64;
                for d in decide(&views, &mem, now_ms) {
                    let result = io.submit(&d);
                    if !matches!(result, Submitted::Done(_)) {
                        io.failed();
                    }
                    record(&mut mem, &d, &result, t0.elapsed().as_millis() as u64, cfg);
                    log(&KeeperLog { decision: d, result });
                }
            }
            Err(e) => tracing::warn!(error = %e, "keeper could not read the products"),
        }
        if rounds.is_none_or(|r| n < r) {
            std::thread::sleep(cfg.interval);
        }
    }
}

/// The in-process keeper: reads published views, submits straight to the writer.
pub struct InProcess {
    /// Published state.
    pub shared: Arc<Shared>,
    /// The writer's queue.
    pub submitter: Submitter,
    /// Who the keeper acts as.
    pub actor: Actor,
}

impl KeeperIo for InProcess {
    fn views(&mut self) -> Result<Vec<ProductView>, String> {
        Ok(self.shared.all_views().iter().map(|p| p.view.clone()).collect())
    }

    fn submit(&mut self, d: &Decision) -> Submitted {
        self.shared.metrics.keeper_submissions.fetch_add(1, Ordering::Relaxed);
        let command = Command::Call { product: d.product.clone(), call: d.call, exchange: d.exchange.clone() };
        let request_hash = sha256_hex(serde_json::to_string(&command).unwrap_or_default().as_bytes());
        let req = Request {
            actor: self.actor.clone(),
            idempotency: Some(Idempotency {
                scope: format!("{}:{}", self.actor.key_id, d.idempotency_key),
                request_hash,
            }),
            command,
        };
        match self.submitter.submit_blocking(req) {
            Ok(a) => Submitted::Done(a.result),
            Err(crate::error::ApiError::Unavailable(m)) => Submitted::Lost(m),
            Err(e) => Submitted::Refused(e.status(), e.to_string()),
        }
    }

    fn failed(&mut self) {
        self.shared.metrics.keeper_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// The keeper as a separate process, over the HTTP API.
pub struct OverHttp {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl OverHttp {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with API key `key`.
    pub fn new(base: &str, key: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        OverHttp { agent, base: base.trim_end_matches('/').to_string(), key: key.to_string() }
    }
}

impl KeeperIo for OverHttp {
    fn views(&mut self) -> Result<Vec<ProductView>, String> {
        let mut r = self.agent.get(format!("{}/products", self.base)).call().map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("GET /products: HTTP {}", r.status()));
        }
        r.body_mut().read_json::<Vec<ProductView>>().map_err(|e| e.to_string())
    }

    fn submit(&mut self, d: &Decision) -> Submitted {
        let url = format!("{}/products/{}/{}", self.base, d.product, d.call.name());
        let body = serde_json::json!({ "exchange": d.exchange });
        let r = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.key))
            .header("Idempotency-Key", &d.idempotency_key)
            .send_json(&body);
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.body_mut().read_json().unwrap_or(serde_json::Value::Null);
                match status {
                    200..=299 => Submitted::Done(v),
                    503 => Submitted::Lost(v["message"].as_str().unwrap_or("unavailable").to_string()),
                    _ => Submitted::Refused(status, v["message"].as_str().unwrap_or("").to_string()),
                }
            }
            Err(e) => Submitted::Lost(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Band;
    use std::collections::BTreeMap;

    fn view(id: &str, seq: u64, actions: &[(&str, &str)], blocked: bool) -> ProductView {
        ProductView {
            id: id.into(),
            symbol: "X".into(),
            name: "X".into(),
            seq,
            as_of: 0,
            blocked: blocked.then(|| "WETH price: stale".to_string()),
            nav_per_token: None,
            equity_usd: None,
            leverage_ratio: None,
            band: Band { min: "1.7".into(), target: "2".into(), max: "2.3".into(), ripcord: "2.7".into() },
            twap_leverage_ratio: None,
            should_rebalance: actions.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            allowed_callers: vec![],
            anyone_callable: false,
            position: BTreeMap::new(),
            lending_account: BTreeMap::new(),
            pools: BTreeMap::new(),
            prices: BTreeMap::new(),
            supply: "0".into(),
            supply_cap: "0".into(),
            holders: 0,
            supply_equals_balances: true,
        }
    }

    #[test]
    fn decisions_table() {
        let cfg = KeeperConfig::default();
        type Case = (&'static str, Vec<ProductView>, Memory, Vec<(&'static str, Call)>);
        let cases: Vec<Case> = vec![
            ("nothing to do", vec![view("a", 5, &[("x", "none")], false)], Memory::default(), vec![]),
            (
                "rebalance",
                vec![view("a", 5, &[("x", "rebalance")], false)],
                Memory::default(),
                vec![("a", Call::Rebalance)],
            ),
            (
                "ripcord first",
                vec![view("a", 5, &[("x", "iterate"), ("y", "ripcord")], false)],
                Memory::default(),
                vec![("a", Call::Ripcord)],
            ),
            ("stale price", vec![view("a", 5, &[("x", "rebalance")], true)], Memory::default(), vec![]),
            (
                "state already acted on",
                vec![view("a", 5, &[("x", "rebalance")], false)],
                Memory { acted: [("a".to_string(), 5)].into(), ..Memory::default() },
                vec![],
            ),
            (
                "backing off",
                vec![view("a", 6, &[("x", "rebalance")], false)],
                Memory {
                    backoff: [(("a".to_string(), "x".to_string()), Backoff { failures: 1, until_ms: 10_000 })].into(),
                    ..Memory::default()
                },
                vec![],
            ),
            (
                "two products",
                vec![view("a", 5, &[("x", "iterate")], false), view("b", 5, &[("x", "rebalance")], false)],
                Memory::default(),
                vec![("a", Call::Iterate), ("b", Call::Rebalance)],
            ),
        ];
        for (name, views, mem, want) in cases {
            let got: Vec<(String, Call)> =
                decide(&views, &mem, 1_000).into_iter().map(|d| (d.product, d.call)).collect();
            let want: Vec<(String, Call)> = want.into_iter().map(|(p, c)| (p.to_string(), c)).collect();
            assert_eq!(got, want, "{name}");
        }
        let _ = cfg;
    }

    #[test]
    fn a_lost_call_is_resent_with_the_same_key_and_a_refusal_backs_off() {
        let cfg = KeeperConfig::default();
        let mut mem = Memory::default();
        let views = vec![view("a", 5, &[("x", "rebalance")], false)];
        let d = decide(&views, &mem, 0).remove(0);
        record(&mut mem, &d, &Submitted::Lost("timeout".into()), 0, &cfg);
        // a newer state does not produce a new decision while the old one is unacknowledged
        let newer = vec![view("a", 9, &[("x", "rebalance")], false)];
        let again = decide(&newer, &mem, 5_000);
        assert_eq!(again, vec![d.clone()], "resent unchanged, same idempotency key");
        record(&mut mem, &d, &Submitted::Refused(422, "Cooldown not elapsed".into()), 5_000, &cfg);
        assert!(decide(&newer, &mem, 6_000).is_empty(), "backing off after a refusal");
        let later = decide(&newer, &mem, 5_000 + 4_001);
        assert_eq!(later.len(), 1);
        assert_ne!(later[0].idempotency_key, d.idempotency_key, "a new decision on a new state");
    }
}
