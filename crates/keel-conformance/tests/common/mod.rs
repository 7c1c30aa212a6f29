//! Deployments and calls more than one conformance suite uses.
pub mod compound;
pub mod uniswap;
