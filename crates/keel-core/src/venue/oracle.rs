//! A Uniswap v3 pool's price oracle (`Oracle.sol` of `@uniswap/v3-core`): a ring of observations
//! of the cumulative tick, written at most once a block, read as the cumulative tick some
//! seconds ago (interpolated between observations) and so as a time-weighted average tick. Perp
//! v2 reads its market TWAPs from it (`venue::perp_v2::market_twap_price_x96`, `mark_price`).
//!
//! The owner of the pool writes it: at the pool's start ([`Oracle::new`]), on a swap that moves
//! the tick (with the tick *before* the swap) and on a mint or burn of a position around the
//! current tick. Only the tick cumulative is kept (not seconds per liquidity). Timestamps are
//! seconds below 2³²; the contract's wrap-around of 32-bit time is not modelled.

use crate::error::AmmError;
use serde::{Deserialize, Serialize};

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// When it was written.
    pub time: u64,
    /// Σ tick · seconds up to `time`.
    pub tick_cumulative: i64,
    /// Whether the slot holds an observation.
    pub initialized: bool,
}

/// The observation ring of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oracle {
    observations: Vec<Observation>,
    index: usize,
    cardinality: usize,
    cardinality_next: usize,
}

impl Oracle {
    /// `initialize`: one observation at `time` (the pool's first price).
    pub fn new(time: u64) -> Self {
        Self {
            observations: vec![Observation { time, tick_cumulative: 0, initialized: true }],
            index: 0,
            cardinality: 1,
            cardinality_next: 1,
        }
    }

    /// `increaseObservationCardinalityNext`: room for `next` observations (used once the ring
    /// reaches its current end).
    pub fn grow(&mut self, next: usize) {
        if next > self.cardinality_next {
            self.observations.resize(next, Observation { time: 1, ..Default::default() });
            self.cardinality_next = next;
        }
    }

    fn transform(last: Observation, time: u64, tick: i32) -> Observation {
        let dt = time.saturating_sub(last.time) as i64;
        Observation { time, tick_cumulative: last.tick_cumulative + i64::from(tick) * dt, initialized: true }
    }

    /// `write`: record `tick`, the tick that held since the last observation, at `time`; a
    /// second write in the same block does nothing.
    pub fn write(&mut self, time: u64, tick: i32) {
        let last = self.observations[self.index];
        if last.time == time {
            return;
        }
        if self.cardinality_next > self.cardinality && self.index == self.cardinality - 1 {
            self.cardinality = self.cardinality_next;
        }
        self.index = (self.index + 1) % self.cardinality;
        self.observations[self.index] = Self::transform(last, time, tick);
    }

    /// `observeSingle`: the tick cumulative `seconds_ago` before `now`, with `tick` the pool's
    /// current tick. Refused (`OLD`) before the oldest observation.
    pub fn observe(&self, now: u64, seconds_ago: u64, tick: i32) -> Result<i64, AmmError> {
        let last = self.observations[self.index];
        if seconds_ago == 0 {
            return Ok(if last.time == now { last } else { Self::transform(last, now, tick) }.tick_cumulative);
        }
        let target = now.checked_sub(seconds_ago).ok_or_else(|| AmmError::InvalidPool("OLD".into()))?;
        let (before, after) = self.surrounding(target, tick)?;
        if target == before.time {
            return Ok(before.tick_cumulative);
        }
        if target == after.time {
            return Ok(after.tick_cumulative);
        }
        let span = (after.time - before.time) as i64;
        let into = (target - before.time) as i64;
        // Solidity's int56 division truncates toward zero
        Ok(before.tick_cumulative + (after.tick_cumulative - before.tick_cumulative) / span * into)
    }

    /// The time-weighted average tick over the `interval` seconds before `now`, as Perp v2's
    /// `UniswapV3Broker.getSqrtMarketTwapX96From` takes it: `(c₁ − c₀) / interval`, truncated
    /// toward zero.
    pub fn average_tick(&self, now: u64, interval: u64, tick: i32) -> Result<i32, AmmError> {
        if interval == 0 {
            return Ok(tick);
        }
        let c0 = self.observe(now, interval, tick)?;
        let c1 = self.observe(now, 0, tick)?;
        i32::try_from((c1 - c0) / interval as i64).map_err(|_| AmmError::InvalidPool("average tick".into()))
    }

    fn surrounding(&self, target: u64, tick: i32) -> Result<(Observation, Observation), AmmError> {
        let newest = self.observations[self.index];
        if newest.time <= target {
            if newest.time == target {
                return Ok((newest, newest));
            }
            return Ok((newest, Self::transform(newest, target, tick)));
        }
        let mut oldest = self.observations[(self.index + 1) % self.cardinality];
        if !oldest.initialized {
            oldest = self.observations[0];
        }
        if oldest.time > target {
            return Err(AmmError::InvalidPool("OLD: the oracle holds no observation that far back".into()));
        }
        // binary search over the ring, oldest to newest
        let n = self.cardinality;
        let (mut l, mut r) = ((self.index + 1) % n, (self.index + 1) % n + n - 1);
        loop {
            let i = (l + r) / 2;
            let before = self.observations[i % n];
            if !before.initialized {
                l = i + 1;
                continue;
            }
            let after = self.observations[(i + 1) % n];
            let at_or_after = before.time <= target;
            if at_or_after && target <= after.time {
                return Ok((before, after));
            }
            if at_or_after { l = i + 1 } else { r = i - 1 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_that_sat_at_one_tick_averages_that_tick() {
        let mut o = Oracle::new(1_000);
        o.grow(4);
        assert_eq!(o.average_tick(2_000, 900, 50).unwrap(), 50, "extrapolated from the only observation");
        assert!(o.average_tick(1_500, 900, 50).is_err(), "OLD: before the first observation");
    }

    #[test]
    fn interpolates_between_observations_and_truncates_toward_zero() {
        let mut o = Oracle::new(0);
        o.grow(8);
        o.write(100, 10); // tick 10 from 0 to 100: cumulative 1 000
        o.write(200, -30); // tick −30 from 100 to 200: cumulative −2 000
        // now 300 at tick 7: cumulative −1 300
        assert_eq!(o.observe(300, 0, 7).unwrap(), -1_300);
        // 150 s ago = t 150: 1 000 + (−3 000 / 100) · 50 = −500
        assert_eq!(o.observe(300, 150, 7).unwrap(), -500);
        // average over the last 250 s: (−1 300 − 500) / 250 = −7.2 → −7 (toward zero)
        assert_eq!(o.average_tick(300, 250, 7).unwrap(), -7);
        // a second write in a block does nothing
        let before = o.clone();
        o.write(200, 99);
        assert_eq!(o, before);
    }

    #[test]
    fn the_ring_overwrites_its_oldest_once_full() {
        let mut o = Oracle::new(0);
        o.grow(2);
        o.write(10, 1);
        o.write(20, 1);
        o.write(30, 1); // two slots: t 20 and t 30 are kept
        assert!(o.observe(30, 15, 1).is_err(), "t 15 is older than the oldest kept (t 20)");
        assert_eq!(o.observe(30, 10, 1).unwrap(), 20);
        assert_eq!(o.observe(30, 5, 1).unwrap(), 25);
    }
}
