//! Shared by the `keel serve` tests: start the binary, talk to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The operator key the tests start servers with.
pub const OP: &str = "test-operator-key";

/// A `keel serve` process.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Kill it (SIGKILL) and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `keel serve` on a free port with `db`; returns once it listens.
pub fn spawn(db: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--db", db, "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("KEEL_OPERATOR_KEY", OP)
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keel serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Server { child, base }
}

/// An HTTP client that returns non-2xx responses instead of failing.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// POST JSON with a key and optional idempotency key.
pub fn call(
    a: &ureq::Agent,
    base: &str,
    path: &str,
    key: &str,
    idem: Option<&str>,
    body: Value,
) -> Result<(u16, Value), String> {
    let mut r = a.post(format!("{base}{path}")).header("Authorization", &format!("Bearer {key}"));
    if let Some(i) = idem {
        r = r.header("Idempotency-Key", i);
    }
    let mut resp = r.send_json(&body).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let v = resp.body_mut().read_json::<Value>().map_err(|e| e.to_string())?;
    Ok((status, v))
}

/// GET JSON.
pub fn get(a: &ureq::Agent, url: &str) -> Value {
    a.get(url).call().unwrap().body_mut().read_json::<Value>().unwrap()
}
