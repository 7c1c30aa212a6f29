//! What the rest of a perp market does to funding: the "crowd" of other traders and
//! arbitrageurs around the token's position ([`FundingModel`]).
//!
//! The crowd wants a funding rate: the **process** is a seeded Ornstein–Uhlenbeck premium `π`
//! around a mean (`rate = mean + π`, the mean optionally changed by regimes), or a **replayed**
//! history of rates. Every `step` seconds (and before each of the token's trades or a holder's
//! flow) the crowd acts on the venue, and the venue's own rule turns that into funding:
//!
//! - **Perp v2**: arbitrage and other traders move the vAMM toward `index · (1 + rate)` with at
//!   most `capacity_usd` of trading per step (so the token's own trades move the premium until
//!   arbitrage closes it); funding accrues as Curie computes it from the market and index TWAPs
//!   (its daily rate is the premium), capped at the venue's maximum.
//! - **Synthetix**: the other traders' open interest is `oi_per_bp_usd / price` per 0.01% a
//!   day that the venue's funding rate lies below the crowd's rate (they come in against a rate
//!   above it); the token's position adds to the skew, and the venue's velocity rule moves the
//!   rate by the skew. The rate settles where the crowd's open interest balances the token's:
//!   `rate + token size / response`.
//!
//! [`FundingModel::Off`] is the market before funding was modelled: the vAMM pinned to the
//! index, the skew traded to zero after each fill, no funding.

use crate::prices::FundingSeries;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::sync::Arc;

/// Days in a year, for quoting daily rates per year.
const YEAR_DAYS: f64 = 365.0;

/// How funding is made.
#[derive(Debug, Clone, PartialEq)]
pub enum FundingModel {
    /// No other traders: the vAMM pinned to the index, the skew arbitraged to zero; funding 0.
    Off,
    /// A seeded mean-reverting premium.
    Process(FundingProcess),
    /// A history of rates (`--funding FILE.csv`); the crowd's depth and pace from the process.
    Replay {
        /// The rates.
        series: Arc<FundingSeries>,
        /// Step, capacity and open-interest response (its mean and premium are unused).
        crowd: FundingProcess,
    },
}

impl Default for FundingModel {
    fn default() -> Self {
        FundingModel::Process(FundingProcess::default())
    }
}

impl FundingModel {
    /// The model a named scenario comes with: its funding regimes on the default process.
    pub fn for_scenario(name: &str) -> FundingModel {
        FundingModel::Process(FundingProcess { regimes: regimes_of(name), ..FundingProcess::default() })
    }

    /// Whether funding is modelled at all.
    pub fn is_on(&self) -> bool {
        !matches!(self, FundingModel::Off)
    }

    /// One line for summaries and reports.
    pub fn describe(&self) -> String {
        match self {
            FundingModel::Off => "off".into(),
            FundingModel::Process(p) => format!(
                "premium process: mean {:.4}%/day ({:.1}%/yr){}, sd {:.3}%, half-life {:.0} min, vAMM arbitrage ${:.1}M per {} s, Synthetix open interest ${:.1}M per 0.01%/day",
                p.mean_rate * 100.0,
                p.mean_rate * YEAR_DAYS * 100.0,
                if p.regimes.is_empty() { String::new() } else { format!(", {} regime(s)", p.regimes.len()) },
                p.premium_sd * 100.0,
                p.half_life / 60.0,
                p.capacity_usd / 1e6,
                p.step,
                p.oi_per_bp_usd / 1e6
            ),
            FundingModel::Replay { series, .. } => {
                format!("replayed: {} rates, {} s apart", series.rows.len(), series.interval)
            }
        }
    }
}

/// A period with another mean rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regime {
    /// Seconds from the start of the run.
    pub from: u64,
    /// Seconds from the start of the run, exclusive.
    pub to: u64,
    /// The mean rate per day inside it.
    pub mean_rate: f64,
}

/// The crowd's premium process and depth.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingProcess {
    /// Long-run funding rate per day the crowd pays to be long (0.0003: 0.03% a day, about 11%
    /// a year — the common 0.01%-per-8-hours baseline).
    pub mean_rate: f64,
    /// Stationary standard deviation of the premium around the mean (0.0005: 0.05%).
    pub premium_sd: f64,
    /// Half-life of a premium shock, seconds (1 hour).
    pub half_life: f64,
    /// Perp v2: USD the arbitrageurs and other traders trade the vAMM toward its target per step
    /// ($5M): a larger move of the token's stays as premium until it is closed.
    pub capacity_usd: f64,
    /// Synthetix: open interest (USD) the rest of the market brings against each 0.01% a day of
    /// funding ($5M): the token's own position raises the rate by its size over this.
    pub oi_per_bp_usd: f64,
    /// Seconds between the crowd's actions (60).
    pub step: u64,
    /// Periods with another mean rate.
    pub regimes: Vec<Regime>,
}

impl Default for FundingProcess {
    fn default() -> Self {
        FundingProcess {
            mean_rate: 0.0003,
            premium_sd: 0.0005,
            half_life: 3_600.0,
            capacity_usd: 5_000_000.0,
            oi_per_bp_usd: 5_000_000.0,
            step: 60,
            regimes: Vec::new(),
        }
    }
}

impl FundingProcess {
    /// Check the parameters: every field's rule, by name.
    pub fn validate(&self) -> Result<(), String> {
        let rule = |ok: bool, field: &str, value: f64, rule: &str| {
            if ok { Ok(()) } else { Err(format!("funding.{field} = {value}: {rule}")) }
        };
        rule(
            self.mean_rate.is_finite() && self.mean_rate.abs() <= 0.1,
            "mean_rate",
            self.mean_rate,
            "a rate per day within ±0.1 (10% a day, the venues' cap)",
        )?;
        rule(
            self.premium_sd.is_finite() && (0.0..=0.1).contains(&self.premium_sd),
            "premium_sd",
            self.premium_sd,
            "0 to 0.1",
        )?;
        rule(self.half_life.is_finite() && self.half_life > 0.0, "half_life", self.half_life, "seconds, above 0")?;
        rule(
            self.capacity_usd.is_finite() && self.capacity_usd > 0.0 && self.capacity_usd <= 1e12,
            "capacity_usd",
            self.capacity_usd,
            "above 0 and at most 1e12 USD",
        )?;
        rule(
            self.oi_per_bp_usd.is_finite() && self.oi_per_bp_usd > 0.0 && self.oi_per_bp_usd <= 1e12,
            "oi_per_bp_usd",
            self.oi_per_bp_usd,
            "above 0 and at most 1e12 USD",
        )?;
        rule(self.step > 0, "step", self.step as f64, "seconds, at least 1")?;
        for r in &self.regimes {
            rule(r.from < r.to, "regimes.from", r.from as f64, "before its `to`")?;
            rule(r.mean_rate.is_finite() && r.mean_rate.abs() <= 0.1, "regimes.mean_rate", r.mean_rate, "within ±0.1")?;
        }
        Ok(())
    }

    fn mean_at(&self, since_start: u64) -> f64 {
        self.regimes.iter().find(|r| (r.from..r.to).contains(&since_start)).map_or(self.mean_rate, |r| r.mean_rate)
    }
}

/// The funding regimes of a named scenario (none for most).
fn regimes_of(name: &str) -> Vec<Regime> {
    match name {
        // a month of +50% a year, paid by longs, from day 15 of the bull run
        "crowded-long" => vec![Regime { from: 15 * 86_400, to: 45 * 86_400, mean_rate: 0.5 / YEAR_DAYS }],
        _ => Vec::new(),
    }
}

/// The crowd's state over a run: the premium, the next action's time, the replay's cursor.
#[derive(Debug, Clone)]
pub struct Crowd {
    process: FundingProcess,
    series: Option<Arc<FundingSeries>>,
    rng: ChaCha8Rng,
    start: u64,
    last: u64,
    next: u64,
    premium: f64,
    cursor: usize,
}

impl Crowd {
    /// The crowd of `model` (none when it is off) from `start`, its stream seeded by `seed`.
    pub fn new(model: &FundingModel, seed: u64, start: u64) -> Option<Crowd> {
        let (process, series) = match model {
            FundingModel::Off => return None,
            FundingModel::Process(p) => (p.clone(), None),
            FundingModel::Replay { series, crowd } => (crowd.clone(), Some(series.clone())),
        };
        let step = process.step.max(1);
        Some(Crowd {
            process,
            series,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6675_6e64),
            start,
            last: start,
            next: start + step,
            premium: 0.0,
            cursor: 0,
        })
    }

    /// The process's settings (the replay's crowd).
    pub fn process(&self) -> &FundingProcess {
        &self.process
    }

    /// Whether the crowd's next step is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next
    }

    /// Advance to `now` (a step, or an extra action before the token trades): returns the rate
    /// per day the crowd wants now.
    pub fn advance(&mut self, now: u64) -> f64 {
        let step = self.process().step.max(1);
        if now >= self.next {
            self.next = now - (now - self.start) % step + step;
        }
        let dt = now.saturating_sub(self.last) as f64;
        self.last = self.last.max(now);
        if let Some(series) = &self.series {
            return series.rate_at(now, &mut self.cursor);
        }
        let p = &self.process;
        if dt > 0.0 && p.premium_sd > 0.0 {
            let a = (-std::f64::consts::LN_2 * dt / p.half_life).exp();
            let z: f64 = self.rng.sample(StandardNormal);
            self.premium = a * self.premium + p.premium_sd * (1.0 - a * a).sqrt() * z;
        }
        p.mean_at(now.saturating_sub(self.start)) + self.premium
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_premium_reverts_to_its_mean_with_its_spread() {
        let p = FundingProcess::default();
        let mut c = Crowd::new(&FundingModel::Process(p.clone()), 7, 0).unwrap();
        let n = 200_000u64;
        let (mut sum, mut sq) = (0.0, 0.0);
        for k in 1..=n {
            let r = c.advance(k * 60);
            sum += r;
            sq += (r - p.mean_rate) * (r - p.mean_rate);
        }
        let (mean, sd) = (sum / n as f64, (sq / n as f64).sqrt());
        assert!((mean - p.mean_rate).abs() < 0.0001, "mean {mean}");
        assert!((sd / p.premium_sd - 1.0).abs() < 0.1, "sd {sd}");
    }

    #[test]
    fn regimes_change_the_mean_and_off_has_no_crowd() {
        let m = FundingModel::for_scenario("crowded-long");
        let FundingModel::Process(p) = &m else { panic!() };
        assert_eq!(p.mean_at(20 * 86_400), 0.5 / 365.0);
        assert_eq!(p.mean_at(50 * 86_400), p.mean_rate);
        assert!(Crowd::new(&FundingModel::Off, 1, 0).is_none());
        let bad = FundingProcess { half_life: 0.0, ..FundingProcess::default() };
        assert!(bad.validate().unwrap_err().contains("funding.half_life = 0"));
    }

    #[test]
    fn steps_fall_on_the_grid_whatever_the_extra_actions() {
        let mut c = Crowd::new(&FundingModel::default(), 1, 1_000).unwrap();
        assert!(!c.due(1_059) && c.due(1_060));
        c.advance(1_030); // an extra action between steps
        assert!(c.due(1_060));
        c.advance(1_075);
        assert!(!c.due(1_119) && c.due(1_120));
    }
}
