//! keel-core: the deterministic heart of keel.
//!
//! Pure state machines for leveraged tokens: fixed-point math, price feeds, venues (an
//! Aave-v3-style lending market, a Uniswap-v3-style pool), the token ledger and the
//! methodologies. No I/O, no clock, no randomness, no threads: every operation takes `now`
//! and the caller explicitly and returns a `Result`. The same calls in the same order reach
//! the same state, to the last wei.

#![warn(missing_docs)]

pub mod error;
pub mod leveraged;
pub mod math;
pub mod oracle;
pub mod product;
pub mod strategy;
pub mod token;
pub mod venue;

pub use alloy_primitives::{Address, U160};
pub use error::Error;
pub use math::{I256, Ray, SignedWad, U256, Wad};
