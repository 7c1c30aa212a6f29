//! The event log and its snapshots, on SQLite (WAL, full sync) or PostgreSQL.
//!
//! One table of events — each accepted command with its caller, idempotency key, time and
//! acknowledgement, appended a batch per transaction — and one table of snapshots of the
//! engine, so start-up replays only the tail. A unique index on the idempotency scope makes
//! "none twice" a property of the database as well as of the engine; idempotency keys are
//! looked up there, never held in memory.
//!
//! The log is verifiable: sequence numbers are contiguous from 1 and every event carries
//! `hash = SHA-256(previous hash, seq, at, status, request, result)`; a snapshot records the
//! chain hash at its sequence number and the hash of its own text. [`Store::load`] checks all
//! of it and refuses a log with a hole, an edited row or a snapshot that does not belong to it.
//!
//! A database is created only on request ([`OpenMode::Create`], `keel serve --init`): starting
//! against a missing one is an error, never a silent fresh start.

use crate::engine::{Engine, IdempotencyRecord, base_scope};
use crate::error::StoreError;
use crate::model::{Request, StoredEvent, sha256_hex};
use std::collections::HashMap;

/// The log format this version writes and reads.
pub const FORMAT: &str = "2";

/// The chain hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last event of the log: its sequence number and chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number (0: empty log).
    pub seq: u64,
    /// Chain hash ([`GENESIS`] for an empty log).
    pub hash: String,
}

impl Default for Head {
    fn default() -> Self {
        Head { seq: 0, hash: GENESIS.to_string() }
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this product's.
    pub product: Option<String>,
    /// Kinds to take (or, with `exclude`, to leave out); empty: every kind.
    pub kinds: Vec<String>,
    /// Leave `kinds` out instead of taking only them.
    pub exclude: bool,
    /// After this sequence number.
    pub after: u64,
    /// At most this many.
    pub limit: u32,
}

impl EventFilter {
    /// The kinds as `,a,b,` for a `position`/`instr` test, or `None` for every kind.
    fn kinds_list(&self) -> Option<String> {
        (!self.kinds.is_empty()).then(|| format!(",{},", self.kinds.join(",")))
    }
}

/// The chain hash of an event from the previous hash and the event's stored text.
pub fn link(prev: &str, seq: u64, at: u64, status: u16, request: &str, result: &str) -> String {
    let mut buf = String::with_capacity(prev.len() + request.len() + result.len() + 48);
    use std::fmt::Write;
    let _ = write!(buf, "{prev}\n{seq}\n{at}\n{status}\n{request}\n{result}");
    sha256_hex(buf.as_bytes())
}

/// Create a new database, or open an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the database (the file for SQLite, the tables for PostgreSQL); refuse if it
    /// already holds a keel log.
    Create,
    /// Open an existing keel log; refuse if there is none.
    Existing,
}

/// What start-up reads: the newest snapshot and the events after it, all verified.
pub struct Loaded {
    /// The engine at the snapshot (a fresh engine without one).
    pub engine: Engine,
    /// Events after the snapshot, in order.
    pub tail: Vec<StoredEvent>,
    /// The last event.
    pub head: Head,
}

/// An event log.
pub trait Store: Send {
    /// Append events in one transaction: all are durable when this returns, or none is. Their
    /// sequence numbers must follow the head; the store computes their chain hashes.
    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError>;
    /// The last event appended or loaded.
    fn head(&self) -> Head;
    /// Save a snapshot of the engine at its sequence number; `chain` is the chain hash of that
    /// event.
    fn save_snapshot(&mut self, engine: &Engine, chain: &str) -> Result<(), StoreError>;
    /// Verify the whole log and return the newest snapshot and the events after it.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Events after `after`, oldest first, at most `limit`, optionally of one product.
    fn events(&mut self, product: Option<&str>, after: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(&EventFilter { product: product.map(str::to_string), after, limit, ..EventFilter::default() })
    }
    /// Events after `f.after`, of `f.product` (or any) whose kind is in `f.kinds` (or, with
    /// `f.exclude`, is not; every kind when empty), oldest first, at most `f.limit`.
    fn events_where(&mut self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError>;
    /// The chain hash of event `seq`, if the log has it.
    fn hash_at(&mut self, seq: u64) -> Result<Option<String>, StoreError>;
    /// The latest use of each idempotency scope (by [`base_scope`]) among `scopes`.
    fn idempotency(&mut self, scopes: &[String]) -> Result<HashMap<String, IdempotencyRecord>, StoreError>;
    /// Housekeeping off the writer's path, called about once a second by the snapshot thread
    /// (SQLite: a passive WAL checkpoint, so the writer's commits never copy much).
    fn maintain(&mut self) {}
    /// Housekeeping the writer itself does between batches, every 400 ms (SQLite: a
    /// checkpoint that completes because no commit runs meanwhile, so the WAL restarts).
    /// An error means the database can no longer be trusted (its file was removed or
    /// replaced): the writer stops.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Before a clean exit: SQLite folds the WAL into the database file.
    fn close(&mut self) {}
    /// Reconnect after a lost connection (PostgreSQL); SQLite cannot.
    fn reconnect(&mut self) -> Result<(), StoreError> {
        Err(StoreError::Corrupt("this store cannot reconnect".into()))
    }
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

/// A stored row, ready to insert.
struct Row {
    seq: i64,
    at: i64,
    product: Option<String>,
    kind: &'static str,
    idem: Option<String>,
    idem_base: Option<String>,
    req_hash: Option<String>,
    request: String,
    status: i64,
    result: String,
    hash: String,
}

/// The rows of a batch with their chain hashes, and the head after them.
fn rows(head: &Head, events: &[StoredEvent]) -> Result<(Vec<Row>, Head), StoreError> {
    let mut prev = head.clone();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if e.seq != prev.seq + 1 {
            return Err(StoreError::Corrupt(format!(
                "event {} does not follow the log's last event {} (writer out of step)",
                e.seq, prev.seq
            )));
        }
        let request = serde_json::to_string(&e.request).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let result = serde_json::to_string(&e.result).map_err(|x| StoreError::Corrupt(x.to_string()))?;
        let hash = link(&prev.hash, e.seq, e.at, e.status, &request, &result);
        let idem = e.request.idempotency.as_ref();
        out.push(Row {
            seq: e.seq as i64,
            at: e.at as i64,
            product: e.request.command.product().map(str::to_string),
            kind: e.request.command.kind(),
            idem: idem.map(|i| i.scope.clone()),
            idem_base: idem.map(|i| base_scope(&i.scope).to_string()),
            req_hash: idem.map(|i| i.request_hash.clone()),
            request,
            status: e.status as i64,
            result,
            hash: hash.clone(),
        });
        prev = Head { seq: e.seq, hash };
    }
    Ok((out, prev))
}

/// Checks the chain while the log is streamed in order, keeping the events after the snapshot.
struct Verifier {
    head: Head,
    snapshot: Option<(u64, String)>,
    snapshot_ok: bool,
    keep_after: u64,
    tail: Vec<StoredEvent>,
}

impl Verifier {
    fn new(snapshot: Option<(u64, String)>) -> Self {
        let keep_after = snapshot.as_ref().map(|s| s.0).unwrap_or(0);
        Verifier { head: Head::default(), snapshot_ok: snapshot.is_none(), snapshot, keep_after, tail: Vec::new() }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        seq: i64,
        at: i64,
        request: &str,
        status: i64,
        result: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let seq_u = seq as u64;
        if seq < 1 || seq_u != self.head.seq + 1 {
            return Err(StoreError::Broken {
                seq: self.head.seq + 1,
                detail: format!(
                    "event {} is missing (the next row is event {seq}): the log has a hole",
                    self.head.seq + 1
                ),
            });
        }
        let want = link(&self.head.hash, seq_u, at as u64, status as u16, request, result);
        if want != hash {
            return Err(StoreError::Broken {
                seq: seq_u,
                detail: "its content does not match its chain hash: the row was edited or the chain before it was"
                    .into(),
            });
        }
        if let Some((s, chain)) = &self.snapshot
            && *s == seq_u
        {
            if chain != hash {
                return Err(StoreError::Broken {
                    seq: seq_u,
                    detail: "the snapshot at this event was taken from another log (its chain hash differs)".into(),
                });
            }
            self.snapshot_ok = true;
        }
        if seq_u > self.keep_after {
            self.tail.push(decode(seq, at, request, status, result)?);
        }
        self.head = Head { seq: seq_u, hash: hash.to_string() };
        Ok(())
    }

    fn finish(self, engine: Engine) -> Result<Loaded, StoreError> {
        if !self.snapshot_ok {
            let s = self.snapshot.map(|s| s.0).unwrap_or(0);
            return Err(StoreError::Broken {
                seq: s,
                detail: format!(
                    "the snapshot is at event {s} but the log ends at event {}: events were removed (rolled back)",
                    self.head.seq
                ),
            });
        }
        Ok(Loaded { engine, tail: self.tail, head: self.head })
    }
}

fn decode_snapshot(seq: i64, text: &str, state_hash: &str) -> Result<Engine, StoreError> {
    if sha256_hex(text.as_bytes()) != state_hash {
        return Err(StoreError::Broken {
            seq: seq as u64,
            detail: "the snapshot's text does not match its hash: it was edited".into(),
        });
    }
    let e: Engine = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("snapshot at {seq}: {e}")))?;
    if e.seq != seq as u64 {
        return Err(StoreError::Broken { seq: seq as u64, detail: format!("the snapshot holds event {}", e.seq) });
    }
    Ok(e)
}

/// The tables, with `int` the 64-bit integer type (SQLite's `INTEGER PRIMARY KEY` is the rowid).
/// PostgreSQL indexes `idem_base` for its batch lookup; SQLite finds a scope's uses on the unique
/// `idem` index (`scope` itself, or the range `scope@…` of reuses after expiry), which keeps a
/// second index out of every commit.
fn schema(int: &str, base_index: bool) -> String {
    let base_index = if base_index {
        "CREATE INDEX events_idem_base ON events(idem_base, seq) WHERE idem_base IS NOT NULL;"
    } else {
        ""
    };
    format!(
        "CREATE TABLE keel_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events (
            seq {int} PRIMARY KEY,
            at {int} NOT NULL,
            product TEXT,
            kind TEXT NOT NULL,
            idem TEXT,
            idem_base TEXT,
            req_hash TEXT,
            request TEXT NOT NULL,
            status INTEGER NOT NULL,
            result TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX events_product ON events(product, seq);
        CREATE UNIQUE INDEX events_idem ON events(idem) WHERE idem IS NOT NULL;
        {base_index}
        CREATE TABLE snapshots (seq {int} PRIMARY KEY, state TEXT NOT NULL, chain TEXT NOT NULL, state_hash TEXT NOT NULL);
        INSERT INTO keel_meta (key, value) VALUES ('format', '{FORMAT}');"
    )
}

fn format_error(found: Option<String>, has_events: bool, what: &str) -> StoreError {
    match (found, has_events) {
        (Some(f), _) => StoreError::Format(format!(
            "{what} holds a keel log of format {f}; this keel reads format {FORMAT}. Use the keel that wrote it"
        )),
        (None, true) => StoreError::Format(format!(
            "{what} holds a log written by an earlier keel (no hash chain, unkeyed key hashes); this keel \
             reads format {FORMAT} only. Start a new database with --init"
        )),
        (None, false) => StoreError::Missing(format!(
            "{what} holds no keel log; start with --init to create a new one (creating a database is never implicit)"
        )),
    }
}

/// Open a store from a `--db` URL: `sqlite://PATH` (or a bare path) or `postgres://...`.
pub fn open(url: &str, mode: OpenMode) -> Result<Box<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(PgStore::connect(url, mode)?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url("sqlite:// needs a file path, e.g. sqlite://keel.db".into()));
        }
        Ok(Box::new(SqliteStore::open(path, mode)?))
    } else if url.contains("://") {
        Err(StoreError::Url(format!("--db {url}: use sqlite://PATH or postgres://USER:PASS@HOST/DB")))
    } else {
        Ok(Box::new(SqliteStore::open(url, mode)?))
    }
}

/// The file path of an SQLite URL (`None` for PostgreSQL).
pub fn sqlite_path(url: &str) -> Option<&str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        None
    } else {
        Some(url.strip_prefix("sqlite://").unwrap_or(url))
    }
}

// ------------------------------------------------------------------------------------ SQLite

/// The identity of a file: device and inode, to notice it being removed or replaced.
#[cfg(unix)]
fn file_id(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// SQLite in WAL mode with `synchronous=FULL`: a commit is on disk when it returns.
pub struct SqliteStore {
    conn: rusqlite::Connection,
    path: String,
    id: Option<(u64, u64)>,
    head: Head,
}

impl SqliteStore {
    /// Open the database file: create it with [`OpenMode::Create`], refuse a missing one with
    /// [`OpenMode::Existing`].
    pub fn open(path: &str, mode: OpenMode) -> Result<Self, StoreError> {
        let exists = std::path::Path::new(path).exists();
        if mode == OpenMode::Existing && !exists {
            return Err(StoreError::Missing(format!(
                "no database at {path}; start with --init to create a new one (creating a database is never implicit)"
            )));
        }
        use rusqlite::OpenFlags as F;
        let flags = F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_NO_MUTEX | F::SQLITE_OPEN_URI;
        let flags = if mode == OpenMode::Create { flags | F::SQLITE_OPEN_CREATE } else { flags };
        let conn = rusqlite::Connection::open_with_flags(path, flags)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // checkpoints run from the snapshot thread ([`Store::maintain`]), not inside commits
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let table = |name: &str| -> Result<bool, StoreError> {
            Ok(conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )? > 0)
        };
        let (has_meta, has_events) = (table("keel_meta")?, table("events")?);
        let what = format!("sqlite://{path}");
        match (mode, has_meta) {
            (OpenMode::Create, true) => {
                return Err(StoreError::Exists(format!("{what} already holds a keel log; start without --init")));
            }
            (OpenMode::Create, false) if has_events => return Err(format_error(None, true, &what)),
            (OpenMode::Create, false) => conn.execute_batch(&format!("BEGIN; {} COMMIT;", schema("INTEGER", false)))?,
            (OpenMode::Existing, false) => return Err(format_error(None, has_events, &what)),
            (OpenMode::Existing, true) => {
                let f: Option<String> =
                    conn.query_row("SELECT value FROM keel_meta WHERE key = 'format'", [], |r| r.get(0)).ok();
                if f.as_deref() != Some(FORMAT) {
                    return Err(format_error(f, true, &what));
                }
            }
        }
        let head = conn
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok(Head { seq: r.get::<_, i64>(0)? as u64, hash: r.get(1)? })
            })
            .unwrap_or_default();
        Ok(SqliteStore { conn, path: path.to_string(), id: file_id(path), head })
    }

    /// Refuse to go on when the database file was removed or replaced under the service.
    fn check_file(&self) -> Result<(), StoreError> {
        if file_id(&self.path) != self.id {
            return Err(StoreError::Replaced(format!(
                "the database file {} was removed or replaced while the service ran; nothing more is written to it. \
                 Put the original back (or restore a backup) and restart",
                self.path
            )));
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.check_file()?;
        let (rows, head) = rows(&self.head, events)?;
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO events (seq, at, product, kind, idem, idem_base, req_hash, request, status, result, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for r in &rows {
                st.execute(rusqlite::params![
                    r.seq,
                    r.at,
                    r.product,
                    r.kind,
                    r.idem,
                    // SQLite looks scopes up on `idem` itself (see `schema`)
                    None::<&str>,
                    r.req_hash,
                    r.request,
                    r.status,
                    r.result,
                    r.hash
                ])?;
            }
        }
        tx.commit()?;
        self.head = head;
        Ok(())
    }

    fn head(&self) -> Head {
        self.head.clone()
    }

    fn maintain(&mut self) {
        // a passive checkpoint copies what it can without blocking the writer; under steady
        // load it never quite catches up, so the writer finishes the job between batches
        // ([`Store::checkpoint`]) with only a few frames left to copy
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.check_file()?;
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        Ok(())
    }

    fn close(&mut self) {
        if self.check_file().is_ok()
            && let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "final WAL checkpoint failed");
        }
    }

    fn save_snapshot(&mut self, engine: &Engine, chain: &str) -> Result<(), StoreError> {
        self.check_file()?;
        let text = serde_json::to_string(engine).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let state_hash = sha256_hex(text.as_bytes());
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO snapshots (seq, state, chain, state_hash) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![engine.seq as i64, text, chain, state_hash],
        )?;
        tx.execute("DELETE FROM snapshots WHERE seq < ?1", [engine.seq as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        let snap: Option<(i64, String, String, String)> = self
            .conn
            .query_row("SELECT seq, state, chain, state_hash FROM snapshots ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .ok();
        let engine = match &snap {
            Some((seq, text, _, h)) => decode_snapshot(*seq, text, h)?,
            None => Engine::new(),
        };
        let mut v = Verifier::new(snap.map(|s| (s.0 as u64, s.2)));
        let mut st = self.conn.prepare("SELECT seq, at, request, status, result, hash FROM events ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            v.row(
                r.get(0)?,
                r.get(1)?,
                r.get_ref(2)?.as_str().map_err(|e| StoreError::Corrupt(e.to_string()))?,
                r.get(3)?,
                r.get_ref(4)?.as_str().map_err(|e| StoreError::Corrupt(e.to_string()))?,
                r.get_ref(5)?.as_str().map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )?;
        }
        let loaded = v.finish(engine)?;
        self.head = loaded.head.clone();
        Ok(loaded)
    }

    fn events_where(&mut self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        let mut st = self.conn.prepare_cached(
            "SELECT seq, at, request, status, result FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR product = ?2)
               AND (?3 IS NULL OR (instr(?3, ',' || kind || ',') > 0) = ?4)
             ORDER BY seq LIMIT ?5",
        )?;
        let after = i64::try_from(f.after).unwrap_or(i64::MAX);
        let mut rows = st.query(rusqlite::params![after, f.product, f.kinds_list(), !f.exclude, f.limit as i64])?;
        while let Some(r) = rows.next()? {
            out.push(decode(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?, r.get(3)?, &r.get::<_, String>(4)?)?);
        }
        Ok(out)
    }

    fn hash_at(&mut self, seq: u64) -> Result<Option<String>, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        Ok(self.conn.query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| r.get(0)).ok())
    }

    fn idempotency(&mut self, scopes: &[String]) -> Result<HashMap<String, IdempotencyRecord>, StoreError> {
        let mut out = HashMap::with_capacity(scopes.len());
        // two probes of the unique index: the scope as first used, and its reuses `scope@SEQ`
        // ('@' sorts just before 'A'); the latest use wins
        let mut st = self.conn.prepare_cached(
            "SELECT req_hash, seq, status, at FROM (
                SELECT req_hash, seq, status, at FROM events WHERE idem = ?1
                UNION ALL
                SELECT req_hash, seq, status, at FROM events WHERE idem > ?2 AND idem < ?3
             ) ORDER BY seq DESC LIMIT 1",
        )?;
        for s in scopes {
            let mut rows = st.query([s.clone(), format!("{s}@"), format!("{s}A")])?;
            if let Some(r) = rows.next()? {
                out.insert(
                    s.clone(),
                    IdempotencyRecord {
                        request_hash: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        seq: r.get::<_, i64>(1)? as u64,
                        status: r.get::<_, i64>(2)? as u16,
                        at: r.get::<_, i64>(3)? as u64,
                    },
                );
            }
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
    head: Head,
}

impl PgStore {
    /// Connect; create the tables with [`OpenMode::Create`], refuse a database without a keel
    /// log with [`OpenMode::Existing`].
    pub fn connect(url: &str, mode: OpenMode) -> Result<Self, StoreError> {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        client.batch_execute("SET synchronous_commit = on")?;
        let table = |c: &mut postgres::Client, name: &str| -> Result<bool, StoreError> {
            Ok(c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])?.get(0))
        };
        let (has_meta, has_events) = (table(&mut client, "keel_meta")?, table(&mut client, "events")?);
        let what = redact(url);
        match (mode, has_meta) {
            (OpenMode::Create, true) => {
                return Err(StoreError::Exists(format!("{what} already holds a keel log; start without --init")));
            }
            (OpenMode::Create, false) if has_events => return Err(format_error(None, true, &what)),
            (OpenMode::Create, false) => {
                let mut tx = client.transaction()?;
                tx.batch_execute(&schema("BIGINT", true))?;
                tx.commit()?;
            }
            (OpenMode::Existing, false) => return Err(format_error(None, has_events, &what)),
            (OpenMode::Existing, true) => {
                let f: Option<String> =
                    client.query_opt("SELECT value FROM keel_meta WHERE key = 'format'", &[])?.map(|r| r.get(0));
                if f.as_deref() != Some(FORMAT) {
                    return Err(format_error(f, true, &what));
                }
            }
        }
        let mut s = PgStore { client, url: url.to_string(), head: Head::default() };
        s.head = s.read_head()?;
        Ok(s)
    }

    fn read_head(&mut self) -> Result<Head, StoreError> {
        Ok(self
            .client
            .query_opt("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", &[])?
            .map(|r| Head { seq: r.get::<_, i64>(0) as u64, hash: r.get(1) })
            .unwrap_or_default())
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***{}", &url[..a], &url[b..]),
        _ => url.to_string(),
    }
}

impl Store for PgStore {
    fn append(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let (rows, head) = rows(&self.head, events)?;
        // one round trip per batch: the rows as arrays, unnested into one INSERT
        let n = rows.len();
        let (
            mut seq,
            mut at,
            mut product,
            mut kind,
            mut idem,
            mut base,
            mut hash_r,
            mut req,
            mut status,
            mut res,
            mut hash,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
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
        for r in rows {
            seq.push(r.seq);
            at.push(r.at);
            product.push(r.product);
            kind.push(r.kind.to_string());
            idem.push(r.idem);
            base.push(r.idem_base);
            hash_r.push(r.req_hash);
            req.push(r.request);
            status.push(r.status as i32);
            res.push(r.result);
            hash.push(r.hash);
        }
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO events (seq, at, product, kind, idem, idem_base, req_hash, request, status, result, hash)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::TEXT[], $11::TEXT[])",
            &[&seq, &at, &product, &kind, &idem, &base, &hash_r, &req, &status, &res, &hash],
        )?;
        tx.commit()?;
        self.head = head;
        Ok(())
    }

    fn head(&self) -> Head {
        self.head.clone()
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)?;
        client.batch_execute("SET synchronous_commit = on")?;
        self.client = client;
        self.head = self.read_head()?;
        Ok(())
    }

    fn save_snapshot(&mut self, engine: &Engine, chain: &str) -> Result<(), StoreError> {
        let text = serde_json::to_string(engine).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let state_hash = sha256_hex(text.as_bytes());
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO snapshots (seq, state, chain, state_hash) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO UPDATE SET state = EXCLUDED.state, chain = EXCLUDED.chain, state_hash = EXCLUDED.state_hash",
            &[&(engine.seq as i64), &text, &chain, &state_hash],
        )?;
        tx.execute("DELETE FROM snapshots WHERE seq < $1", &[&(engine.seq as i64)])?;
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StoreError> {
        let snap = self
            .client
            .query_opt("SELECT seq, state, chain, state_hash FROM snapshots ORDER BY seq DESC LIMIT 1", &[])?;
        let (engine, snap) = match snap {
            Some(r) => {
                let seq: i64 = r.get(0);
                (decode_snapshot(seq, r.get::<_, &str>(1), r.get::<_, &str>(3))?, Some((seq as u64, r.get(2))))
            }
            None => (Engine::new(), None),
        };
        let mut v = Verifier::new(snap);
        // stream the log in pages so memory holds one page (and the tail) at a time
        let mut after = 0i64;
        loop {
            let rows = self.client.query(
                "SELECT seq, at, request, status, result, hash FROM events WHERE seq > $1 ORDER BY seq LIMIT 10000",
                &[&after],
            )?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                after = r.get(0);
                v.row(r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) as i64, r.get(4), r.get(5))?;
            }
        }
        let loaded = v.finish(engine)?;
        self.head = loaded.head.clone();
        Ok(loaded)
    }

    fn events_where(&mut self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let after = i64::try_from(f.after).unwrap_or(i64::MAX);
        let rows = self.client.query(
            "SELECT seq, at, request, status, result FROM events
             WHERE seq > $1 AND ($2::TEXT IS NULL OR product = $2)
               AND ($3::TEXT IS NULL OR (position(',' || kind || ',' in $3) > 0) = $4)
             ORDER BY seq LIMIT $5",
            &[&after, &f.product, &f.kinds_list(), &!f.exclude, &(f.limit as i64)],
        )?;
        rows.iter().map(|r| decode(r.get(0), r.get(1), r.get(2), r.get::<_, i32>(3) as i64, r.get(4))).collect()
    }

    fn hash_at(&mut self, seq: u64) -> Result<Option<String>, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        Ok(self.client.query_opt("SELECT hash FROM events WHERE seq = $1", &[&seq])?.map(|r| r.get(0)))
    }

    fn idempotency(&mut self, scopes: &[String]) -> Result<HashMap<String, IdempotencyRecord>, StoreError> {
        let mut out = HashMap::with_capacity(scopes.len());
        if scopes.is_empty() {
            return Ok(out);
        }
        for r in self.client.query(
            "SELECT DISTINCT ON (idem_base) idem_base, req_hash, seq, status, at FROM events
             WHERE idem_base = ANY($1) ORDER BY idem_base, seq DESC",
            &[&scopes],
        )? {
            out.insert(
                r.get::<_, String>(0),
                IdempotencyRecord {
                    request_hash: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    seq: r.get::<_, i64>(2) as u64,
                    status: r.get::<_, i32>(3) as u16,
                    at: r.get::<_, i64>(4) as u64,
                },
            );
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("{} (synchronous_commit=on)", redact(&self.url))
    }
}
