//! keel-prices: price data for the simulator and the service alike. CSV history with strict
//! checks, bridged to block resolution; seeded generators and named scenarios. A source yields
//! one reference price per block. No keel dependency: data in, prices out.

#![warn(missing_docs)]

pub mod bridge;
pub mod cancel;
pub mod csv;
pub mod funding;
pub mod models;
pub mod scenario;

pub use bridge::BridgedBars;
pub use cancel::Cancellable;
pub use csv::{Bar, BarSeries, CsvError, load_bars, load_bars_file, load_bars_reader, load_bars_window};
pub use funding::{FundingSeries, load_funding_file, load_funding_reader};
pub use models::{GeneratedPath, Model, Shock};
pub use scenario::{SCENARIOS, scenario};

/// One block's reference price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Block time, unix seconds.
    pub time: u64,
    /// Reference price of the underlying in USD.
    pub price: f64,
}

/// A stream of per-block prices.
pub trait PriceSource {
    /// Time of the starting price.
    fn start_time(&self) -> u64;
    /// The starting price.
    fn start_price(&self) -> f64;
    /// The next block's price, or `None` at the end of the path.
    fn next_tick(&mut self) -> Option<Tick>;
    /// Number of blocks the source will yield, if known (for progress and down-sampling).
    fn len_hint(&self) -> Option<u64>;
}

/// A scripted path: given prices, one per block.
pub struct FixedPath {
    start: u64,
    block_time: u64,
    prices: Vec<f64>,
    next: usize,
}

impl FixedPath {
    /// `prices[0]` at `start`, then one price per block.
    pub fn new(start: u64, block_time: u64, prices: Vec<f64>) -> Self {
        FixedPath { start, block_time, prices, next: 1 }
    }
}

impl PriceSource for FixedPath {
    fn start_time(&self) -> u64 {
        self.start
    }

    fn start_price(&self) -> f64 {
        self.prices[0]
    }

    fn next_tick(&mut self) -> Option<Tick> {
        let p = *self.prices.get(self.next)?;
        let t = self.start + self.next as u64 * self.block_time;
        self.next += 1;
        Some(Tick { time: t, price: p })
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.prices.len().saturating_sub(1) as u64)
    }
}
