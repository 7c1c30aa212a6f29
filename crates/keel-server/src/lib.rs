//! keel-server: run leveraged tokens for real.
//!
//! ```text
//!  HTTP (axum) ──parse, authenticate──▶ writer queue ──▶ writer thread: Engine (pure) + Store
//!     ▲                                                        │ group commit, then publish
//!     └───────── views, balances, keys, live stream ◀──────────┘
//!  keeper (in-process or `keel keeper --server`) and price feeds submit like any client
//! ```
//!
//! - [`model`]: roles, actors, commands, stored events.
//! - [`engine`]: the pure state machine over keel-core (replay of the log = the state).
//! - [`store`]: the event log and snapshots on SQLite or PostgreSQL.
//! - [`writer`]: the single writer (group commit, acknowledge only what is durable).
//! - [`view`]: what readers see of a product.
//! - [`http`], [`openapi`]: the API; [`metrics`]: Prometheus.
//! - [`keeper`]: the keeper's policy and loop; [`prices`]: price sources.

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod http;
pub mod keeper;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod prices;
pub mod store;
pub mod testing;
pub mod view;
pub mod writer;

pub use error::{ApiError, StoreError};

use keel_core::Address;
use model::{Actor, Command, KeyRecord, Request, Role, address_of_hash, sha256_hex};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;
use writer::{Shared, Submitter};

/// Why the service could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listening or the runtime.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A setting.
    #[error("{0}")]
    Config(String),
}

/// `keel serve` settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `sqlite://PATH`, a path, or `postgres://...`.
    pub db: String,
    /// Address to listen on (port 0 picks one; the address is printed).
    pub listen: SocketAddr,
    /// Run the keeper in-process.
    pub keeper: bool,
    /// The account the in-process keeper acts as (put it on products' allow-lists).
    pub keeper_address: Address,
    /// Price source.
    pub prices: prices::PriceSource,
    /// The first operator key, when the store has no keys (otherwise one is generated and
    /// printed once).
    pub bootstrap_key: Option<String>,
    /// Writer settings.
    pub writer: writer::WriterConfig,
    /// Keep idempotency keys this many seconds (0: forever); `None` leaves the stored setting.
    pub idempotency_ttl: Option<u64>,
}

/// The in-process keeper's default account: `0x…6b656570` ("keep").
pub fn default_keeper_address() -> Address {
    let mut b = [0u8; 20];
    b[16..].copy_from_slice(b"keep");
    Address::from(b)
}

/// A running server: the writer, the HTTP listener and what they share.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Published state.
    pub shared: Arc<Shared>,
    /// The writer's queue.
    pub submitter: Submitter,
    /// What start-up did.
    pub startup: writer::Startup,
    rt: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, finish requests in flight, stop the writer.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = match self.server.take() {
            Some(h) => self.rt.block_on(h).map_err(|e| ServeError::Config(e.to_string()))?,
            None => Ok(()),
        };
        let Running { rt, writer, submitter, .. } = self;
        drop(submitter);
        drop(rt);
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(served?)
    }

    /// Block until SIGINT or SIGTERM.
    pub fn wait_for_signal(&self) {
        self.rt.block_on(shutdown_signal());
    }
}

/// Open the store at `db` (three connections: the writer's, the snapshot thread's and the log
/// reader's), replay it, and start the writer and the HTTP API on `listen`.
pub fn start(
    db: &str,
    clock: Arc<dyn writer::Clock>,
    writer_cfg: writer::WriterConfig,
    listen: SocketAddr,
) -> Result<Running, ServeError> {
    let store = store::open(db)?;
    tracing::info!(store = %store.describe(), "opened the event log");
    let (snapshots, reader) = (store::open(db)?, store::open(db)?);
    let (shared, submitter, startup, writer_thread) = writer::start(store, snapshots, clock, writer_cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(listen))?;
    let addr = listener.local_addr()?;
    let state =
        http::AppState { shared: shared.clone(), submitter: submitter.clone(), reader: http::Reader::spawn(reader) };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = http::router(state);
    let server = rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running {
        addr,
        shared,
        submitter,
        startup,
        rt,
        shutdown: Some(tx),
        server: Some(server),
        writer: Some(writer_thread),
    })
}

/// Register the first operator key when the store has none: `key`, or a generated one, which
/// is returned (it is shown once and stored hashed).
pub fn bootstrap_operator(running: &Running, key: Option<&str>) -> Result<Option<String>, ServeError> {
    if !running.shared.keys.read().expect("keys lock").is_empty() {
        return Ok(None);
    }
    let key = match key {
        Some(k) => k.to_string(),
        None => {
            let mut secret = [0u8; 24];
            getrandom::fill(&mut secret).map_err(|e| ServeError::Config(format!("no randomness: {e}")))?;
            format!("keel_{}", secret.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    };
    let hash = sha256_hex(key.as_bytes());
    let record = KeyRecord {
        hash: hash.clone(),
        role: Role::Operator,
        address: address_of_hash(&hash),
        label: "bootstrap operator".into(),
    };
    running
        .submitter
        .submit_blocking(Request {
            actor: Actor::system("bootstrap"),
            idempotency: None,
            command: Command::CreateKey { key: record },
        })
        .map_err(|e| ServeError::Config(format!("creating the first operator key: {e}")))?;
    Ok(Some(key))
}

/// Keep idempotency keys for `seconds` (0: forever) from now on, as a logged command.
pub fn set_idempotency_ttl(running: &Running, seconds: u64) -> Result<(), ServeError> {
    let req =
        Request { actor: Actor::system("config"), idempotency: None, command: Command::SetIdempotencyTtl { seconds } };
    running.submitter.submit_blocking(req).map_err(|e| ServeError::Config(format!("--idempotency-ttl: {e}")))?;
    Ok(())
}

/// Run the service until SIGINT or SIGTERM. Prints `listening on http://ADDR` on stdout once
/// it accepts connections.
pub fn run(cfg: ServeConfig) -> Result<(), ServeError> {
    let feed = prices::Feed::open(&cfg.prices).map_err(ServeError::Config)?;
    let running = start(&cfg.db, Arc::new(writer::SystemClock), cfg.writer.clone(), cfg.listen)?;
    let s = &running.startup;
    tracing::info!(
        snapshot = s.snapshot_seq,
        replayed = s.replayed,
        elapsed_ms = s.elapsed.as_millis() as u64,
        "state restored"
    );
    match bootstrap_operator(&running, cfg.bootstrap_key.as_deref())? {
        Some(k) if cfg.bootstrap_key.is_none() => {
            eprintln!("created the first operator key (shown once; it is stored hashed): {k}")
        }
        Some(_) => eprintln!("registered the operator key from KEEL_OPERATOR_KEY"),
        None => {}
    }
    if let Some(ttl) = cfg.idempotency_ttl {
        set_idempotency_ttl(&running, ttl)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let feed = feed.spawn(running.shared.clone(), running.submitter.clone(), stop.clone());
    let keeper = if cfg.keeper {
        let mut io = keeper::InProcess {
            shared: running.shared.clone(),
            submitter: running.submitter.clone(),
            actor: Actor { key_id: "in-process-keeper".into(), role: Role::Keeper, address: cfg.keeper_address },
        };
        let stop = stop.clone();
        tracing::info!(address = %cfg.keeper_address, "in-process keeper running; put this address on each product's allow-list");
        Some(std::thread::spawn(move || {
            keeper::run(
                &mut io,
                &keeper::KeeperConfig::default(),
                &stop,
                None,
                |l| tracing::info!(product = %l.decision.id, exchange = %l.decision.exchange, call = l.decision.action.name(), result = ?l.result, "keeper"),
            )
        }))
    } else {
        None
    };
    println!("listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "serving");
    running.wait_for_signal();
    tracing::info!("shutting down: finishing requests in flight");
    stop.store(true, Ordering::SeqCst);
    if let Some(k) = keeper {
        let _ = k.join();
    }
    if let Some(f) = feed {
        let _ = f.join();
    }
    running.shutdown()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
