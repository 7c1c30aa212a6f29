//! The Python package's tables have the CSV files' columns: a backtest streamed into the
//! package's sink gives record batches whose columns and rows are `timeseries.csv`'s and
//! `events.csv`'s (as `keel backtest` writes them, through serde).

use _keel::frames::{FrameSink, events_batch, series_batch};
use clap::Parser;

#[derive(Parser)]
#[command(no_binary_name = true)]
struct Argv {
    #[command(flatten)]
    args: keel_cli::backtest::Args,
}

fn csv_header<T: serde::Serialize>(rows: &[T]) -> (String, usize) {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).unwrap();
    }
    let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
    let lines = text.lines().count();
    (text.lines().next().unwrap_or("").to_string(), lines.saturating_sub(1))
}

#[test]
fn batches_have_the_csv_files_columns_and_rows() {
    let product = include_str!("../../products/eth2x-fli.toml");
    for (case, argv) in [
        ("lending FLI, calm, hourly blocks", vec!["--scenario", "calm", "--block-time", "1h"]),
        ("threshold token, zigzag", vec!["--scenario", "zigzag", "--block-time", "10m"]),
    ] {
        let text =
            if case.starts_with("threshold") { include_str!("../../products/eth-3x-threshold.toml") } else { product };
        let args = Argv::try_parse_from(argv).unwrap().args;
        let mut prepared = keel_cli::backtest::prepare(&args, text, case).unwrap();
        let mut sink = FrameSink::new(100);
        prepared.run(&mut sink, &std::sync::atomic::AtomicBool::new(false)).unwrap();
        let series = series_batch(&sink.series).unwrap();
        let events = events_batch(&sink.events).unwrap();
        for (what, batch, (header, rows)) in
            [("timeseries", &series, csv_header(&sink.series)), ("events", &events, csv_header(&sink.events))]
        {
            let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
            assert_eq!(names.join(","), header, "{case}: {what} columns");
            assert_eq!(batch.num_rows(), rows, "{case}: {what} rows");
            assert!(rows > 0, "{case}: no {what}");
        }
    }
}
