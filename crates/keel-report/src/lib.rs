//! keel-report: what a run leaves behind. `timeseries.csv` and `events.csv` are streamed as
//! the run goes; `summary.json`, the summary table and `report.html` (one self-contained file
//! with SVG charts) are written at the end from a down-sampled copy of the series.

#![warn(missing_docs)]

mod compare_html;
mod html;
mod svg;
mod sweep_html;
mod table;

pub use compare_html::{CompareSeries, compare_report};
pub use html::html_report;
pub use sweep_html::sweep_report;
pub use table::summary_table;

use keel_sim::{EventRow, SeriesRow, Sink, Summary};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// A progress callback: (blocks done, blocks expected).
pub type Progress = Box<dyn FnMut(u64, Option<u64>)>;

/// What a report is drawn from: a down-sampled copy of the rows (at most about
/// `2 × max_points`) and the events charts mark (every keeper call and liquidation; holders'
/// flows are left to `events.csv`). Every sink that ends in a `report.html` keeps one, so the
/// same run draws the same report wherever it ran.
pub struct ReportRows {
    /// Down-sampled rows kept for charts.
    pub rows: Vec<SeriesRow>,
    stride: usize,
    seen: usize,
    max_points: usize,
    /// Events kept for chart markers and the report's table.
    pub events: Vec<EventRow>,
}

impl ReportRows {
    /// Keep about `max_points` rows (at least 16).
    pub fn new(max_points: usize) -> Self {
        ReportRows { rows: Vec::new(), stride: 1, seen: 0, max_points: max_points.max(16), events: Vec::new() }
    }

    /// Offer a row: every `stride`-th is kept; when too many are kept, every other one is
    /// dropped and the stride doubles.
    pub fn row(&mut self, row: &SeriesRow) {
        if self.seen.is_multiple_of(self.stride) {
            self.rows.push(*row);
            if self.rows.len() > 2 * self.max_points {
                // Halve: keep every other point, double the stride.
                let kept: Vec<SeriesRow> = self.rows.iter().step_by(2).copied().collect();
                self.rows = kept;
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }

    /// Offer an event.
    pub fn event(&mut self, event: &EventRow) {
        if event.actor != "holders" && self.events.len() < 200_000 {
            self.events.push(event.clone());
        }
    }

    /// The report of a run with this summary.
    pub fn html(&self, summary: &Summary) -> String {
        html_report(summary, &self.rows, &self.events)
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
