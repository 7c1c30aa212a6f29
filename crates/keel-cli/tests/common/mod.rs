//! Shared by the `keel serve` tests: start the binary, talk to it.
#![allow(dead_code)]

pub mod browser;

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

/// The `--db`, `--secret-file` and (on first use) `--init` arguments for a test database:
/// SQLite keeps its secret beside the file; PostgreSQL's goes to the temp dir, named after the
/// database.
pub fn db_args(db: &str) -> Vec<String> {
    let mut v = vec!["--db".to_string(), db.to_string()];
    let fresh = if db.starts_with("postgres") {
        let name = db.rsplit('/').next().unwrap_or("pg");
        let secret = std::env::temp_dir().join(format!("{name}.secret"));
        let fresh = !secret.exists();
        v.push("--secret-file".into());
        v.push(secret.display().to_string());
        fresh
    } else {
        !std::path::Path::new(db.strip_prefix("sqlite://").unwrap_or(db)).exists()
    };
    if fresh {
        v.push("--init".into());
    }
    v
}

/// Start `keel serve` on a free port with `db` (created on first use); returns once it listens.
pub fn spawn(db: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("serve")
        .args(db_args(db))
        .args(["--listen", "127.0.0.1:0"])
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
