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
//! - [`store`]: the hash-chained event log and snapshots on SQLite or PostgreSQL.
//! - [`secret`]: the server secret API keys are hashed with.
//! - [`writer`]: the single writer (group commit, acknowledge only what is durable).
//! - [`view`]: what readers see of a product.
//! - [`http`], [`openapi`]: the API; [`metrics`]: Prometheus.
//! - [`keeper`]: the keeper's policy and loop; [`prices`]: price sources.

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod history;
pub mod http;
pub mod keeper;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod prices;
pub mod secret;
pub mod served;
pub mod store;
pub mod testing;
pub mod view;
pub mod writer;

pub use error::{ApiError, StoreError};

use keel_core::Address;
use model::{Actor, Command, KeyRecord, Request, Role, address_of_hash};
use secret::ServerSecret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::OpenMode;
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
    /// The writer stopped for good while serving.
    #[error("the service stopped: {0}")]
    Stopped(String),
}

/// Where the log lives and the files kept beside it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH`, a path, or `postgres://...`.
    pub db: String,
    /// Create a new database (and its secret) instead of opening an existing one.
    pub init: bool,
    /// The server secret API keys are hashed with (default: beside an SQLite file,
    /// `PATH.secret`; `keel.secret` in the working directory for PostgreSQL).
    pub secret_file: Option<PathBuf>,
    /// The last acknowledged event, for the rollback check (default: the secret file's path
    /// with `.head` for `.secret`).
    pub head_file: Option<PathBuf>,
}

impl StoreConfig {
    /// A store at `db` with the default files.
    pub fn new(db: &str, init: bool) -> Self {
        StoreConfig { db: db.to_string(), init, secret_file: None, head_file: None }
    }

    /// The secret file's path.
    pub fn secret_path(&self) -> PathBuf {
        match (&self.secret_file, store::sqlite_path(&self.db)) {
            (Some(p), _) => p.clone(),
            (None, Some(db)) => PathBuf::from(format!("{db}.secret")),
            (None, None) => PathBuf::from("keel.secret"),
        }
    }

    /// The head file's path.
    pub fn head_path(&self) -> PathBuf {
        match &self.head_file {
            Some(p) => p.clone(),
            None => {
                let s = self.secret_path();
                let text = s.to_string_lossy();
                PathBuf::from(match text.strip_suffix(".secret") {
                    Some(stem) => format!("{stem}.head"),
                    None => format!("{text}.head"),
                })
            }
        }
    }

    /// Open (or with `init`, create) the store and its secret.
    fn open(&self) -> Result<(Box<dyn store::Store>, ServerSecret), ServeError> {
        let mode = if self.init { OpenMode::Create } else { OpenMode::Existing };
        let secret_path = self.secret_path();
        if self.init && secret_path.exists() {
            return Err(ServeError::Config(format!(
                "--init: the server secret {} already exists (it belongs to another database); move it away or give                  --secret-file",
                secret_path.display()
            )));
        }
        let st = store::open(&self.db, mode)?;
        let secret = if self.init {
            // a head file left by an earlier database would refuse this new, empty log
            let _ = std::fs::remove_file(self.head_path());
            ServerSecret::create(&secret_path).map_err(ServeError::Config)?
        } else {
            ServerSecret::load(&secret_path).map_err(ServeError::Config)?
        };
        Ok((st, secret))
    }
}

/// `keel serve` settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The store.
    pub store: StoreConfig,
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

    /// Block until SIGINT or SIGTERM (`None`) or until the writer stops for good (`Some`
    /// reason): a service that cannot write must not stay up looking healthy.
    pub fn wait_for_signal_or_failure(&self) -> Option<String> {
        let shared = self.shared.clone();
        self.rt.block_on(async move {
            tokio::select! {
                _ = shutdown_signal() => None,
                _ = shared.died.notified() => Some(match shared.health() {
                    writer::Health::Stopped(r) => r,
                    other => format!("{other:?}"),
                }),
            }
        })
    }
}

/// Open the store (three connections: the writer's, the snapshot thread's and the log
/// reader's), verify and replay it, and start the writer and the HTTP API on `listen`.
pub fn start(
    store_cfg: &StoreConfig,
    clock: Arc<dyn writer::Clock>,
    mut writer_cfg: writer::WriterConfig,
    listen: SocketAddr,
) -> Result<Running, ServeError> {
    let (store, secret) = store_cfg.open()?;
    tracing::info!(store = %store.describe(), secret = %secret.path().display(), "opened the event log");
    let (snapshots, reader) =
        (store::open(&store_cfg.db, OpenMode::Existing)?, store::open(&store_cfg.db, OpenMode::Existing)?);
    writer_cfg.head_file.get_or_insert_with(|| store_cfg.head_path());
    let (shared, submitter, startup, writer_thread) = writer::start(store, snapshots, clock, secret, writer_cfg)?;
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
        None => running.shared.secret.new_key(None).map_err(ServeError::Config)?,
    };
    let hash = running.shared.secret.key_hash(&key);
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
    let running = start(&cfg.store, Arc::new(writer::SystemClock), cfg.writer.clone(), cfg.listen)?;
    let s = &running.startup;
    tracing::info!(
        snapshot = s.snapshot_seq,
        replayed = s.replayed,
        verified = s.verified,
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
        running.shared.keeper_running.store(true, std::sync::atomic::Ordering::SeqCst);
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
    let died = running.wait_for_signal_or_failure();
    match &died {
        None => tracing::info!("shutting down: finishing requests in flight"),
        Some(reason) => tracing::error!(reason = %reason, "the writer stopped; exiting"),
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(k) = keeper {
        let _ = k.join();
    }
    if let Some(f) = feed {
        let _ = f.join();
    }
    running.shutdown()?;
    match died {
        None => Ok(()),
        Some(reason) => Err(ServeError::Stopped(reason)),
    }
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
