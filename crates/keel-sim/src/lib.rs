//! keel-sim: drive keel-core through a market block by block.
//!
//! A run is a value: a product, a price path and a configuration go in; a summary, a time
//! series and an event log come out. All time comes from the block [`clock`]; all randomness
//! from seeded generators (`seed` → ChaCha8 streams), so the same inputs give the same bytes.
//! The simulator only calls keel-core's public operations; it re-implements no rule.

#![warn(missing_docs)]

pub mod agents;
pub mod clock;
pub mod engine;
pub mod funding;
pub mod market;
pub mod metrics;
pub mod perp_fli;
/// Price data lives in its own crate, shared with the service.
pub use keel_prices as prices;
pub mod start_check;
pub mod sweep;
pub mod threshold;
mod units;
pub mod venues;

pub use engine::{Costs, RunResult, SimConfig, Simulation};
pub use metrics::{EventRow, RunInfo, SeriesRow, Sink, Summary};
