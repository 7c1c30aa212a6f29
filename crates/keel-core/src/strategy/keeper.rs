//! The keeper's policy, shared by every keeper keel runs (the service's, `keel keeper --server`
//! and `keel keeper --rpc`): a pure function from what the keeper observed of each strategy and
//! what it remembers to the calls to make, and a pure fold of each call's outcome into memory.
//!
//! Rules: at most one call per strategy per round, a ripcord before anything else and otherwise
//! the exchange with the largest chunk; nothing on a strategy that is blocked (stale price),
//! whose observed state was already acted on, or whose exchange is backing off after a refusal.
//! A call that was not acknowledged is resent unchanged — same idempotency key — so one
//! decision is never executed twice. Time is passed in (milliseconds on the keeper's clock).

use crate::math::U256;
use std::collections::HashMap;

/// What `shouldRebalance` asks for on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `rebalance(exchange)`.
    Rebalance,
    /// `iterateRebalance(exchange)`.
    Iterate,
    /// `ripcord(exchange)`.
    Ripcord,
}

impl Action {
    /// The name used in logs and URLs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Rebalance => "rebalance",
            Action::Iterate => "iterate",
            Action::Ripcord => "ripcord",
        }
    }

    /// From the reference enum (`1` REBALANCE, `2` ITERATE_REBALANCE, `3` RIPCORD; `0` NONE).
    pub fn from_enum(v: u8) -> Option<Action> {
        match v {
            1 => Some(Action::Rebalance),
            2 => Some(Action::Iterate),
            3 => Some(Action::Ripcord),
            _ => None,
        }
    }
}

/// One exchange the strategy wants called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Exchange name (empty for single-exchange strategies).
    pub exchange: String,
    /// The call.
    pub action: Action,
    /// The chunk it would trade (`getChunkRebalanceNotional`), 0 when unknown.
    pub chunk: U256,
}

/// What the keeper observed of one strategy this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Strategy id (product id or contract address).
    pub id: String,
    /// A number that changes whenever the strategy's state may have (event sequence, block).
    pub seq: u64,
    /// Why nothing may be called now (stale price), if so.
    pub blocked: Option<String>,
    /// What `shouldRebalance` asks for, per exchange (NONE left out).
    pub candidates: Vec<Candidate>,
}

/// A call the keeper decided to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Strategy id.
    pub id: String,
    /// Exchange.
    pub exchange: String,
    /// The call.
    pub action: Action,
    /// The observation it was decided on.
    pub seq: u64,
    /// One key per decision, for idempotency.
    pub key: String,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done (perhaps by an earlier attempt of the same decision).
    Done,
    /// Refused (a revert, a 4xx): not retried with this key; the exchange backs off.
    Refused(String),
    /// Lost another keeper's race (a ripcord that landed first): normal, no back-off.
    Raced(String),
    /// Not delivered or not acknowledged: resent as it is.
    Lost(String),
}

#[derive(Debug, Clone, Default)]
struct Backoff {
    failures: u32,
    until_ms: u64,
}

/// Back-off settings.
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    /// First back-off after a refusal, ms.
    pub base_ms: u64,
    /// Longest back-off, ms.
    pub max_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { base_ms: 2_000, max_ms: 300_000 }
    }
}

/// What the keeper remembers between rounds.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    backoff: HashMap<(String, String), Backoff>,
    acted: HashMap<String, u64>,
    pending: HashMap<String, Decision>,
}

impl Memory {
    /// The decision sent for `id` and not yet acknowledged.
    pub fn pending(&self, id: &str) -> Option<&Decision> {
        self.pending.get(id)
    }

    /// Refusals in a row on `id`'s `exchange`.
    pub fn failures(&self, id: &str, exchange: &str) -> u32 {
        self.backoff.get(&(id.to_string(), exchange.to_string())).map(|b| b.failures).unwrap_or(0)
    }

    /// Milliseconds from `now_ms` until `id`'s `exchange` may be tried again (`None`: now).
    pub fn backoff_left(&self, id: &str, exchange: &str, now_ms: u64) -> Option<u64> {
        self.backoff
            .get(&(id.to_string(), exchange.to_string()))
            .map(|b| b.until_ms.saturating_sub(now_ms))
            .filter(|w| *w > 0)
    }
}

/// What to call now.
pub fn decide(observations: &[Observation], mem: &Memory, now_ms: u64) -> Vec<Decision> {
    let mut out = Vec::new();
    for o in observations {
        if let Some(d) = mem.pending.get(&o.id) {
            out.push(d.clone());
            continue;
        }
        if o.blocked.is_some() || mem.acted.get(&o.id).is_some_and(|s| *s >= o.seq) {
            continue;
        }
        let mut best: Option<&Candidate> = None;
        for c in &o.candidates {
            let b = mem.backoff.get(&(o.id.clone(), c.exchange.clone()));
            if b.is_some_and(|b| b.until_ms > now_ms) {
                continue;
            }
            let rank = |c: &Candidate| (u8::from(c.action == Action::Ripcord), c.chunk);
            if best.is_none_or(|b| rank(c) > rank(b)) {
                best = Some(c);
            }
        }
        if let Some(c) = best {
            out.push(Decision {
                id: o.id.clone(),
                exchange: c.exchange.clone(),
                action: c.action,
                seq: o.seq,
                key: format!("keeper-{}-{}-{}-{}", o.id, c.exchange, c.action.name(), o.seq),
            });
        }
    }
    out
}

/// Fold a call's outcome into memory.
pub fn record(mem: &mut Memory, d: &Decision, outcome: &Outcome, now_ms: u64, cfg: BackoffConfig) {
    let key = (d.id.clone(), d.exchange.clone());
    match outcome {
        Outcome::Done | Outcome::Raced(_) => {
            mem.pending.remove(&d.id);
            mem.acted.insert(d.id.clone(), d.seq);
            mem.backoff.remove(&key);
        }
        Outcome::Refused(_) => {
            mem.pending.remove(&d.id);
            mem.acted.insert(d.id.clone(), d.seq);
            let b = mem.backoff.entry(key).or_default();
            b.failures += 1;
            let wait = cfg.base_ms.saturating_mul(2u64.saturating_pow(b.failures - 1));
            b.until_ms = now_ms + wait.min(cfg.max_ms);
        }
        Outcome::Lost(_) => {
            mem.pending.insert(d.id.clone(), d.clone());
            let b = mem.backoff.entry(key).or_default();
            b.failures += 1;
            b.until_ms = now_ms + cfg.base_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(id: &str, seq: u64, c: &[(&str, Action, u64)], blocked: bool) -> Observation {
        Observation {
            id: id.into(),
            seq,
            blocked: blocked.then(|| "stale".to_string()),
            candidates: c
                .iter()
                .map(|(x, a, chunk)| Candidate { exchange: x.to_string(), action: *a, chunk: U256::from(*chunk) })
                .collect(),
        }
    }

    #[test]
    fn decisions_table() {
        use Action::*;
        type Case = (&'static str, Vec<Observation>, Memory, Vec<(&'static str, &'static str, Action)>);
        let backing_off = {
            let mut m = Memory::default();
            m.backoff.insert(("a".into(), "x".into()), Backoff { failures: 1, until_ms: 10_000 });
            m
        };
        let acted = {
            let mut m = Memory::default();
            m.acted.insert("a".into(), 5);
            m
        };
        let cases: Vec<Case> = vec![
            ("nothing to do", vec![obs("a", 5, &[], false)], Memory::default(), vec![]),
            (
                "rebalance",
                vec![obs("a", 5, &[("x", Rebalance, 1)], false)],
                Memory::default(),
                vec![("a", "x", Rebalance)],
            ),
            (
                "ripcord first",
                vec![obs("a", 5, &[("x", Iterate, 9), ("y", Ripcord, 1)], false)],
                Memory::default(),
                vec![("a", "y", Ripcord)],
            ),
            (
                "largest chunk",
                vec![obs("a", 5, &[("x", Rebalance, 5), ("y", Rebalance, 9), ("z", Rebalance, 7)], false)],
                Memory::default(),
                vec![("a", "y", Rebalance)],
            ),
            ("blocked", vec![obs("a", 5, &[("x", Rebalance, 1)], true)], Memory::default(), vec![]),
            ("already acted on", vec![obs("a", 5, &[("x", Rebalance, 1)], false)], acted, vec![]),
            ("backing off", vec![obs("a", 6, &[("x", Rebalance, 1)], false)], backing_off, vec![]),
            (
                "two strategies",
                vec![obs("a", 5, &[("x", Iterate, 1)], false), obs("b", 5, &[("x", Rebalance, 1)], false)],
                Memory::default(),
                vec![("a", "x", Iterate), ("b", "x", Rebalance)],
            ),
        ];
        for (name, o, mem, want) in cases {
            let got: Vec<(String, String, Action)> =
                decide(&o, &mem, 1_000).into_iter().map(|d| (d.id, d.exchange, d.action)).collect();
            let want: Vec<(String, String, Action)> =
                want.into_iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_lost_call_is_resent_unchanged_a_refusal_backs_off_a_race_does_not() {
        let cfg = BackoffConfig::default();
        let mut mem = Memory::default();
        let o = vec![obs("a", 5, &[("x", Action::Rebalance, 1)], false)];
        let d = decide(&o, &mem, 0).remove(0);
        record(&mut mem, &d, &Outcome::Lost("timeout".into()), 0, cfg);
        let newer = vec![obs("a", 9, &[("x", Action::Rebalance, 1)], false)];
        assert_eq!(decide(&newer, &mem, 5_000), vec![d.clone()], "resent with the same key");
        record(&mut mem, &d, &Outcome::Refused("Cooldown not elapsed".into()), 5_000, cfg);
        assert!(decide(&newer, &mem, 6_000).is_empty(), "backing off");
        let later = decide(&newer, &mem, 9_001);
        assert_eq!(later.len(), 1);
        assert_ne!(later[0].key, d.key);
        record(&mut mem, &later[0], &Outcome::Raced("another keeper's ripcord landed first".into()), 9_001, cfg);
        assert_eq!(mem.failures("a", "x"), 0, "a lost race is not a failure");
    }
}
