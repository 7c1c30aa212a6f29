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

/// Post `price` of each product's collateral, and 1 USD for its borrow asset.
fn post_all(shared: &Shared, submitter: &Submitter, price_of: &mut dyn FnMut(&str, f64) -> Option<f64>) {
    for p in shared.all_views() {
        let collateral = p.view.position.keys().find_map(|k| k.strip_prefix("collateral_").map(str::to_string));
        let borrow = p.view.position.keys().find_map(|k| k.strip_prefix("debt_").map(str::to_string));
        let (Some(c), Some(b)) = (collateral, borrow) else { continue };
        let last = p.view.prices.get(&c).and_then(|x| x.price.parse::<f64>().ok()).unwrap_or(0.0);
        let Some(next) = price_of(&p.view.id, last) else { continue };
        for (asset, price) in [(c, next), (b, 1.0)] {
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

/// Run a price source until `stop` is set. Returns an error only for a source that cannot
/// start (a CSV that does not load).
pub fn run(
    source: PriceSource,
    shared: Arc<Shared>,
    submitter: Submitter,
    stop: Arc<AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, String> {
    match source {
        PriceSource::Push => Ok(None),
        PriceSource::Csv { path, speed } => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("--prices csv:{path}: {e}"))?;
            let series = keel_sim::prices::csv::load_bars(&text, false)
                .map_err(|e| format!("--prices csv:{path}: line {}: {}", e.line, e.message))?;
            tracing::info!(
                bars = series.bars.len(),
                interval_s = series.interval,
                speed,
                "replaying prices from {path}"
            );
            let h = std::thread::spawn(move || {
                let bars = series.bars;
                for (i, bar) in bars.iter().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    post_all(&shared, &submitter, &mut |_, _| Some(bar.close));
                    if let Some(next) = bars.get(i + 1) {
                        let wait = (next.time - bar.time) as f64 / speed;
                        std::thread::sleep(Duration::from_secs_f64(wait.min(3600.0)));
                    }
                }
                tracing::info!("price replay finished; prices go stale after the oracle heartbeat");
            });
            Ok(Some(h))
        }
        PriceSource::Synthetic { seed, vol, speed } => {
            let h = std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let mut paths: HashMap<String, f64> = HashMap::new();
                let step = Duration::from_secs(1);
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
                    std::thread::sleep(step);
                }
            });
            Ok(Some(h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
