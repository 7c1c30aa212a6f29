//! The funding flags every perp run shares (`backtest`, `compare`, `sweep`): where the rest of
//! the market's funding comes from and the premium process's parameters.

use anyhow::{Result, anyhow, bail};
use keel_sim::funding::{FundingModel, FundingProcess};
use std::path::PathBuf;
use std::sync::Arc;

/// How the perp venues' funding is made.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FundingArgs {
    /// `process` (default): a seeded mean-reverting premium that other traders and arbitrageurs
    /// trade the venue toward; `off`: the vAMM pinned to the index and the skew arbitraged
    /// away (no premium funding); or a CSV of funding rates to replay (timestamp and
    /// funding_rate per day, or funding_rate_8h / funding_rate_1h), covering the prices.
    #[arg(long, value_name = "process|off|FILE.csv")]
    pub funding: Option<String>,
    /// Long-run funding rate longs pay: `11%/yr`, `0.03%/day` or a fraction per day
    /// [default: 0.03%/day, about 11%/yr].
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub funding_mean: Option<String>,
    /// Standard deviation of the premium around its mean, as a fraction (0.0005 = 0.05%).
    #[arg(long, value_name = "SD")]
    pub premium_sd: Option<f64>,
    /// Half-life of a premium shock (30m, 1h, 1d).
    #[arg(long, value_name = "DURATION")]
    pub premium_half_life: Option<String>,
    /// Perp v2: USD per minute arbitrage and other traders move the vAMM toward its target
    /// [default: 5000000].
    #[arg(long, value_name = "USD")]
    pub arb_capacity: Option<f64>,
    /// Synthetix: open interest (USD) the market brings against each 0.01%/day of funding
    /// [default: 5000000].
    #[arg(long, value_name = "USD")]
    pub oi_per_bp: Option<f64>,
}

/// A rate per day from `11%/yr`, `0.03%/day` or a bare fraction per day.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().to_ascii_lowercase().replace(' ', "");
    let (num, per_day) = if let Some(x) = t.strip_suffix("%/yr").or_else(|| t.strip_suffix("%/year")) {
        (x, 0.01 / 365.0)
    } else if let Some(x) = t.strip_suffix("%/day").or_else(|| t.strip_suffix("%/d")) {
        (x, 0.01)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 =
        num.parse().map_err(|_| format!("'{s}' is not a rate: write 11%/yr, 0.03%/day or 0.0003 (per day)"))?;
    let r = v * per_day;
    if !r.is_finite() {
        return Err(format!("'{s}' is not a finite rate"));
    }
    Ok(r)
}

impl FundingArgs {
    /// The flags given, as `(name without --, value)`, for a command line that repeats them.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = &self.funding {
            out.push(("funding", v.clone()));
        }
        if let Some(v) = &self.funding_mean {
            out.push(("funding-mean", v.clone()));
        }
        if let Some(v) = self.premium_sd {
            out.push(("premium-sd", v.to_string()));
        }
        if let Some(v) = &self.premium_half_life {
            out.push(("premium-half-life", v.clone()));
        }
        if let Some(v) = self.arb_capacity {
            out.push(("arb-capacity", v.to_string()));
        }
        if let Some(v) = self.oi_per_bp {
            out.push(("oi-per-bp", v.to_string()));
        }
        out
    }

    /// Whether any funding flag was given (they apply to perp products only).
    pub fn is_set(&self) -> bool {
        self.funding.is_some() || self.tuned()
    }

    /// Whether a premium-process flag was given.
    fn tuned(&self) -> bool {
        self.funding_mean.is_some()
            || self.premium_sd.is_some()
            || self.premium_half_life.is_some()
            || self.arb_capacity.is_some()
            || self.oi_per_bp.is_some()
    }

    /// The model: the scenario's regimes on the process unless a file or `off` is given;
    /// `costs_off` (`--costs none`) turns funding off. `window` is the prices' first and last
    /// time; a replayed file must cover it.
    pub fn model(&self, scenario: Option<&str>, costs_off: bool, window: (u64, u64)) -> Result<FundingModel> {
        let mut process = match FundingModel::for_scenario(scenario.unwrap_or("")) {
            FundingModel::Process(p) => p,
            _ => FundingProcess::default(),
        };
        if let Some(m) = &self.funding_mean {
            process.mean_rate = parse_rate(m).map_err(|e| anyhow!("--funding-mean: {e}"))?;
        }
        if let Some(sd) = self.premium_sd {
            process.premium_sd = sd;
        }
        if let Some(h) = &self.premium_half_life {
            process.half_life =
                keel_core::product::parse_duration(h).map_err(|e| anyhow!("--premium-half-life: {e}"))? as f64;
        }
        if let Some(c) = self.arb_capacity {
            process.capacity_usd = c * process.step as f64 / 60.0;
        }
        if let Some(c) = self.oi_per_bp {
            process.oi_per_bp_usd = c;
        }
        process.validate().map_err(|e| anyhow!("{e}"))?;
        let tuned = self.tuned();
        let model = match self.funding.as_deref() {
            None | Some("process") => FundingModel::Process(process),
            Some("off") => {
                if tuned {
                    bail!("--funding off: the premium flags (--funding-mean, --premium-sd, ...) need the process");
                }
                FundingModel::Off
            }
            Some(path) => {
                let path = PathBuf::from(path);
                let series = keel_sim::prices::load_funding_file(&path, Some(window.0), Some(window.1 + 1))
                    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
                series.check_covers(window.0, window.1).map_err(|e| anyhow!("{}: {e}", path.display()))?;
                if self.funding_mean.is_some() || self.premium_sd.is_some() || self.premium_half_life.is_some() {
                    bail!(
                        "--funding {}: a replayed file sets the rate; drop --funding-mean, --premium-sd and --premium-half-life",
                        path.display()
                    );
                }
                FundingModel::Replay { series: Arc::new(series), crowd: process }
            }
        };
        if costs_off {
            if self.funding.is_some() && model.is_on() {
                bail!("--costs none turns funding off; drop --funding");
            }
            return Ok(FundingModel::Off);
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rates() {
        for (case, text, want) in [
            ("per year", "11%/yr", 0.11 / 365.0),
            ("per day", "0.03%/day", 0.0003),
            ("bare fraction", "0.0003", 0.0003),
            ("negative", "-50%/yr", -0.5 / 365.0),
        ] {
            let got = parse_rate(text).unwrap();
            assert!((got - want).abs() < 1e-15, "case {case}: {got}");
        }
        assert!(parse_rate("lots").unwrap_err().contains("not a rate"));
    }

    #[test]
    fn table_models() {
        let on = FundingArgs::default();
        assert!(matches!(on.model(None, false, (0, 1)).unwrap(), FundingModel::Process(_)));
        assert_eq!(on.model(None, true, (0, 1)).unwrap(), FundingModel::Off, "--costs none");
        let off = FundingArgs { funding: Some("off".into()), ..FundingArgs::default() };
        assert_eq!(off.model(None, false, (0, 1)).unwrap(), FundingModel::Off);
        let bad = FundingArgs { premium_half_life: Some("0s".into()), ..FundingArgs::default() };
        assert!(bad.model(None, false, (0, 1)).unwrap_err().to_string().contains("half_life"));
        let crowded = on.model(Some("crowded-long"), false, (0, 1)).unwrap();
        let FundingModel::Process(p) = crowded else { panic!() };
        assert_eq!(p.regimes.len(), 1);
        let missing = FundingArgs { funding: Some("/nonexistent/f.csv".into()), ..FundingArgs::default() };
        assert!(missing.model(None, false, (0, 1)).unwrap_err().to_string().contains("cannot read"));
    }
}
