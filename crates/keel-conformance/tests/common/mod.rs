//! Deployments and calls more than one conformance suite uses.
pub mod compound;
pub mod curie;
pub mod set;
pub mod uniswap;

use std::collections::BTreeMap;

/// What a suite's sequences did: calls, accepted and refused by both (by reason), and the
/// sequences a deliberate difference (`conformance.md` §4) ended.
#[derive(Default)]
#[allow(dead_code)] // not every suite keeps every count
pub struct Tally {
    pub ops: u64,
    pub accepted: BTreeMap<&'static str, u64>,
    pub refused: BTreeMap<String, u64>,
    pub ended: BTreeMap<&'static str, u64>,
}
