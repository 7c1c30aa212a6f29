//! The block clock: chain profiles and block times.

use serde::Serialize;

/// A chain's block time and fee level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainProfile {
    /// Name (`ethereum`, `optimism`).
    pub name: &'static str,
    /// Seconds per block.
    pub block_time: u64,
    /// Base gas price in gwei in quiet markets.
    pub base_gas_gwei: f64,
}

/// Ethereum-like: 12 s blocks, 30 gwei base.
pub const ETHEREUM: ChainProfile = ChainProfile { name: "ethereum", block_time: 12, base_gas_gwei: 30.0 };
/// Optimism-like: 2 s blocks, cheap gas (L1 data fee folded in).
pub const OPTIMISM: ChainProfile = ChainProfile { name: "optimism", block_time: 2, base_gas_gwei: 0.05 };

/// A chain profile by name.
pub fn profile(name: &str) -> Option<ChainProfile> {
    match name {
        "ethereum" => Some(ETHEREUM),
        "optimism" => Some(OPTIMISM),
        _ => None,
    }
}

/// Steps a block number and a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Clock {
    /// Current block number (0 at the start).
    pub block: u64,
    /// Current time, unix seconds.
    pub now: u64,
    /// Seconds per block.
    pub block_time: u64,
}

impl Clock {
    /// A clock at `start`.
    pub fn new(start: u64, block_time: u64) -> Self {
        Clock { block: 0, now: start, block_time }
    }

    /// Advance one block.
    pub fn tick(&mut self) {
        self.block += 1;
        self.now += self.block_time;
    }
}
