//! Named scenarios: `default`, `calm`, `bull`, `bear`, `zigzag`, `crash`, `crowded-long`. The
//! prices only: a scenario's funding regime (`crowded-long`'s month of +50%/yr funding) is the
//! simulator's (`keel_sim::funding::FundingModel::for_scenario`).

use crate::models::{GeneratedPath, Model, Shock};

/// The built-in scenario names with a one-line description each.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "default",
        "one year of ETH-like volatility (regime switching 55%/110%) with a crash at day 200: −28% in 40 minutes, −45% by the day's low, a partial rebound",
    ),
    ("calm", "one year, 35% volatility, no drift"),
    ("bull", "one year, 70% volatility, +80% drift"),
    ("bear", "one year, 80% volatility, −70% drift"),
    ("zigzag", "90 days alternating ±6% days around a flat trend: volatility decay made visible"),
    (
        "crash",
        "60 days: 60% volatility, then a −40% day shaped like 12 March 2020 (−30% within an hour), a partial rebound",
    ),
    (
        "crowded-long",
        "60 days of a bull market (60% volatility, +100% drift) whose perp longs are crowded: from day 15 to day 45 funding averages +50% a year, paid by longs",
    ),
];

const DAY: u64 = 86_400;

/// Build a named scenario at `block_time` from price `p0` at `start`, seeded by `seed`.
pub fn scenario(name: &str, p0: f64, start: u64, block_time: u64, seed: u64) -> Option<GeneratedPath> {
    let steps = |days: u64| days * DAY / block_time;
    let path = match name {
        "default" => GeneratedPath::new(
            Model::Regime { calm_vol: 0.55, stress_vol: 1.10, to_stress: 3.0, to_calm: 12.0, drift: 0.0 },
            vec![
                Shock { start: 200 * DAY + 8 * 3600, duration: 2_400, log_move: (0.72f64).ln() },
                Shock { start: 200 * DAY + 10 * 3600, duration: 6 * 3600, log_move: (0.76f64).ln() },
                Shock { start: 201 * DAY, duration: 2 * DAY, log_move: (1.25f64).ln() },
            ],
            p0,
            start,
            block_time,
            steps(365),
            seed,
        ),
        "calm" => {
            GeneratedPath::new(Model::Gbm { drift: 0.0, vol: 0.35 }, vec![], p0, start, block_time, steps(365), seed)
        }
        "bull" => {
            GeneratedPath::new(Model::Gbm { drift: 0.8, vol: 0.7 }, vec![], p0, start, block_time, steps(365), seed)
        }
        "bear" => {
            GeneratedPath::new(Model::Gbm { drift: -0.7, vol: 0.8 }, vec![], p0, start, block_time, steps(365), seed)
        }
        "zigzag" => {
            let shocks = (0..90u64)
                .map(|d| Shock {
                    start: d * DAY,
                    duration: DAY,
                    log_move: if d % 2 == 0 { (1.06f64).ln() } else { (1.0 / 1.06f64).ln() },
                })
                .collect();
            GeneratedPath::new(Model::Gbm { drift: 0.0, vol: 0.15 }, shocks, p0, start, block_time, steps(90), seed)
        }
        "crash" => GeneratedPath::new(
            Model::Regime { calm_vol: 0.6, stress_vol: 1.4, to_stress: 0.0, to_calm: 0.0, drift: 0.0 },
            vec![
                // 12 March 2020: −40% on the day, most of it within an hour.
                Shock { start: 30 * DAY + 2 * 3600, duration: 3600, log_move: (0.70f64).ln() },
                Shock { start: 30 * DAY + 4 * 3600, duration: 6 * 3600, log_move: (0.85f64).ln() },
                // Partial rebound over the next two days.
                Shock { start: 31 * DAY, duration: 2 * DAY, log_move: (1.2f64).ln() },
            ],
            p0,
            start,
            block_time,
            steps(60),
            seed,
        ),
        "crowded-long" => {
            GeneratedPath::new(Model::Gbm { drift: 1.0, vol: 0.6 }, vec![], p0, start, block_time, steps(60), seed)
        }
        _ => return None,
    };
    Some(path)
}
