//! Chainlink-style push price feeds with keel's validity rule (`venues.md` §4.2).

use crate::error::OracleError;
use crate::math::{U256, Wad};
use serde::{Deserialize, Serialize};

/// An L2 sequencer uptime feed: answer 0 = up, 1 = down, with the time of the last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencerFeed {
    /// True when the sequencer reports up.
    pub up: bool,
    /// When the status last changed.
    pub since: u64,
    /// Seconds after coming up before prices count again.
    pub grace_period: u64,
}

/// A price feed: latest answer, decimals, update time, heartbeat and deviation threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceFeed {
    /// Name used in error messages, e.g. `ETH / USD`.
    pub name: String,
    /// Latest answer in `10^-decimals` units (signed, as Chainlink's `int256`).
    pub answer: i128,
    /// Decimals of the answer (8 for USD pairs).
    pub decimals: u8,
    /// When the latest answer was posted.
    pub updated_at: u64,
    /// Round counter, incremented by each post.
    pub round_id: u64,
    /// Maximum seconds between posts promised by the feed.
    pub heartbeat: u64,
    /// Relative move that triggers a post (e.g. 0.5%).
    pub deviation_threshold: Wad,
    /// Age beyond which the answer is refused (default heartbeat × 1.1).
    pub max_staleness: u64,
    /// Optional L2 sequencer feed.
    pub sequencer: Option<SequencerFeed>,
}

impl PriceFeed {
    /// A feed with no answer yet; `max_staleness` defaults to heartbeat × 1.1.
    pub fn new(name: impl Into<String>, decimals: u8, heartbeat: u64, deviation_threshold: Wad) -> Self {
        PriceFeed {
            name: name.into(),
            answer: 0,
            decimals,
            updated_at: 0,
            round_id: 0,
            heartbeat,
            deviation_threshold,
            max_staleness: heartbeat + heartbeat / 10,
            sequencer: None,
        }
    }

    /// Post a new answer at `now` (what a feed's transmitter does). Any answer is recorded,
    /// even a non-positive one: readers refuse it, as keel's validity rule says.
    pub fn post(&mut self, answer: i128, now: u64) {
        self.answer = answer;
        self.updated_at = now;
        self.round_id += 1;
    }

    /// The validated answer at `now`, in `10^-decimals` units.
    pub fn latest(&self, now: u64) -> Result<U256, OracleError> {
        let feed = || self.name.clone();
        if self.round_id == 0 {
            return Err(OracleError::NoAnswer { feed: feed() });
        }
        if self.answer <= 0 {
            return Err(OracleError::NotPositive { feed: feed() });
        }
        if self.updated_at > now {
            return Err(OracleError::FromFuture { feed: feed() });
        }
        let age = now - self.updated_at;
        if age > self.max_staleness {
            return Err(OracleError::Stale { feed: feed(), age, limit: self.max_staleness });
        }
        if let Some(seq) = &self.sequencer
            && (!seq.up || now < seq.since.saturating_add(seq.grace_period))
        {
            return Err(OracleError::Sequencer { feed: feed() });
        }
        Ok(U256::from(self.answer as u128))
    }

    /// Whether a transmitter would post `price` at `now`: the deviation from the last answer
    /// reaches the threshold, or the heartbeat has passed.
    pub fn needs_update(&self, price: i128, now: u64) -> bool {
        if self.round_id == 0 || now.saturating_sub(self.updated_at) >= self.heartbeat {
            return true;
        }
        if self.answer <= 0 {
            return true;
        }
        let diff = (price - self.answer).unsigned_abs();
        // diff / answer ≥ threshold  ⇔  diff · 1e18 ≥ threshold · answer
        U256::from(diff) * crate::math::WAD >= self.deviation_threshold.0 * U256::from(self.answer as u128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole US dollars as an 8-decimal oracle answer.
    fn usd(x: i128) -> i128 {
        x * 100_000_000
    }

    fn feed() -> PriceFeed {
        let mut f = PriceFeed::new("ETH / USD", 8, 3600, Wad::parse("0.005").unwrap());
        f.post(usd(2000), 1_000);
        f
    }

    #[test]
    fn table_validity() {
        type Mutate = Box<dyn Fn(&mut PriceFeed)>;
        let cases: Vec<(&str, Mutate, u64, Result<u64, &str>)> = vec![
            ("fresh", Box::new(|_| {}), 1_000, Ok(200_000_000_000)),
            ("at the limit", Box::new(|_| {}), 1_000 + 3960, Ok(200_000_000_000)),
            (
                "stale",
                Box::new(|_| {}),
                1_000 + 3961,
                Err("Oracle ETH / USD: answer is stale (updated 3961 s ago, limit 3960 s)"),
            ),
            ("zero", Box::new(|f| f.post(0, 1_000)), 1_000, Err("Oracle ETH / USD: answer is not positive")),
            ("negative", Box::new(|f| f.post(-5, 1_000)), 1_000, Err("Oracle ETH / USD: answer is not positive")),
            ("future", Box::new(|f| f.post(1, 2_000)), 1_000, Err("Oracle ETH / USD: answer is from the future")),
            (
                "sequencer grace",
                Box::new(|f| f.sequencer = Some(SequencerFeed { up: true, since: 900, grace_period: 3600 })),
                1_000,
                Err("Oracle ETH / USD: sequencer down or in grace period"),
            ),
        ];
        for (case, mutate, now, want) in cases {
            let mut f = feed();
            mutate(&mut f);
            let got = f.latest(now).map(|v| v.to::<u64>()).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "case: {case}");
        }
    }

    #[test]
    fn deviation_and_heartbeat() {
        let f = feed();
        assert!(!f.needs_update(usd(2009), 1_100), "0.45% < 0.5%");
        assert!(f.needs_update(usd(2010), 1_100), "0.5% reaches the threshold");
        assert!(f.needs_update(usd(2000), 1_000 + 3600), "heartbeat");
    }
}
