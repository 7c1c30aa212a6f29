//! `keel._keel`: the Rust half of the `keel` Python package. A thin layer: every request is
//! checked and run by the same `keel-cli` functions the command line calls (`backtest::prepare`,
//! `compare::compare`, `sweep::plan`), from the same arguments, so the package accepts, refuses
//! and computes exactly what `keel` does. Tables cross to Python as Arrow (the C stream
//! interface), long calls release the GIL on a worker thread and stop on Ctrl-C, and errors
//! are Python exceptions carrying keel's messages. The Python half (`python/keel/`) turns keyword
//! arguments into those argument lists and adds pandas, Ray and Optuna.

pub mod frames;
mod interrupt;

use clap::Parser;
use keel_sim::sweep::{PathBlock, PointResult, PreparedPoint};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

create_exception!(keel, KeelError, PyException, "A request keel refused or could not finish; the message says why.");
create_exception!(
    keel,
    ProductError,
    KeelError,
    "A product file that breaks keel's rules; `.rules` lists every violated rule."
);

/// A `KeelError` with `e`'s message (anyhow's chain joined with ": ").
fn keel_err(e: impl std::fmt::Display) -> PyErr {
    KeelError::new_err(e.to_string())
}

/// A clap parse error as one line (no usage, no "for more information").
fn argv_err(e: clap::Error) -> PyErr {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim_start_matches("error: ");
    keel_err(first)
}

#[derive(Parser)]
#[command(name = "keel backtest", no_binary_name = true)]
struct BacktestArgv {
    #[command(flatten)]
    args: keel_cli::backtest::Args,
}

#[derive(Parser)]
#[command(name = "keel compare", no_binary_name = true)]
struct CompareArgv {
    #[command(flatten)]
    args: keel_cli::compare::Args,
}

#[derive(Parser)]
#[command(name = "keel sweep", no_binary_name = true)]
struct SweepArgv {
    #[command(flatten)]
    args: keel_cli::sweep::Args,
}

/// `keel product check`: `Ok` the one-line summary; a `ProductError` whose message lists every
/// violated rule (the same text the command prints) and whose `rules` holds them one by one.
#[pyfunction]
fn product_check(text: &str, name: &str) -> PyResult<String> {
    keel_cli::product_cmd::check_text(text, name).map_err(product_err)
}

fn product_err(message: String) -> PyErr {
    let rules: Vec<String> =
        message.lines().skip(1).filter_map(|l| l.trim().strip_prefix("- ").map(str::to_string)).collect();
    let rules = if rules.is_empty() { vec![message.clone()] } else { rules };
    let err = ProductError::new_err(message);
    Python::attach(|py| {
        let _ = err.value(py).setattr("rules", rules);
    });
    err
}

/// Parse a product (rules checked); returns (symbol, kind, underlying).
#[pyfunction]
fn product_info(text: &str, name: &str) -> PyResult<(String, String, String)> {
    let p = keel_core::product::AnyProduct::from_toml(text)
        .map_err(|e| product_err(format!("{name}: invalid product: {}", keel_cli::product_cmd::describe(&e))))?;
    Ok((p.symbol().to_string(), p.kind().name().to_string(), p.underlying()))
}

/// `keel product calldata`: (function, arguments) pairs in struct field order.
#[pyfunction]
fn product_calldata(text: &str, name: &str) -> PyResult<Vec<(String, Vec<String>)>> {
    let p = keel_cli::product_cmd::parse_product(text, name).map_err(|e| product_err(format!("{e:#}")))?;
    keel_cli::product_cmd::calldata_of(&p, name).map(|(_, _, calls)| calls).map_err(keel_err)
}

/// Write `value` at the dotted `key` of a product's text, refusing a key the product does not
/// have (with the closest one that it does), as `keel sweep --grid` does.
#[pyfunction]
fn product_with_setting(text: &str, key: &str, value: &str) -> PyResult<String> {
    keel_cli::sweep::check_grid_key(text, key, value)
        .map_err(|e| keel_err(e.to_string().replacen("--grid ", "", 1)))?;
    keel_sim::sweep::with_setting(text, key, value).map_err(keel_err)
}

/// What a backtest returns to Python.
#[pyclass(frozen, module = "keel._keel")]
struct BacktestOutput {
    #[pyo3(get)]
    summary_json: String,
    #[pyo3(get)]
    table: String,
    #[pyo3(get)]
    report_html: String,
    #[pyo3(get)]
    warnings: Vec<String>,
    #[pyo3(get)]
    timeseries: Py<frames::ArrowTable>,
    #[pyo3(get)]
    events: Py<frames::ArrowTable>,
}

/// `keel backtest` from its arguments (without `--product`, `--out`) on a product's text;
/// `progress(done, total)` is called with blocks done about every 50 ms.
#[pyfunction]
#[pyo3(signature = (argv, text, name, progress=None))]
fn backtest(
    py: Python<'_>,
    argv: Vec<String>,
    text: String,
    name: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<BacktestOutput> {
    let args = BacktestArgv::try_parse_from(&argv).map_err(argv_err)?.args;
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let seen = counts.clone();
    let (summary, table, report_html, warnings, series, events) = interrupt::run_with(
        py,
        move |stop: &AtomicBool| -> anyhow::Result<_> {
            let mut prepared = keel_cli::backtest::prepare(&args, &text, &name)?;
            let mut sink = frames::FrameSink::new(4_000);
            seen.1.store(prepared.blocks().unwrap_or(0), Ordering::Relaxed);
            sink.on_progress = Some(Box::new(move |done, _| seen.0.store(done, Ordering::Relaxed)));
            let result = prepared.run(&mut sink, stop)?;
            let summary = serde_json::to_string_pretty(&result.summary)?;
            let table = keel_report::summary_table(&result.summary);
            let html = sink.report.html(&result.summary);
            let (series, events) = (frames::series_batch(&sink.series)?, frames::events_batch(&sink.events)?);
            Ok((summary, table, html, prepared.warnings, series, events))
        },
        |_py| match &progress {
            Some(f) => f.call1((counts.0.load(Ordering::Relaxed), counts.1.load(Ordering::Relaxed))).map(drop),
            None => Ok(()),
        },
    )?;
    Ok(BacktestOutput {
        summary_json: summary,
        table,
        report_html,
        warnings,
        timeseries: Py::new(py, frames::ArrowTable::new(series))?,
        events: Py::new(py, frames::ArrowTable::new(events))?,
    })
}

/// `keel compare` from its arguments (without `--products`, `--out`) on products' (text, name)
/// pairs: (terminal table, compare.csv text, report.html, warnings).
#[pyfunction]
fn compare(
    py: Python<'_>,
    argv: Vec<String>,
    products: Vec<(String, String)>,
) -> PyResult<(String, String, String, Vec<String>)> {
    // clap needs --products; the texts come from `products`
    let mut full = argv;
    full.extend(["--products".to_string(), "-".to_string()]);
    let args = CompareArgv::try_parse_from(&full).map_err(argv_err)?.args;
    interrupt::run(py, move |stop: &AtomicBool| -> anyhow::Result<_> {
        let c = keel_cli::compare::compare(&args, &products, stop)?;
        Ok((c.table, String::from_utf8(c.csv)?, c.html, c.warnings))
    })
}

/// A sweep checked and ready to run here (`run_local`) or in blocks of paths anywhere
/// (`run_block`, merged exactly by `point_result` and `results`).
#[pyclass(frozen, module = "keel._keel")]
struct SweepPlan {
    plan: Arc<keel_cli::sweep::SweepPlan>,
    argv: Vec<String>,
    text: String,
    name: String,
    #[pyo3(get)]
    warnings: Vec<String>,
}

/// What a plan is built (and pickled) from: `keel sweep`'s arguments, the product's text and
/// its name.
type PlanArgs = (Vec<String>, String, String);

/// One grid point's merged result (opaque; hand it to `SweepPlan.results`).
#[pyclass(frozen, module = "keel._keel")]
struct PointOutcome {
    result: PointResult,
    fingerprint: u64,
}

/// A sweep's results: `results.csv` and `report.html` as `keel sweep` writes them.
#[pyclass(frozen, module = "keel._keel")]
struct SweepResults {
    plan: Arc<keel_cli::sweep::SweepPlan>,
    results: Vec<PointResult>,
}

impl SweepPlan {
    fn prepare(&self, point: usize) -> PyResult<PreparedPoint> {
        keel_sim::sweep::prepare_point(&self.plan.cfg, point).map_err(keel_err)
    }
}

fn pool(threads: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| anyhow::anyhow!("--threads: {e}"))
}

#[pymethods]
impl SweepPlan {
    /// Check `keel sweep`'s arguments (without `--product`, `--out`) against a product's text.
    #[new]
    fn new(argv: Vec<String>, text: String, name: String) -> PyResult<Self> {
        let args = SweepArgv::try_parse_from(&argv).map_err(argv_err)?.args;
        let (plan, warnings) = keel_cli::sweep::plan(&args, &text, &name).map_err(|e| keel_err(format!("{e:#}")))?;
        Ok(SweepPlan { plan: Arc::new(plan), argv, text, name, warnings })
    }

    /// Pickled as its arguments: a Ray worker checks and plans the same sweep again.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, PlanArgs)> {
        let me = slf.get();
        Ok((slf.get_type().into_any(), (me.argv.clone(), me.text.clone(), me.name.clone())))
    }

    /// Every grid point's settings, [(key, value), ...], first axis slowest.
    fn points(&self) -> Vec<Vec<(String, String)>> {
        keel_sim::sweep::points(&self.plan.cfg.grid)
    }

    /// Paths per grid point.
    #[getter]
    fn paths(&self) -> usize {
        self.plan.cfg.paths
    }

    /// A hash of everything that decides the figures; blocks of another sweep are refused.
    #[getter]
    fn fingerprint(&self) -> u64 {
        self.plan.cfg.fingerprint()
    }

    /// The rule grid point `point`'s settings break, or None.
    fn invalid(&self, point: usize) -> PyResult<Option<String>> {
        Ok(self.prepare(point)?.invalid().map(str::to_string))
    }

    /// Run every point and path here, on `threads` threads (default: all cores);
    /// `progress(done, total)` is called with paths done about every 50 ms.
    #[pyo3(signature = (threads=None, progress=None))]
    fn run_local(
        &self,
        py: Python<'_>,
        threads: Option<usize>,
        progress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<SweepResults> {
        let plan = self.plan.clone();
        let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let seen = counts.clone();
        let results = interrupt::run_with(
            py,
            move |stop: &AtomicBool| -> anyhow::Result<_> {
                let report = |done: u64, total: u64| {
                    seen.0.store(done, Ordering::Relaxed);
                    seen.1.store(total, Ordering::Relaxed);
                };
                pool(threads)?
                    .install(|| keel_sim::sweep::run_sweep_until(&plan.cfg, &report, &mut |_, _| Ok(()), stop))
                    .map_err(|e| anyhow::anyhow!("{e}"))
            },
            |_py| match &progress {
                Some(f) => f.call1((counts.0.load(Ordering::Relaxed), counts.1.load(Ordering::Relaxed))).map(drop),
                None => Ok(()),
            },
        )?;
        Ok(SweepResults { plan: self.plan.clone(), results })
    }

    /// Run paths `start..end` of grid point `point` (on `threads` threads) and return them as
    /// bytes for `point_result`.
    #[pyo3(signature = (point, start, end, threads=None))]
    fn run_block<'py>(
        &self,
        py: Python<'py>,
        point: usize,
        start: u64,
        end: u64,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if start >= end || end > self.plan.cfg.paths as u64 {
            return Err(keel_err(format!(
                "paths {start}..{end}: give a non-empty range within 0..{}",
                self.plan.cfg.paths
            )));
        }
        let plan = self.plan.clone();
        let bytes = interrupt::run(py, move |stop: &AtomicBool| -> anyhow::Result<_> {
            let prepared = keel_sim::sweep::prepare_point(&plan.cfg, point).map_err(|e| anyhow::anyhow!("{e}"))?;
            let block = pool(threads)?
                .install(|| prepared.run_paths(&plan.cfg, start..end, &|| {}, stop))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(block.to_bytes())
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Merge grid point `point`'s blocks (any sizes, any order): every path exactly once, or an
    /// error. An invalid point takes no blocks.
    fn point_result(&self, point: usize, blocks: Vec<Vec<u8>>) -> PyResult<PointOutcome> {
        let prepared = self.prepare(point)?;
        let blocks =
            blocks.iter().map(|b| PathBlock::from_bytes(b)).collect::<Result<Vec<_>, _>>().map_err(keel_err)?;
        let result = keel_sim::sweep::aggregate(&self.plan.cfg, &prepared, blocks).map_err(keel_err)?;
        Ok(PointOutcome { result, fingerprint: self.plan.cfg.fingerprint() })
    }

    /// The sweep's results from one outcome per grid point, in grid order.
    fn results(&self, outcomes: Vec<Bound<'_, PointOutcome>>) -> PyResult<SweepResults> {
        let n = keel_sim::sweep::point_count(&self.plan.cfg.grid);
        if outcomes.len() != n {
            return Err(keel_err(format!("{} point results for a grid of {n} points", outcomes.len())));
        }
        let fp = self.plan.cfg.fingerprint();
        let mut results = Vec::with_capacity(n);
        for (i, o) in outcomes.iter().enumerate() {
            let o = o.get();
            let want = keel_sim::sweep::point(&self.plan.cfg.grid, i);
            if o.fingerprint != fp || Some(&o.result.settings) != want.as_ref() {
                return Err(keel_err(format!("point result {i} belongs to another sweep or another grid point")));
            }
            results.push(o.result.clone());
        }
        Ok(SweepResults { plan: self.plan.clone(), results })
    }
}

#[pymethods]
impl SweepResults {
    /// `results.csv`, byte for byte as `keel sweep` writes it.
    fn results_csv(&self) -> PyResult<String> {
        let bytes = self.plan.results_csv(&self.results).map_err(keel_err)?;
        String::from_utf8(bytes).map_err(keel_err)
    }

    /// `report.html`, as `keel sweep` writes it.
    fn report_html(&self) -> String {
        self.plan.report_html(&self.results)
    }
}

/// Built-in scenario names and descriptions.
#[pyfunction]
fn scenarios() -> Vec<(String, String)> {
    keel_sim::prices::SCENARIOS.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect()
}

/// The default product's text (ETH2x-FLI, as `keel backtest` runs without `--product`).
#[pyfunction]
fn default_product() -> (&'static str, &'static str) {
    (keel_cli::product_cmd::DEFAULT_PRODUCT, keel_cli::product_cmd::DEFAULT_PRODUCT_NAME)
}

#[pymodule]
fn _keel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("KeelError", m.py().get_type::<KeelError>())?;
    m.add("ProductError", m.py().get_type::<ProductError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(product_check, m)?)?;
    m.add_function(wrap_pyfunction!(product_info, m)?)?;
    m.add_function(wrap_pyfunction!(product_calldata, m)?)?;
    m.add_function(wrap_pyfunction!(product_with_setting, m)?)?;
    m.add_function(wrap_pyfunction!(backtest, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(scenarios, m)?)?;
    m.add_function(wrap_pyfunction!(default_product, m)?)?;
    m.add_class::<SweepPlan>()?;
    m.add_class::<SweepResults>()?;
    m.add_class::<PointOutcome>()?;
    m.add_class::<BacktestOutput>()?;
    m.add_class::<frames::ArrowTable>()?;
    Ok(())
}
