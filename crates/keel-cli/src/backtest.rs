//! `keel backtest`: run a product through a market block by block and write what happened.

use anyhow::{Context, Result, anyhow, bail};
use keel_core::product::{Product, parse_duration};
use keel_report::{DirSink, summary_table};
use keel_sim::prices::{BridgedBars, PriceSource, SCENARIOS, load_bars_file, scenario};
use keel_sim::{Costs, SimConfig, Simulation};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `keel backtest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The product TOML file (default: ETH2x-FLI, built in; the same as products/eth2x-fli.toml).
    #[arg(long)]
    pub product: Option<PathBuf>,
    /// The market.
    #[command(flatten)]
    pub market: MarketArgs,
    /// Seconds per block (30s, 1m, 1h, ...); default: the chain's (12 s on ethereum).
    #[arg(long)]
    pub block_time: Option<String>,
    /// Chain profile: ethereum (12 s blocks) or optimism (2 s, cheap gas) [default: ethereum for
    /// lending FLI, optimism for perp venues].
    #[arg(long)]
    pub chain: Option<String>,
    /// `none` turns off pool fees, price impact, gas and interest (trades fill at the oracle) for
    /// a lending FLI; for a perp product gas and funding (its venue's trading fees are part of
    /// its fills and stay).
    #[arg(long, default_value = "all")]
    pub costs: String,
    /// Funding on perp venues.
    #[command(flatten)]
    pub funding: crate::funding_args::FundingArgs,
    /// Output directory.
    #[arg(long, default_value = "keel-out")]
    pub out: PathBuf,
    /// Time between rows of timeseries.csv (at least one block).
    #[arg(long, default_value = "1h")]
    pub sample: String,
    /// USD issued at the start [default: half of the supply cap at the starting NAV].
    #[arg(long, allow_negative_numbers = true)]
    pub tvl: Option<f64>,
    /// Holders' mints per day (Poisson arrivals).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub mints_per_day: f64,
    /// Holders' redeems per day (Poisson arrivals).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub redeems_per_day: f64,
    /// Mean size of a mint or redeem in USD (exponentially distributed).
    #[arg(long, default_value_t = 20_000.0, allow_negative_numbers = true)]
    pub flow_size: f64,
    /// Blocks between the keeper's polls of shouldRebalance.
    #[arg(long, default_value_t = 1)]
    pub keeper_poll: u64,
    /// Seconds between a keeper's decision and its transaction (whole blocks, rounded down).
    #[arg(long, default_value = "12s")]
    pub keeper_latency: String,
    /// Public bots racing for the ripcord reward.
    #[arg(long, default_value_t = 2)]
    pub ripcord_bots: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON (summary.json's content) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Where prices come from: a CSV of bars or a built-in scenario, and the seed.
#[derive(clap::Args, Debug, Clone)]
pub struct MarketArgs {
    /// Historical OHLC bars (CSV: timestamp, open, high, low, close[, volume]); blocks between
    /// closes follow a seeded Brownian bridge through each bar's open, high, low and close.
    #[arg(long, conflicts_with = "scenario")]
    pub prices: Option<PathBuf>,
    /// A built-in market: default, calm, bull, bear, zigzag, crash, crowded-long (a bull market with a month of +50%/yr funding).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Seed of every random stream (path, holders, keepers).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start of the --prices window (unix seconds or ISO-8601).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the --prices window, exclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// Bridge missing bars in --prices with a warning instead of refusing the file.
    #[arg(long)]
    pub allow_gaps: bool,
}

/// `--tvl`: a positive USD amount up to 1e12 (the largest price keel accepts, for one unit).
pub fn check_tvl(t: f64) -> Result<()> {
    if !(t.is_finite() && t > 0.0 && t <= 1e12) {
        let shown = if t.is_finite() && t.abs() >= 1e15 { format!("{t:e}") } else { format!("{t}") };
        bail!("--tvl {shown}: give a positive USD amount up to 1000000000000");
    }
    Ok(())
}

fn time_arg(s: &str, flag: &str) -> Result<u64> {
    keel_sim::prices::csv::parse_time(s).map_err(|e| anyhow!("{flag}: {e}"))
}

/// Run the backtest and write the output directory. Every kind of product runs the same way:
/// one market loop, one summary, one terminal layout, one report.
pub fn run(a: Args) -> Result<ExitCode> {
    let (text, name) = crate::product_cmd::product_text(a.product.as_deref())?;
    let mut prepared = prepare(&a, &text, &name)?;
    for w in &prepared.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(note) =
        crate::out_dir::prepare(&a.out, &["summary.json", "timeseries.csv", "events.csv", "report.html"])?
    {
        eprintln!("{note}");
    }
    if let Some(note) = prepared.size_note() {
        eprintln!("{note}");
    }
    let mut sink = DirSink::create(&a.out, 4_000).with_context(|| format!("cannot write to {}", a.out.display()))?;
    let bar = if !a.quiet && std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(prepared.blocks().unwrap_or(0));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bar:40} {percent}% {human_pos}/{human_len} blocks, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    } else {
        None
    };
    if let Some(pb) = bar.clone() {
        sink.on_progress = Some(Box::new(move |done, _| pb.set_position(done)));
    }
    let result = prepared.run(&mut sink, &std::sync::atomic::AtomicBool::new(false))?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    sink.finish(&result.summary).with_context(|| format!("cannot write the report to {}", a.out.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result.summary)?);
        eprintln!("wrote {} (summary.json, timeseries.csv, events.csv, report.html)", display_dir(&a.out));
    } else {
        // the warnings were printed before the run; summary.json and the report keep them
        print!("{}", summary_table(&keel_sim::Summary { warnings: Vec::new(), ..result.summary.clone() }));
        println!("wrote {} (summary.json, timeseries.csv, events.csv, report.html)", display_dir(&a.out));
    }
    Ok(ExitCode::SUCCESS)
}

/// A backtest checked and ready to run: the product started on its venue, the price path
/// opened. `keel backtest` and the Python package's `keel.backtest` both come through here, so
/// they accept and refuse the same things with the same messages.
pub struct Prepared {
    runner: Runner,
    source: Box<dyn PriceSource>,
    /// Problems met loading the prices (gaps bridged), printed before the run; the summary's
    /// `warnings` hold these and any the run adds.
    pub warnings: Vec<String>,
    /// What it takes to run it again (the summary's `run`).
    pub run: keel_sim::RunInfo,
    sample_every: u64,
    block_time: u64,
}

impl Prepared {
    /// Blocks the path will yield, if known.
    pub fn blocks(&self) -> Option<u64> {
        self.source.len_hint()
    }

    /// Rows `timeseries.csv` will hold (one per `--sample` and the last block).
    pub fn rows(&self) -> Option<u64> {
        self.blocks().map(|b| (b * self.block_time) / self.sample_every + 2)
    }

    /// A note when `timeseries.csv` will be large (over 100 MB at about 330 bytes a row).
    pub fn size_note(&self) -> Option<String> {
        let rows = self.rows()?;
        let mb = rows as f64 * 330.0 / 1e6;
        (mb > 100.0).then(|| {
            format!(
                "note: --sample {} s writes about {} rows (~{} MB) to timeseries.csv; a longer --sample writes fewer (the rows keep the extremes between them)",
                self.sample_every,
                keel_report::thousands(rows as f64, 0),
                keel_report::thousands(mb, 0)
            )
        })
    }

    /// Run to the end of the path (or until `stop` is set: then an error), streaming rows and
    /// events to `sink`.
    pub fn run(
        &mut self,
        sink: &mut dyn keel_sim::Sink,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<keel_sim::RunResult> {
        let mut source = keel_sim::prices::Cancellable::new(self.source.as_mut(), stop);
        let result = match &mut self.runner {
            Runner::Lending(sim) => (**sim).clone().run(&mut source, sink),
            Runner::Market(venue, cfg, warnings) => {
                keel_sim::market::run_market(venue.as_mut(), &mut source, cfg, sink).map(|mut r| {
                    r.summary.warnings = warnings.clone();
                    r
                })
            }
        }
        .map_err(|e| anyhow!("simulation stopped: {e}"))?;
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("{}", keel_sim::sweep::CANCELLED);
        }
        let mut result = result;
        result.summary.run = Some(self.run.clone());
        Ok(result)
    }
}

/// Check a backtest's arguments against the product (`text`, named `name` in messages) and
/// start it, without writing anything.
pub fn prepare(a: &Args, text: &str, name: &str) -> Result<Prepared> {
    let product = crate::product_cmd::parse_product(text, name)?;
    let lending = matches!(product, keel_core::product::AnyProduct::Lending(_));
    // lending FLI runs on Ethereum by default; the perp venues ran on Optimism
    let chain_name = a.chain.clone().unwrap_or_else(|| if lending { "ethereum".into() } else { "optimism".into() });
    let chain = keel_sim::clock::profile(&chain_name)
        .ok_or_else(|| anyhow!("--chain {chain_name}: unknown (ethereum or optimism)"))?;
    let block_time = match &a.block_time {
        Some(b) => parse_duration(b).map_err(|e| anyhow!("--block-time: {e}"))?,
        None => chain.block_time,
    };
    if block_time == 0 {
        bail!("--block-time must be positive");
    }
    if let Some(t) = a.tvl {
        check_tvl(t)?;
    }
    let costs = match a.costs.as_str() {
        "all" => Costs::ALL,
        "none" => Costs::NONE,
        other => bail!("--costs {other}: use 'all' or 'none'"),
    };
    let sample_every = parse_duration(&a.sample).map_err(|e| anyhow!("--sample: {e}"))?.max(block_time);
    let holders = holder_flows(a)?;
    if a.keeper_poll == 0 {
        bail!("--keeper-poll must be at least 1 block");
    }
    let latency = parse_duration(&a.keeper_latency).map_err(|e| anyhow!("--keeper-latency: {e}"))?;
    let (source, source_name, warnings) = price_source(&a.market, product_start_price(&product), block_time)?;
    let prices_bytes = match &a.market.prices {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let run = crate::provenance::run_info(a, (text, name), block_time, &chain_name, prices_bytes.as_deref());
    let name = source_name;
    // the keeper and the public bots are the same agents for every kind
    let mut keeper = keel_sim::agents::KeeperConfig::default();
    keeper.gas.base_gwei = chain.base_gas_gwei;
    keeper.poll_every = a.keeper_poll;
    keeper.latency_seconds = latency;
    keeper.ripcord_bots = a.ripcord_bots;
    let runner = match product {
        keel_core::product::AnyProduct::Lending(product) => {
            if a.funding.is_set() {
                bail!(
                    "--funding and the premium flags apply to perp products; a lending FLI pays interest, not funding"
                );
            }
            let cfg = SimConfig {
                seed: a.market.seed,
                costs,
                sample_every,
                initial_tvl_usd: a.tvl.unwrap_or(0.0),
                holders,
                keeper,
                ..SimConfig::default()
            };
            let mut sim = Simulation::new(&product, cfg, source.start_time(), source.start_price(), &name)
                .map_err(|e| anyhow!("cannot start: {e}"))?;
            sim.add_warnings(&warnings);
            Runner::Lending(Box::new(sim))
        }
        other => {
            let costs_off = costs != Costs::ALL;
            let mut warnings = warnings.clone();
            if costs_off {
                warnings.push(format!(
                    "--costs none: gas and funding are off; a {} product's venue fees are part of its fills and stay",
                    other.kind().name()
                ));
            }
            let funding =
                a.funding.model(a.market.scenario.as_deref(), costs_off, window(source.as_ref(), block_time))?;
            let cfg = keel_sim::market::MarketConfig {
                seed: a.market.seed,
                holders,
                keeper,
                sample_every,
                source_name: name.clone(),
                gas: !costs_off,
                ..keel_sim::market::MarketConfig::default()
            };
            let venue = keel_sim::venues::build(
                &other,
                a.tvl.unwrap_or(1_000_000.0),
                source.start_time(),
                source.start_price(),
                &funding,
                a.market.seed,
            )
            .map_err(|e| anyhow!("cannot start: {e}"))?;
            Runner::Market(venue, Box::new(cfg), warnings)
        }
    };
    Ok(Prepared { runner, source, warnings, run, sample_every, block_time })
}

/// What runs: the lending engine or the market loop over a venue.
enum Runner {
    Lending(Box<Simulation>),
    Market(Box<dyn keel_sim::market::Venue>, Box<keel_sim::market::MarketConfig>, Vec<String>),
}

/// The first and last time of a price path (a replayed funding file must cover them).
pub fn window(source: &dyn PriceSource, block_time: u64) -> (u64, u64) {
    let start = source.start_time();
    (start, start + source.len_hint().unwrap_or(0) * block_time)
}

/// The starting price of any product's underlying.
pub fn product_start_price(p: &keel_core::product::AnyProduct) -> f64 {
    p.start_price()
}

/// A price path, its name, and warnings from loading it.
pub type Source = (Box<dyn PriceSource>, String, Vec<String>);

/// The run's price path: `--prices` bridged to blocks, or a named scenario from `p0`.
pub fn price_source(a: &MarketArgs, p0: f64, block_time: u64) -> Result<Source> {
    Ok(match (&a.prices, &a.scenario) {
        (Some(_), Some(_)) => bail!("give --prices or --scenario, not both"),
        (Some(path), None) => {
            let from = a.from.as_deref().map(|s| time_arg(s, "--from")).transpose()?;
            let to = a.to.as_deref().map(|s| time_arg(s, "--to")).transpose()?;
            let series =
                load_bars_file(path, a.allow_gaps, from, to).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let name = format!(
                "{} ({} hourly bars from {})",
                path.display(),
                series.bars.len(),
                keel_sim::prices::csv::format_time(series.bars[0].time)
            );
            let src = BridgedBars::new(series.bars, series.interval, block_time, a.seed)
                .map_err(|e| anyhow!("--block-time: {e}"))?;
            (Box::new(src), name, series.warnings)
        }
        (None, s) => {
            if a.from.is_some() || a.to.is_some() {
                bail!("--from/--to select a window of --prices; scenarios start at their own beginning");
            }
            let s = s.clone().unwrap_or_else(|| "default".into());
            let start = 1_704_067_200; // 2024-01-01

            let src = scenario(&s, p0, start, block_time, a.seed).ok_or_else(|| {
                anyhow!(
                    "--scenario {s}: unknown; built in: {}",
                    SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )
            })?;
            (Box::new(src), format!("scenario {s}"), vec![])
        }
    })
}

fn display_dir(p: &Path) -> String {
    p.display().to_string()
}

/// The starting price of a lending product's underlying.
pub fn product_price(p: &Product) -> f64 {
    let w = if p.token.underlying == p.collateral.asset { p.collateral.price } else { p.borrow.price };
    w.to_f64()
}

/// The holder-flow flags, checked.
fn holder_flows(a: &Args) -> Result<keel_sim::agents::HolderConfig> {
    for (flag, v) in
        [("--mints-per-day", a.mints_per_day), ("--redeems-per-day", a.redeems_per_day), ("--flow-size", a.flow_size)]
    {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v}: give a number of at least 0");
        }
    }
    Ok(keel_sim::agents::HolderConfig {
        mints_per_day: a.mints_per_day,
        redeems_per_day: a.redeems_per_day,
        mean_size_usd: a.flow_size,
    })
}
