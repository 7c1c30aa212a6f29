//! Seeded generators of log returns at block resolution: geometric Brownian motion, Merton
//! jump diffusion, GARCH(1,1), two-state regime switching and a block bootstrap of historical
//! returns, plus deterministic shocks laid over any of them.

use crate::{PriceSource, Tick};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

const YEAR: f64 = 365.0 * 86_400.0;

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

/// A generated path.
pub struct GeneratedPath {
    model: Model,
    shocks: Vec<Shock>,
    rng: ChaCha8Rng,
    block_time: u64,
    start: u64,
    steps: u64,
    done: u64,
    log_price: f64,
    p0: f64,
    garch_var: f64,
    stressed: bool,
    boot_pos: usize,
    boot_left: usize,
    boot_buffer: Vec<f64>,
}

impl GeneratedPath {
    /// A path of `steps` blocks of `block_time` seconds from `p0` at `start`.
    pub fn new(model: Model, shocks: Vec<Shock>, p0: f64, start: u64, block_time: u64, steps: u64, seed: u64) -> Self {
        let garch_var = match &model {
            Model::Garch { vol, .. } => vol * vol * block_time as f64 / YEAR,
            _ => 0.0,
        };
        GeneratedPath {
            model,
            shocks,
            rng: ChaCha8Rng::seed_from_u64(seed),
            block_time,
            start,
            steps,
            done: 0,
            log_price: p0.ln(),
            p0,
            garch_var,
            stressed: false,
            boot_pos: 0,
            boot_left: 0,
            boot_buffer: Vec::new(),
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

    fn model_return(&mut self) -> f64 {
        let dt = self.block_time as f64 / YEAR;
        match self.model.clone() {
            Model::Gbm { drift, vol } => (drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z(),
            Model::Jump { drift, vol, lambda, jump_mean, jump_vol } => {
                let mut r = (drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z();
                let n = Poisson::new(lambda * dt).map(|p| p.sample(&mut self.rng) as u64).unwrap_or(0);
                for _ in 0..n {
                    r += jump_mean + jump_vol * self.z();
                }
                r
            }
            Model::Garch { vol, alpha, beta } => {
                let long = vol * vol * dt;
                let omega = long * (1.0 - alpha - beta).max(0.0);
                let eps = self.garch_var.sqrt() * self.z();
                self.garch_var = omega + alpha * eps * eps + beta * self.garch_var;
                eps - 0.5 * long
            }
            Model::Regime { calm_vol, stress_vol, to_stress, to_calm, drift } => {
                let switch = if self.stressed { to_calm } else { to_stress } * dt;
                if self.rng.random::<f64>() < switch {
                    self.stressed = !self.stressed;
                }
                let vol = if self.stressed { stress_vol } else { calm_vol };
                (drift - 0.5 * vol * vol) * dt + vol * dt.sqrt() * self.z()
            }
            Model::Bootstrap { returns, interval, block } => {
                if self.boot_buffer.is_empty() {
                    let n = (interval / self.block_time).max(1) as usize;
                    // Draw one historical return, split over n blocks by a Gaussian bridge.
                    if self.boot_left == 0 {
                        self.boot_pos = self.rng.random_range(0..returns.len());
                        self.boot_left = block.max(1);
                    }
                    let total = returns[self.boot_pos % returns.len()];
                    self.boot_pos += 1;
                    self.boot_left -= 1;
                    let sd = (total.abs() / (n as f64).sqrt()).max(1e-9);
                    let mut w: Vec<f64> = (0..n).map(|_| sd * self.z()).collect();
                    let mean = w.iter().sum::<f64>() / n as f64;
                    for x in &mut w {
                        *x = *x - mean + total / n as f64;
                    }
                    w.reverse();
                    self.boot_buffer = w;
                }
                self.boot_buffer.pop().unwrap_or(0.0)
            }
        }
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
        let r = self.model_return() + self.shock_return(t0, t0 + self.block_time);
        self.log_price += r;
        Some(Tick { time: self.start + self.done * self.block_time, price: self.log_price.exp() })
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
        let a: Vec<f64> = {
            let mut p = GeneratedPath::new(
                Model::Jump { drift: 0.0, vol: 0.7, lambda: 50.0, jump_mean: -0.05, jump_vol: 0.05 },
                vec![],
                100.0,
                0,
                60,
                1000,
                9,
            );
            std::iter::from_fn(move || p.next_tick()).map(|t| t.price).collect()
        };
        let b: Vec<f64> = {
            let mut p = GeneratedPath::new(
                Model::Jump { drift: 0.0, vol: 0.7, lambda: 50.0, jump_mean: -0.05, jump_vol: 0.05 },
                vec![],
                100.0,
                0,
                60,
                1000,
                9,
            );
            std::iter::from_fn(move || p.next_tick()).map(|t| t.price).collect()
        };
        assert_eq!(a, b);
    }
}
