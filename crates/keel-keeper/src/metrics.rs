//! Prometheus metrics for the keeper, served on `--metrics ADDR`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::{Read, Write as IoWrite};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-strategy figures.
#[derive(Debug, Clone, Default)]
pub struct StrategyFigures {
    /// Current leverage ratio (charts only).
    pub leverage: f64,
    /// Last action sent (or decided, in dry-run).
    pub last_action: String,
    /// Refusals and undelivered calls.
    pub failures: u64,
    /// Gas spent, ETH (charts only).
    pub gas_spent_eth: f64,
    /// Last successful call.
    pub last_success: Option<Instant>,
    /// Transactions sent.
    pub sent: u64,
}

/// Everything the keeper counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By strategy name.
    pub strategies: Mutex<BTreeMap<String, StrategyFigures>>,
    /// RPC failures.
    pub rpc_failures: Mutex<u64>,
}

impl Metrics {
    /// Update one strategy's figures.
    pub fn with(&self, name: &str, f: impl FnOnce(&mut StrategyFigures)) {
        f(self.strategies.lock().expect("metrics lock").entry(name.to_string()).or_default());
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = self.strategies.lock().expect("metrics lock");
        let mut gauge = |name: &str, help: &str, f: &dyn Fn(&StrategyFigures) -> f64| {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (k, v) in s.iter() {
                let _ = writeln!(out, "{name}{{strategy=\"{k}\"}} {}", f(v));
            }
        };
        gauge("keel_keeper_leverage_ratio", "Current leverage ratio.", &|v| v.leverage);
        gauge("keel_keeper_failures_total", "Refused or undelivered calls.", &|v| v.failures as f64);
        gauge("keel_keeper_transactions_total", "Transactions sent.", &|v| v.sent as f64);
        gauge("keel_keeper_gas_spent_eth_total", "Gas spent, ETH.", &|v| v.gas_spent_eth);
        gauge("keel_keeper_seconds_since_success", "Seconds since the last successful call (-1: none yet).", &|v| {
            v.last_success.map(|t| t.elapsed().as_secs_f64()).unwrap_or(-1.0)
        });
        let _ = writeln!(
            out,
            "# HELP keel_keeper_last_action Last action, as a label.\n# TYPE keel_keeper_last_action gauge"
        );
        for (k, v) in s.iter() {
            if !v.last_action.is_empty() {
                let _ = writeln!(out, "keel_keeper_last_action{{strategy=\"{k}\",action=\"{}\"}} 1", v.last_action);
            }
        }
        let _ = writeln!(
            out,
            "# HELP keel_keeper_rpc_failures_total JSON-RPC requests that failed.\n# TYPE keel_keeper_rpc_failures_total counter\nkeel_keeper_rpc_failures_total {}",
            self.rpc_failures.lock().expect("metrics lock")
        );
        out
    }
}

/// Serve `/metrics` on `addr` from a background thread. Returns the bound address.
pub fn serve(metrics: Arc<Metrics>, addr: &str) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let body = metrics.render();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(bound)
}
