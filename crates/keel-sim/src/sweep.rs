//! Parameter sweeps and Monte Carlo: every grid point runs the same N paths (common random
//! numbers), paths in parallel, each path's seed derived from (seed, path index) and never from
//! the thread, results aggregated in path order — so the same command gives the same bytes with
//! one thread or many. Only per-path scalars are kept, never series: memory is flat in N.

use crate::engine::{SimConfig, Simulation};
use crate::metrics::{CostBreakdown, NullSink};
use crate::prices::{GeneratedPath, Model, PriceSource, Shock, scenario};
use keel_core::product::AnyProduct;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where each path's prices come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Market {
    /// A return model over the horizon, with optional shocks, from `p0`.
    Model {
        /// The model.
        model: Model,
        /// Deterministic moves laid over it.
        shocks: Vec<Shock>,
    },
    /// A named scenario (its own length), with extra shocks.
    Scenario(String, Vec<Shock>),
    /// A historical window of bars, bridged to blocks (each path its own bridge).
    Bars {
        /// The bars.
        bars: Vec<crate::prices::Bar>,
        /// Their spacing in seconds.
        interval: u64,
    },
}

/// One sweep's inputs.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The product file's text (grid values are written into it per point).
    pub product_toml: String,
    /// Grid axes: TOML path and the values it takes.
    pub grid: Vec<(String, Vec<String>)>,
    /// Paths per grid point.
    pub paths: usize,
    /// The market.
    pub market: Market,
    /// Horizon in seconds (model markets).
    pub horizon: u64,
    /// Seconds per block.
    pub block_time: u64,
    /// Master seed.
    pub seed: u64,
    /// Simulation settings (costs, keepers, holders).
    pub sim: SimConfig,
    /// Starting price of the underlying.
    pub p0: f64,
    /// How the perp venues' funding is made (lending products: unused).
    pub funding: crate::funding::FundingModel,
}

/// Mean, median and the 5% and 95% quantiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// Aggregates over one grid point's paths.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PointStats {
    /// Final NAV relative to the ideal token's, minus 1.
    pub nav_vs_ideal: Dist,
    /// Mean annualised tracking error.
    pub tracking_error: f64,
    /// Share of paths with at least one ripcord.
    pub p_ripcord: f64,
    /// Share of paths with at least one liquidation.
    pub p_liquidation: f64,
    /// Mean rebalance count (rebalances + iterations + ripcords).
    pub mean_rebalances: f64,
    /// Mean costs by kind, USD.
    pub mean_costs: CostBreakdown,
    /// Mean of all costs, USD.
    pub mean_total_cost: f64,
    /// Worst peak-to-trough NAV fall over all paths.
    pub worst_drawdown: f64,
    /// Mean share of time outside [min, max].
    pub time_outside_band: f64,
    /// One-day 99% value-at-risk of NAV (a loss, as a positive fraction), pooled over paths.
    pub var_1d_99: f64,
    /// One-day 99% expected shortfall of NAV.
    pub es_1d_99: f64,
    /// Mean delever speed, leverage points per minute, over paths that delevered.
    pub delever_speed: f64,
    /// Longest time above the band on any path, minutes (how long delevering took).
    pub delever_minutes: f64,
    /// Lowest health factor on any path.
    pub min_health_factor: f64,
    /// Share of paths where a ripcord fired and no liquidation followed ("ripcord saved it").
    pub p_saved_by_ripcord: f64,
}

/// One grid point's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointResult {
    /// The settings of this point, as written.
    pub settings: Vec<(String, String)>,
    /// The rule the settings break, if any (the point is then skipped).
    pub invalid: Option<String>,
    /// Aggregates (absent for invalid points).
    pub stats: Option<PointStats>,
}

/// The seed of path `i`: a splitmix64 mix of (seed, i), independent of threads.
pub fn path_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Expand `2.2,2.3` or `2.2..2.5 step 0.05` (decimal steps computed exactly; `%` kept).
pub fn parse_values(spec: &str) -> Result<Vec<String>, String> {
    let s = spec.trim();
    if let Some((range, step)) = s.split_once(" step ") {
        let (a, b) = range.split_once("..").ok_or_else(|| format!("'{spec}': a range reads START..END step STEP"))?;
        let pct = a.trim().ends_with('%');
        let num = |x: &str| -> Result<keel_core::math::U256, String> {
            keel_core::math::parse_units(x.trim().trim_end_matches('%'), 18).map_err(|e| format!("'{spec}': {e}"))
        };
        let (lo, hi, st) = (num(a)?, num(b)?, num(step)?);
        if st.is_zero() || hi < lo {
            return Err(format!("'{spec}': the step must be positive and END at least START"));
        }
        let mut out = Vec::new();
        let mut v = lo;
        while v <= hi {
            let t = keel_core::math::format_units(v, 18);
            out.push(if pct { format!("{t}%") } else { t });
            v += st;
            if out.len() > 10_000 {
                return Err(format!("'{spec}': more than 10000 values"));
            }
        }
        return Ok(out);
    }
    let out: Vec<String> = s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
    if out.is_empty() {
        return Err(format!("'{spec}': no values"));
    }
    Ok(out)
}

/// Write `value` at the dotted `key` of a product TOML text.
pub fn with_setting(text: &str, key: &str, value: &str) -> Result<String, String> {
    let mut root: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let parts: Vec<&str> = key.split('.').collect();
    let (last, path) = parts.split_last().ok_or("empty key")?;
    let mut t = &mut root;
    for p in path {
        t = t
            .get_mut(*p)
            .and_then(|v| v.as_table_mut())
            .ok_or_else(|| format!("grid key `{key}`: the product has no section `{p}`"))?;
    }
    t.insert(last.to_string(), toml::Value::String(value.to_string()));
    Ok(root.to_string())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn dist(mut v: Vec<f64>) -> Dist {
    v.retain(|x| x.is_finite());
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    Dist { mean, median: quantile(&v, 0.5), p5: quantile(&v, 0.05), p95: quantile(&v, 0.95) }
}

/// One path's outcome at one grid point: the scalars a sweep keeps (never the series).
#[derive(Debug, Clone, Default)]
pub struct PathOutcome {
    /// Path index (its seed derives from the master seed and this).
    pub path: u64,
    /// Final NAV relative to the ideal token, −1..
    pub nav_vs_ideal: f64,
    /// Annualised tracking error against the ideal token.
    pub tracking_error: f64,
    /// At least one ripcord fired.
    pub ripcord: bool,
    /// The position was liquidated at least once.
    pub liquidated: bool,
    /// Rebalances, iterations and ripcords.
    pub rebalances: f64,
    /// Costs by kind, USD.
    pub costs: CostBreakdown,
    /// Worst peak-to-trough NAV drawdown.
    pub drawdown: f64,
    /// Share of engaged time outside [min, max].
    pub outside: f64,
    /// Mean delever speed, leverage points per minute, if it delevered.
    pub delever_speed: Option<f64>,
    /// Longest time above the band, minutes.
    pub delever_minutes: f64,
    /// Lowest health factor seen (0 if never levered).
    pub min_hf: f64,
}

/// A fixed histogram of daily returns in [−100%, +100%] (0.05% bins): VaR and ES without
/// keeping samples. Integer counts merge identically in any order, so the result does not
/// depend on how paths were split between threads.
#[derive(Clone)]
struct Tail {
    bins: Vec<u64>,
    n: u64,
}

impl Tail {
    const BINS: usize = 4_000;
    fn new() -> Self {
        Tail { bins: vec![0; Self::BINS], n: 0 }
    }
    fn bin(r: f64) -> usize {
        let x = r.clamp(-1.0, 1.0);
        (((x + 1.0) / 2.0) * (Self::BINS as f64 - 1.0)) as usize
    }
    fn mid(i: usize) -> f64 {
        (i as f64 + 0.5) / (Self::BINS as f64 - 1.0) * 2.0 - 1.0
    }
    fn add(&mut self, r: f64) {
        self.bins[Self::bin(r)] += 1;
        self.n += 1;
    }
    /// Fold a path's daily log returns in as simple returns.
    fn add_log_returns(&mut self, log_returns: &[f64]) {
        for d in log_returns {
            self.add(d.exp() - 1.0);
        }
    }
    fn merge(mut self, other: Tail) -> Tail {
        for (a, b) in self.bins.iter_mut().zip(other.bins) {
            *a += b;
        }
        self.n += other.n;
        self
    }
    /// (VaR, ES) at 99%, as positive losses.
    fn var_es(&self) -> (f64, f64) {
        if self.n == 0 {
            return (0.0, 0.0);
        }
        let cut = (self.n as f64 * 0.01).ceil() as u64;
        let (mut seen, mut sum) = (0u64, 0.0);
        for (i, c) in self.bins.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            let take = (*c).min(cut - seen);
            seen += take;
            sum += take as f64 * Self::mid(i);
            if seen >= cut {
                return (-Self::mid(i), -(sum / seen as f64));
            }
        }
        (0.0, 0.0)
    }
}

/// The sum of every cost kind, USD.
pub fn total_cost(c: &CostBreakdown) -> f64 {
    c.total()
}

fn source(cfg: &SweepConfig, seed: u64) -> Result<Box<dyn PriceSource + Send>, String> {
    let start = 1_704_067_200;
    match &cfg.market {
        Market::Model { model, shocks } => Ok(Box::new(GeneratedPath::new(
            model.clone(),
            shocks.clone(),
            cfg.p0,
            start,
            cfg.block_time,
            cfg.horizon / cfg.block_time,
            seed,
        ))),
        Market::Scenario(name, shocks) => scenario(name, cfg.p0, start, cfg.block_time, seed)
            .map(|s| Box::new(s.with_shocks(shocks)) as Box<dyn PriceSource + Send>)
            .ok_or_else(|| format!("unknown scenario {name}")),
        Market::Bars { bars, interval } => {
            crate::prices::BridgedBars::new(bars.clone(), *interval, cfg.block_time, seed)
                .map(|b| Box::new(b) as Box<dyn PriceSource + Send>)
        }
    }
}

/// Every grid point's settings (the cartesian product, first axis slowest).
pub fn points(grid: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut out = vec![vec![]];
    for (k, vals) in grid {
        let mut next = Vec::with_capacity(out.len() * vals.len());
        for p in &out {
            for v in vals {
                let mut q = p.clone();
                q.push((k.clone(), v.clone()));
                next.push(q);
            }
        }
        out = next;
    }
    out
}

/// The number of grid points (the product of the axes' lengths).
pub fn point_count(grid: &[(String, Vec<String>)]) -> usize {
    grid.iter().map(|(_, v)| v.len()).product()
}

/// Grid point `index` in [`points`] order (first axis slowest), without listing the others.
pub fn point(grid: &[(String, Vec<String>)], index: usize) -> Option<Vec<(String, String)>> {
    if index >= point_count(grid) {
        return None;
    }
    let mut rest = index;
    let mut out = vec![(String::new(), String::new()); grid.len()];
    for (slot, (k, vals)) in out.iter_mut().zip(grid).rev() {
        *slot = (k.clone(), vals[rest % vals.len()].clone());
        rest /= vals.len();
    }
    Some(out)
}

/// Run the sweep. `progress(done, total)` is called as paths finish (from worker threads).
pub fn run_sweep(cfg: &SweepConfig, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<Vec<PointResult>, String> {
    run_sweep_with(cfg, progress, &mut |_, _| Ok(()))
}

/// Receives one grid point's settings and its per-path outcomes, in path order.
pub type PathsSink<'a> = dyn FnMut(&[(String, String)], &[PathOutcome]) -> Result<(), String> + 'a;

/// [`run_sweep`], handing each valid grid point's per-path outcomes (in path order) to
/// `on_paths` before they are folded into statistics, e.g. to stream `paths.csv`. Only one
/// point's scalars are held at a time.
pub fn run_sweep_with(
    cfg: &SweepConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
    on_paths: &mut PathsSink<'_>,
) -> Result<Vec<PointResult>, String> {
    run_sweep_until(cfg, progress, on_paths, &AtomicBool::new(false))
}

/// [`run_sweep_with`] that stops when `stop` is set: paths in flight end at their next block and
/// the sweep returns [`CANCELLED`] (a notebook's Ctrl-C, a cancelled job).
pub fn run_sweep_until(
    cfg: &SweepConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
    on_paths: &mut PathsSink<'_>,
    stop: &AtomicBool,
) -> Result<Vec<PointResult>, String> {
    let n_points = point_count(&cfg.grid);
    let total = (n_points * cfg.paths) as u64;
    let done = AtomicU64::new(0);
    let counted = |d: u64| {
        if d.is_multiple_of(16) || d == total {
            progress(d, total);
        }
    };
    let mut results = Vec::with_capacity(n_points);
    for index in 0..n_points {
        let point = prepare_point(cfg, index)?;
        if point.unparsable {
            let d = done.fetch_add(cfg.paths as u64, Ordering::Relaxed) + cfg.paths as u64;
            progress(d, total);
        }
        if point.invalid().is_some() {
            results.push(aggregate(cfg, &point, vec![])?);
            continue;
        }
        let block =
            point.run_paths(cfg, 0..cfg.paths as u64, &|| counted(done.fetch_add(1, Ordering::Relaxed) + 1), stop)?;
        on_paths(&point.settings, &block.outcomes)?;
        results.push(aggregate(cfg, &point, vec![block])?);
    }
    Ok(results)
}

/// The error a stopped sweep returns.
pub const CANCELLED: &str = "cancelled";

/// What a grid point runs.
enum Runner {
    /// A lending FLI product, warmed up once (issued and engaged) and cloned per path.
    Fli(Box<Simulation>),
    /// Any other kind, its venue built fresh per path (`crate::venues::build`).
    Market(Box<AnyProduct>),
}

/// One grid point made ready to run paths: its settings written into the product, the product
/// parsed and (for a lending FLI) warmed up. A point whose settings break a rule is kept with
/// the rule and runs nothing.
pub struct PreparedPoint {
    /// The point's index in [`points`] order.
    pub index: usize,
    /// The point's settings, as written.
    pub settings: Vec<(String, String)>,
    runner: Result<Runner, String>,
    /// The settings did not parse as a product (counted as done at once).
    unparsable: bool,
}

/// Write point `index`'s settings into the product and make it ready to run paths. Errors are
/// the sweep's own (a grid key the file has no section for); a rule the settings break is kept
/// in the point ([`PreparedPoint::invalid`]).
pub fn prepare_point(cfg: &SweepConfig, index: usize) -> Result<PreparedPoint, String> {
    let settings = point(&cfg.grid, index)
        .ok_or_else(|| format!("grid point {index}: the grid has {} points", point_count(&cfg.grid)))?;
    let mut text = cfg.product_toml.clone();
    for (k, v) in &settings {
        text = with_setting(&text, k, v)?;
    }
    let (runner, unparsable) = match AnyProduct::from_toml(&text) {
        Ok(AnyProduct::Lending(product)) => {
            // One warm-up (issue and engage) per point; each path starts from a copy.
            let probe = source(cfg, path_seed(cfg.seed, 0))?;
            match Simulation::new(&product, cfg.sim.clone(), probe.start_time(), probe.start_price(), "sweep") {
                Ok(s) => (Ok(Runner::Fli(Box::new(s))), false),
                Err(e) => (Err(e.to_string()), false),
            }
        }
        Ok(other) => (Ok(Runner::Market(Box::new(other))), false),
        Err(e) => (Err(e.to_string().replace('\n', "; ")), true),
    };
    Ok(PreparedPoint { index, settings, runner, unparsable })
}

impl PreparedPoint {
    /// The rule this point's settings break, if any (it then runs no paths).
    pub fn invalid(&self) -> Option<&str> {
        self.runner.as_ref().err().map(String::as_str)
    }

    /// Run paths `range` of this point in parallel (the current rayon pool) and keep their
    /// scalars and daily-return histogram. `each()` is called as each path finishes; `stop`
    /// ends paths in flight at their next block and returns [`CANCELLED`].
    pub fn run_paths(
        &self,
        cfg: &SweepConfig,
        range: std::ops::Range<u64>,
        each: &(dyn Fn() + Sync),
        stop: &AtomicBool,
    ) -> Result<PathBlock, String> {
        let runner = self.runner.as_ref().map_err(|e| format!("grid point {}: {e}", self.index))?;
        // Each worker folds its paths' daily returns into its own histogram as they finish and
        // keeps only per-path scalars: memory is flat in the number of paths.
        // Perp tokens start from the configured TVL, or $1M.
        let perp_tvl = if cfg.sim.initial_tvl_usd > 0.0 { cfg.sim.initial_tvl_usd } else { 1_000_000.0 };
        let run_path = |i: u64, tail: &mut Tail| -> Result<PathOutcome, String> {
            let seed = path_seed(cfg.seed, i);
            let mut src = crate::prices::Cancellable::new(source(cfg, seed)?, stop);
            // every kind runs to the same RunResult; one outcome is read from it
            let r = match runner {
                Runner::Fli(base) => {
                    let mut sim = (**base).clone();
                    sim.reseed(seed);
                    sim.run(&mut src, &mut NullSink).map_err(|e| e.to_string())?
                }
                Runner::Market(p) => {
                    let none =
                        crate::agents::HolderConfig { mints_per_day: 0.0, redeems_per_day: 0.0, mean_size_usd: 0.0 };
                    crate::market::run_product(p, &mut src, perp_tvl, none, seed, "sweep", &cfg.funding, &mut NullSink)?
                }
            };
            tail.add_log_returns(&r.daily_nav_returns);
            let s = &r.summary;
            let c = s.counts;
            let outcome = PathOutcome {
                path: i,
                nav_vs_ideal: (1.0 + s.token_return) / (1.0 + s.ideal_return) - 1.0,
                tracking_error: s.tracking_error,
                // the emergency action: a ripcord (FLI) or a close under the minimum margin
                ripcord: c.ripcords + c.closes > 0,
                liquidated: c.liquidations > 0,
                rebalances: (c.rebalances + c.iterations + c.ripcords + c.closes) as f64,
                costs: s.costs_usd,
                drawdown: r.max_drawdown,
                outside: s.time_outside_band,
                delever_speed: (s.delever_speed > 0.0).then_some(s.delever_speed),
                delever_minutes: s.delever_minutes,
                min_hf: s.min_health_factor,
            };
            each();
            Ok(outcome)
        };
        let (mut indexed, tail) = range
            .into_par_iter()
            .fold(
                || (Vec::new(), Tail::new()),
                |(mut outs, mut tail), i| {
                    let o = run_path(i, &mut tail);
                    outs.push((i, o));
                    (outs, tail)
                },
            )
            .reduce(
                || (Vec::new(), Tail::new()),
                |(mut a, ta), (b, tb)| {
                    a.extend(b);
                    (a, ta.merge(tb))
                },
            );
        if stop.load(Ordering::Relaxed) {
            return Err(CANCELLED.into());
        }
        indexed.sort_by_key(|(i, _)| *i);
        let outcomes = indexed.into_iter().map(|(_, o)| o).collect::<Result<Vec<PathOutcome>, String>>()?;
        Ok(PathBlock { fingerprint: cfg.fingerprint(), point: self.index as u64, outcomes, tail })
    }
}

/// Some of one grid point's paths, run anywhere: their scalars and their daily returns'
/// histogram. Blocks of a point merge exactly ([`aggregate`]): outcomes are put back in path
/// order and histogram counts are integers, so how the paths were split, where they ran and
/// the order they finished in change nothing.
#[derive(Clone)]
pub struct PathBlock {
    /// [`SweepConfig::fingerprint`] of the sweep the block belongs to.
    pub fingerprint: u64,
    /// The grid point.
    pub point: u64,
    /// One outcome per path, in path order.
    pub outcomes: Vec<PathOutcome>,
    tail: Tail,
}

const BLOCK_MAGIC: &[u8; 4] = b"KPB1";

impl PathBlock {
    /// The block as bytes (little-endian; every float bit for bit), to send between machines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.outcomes.len() * 160);
        b.extend_from_slice(BLOCK_MAGIC);
        for v in [self.fingerprint, self.point, self.outcomes.len() as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for o in &self.outcomes {
            b.extend_from_slice(&o.path.to_le_bytes());
            b.push(u8::from(o.ripcord) | u8::from(o.liquidated) << 1 | u8::from(o.delever_speed.is_some()) << 2);
            let scalars = [o.nav_vs_ideal, o.tracking_error, o.rebalances];
            let rest = [o.drawdown, o.outside, o.delever_speed.unwrap_or(0.0), o.delever_minutes, o.min_hf];
            for v in scalars.into_iter().chain(o.costs.values()).chain(rest) {
                b.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        b.extend_from_slice(&self.tail.n.to_le_bytes());
        let used: Vec<(usize, u64)> = self.tail.bins.iter().copied().enumerate().filter(|(_, c)| *c > 0).collect();
        b.extend_from_slice(&(used.len() as u64).to_le_bytes());
        for (i, c) in used {
            b.extend_from_slice(&(i as u64).to_le_bytes());
            b.extend_from_slice(&c.to_le_bytes());
        }
        b
    }

    /// Read a block written by [`PathBlock::to_bytes`]; anything else is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<PathBlock, String> {
        let bad = |why: &str| format!("not a keel path block ({why})");
        let mut r = bytes.strip_prefix(BLOCK_MAGIC.as_slice()).ok_or_else(|| bad("no header"))?;
        let u64_ = |r: &mut &[u8]| -> Result<u64, String> {
            let (h, t) = r.split_first_chunk::<8>().ok_or_else(|| bad("cut short"))?;
            *r = t;
            Ok(u64::from_le_bytes(*h))
        };
        let (fingerprint, point, n) = (u64_(&mut r)?, u64_(&mut r)?, u64_(&mut r)?);
        if n > (bytes.len() / 150) as u64 {
            return Err(bad("more paths than bytes"));
        }
        let mut outcomes = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let path = u64_(&mut r)?;
            let (flags, t) = r.split_first().ok_or_else(|| bad("cut short"))?;
            r = t;
            let mut f = [0.0; 18];
            for v in &mut f {
                *v = f64::from_bits(u64_(&mut r)?);
            }
            outcomes.push(PathOutcome {
                path,
                nav_vs_ideal: f[0],
                tracking_error: f[1],
                ripcord: flags & 1 != 0,
                liquidated: flags & 2 != 0,
                rebalances: f[2],
                costs: CostBreakdown::from_values(std::array::from_fn(|i| f[3 + i])),
                drawdown: f[13],
                outside: f[14],
                delever_speed: (flags & 4 != 0).then_some(f[15]),
                delever_minutes: f[16],
                min_hf: f[17],
            });
        }
        let mut tail = Tail::new();
        tail.n = u64_(&mut r)?;
        let used = u64_(&mut r)?;
        for _ in 0..used {
            let (i, c) = (u64_(&mut r)?, u64_(&mut r)?);
            *tail.bins.get_mut(i as usize).ok_or_else(|| bad("histogram bin out of range"))? = c;
        }
        if !r.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(PathBlock { fingerprint, point, outcomes, tail })
    }

    /// The number of paths in the block.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether the block holds no paths.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

impl SweepConfig {
    /// A hash of everything that decides a sweep's figures (product, grid, paths, market,
    /// horizon, blocks, seed, simulation and funding settings): blocks of one sweep are never
    /// merged into another's.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a over the settings' debug text: stable for a given keel build.
        let text = format!(
            "{:?}|{:?}|{}|{:?}|{}|{}|{}|{:?}|{:?}|{:?}",
            self.product_toml,
            self.grid,
            self.paths,
            self.market,
            self.horizon,
            self.block_time,
            self.seed,
            self.sim,
            self.p0.to_bits(),
            self.funding
        );
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    }
}

/// One grid point's result from its blocks of paths: every path of the sweep exactly once,
/// whatever the blocks' sizes or order (a block from another sweep or point, a path missing or
/// counted twice is an error, never a figure). An invalid point takes no blocks.
pub fn aggregate(cfg: &SweepConfig, point: &PreparedPoint, blocks: Vec<PathBlock>) -> Result<PointResult, String> {
    if let Some(why) = point.invalid() {
        if !blocks.is_empty() {
            return Err(format!("grid point {}: invalid ({why}) but given paths", point.index));
        }
        return Ok(PointResult { settings: point.settings.clone(), invalid: Some(why.to_string()), stats: None });
    }
    let fp = cfg.fingerprint();
    let mut tail = Tail::new();
    let mut outcomes = Vec::with_capacity(cfg.paths);
    for b in blocks {
        if b.fingerprint != fp || b.point != point.index as u64 {
            return Err(format!(
                "a block of paths for grid point {} of another sweep was given to grid point {} of this one",
                b.point, point.index
            ));
        }
        tail = tail.merge(b.tail);
        outcomes.extend(b.outcomes);
    }
    outcomes.sort_by_key(|o| o.path);
    let wrong = |path: u64, how: &str| {
        format!(
            "grid point {}: path {path} {how} among its blocks of paths; every path must be counted once",
            point.index
        )
    };
    let mut want = 0u64;
    for o in &outcomes {
        if o.path < want {
            return Err(wrong(o.path, "twice"));
        }
        if o.path > want {
            return Err(wrong(want, "missing"));
        }
        want += 1;
    }
    if want < cfg.paths as u64 {
        return Err(wrong(want, "missing"));
    }
    if want > cfg.paths as u64 {
        return Err(wrong(cfg.paths as u64, &format!("is beyond the sweep's {} paths", cfg.paths)));
    }
    Ok(PointResult { settings: point.settings.clone(), invalid: None, stats: Some(point_stats(outcomes, &tail)) })
}

/// Aggregate in path order: the bytes do not depend on the threads.
fn point_stats(outcomes: Vec<PathOutcome>, tail: &Tail) -> PointStats {
    let n = outcomes.len().max(1) as f64;
    let mut costs = CostBreakdown::default();
    let (mut te, mut pr, mut pl, mut reb, mut out_band, mut dd) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0f64);
    let (mut ds, mut dn) = (0.0, 0usize);
    let (mut dmin, mut min_hf, mut saved) = (0.0f64, f64::INFINITY, 0.0);
    let mut rel = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        rel.push(o.nav_vs_ideal);
        te += o.tracking_error;
        pr += o.ripcord as u8 as f64;
        pl += o.liquidated as u8 as f64;
        reb += o.rebalances;
        out_band += o.outside;
        dd = dd.max(o.drawdown);
        costs = costs.zip_with(&o.costs, |a, b| a + b);
        if let Some(v) = o.delever_speed {
            ds += v;
            dn += 1;
        }
        dmin = dmin.max(o.delever_minutes);
        if o.min_hf > 0.0 {
            min_hf = min_hf.min(o.min_hf);
        }
        saved += (o.ripcord && !o.liquidated) as u8 as f64;
    }
    let costs = costs.zip_with(&costs, |a, _| a / n);
    let (var, es) = tail.var_es();
    PointStats {
        nav_vs_ideal: dist(rel),
        tracking_error: te / n,
        p_ripcord: pr / n,
        p_liquidation: pl / n,
        mean_rebalances: reb / n,
        mean_total_cost: total_cost(&costs),
        mean_costs: costs,
        worst_drawdown: dd,
        time_outside_band: out_band / n,
        var_1d_99: var,
        es_1d_99: es,
        delever_speed: if dn == 0 { 0.0 } else { ds / dn as f64 },
        delever_minutes: dmin,
        min_health_factor: if min_hf.is_finite() { min_hf } else { 0.0 },
        p_saved_by_ripcord: saved / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values() {
        assert_eq!(parse_values("2.2,2.3, 2.4").unwrap(), ["2.2", "2.3", "2.4"]);
        assert_eq!(parse_values("2.2..2.5 step 0.05").unwrap(), ["2.2", "2.25", "2.3", "2.35", "2.4", "2.45", "2.5"]);
        assert_eq!(parse_values("1%..3% step 1%").unwrap(), ["1%", "2%", "3%"]);
        assert!(parse_values("2.5..2.2 step 0.1").is_err());
        assert!(parse_values("").is_err());
    }

    #[test]
    fn points_are_the_cartesian_product() {
        let p = points(&[
            ("a".into(), vec!["1".into(), "2".into()]),
            ("b".into(), vec!["x".into(), "y".into(), "z".into()]),
        ]);
        assert_eq!(p.len(), 6);
        assert_eq!(p[1], vec![("a".into(), "1".into()), ("b".into(), "y".into())]);
        let grid =
            [("a".to_string(), vec!["1".into(), "2".into()]), ("b".into(), vec!["x".into(), "y".into(), "z".into()])];
        for (i, want) in p.iter().enumerate() {
            assert_eq!(point(&grid, i).as_ref(), Some(want), "point {i}");
        }
        assert_eq!(point(&grid, 6), None);
    }

    #[test]
    fn path_seeds_differ_and_repeat() {
        assert_eq!(path_seed(1, 5), path_seed(1, 5));
        assert_ne!(path_seed(1, 5), path_seed(1, 6));
        assert_ne!(path_seed(1, 5), path_seed(2, 5));
    }

    #[test]
    fn settings_are_written_by_path() {
        let t = with_setting(
            "[methodology]\nmax_leverage_ratio = \"2.3\"\n[exchanges.uni]\nx = 1\n",
            "exchanges.uni.x",
            "5",
        )
        .unwrap();
        assert!(t.contains("x = \"5\""), "{t}");
        assert!(with_setting("[a]\n", "b.c", "1").unwrap_err().contains("no section `b`"));
    }

    fn small_sweep(paths: usize) -> SweepConfig {
        SweepConfig {
            product_toml: include_str!("../../../products/eth2x-fli.toml").to_string(),
            grid: vec![("methodology.max_leverage_ratio".into(), vec!["1.5".into(), "2.3".into(), "2.5".into()])],
            paths,
            market: Market::Model { model: Model::Gbm { drift: 0.0, vol: 0.9 }, shocks: vec![] },
            horizon: 30 * 86_400,
            block_time: 3_600,
            seed: 5,
            sim: SimConfig { sample_every: 86_400, ..SimConfig::default() },
            p0: 2000.0,
            funding: crate::funding::FundingModel::default(),
        }
    }

    #[test]
    fn blocks_of_paths_sent_as_bytes_merge_to_the_whole_sweep() {
        let cfg = small_sweep(7);
        let whole = run_sweep(&cfg, &|_, _| {}).unwrap();
        let stop = AtomicBool::new(false);
        let splits_of: [(&str, Vec<std::ops::Range<u64>>); 3] = [
            ("one block", std::iter::once(0..7).collect()),
            ("uneven, out of order", vec![5..7, 0..2, 2..5]),
            ("a path each", (0..7).rev().map(|i| i..i + 1).collect()),
        ];
        for (case, splits) in splits_of {
            let mut results = Vec::new();
            for index in 0..3 {
                let point = prepare_point(&cfg, index).unwrap();
                let blocks: Vec<PathBlock> = if point.invalid().is_some() {
                    vec![]
                } else {
                    splits
                        .iter()
                        .map(|r| {
                            let b = point.run_paths(&cfg, r.clone(), &|| {}, &stop).unwrap();
                            PathBlock::from_bytes(&b.to_bytes()).unwrap()
                        })
                        .collect()
                };
                results.push(aggregate(&cfg, &point, blocks).unwrap());
            }
            assert_eq!(results, whole, "{case}");
        }
        assert!(whole[0].invalid.is_some() && whole[1].stats.is_some());
    }

    #[test]
    fn a_path_missing_twice_or_from_another_sweep_is_an_error() {
        let cfg = small_sweep(4);
        let stop = AtomicBool::new(false);
        let point = prepare_point(&cfg, 1).unwrap();
        let run = |r: std::ops::Range<u64>| point.run_paths(&cfg, r, &|| {}, &stop).unwrap();
        for (case, blocks, want) in [
            ("missing at the end", vec![run(0..3)], "path 3 missing"),
            ("missing in the middle", vec![run(0..1), run(2..4)], "path 1 missing"),
            ("twice", vec![run(0..3), run(2..4)], "path 2 twice"),
        ] {
            let e = aggregate(&cfg, &point, blocks).unwrap_err();
            assert!(e.contains(want), "{case}: {e}");
        }
        let other = prepare_point(&small_sweep(5), 1).unwrap();
        let foreign = other.run_paths(&small_sweep(5), 0..4, &|| {}, &stop).unwrap();
        assert!(aggregate(&cfg, &point, vec![foreign]).unwrap_err().contains("another sweep"));
        let bytes = run(0..4).to_bytes();
        assert!(PathBlock::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(PathBlock::from_bytes(b"KPB1").is_err());
    }

    #[test]
    fn a_stopped_sweep_returns_cancelled() {
        let stop = AtomicBool::new(true);
        let e = run_sweep_until(&small_sweep(3), &|_, _| {}, &mut |_, _| Ok(()), &stop).unwrap_err();
        assert_eq!(e, CANCELLED);
    }
}
