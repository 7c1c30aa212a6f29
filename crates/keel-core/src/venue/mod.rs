//! Venues a token lives on: the lending market, the AMM, and the leverage module that ties
//! them together for lever / delever trades; and a Synthetix-Perps-V2-style perp market
//! (`synthetix`, not yet driven by a token or the simulator).

pub mod amm;
pub mod lending;
pub mod leverage;
pub mod synthetix;
