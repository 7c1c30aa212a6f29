//! keel-report: what a run leaves behind. `timeseries.csv` and `events.csv` are streamed as
//! the run goes; `summary.json`, the summary table and `report.html` (one self-contained file:
//! statistics, tables, and interactive charts drawn in the page by an inline script from data
//! in the page) are written at the end from a bucketed copy of the series that keeps every
//! extreme.

#![warn(missing_docs)]

mod compare_html;
mod dates;
mod html;
mod page;
pub mod stats;
mod sweep_html;
mod table;

pub use compare_html::{CompareSeries, compare_report};
pub use dates::{date, date_time};
pub use html::html_report;
pub use sweep_html::sweep_report;
pub use table::{summary_table, text_table, thousands};

use keel_sim::{EventRow, SeriesRow, Sink, Summary};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// A progress callback: (blocks done, blocks expected).
pub type Progress = Box<dyn FnMut(u64, Option<u64>)>;

/// How many routine keeper calls a report's page holds (the rest are counted and are in
/// `events.csv`); ripcords, liquidations, closes and failures are always all there.
pub const CALLS_IN_PAGE: usize = 20_000;

/// What a report is drawn from: the rows merged into at most about `2 × max_points` buckets,
/// each keeping its last row's values and the lowest and highest price, NAV, leverage and
/// health of every row in it (so every peak and trough shows); the daily closes the statistics
/// come from; every ripcord, liquidation, close and failed call; and the first
/// [`CALLS_IN_PAGE`] routine keeper calls. Every sink that ends in a `report.html` keeps one,
/// so the same run draws the same report wherever it ran.
pub struct ReportRows {
    /// Rows merged into buckets for charts.
    pub rows: Vec<SeriesRow>,
    pending: Option<SeriesRow>,
    pending_n: usize,
    stride: usize,
    max_points: usize,
    /// Daily closes of every row.
    pub dailies: stats::Dailies,
    /// Every ripcord, liquidation, close and failed call (holders' refused flows included).
    pub major: Vec<EventRow>,
    /// The first routine keeper calls (rebalances, iterations, engages, ...).
    pub calls: Vec<EventRow>,
    /// Routine keeper calls in the whole run.
    pub calls_seen: u64,
    /// Holders' mints and redeems in the whole run.
    pub holder_flows: u64,
}

/// Whether an event is listed whatever the run's length: a ripcord, a liquidation, a close or
/// a failure.
pub fn is_major(e: &EventRow) -> bool {
    matches!(e.kind.as_ref(), "ripcord" | "liquidation" | "close") || e.kind.ends_with("_failed") || !e.error.is_empty()
}

/// `a` then `b` as one bucket: `b`'s values, the lowest lows and highest highs of both.
fn merge(a: &SeriesRow, b: &SeriesRow) -> SeriesRow {
    SeriesRow {
        price_low: a.price_low.min(b.price_low),
        price_high: a.price_high.max(b.price_high),
        leverage_low: a.leverage_low.min(b.leverage_low),
        leverage_high: a.leverage_high.max(b.leverage_high),
        nav_low: a.nav_low.min(b.nav_low),
        nav_high: a.nav_high.max(b.nav_high),
        health_low: a.health_low.min(b.health_low),
        ..*b
    }
}

impl ReportRows {
    /// Keep about `max_points` buckets (at least 16).
    pub fn new(max_points: usize) -> Self {
        ReportRows {
            rows: Vec::new(),
            pending: None,
            pending_n: 0,
            stride: 1,
            max_points: max_points.max(16),
            dailies: stats::Dailies::default(),
            major: Vec::new(),
            calls: Vec::new(),
            calls_seen: 0,
            holder_flows: 0,
        }
    }

    /// Offer a row: it joins the current bucket of `stride` rows; when there are too many
    /// buckets, neighbours merge and the stride doubles.
    pub fn row(&mut self, row: &SeriesRow) {
        self.dailies.row(row);
        let b = match &self.pending {
            Some(p) => merge(p, row),
            None => *row,
        };
        self.pending_n += 1;
        if self.pending_n < self.stride {
            self.pending = Some(b);
            return;
        }
        self.pending = None;
        self.pending_n = 0;
        self.rows.push(b);
        if self.rows.len() > 2 * self.max_points {
            self.rows = self.rows.chunks(2).map(|c| if c.len() == 2 { merge(&c[0], &c[1]) } else { c[0] }).collect();
            self.stride *= 2;
        }
    }

    /// The buckets, the one still filling included.
    pub fn buckets(&self) -> Vec<SeriesRow> {
        let mut v = self.rows.clone();
        v.extend(self.pending);
        v
    }

    /// Offer an event.
    pub fn event(&mut self, event: &EventRow) {
        if is_major(event) {
            self.major.push(event.clone());
        } else if event.actor == "holders" {
            self.holder_flows += 1;
        } else {
            self.calls_seen += 1;
            if self.calls.len() < CALLS_IN_PAGE {
                self.calls.push(event.clone());
            }
        }
    }

    /// The report of a run with this summary.
    pub fn html(&self, summary: &Summary) -> String {
        html_report(summary, self)
    }
}

/// Streams rows and events to CSV files in a directory and keeps a bounded copy for the report.
pub struct DirSink {
    dir: PathBuf,
    series_csv: csv::Writer<BufWriter<File>>,
    events_csv: csv::Writer<BufWriter<File>>,
    /// What the report is drawn from.
    pub report: ReportRows,
    /// Called with (blocks done, blocks expected).
    pub on_progress: Option<Progress>,
    error: Option<std::io::Error>,
}

impl DirSink {
    /// Create `dir` and open its CSV files.
    pub fn create(dir: &Path, max_points: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> std::io::Result<csv::Writer<BufWriter<File>>> {
            Ok(csv::Writer::from_writer(BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?)))
        };
        Ok(DirSink {
            dir: dir.to_path_buf(),
            series_csv: open("timeseries.csv")?,
            events_csv: open("events.csv")?,
            report: ReportRows::new(max_points),
            on_progress: None,
            error: None,
        })
    }

    /// Flush the CSVs and write `summary.json` and `report.html`.
    pub fn finish(mut self, summary: &Summary) -> std::io::Result<PathBuf> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.series_csv.flush()?;
        self.events_csv.flush()?;
        let mut json = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
        json.push('\n');
        std::fs::write(self.dir.join("summary.json"), json)?;
        let html = self.report.html(summary);
        let path = self.dir.join("report.html");
        std::fs::write(&path, html)?;
        Ok(path)
    }
}

impl Sink for DirSink {
    fn row(&mut self, row: &SeriesRow) {
        if self.error.is_none()
            && let Err(e) = self.series_csv.serialize(row)
        {
            self.error = Some(std::io::Error::other(e));
        }
        self.report.row(row);
    }

    fn event(&mut self, event: &EventRow) {
        if self.error.is_none()
            && let Err(e) = self.events_csv.serialize(event)
        {
            self.error = Some(std::io::Error::other(e));
        }
        self.report.event(event);
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        if let Some(f) = self.on_progress.as_mut() {
            f(done, total);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row of zeros at time 0 (NaN extremes).
    pub fn row() -> SeriesRow {
        SeriesRow {
            time: 0,
            block: 0,
            price: 0.0,
            price_low: f64::NAN,
            price_high: f64::NAN,
            oracle_price: 0.0,
            pool_price: 0.0,
            leverage: 0.0,
            leverage_low: f64::NAN,
            leverage_high: f64::NAN,
            nav: 0.0,
            nav_low: f64::NAN,
            nav_high: f64::NAN,
            ideal_nav: 0.0,
            hold_nav: 0.0,
            collateral: 0.0,
            debt: 0.0,
            health_factor: 0.0,
            health_low: f64::NAN,
            gas_gwei: 0.0,
            supply: 0.0,
            costs_usd: 0.0,
            funding_usd: 0.0,
        }
    }

    #[test]
    fn buckets_keep_every_extreme() {
        // 10,000 rows into at most ~2 × 16 buckets: one spike up and one down survive
        let mut r = ReportRows::new(16);
        for i in 0..10_000u64 {
            let lev = match i {
                4_321 => 9.5,
                7_777 => 0.25,
                _ => 2.0 + (i % 7) as f64 * 0.01,
            };
            r.row(&SeriesRow {
                time: i * 3_600,
                leverage: lev,
                leverage_low: lev,
                leverage_high: lev,
                price: 100.0,
                price_low: 100.0 - (i == 5_000) as u8 as f64 * 50.0,
                price_high: 100.0,
                ..row()
            });
        }
        let b = r.buckets();
        assert!(b.len() <= 33, "{} buckets", b.len());
        let hi = b.iter().map(|r| r.leverage_high).fold(f64::MIN, f64::max);
        let lo = b.iter().map(|r| r.leverage_low).fold(f64::MAX, f64::min);
        let plo = b.iter().map(|r| r.price_low).fold(f64::MAX, f64::min);
        assert_eq!((hi, lo, plo), (9.5, 0.25, 50.0));
        assert_eq!(b.last().map(|r| r.time), Some(9_999 * 3_600), "the last row closes the last bucket");
    }

    #[test]
    fn major_events_are_all_kept_and_calls_counted() {
        let mut r = ReportRows::new(16);
        let ev = |kind: &'static str, actor: &'static str| EventRow {
            kind: kind.into(),
            actor: actor.into(),
            ..EventRow::default()
        };
        for _ in 0..CALLS_IN_PAGE + 5 {
            r.event(&ev("rebalance", "keeper"));
        }
        r.event(&ev("ripcord", "bot-1"));
        r.event(&ev("mint", "holders"));
        r.event(&ev("mint_failed", "holders"));
        r.event(&ev("rebalance_failed", "keeper"));
        assert_eq!((r.calls.len(), r.calls_seen, r.holder_flows), (CALLS_IN_PAGE, CALLS_IN_PAGE as u64 + 5, 1));
        assert_eq!(
            r.major.iter().map(|e| e.kind.as_ref()).collect::<Vec<_>>(),
            ["ripcord", "mint_failed", "rebalance_failed"]
        );
    }
}
