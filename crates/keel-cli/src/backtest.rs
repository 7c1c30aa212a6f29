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
    /// Chain profile: ethereum (12 s blocks) or optimism (2 s, cheap gas).
    #[arg(long, default_value = "ethereum")]
    pub chain: String,
    /// `none` turns off pool fees, price impact, gas and interest: trades fill at the oracle.
    #[arg(long, default_value = "all")]
    pub costs: String,
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
}

/// Where prices come from: a CSV of bars or a built-in scenario, and the seed.
#[derive(clap::Args, Debug, Clone)]
pub struct MarketArgs {
    /// Historical OHLC bars (CSV: timestamp, open, high, low, close[, volume]); blocks between
    /// closes follow a seeded Brownian bridge through each bar's open, high, low and close.
    #[arg(long, conflicts_with = "scenario")]
    pub prices: Option<PathBuf>,
    /// A built-in market: default, calm, bull, bear, zigzag, crash.
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

/// Run the backtest and write the output directory.
pub fn run(a: Args) -> Result<ExitCode> {
    let product = match crate::product_cmd::load_product(a.product.as_deref())? {
        keel_core::product::AnyProduct::Threshold(p) => return run_threshold(&a, &p),
        keel_core::product::AnyProduct::Perp(p) => return run_perp(&a, &p),
        keel_core::product::AnyProduct::Lending(p) => *p,
    };
    let chain = keel_sim::clock::profile(&a.chain)
        .ok_or_else(|| anyhow!("--chain {}: unknown (ethereum or optimism)", a.chain))?;
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
    let mut cfg = SimConfig {
        seed: a.market.seed,
        costs,
        sample_every,
        initial_tvl_usd: a.tvl.unwrap_or(0.0),
        ..SimConfig::default()
    };
    cfg.keeper.gas.base_gwei = chain.base_gas_gwei;
    for (flag, v) in
        [("--mints-per-day", a.mints_per_day), ("--redeems-per-day", a.redeems_per_day), ("--flow-size", a.flow_size)]
    {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v}: give a number of at least 0");
        }
    }
    if a.keeper_poll == 0 {
        bail!("--keeper-poll must be at least 1 block");
    }
    cfg.holders.mints_per_day = a.mints_per_day;
    cfg.holders.redeems_per_day = a.redeems_per_day;
    cfg.holders.mean_size_usd = a.flow_size;
    cfg.keeper.poll_every = a.keeper_poll;
    cfg.keeper.latency_seconds = parse_duration(&a.keeper_latency).map_err(|e| anyhow!("--keeper-latency: {e}"))?;
    cfg.keeper.ripcord_bots = a.ripcord_bots;
    let (mut source, name, warnings) = price_source(&a.market, product_price(&product), block_time)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut sim = Simulation::new(&product, cfg, source.start_time(), source.start_price(), &name)
        .map_err(|e| anyhow!("cannot start: {e}"))?;
    sim.add_warnings(&warnings);
    let mut sink = DirSink::create(&a.out, 4_000).with_context(|| format!("cannot write to {}", a.out.display()))?;
    let bar = if !a.quiet && std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(source.len_hint().unwrap_or(0));
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
    let result = sim.run(source.as_mut(), &mut sink).map_err(|e| anyhow!("simulation stopped: {e}"))?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let report =
        sink.finish(&result.summary).with_context(|| format!("cannot write the report to {}", a.out.display()))?;
    print!("{}", summary_table(&result.summary));
    println!("wrote {} (summary.json, timeseries.csv, events.csv, report.html)", display_dir(&a.out));
    let _ = report;
    Ok(ExitCode::SUCCESS)
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

/// `keel backtest` for a threshold product: the token on its Synthetix-style market.
fn run_threshold(a: &Args, p: &keel_core::product::ThresholdProduct) -> Result<ExitCode> {
    let block_time = match &a.block_time {
        Some(b) => parse_duration(b).map_err(|e| anyhow!("--block-time: {e}"))?,
        None => 2, // an Optimism-like chain, where Synthetix perps live
    };
    if block_time == 0 {
        bail!("--block-time must be positive");
    }
    let tvl = a.tvl.unwrap_or(100_000.0);
    check_tvl(tvl)?;
    let sample_every = parse_duration(&a.sample).map_err(|e| anyhow!("--sample: {e}"))?.max(block_time);
    let (mut source, name, warnings) = price_source(&a.market, p.price.to_f64(), block_time)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot write to {}", a.out.display()))?;
    let path = a.out.join("timeseries.csv");
    let file = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let flows = holder_flows(a)?;
    let s = keel_sim::threshold::run_threshold_with_flows(
        p,
        source.as_mut(),
        tvl,
        sample_every,
        Some(&mut w),
        &flows,
        a.market.seed,
    )
    .map_err(|e| anyhow!("simulation stopped: {e}"))?;
    std::io::Write::flush(&mut w)?;
    std::fs::write(a.out.join("summary.json"), serde_json::to_string_pretty(&s)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let head =
        format!("{} on {name}: {} blocks, {:.1} days, ${tvl:.0} minted at the start", s.symbol, s.blocks, s.days);
    let mut rows = vec![
        ("underlying".to_string(), format!("{:+.2}%", s.underlying_return * 100.0)),
        ("token (NAV)".to_string(), format!("{:+.2}%", s.token_return * 100.0)),
        (
            format!("ideal {}x token", keel_core::Wad(p.settings.target_leverage)),
            format!("{:+.2}%", s.ideal_return * 100.0),
        ),
        (
            "rebalances".to_string(),
            format!(
                "{} (orders filled {}, refused {}, cancelled {})",
                s.rebalances, s.orders_filled, s.orders_refused, s.orders_cancelled
            ),
        ),
        ("closes / liquid.".to_string(), format!("{} / {}", s.closes, s.liquidations)),
        (
            "holder flows".to_string(),
            format!("{} mints, {} redeems, {} refused (pending order or limits)", s.mints, s.redeems, s.refused_flows),
        ),
    ];
    if let Some(why) = &s.first_failure {
        rows.push(("failed keeper evaluations".to_string(), format!("{} (first: {why})", s.failed_evaluations)));
    }
    rows.push((
        "max leverage".to_string(),
        format!("{:.3}x; outside [L−θ, L+θ] {:.1}% of the time", s.max_leverage, s.time_outside_band * 100.0),
    ));
    rows.push((
        "costs".to_string(),
        format!(
            "venue fees ${:.2}, keeper deposits ${:.2}, fees to the recipient ${:.2}",
            s.venue_fees, s.keeper_deposits, s.fees_to_recipient
        ),
    ));
    print_rows(&head, &rows);
    let points = read_perp_points(&path)?;
    let l = keel_core::Wad(p.settings.target_leverage).to_f64();
    let band = match p.policy {
        keel_core::strategy::threshold::token::Policy::Threshold => {
            let t = keel_core::Wad(p.settings.rebalance_threshold).to_f64();
            vec![(l - t, "L − θ".to_string()), (l + t, "L + θ".to_string())]
        }
        _ => vec![(l, "target".to_string())],
    };
    let html =
        keel_report::perp_report(&format!("{}: backtest ({})", s.symbol, p.kind()), &head, &rows, &points, &band);
    std::fs::write(a.out.join("report.html"), html).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("wrote {} (summary.json, timeseries.csv, report.html)", display_dir(&a.out));
    Ok(ExitCode::SUCCESS)
}

/// `keel backtest` for a PerpV2 FLI product: the token on a Perp-v2-style account and vAMM.
fn run_perp(a: &Args, p: &keel_core::product::PerpProduct) -> Result<ExitCode> {
    let block_time = match &a.block_time {
        Some(b) => parse_duration(b).map_err(|e| anyhow!("--block-time: {e}"))?,
        None => 2, // Perpetual Protocol v2 ran on Optimism
    };
    if block_time == 0 {
        bail!("--block-time must be positive");
    }
    let tvl = a.tvl.unwrap_or(1_000_000.0);
    check_tvl(tvl)?;
    let (mut source, name, warnings) = price_source(&a.market, p.price.to_f64(), block_time)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let flows = holder_flows(a)?;
    let s = keel_sim::perp_fli::run_perp_fli_with_flows(p, source.as_mut(), tvl, 200_000_000.0, &flows, a.market.seed)
        .map_err(|e| anyhow!("simulation stopped: {e}"))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot write to {}", a.out.display()))?;
    std::fs::write(a.out.join("summary.json"), serde_json::to_string_pretty(&s)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let head = format!(
        "{} on {name}: {} blocks, {:.1} days, ${tvl:.0} issued and engaged at the start",
        s.symbol, s.blocks, s.days
    );
    let mut rows = vec![
        ("underlying".to_string(), format!("{:+.2}%", s.underlying_return * 100.0)),
        ("token (NAV)".to_string(), format!("{:+.2}%", s.token_return * 100.0)),
        (
            "ideal token".to_string(),
            format!("{:+.2}%  (tracking error {:.1}%)", s.ideal_return * 100.0, s.tracking_error * 100.0),
        ),
        (
            "rebalances".to_string(),
            format!(
                "{} (+{} iterations), ripcords {}, liquidations {}",
                s.rebalances, s.iterations, s.ripcords, s.liquidations
            ),
        ),
        (
            "holder flows".to_string(),
            format!("{} issues, {} redeems, {} refused (margin rules)", s.mints, s.redeems, s.refused_flows),
        ),
    ];
    if let Some(why) = &s.first_failure {
        rows.push(("refused keeper calls".to_string(), format!("{} (first: {why})", s.failed_calls)));
    }
    rows.push((
        "max |leverage|".to_string(),
        format!("{:.3}x; outside [min, max] {:.2}% of the time", s.max_leverage, s.time_outside_band * 100.0),
    ));
    rows.push((
        "costs".to_string(),
        format!(
            "vAMM fees ${:.2}, keeper gas ${:.2}, streaming fee ${:.2}, ripcord rewards {:.2} ETH",
            s.pool_fees, s.gas_keeper, s.streaming_fee, s.ether_rewards
        ),
    ));
    print_rows(&head, &rows);
    let path = a.out.join("timeseries.csv");
    let mut csv = String::from("time,price,nav,ideal,leverage\n");
    for (t, price, nav, ideal, lev) in &s.series {
        csv.push_str(&format!("{t},{price},{nav:.8},{ideal:.8},{lev:.6}\n"));
    }
    std::fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    let points: Vec<keel_report::PerpPoint> = s
        .series
        .iter()
        .map(|(time, price, nav, ideal, leverage)| keel_report::PerpPoint {
            time: *time,
            price: *price,
            nav: *nav,
            ideal: *ideal,
            leverage: *leverage,
        })
        .collect();
    let m = &p.methodology;
    let mag = |x: keel_core::I256| keel_core::Wad(x.unsigned_abs()).to_f64();
    let band = vec![
        (mag(m.min_leverage_ratio), "min".to_string()),
        (mag(m.max_leverage_ratio), "max".to_string()),
        (mag(p.incentive.incentivized_leverage_ratio), "ripcord".to_string()),
    ];
    let html =
        keel_report::perp_report(&format!("{}: backtest (fli on perp-v2)", s.symbol), &head, &rows, &points, &band);
    std::fs::write(a.out.join("report.html"), html).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("wrote {} (summary.json, timeseries.csv, report.html)", display_dir(&a.out));
    Ok(ExitCode::SUCCESS)
}

/// Print a run's headline and its rows, aligned.
fn print_rows(head: &str, rows: &[(String, String)]) {
    println!("{head}");
    for (k, v) in rows {
        println!("  {k:<17} {v}");
    }
}

/// The samples a threshold-family run wrote (time, price, NAV, ideal, leverage), relative to the
/// first NAV and ideal, for the report.
fn read_perp_points(path: &std::path::Path) -> Result<Vec<keel_report::PerpPoint>> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    let (mut nav0, mut ideal0) = (0.0, 0.0);
    for r in rdr.records() {
        let r = r?;
        let num = |i: usize| r.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
        let (nav, ideal) = (num(2), num(3));
        if out.is_empty() {
            (nav0, ideal0) = (nav, ideal);
        }
        out.push(keel_report::PerpPoint {
            time: num(0) as u64,
            price: num(1),
            nav: nav / nav0,
            ideal: ideal / ideal0,
            leverage: num(4).abs(),
        });
    }
    Ok(out)
}
