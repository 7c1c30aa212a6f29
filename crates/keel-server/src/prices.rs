//! Price sources run by the service: a CSV replay at a chosen speed, or a seeded synthetic
//! generator (geometric Brownian motion). Each posts through the writer like any other
//! request, as the `system` role; the oracle role can push prices over the API as well.

use crate::model::{Actor, Command, Request};
use crate::writer::{Shared, Submitter};
use keel_core::math::parse_units;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where prices come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceSource {
    /// Only prices pushed by oracle keys.
    Push,
    /// Replay a CSV of bars (close prices), `speed` seconds of data per second.
    Csv {
        /// The file.
        path: String,
        /// Seconds of data per wall second.
        speed: f64,
    },
    /// Geometric Brownian motion from each product's last price.
    Synthetic {
        /// Seed.
        seed: u64,
        /// Annual volatility.
        vol: f64,
        /// Seconds of simulated time per wall second.
        speed: f64,
    },
}

impl PriceSource {
    /// Parse `push`, `csv:PATH[@SPEED]` or `synthetic[:SEED][@SPEED]`.
    pub fn parse(s: &str) -> Result<PriceSource, String> {
        let (body, speed) = match s.rsplit_once('@') {
            Some((b, sp)) => {
                let v: f64 = sp.parse().map_err(|_| format!("--prices {s}: speed '{sp}' is not a number"))?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("--prices {s}: speed must be positive"));
                }
                (b, Some(v))
            }
            None => (s, None),
        };
        if body == "push" {
            return Ok(PriceSource::Push);
        }
        if let Some(path) = body.strip_prefix("csv:") {
            if path.is_empty() {
                return Err("--prices csv: needs a file, e.g. csv:../shared/data/eth_usd_1h.csv@3600".into());
            }
            return Ok(PriceSource::Csv { path: path.to_string(), speed: speed.unwrap_or(60.0) });
        }
        if body == "synthetic" || body.starts_with("synthetic:") {
            let seed = match body.strip_prefix("synthetic:") {
                Some(x) => x.parse().map_err(|_| format!("--prices {s}: seed '{x}' is not a whole number"))?,
                None => 1,
            };
            return Ok(PriceSource::Synthetic { seed, vol: 0.8, speed: speed.unwrap_or(60.0) });
        }
        Err(format!("--prices {s}: use push, csv:PATH[@SPEED] or synthetic[:SEED][@SPEED]"))
    }
}

fn wad_of(p: f64) -> Option<keel_core::U256> {
    if !(p.is_finite() && p > 0.0) {
        return None;
    }
    parse_units(&format!("{p:.8}"), 18).ok()
}

/// Whether a feed would post `next` now, as a Chainlink transmitter does: the move since the
/// last answer reaches the feed's deviation threshold, or half its heartbeat has passed.
pub fn should_post(last: Option<&crate::view::PriceView>, next: f64, now: u64) -> bool {
    let Some(l) = last else { return true };
    let (Ok(p), Ok(dev)) = (l.price.parse::<f64>(), l.deviation.parse::<f64>()) else { return true };
    p <= 0.0 || (next / p - 1.0).abs() >= dev * (1.0 - 1e-9) || now.saturating_sub(l.observed_at) >= l.heartbeat_s / 2
}

/// Post the price of each product's collateral (and 1 USD for its borrow asset) when its feed
/// would: on a deviation or before the heartbeat runs out.
fn post_all(shared: &Shared, submitter: &Submitter, price_of: &mut dyn FnMut(&str, f64) -> Option<f64>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for p in shared.all_views() {
        let collateral = p.view.position.keys().find_map(|k| k.strip_prefix("collateral_").map(str::to_string));
        let borrow = p.view.position.keys().find_map(|k| k.strip_prefix("debt_").map(str::to_string));
        let (Some(c), Some(b)) = (collateral, borrow) else { continue };
        let last = p.view.prices.get(&c).and_then(|x| x.price.parse::<f64>().ok()).unwrap_or(0.0);
        let Some(next) = price_of(&p.view.id, last) else { continue };
        for (asset, price) in [(c, next), (b, 1.0)] {
            if !should_post(p.view.prices.get(&asset), price, now) {
                continue;
            }
            let Some(w) = wad_of(price) else { continue };
            let req = Request {
                actor: Actor::system("price-feed"),
                idempotency: None,
                command: Command::ObservePrice { product: p.view.id.clone(), asset, price: w },
            };
            if let Err(e) = submitter.submit_blocking(req) {
                tracing::warn!(product = %p.view.id, error = %e, "price not posted");
            }
        }
    }
}

/// A price source ready to run: a CSV is read and checked before the server starts, so a bad
/// file stops `keel serve` before it listens.
pub enum Feed {
    /// Nothing to run.
    Push,
    /// Bars to replay.
    Csv {
        /// The bars.
        bars: Vec<keel_prices::csv::Bar>,
        /// Seconds of data per wall second.
        speed: f64,
    },
    /// GBM.
    Synthetic {
        /// Seed.
        seed: u64,
        /// Annual volatility.
        vol: f64,
        /// Seconds of simulated time per wall second.
        speed: f64,
    },
}

impl Feed {
    /// Load what the source needs. Gaps in a CSV are fine for a replay (it waits across them);
    /// anything else wrong with the file is an error naming its line.
    pub fn open(source: &PriceSource) -> Result<Feed, String> {
        Ok(match source {
            PriceSource::Push => Feed::Push,
            PriceSource::Csv { path, speed } => {
                let series = keel_prices::csv::load_bars_file(std::path::Path::new(path), true, None, None)
                    .map_err(|e| format!("--prices csv:{path}: {e}"))?;
                if series.bars.is_empty() {
                    return Err(format!("--prices csv:{path}: no bars"));
                }
                tracing::info!(
                    bars = series.bars.len(),
                    interval_s = series.interval,
                    gaps = series.warnings.len(),
                    speed,
                    "replaying prices from {path}"
                );
                Feed::Csv { bars: series.bars, speed: *speed }
            }
            PriceSource::Synthetic { seed, vol, speed } => Feed::Synthetic { seed: *seed, vol: *vol, speed: *speed },
        })
    }

    /// Run until `stop` is set.
    pub fn spawn(
        self,
        shared: Arc<Shared>,
        submitter: Submitter,
        stop: Arc<AtomicBool>,
    ) -> Option<std::thread::JoinHandle<()>> {
        match self {
            Feed::Push => None,
            Feed::Csv { bars, speed } => Some(std::thread::spawn(move || {
                for (i, bar) in bars.iter().enumerate() {
                    post_all(&shared, &submitter, &mut |_, _| Some(bar.close));
                    if let Some(next) = bars.get(i + 1) {
                        let mut wait = ((next.time - bar.time) as f64 / speed).min(3600.0);
                        while wait > 0.0 {
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                            std::thread::sleep(Duration::from_secs_f64(wait.min(0.2)));
                            wait -= 0.2;
                        }
                    }
                }
                tracing::info!("price replay finished; prices go stale after the oracle heartbeat");
            })),
            Feed::Synthetic { seed, vol, speed } => Some(std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let mut paths: HashMap<String, f64> = HashMap::new();
                let dt = speed / 31_557_600.0;
                while !stop.load(Ordering::SeqCst) {
                    post_all(&shared, &submitter, &mut |id, last| {
                        let p = paths.entry(id.to_string()).or_insert(last);
                        if *p <= 0.0 {
                            return None;
                        }
                        let z: f64 = StandardNormal.sample(&mut rng);
                        *p *= (-0.5 * vol * vol * dt + vol * dt.sqrt() * z).exp();
                        Some(*p)
                    });
                    std::thread::sleep(Duration::from_secs(1));
                }
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_post_on_deviation_or_heartbeat() {
        let last = crate::view::PriceView {
            price: "2000".into(),
            observed_at: 1_000,
            age_s: 0,
            heartbeat_s: 3_600,
            max_age_s: 3_960,
            deviation: "0.005".into(),
            stale: false,
        };
        let cases = [
            ("first answer", None, 2000.0, 1_000, true),
            ("small move", Some(&last), 2009.0, 1_010, false),
            ("deviation", Some(&last), 2010.0, 1_010, true),
            ("down move", Some(&last), 1989.0, 1_010, true),
            ("half a heartbeat", Some(&last), 2000.0, 2_800, true),
        ];
        for (name, l, p, now, want) in cases {
            assert_eq!(should_post(l, p, now), want, "{name}");
        }
    }

    #[test]
    fn sources_table() {
        let cases: &[(&str, Result<PriceSource, &str>)] = &[
            ("push", Ok(PriceSource::Push)),
            ("csv:a.csv", Ok(PriceSource::Csv { path: "a.csv".into(), speed: 60.0 })),
            ("csv:a.csv@3600", Ok(PriceSource::Csv { path: "a.csv".into(), speed: 3600.0 })),
            ("synthetic", Ok(PriceSource::Synthetic { seed: 1, vol: 0.8, speed: 60.0 })),
            ("synthetic:7@10", Ok(PriceSource::Synthetic { seed: 7, vol: 0.8, speed: 10.0 })),
            ("csv:", Err("needs a file")),
            ("csv:a.csv@-1", Err("speed must be positive")),
            ("synthetic:x", Err("is not a whole number")),
            ("kafka", Err("use push, csv:PATH")),
        ];
        for (s, want) in cases {
            match (PriceSource::parse(s), want) {
                (Ok(a), Ok(b)) => assert_eq!(&a, b, "{s}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{s}: {e}"),
                (g, w) => panic!("{s}: got {g:?}, want {w:?}"),
            }
        }
    }
}
