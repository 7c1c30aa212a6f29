//! `keel compare`: several products, one market. Every product runs on the same price path
//! (the same scenario and seed, or the same bars) with the same starting TVL and no holder
//! flows, so the differences are the methodologies' and venues' own.

use crate::backtest::{MarketArgs, price_source, product_start_price};
use anyhow::{Context, Result, anyhow, bail};
use keel_core::product::{AnyProduct, parse_duration};
use keel_sim::metrics::NullSink;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `keel compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Product TOML files, one run each (lending FLI, PerpV2 FLI, threshold, daily, continuous):
    /// `--products A.toml B.toml` or `--product A.toml --product B.toml`.
    #[arg(long = "products", alias = "product", required = true, num_args = 1..)]
    pub products: Vec<PathBuf>,
    /// Output directory: compare.csv and report.html (the NAV curves overlaid).
    #[arg(long, default_value = "keel-compare")]
    pub out: PathBuf,
    /// The market every product runs on.
    #[command(flatten)]
    pub market: MarketArgs,
    /// Seconds per block for every product.
    #[arg(long, default_value = "12s")]
    pub block_time: String,
    /// USD issued at the start of every product.
    #[arg(long, default_value_t = 1_000_000.0, allow_negative_numbers = true)]
    pub tvl: f64,
    /// Funding on the perp venues (every perp product sees the same rates).
    #[command(flatten)]
    pub funding: crate::funding_args::FundingArgs,
    /// Print the results as JSON (compare.csv's rows as objects) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One product's line.
struct Row {
    symbol: String,
    methodology: String,
    token: f64,
    ideal: f64,
    tracking_error: f64,
    drawdown: f64,
    daily: Vec<f64>,
    costs_by_kind: Vec<(&'static str, f64)>,
    funding: f64,
    /// On a perp venue (funding applies).
    perp: bool,
    rebalances: u64,
    stress: String,
    max_leverage: f64,
    costs: f64,
}

/// `keel compare`.
pub fn run(a: Args) -> Result<ExitCode> {
    let products: Vec<(String, String)> = a
        .products
        .iter()
        .map(|p| crate::product_cmd::read_small(p, "product file").map(|t| (t, p.display().to_string())))
        .collect::<Result<_>>()?;
    if let Some(note) = crate::out_dir::prepare(&a.out, &["compare.csv", "report.html"])? {
        eprintln!("{note}");
    }
    let c = compare(&a, &products, &std::sync::atomic::AtomicBool::new(false))?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&crate::json_out::csv_rows(&c.csv)?)?);
    } else {
        print!("{}", c.table);
    }
    std::fs::write(a.out.join("compare.csv"), &c.csv)
        .with_context(|| format!("cannot write {}", a.out.join("compare.csv").display()))?;
    std::fs::write(a.out.join("report.html"), &c.html).with_context(|| format!("cannot write {}", a.out.display()))?;
    let wrote = format!("wrote {} (compare.csv, report.html)", a.out.display());
    if a.json {
        eprintln!("{wrote}");
    } else {
        println!("{wrote}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `keel compare` shows and writes.
pub struct Comparison {
    /// The terminal table.
    pub table: String,
    /// `compare.csv`'s bytes.
    pub csv: Vec<u8>,
    /// `report.html`.
    pub html: String,
    /// Problems met loading the prices.
    pub warnings: Vec<String>,
}

/// The command that runs this comparison again, and every input file with its SHA-256.
fn rerun(a: &Args, products: &[(String, String)]) -> Result<Vec<String>> {
    let sha = crate::provenance::sha256_hex;
    let mut cmd = vec!["keel compare --products".to_string()];
    let q = crate::provenance::quote;
    cmd.extend(products.iter().map(|(_, name)| q(name)));
    match &a.market.prices {
        Some(p) => cmd.push(format!("--prices {}", q(&p.display().to_string()))),
        None => cmd.push(format!("--scenario {}", q(a.market.scenario.as_deref().unwrap_or("default")))),
    }
    for (flag, v) in [("--from", &a.market.from), ("--to", &a.market.to)] {
        if let Some(v) = v {
            cmd.push(format!("{flag} {}", q(v)));
        }
    }
    if a.market.allow_gaps {
        cmd.push("--allow-gaps".into());
    }
    cmd.push(format!("--seed {} --block-time {} --tvl {}", a.market.seed, a.block_time, a.tvl));
    for (f, v) in a.funding.flags() {
        cmd.push(format!("--{f} {}", q(&v)));
    }
    let mut out = vec![cmd.join(" ")];
    for (text, name) in products {
        out.push(format!("{name}: SHA-256 {}", sha(text.as_bytes())));
    }
    if let Some(p) = &a.market.prices {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        out.push(format!("{}: SHA-256 {}", p.display(), sha(&bytes)));
    }
    out.push(format!("keel {}", env!("CARGO_PKG_VERSION")));
    Ok(out)
}

/// Run every product (`(text, name)` pairs; the first sets the path's starting price) on the
/// market of `a` and build the table, CSV and report; `a.products` and `a.out` are not read.
/// Setting `stop` ends the run with an error.
pub fn compare(a: &Args, products: &[(String, String)], stop: &std::sync::atomic::AtomicBool) -> Result<Comparison> {
    if products.is_empty() {
        bail!("give at least one product");
    }
    let block_time = parse_duration(&a.block_time).map_err(|e| anyhow!("--block-time: {e}"))?;
    if block_time == 0 {
        bail!("--block-time must be positive");
    }
    crate::backtest::check_tvl(a.tvl)?;
    let loaded: Vec<(String, AnyProduct)> = products
        .iter()
        .map(|(text, name)| crate::product_cmd::parse_product(text, name).map(|x| (name.clone(), x)))
        .collect::<Result<_>>()?;
    let underlying_of = |p: &AnyProduct| -> String { p.underlying() };
    let first = underlying_of(&loaded[0].1);
    for (path, p) in &loaded[1..] {
        let u = underlying_of(p);
        if u != first {
            bail!("{path}: tracks {u}, but {} tracks {first}; compare products on the same underlying", loaded[0].0);
        }
    }
    // Every product starts from the first product's price, so the paths are identical.
    let p0 = product_start_price(&loaded[0].1);
    let mut rows = Vec::new();
    let mut market_name = String::new();
    let mut underlying = 0.0;
    let mut funding_line = String::new();
    let mut all_warnings = Vec::new();
    let mut start_time = 0;
    for (path, product) in &loaded {
        let (mut src, name, warnings) = price_source(&a.market, p0, block_time)?;
        let model =
            a.funding.model(a.market.scenario.as_deref(), false, crate::backtest::window(src.as_ref(), block_time))?;
        if funding_line.is_empty() {
            funding_line = model.describe();
        }
        if market_name.is_empty() {
            all_warnings = warnings;
            market_name = name;
            start_time = src.start_time();
        }
        let none = keel_sim::agents::HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
        let mut src = keel_sim::prices::Cancellable::new(src.as_mut(), stop);
        let r = keel_sim::market::run_product(
            product,
            &mut src,
            a.tvl,
            none,
            a.market.seed,
            &market_name,
            &model,
            &mut NullSink,
        )
        .map_err(|e| anyhow!("{path}: {e}"))?;
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("{}", keel_sim::sweep::CANCELLED);
        }
        let s = &r.summary;
        let c = &s.costs_usd;
        underlying = s.underlying_return;
        let methodology = product.describe();
        let costs_by_kind: Vec<(&'static str, f64)> = vec![
            ("pool fees", c.pool_fees),
            ("price impact", c.price_impact),
            ("gas", c.gas_keeper + c.gas_bots),
            ("interest", c.interest),
            ("ripcord rewards", c.ether_rewards),
            ("streaming fee", c.streaming_fee),
            ("mint/redeem fees", c.mint_redeem_fees),
            ("venue keeper fees", c.venue_keeper_fees),
            ("funding", c.funding),
        ];
        let costs = keel_sim::sweep::total_cost(c);
        rows.push(Row {
            symbol: s.product.clone(),
            methodology,
            token: s.token_return,
            ideal: s.ideal_return,
            tracking_error: s.tracking_error,
            drawdown: r.max_drawdown,
            daily: r.daily_nav_returns.clone(),
            costs_by_kind,
            funding: c.funding,
            perp: !matches!(product, AnyProduct::Lending(_)),
            rebalances: s.counts.rebalances + s.counts.iterations + s.counts.ripcords + s.counts.closes,
            stress: format!(
                "{} {}, {} liquid.",
                s.counts.ripcords + s.counts.closes,
                product.kind().emergency_action(),
                s.counts.liquidations
            ),
            max_leverage: s.max_leverage,
            costs,
        });
    }
    let header = format!(
        "{} products on {market_name}, {}-second blocks, ${} each at the start; underlying {:+.2}%\nfunding on the perp venues: {funding_line}\nseed {}; keel {}\n",
        rows.len(),
        block_time,
        keel_report::thousands(a.tvl, 0),
        underlying * 100.0,
        a.market.seed,
        env!("CARGO_PKG_VERSION")
    );
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.symbol.clone(),
                r.methodology.clone(),
                format!("{:.2}%", r.token * 100.0),
                format!("{:.2}%", r.ideal * 100.0),
                // Against an ideal that lost (almost) everything the ratio means nothing.
                if r.ideal > -0.999 {
                    format!("{:.2}%", ((1.0 + r.token) / (1.0 + r.ideal) - 1.0) * 100.0)
                } else {
                    "n/a".into()
                },
                format!("{:.1}%", r.tracking_error * 100.0),
                format!("{:.1}%", r.drawdown * 100.0),
                keel_report::thousands(r.rebalances as f64, 0),
                r.stress.clone(),
                format!("{:.3}", r.max_leverage),
                keel_report::thousands(r.costs, 0),
                // a lending FLI pays interest, not funding
                if r.perp { keel_report::thousands(r.funding, 0) } else { "–".to_string() },
            ]
        })
        .collect();
    let table = header.clone()
        + &keel_report::text_table(
            &[
                "token",
                "methodology",
                "return",
                "ideal",
                "vs ideal",
                "track.err",
                "max DD",
                "rebal.",
                "stress",
                "max lev",
                "costs $",
                "funding $",
            ],
            &cells,
            &[false, false, true, true, true, true, true, true, false, true, true, true],
        );
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "token",
        "methodology",
        "return",
        "ideal_return",
        "tracking_error",
        "max_drawdown",
        "rebalances",
        "stress",
        "max_leverage",
        "cost_total",
        "funding",
        "costs_by_kind",
    ])?;
    for r in &rows {
        let kinds = r.costs_by_kind.iter().map(|(k, v)| format!("{k}={v:.2}")).collect::<Vec<_>>().join("; ");
        w.write_record([
            r.symbol.clone(),
            r.methodology.clone(),
            format!("{}", r.token),
            format!("{}", r.ideal),
            format!("{}", r.tracking_error),
            format!("{}", r.drawdown),
            r.rebalances.to_string(),
            r.stress.clone(),
            format!("{}", r.max_leverage),
            format!("{}", r.costs),
            format!("{}", r.funding),
            kinds,
        ])?;
    }
    let csv = w.into_inner().map_err(|e| anyhow!("compare.csv: {e}"))?;
    let series: Vec<keel_report::CompareSeries> = rows
        .iter()
        .map(|r| {
            let mut nav = vec![1.0];
            for d in &r.daily {
                let last = *nav.last().unwrap_or(&1.0);
                nav.push(last * d.exp());
            }
            keel_report::CompareSeries { label: format!("{} — {}", r.symbol, r.methodology), nav }
        })
        .collect();
    let html = keel_report::compare_report(&market_name, &header, start_time, &series, &csv, &rerun(a, products)?);
    Ok(Comparison { table, csv, html, warnings: all_warnings })
}
