//! Deployments and calls more than one conformance suite uses.
pub mod compound;
pub mod curie;
pub mod set;
pub mod uniswap;
