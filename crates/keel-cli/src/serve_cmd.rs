//! `keel serve` and `keel keeper --server`.

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use keel_core::Address;
use keel_server::keeper::{self, KeeperConfig, Outcome, OverHttp};
use keel_server::prices::PriceSource;
use keel_server::{ServeConfig, StoreConfig, writer::WriterConfig};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// `keel serve` options.
#[derive(ClapArgs)]
pub struct ServeArgs {
    /// Event store: sqlite://PATH (WAL, full sync) or postgres://USER:PASS@HOST/DB
    /// (PostgreSQL 15+). Default: an SQLite file keel.db in the working directory.
    #[arg(long, default_value = "sqlite://keel.db")]
    db: String,
    /// Create a new database (and its server secret) instead of opening an existing one.
    /// Without it, a missing database is an error: a service never starts empty by accident.
    #[arg(long)]
    init: bool,
    /// The server secret API keys are hashed with, kept outside the database (created by
    /// --init). Default: PATH.secret beside an SQLite file; ./keel.secret for PostgreSQL.
    #[arg(long)]
    secret_file: Option<std::path::PathBuf>,
    /// Where the last acknowledged event is recorded; start-up refuses a log that was rolled
    /// back below it. Default: the secret file's path ending in .head.
    #[arg(long)]
    head_file: Option<std::path::PathBuf>,
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Run the keeper in-process: it rebalances, iterates and ripcords as the products' views
    /// say, as the account --keeper-address (put it on each product's allow-list).
    #[arg(long)]
    keeper: bool,
    /// The in-process keeper's account.
    #[arg(long)]
    keeper_address: Option<Address>,
    /// Prices: push (oracle keys POST them), csv:PATH[@SPEED] (replay bars' closes, SPEED
    /// seconds of data per second, default 60) or synthetic[:SEED][@SPEED] (GBM, 80% vol).
    #[arg(long, default_value = "push")]
    prices: String,
    /// Save a snapshot of the state every N events (start-up replays at most N).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Remember idempotency keys this long (e.g. 7d; 0 = forever, the default). A retry after
    /// that is a new request. The setting is logged, so replays agree.
    #[arg(long, value_parser = parse_secs)]
    idempotency_ttl: Option<u64>,
}

fn parse_secs(s: &str) -> Result<u64, String> {
    keel_core::product::parse_duration(s)
}

/// Logs on stderr: the level from KEEL_LOG, else RUST_LOG, else `info`; colour only on a
/// terminal.
fn init_logs(format: &str) -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        "text" => b.init(),
        "json" => b.json().init(),
        other => bail!("--log-format {other}: use text or json"),
    }
    Ok(())
}

/// Run the service.
pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    init_logs(&a.log_format)?;
    let prices = PriceSource::parse(&a.prices).map_err(anyhow::Error::msg)?;
    if a.snapshot_every == 0 {
        bail!("--snapshot-every must be at least 1");
    }
    let cfg = ServeConfig {
        store: StoreConfig { db: a.db, init: a.init, secret_file: a.secret_file, head_file: a.head_file },
        listen: a.listen,
        keeper: a.keeper,
        keeper_address: a.keeper_address.unwrap_or_else(keel_server::default_keeper_address),
        prices,
        bootstrap_key: std::env::var("KEEL_OPERATOR_KEY").ok().filter(|k| !k.is_empty()),
        writer: WriterConfig { snapshot_every: a.snapshot_every, ..WriterConfig::default() },
        idempotency_ttl: a.idempotency_ttl,
    };
    keel_server::run(cfg).context("keel serve")?;
    Ok(ExitCode::SUCCESS)
}

/// What `keel keeper` does, for its help and for a call without a mode.
pub const KEEPER_MODES: &str = "keel keeper runs in one of two modes:
  keel keeper --server URL --key KEY
      keep a keel server's products over its HTTP API (the loop `keel serve --keeper` runs);
      KEY is a keeper API key (or KEEL_KEEPER_KEY)
  keel keeper --rpc URL --config keeper.toml [--dry-run] [--metrics ADDR]
      keep deployed FLI / PerpV2 strategy contracts over Ethereum JSON-RPC: rebalance,
      iterate and ripcord as they ask (keeper.toml: strategies, signer, gas caps, budgets)
See `keel keeper --help` for every option.";

/// `keel keeper` options.
#[derive(ClapArgs)]
#[command(after_help = KEEPER_MODES)]
pub struct KeeperArgs {
    /// Keep a keel server's products over its HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with_all = ["rpc", "config", "dry_run", "metrics"])]
    server: Option<String>,
    /// With --server: a keeper API key (or set KEEL_KEEPER_KEY). Its account must be on each
    /// product's allow-list unless the product is anyone-callable.
    #[arg(long, env = "KEEL_KEEPER_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Keep deployed strategy contracts over Ethereum JSON-RPC at this URL.
    #[arg(long, requires = "config")]
    rpc: Option<String>,
    /// With --rpc: keeper.toml (strategies, signer, gas caps and budgets, poll mode).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// With --rpc: read, decide, simulate and log what would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --rpc: serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<String>,
    /// With --server: time between rounds.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after N rounds (default: run until interrupted).
    #[arg(long)]
    rounds: Option<u64>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| format!("'{s}' is not a duration"));
    }
    keel_core::product::parse_duration(s).map(Duration::from_secs)
}

/// Run the keeper against a server or a chain.
pub fn keeper(a: KeeperArgs) -> Result<ExitCode> {
    if a.server.is_none() && a.rpc.is_none() {
        bail!("{KEEPER_MODES}");
    }
    init_logs("text")?;
    if let Some(rpc) = &a.rpc {
        return keeper_rpc(rpc, &a);
    }
    let server = a.server.clone().unwrap_or_default();
    let Some(key) = a.key.clone() else { bail!("--server needs --key KEY (or KEEL_KEEPER_KEY)") };
    if !server.starts_with("http://") {
        bail!("--server {server}: give an http:// URL (TLS is not built in; put a proxy in front)");
    }
    let mut io = OverHttp::new(&server, &key);
    let cfg = KeeperConfig { interval: a.interval, ..KeeperConfig::default() };
    let stop = AtomicBool::new(false);
    let (mut done, mut failed) = (0u64, 0u64);
    keeper::run(&mut io, &cfg, &stop, a.rounds, |l| {
        let d = &l.decision;
        let call = d.action.name();
        match &l.result {
            Outcome::Done => {
                done += 1;
                println!("{} {call} on {}: done (seq {})", d.id, d.exchange, d.seq)
            }
            Outcome::Raced(m) => println!("{} {call} on {}: another keeper was first: {m}", d.id, d.exchange),
            Outcome::Refused(m) => {
                failed += 1;
                println!("{} {call} on {}: refused: {m}", d.id, d.exchange)
            }
            Outcome::Lost(m) => {
                failed += 1;
                println!("{} {call} on {}: not acknowledged, will resend: {m}", d.id, d.exchange)
            }
        }
    });
    eprintln!("keeper stopped: {done} call(s) done, {failed} failed");
    Ok(ExitCode::SUCCESS)
}

/// `keel keeper --rpc URL --config FILE`.
fn keeper_rpc(rpc: &str, a: &KeeperArgs) -> Result<ExitCode> {
    let path = a.config.as_ref().expect("clap requires --config with --rpc");
    let text = crate::product_cmd::read_small(path, "file")?;
    let cfg = keel_keeper::config::Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let signer = keel_keeper::signer::load(&cfg.key).map_err(anyhow::Error::msg)?;
    let poll = cfg.poll;
    let names: Vec<String> = cfg.strategies.iter().map(|s| format!("{} ({})", s.name, s.address)).collect();
    let mut k = keel_keeper::keeper::Keeper::new(rpc, cfg, signer, a.dry_run).map_err(anyhow::Error::msg)?;
    if let Some(addr) = &a.metrics {
        let bound =
            keel_keeper::metrics::serve(k.metrics.clone(), addr).with_context(|| format!("--metrics {addr}"))?;
        eprintln!("metrics on http://{bound}/metrics");
    }
    eprintln!(
        "keeping {} as {}{}",
        names.join(", "),
        k.address(),
        if a.dry_run { " (dry run: nothing is sent)" } else { "" }
    );
    let stop = AtomicBool::new(false);
    keel_keeper::run(&mut k, poll, &stop, a.rounds, |l| println!("{l}"));
    Ok(ExitCode::SUCCESS)
}
