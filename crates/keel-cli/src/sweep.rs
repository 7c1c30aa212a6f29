//! `keel sweep`: a grid of product settings × N paths, aggregated per point.

use anyhow::{Context, Result, anyhow, bail};
use keel_core::product::parse_duration;
use keel_sim::prices::{Model, SCENARIOS, load_bars_file};
use keel_sim::sweep::{
    Market, PathOutcome, PointResult, SweepConfig, parse_values, run_sweep, run_sweep_with, total_cost,
};
use keel_sim::{Costs, SimConfig};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `keel sweep`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The product TOML file (default: ETH2x-FLI, built in; the same as products/eth2x-fli.toml).
    #[arg(long)]
    pub product: Option<PathBuf>,
    /// A grid axis: KEY=VALUES, KEY a product setting by its TOML path
    /// (methodology.max_leverage_ratio, exchanges.uniswap-v3.twap_max_trade_size, ...), VALUES a
    /// list (2.2,2.3,2.4) or a range (2.2..2.5 step 0.05). Repeat for more axes.
    #[arg(long, required = true)]
    pub grid: Vec<String>,
    /// Paths per grid point (every point runs the same paths).
    #[arg(long, default_value_t = 200)]
    pub paths: usize,
    /// The market: gbm:vol=80%[,drift=0], jump:vol=60%,lambda=12[,jump_mean=-5%,jump_vol=8%],
    /// garch:vol=70%[,alpha=0.08,beta=0.9], regime:calm=55%,stress=110%[,to_stress=3,to_calm=12],
    /// or a named scenario (default, calm, bull, bear, zigzag, crash, crowded-long).
    #[arg(long, conflicts_with = "prices")]
    pub scenario: Option<String>,
    /// Historical bars to resample (with --bootstrap).
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Resample daily blocks of the --prices returns.
    #[arg(long, conflicts_with = "window")]
    pub bootstrap: bool,
    /// Replay a window of --prices (2020-03-12..2020-03-13, dates inclusive, or unix times);
    /// each path bridges the bars with its own seed. Use a short --block-time (12s).
    #[arg(long)]
    pub window: Option<String>,
    /// Stress: insert a one-block price gap halfway through each path, e.g. gap:-30%.
    #[arg(long)]
    pub shock: Option<String>,
    /// Length of each path (30d, 1y, ...) for models; scenarios have their own.
    #[arg(long, default_value = "1y")]
    pub horizon: String,
    /// Seconds per block.
    #[arg(long, default_value = "1h")]
    pub block_time: String,
    /// Master seed; path i's seed derives from (seed, i), never from the thread.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sort the table by: return, tracking, cost, ripcord, liquidation, rebalances.
    #[arg(long, default_value = "return")]
    pub objective: String,
    /// `none` turns off pool fees, price impact, gas and interest; on perp venues gas and
    /// funding.
    #[arg(long, default_value = "all")]
    pub costs: String,
    /// Funding on perp venues (a replayed file needs --window).
    #[command(flatten)]
    pub funding: crate::funding_args::FundingArgs,
    /// Output directory (results.csv, report.html).
    #[arg(long, default_value = "keel-sweep")]
    pub out: PathBuf,
    /// Also write paths.csv: one row per grid point and path (final NAV vs ideal, ripcord,
    /// liquidation, costs, lowest health factor, ...), streamed point by point.
    #[arg(long)]
    pub paths_csv: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the results as JSON (results.csv's rows as objects, sorted by --objective)
    /// instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn duration(s: &str, flag: &str) -> Result<u64> {
    let t = s.trim();
    if let Some(y) = t.strip_suffix('y') {
        let n: u64 = y.trim().parse().map_err(|_| anyhow!("{flag} {s}: a whole number of years, e.g. 1y"))?;
        return Ok(n * 365 * 86_400);
    }
    parse_duration(t).map_err(|e| anyhow!("{flag}: {e}"))
}

fn frac(v: &str) -> Result<f64> {
    let t = v.trim();
    let x: f64 = t.trim_end_matches('%').parse().map_err(|_| anyhow!("'{v}' is not a number"))?;
    Ok(if t.ends_with('%') { x / 100.0 } else { x })
}

/// `MODEL[:k=v,...]` or a named scenario.
pub fn parse_market(spec: &str) -> Result<Market> {
    let (name, params) = spec.split_once(':').unwrap_or((spec, ""));
    let mut kv = std::collections::BTreeMap::new();
    for p in params.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("--scenario {spec}: parameters read key=value"))?;
        kv.insert(k.trim().to_string(), frac(v).with_context(|| format!("--scenario {spec}: {k}"))?);
    }
    let get = |k: &str, d: f64| kv.get(k).copied().unwrap_or(d);
    let known = |allowed: &[&str]| -> Result<()> {
        for k in kv.keys() {
            if !allowed.contains(&k.as_str()) {
                bail!("--scenario {spec}: unknown parameter `{k}` (known: {})", allowed.join(", "));
            }
        }
        Ok(())
    };
    let model = match name {
        "gbm" => {
            known(&["vol", "drift"])?;
            Model::Gbm { drift: get("drift", 0.0), vol: get("vol", 0.8) }
        }
        "jump" => {
            known(&["vol", "drift", "lambda", "jump_mean", "jump_vol"])?;
            Model::Jump {
                drift: get("drift", 0.0),
                vol: get("vol", 0.6),
                lambda: get("lambda", 12.0),
                jump_mean: get("jump_mean", -0.05),
                jump_vol: get("jump_vol", 0.08),
            }
        }
        "garch" => {
            known(&["vol", "alpha", "beta"])?;
            Model::Garch { vol: get("vol", 0.7), alpha: get("alpha", 0.08), beta: get("beta", 0.9) }
        }
        "regime" => {
            known(&["calm", "stress", "to_stress", "to_calm", "drift"])?;
            Model::Regime {
                calm_vol: get("calm", 0.55),
                stress_vol: get("stress", 1.1),
                to_stress: get("to_stress", 3.0),
                to_calm: get("to_calm", 12.0),
                drift: get("drift", 0.0),
            }
        }
        other if params.is_empty() && SCENARIOS.iter().any(|(n, _)| *n == other) => {
            return Ok(Market::Scenario(other.to_string(), vec![]));
        }
        other => bail!(
            "--scenario {other}: unknown; use gbm, jump, garch, regime or a scenario ({})",
            SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    };
    Ok(Market::Model { model, shocks: vec![] })
}

fn metric(p: &PointResult, objective: &str) -> f64 {
    let Some(s) = &p.stats else { return f64::INFINITY };
    match objective {
        "return" => -s.nav_vs_ideal.mean,
        "tracking" => s.tracking_error,
        "cost" => s.mean_total_cost,
        "ripcord" => s.p_ripcord,
        "liquidation" => s.p_liquidation,
        "rebalances" => s.mean_rebalances,
        _ => 0.0,
    }
}

/// A sweep checked and ready to run: what `keel sweep` and the Python package's `keel.sweep`
/// (local or on Ray) both run, so they accept, refuse and compute the same things.
pub struct SweepPlan {
    /// The sweep's inputs.
    pub cfg: SweepConfig,
    /// The product's symbol.
    pub symbol: String,
    /// What the risk columns are called for this kind of token.
    pub risk: RiskNames,
    /// The sort order of the terminal table.
    pub objective: String,
    /// What ran, in words (market, blocks, horizon, seed, paths, costs, funding, keel's
    /// version), for the report.
    pub context: Vec<String>,
}

impl SweepPlan {
    /// `results.csv`'s bytes for these results.
    pub fn results_csv(&self, results: &[PointResult]) -> Result<Vec<u8>> {
        results_csv(results, &self.risk)
    }

    /// `report.html` for these results.
    pub fn report_html(&self, results: &[PointResult]) -> String {
        let keys: Vec<String> = self.cfg.grid.iter().map(|(k, _)| k.clone()).collect();
        let title = format!("{} — {} paths per point", self.symbol, self.cfg.paths);
        keel_report::sweep_report(&title, &self.context, &keys, results)
    }

    /// Sort results by the plan's objective, best first.
    pub fn sort(&self, results: &mut [PointResult]) {
        results.sort_by(|x, y| metric(x, &self.objective).total_cmp(&metric(y, &self.objective)));
    }
}

/// Check a sweep's arguments against the product (`text`, named `name` in messages) and build
/// its inputs; warnings (gaps bridged in `--prices`) are returned, not printed.
pub fn plan(a: &Args, text: &str, name: &str) -> Result<(SweepPlan, Vec<String>)> {
    let mut warnings = Vec::new();
    if !["return", "tracking", "cost", "ripcord", "liquidation", "rebalances"].contains(&a.objective.as_str()) {
        bail!("--objective {}: use return, tracking, cost, ripcord, liquidation or rebalances", a.objective);
    }
    if a.paths == 0 {
        bail!("--paths must be at least 1");
    }
    let text = text.to_string();
    let product = crate::product_cmd::parse_product(&text, name)?;
    let (symbol, p0) = (product.symbol().to_string(), crate::backtest::product_start_price(&product));
    let risk = RiskNames::of(product.kind());
    let mut grid = Vec::new();
    for g in &a.grid {
        let (k, v) = g.split_once('=').ok_or_else(|| anyhow!("--grid {g}: write KEY=VALUES"))?;
        let values = parse_values(v).map_err(|e| anyhow!("--grid {k}: {e}"))?;
        check_grid_key(&text, k.trim(), &values[0])?;
        grid.push((k.trim().to_string(), values));
    }
    let block_time = duration(&a.block_time, "--block-time")?;
    let horizon = duration(&a.horizon, "--horizon")?;
    if block_time == 0 || horizon < block_time {
        bail!("--horizon must be at least one --block-time");
    }
    let mut market = match (&a.scenario, &a.prices) {
        (Some(s), None) => parse_market(s)?,
        (None, Some(path)) => {
            let window = match &a.window {
                Some(w) => {
                    let (from, to) = w.split_once("..").ok_or_else(|| anyhow!("--window {w}: write FROM..TO"))?;
                    let t = |x: &str| keel_sim::prices::csv::parse_time(x).map_err(|e| anyhow!("--window: {e}"));
                    let (lo, mut hi) = (t(from)?, t(to)?);
                    if to.trim().len() == 10 {
                        hi += 86_400; // a date alone includes its whole day
                    }
                    Some((lo, hi))
                }
                None => None,
            };
            // Gaps are bridged (each path has its own bridge) and listed, never passed over silently.
            let s = load_bars_file(path, true, window.map(|w| w.0), window.map(|w| w.1))
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            for w in &s.warnings {
                warnings.push(format!("{}: {w} (bridged)", path.display()));
            }
            match (window, a.bootstrap) {
                (Some(_), _) => Market::Bars { bars: s.bars, interval: s.interval },
                (None, true) => {
                    let returns: Vec<f64> = s.bars.windows(2).map(|w| (w[1].close / w[0].close).ln()).collect();
                    let block = (86_400 / s.interval).max(1) as usize;
                    Market::Model { model: Model::Bootstrap { returns, interval: s.interval, block }, shocks: vec![] }
                }
                (None, false) => bail!("--prices needs --bootstrap (resample) or --window A..B (replay)"),
            }
        }
        _ => bail!("give --scenario MODEL[:PARAMS], or --prices CSV with --bootstrap or --window A..B"),
    };
    if let Some(spec) = &a.shock {
        let pct = spec.strip_prefix("gap:").ok_or_else(|| anyhow!("--shock {spec}: write gap:-30%"))?;
        let x = frac(pct).with_context(|| format!("--shock {spec}"))?;
        if x <= -1.0 {
            bail!("--shock {spec}: a gap must leave a positive price (above -100%)");
        }
        let shock = keel_sim::prices::Shock {
            start: (horizon / 2 / block_time) * block_time,
            duration: 0,
            log_move: (1.0 + x).ln(),
        };
        match &mut market {
            Market::Model { shocks, .. } | Market::Scenario(_, shocks) => shocks.push(shock),
            Market::Bars { .. } => bail!("--shock applies to generated markets, not to a --window replay"),
        }
    }
    let costs = match a.costs.as_str() {
        "all" => Costs::ALL,
        "none" => Costs::NONE,
        other => bail!("--costs {other}: use 'all' or 'none'"),
    };
    let lending = matches!(product, keel_core::product::AnyProduct::Lending(_));
    if lending && a.funding.is_set() {
        bail!("--funding and the premium flags apply to perp products; a lending FLI pays interest, not funding");
    }
    let replay = a.funding.funding.as_deref().is_some_and(|f| f != "off" && f != "process");
    let span = match &market {
        Market::Bars { bars, .. } => (bars.first().map_or(0, |b| b.time), bars.last().map_or(0, |b| b.time)),
        _ if replay => bail!("--funding FILE.csv replays a history: use it with --prices and --window"),
        _ => (0, 0),
    };
    let scenario_name = match &market {
        Market::Scenario(name, _) => Some(name.as_str()),
        _ => None,
    };
    let funding = a.funding.model(scenario_name, costs == Costs::NONE, span)?;
    let cfg = SweepConfig {
        product_toml: text,
        grid,
        paths: a.paths,
        market,
        horizon,
        block_time,
        seed: a.seed,
        sim: SimConfig { costs, sample_every: 86_400, ..SimConfig::default() },
        p0,
        funding,
    };
    let market_words = match (&a.scenario, &a.prices, &a.window) {
        (Some(s), _, _) => format!("market {s}"),
        (None, Some(p), Some(w)) => {
            format!("{} replayed over {w}, each path bridging the bars with its own seed", p.display())
        }
        (None, Some(p), None) => format!("{} resampled in daily blocks of returns", p.display()),
        _ => String::new(),
    };
    let horizon_words = match &cfg.market {
        Market::Scenario(..) => "the scenario's own length".to_string(),
        Market::Bars { .. } => "the window's length".to_string(),
        Market::Model { .. } => format!("{:.0} days", cfg.horizon as f64 / 86_400.0),
    };
    let mut context = vec![format!(
        "{market_words}{}; blocks of {} s; horizon {horizon_words}; seed {}; {} paths per grid point; costs {}",
        a.shock.as_deref().map(|s| format!(", shock {s} halfway")).unwrap_or_default(),
        cfg.block_time,
        cfg.seed,
        cfg.paths,
        a.costs
    )];
    if !lending {
        context.push(format!("funding on the perp venue: {}", cfg.funding.describe()));
    }
    if let Some(p) = &a.prices {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        context.push(format!("prices {} (SHA-256 {})", p.display(), crate::provenance::sha256_hex(&bytes)));
    }
    context.push(format!(
        "keel {}; product {name} (SHA-256 {}); grid {}",
        env!("CARGO_PKG_VERSION"),
        crate::provenance::sha256_hex(cfg.product_toml.as_bytes()),
        cfg.grid.iter().map(|(k, v)| format!("{k} = {}", v.join(", "))).collect::<Vec<_>>().join("; ")
    ));
    Ok((SweepPlan { cfg, symbol, risk, objective: a.objective.clone(), context }, warnings))
}

/// Run `keel sweep`.
pub fn run(a: Args) -> Result<ExitCode> {
    let (text, name) = crate::product_cmd::product_text(a.product.as_deref())?;
    let (plan, warnings) = plan(&a, &text, &name)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let SweepPlan { cfg, risk, .. } = &plan;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
        .map_err(|e| anyhow!("--threads: {e}"))?;
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} paths, ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let pb = bar.clone();
    let writes: &[&str] =
        if a.paths_csv { &["results.csv", "report.html", "paths.csv"] } else { &["results.csv", "report.html"] };
    if let Some(note) = crate::out_dir::prepare(&a.out, writes)? {
        eprintln!("{note}");
    }
    let mut paths_writer = if a.paths_csv {
        let path = a.out.join("paths.csv");
        let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut header: Vec<String> = cfg.grid.iter().map(|(k, _)| k.clone()).collect();
        header.extend(PATH_COLUMNS.iter().map(|s| risk.rename(s)));
        w.write_record(&header)?;
        Some(w)
    } else {
        None
    };
    let started = std::time::Instant::now();
    let mut results = pool
        .install(|| {
            let progress = move |d, t| {
                if let Some(pb) = &pb {
                    pb.set_length(t);
                    pb.set_position(d);
                }
            };
            match paths_writer.as_mut() {
                Some(w) => run_sweep_with(cfg, &progress, &mut |settings, outs| {
                    write_paths(w, settings, outs).map_err(|e| format!("paths.csv: {e}"))
                }),
                None => run_sweep(cfg, &progress),
            }
        })
        .map_err(|e| anyhow!("{e}"))?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(mut w) = paths_writer {
        w.flush().context("paths.csv")?;
    }
    let path = a.out.join("results.csv");
    std::fs::write(&path, plan.results_csv(&results)?).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(a.out.join("report.html"), plan.report_html(&results))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    plan.sort(&mut results);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&crate::json_out::csv_rows(&plan.results_csv(&results)?)?)?);
        eprintln!(
            "wrote {} (results.csv, report.html{})",
            a.out.display(),
            if a.paths_csv { ", paths.csv" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let keys: Vec<&str> = cfg.grid.iter().map(|(k, _)| k.as_str()).collect();
    println!(
        "{} grid points × {} paths (the same paths for every point), sorted by {}; {:.1} s, {:.0} paths/s",
        results.len(),
        a.paths,
        a.objective,
        elapsed,
        (results.len() * a.paths) as f64 / elapsed.max(1e-9)
    );
    let settings = keys.join(" / ");
    let emergency = format!("{}%", risk.emergency);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for p in &results {
        let label = p.settings.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" / ");
        match (&p.stats, &p.invalid) {
            (Some(s), _) => rows.push(vec![
                label,
                format!("{:.2}%", s.nav_vs_ideal.mean * 100.0),
                format!("{:.2}%", s.nav_vs_ideal.p5 * 100.0),
                format!("{:.1}%", s.tracking_error * 100.0),
                format!("{:.1}%", s.p_ripcord * 100.0),
                format!("{:.1}%", s.p_liquidation * 100.0),
                format!("{:.1}", s.mean_rebalances),
                keel_report::thousands(s.mean_total_cost, 0),
                format!("{:.2}%", s.var_1d_99 * 100.0),
                format!("{:.4}", s.delever_speed),
            ]),
            (None, Some(why)) => skipped.push(format!("{label}: skipped: {why}")),
            _ => {}
        }
    }
    print!(
        "{}",
        keel_report::text_table(
            &[
                &settings,
                "vs ideal",
                "p5",
                "track.err",
                &emergency,
                "liquid.%",
                "rebalances",
                "cost $",
                "VaR 1d",
                "delever"
            ],
            &rows,
            &[false, true, true, true, true, true, true, true, true, true],
        )
    );
    for s in skipped {
        println!("{s}");
    }
    if a.shock.is_some() || a.window.is_some() {
        let rows: Vec<Vec<String>> = results
            .iter()
            .filter_map(|p| {
                let s = p.stats.as_ref()?;
                Some(vec![
                    p.settings.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" / "),
                    format!("{:.1}%", s.p_saved_by_ripcord * 100.0),
                    format!("{:.0}", s.delever_minutes),
                    format!("{:.3}", s.min_health_factor),
                ])
            })
            .collect();
        println!("stress:");
        print!(
            "{}",
            keel_report::text_table(
                &[&settings, &format!("{} saved", risk.emergency), "delever (min)", risk.lowest],
                &rows,
                &[false, true, true, true],
            )
        );
    }
    if risk.emergency == "ripcord"
        && cfg.block_time >= 60
        && results.iter().filter_map(|p| p.stats.as_ref()).any(|s| s.p_ripcord > 0.0)
    {
        println!(
            "note: at {} blocks a ripcord trades at most one chunk per block, so delever speed, ripcord and liquidation \
             figures are pessimistic; rerun stress cases with --block-time 12s",
            a.block_time
        );
    }
    println!("wrote {} (results.csv, report.html{})", a.out.display(), if a.paths_csv { ", paths.csv" } else { "" });
    Ok(ExitCode::SUCCESS)
}

/// What the risk columns are called for a kind of token: its emergency action (a ripcord on
/// FLI, a close under the minimum margin on the Synthetix-style tokens) and its health measure
/// (health factor on a lending market, margin ratio on a perp venue).
pub struct RiskNames {
    emergency: &'static str,
    health: &'static str,
    lowest: &'static str,
}

impl RiskNames {
    fn of(kind: keel_core::leveraged::Kind) -> Self {
        let hf = kind.health_name() == "health factor";
        RiskNames {
            emergency: kind.emergency_action(),
            health: if hf { "health_factor" } else { "margin_ratio" },
            lowest: if hf { "lowest HF" } else { "lowest MR" },
        }
    }

    /// A CSV column named for this kind.
    fn rename(&self, column: &str) -> String {
        column.replace("ripcord", self.emergency).replace("health_factor", self.health)
    }
}

/// paths.csv columns after the grid keys.
const PATH_COLUMNS: &[&str] = &[
    "path",
    "nav_vs_ideal",
    "tracking_error",
    "ripcord",
    "liquidated",
    "rebalances",
    "cost_total",
    "worst_drawdown",
    "time_outside_band",
    "delever_speed",
    "delever_minutes",
    "min_health_factor",
];

fn write_paths(
    w: &mut csv::Writer<std::fs::File>,
    settings: &[(String, String)],
    outs: &[PathOutcome],
) -> csv::Result<()> {
    for o in outs {
        let mut row: Vec<String> = settings.iter().map(|(_, v)| v.clone()).collect();
        row.push(o.path.to_string());
        for v in [o.nav_vs_ideal, o.tracking_error] {
            row.push(format!("{v}"));
        }
        row.push(o.ripcord.to_string());
        row.push(o.liquidated.to_string());
        for v in [o.rebalances, total_cost(&o.costs), o.drawdown, o.outside] {
            row.push(format!("{v}"));
        }
        row.push(o.delever_speed.map(|v| format!("{v}")).unwrap_or_default());
        row.push(format!("{}", o.delever_minutes));
        row.push(format!("{}", o.min_hf));
        w.write_record(&row)?;
    }
    Ok(())
}

/// `results.csv`: one row per grid point, columns named for the kind's risk.
fn results_csv(results: &[PointResult], risk: &RiskNames) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let keys: Vec<String> =
        results.first().map(|p| p.settings.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut header = keys.clone();
    for h in [
        "invalid",
        "nav_vs_ideal_mean",
        "nav_vs_ideal_median",
        "nav_vs_ideal_p5",
        "nav_vs_ideal_p95",
        "tracking_error",
        "p_ripcord",
        "p_liquidation",
        "mean_rebalances",
        "cost_pool_fees",
        "cost_price_impact",
        "cost_gas_keeper",
        "cost_gas_bots",
        "cost_interest",
        "cost_ether_rewards",
        "cost_streaming_fee",
        "cost_mint_redeem_fees",
        "cost_venue_keeper_fees",
        "cost_funding",
        "cost_total",
        "worst_drawdown",
        "time_outside_band",
        "var_1d_99",
        "es_1d_99",
        "delever_speed",
        "delever_minutes_max",
        "min_health_factor",
        "p_saved_by_ripcord",
    ] {
        header.push(risk.rename(h));
    }
    w.write_record(&header)?;
    for p in results {
        let mut row: Vec<String> = p.settings.iter().map(|(_, v)| v.clone()).collect();
        row.push(p.invalid.clone().unwrap_or_default());
        match &p.stats {
            Some(s) => {
                let c = &s.mean_costs;
                let head = [
                    s.nav_vs_ideal.mean,
                    s.nav_vs_ideal.median,
                    s.nav_vs_ideal.p5,
                    s.nav_vs_ideal.p95,
                    s.tracking_error,
                    s.p_ripcord,
                    s.p_liquidation,
                    s.mean_rebalances,
                ];
                // cost columns in CostBreakdown's field order, as the header names them
                for v in head.into_iter().chain(c.values()).chain([
                    s.mean_total_cost,
                    s.worst_drawdown,
                    s.time_outside_band,
                    s.var_1d_99,
                    s.es_1d_99,
                    s.delever_speed,
                    s.delever_minutes,
                    s.min_health_factor,
                    s.p_saved_by_ripcord,
                ]) {
                    row.push(format!("{v}"));
                }
            }
            None => row.extend(std::iter::repeat_n(String::new(), header.len() - row.len())),
        }
        w.write_record(&row)?;
    }
    w.into_inner().map_err(|e| anyhow!("results.csv: {e}"))
}

/// Every dotted key of a product file (`methodology.max_leverage_ratio`, ...).
fn product_keys(text: &str) -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(sub) => walk(&key, sub, out),
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(t) = text.parse::<toml::Table>() {
        walk("", &t, &mut out);
    }
    out
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A grid key must be a setting the product file understands: a misspelt key would make every
/// point invalid and the sweep an empty table. Refused with the closest valid key.
pub fn check_grid_key(text: &str, key: &str, first: &str) -> Result<()> {
    let unknown = match keel_sim::sweep::with_setting(text, key, first) {
        Err(e) => Some(e),
        Ok(t) => match keel_core::product::AnyProduct::from_toml(&t) {
            Err(keel_core::error::ProductError::Unknown(field)) if field == key || key.starts_with(&field) => {
                Some(format!("`{key}` is not a setting of this product"))
            }
            _ => None,
        },
    };
    if let Some(why) = unknown {
        let keys = product_keys(text);
        let near = keys.iter().min_by_key(|k| distance(k, key));
        match near {
            Some(n) => bail!("--grid {key}: {why}; did you mean {n}?"),
            None => bail!("--grid {key}: {why}"),
        }
    }
    Ok(())
}
