//! Helpers for keel's own tests: scratch databases on SQLite and PostgreSQL.
//!
//! PostgreSQL tests read the server from `KEEL_TEST_POSTGRES` (a URL whose role may create
//! databases; `.ci/run` starts a server and sets it). Without it they are skipped, unless
//! `KEEL_REQUIRE_POSTGRES=1`, which makes a missing server a failure (CI sets both).

use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    format!("{tag}_{}_{}_{n}", std::process::id(), t % 1_000_000_000)
}

/// A fresh SQLite URL in a fresh directory under the system temp dir.
pub fn sqlite_url(tag: &str) -> String {
    let dir = std::env::temp_dir().join(unique(&format!("keel_{tag}")));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    format!("sqlite://{}", dir.join("keel.db").display())
}

/// A URL to a freshly created PostgreSQL database, or `None` to skip (see the module docs).
pub fn postgres_url(tag: &str) -> Option<String> {
    let base = match std::env::var("KEEL_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("KEEL_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("KEEL_REQUIRE_POSTGRES=1 but KEEL_TEST_POSTGRES is not set");
            }
            eprintln!("skipping the PostgreSQL half: set KEEL_TEST_POSTGRES=postgres://USER:PASS@HOST/DB");
            return None;
        }
    };
    let name = unique(&format!("keel_{tag}")).to_lowercase();
    let mut c = postgres::Client::connect(&base, postgres::NoTls).expect("connect to KEEL_TEST_POSTGRES");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a scratch database");
    let (head, _) = base.rsplit_once('/').expect("KEEL_TEST_POSTGRES ends in /DBNAME");
    Some(format!("{head}/{name}"))
}

/// Every backend to test: SQLite always, PostgreSQL when configured.
pub fn backends(tag: &str) -> Vec<String> {
    let mut v = vec![sqlite_url(tag)];
    v.extend(postgres_url(tag));
    v
}

/// The store settings for a test database: SQLite keeps its secret and head files beside the
/// file; PostgreSQL's go in the temp dir, named after the database, so a restart finds them.
pub fn store_config(url: &str, init: bool) -> crate::StoreConfig {
    let mut c = crate::StoreConfig::new(url, init);
    if crate::store::sqlite_path(url).is_none() {
        let name = url.rsplit('/').next().unwrap_or("pg");
        c.secret_file = Some(std::env::temp_dir().join(format!("{name}.secret")));
    }
    c
}
