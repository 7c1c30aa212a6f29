//! Venues a token lives on: the lending markets (Aave v3 in `lending`, Compound v2 in
//! `compound`, either behind `money_market`), the AMM, the leverage module that ties
//! them together for lever / delever trades and the issuance that issues and redeems a
//! levered token in units (`issuance`); a Synthetix-Perps-V2-style perp market
//! (`synthetix`, where the perp tokens live); a Perp-v2-style clearing house (`perp_v2`: vAMM
//! trades with the exchange fee, account values, margin checks, funding, the mark price and
//! liquidation) and the pool oracle its TWAPs come from (`oracle`).

pub mod amm;
pub mod compound;
pub mod issuance;
pub mod lending;
pub mod leverage;
pub mod money_market;
pub mod oracle;
pub mod perp_v2;
pub mod synthetix;
