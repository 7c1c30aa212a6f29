//! Agents' configuration and the small models they use: the gas price, keepers (poll
//! interval, latency, competing ripcord callers), holders' Poisson flows.

use serde::Serialize;

/// Gas units per action. No traces of the reference transactions were collected: these are
/// placeholders to calibrate from mainnet before cost figures are called realistic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GasUnits {
    /// engage.
    pub engage: u64,
    /// rebalance (lever or delever through the module and the pool).
    pub rebalance: u64,
    /// iterateRebalance.
    pub iterate: u64,
    /// ripcord.
    pub ripcord: u64,
    /// disengage.
    pub disengage: u64,
    /// A call that reverts (pays for the work up to the revert).
    pub failed: u64,
}

impl Default for GasUnits {
    fn default() -> Self {
        GasUnits {
            engage: 650_000,
            rebalance: 650_000,
            iterate: 650_000,
            ripcord: 700_000,
            disengage: 650_000,
            failed: 80_000,
        }
    }
}

/// Gas price: a base level plus spikes when the market moves, capped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GasModel {
    /// Quiet-market gas price, gwei.
    pub base_gwei: f64,
    /// Cap, gwei.
    pub max_gwei: f64,
    /// Hourly absolute return at which the price doubles from base (e.g. 1%).
    pub stress_move: f64,
}

impl GasModel {
    /// Gas price for an EWMA of hourly absolute returns: `base · (1 + (move / stress)²)`, capped.
    pub fn gwei(&self, hourly_abs_return: f64) -> f64 {
        let x = hourly_abs_return / self.stress_move;
        (self.base_gwei * (1.0 + x * x)).min(self.max_gwei)
    }
}

/// The operator's keeper and the public ripcord callers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeeperConfig {
    /// Blocks between polls of `shouldRebalance`.
    pub poll_every: u64,
    /// Seconds between a decision and its execution (rounded down to whole blocks: one block at
    /// 12 s, none in an hourly run).
    pub latency_seconds: u64,
    /// Public bots racing for the ripcord reward (each pays gas for what it sends).
    pub ripcord_bots: u32,
    /// A bot calls ripcord only when `reward − gas cost ≥ min_profit_usd`.
    pub min_profit_usd: f64,
    /// Gas units per action.
    pub gas_units: GasUnits,
    /// Gas price model.
    pub gas: GasModel,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig {
            poll_every: 1,
            latency_seconds: 12,
            ripcord_bots: 2,
            min_profit_usd: 0.0,
            gas_units: GasUnits::default(),
            gas: GasModel { base_gwei: 30.0, max_gwei: 2_000.0, stress_move: 0.01 },
        }
    }
}

/// Holders' mints and redeems: Poisson arrivals with exponential sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HolderConfig {
    /// Mean mints per day.
    pub mints_per_day: f64,
    /// Mean redeems per day.
    pub redeems_per_day: f64,
    /// Mean size of one mint or redeem, USD.
    pub mean_size_usd: f64,
}

impl Default for HolderConfig {
    fn default() -> Self {
        HolderConfig { mints_per_day: 2.0, redeems_per_day: 2.0, mean_size_usd: 20_000.0 }
    }
}

/// An exponential waiting time (seconds) at `rate_per_sec`; infinite at rate 0.
pub(crate) fn exp_sample(rng: &mut rand_chacha::ChaCha8Rng, rate_per_sec: f64) -> f64 {
    use rand::Rng;
    if rate_per_sec <= 0.0 {
        return f64::INFINITY;
    }
    -(1.0 - rng.random::<f64>()).ln() / rate_per_sec
}

/// Poisson holder arrivals for the perp-token drivers: the times of the next mint and redeem,
/// and exponential sizes in USD, from one seeded stream.
pub struct PoissonFlows {
    cfg: HolderConfig,
    rng: rand_chacha::ChaCha8Rng,
    next_mint: f64,
    next_redeem: f64,
}

impl PoissonFlows {
    /// Arrivals from `start` (unix seconds), seeded.
    pub fn new(cfg: &HolderConfig, start: u64, seed: u64) -> Self {
        use rand::SeedableRng;
        let mut f = PoissonFlows {
            cfg: *cfg,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x686f_6c64_6572),
            next_mint: start as f64,
            next_redeem: start as f64,
        };
        f.next_mint += f.gap(cfg.mints_per_day);
        f.next_redeem += f.gap(cfg.redeems_per_day);
        f
    }

    fn gap(&mut self, per_day: f64) -> f64 {
        exp_sample(&mut self.rng, per_day / 86_400.0)
    }

    fn size(&mut self) -> f64 {
        use rand::Rng;
        -(1.0 - self.rng.random::<f64>()).ln() * self.cfg.mean_size_usd
    }

    /// The next mint due by `now`, as a USD size (and schedules the one after), or `None`.
    pub fn next_mint(&mut self, now: u64) -> Option<f64> {
        (self.next_mint <= now as f64).then(|| {
            let usd = self.size();
            self.next_mint += self.gap(self.cfg.mints_per_day);
            usd
        })
    }

    /// The next redeem due by `now`, as a USD size (and schedules the one after), or `None`.
    pub fn next_redeem(&mut self, now: u64) -> Option<f64> {
        (self.next_redeem <= now as f64).then(|| {
            let usd = self.size();
            self.next_redeem += self.gap(self.cfg.redeems_per_day);
            usd
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_spikes_with_moves_and_is_capped() {
        let g = GasModel { base_gwei: 30.0, max_gwei: 2_000.0, stress_move: 0.01 };
        assert_eq!(g.gwei(0.0), 30.0);
        assert_eq!(g.gwei(0.01), 60.0);
        assert!(g.gwei(0.06) > 1_000.0, "crash hours reach the > 1000 gwei regime");
        assert_eq!(g.gwei(1.0), 2_000.0);
    }
}
