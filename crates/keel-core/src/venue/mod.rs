//! Venues a token lives on: the lending markets (Aave v3 in `lending`, Compound v2 in
//! `compound`, either behind `money_market`), the AMM, and the leverage module that ties
//! them together for lever / delever trades; a Synthetix-Perps-V2-style perp market
//! (`synthetix`, where the perp tokens live); and a Perp-v2-style cross-margin account
//! (`perp_v2`, account values, margin checks, funding and liquidation; no vAMM or token yet).

pub mod amm;
pub mod compound;
pub mod lending;
pub mod leverage;
pub mod money_market;
pub mod perp_v2;
pub mod synthetix;
