//! Price sources: CSV history bridged to block resolution, seeded generators and named
//! scenarios. A source yields one reference price per block.

pub mod bridge;
pub mod csv;
pub mod models;
pub mod scenario;

pub use bridge::BridgedBars;
pub use csv::{Bar, BarSeries, CsvError, load_bars};
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
