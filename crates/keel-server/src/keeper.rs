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
use keel_core::U256;
pub use keel_core::strategy::keeper::{Action, BackoffConfig, Decision, Memory, Outcome};
use keel_core::strategy::keeper::{Candidate, Observation, decide, record};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Keeper settings.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Back-off after refusals.
    pub backoff: BackoffConfig,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig { interval: Duration::from_secs(1), backoff: BackoffConfig::default() }
    }
}

/// What the keeper observes of a product: its `should_rebalance` per exchange.
pub fn observe(v: &ProductView) -> Observation {
    let candidates = v
        .should_rebalance
        .iter()
        .filter_map(|(exchange, a)| {
            let action = match a.as_str() {
                "rebalance" => Action::Rebalance,
                "iterate" => Action::Iterate,
                "ripcord" => Action::Ripcord,
                _ => return None,
            };
            Some(Candidate { exchange: exchange.clone(), action, chunk: U256::ZERO })
        })
        .collect();
    Observation { id: v.id.clone(), seq: v.seq, blocked: v.blocked.clone(), candidates }
}

/// The service's call for a decision.
pub fn call_of(a: Action) -> Call {
    match a {
        Action::Rebalance => Call::Rebalance,
        Action::Iterate => Call::Iterate,
        Action::Ripcord => Call::Ripcord,
    }
}

/// Where views come from and calls go.
pub trait KeeperIo {
    /// Every product's current view.
    fn views(&mut self) -> Result<Vec<ProductView>, String>;
    /// Make the call.
    fn submit(&mut self, d: &Decision) -> Outcome;
    /// Count a failure (metrics).
    fn failed(&mut self, _d: &Decision) {}
    /// What happened to a decision, and the back-off now in force for its product and
    /// exchange (milliseconds from now), for the dashboard.
    fn report(&mut self, _log: &KeeperLog, _backoff_ms: Option<u64>) {}
}

/// One line of the keeper's log.
#[derive(Debug, Clone)]
pub struct KeeperLog {
    /// The decision.
    pub decision: Decision,
    /// Its result.
    pub result: Outcome,
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
                let observed: Vec<Observation> = views.iter().map(observe).collect();
                for d in decide(&observed, &mem, now_ms) {
                    let result = io.submit(&d);
                    if !matches!(result, Outcome::Done | Outcome::Raced(_)) {
                        io.failed(&d);
                    }
                    let now_ms = t0.elapsed().as_millis() as u64;
                    record(&mut mem, &d, &result, now_ms, cfg.backoff);
                    let wait = mem.backoff_left(&d.id, &d.exchange, now_ms);
                    let line = KeeperLog { decision: d, result };
                    io.report(&line, wait);
                    log(&line);
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

    fn submit(&mut self, d: &Decision) -> Outcome {
        self.shared.metrics.keeper_submission(&d.id);
        let command = Command::Call { product: d.id.clone(), call: call_of(d.action), exchange: d.exchange.clone() };
        let request_hash = sha256_hex(serde_json::to_string(&command).unwrap_or_default().as_bytes());
        let req = Request {
            actor: self.actor.clone(),
            idempotency: Some(Idempotency { scope: format!("{}:{}", self.actor.key_id, d.key), request_hash }),
            command,
        };
        match self.submitter.submit_blocking(req) {
            Ok(_) => Outcome::Done,
            Err(crate::error::ApiError::Unavailable(m)) => Outcome::Lost(m),
            Err(e) if d.action == Action::Ripcord && e.status() == 422 => Outcome::Raced(e.to_string()),
            Err(e) => Outcome::Refused(format!("{} {e}", e.status())),
        }
    }

    fn failed(&mut self, d: &Decision) {
        self.shared.metrics.keeper_failure(&d.id);
    }

    fn report(&mut self, l: &KeeperLog, backoff_ms: Option<u64>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let d = &l.decision;
        let mut h = self.shared.history.write().expect("history lock");
        let k = h.entry(d.id.clone()).or_default().keeper.get_or_insert_with(Default::default);
        match &l.result {
            Outcome::Done | Outcome::Raced(_) => {
                k.last_success_at = Some(now);
                k.last_success = Some(format!("{} on {}", d.action.name(), d.exchange));
                k.failures = 0;
                k.last_error = None;
            }
            Outcome::Refused(m) | Outcome::Lost(m) => {
                k.failures += 1;
                k.last_error = Some(format!("{} on {}: {m}", d.action.name(), d.exchange));
            }
        }
        k.backoff_until = backoff_ms.map(|ms| now + ms.div_ceil(1000));
    }
}

/// A decision's key in the characters the API takes (`A-Z a-z 0-9 - _ . :`).
fn safe_key(k: &str) -> String {
    k.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.:".contains(c) { c } else { '_' }).collect()
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

    fn submit(&mut self, d: &Decision) -> Outcome {
        let url = format!("{}/products/{}/{}", self.base, d.id, call_of(d.action).name());
        let body = serde_json::json!({ "exchange": d.exchange });
        let r = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.key))
            .header("Idempotency-Key", &safe_key(&d.key))
            .send_json(&body);
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.body_mut().read_json().unwrap_or(serde_json::Value::Null);
                let msg = v["message"].as_str().unwrap_or("").to_string();
                match status {
                    200..=299 => Outcome::Done,
                    503 => Outcome::Lost(msg),
                    422 if d.action == Action::Ripcord => Outcome::Raced(msg),
                    _ => Outcome::Refused(format!("{status} {msg}")),
                }
            }
            Err(e) => Outcome::Lost(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Band;
    use std::collections::BTreeMap;

    #[test]
    fn a_view_becomes_an_observation() {
        let v = ProductView {
            id: "a".into(),
            kind: "lending-fli".into(),
            symbol: "X".into(),
            underlying: "X".into(),
            name: "X".into(),
            seq: 7,
            as_of: 0,
            blocked: Some("WETH price: stale".into()),
            nav_per_token: None,
            equity_usd: None,
            leverage_ratio: None,
            band: Band { min: "1.7".into(), target: "2".into(), max: "2.3".into(), ripcord: "2.7".into() },
            twap_leverage_ratio: None,
            should_rebalance: [("x", "none"), ("y", "iterate"), ("z", "ripcord")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            allowed_callers: vec![],
            anyone_callable: false,
            position: BTreeMap::new(),
            lending_account: BTreeMap::new(),
            venue_account: BTreeMap::new(),
            funding_paid_usd: None,
            risk: BTreeMap::new(),
            pools: BTreeMap::new(),
            prices: BTreeMap::new(),
            supply: "0".into(),
            supply_cap: "0".into(),
            holders: 0,
            supply_equals_balances: true,
        };
        let o = observe(&v);
        assert_eq!((o.id.as_str(), o.seq, o.blocked.is_some()), ("a", 7, true));
        let c: Vec<(&str, Action)> = o.candidates.iter().map(|c| (c.exchange.as_str(), c.action)).collect();
        assert_eq!(c, vec![("y", Action::Iterate), ("z", Action::Ripcord)]);
        assert_eq!(call_of(Action::Iterate), Call::Iterate);
    }
}
