//! Rows to Arrow: a sink that keeps every time-series row and event of a backtest, and the
//! record batches built from them, exported through the Arrow C stream interface
//! (`__arrow_c_stream__`) so pyarrow, pandas, polars or DuckDB take them without a copy through
//! Python objects. Columns are the CSV files' columns, in the same order (a test holds them to
//! `timeseries.csv` and `events.csv`).

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, RecordBatchIterator, StringArray, UInt64Array};
use keel_report::ReportRows;
use keel_sim::{EventRow, SeriesRow, Sink};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use std::sync::Arc;

/// Keeps every row and event, and what the report is drawn from.
pub struct FrameSink {
    /// Every sampled row.
    pub series: Vec<SeriesRow>,
    /// Every event.
    pub events: Vec<EventRow>,
    /// The report's rows.
    pub report: ReportRows,
    /// Called with (blocks done, blocks expected).
    pub on_progress: Option<keel_report::Progress>,
}

impl FrameSink {
    /// A sink whose report keeps about `max_points` rows (as `keel backtest`'s).
    pub fn new(max_points: usize) -> Self {
        FrameSink { series: Vec::new(), events: Vec::new(), report: ReportRows::new(max_points), on_progress: None }
    }
}

impl Sink for FrameSink {
    fn row(&mut self, row: &SeriesRow) {
        self.series.push(*row);
        self.report.row(row);
    }

    fn event(&mut self, event: &EventRow) {
        self.events.push(event.clone());
        self.report.event(event);
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        if let Some(f) = self.on_progress.as_mut() {
            f(done, total);
        }
    }
}

macro_rules! column {
    ($rows:expr, $field:ident, u64) => {
        (stringify!($field), Arc::new(UInt64Array::from_iter_values($rows.iter().map(|r| r.$field))) as ArrayRef)
    };
    ($rows:expr, $field:ident, f64) => {
        (stringify!($field), Arc::new(Float64Array::from_iter_values($rows.iter().map(|r| r.$field))) as ArrayRef)
    };
    ($rows:expr, $field:ident, str) => {
        (stringify!($field), Arc::new(StringArray::from_iter_values($rows.iter().map(|r| &*r.$field))) as ArrayRef)
    };
}

/// `timeseries.csv` as a record batch.
pub fn series_batch(rows: &[SeriesRow]) -> anyhow::Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter([
        column!(rows, time, u64),
        column!(rows, block, u64),
        column!(rows, price, f64),
        column!(rows, price_low, f64),
        column!(rows, price_high, f64),
        column!(rows, oracle_price, f64),
        column!(rows, pool_price, f64),
        column!(rows, leverage, f64),
        column!(rows, leverage_low, f64),
        column!(rows, leverage_high, f64),
        column!(rows, nav, f64),
        column!(rows, nav_low, f64),
        column!(rows, nav_high, f64),
        column!(rows, ideal_nav, f64),
        column!(rows, hold_nav, f64),
        column!(rows, collateral, f64),
        column!(rows, debt, f64),
        column!(rows, health_factor, f64),
        column!(rows, health_low, f64),
        column!(rows, gas_gwei, f64),
        column!(rows, supply, f64),
        column!(rows, costs_usd, f64),
        column!(rows, funding_usd, f64),
    ])?)
}

/// `events.csv` as a record batch.
pub fn events_batch(rows: &[EventRow]) -> anyhow::Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter([
        column!(rows, time, u64),
        column!(rows, block, u64),
        column!(rows, kind, str),
        column!(rows, actor, str),
        column!(rows, leverage_before, f64),
        column!(rows, target, f64),
        column!(rows, chunk, f64),
        column!(rows, total, f64),
        column!(rows, sold_usd, f64),
        column!(rows, bought_usd, f64),
        column!(rows, pool_fee_usd, f64),
        column!(rows, impact_usd, f64),
        column!(rows, gas_usd, f64),
        column!(rows, reward_eth, f64),
        column!(rows, error, str),
    ])?)
}

/// A table any Arrow consumer can take (`pyarrow.table(t)`, `polars.DataFrame(t)`).
#[pyclass(frozen, module = "keel._keel")]
pub struct ArrowTable {
    batch: RecordBatch,
}

impl ArrowTable {
    /// Wrap a batch.
    pub fn new(batch: RecordBatch) -> Self {
        ArrowTable { batch }
    }
}

#[pymethods]
impl ArrowTable {
    /// The Arrow PyCapsule interface: a stream of one record batch (a requested schema is not
    /// applied; consumers cast).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new([Ok(self.batch.clone())], self.batch.schema());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    /// Rows.
    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    /// Column names, in order.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.batch.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
}
