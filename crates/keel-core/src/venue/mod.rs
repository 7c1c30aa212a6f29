//! Venues a token lives on: the lending market, the AMM, and the leverage module that ties
//! them together for lever / delever trades.

pub mod amm;
pub mod lending;
pub mod leverage;
