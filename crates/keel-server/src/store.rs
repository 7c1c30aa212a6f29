//! The event log and its snapshots, on SQLite (WAL, full sync) or PostgreSQL.
//!
//! One table of events — each accepted command with its caller, idempotency key, time and
//! acknowledgement, appended a batch per transaction — and one table of snapshots of the
//! engine, so start-up replays only the tail. A unique index on the idempotency scope makes
//! "none twice" a property of the database as well as of the engine.

use crate::engine::{Engine, IdempotencyRecord, base_scope};
use crate::error::StoreError;
use crate::model::{Request, StoredEvent};

/// What start-up reads: the newest snapshot and the events after it.
pub struct Loaded {
    /// The engine at the snapshot (a fresh engine without one).
    pub engine: Engine,
    /// Events after the snapshot, in order.
    pub tail: Vec<StoredEvent>,
}

/// An event log.
pub trait Store: Send {
    /// Create the tables if needed.
    fn migrate(&mut self) -> Result<(), StoreError>;
    /// Append events in one transaction: all are durable when this returns, or none is.
    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// Save a snapshot of the engine at its sequence number.
    fn save_snapshot(&mut self, engine: &Engine) -> Result<(), StoreError>;
    /// The newest snapshot and the events after it.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Events after `after`, oldest first, at most `limit`, optionally of one product.
    fn events(&mut self, product: Option<&str>, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
    /// Housekeeping off the writer's path, called about once a second by the snapshot thread
    /// (SQLite: a passive WAL checkpoint, so the writer's commits never copy much).
    fn maintain(&mut self) {}
    /// Housekeeping the writer itself does between batches, every 400 ms (SQLite: a
    /// checkpoint that completes because no commit runs meanwhile, so the WAL restarts).
    fn checkpoint(&mut self) {}
    /// One event.
    fn event(&mut self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.events(None, seq.saturating_sub(1), 1)?.into_iter().find(|e| e.seq == seq))
    }
    /// Which database this is, for logs.
    fn describe(&self) -> String;
}

fn decode(seq: i64, at: i64, request: &str, status: i64, result: &str) -> Result<StoredEvent, StoreError> {
    let request: Request =
        serde_json::from_str(request).map_err(|e| StoreError::Corrupt(format!("event {seq} request: {e}")))?;
    let result = serde_json::from_str(result).map_err(|e| StoreError::Corrupt(format!("event {seq} result: {e}")))?;
    Ok(StoredEvent { seq: seq as u64, at: at as u64, request, status: status as u16, result })
}

fn encode(e: &StoredEvent) -> Result<(String, String), StoreError> {
    let r = serde_json::to_string(&e.request).map_err(|x| StoreError::Corrupt(x.to_string()))?;
    let s = serde_json::to_string(&e.result).map_err(|x| StoreError::Corrupt(x.to_string()))?;
    Ok((r, s))
}

fn decode_snapshot(seq: i64, text: &str) -> Result<Engine, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("snapshot at {seq}: {e}")))
}

/// The tables, with `int` the 64-bit integer type (SQLite's `INTEGER PRIMARY KEY` is the rowid).
fn schema(int: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS events (
            seq {int} PRIMARY KEY,
            at {int} NOT NULL,
            product TEXT,
            kind TEXT NOT NULL,
            idem TEXT,
            req_hash TEXT,
            request TEXT NOT NULL,
            status INTEGER NOT NULL,
            result TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_product ON events(product, seq);
        CREATE UNIQUE INDEX IF NOT EXISTS events_idem ON events(idem) WHERE idem IS NOT NULL;
        CREATE TABLE IF NOT EXISTS snapshots (seq {int} PRIMARY KEY, state TEXT NOT NULL);"
    )
}

/// Open a store from a `--db` URL: `sqlite://PATH` (or a bare path) or `postgres://...`.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PgStore::connect(url)?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url("sqlite:// needs a file path, e.g. sqlite://keel.db".into()));
        }
        Ok(Box::new(SqliteStore::open(path)?))
    } else if url.contains("://") {
        Err(StoreError::Url(format!("--db {url}: use sqlite://PATH or postgres://USER:PASS@HOST/DB")))
    } else {
        Ok(Box::new(SqliteStore::open(url)?))
    }
}

// ------------------------------------------------------------------------------------ SQLite

/// SQLite in WAL mode with `synchronous=FULL`: a commit is on disk when it returns.
pub struct SqliteStore {
    conn: rusqlite::Connection,
    path: String,
}

impl SqliteStore {
    /// Open (creating) the database file.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // checkpoints run from the snapshot thread ([`Store::maintain`]), not inside commits
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let mut s = SqliteStore { conn, path: path.to_string() };
        s.migrate()?;
        Ok(s)
    }
}

impl Store for SqliteStore {
    fn migrate(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(&schema("INTEGER"))?;
        Ok(())
    }

    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO events (seq, at, product, kind, idem, req_hash, request, status, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in events {
                let (req, res) = encode(e)?;
                st.execute(rusqlite::params![
                    e.seq as i64,
                    e.at as i64,
                    e.request.command.product(),
                    e.request.command.kind(),
                    e.request.idempotency.as_ref().map(|i| i.scope.as_str()),
                    e.request.idempotency.as_ref().map(|i| i.request_hash.as_str()),
                    req,
                    e.status as i64,
                    res
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn maintain(&mut self) {
        // a passive checkpoint copies what it can without blocking the writer; under steady
        // load it never quite catches up, so the writer finishes the job between batches
        // ([`Store::checkpoint`]) with only a few frames left to copy
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    fn checkpoint(&mut self) {
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    fn save_snapshot(&mut self, engine: &Engine) -> Result<(), StoreError> {
        let text = serde_json::to_string(engine).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO snapshots (seq, state) VALUES (?1, ?2)",
            rusqlite::params![engine.seq as i64, text],
        )?;
        tx.execute("DELETE FROM snapshots WHERE seq < ?1", [engine.seq as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        let snap: Option<(i64, String)> = {
            let mut st = self.conn.prepare("SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1")?;
            let mut rows = st.query([])?;
            match rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            }
        };
        let mut engine = match &snap {
            Some((seq, text)) => decode_snapshot(*seq, text)?,
            None => Engine::new(),
        };
        {
            let mut st = self.conn.prepare(
                "SELECT idem, req_hash, seq, status, at FROM events WHERE idem IS NOT NULL AND seq <= ?1 ORDER BY seq",
            )?;
            let mut rows = st.query([engine.seq as i64])?;
            while let Some(r) = rows.next()? {
                let rec = IdempotencyRecord {
                    request_hash: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    seq: r.get::<_, i64>(2)? as u64,
                    status: r.get::<_, i64>(3)? as u16,
                    at: r.get::<_, i64>(4)? as u64,
                };
                let scope: String = r.get(0)?;
                engine.idempotency.insert(base_scope(&scope).to_string(), rec);
            }
        }
        let mut tail = Vec::new();
        let mut st =
            self.conn.prepare("SELECT seq, at, request, status, result FROM events WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = st.query([engine.seq as i64])?;
        while let Some(r) = rows.next()? {
            tail.push(decode(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?, r.get(3)?, &r.get::<_, String>(4)?)?);
        }
        Ok(Loaded { engine, tail })
    }

    fn events(&mut self, product: Option<&str>, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        let mut st = self.conn.prepare_cached(
            "SELECT seq, at, request, status, result FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR product = ?2) ORDER BY seq LIMIT ?3",
        )?;
        let mut rows = st.query(rusqlite::params![after as i64, product, limit as i64])?;
        while let Some(r) = rows.next()? {
            out.push(decode(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?, r.get(3)?, &r.get::<_, String>(4)?)?);
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("sqlite://{} (WAL, synchronous=FULL)", self.path)
    }
}

// -------------------------------------------------------------------------------- PostgreSQL

/// PostgreSQL (15 or newer); commits wait for the WAL flush (`synchronous_commit = on`).
pub struct PgStore {
    client: postgres::Client,
    url: String,
}

impl PgStore {
    /// Connect.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let client = postgres::Client::connect(url, postgres::NoTls)?;
        let mut s = PgStore { client, url: url.to_string() };
        s.migrate()?;
        Ok(s)
    }
}

impl Store for PgStore {
    fn migrate(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute(&format!("SET synchronous_commit = on;\n{}", schema("BIGINT")))?;
        Ok(())
    }

    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        // one round trip per batch: the rows as arrays, unnested into one INSERT
        let n = events.len();
        let (mut seq, mut at, mut product, mut kind, mut idem, mut hash, mut req, mut status, mut res) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events {
            let (r, s) = encode(e)?;
            seq.push(e.seq as i64);
            at.push(e.at as i64);
            product.push(e.request.command.product().map(str::to_string));
            kind.push(e.request.command.kind().to_string());
            idem.push(e.request.idempotency.as_ref().map(|i| i.scope.clone()));
            hash.push(e.request.idempotency.as_ref().map(|i| i.request_hash.clone()));
            req.push(r);
            status.push(e.status as i32);
            res.push(s);
        }
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO events (seq, at, product, kind, idem, req_hash, request, status, result)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::INTEGER[], $9::TEXT[])",
            &[&seq, &at, &product, &kind, &idem, &hash, &req, &status, &res],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn save_snapshot(&mut self, engine: &Engine) -> Result<(), StoreError> {
        let text = serde_json::to_string(engine).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO snapshots (seq, state) VALUES ($1, $2) ON CONFLICT (seq) DO UPDATE SET state = EXCLUDED.state",
            &[&(engine.seq as i64), &text],
        )?;
        tx.execute("DELETE FROM snapshots WHERE seq < $1", &[&(engine.seq as i64)])?;
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        let snap = self.client.query_opt("SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1", &[])?;
        let mut engine = match snap {
            Some(r) => decode_snapshot(r.get(0), r.get::<_, &str>(1))?,
            None => Engine::new(),
        };
        for r in self.client.query(
            "SELECT idem, req_hash, seq, status, at FROM events WHERE idem IS NOT NULL AND seq <= $1 ORDER BY seq",
            &[&(engine.seq as i64)],
        )? {
            let rec = IdempotencyRecord {
                request_hash: r.get::<_, Option<String>>(1).unwrap_or_default(),
                seq: r.get::<_, i64>(2) as u64,
                status: r.get::<_, i32>(3) as u16,
                at: r.get::<_, i64>(4) as u64,
            };
            let scope: String = r.get(0);
            engine.idempotency.insert(base_scope(&scope).to_string(), rec);
        }
        let rows = self.client.query(
            "SELECT seq, at, request, status, result FROM events WHERE seq > $1 ORDER BY seq",
            &[&(engine.seq as i64)],
        )?;
        let mut tail = Vec::with_capacity(rows.len());
        for r in rows {
            tail.push(decode(r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) as i64, r.get(4))?);
        }
        Ok(Loaded { engine, tail })
    }

    fn events(&mut self, product: Option<&str>, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.client.query(
            "SELECT seq, at, request, status, result FROM events
             WHERE seq > $1 AND ($2::TEXT IS NULL OR product = $2) ORDER BY seq LIMIT $3",
            &[&(after as i64), &product, &(limit as i64)],
        )?;
        rows.iter().map(|r| decode(r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) as i64, r.get(4))).collect()
    }

    fn describe(&self) -> String {
        let redacted = match (self.url.find("://"), self.url.rfind('@')) {
            (Some(a), Some(b)) if b > a => format!("{}://***{}", &self.url[..a], &self.url[b..]),
            _ => self.url.clone(),
        };
        format!("{redacted} (synchronous_commit=on)")
    }
}
