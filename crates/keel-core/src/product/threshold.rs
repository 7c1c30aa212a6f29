//! Product files for tokens on a Synthetix-Perps-V2-style market: `[perp] venue =
//! "synthetix-perps-v2"` with the market's parameters (defaults: sETHPERP on Optimism,
//! `perp.md` C7) and `[methodology] kind = "threshold"` (`methodologies.md` §2.2, §2.9) or
//! `kind = "daily"` (§4: a scheduled daily rebalance plus intraday triggers, with the same
//! mint/redeem mechanics and fee keys as the threshold token).

use super::{Section, parse_duration, parse_fraction, ratio, units};
use crate::error::{ProductError, RuleViolation};
use crate::math::{U256, Wad};
use crate::strategy::daily::DailySettings;
use crate::strategy::threshold::token::{Policy, ThresholdToken};
use crate::strategy::threshold::{Side, ThresholdSettings};
use crate::venue::synthetix::{PerpsMarket, PerpsParams};
use toml::Table;

/// A validated threshold product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdProduct {
    /// Display name.
    pub name: String,
    /// Ticker.
    pub symbol: String,
    /// The underlying's symbol (e.g. `ETH`).
    pub underlying: String,
    /// Starting price for simulations (USD wad).
    pub price: Wad,
    /// The venue's parameters.
    pub venue: PerpsParams,
    /// The token's settings.
    pub settings: ThresholdSettings,
    /// `threshold` or `daily`.
    pub policy: Policy,
}

fn wad25() -> U256 {
    U256::from(250_000_000_000_000_000u64)
}

fn side(s: &str) -> Result<Side, String> {
    match s {
        "long" => Ok(Side::Long),
        "short" => Ok(Side::Short),
        _ => Err(format!("'{s}' is not long or short")),
    }
}

impl ThresholdProduct {
    /// Parse and validate; every violated rule is reported at once.
    pub fn from_toml(text: &str) -> Result<Self, ProductError> {
        let root: Table = text.parse::<Table>().map_err(|e| ProductError::Syntax(e.to_string()))?;
        for k in root.keys() {
            if !["token", "perp", "methodology"].contains(&k.as_str()) {
                return Err(ProductError::Unknown(k.clone()));
            }
        }
        let mut t = Section::new(&root, "token");
        let mut p = Section::new(&root, "perp");
        let mut m = Section::new(&root, "methodology");
        let name = t.conv("name", None, super::bounds::text)?;
        let symbol = t.conv("symbol", None, super::bounds::text)?;
        let underlying = t.raw("underlying")?.unwrap_or_else(|| "ETH".into());
        let venue_name = p.req("venue")?;
        if venue_name != "synthetix-perps-v2" {
            return Err(ProductError::Field {
                field: "perp.venue".into(),
                reason: format!("'{venue_name}' is not supported for threshold (supported: synthetix-perps-v2)"),
            });
        }
        let d = PerpsParams::eth_optimism();
        let s = |x: U256| crate::math::format_units(x, 18);
        let price = Wad(p.conv("price", Some("2000"), super::bounds::usd_price)?);
        let venue = PerpsParams {
            max_leverage: p.conv("max_leverage", Some(&s(d.max_leverage)), ratio)?,
            max_market_value: p.conv("max_market_value", Some(&s(d.max_market_value)), units(18))?,
            skew_scale: p.conv("skew_scale", Some(&s(d.skew_scale)), units(18))?,
            taker_fee: p.conv("taker_fee", Some(&s(d.taker_fee)), parse_fraction)?,
            maker_fee: p.conv("maker_fee", Some(&s(d.maker_fee)), parse_fraction)?,
            max_funding_velocity: p.conv("max_funding_velocity", Some(&s(d.max_funding_velocity)), ratio)?,
            min_keeper_fee: p.conv("min_keeper_fee", Some(&s(d.min_keeper_fee)), units(18))?,
            max_keeper_fee: p.conv("max_keeper_fee", Some(&s(d.max_keeper_fee)), units(18))?,
            liquidation_fee_ratio: p.conv(
                "liquidation_fee_ratio",
                Some(&s(d.liquidation_fee_ratio)),
                parse_fraction,
            )?,
            liquidation_buffer_ratio: p.conv(
                "liquidation_buffer_ratio",
                Some(&s(d.liquidation_buffer_ratio)),
                parse_fraction,
            )?,
            min_initial_margin: p.conv("min_initial_margin", Some(&s(d.min_initial_margin)), units(18))?,
            keeper_liquidation_fee: p.conv("keeper_liquidation_fee", Some(&s(d.keeper_liquidation_fee)), units(18))?,
            liquidation_premium_multiplier: p.conv(
                "liquidation_premium_multiplier",
                Some(&s(d.liquidation_premium_multiplier)),
                ratio,
            )?,
            delayed_order_min_age: p.conv("delayed_order_min_age", Some("1s"), parse_duration)?,
            delayed_order_max_age: p.conv("delayed_order_max_age", Some("30s"), parse_duration)?,
        };
        let kind = m.req("kind")?;
        if !["threshold", "daily", "continuous"].contains(&kind.as_str()) {
            return Err(ProductError::Field {
                field: "methodology.kind".into(),
                reason: format!(
                    "'{kind}' on a synthetix-perps-v2 product is not supported (supported: threshold, daily, continuous)"
                ),
            });
        }
        let token_side = m.conv("side", Some("long"), side)?;
        let target_leverage = m.conv("target_leverage", None, ratio)?;
        let rebalance_threshold = if kind == "threshold" {
            m.conv("rebalance_threshold", Some("25%"), parse_fraction)?
        } else {
            wad25() // unused by the daily and continuous policies
        };
        let settings = ThresholdSettings {
            side: token_side,
            target_leverage,
            rebalance_threshold,
            slippage_tolerance: m.conv("slippage_tolerance", Some("2%"), parse_fraction)?,
            redemption_fee: m.conv("redemption_fee", Some("0.3%"), parse_fraction)?,
            streaming_fee: m.conv("streaming_fee", Some("2%"), parse_fraction)?,
            rebalance_fee: m.conv("rebalance_fee", Some("5"), units(18))?,
            exit_load: m.conv("exit_load", Some("1%"), parse_fraction)?,
            exit_load_window: m.conv("exit_load_window", Some("5m"), parse_duration)?,
            min_margin: m.conv("min_margin", Some("100"), units(18))?,
            max_base_asset_amount_buffer: m.conv("max_base_asset_amount_buffer", Some("20%"), parse_fraction)?,
        };
        let mut rules: Vec<RuleViolation> = Vec::new();
        let policy = if kind == "daily" {
            let d = DailySettings {
                side: token_side,
                target_leverage,
                rebalance_time: m.conv("rebalance_time", Some("2m"), parse_duration)?,
                upper_trigger: m.conv("upper_trigger", None, ratio)?,
                lower_trigger: m
                    .raw("lower_trigger")?
                    .map(|v| ratio(&v))
                    .transpose()
                    .map_err(|reason| ProductError::Field { field: "methodology.lower_trigger".into(), reason })?,
                adverse_only: m.conv("adverse_only", Some("false"), super::boolean)?,
            };
            if d.upper_trigger <= target_leverage {
                rules.push(RuleViolation {
                    message: "Upper trigger must be above the target leverage",
                    detail: format!(
                        "methodology.upper_trigger {} ≤ target {}",
                        Wad(d.upper_trigger),
                        Wad(target_leverage)
                    ),
                });
            }
            if let Some(lo) = d.lower_trigger
                && lo >= target_leverage
            {
                rules.push(RuleViolation {
                    message: "Lower trigger must be below the target leverage",
                    detail: format!("methodology.lower_trigger {} ≥ target {}", Wad(lo), Wad(target_leverage)),
                });
            }
            if d.rebalance_time >= 86_400 {
                rules.push(RuleViolation {
                    message: "Rebalance time must be within the day",
                    detail: format!("methodology.rebalance_time is {} s after 00:00 UTC", d.rebalance_time),
                });
            }
            Policy::Daily(d)
        } else if kind == "continuous" {
            let c = crate::strategy::continuous::ContinuousSettings {
                maintenance: m.conv("maintenance_margin", Some("6.25%"), parse_fraction)?,
                initial: m.conv("initial_margin", Some("10%"), parse_fraction)?,
                lsm_min: m.conv("lsm_min", Some("30%"), parse_fraction)?,
                mcsm_min: m.conv("mcsm_min", Some("15%"), parse_fraction)?,
                tolerance: m.conv("tolerance", Some("0.5%"), parse_fraction)?,
                partial_relever: m.conv("partial_relever", Some("false"), super::boolean)?,
                // The seed's $10 floor is for tokens issued at $100; keel's start at 1.0.
                reverse_split_threshold: m.conv("reverse_split_threshold", Some("0.1"), units(18))?,
                reverse_split_ratio: m.conv("reverse_split_ratio", Some("2"), |v| {
                    v.parse::<u64>().map_err(|_| format!("'{v}' is not a whole number"))
                })?,
                entry_basis: m.conv("leverage_basis", Some("entry"), |v| match v {
                    "entry" => Ok(true),
                    "mark" => Ok(false),
                    _ => Err(format!("'{v}' is not entry or mark")),
                })?,
                seed_model: m.conv("price_level_model", Some("venue"), |v| match v {
                    "venue" => Ok(false),
                    "seed" => Ok(true),
                    _ => Err(format!("'{v}' is not venue or seed")),
                })?,
            };
            if c.seed_model && (token_side == crate::strategy::threshold::Side::Long || !c.entry_basis) {
                rules.push(RuleViolation {
                    message: "The seed price-level model is defined for short tokens on the entry basis",
                    detail: "methodology.price_level_model = \"seed\" needs a negative target and leverage_basis = \"entry\"".into(),
                });
            }
            if c.maintenance >= c.initial || c.initial > crate::math::WAD {
                rules.push(RuleViolation {
                    message: "Margin ratios must satisfy maintenance < initial ≤ 100%",
                    detail: format!(
                        "methodology.maintenance_margin {} and methodology.initial_margin {}",
                        Wad(c.maintenance),
                        Wad(c.initial)
                    ),
                });
            }
            if c.reverse_split_ratio < 2 {
                rules.push(RuleViolation {
                    message: "Reverse-split ratio must be at least 2",
                    detail: format!("methodology.reverse_split_ratio is {}", c.reverse_split_ratio),
                });
            }
            if c.lsm_min >= crate::math::WAD || c.mcsm_min >= crate::math::WAD {
                rules.push(RuleViolation {
                    message: "Safety-margin floors must be below 100%",
                    detail: format!(
                        "methodology.lsm_min {} and methodology.mcsm_min {}",
                        Wad(c.lsm_min),
                        Wad(c.mcsm_min)
                    ),
                });
            }
            Policy::Continuous(c)
        } else {
            Policy::Threshold
        };
        for sec in [&t, &p, &m] {
            if let Some(err) = sec.unknown() {
                return Err(err);
            }
        }
        rules.extend(
            settings
                .violations(venue.max_leverage)
                .into_iter()
                .map(|e| RuleViolation { message: "Invalid setting", detail: format!("methodology.{e}") }),
        );
        if venue.delayed_order_min_age >= venue.delayed_order_max_age {
            rules.push(RuleViolation {
                message: "Delayed-order ages must satisfy min < max",
                detail: format!(
                    "perp.delayed_order_min_age {} s and perp.delayed_order_max_age {} s",
                    venue.delayed_order_min_age, venue.delayed_order_max_age
                ),
            });
        }
        if venue.skew_scale.is_zero() {
            rules.push(RuleViolation { message: "Skew scale must be > 0", detail: "perp.skew_scale is 0".into() });
        }
        if price.0.is_zero() {
            rules.push(RuleViolation { message: "Price must be > 0", detail: "perp.price is 0".into() });
        }
        if !rules.is_empty() {
            return Err(ProductError::Rules(rules));
        }
        Ok(Self { name, symbol, underlying, price, venue, settings, policy })
    }

    /// A fresh token with no supply on an empty market at `now`.
    pub fn build(&self, now: u64) -> ThresholdToken {
        let mut t = ThresholdToken::new(self.settings.clone(), PerpsMarket::new(self.venue.clone(), now), 1);
        t.policy = self.policy;
        t.symbol = self.symbol.clone();
        t.oracle_price = self.price.0;
        t
    }

    /// `threshold` or `daily`.
    pub fn kind(&self) -> &'static str {
        match self.policy {
            Policy::Threshold => "threshold",
            Policy::Daily(_) => "daily",
            Policy::Continuous(_) => "continuous",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[token]
name = "ETH 3x"
symbol = "ETH3L"
[perp]
venue = "synthetix-perps-v2"
[methodology]
kind = "threshold"
side = "long"
target_leverage = "3"
rebalance_threshold = "10%"
"#;

    #[test]
    fn defaults_and_rules() {
        let p = ThresholdProduct::from_toml(GOOD).unwrap();
        assert_eq!(p.venue, PerpsParams::eth_optimism());
        assert_eq!(p.settings.rebalance_fee, Wad::parse("5").unwrap().0);
        for (name, from, to, needle) in [
            ("three decimals", "target_leverage = \"3\"", "target_leverage = \"3.125\"", "MaxOfTwoDecimals"),
            ("above half of max", "target_leverage = \"3\"", "target_leverage = \"28\"", "MaxLeverage"),
            (
                "threshold out of range",
                "rebalance_threshold = \"10%\"",
                "rebalance_threshold = \"90%\"",
                "rebalance_threshold",
            ),
            ("unknown key", "side = \"long\"", "sidee = \"long\"", "methodology.sidee"),
            ("bad side", "side = \"long\"", "side = \"up\"", "not long or short"),
            ("wrong venue", "synthetix-perps-v2", "gmx", "perp.venue"),
        ] {
            let err = ThresholdProduct::from_toml(&GOOD.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn the_seed_level_model_is_for_short_entry_basis_bears() {
        let bear = include_str!("../../../../products/eth-minus2x-bear.toml");
        let seeded = bear.replace("price_level_model = \"venue\"", "price_level_model = \"seed\"");
        match ThresholdProduct::from_toml(&seeded).unwrap().policy {
            Policy::Continuous(c) => assert!(c.seed_model && c.entry_basis),
            other => panic!("{other:?}"),
        }
        let mark = seeded.replace("leverage_basis = \"entry\"", "leverage_basis = \"mark\"");
        let err = ThresholdProduct::from_toml(&mark).unwrap_err().to_string();
        assert!(err.contains("seed price-level model is defined for short tokens on the entry basis"), "{err}");
        let bad = seeded.replace("price_level_model = \"seed\"", "price_level_model = \"chainlink\"");
        let err = ThresholdProduct::from_toml(&bad).unwrap_err().to_string();
        assert!(err.contains("methodology.price_level_model") && err.contains("not venue or seed"), "{err}");
    }
}
