//! Paths between bar closes at block resolution: a seeded Brownian bridge in log price that
//! starts at each bar's open, visits its high and its low at random interior blocks, and ends
//! at its close, never leaving [low, high]. Blocks as long as the bar (or longer) take closes.
//! Each bar's bridge is seeded by the seed and the bar's index, as a generated path seeds each
//! knot interval: every block time observes the same closes, and a bar's path does not depend
//! on how many blocks the bars before it had.

use crate::{Bar, PriceSource, Tick};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Bars walked block by block.
pub struct BridgedBars {
    bars: Vec<Bar>,
    interval: u64,
    block_time: u64,
    rng: ChaCha8Rng,
    seed: u64,
    next_bar: usize,
    buffer: Vec<f64>,
    pos: usize,
    time: u64,
}

impl BridgedBars {
    /// Walk `bars` (spaced `interval` seconds) at `block_time`. The block time must divide the
    /// interval or be a whole multiple of it.
    pub fn new(bars: Vec<Bar>, interval: u64, block_time: u64, seed: u64) -> Result<Self, String> {
        if block_time == 0 || interval == 0 {
            return Err("block time and bar interval must be positive".into());
        }
        if !(interval.is_multiple_of(block_time) || block_time.is_multiple_of(interval)) {
            return Err(format!(
                "block time {block_time} s must divide the bar interval {interval} s or be a multiple of it"
            ));
        }
        if bars.is_empty() {
            return Err("no bars".into());
        }
        let time = bars[0].time;
        Ok(BridgedBars {
            bars,
            interval,
            block_time,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            next_bar: 0,
            buffer: Vec::new(),
            pos: 0,
            time,
        })
    }

    fn fill_bar(&mut self, bar: Bar) {
        let n = (self.interval / self.block_time) as usize;
        self.buffer.clear();
        self.pos = 0;
        let (lo, hi) = (bar.low.ln(), bar.high.ln());
        let (o, c) = (bar.open.ln(), bar.close.ln());
        if n == 1 {
            self.buffer.push(bar.close);
            return;
        }
        // Which extreme first: the shorter total excursion, as a market usually moves.
        let low_first = (o - lo).abs() + (hi - c).abs() < (hi - o).abs() + (c - lo).abs();
        let (e1, e2) = if low_first { (lo, hi) } else { (hi, lo) };
        let mut anchors: Vec<(usize, f64)> = Vec::with_capacity(4);
        anchors.push((0, o));
        if n == 2 {
            // One interior block: visit the larger excursion.
            let e = if (hi - o).abs().max((hi - c).abs()) >= (o - lo).abs().max((c - lo).abs()) { hi } else { lo };
            anchors.push((1, e));
        } else {
            let a = self.rng.random_range(1..n - 1);
            let b = self.rng.random_range(a + 1..n);
            anchors.push((a, e1));
            anchors.push((b, e2));
        }
        anchors.push((n, c));
        // Per-block volatility from the bar's range (Parkinson-like), at least a sliver.
        let sigma = ((hi - lo) / (2.0 * (n as f64).sqrt())).max(1e-6);
        for w in anchors.windows(2) {
            let ((k0, x0), (k1, x1)) = (w[0], w[1]);
            let m = k1 - k0;
            // Random walk then pin both ends: a Brownian bridge from x0 to x1 over m steps.
            let mut walk = Vec::with_capacity(m);
            let mut acc = 0.0;
            for _ in 0..m {
                let z: f64 = self.rng.sample(StandardNormal);
                acc += sigma * z;
                walk.push(acc);
            }
            let end = walk[m - 1];
            for (j, wj) in walk.iter().enumerate() {
                let s = (j + 1) as f64 / m as f64;
                let x = if j + 1 == m { x1 } else { (x0 + s * (x1 - x0) + wj - s * end).clamp(lo, hi) };
                // Clamp in price space too: exp(ln(high)) can be one ulp above the high.
                self.buffer.push(x.exp().clamp(bar.low, bar.high));
            }
        }
        // Pin the anchors exactly (exp(ln(x)) can be one ulp off).
        for (k, x) in &anchors[1..] {
            let v = if *x == hi {
                bar.high
            } else if *x == lo {
                bar.low
            } else {
                bar.close
            };
            self.buffer[k - 1] = v;
        }
    }
}

impl PriceSource for BridgedBars {
    fn start_time(&self) -> u64 {
        self.bars[0].time
    }

    fn start_price(&self) -> f64 {
        self.bars[0].open
    }

    fn next_tick(&mut self) -> Option<Tick> {
        if self.block_time >= self.interval {
            // Coarse blocks: one close per `block_time / interval` bars.
            let step = (self.block_time / self.interval) as usize;
            let idx = self.next_bar + step - 1;
            let bar = *self.bars.get(idx)?;
            self.next_bar += step;
            self.time += self.block_time;
            return Some(Tick { time: self.time, price: bar.close });
        }
        if self.pos >= self.buffer.len() {
            let bar = *self.bars.get(self.next_bar)?;
            self.next_bar += 1;
            // Bars may be spaced wider than the interval (allowed gaps): jump the clock.
            self.time = bar.time;
            self.rng = ChaCha8Rng::seed_from_u64(crate::models::interval_seed(self.seed, self.next_bar as u64));
            self.fill_bar(bar);
        }
        let p = self.buffer[self.pos];
        self.pos += 1;
        self.time += self.block_time;
        Some(Tick { time: self.time, price: p })
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.bars.len() as u64 * self.interval / self.block_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars() -> Vec<Bar> {
        vec![
            Bar { time: 0, open: 100.0, high: 110.0, low: 95.0, close: 105.0 },
            Bar { time: 3600, open: 105.0, high: 106.0, low: 80.0, close: 90.0 },
        ]
    }

    #[test]
    fn visits_extremes_and_closes_within_bounds() {
        let mut b = BridgedBars::new(bars(), 3600, 12, 7).unwrap();
        let ticks: Vec<Tick> = std::iter::from_fn(|| b.next_tick()).collect();
        assert_eq!(ticks.len(), 600);
        let first: Vec<f64> = ticks[..300].iter().map(|t| t.price).collect();
        assert!(first.contains(&110.0) && first.contains(&95.0), "high and low visited");
        assert!(first.iter().all(|p| (95.0..=110.0).contains(p)));
        assert_eq!(ticks[299].price, 105.0);
        assert_eq!(ticks[299].time, 3600);
        assert_eq!(ticks[599].price, 90.0);
        assert!(ticks[300..].iter().any(|t| t.price == 80.0));
    }

    #[test]
    fn seeded_and_coarse() {
        let run = |seed| {
            let mut b = BridgedBars::new(bars(), 3600, 60, seed).unwrap();
            std::iter::from_fn(move || b.next_tick()).map(|t| t.price).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let mut b = BridgedBars::new(bars(), 3600, 3600, 1).unwrap();
        assert_eq!(b.next_tick().unwrap().price, 105.0);
        assert_eq!(b.next_tick().unwrap().price, 90.0);
        assert!(b.next_tick().is_none());
        assert!(BridgedBars::new(bars(), 3600, 7, 1).is_err());
    }
}
