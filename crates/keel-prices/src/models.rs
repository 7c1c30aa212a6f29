//! Seeded generators of a price path in continuous time: geometric Brownian motion, Merton
//! jump diffusion, GARCH(1,1), two-state regime switching and a block bootstrap of historical
//! returns, plus deterministic shocks laid over any of them.
//!
//! A path does not depend on the block time that observes it. The model draws one log return
//! per **knot interval** (an hour; a bootstrap's own interval) from the path's seed; between two
//! knots the price follows a Brownian bridge whose randomness is seeded by the seed and the
//! interval's index, sampled exactly at whatever block times the chain has (each sample is
//! drawn from the bridge's law given the previous sample and the next knot). Shocks are exact
//! functions of time. So a 12 s-block chain and a 2 s-block chain on the same scenario and seed
//! see the same price at every knot — the same underlying return over the run — and a chain
//! with hourly blocks reads the knots alone, without drawing a bridge.

use crate::{PriceSource, Tick};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

const YEAR: f64 = 365.0 * 86_400.0;

/// Seconds between two knots of a model path (the bootstrap uses its data's interval).
pub const KNOT_INTERVAL: u64 = 3_600;

/// A return model. Volatilities and drifts are annual; rates are per year.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// Geometric Brownian motion.
    Gbm {
        /// Annual drift μ.
        drift: f64,
        /// Annual volatility σ.
        vol: f64,
    },
    /// Merton jump diffusion: GBM plus Poisson jumps with normal log sizes.
    Jump {
        /// Annual drift of the diffusion.
        drift: f64,
        /// Annual volatility of the diffusion.
        vol: f64,
        /// Jumps per year.
        lambda: f64,
        /// Mean log jump.
        jump_mean: f64,
        /// Std-dev of the log jump.
        jump_vol: f64,
    },
    /// GARCH(1,1) around a long-run annual volatility.
    Garch {
        /// Long-run annual volatility.
        vol: f64,
        /// Weight of the last shock.
        alpha: f64,
        /// Persistence of variance.
        beta: f64,
    },
    /// Two regimes with their own volatility, switching at the given rates per year.
    Regime {
        /// Calm-regime annual volatility.
        calm_vol: f64,
        /// Stressed-regime annual volatility.
        stress_vol: f64,
        /// Calm → stressed switches per year.
        to_stress: f64,
        /// Stressed → calm switches per year.
        to_calm: f64,
        /// Annual drift.
        drift: f64,
    },
    /// Resample blocks of historical log returns (each of `interval` seconds).
    Bootstrap {
        /// Historical per-interval log returns.
        returns: Vec<f64>,
        /// Seconds each return spans.
        interval: u64,
        /// Consecutive returns drawn together.
        block: usize,
    },
}

/// A deterministic move laid over the model: `log_move` spread evenly over `duration` seconds
/// from `start` seconds after the path begins (a crash, a rebound, a one-block gap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shock {
    /// Seconds from the path start.
    pub start: u64,
    /// Seconds the move takes (0 = within one block).
    pub duration: u64,
    /// Total log-price move.
    pub log_move: f64,
}

/// A generated path, observed at one block time.
pub struct GeneratedPath {
    model: Model,
    shocks: Vec<Shock>,
    seed: u64,
    /// The knot stream: one model draw per knot interval.
    rng: ChaCha8Rng,
    /// The bridge stream of the current knot interval.
    bridge: ChaCha8Rng,
    block_time: u64,
    knot: u64,
    start: u64,
    steps: u64,
    done: u64,
    p0_ln: f64,
    p0: f64,
    /// Model log price (shocks apart) at the last observed time, and that time (seconds from the start).
    x_last: f64,
    t_last: u64,
    /// The next knot: its time, its model log price, the interval's index and its per-second volatility.
    knot_time: u64,
    x_knot: f64,
    interval: u64,
    sigma: f64,
    /// Shocks' cumulative log move at `t_last`.
    shock_sum: f64,
    garch_var: f64,
    stressed: bool,
    boot_pos: usize,
    boot_left: usize,
}

/// A well-mixed seed for interval `i` of the path seeded `seed` (SplitMix64 finaliser).
pub(crate) fn interval_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ 0x6272_6964_6765_0000 ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GeneratedPath {
    /// A path of `steps` blocks of `block_time` seconds from `p0` at `start`.
    pub fn new(model: Model, shocks: Vec<Shock>, p0: f64, start: u64, block_time: u64, steps: u64, seed: u64) -> Self {
        let knot = match &model {
            Model::Bootstrap { interval, .. } => (*interval).max(1),
            _ => KNOT_INTERVAL,
        };
        let garch_var = match &model {
            Model::Garch { vol, .. } => vol * vol * knot as f64 / YEAR,
            _ => 0.0,
        };
        GeneratedPath {
            model,
            shocks,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            bridge: ChaCha8Rng::seed_from_u64(interval_seed(seed, 0)),
            block_time: block_time.max(1),
            knot,
            start,
            steps,
            done: 0,
            p0_ln: p0.ln(),
            p0,
            x_last: 0.0,
            t_last: 0,
            knot_time: 0,
            x_knot: 0.0,
            interval: 0,
            sigma: 0.0,
            shock_sum: 0.0,
            garch_var,
            stressed: false,
            boot_pos: 0,
            boot_left: 0,
        }
    }

    /// Add deterministic moves to the path (a stress test's gap).
    pub fn with_shocks(mut self, extra: &[Shock]) -> Self {
        self.shocks.extend_from_slice(extra);
        self
    }

    /// The path's length in blocks.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn z(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }

    /// One knot interval's model log return and the per-second volatility inside it.
    fn knot_return(&mut self) -> (f64, f64) {
        let dt = self.knot as f64 / YEAR;
        let per_second = |annual: f64| annual / YEAR.sqrt();
        match &self.model {
            Model::Gbm { drift, vol } => {
                let (drift, vol) = (*drift, *vol);
                ((drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z(), per_second(vol))
            }
            Model::Jump { drift, vol, lambda, jump_mean, jump_vol } => {
                let (drift, vol, lambda, jump_mean, jump_vol) = (*drift, *vol, *lambda, *jump_mean, *jump_vol);
                let mut r = (drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z();
                let n = Poisson::new(lambda * dt).map(|p| p.sample(&mut self.rng) as u64).unwrap_or(0);
                for _ in 0..n {
                    r += jump_mean + jump_vol * self.z();
                }
                (r, per_second(vol))
            }
            Model::Garch { vol, alpha, beta } => {
                let (vol, alpha, beta) = (*vol, *alpha, *beta);
                let long = vol * vol * dt;
                let omega = long * (1.0 - alpha - beta).max(0.0);
                let var = self.garch_var;
                let eps = var.sqrt() * self.z();
                self.garch_var = omega + alpha * eps * eps + beta * var;
                (eps - 0.5 * long, (var / self.knot as f64).sqrt())
            }
            Model::Regime { calm_vol, stress_vol, to_stress, to_calm, drift } => {
                let (calm_vol, stress_vol, to_stress, to_calm, drift) =
                    (*calm_vol, *stress_vol, *to_stress, *to_calm, *drift);
                let switch = if self.stressed { to_calm } else { to_stress } * dt;
                if self.rng.random::<f64>() < switch {
                    self.stressed = !self.stressed;
                }
                let vol = if self.stressed { stress_vol } else { calm_vol };
                ((drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z(), per_second(vol))
            }
            Model::Bootstrap { returns, block, .. } => {
                if returns.is_empty() {
                    return (0.0, 0.0);
                }
                if self.boot_left == 0 {
                    self.boot_pos = self.rng.random_range(0..returns.len());
                    self.boot_left = (*block).max(1);
                }
                let total = returns[self.boot_pos % returns.len()];
                self.boot_pos += 1;
                self.boot_left -= 1;
                (total, (total.abs() / (self.knot as f64).sqrt()).max(1e-12))
            }
        }
    }

    /// The model's log price (shocks apart) at `t` seconds from the start, `t` after the last
    /// observation: knots are drawn as the path reaches them, the bridge in between.
    fn model_at(&mut self, t: u64) -> f64 {
        while self.knot_time < t {
            self.t_last = self.knot_time;
            self.x_last = self.x_knot;
            let (r, sigma) = self.knot_return();
            self.x_knot += r;
            self.sigma = sigma;
            self.knot_time += self.knot;
            self.bridge = ChaCha8Rng::seed_from_u64(interval_seed(self.seed, self.interval));
            self.interval += 1;
        }
        let x = if t == self.knot_time {
            self.x_knot
        } else {
            let (a, b) = ((t - self.t_last) as f64, (self.knot_time - t) as f64);
            let w = a / (a + b);
            let mean = self.x_last + w * (self.x_knot - self.x_last);
            let z: f64 = self.bridge.sample(StandardNormal);
            mean + self.sigma * (a * b / (a + b)).sqrt() * z
        };
        self.t_last = t;
        self.x_last = x;
        x
    }

    fn shock_return(&self, t0: u64, t1: u64) -> f64 {
        let mut r = 0.0;
        for s in &self.shocks {
            let (a, b) = (s.start, s.start + s.duration.max(1));
            let lo = a.max(t0);
            let hi = b.min(t1);
            if hi > lo {
                r += s.log_move * (hi - lo) as f64 / (b - a) as f64;
            }
        }
        r
    }
}

impl PriceSource for GeneratedPath {
    fn start_time(&self) -> u64 {
        self.start
    }

    fn start_price(&self) -> f64 {
        self.p0
    }

    fn next_tick(&mut self) -> Option<Tick> {
        if self.done >= self.steps {
            return None;
        }
        let t0 = self.done * self.block_time;
        self.done += 1;
        let t = self.done * self.block_time;
        self.shock_sum += self.shock_return(t0, t);
        let x = self.model_at(t);
        Some(Tick { time: self.start + t, price: (self.p0_ln + x + self.shock_sum).exp() })
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realised_vol(model: Model, bt: u64) -> f64 {
        let steps = (YEAR as u64) / bt;
        let mut p = GeneratedPath::new(model, vec![], 100.0, 0, bt, steps, 42);
        let mut last = 100f64.ln();
        let mut ss = 0.0;
        while let Some(t) = p.next_tick() {
            let x = t.price.ln();
            ss += (x - last) * (x - last);
            last = x;
        }
        ss.sqrt()
    }

    #[test]
    fn table_models_hit_their_volatility() {
        let cases = [
            ("gbm", Model::Gbm { drift: 0.0, vol: 0.8 }, 0.8),
            ("garch", Model::Garch { vol: 0.6, alpha: 0.08, beta: 0.9 }, 0.6),
            (
                "regime",
                Model::Regime { calm_vol: 0.5, stress_vol: 0.5, to_stress: 4.0, to_calm: 12.0, drift: 0.0 },
                0.5,
            ),
        ];
        for (case, m, want) in cases {
            let v = realised_vol(m, 3600);
            assert!((v - want).abs() / want < 0.1, "case {case}: realised {v}");
        }
    }

    #[test]
    fn shocks_move_the_price_and_paths_are_seeded() {
        let mk = |seed| {
            GeneratedPath::new(
                Model::Gbm { drift: 0.0, vol: 0.0 },
                vec![Shock { start: 3600, duration: 7200, log_move: (0.6f64).ln() }],
                100.0,
                0,
                3600,
                5,
                seed,
            )
        };
        let prices: Vec<f64> = {
            let mut p = mk(1);
            std::iter::from_fn(move || p.next_tick()).map(|t| t.price).collect()
        };
        assert!((prices[0] - 100.0).abs() < 1e-9);
        assert!((prices[2] - 60.0).abs() < 1e-9, "{prices:?}");
        let jump = || {
            let mut p = GeneratedPath::new(
                Model::Jump { drift: 0.0, vol: 0.7, lambda: 50.0, jump_mean: -0.05, jump_vol: 0.05 },
                vec![],
                100.0,
                0,
                60,
                1000,
                9,
            );
            std::iter::from_fn(move || p.next_tick()).map(|t| t.price).collect::<Vec<f64>>()
        };
        let (a, b) = (jump(), jump());
        assert_eq!(a, b);
    }

    #[test]
    fn table_block_times_observe_one_path() {
        // The same model and seed observed at different block times agree at every knot (and so
        // on the run's return); hourly blocks read the knots alone.
        let models = [
            ("gbm", Model::Gbm { drift: 0.1, vol: 0.8 }),
            ("jump", Model::Jump { drift: 0.0, vol: 0.7, lambda: 50.0, jump_mean: -0.05, jump_vol: 0.05 }),
            ("garch", Model::Garch { vol: 0.6, alpha: 0.08, beta: 0.9 }),
            ("regime", Model::Regime { calm_vol: 0.5, stress_vol: 1.2, to_stress: 20.0, to_calm: 40.0, drift: 0.0 }),
            ("bootstrap", Model::Bootstrap { returns: vec![0.01, -0.02, 0.005, 0.0], interval: 3_600, block: 2 }),
        ];
        let shock = vec![Shock { start: 5_000, duration: 40, log_move: -0.3 }];
        let knots = |m: &Model, bt: u64| -> Vec<(u64, f64)> {
            let days = 3;
            let mut p = GeneratedPath::new(m.clone(), shock.clone(), 100.0, 1_000, bt, days * 86_400 / bt, 7);
            std::iter::from_fn(move || p.next_tick())
                .filter(|t| (t.time - 1_000) % 3_600 == 0)
                .map(|t| (t.time, t.price))
                .collect()
        };
        for (case, m) in &models {
            let hourly = knots(m, 3_600);
            assert_eq!(hourly.len(), 72, "case {case}");
            for bt in [1, 2, 12, 60, 900] {
                let other = knots(m, bt);
                assert_eq!(other.len(), hourly.len(), "case {case} at {bt} s");
                for ((ta, pa), (tb, pb)) in hourly.iter().zip(&other) {
                    assert_eq!(ta, tb);
                    assert!((pa / pb - 1.0).abs() < 1e-12, "case {case} at {bt} s, t={ta}: {pa} vs {pb}");
                }
            }
        }
    }

    #[test]
    fn the_bridge_between_knots_has_the_model_volatility() {
        // 2 s blocks of a 80% GBM: realised volatility over a year of blocks is the model's.
        let bt = 2;
        let steps = 30 * 86_400 / bt;
        let mut p = GeneratedPath::new(Model::Gbm { drift: 0.0, vol: 0.8 }, vec![], 100.0, 0, bt, steps, 3);
        let mut last = 100f64.ln();
        let mut ss = 0.0;
        while let Some(t) = p.next_tick() {
            let x = t.price.ln();
            ss += (x - last) * (x - last);
            last = x;
        }
        let annual = (ss * YEAR / (30.0 * 86_400.0)).sqrt();
        assert!((annual - 0.8).abs() < 0.02, "realised {annual}");
    }
}
