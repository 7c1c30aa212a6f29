//! Product definitions: a TOML file with human units (`2.0`, `2%`, `30s`, `1d`, `0.5` tokens),
//! converted exactly to the integer units of the reference and validated with its rules
//! (`fli.md` §3–§4). [`Product::build`] turns a definition into a running [`FliToken`] on
//! its venues.

use crate::error::{ProductError, RuleViolation};
use crate::math::{U256, WAD, Wad, parse_units, pow10};
use crate::oracle::PriceFeed;
use crate::strategy::fli::{
    ExchangeSettings, ExecutionSettings, Fli, FliToken, IncentiveSettings, MethodologySettings, SizingOrder,
    decimal_adjustment, validate_exchange, validate_non_exchange,
};
use crate::token::{Ledger, TokenConfig};
use crate::venue::amm::{Pool, PoolToken};
use crate::venue::compound::{CompoundMarket, InterestRateModel, MarketConfig};
use crate::venue::lending::{AssetId, LendingMarket, RateModel, ReserveConfig};
use crate::venue::money_market::{MoneyMarket, Protocol};
use alloy_primitives::Address;
use std::collections::BTreeMap;
use toml::{Table, Value};

pub mod bounds;
pub mod threshold;
pub use threshold::ThresholdProduct;

/// Token section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Display name.
    pub name: String,
    /// Ticker.
    pub symbol: String,
    /// Supply cap, 18-decimal base units.
    pub supply_cap: U256,
    /// Mint fee fraction.
    pub mint_fee: Wad,
    /// Redeem fee fraction.
    pub redeem_fee: Wad,
    /// Streaming fee per year.
    pub streaming_fee: Wad,
    /// Collateral per whole token for the first issue (collateral base units).
    pub initial_collateral_per_token: U256,
    /// The asset whose price the token tracks (the collateral for a long, the borrowed asset
    /// for an inverse token).
    pub underlying: String,
}

/// An asset section (`[collateral]`, `[borrow]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSpec {
    /// Symbol.
    pub asset: String,
    /// Decimals of the base unit.
    pub decimals: u8,
    /// Oracle heartbeat, seconds.
    pub heartbeat: u64,
    /// Oracle deviation threshold.
    pub deviation: Wad,
    /// Initial USD price used to build the simulated venues.
    pub price: Wad,
}

/// Lending section: the collateral reserve's risk parameters and the market's depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LendingSpec {
    /// The market's protocol (`protocol = "aave-v3"` or `"compound-v2"`).
    pub protocol: Protocol,
    /// LTV, basis points (Compound: the collateral factor).
    pub ltv_bp: u32,
    /// Liquidation threshold, basis points (Compound: the collateral factor).
    pub liquidation_threshold_bp: u32,
    /// Liquidation bonus, basis points over 100% (500 = 5%; Compound: the liquidation
    /// incentive over 100%).
    pub liquidation_bonus_bp: u32,
    /// Share of a debt one liquidation may repay (Aave: 50%, 100% below HF 0.95, fixed;
    /// Compound: `close_factor`).
    pub close_factor: U256,
    /// Borrow-asset liquidity supplied by others, whole tokens.
    pub borrow_liquidity: U256,
    /// Collateral supply cap, whole tokens (0 = none).
    pub collateral_supply_cap: u64,
    /// Charge interest (false for frictionless runs).
    pub interest: bool,
    /// Share of the borrow-asset liquidity borrowed by other users (sets the borrow rate).
    pub borrow_utilization: U256,
    /// Share of the collateral supplied by others that is borrowed (sets the supply rate).
    pub collateral_utilization: U256,
}

/// One exchange: the strategy's settings and the pool behind its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Strategy settings.
    pub settings: ExchangeSettings,
    /// Pool fee, pips.
    pub pool_fee_pips: u32,
    /// Pool TVL in USD (whole dollars).
    pub pool_tvl_usd: U256,
}

/// A validated product definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Token section.
    pub token: TokenSpec,
    /// Collateral asset.
    pub collateral: AssetSpec,
    /// Borrow asset.
    pub borrow: AssetSpec,
    /// Lending market parameters.
    pub lending: LendingSpec,
    /// Methodology kind (`fli`).
    pub kind: String,
    /// Methodology settings.
    pub methodology: MethodologySettings,
    /// Execution settings.
    pub execution: ExecutionSettings,
    /// Incentive settings.
    pub incentive: IncentiveSettings,
    /// Exchanges in file order.
    pub exchanges: Vec<(String, ExchangeSpec)>,
    /// Sizing order.
    pub sizing_order: SizingOrder,
}

/// Parse a duration: `30s`, `50m`, `1h`, `1d`, `2w` or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3_600),
        Some((i, 'd')) => (&t[..i], 86_400),
        Some((i, 'w')) => (&t[..i], 604_800),
        _ => (t, 1),
    };
    let n: u64 =
        num.trim().parse().map_err(|_| format!("'{s}' is not a duration (use 30s, 50m, 1h, 1d or whole seconds)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too long"))
}

/// Parse a fraction: `5%` or `0.05` → wad.
pub fn parse_fraction(s: &str) -> Result<U256, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        // p% = p/100: parse with 16 decimals gives p·1e16 = p/100·1e18.
        return parse_units(p.trim(), 16).map_err(|e| e.to_string());
    }
    parse_units(t, 18).map_err(|e| e.to_string())
}

/// Parse a fraction into whole basis points (`82.5%` → 8250); finer precision is an error.
pub fn parse_bp(s: &str) -> Result<u32, String> {
    let w = parse_fraction(s)?;
    let unit = U256::from(100_000_000_000_000u64); // 1 bp = 1e14
    if !(w % unit).is_zero() {
        return Err(format!("'{s}' must be a whole number of basis points (0.01%)"));
    }
    u32::try_from(w / unit).map_err(|_| format!("'{s}' is too large"))
}

/// Reads fields out of a TOML table, recording what was read so unknown keys can be reported.
struct Section<'a> {
    path: String,
    table: Option<&'a Table>,
    seen: Vec<String>,
}

impl<'a> Section<'a> {
    fn new(root: &'a Table, path: &str) -> Self {
        Section { path: path.to_string(), table: root.get(path).and_then(|v| v.as_table()), seen: Vec::new() }
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The value as a string: strings as written, integers and floats by their shortest
    /// decimal form (exact for what a user types).
    fn raw(&mut self, key: &str) -> Result<Option<String>, ProductError> {
        self.seen.push(key.to_string());
        let Some(v) = self.table.and_then(|t| t.get(key)) else { return Ok(None) };
        Ok(Some(match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => format!("{f}"),
            Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ProductError::Field {
                    field: self.field(key),
                    reason: "expected a string or a number".into(),
                });
            }
        }))
    }

    fn req(&mut self, key: &str) -> Result<String, ProductError> {
        self.raw(key)?.ok_or_else(|| ProductError::Missing(self.field(key)))
    }

    fn conv<T>(
        &mut self,
        key: &str,
        default: Option<&str>,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ProductError> {
        let v = match (self.raw(key)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(ProductError::Missing(self.field(key))),
        };
        f(&v).map_err(|reason| ProductError::Field { field: self.field(key), reason })
    }

    fn unknown(&self) -> Option<ProductError> {
        let t = self.table?;
        t.keys().find(|k| !self.seen.iter().any(|s| s == *k)).map(|k| ProductError::Unknown(self.field(k)))
    }
}

/// `[exchanges.NAME]` as a one-entry table keyed by its full path, so a [`Section`] over it
/// names fields `exchanges.NAME.key`.
fn exchange_table(name: &str, v: &Value) -> Result<(String, Table), ProductError> {
    let path = format!("exchanges.{name}");
    let sub =
        v.as_table().ok_or_else(|| ProductError::Field { field: path.clone(), reason: "expected a table".into() })?;
    let mut wrapper = Table::new();
    wrapper.insert(path.clone(), Value::Table(sub.clone()));
    Ok((path, wrapper))
}

fn ratio(s: &str) -> Result<U256, String> {
    parse_units(s, 18).map_err(|e| e.to_string())
}

fn units(decimals: u8) -> impl Fn(&str) -> Result<U256, String> {
    move |s| parse_units(s, decimals).map_err(|e| e.to_string())
}

/// `[collateral]` or `[borrow]`: symbol, decimals, oracle heartbeat and deviation, price, each
/// inside the ranges of [`bounds`].
fn asset_section(
    s: &mut Section<'_>,
    heartbeat: &str,
    deviation: &str,
    price: &str,
) -> Result<AssetSpec, ProductError> {
    Ok(AssetSpec {
        asset: s.conv("asset", None, bounds::text)?,
        decimals: s.conv("decimals", None, bounds::decimals)?,
        heartbeat: s.conv("heartbeat", Some(heartbeat), |v| parse_duration(v).and_then(bounds::heartbeat))?,
        deviation: Wad(s.conv("deviation", Some(deviation), |v| parse_fraction(v).and_then(bounds::deviation))?),
        price: Wad(s.conv("price", Some(price), bounds::usd_price)?),
    })
}

fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

impl Product {
    /// Parse and validate a product file. Every violated settings rule is reported at once
    /// ([`ProductError::Rules`]); a malformed field stops at that field.
    pub fn from_toml(text: &str) -> Result<Self, ProductError> {
        let root: Table = text.parse::<Table>().map_err(|e| ProductError::Syntax(e.to_string()))?;
        for k in root.keys() {
            if !["token", "collateral", "borrow", "lending", "methodology", "execution", "incentive", "exchanges"]
                .contains(&k.as_str())
            {
                return Err(ProductError::Unknown(k.clone()));
            }
        }
        let mut t = Section::new(&root, "token");
        let mut c = Section::new(&root, "collateral");
        let mut b = Section::new(&root, "borrow");
        let mut l = Section::new(&root, "lending");
        let mut m = Section::new(&root, "methodology");
        let mut e = Section::new(&root, "execution");
        let mut i = Section::new(&root, "incentive");

        let collateral = asset_section(&mut c, "1h", "0.5%", "2000")?;
        let borrow = asset_section(&mut b, "1d", "0.25%", "1")?;
        let token = TokenSpec {
            name: t.conv("name", None, bounds::text)?,
            symbol: t.conv("symbol", None, bounds::text)?,
            supply_cap: t.conv("supply_cap", None, units(18))?,
            mint_fee: Wad(t.conv("mint_fee", Some("0"), parse_fraction)?),
            redeem_fee: Wad(t.conv("redeem_fee", Some("0"), parse_fraction)?),
            streaming_fee: Wad(t.conv("streaming_fee", Some("0"), parse_fraction)?),
            initial_collateral_per_token: t.conv(
                "initial_collateral_per_token",
                Some("1"),
                units(collateral.decimals),
            )?,
            underlying: t.raw("underlying")?.unwrap_or_else(|| collateral.asset.clone()),
        };
        let protocol = l.conv("protocol", Some("aave-v3"), |s| match s {
            "aave-v3" => Ok(Protocol::AaveV3),
            "compound-v2" => Ok(Protocol::CompoundV2),
            _ => Err(format!("'{s}' is not a lending protocol keel models (aave-v3 or compound-v2)")),
        })?;
        let other = |keys: &[&str], wants: &str| -> Result<(), ProductError> {
            let table = root.get("lending").and_then(|v| v.as_table());
            match keys.iter().find(|k| table.is_some_and(|t| t.contains_key(**k))) {
                Some(k) => Err(ProductError::Field {
                    field: format!("lending.{k}"),
                    reason: format!("'{k}' is not a setting of a {} market; it takes {wants}", protocol.as_str()),
                }),
                None => Ok(()),
            }
        };
        let (ltv_bp, liquidation_threshold_bp, liquidation_bonus_bp, close_factor) = match protocol {
            Protocol::AaveV3 => {
                other(
                    &["collateral_factor", "liquidation_incentive", "close_factor"],
                    "ltv, liquidation_threshold and liquidation_bonus",
                )?;
                (
                    l.conv("ltv", None, parse_bp)?,
                    l.conv("liquidation_threshold", None, parse_bp)?,
                    l.conv("liquidation_bonus", None, parse_bp)?,
                    WAD / U256::from(2u64),
                )
            }
            Protocol::CompoundV2 => {
                other(
                    &["ltv", "liquidation_threshold", "liquidation_bonus", "collateral_supply_cap"],
                    "collateral_factor, liquidation_incentive and close_factor",
                )?;
                let cf = l.conv("collateral_factor", None, parse_bp)?;
                (
                    cf,
                    cf,
                    l.conv("liquidation_incentive", Some("8%"), parse_bp)?,
                    l.conv("close_factor", Some("50%"), parse_fraction)?,
                )
            }
        };
        let lending = LendingSpec {
            protocol,
            ltv_bp,
            liquidation_threshold_bp,
            liquidation_bonus_bp,
            close_factor,
            borrow_liquidity: l.conv("borrow_liquidity", Some("500000000"), units(0))?,
            collateral_supply_cap: l.conv("collateral_supply_cap", Some("0"), |s| {
                s.parse::<u64>().map_err(|_| format!("'{s}' is not a whole number of tokens"))
            })?,
            interest: l.conv("interest", Some("true"), boolean)?,
            borrow_utilization: l.conv("borrow_utilization", Some("80%"), parse_fraction)?,
            collateral_utilization: l.conv("collateral_utilization", Some("30%"), parse_fraction)?,
        };
        let kind = m.req("kind")?;
        if kind != "fli" {
            return Err(ProductError::Field {
                field: "methodology.kind".into(),
                reason: format!("'{kind}' is not supported on a lending product yet (supported: fli)"),
            });
        }
        let methodology = MethodologySettings {
            target_leverage_ratio: m.conv("target_leverage_ratio", None, ratio)?,
            min_leverage_ratio: m.conv("min_leverage_ratio", None, ratio)?,
            max_leverage_ratio: m.conv("max_leverage_ratio", None, ratio)?,
            recentering_speed: m.conv("recentering_speed", None, parse_fraction)?,
            rebalance_interval: m.conv("rebalance_interval", None, parse_duration)?,
        };
        // Compound's FLI sized divide-first (`fli.md` §7); Aave v3's multiplies first.
        let default_order = if protocol == Protocol::CompoundV2 { "divide-first" } else { "aave-v3" };
        let sizing_order = m.conv("sizing_order", Some(default_order), |s| match s {
            "aave-v3" => Ok(SizingOrder::AaveV3),
            "divide-first" => Ok(SizingOrder::DivideFirst),
            _ => Err(format!("'{s}' is not a sizing order (aave-v3 or divide-first)")),
        })?;
        let execution = ExecutionSettings {
            unutilized_leverage_percentage: e.conv("unutilized_leverage_percentage", None, parse_fraction)?,
            slippage_tolerance: e.conv("slippage_tolerance", None, parse_fraction)?,
            twap_cooldown_period: e.conv("twap_cooldown_period", None, parse_duration)?,
        };
        let incentive = IncentiveSettings {
            ether_reward: i.conv("ether_reward", None, units(18))?,
            incentivized_leverage_ratio: i.conv("incentivized_leverage_ratio", None, ratio)?,
            incentivized_slippage_tolerance: i.conv("incentivized_slippage_tolerance", None, parse_fraction)?,
            incentivized_twap_cooldown_period: i.conv("incentivized_twap_cooldown_period", None, parse_duration)?,
        };
        for s in [&t, &c, &b, &l, &m, &e, &i] {
            if let Some(err) = s.unknown() {
                return Err(err);
            }
        }
        let mut exchanges = Vec::new();
        let ex_table = root
            .get("exchanges")
            .and_then(|v| v.as_table())
            .ok_or_else(|| ProductError::Missing("exchanges (at least one [exchanges.NAME] section)".into()))?;
        for (name, v) in ex_table {
            let (path, wrapper) = exchange_table(name, v)?;
            let mut x = Section::new(&wrapper, &path);
            let spec = ExchangeSpec {
                settings: ExchangeSettings {
                    twap_max_trade_size: x.conv("twap_max_trade_size", None, units(collateral.decimals))?,
                    incentivized_twap_max_trade_size: x.conv(
                        "incentivized_twap_max_trade_size",
                        None,
                        units(collateral.decimals),
                    )?,
                    last_trade_timestamp: 0,
                    lever_route: name.clone(),
                    delever_route: name.clone(),
                },
                pool_fee_pips: x.conv("pool_fee", Some("0.05%"), |s| {
                    let w = parse_fraction(s)?;
                    let pip = U256::from(1_000_000_000_000u64); // 1 pip = 1e-6 = 1e12 wad
                    if !(w % pip).is_zero() {
                        return Err(format!("'{s}' is not a whole number of pips (0.0001%)"));
                    }
                    u32::try_from(w / pip).map_err(|_| format!("'{s}' is too large"))
                })?,
                pool_tvl_usd: x.conv("pool_tvl", Some("200000000"), units(0))?,
            };
            if let Some(err) = x.unknown() {
                return Err(err);
            }
            exchanges.push((name.clone(), spec));
        }
        if exchanges.is_empty() {
            return Err(ProductError::Missing("exchanges (at least one [exchanges.NAME] section)".into()));
        }
        let p = Product {
            token,
            collateral,
            borrow,
            lending,
            kind,
            methodology,
            execution,
            incentive,
            exchanges,
            sizing_order,
        };
        let violations = p.violations();
        if !violations.is_empty() {
            return Err(ProductError::Rules(violations));
        }
        Ok(p)
    }

    /// Every rule the definition breaks: the reference's rules in their order, then the
    /// exchange rule per exchange, then keel's own checks of the token and the market.
    pub fn violations(&self) -> Vec<RuleViolation> {
        let mut v = validate_non_exchange(&self.methodology, &self.execution, &self.incentive);
        for (name, x) in &self.exchanges {
            v.extend(validate_exchange(name, &x.settings));
            if crate::venue::amm::tick_spacing_for_fee(x.pool_fee_pips).is_err() {
                v.push(RuleViolation {
                    message: "Pool fee must be a Uniswap v3 fee tier",
                    detail: format!("exchanges.{name}.pool_fee must be 0.01%, 0.05%, 0.3% or 1%"),
                });
            }
        }
        for (field, d) in [("collateral.decimals", self.collateral.decimals), ("borrow.decimals", self.borrow.decimals)]
        {
            if let Err(mut e) = decimal_adjustment(d) {
                e.detail = format!("{field} is {d}");
                v.push(e);
            }
        }
        if self.collateral.asset == self.borrow.asset {
            v.push(RuleViolation {
                message: "Collateral and borrow assets must differ",
                detail: format!("both are {}", self.collateral.asset),
            });
        }
        if self.token.underlying != self.collateral.asset && self.token.underlying != self.borrow.asset {
            v.push(RuleViolation {
                message: "Underlying must be the collateral or the borrow asset",
                detail: format!("token.underlying is {}", self.token.underlying),
            });
        }
        if self.token.supply_cap.is_zero() {
            v.push(RuleViolation { message: "Supply cap must be > 0", detail: "token.supply_cap is 0".into() });
        }
        for (field, fee) in [
            ("token.mint_fee", self.token.mint_fee),
            ("token.redeem_fee", self.token.redeem_fee),
            ("token.streaming_fee", self.token.streaming_fee),
        ] {
            if fee.0 >= WAD {
                v.push(RuleViolation { message: "Fee must be below 100%", detail: format!("{field} is {fee}") });
            }
        }
        let l = &self.lending;
        let compound = l.protocol == Protocol::CompoundV2;
        if compound {
            let e16 = U256::from(10_000_000_000_000_000u64);
            if l.ltv_bp > 9_000 {
                v.push(RuleViolation {
                    message: "Collateral factor must be at most 90% (Compound's maximum)",
                    detail: format!("lending.collateral_factor is {} bp", l.ltv_bp),
                });
            }
            if l.liquidation_bonus_bp > 5_000 {
                v.push(RuleViolation {
                    message: "Liquidation incentive must be at most 50% (Compound's maximum)",
                    detail: format!("lending.liquidation_incentive is {} bp", l.liquidation_bonus_bp),
                });
            }
            if l.close_factor <= U256::from(5u64) * e16 || l.close_factor > U256::from(90u64) * e16 {
                v.push(RuleViolation {
                    message: "Close factor must be above 5% and at most 90% (Compound's bounds)",
                    detail: format!("lending.close_factor is {}", Wad(l.close_factor)),
                });
            }
        }
        if l.ltv_bp > l.liquidation_threshold_bp {
            v.push(RuleViolation {
                message: "LTV must not exceed the liquidation threshold",
                detail: format!(
                    "lending.ltv {} bp is above lending.liquidation_threshold {} bp",
                    l.ltv_bp, l.liquidation_threshold_bp
                ),
            });
        }
        if !compound && l.liquidation_threshold_bp as u64 * (10_000 + l.liquidation_bonus_bp as u64) > 100_000_000 {
            v.push(RuleViolation {
                message: "Liquidation threshold times bonus must not exceed 100%",
                detail: format!(
                    "lending.liquidation_threshold {} bp × (1 + lending.liquidation_bonus {} bp)",
                    l.liquidation_threshold_bp, l.liquidation_bonus_bp
                ),
            });
        }
        if l.liquidation_threshold_bp >= 10_000 {
            v.push(RuleViolation {
                message: "Liquidation threshold must be below 100%",
                detail: format!("lending.liquidation_threshold is {} bp", l.liquidation_threshold_bp),
            });
        } else {
            // The ripcord must fire before the market can liquidate: LR at HF = 1 is 1 / (1 − LT).
            let liq_lr = WAD * U256::from(10_000u64) / U256::from(10_000 - l.liquidation_threshold_bp);
            if self.incentive.incentivized_leverage_ratio >= liq_lr {
                v.push(RuleViolation {
                    message: "Incentivized leverage ratio must be below the liquidation leverage",
                    detail: format!(
                        "incentivized_leverage_ratio {} is at or above {} = 1 / (1 − {}), where the market liquidates",
                        Wad(self.incentive.incentivized_leverage_ratio),
                        Wad(liq_lr),
                        if compound { "collateral_factor" } else { "liquidation_threshold" }
                    ),
                });
            }
        }
        let (c, b) = (&self.collateral, &self.borrow);
        if let Err(detail) =
            bounds::check_pool_quote((&c.asset, c.decimals, c.price.0), (&b.asset, b.decimals, b.price.0))
        {
            v.push(RuleViolation { message: "Prices must keep the pools inside their range", detail });
        }
        v
    }

    /// The strategy state this product starts with.
    pub fn strategy(&self, operator: Address) -> Result<Fli, crate::Error> {
        let mut f = Fli::new(
            self.methodology.clone(),
            self.execution.clone(),
            self.incentive.clone(),
            self.exchanges.iter().map(|(n, x)| (n.clone(), x.settings.clone())).collect(),
            operator,
            (&self.collateral.asset, self.collateral.decimals),
            (&self.borrow.asset, self.borrow.decimals),
        )?;
        f.sizing_order = self.sizing_order;
        f.protocol = self.lending.protocol;
        Ok(f)
    }

    /// Exposure of the token's NAV to its underlying at the target ratio: `TLR` for a long
    /// (collateral is the underlying), `1 − TLR` for an inverse token (the borrowed asset is).
    pub fn target_exposure(&self) -> f64 {
        let tlr = Wad(self.methodology.target_leverage_ratio).to_f64();
        if self.token.underlying == self.collateral.asset { tlr } else { 1.0 - tlr }
    }

    /// The product's lending market with its two assets listed: an Aave v3 market with
    /// template rate strategies, or a Compound v2 market with a WhitePaper model on the
    /// collateral (2% + 10%·U a year, as cETH's) and a jump-rate model on the borrow asset
    /// (0% + 4%·U/0.8 to the 80% kink, +109%/yr above it — the shape of cUSDC's). Returns the
    /// market and the collateral and borrow ids.
    pub fn new_market(
        &self,
        cfeed: PriceFeed,
        bfeed: PriceFeed,
        now: u64,
    ) -> Result<(MoneyMarket, AssetId, AssetId), crate::Error> {
        let l = &self.lending;
        match l.protocol {
            Protocol::AaveV3 => {
                let mut market = LendingMarket::new();
                let rate = |r: RateModel| if l.interest { r } else { RateModel::zero() };
                let mut ccfg = ReserveConfig::new(
                    &self.collateral.asset,
                    self.collateral.decimals,
                    l.ltv_bp,
                    l.liquidation_threshold_bp,
                    10_000 + l.liquidation_bonus_bp,
                    rate(RateModel::volatile_one()),
                );
                ccfg.supply_cap = l.collateral_supply_cap;
                let bcfg = ReserveConfig::new(
                    &self.borrow.asset,
                    self.borrow.decimals,
                    8_000,
                    8_500,
                    10_500,
                    rate(RateModel::stable_one()),
                );
                let c = market.add_reserve(ccfg, cfeed, now)?;
                let b = market.add_reserve(bcfg, bfeed, now)?;
                Ok((market.into(), c, b))
            }
            Protocol::CompoundV2 => {
                let mut market = CompoundMarket::new();
                let e16 = U256::from(10_000_000_000_000_000u64);
                market.set_risk(l.close_factor, WAD + U256::from(l.liquidation_bonus_bp) * e16 / U256::from(100u64))?;
                let rate = |r: InterestRateModel| if l.interest { r } else { InterestRateModel::zero() };
                let c_rate = InterestRateModel::WhitePaper {
                    base_rate: U256::from(2u64) * e16,
                    multiplier: U256::from(10u64) * e16,
                };
                let b_rate = InterestRateModel::jump_rate_v2(
                    U256::ZERO,
                    U256::from(4u64) * e16,
                    U256::from(109u64) * e16,
                    U256::from(80u64) * e16,
                );
                let ccfg =
                    MarketConfig::new(&self.collateral.asset, self.collateral.decimals, l.ltv_bp, 2_000, rate(c_rate));
                let bcfg = MarketConfig::new(&self.borrow.asset, self.borrow.decimals, 8_000, 750, rate(b_rate));
                let c = market.add_market(ccfg, cfeed, now)?;
                let b = market.add_market(bcfg, bfeed, now)?;
                Ok((market.into(), c, b))
            }
        }
    }

    /// Build the token on fresh venues at `now`: a lending market with the collateral and
    /// borrow reserves (oracles posted at the product's prices, the borrow asset supplied by
    /// an outside lender), one pool per exchange, an empty ledger. `operator` runs it.
    pub fn build(&self, operator: Address, now: u64) -> Result<FliToken, crate::Error> {
        let fli = self.strategy(operator)?;
        let mut cfeed = PriceFeed::new(
            format!("{} / USD", self.collateral.asset),
            8,
            self.collateral.heartbeat,
            self.collateral.deviation,
        );
        cfeed.post(price_e8(self.collateral.price)?, now);
        let mut bfeed =
            PriceFeed::new(format!("{} / USD", self.borrow.asset), 8, self.borrow.heartbeat, self.borrow.deviation);
        bfeed.post(price_e8(self.borrow.price)?, now);
        let (mut market, collateral, borrow) = self.new_market(cfeed, bfeed, now)?;
        let l = &self.lending;
        let token_account = Address::with_last_byte(0x70);
        // Set's Compound module enters both markets when the token is initialised.
        market.enter_markets(token_account, &[collateral, borrow])?;
        // Other users set the reserves' utilisation, and so the rates the token pays and earns:
        // whale A supplies collateral and borrows `borrow_utilization` of the borrow asset;
        // whale B supplies some of the borrow asset and borrows `collateral_utilization` of the
        // collateral; a lender supplies the rest of the borrow liquidity.
        let liquidity = l.borrow_liquidity * pow10(self.borrow.decimals as u32);
        if !liquidity.is_zero() {
            use crate::math::{mul_div_down, pmul};
            let (cu, bu) = (pow10(self.collateral.decimals as u32), pow10(self.borrow.decimals as u32));
            let (cp, bp) = (self.collateral.price.0, self.borrow.price.0);
            let want = pmul(liquidity, l.borrow_utilization)?;
            let ltv = U256::from(l.ltv_bp.max(1) as u64);
            // whale A's collateral keeps its borrow at 40% of its LTV limit
            let coll =
                mul_div_down(mul_div_down(want, bp, bu, "whale")?, cu * U256::from(25_000u64), cp * ltv, "whale")?;
            let cb = pmul(coll, l.collateral_utilization)?;
            // whale B backs its collateral borrow three times over with the borrow asset, out
            // of the borrow liquidity; where that caps its supply, it borrows at most 95% of
            // what its supply allows (the borrow reserve's 80% LTV). A low collateral LTV such
            // as WBTC's 70% gives a larger whale A and so a borrow B could not carry (error 36,
            // and btc2x-fli.toml could not start); ETH's 80% stays below the cap, unchanged.
            let b2 =
                mul_div_down(mul_div_down(cb, cp, cu, "whale")?, bu * U256::from(3u64), bp, "whale")?.min(liquidity);
            let b_limit = mul_div_down(
                mul_div_down(b2, bp, bu, "whale")?,
                cu * U256::from(76u64),
                cp * U256::from(100u64),
                "whale",
            )?;
            let cb = cb.min(b_limit);
            let (a, b, lender) =
                (Address::with_last_byte(0xab), Address::with_last_byte(0xac), Address::with_last_byte(0xaa));
            for who in [a, b] {
                market.enter_markets(who, &[collateral, borrow])?;
            }
            if liquidity > b2 {
                market.supply(lender, borrow, liquidity - b2, now)?;
            }
            if !b2.is_zero() {
                market.supply(b, borrow, b2, now)?;
            }
            if !want.is_zero() && !coll.is_zero() {
                market.supply(a, collateral, coll, now)?;
                market.borrow(a, borrow, want, now)?;
                if !cb.is_zero() && !b2.is_zero() {
                    market.borrow(b, collateral, cb, now)?;
                }
            }
        }
        let mut pools = BTreeMap::new();
        for (name, _) in &self.exchanges {
            pools.insert(name.clone(), self.build_pool(name, self.collateral.price, self.borrow.price)?);
        }
        let ledger = Ledger::new(
            TokenConfig {
                name: self.token.name.clone(),
                symbol: self.token.symbol.clone(),
                supply_cap: self.token.supply_cap,
                mint_fee: self.token.mint_fee,
                redeem_fee: self.token.redeem_fee,
                streaming_fee: self.token.streaming_fee,
                fee_recipient: operator,
            },
            now,
        )?;
        Ok(FliToken {
            ledger,
            market,
            pools,
            fli,
            account: token_account,
            collateral,
            borrow,
            idle_borrow: U256::ZERO,
            idle_borrow_unit: None,
            protocol_fee: Wad::ZERO,
            initial_collateral_per_token: self.token.initial_collateral_per_token,
            oracle_fill: false,
            underlying_is_borrow: self.token.underlying != self.collateral.asset,
        })
    }

    /// The pool behind exchange `name`, centred on the given USD prices: the product's TVL and
    /// fee tier in a realistic concentration (most liquidity near the price, a tail far out).
    /// LPs re-centre their liquidity as prices move; a simulation rebuilds the pool with this.
    pub fn build_pool(&self, name: &str, collateral_usd: Wad, borrow_usd: Wad) -> Result<Pool, crate::Error> {
        let x = &self
            .exchanges
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| ProductError::Missing(format!("exchanges.{name}")))?
            .1;
        let t0 = PoolToken { symbol: self.borrow.asset.clone(), decimals: self.borrow.decimals };
        let t1 = PoolToken { symbol: self.collateral.asset.clone(), decimals: self.collateral.decimals };
        let tvl = x.pool_tvl_usd * WAD;
        let share = |pct: u64| tvl * U256::from(pct) / U256::from(100u64);
        let bands = [(50u32, share(15)), (200, share(25)), (1_000, share(30)), (5_000, share(20)), (30_000, share(10))];
        Ok(Pool::from_profile(
            format!("{name}: {}/{}", t0.symbol, t1.symbol),
            t0,
            t1,
            x.pool_fee_pips,
            borrow_usd.0,
            collateral_usd.0,
            &bands,
        )?)
    }

    /// The reference setters' arguments as a block explorer takes them: arrays of decimal
    /// integers as quoted strings, in the structs' field order.
    pub fn calldata(&self) -> Vec<(String, Vec<String>)> {
        let m = &self.methodology;
        let e = &self.execution;
        let i = &self.incentive;
        let mut out = vec![
            (
                "setMethodologySettings".to_string(),
                vec![
                    m.target_leverage_ratio.to_string(),
                    m.min_leverage_ratio.to_string(),
                    m.max_leverage_ratio.to_string(),
                    m.recentering_speed.to_string(),
                    m.rebalance_interval.to_string(),
                ],
            ),
            (
                "setExecutionSettings".to_string(),
                vec![
                    e.unutilized_leverage_percentage.to_string(),
                    e.slippage_tolerance.to_string(),
                    e.twap_cooldown_period.to_string(),
                ],
            ),
            (
                "setIncentiveSettings".to_string(),
                vec![
                    i.ether_reward.to_string(),
                    i.incentivized_leverage_ratio.to_string(),
                    i.incentivized_slippage_tolerance.to_string(),
                    i.incentivized_twap_cooldown_period.to_string(),
                ],
            ),
        ];
        for (name, x) in &self.exchanges {
            out.push((
                format!("addEnabledExchange(\"{name}\")"),
                vec![
                    x.settings.twap_max_trade_size.to_string(),
                    "0".into(),
                    x.settings.incentivized_twap_max_trade_size.to_string(),
                    "0x".into(),
                    "0x".into(),
                ],
            ));
        }
        out
    }
}

/// A wad USD price as an 8-decimal oracle answer; more than 8 decimals is an error.
pub fn price_e8(price: Wad) -> Result<i128, crate::Error> {
    let unit = pow10(10);
    if !(price.0 % unit).is_zero() {
        return Err(ProductError::Field {
            field: "price".into(),
            reason: format!("{price} has more than 8 decimals (oracle answers have 8)"),
        }
        .into());
    }
    i128::try_from(price.0 / unit)
        .map_err(|_| ProductError::Field { field: "price".into(), reason: format!("{price} is too large") }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_units() {
        assert_eq!(parse_duration("30s").unwrap(), 30);
        assert_eq!(parse_duration("50m").unwrap(), 3_000);
        assert_eq!(parse_duration("1h").unwrap(), 3_600);
        assert_eq!(parse_duration("1d").unwrap(), 86_400);
        assert_eq!(parse_duration("86400").unwrap(), 86_400);
        assert!(parse_duration("1.5h").is_err());
        assert_eq!(parse_fraction("5%").unwrap(), U256::from(50_000_000_000_000_000u64));
        assert_eq!(parse_fraction("0.05").unwrap(), U256::from(50_000_000_000_000_000u64));
        assert_eq!(parse_fraction("1.95%").unwrap(), U256::from(19_500_000_000_000_000u64));
        assert_eq!(parse_bp("82.5%").unwrap(), 8_250);
        assert_eq!(parse_bp("0.8").unwrap(), 8_000);
        assert_eq!(parse_bp("82.55%").unwrap(), 8_255);
        assert_eq!(parse_bp("82.555%").unwrap_err(), "'82.555%' must be a whole number of basis points (0.01%)");
        assert_eq!(price_e8(Wad::parse("1843.12345678").unwrap()).unwrap(), 184_312_345_678);
        assert!(price_e8(Wad::parse("1.123456789").unwrap()).is_err());
    }
}

/// A product on a perp venue (`[perp]` instead of `[collateral]`/`[borrow]`/`[lending]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerpProduct {
    /// Token section.
    pub token: TokenSpec,
    /// Venue name (`perp-v2`).
    pub venue: String,
    /// Virtual base asset (e.g. `vETH`).
    pub base: String,
    /// Collateral asset (e.g. `USDC`).
    pub collateral: String,
    /// Initial margin ratio.
    pub initial_margin_ratio: Wad,
    /// Maintenance margin ratio.
    pub maintenance_margin_ratio: Wad,
    /// Liquidation penalty.
    pub liquidation_penalty: Wad,
    /// `maxTickCrossedWithinBlock`: ticks the vAMM may move from the tick at the start of a
    /// 15-second window (`EX_OPLAS`).
    pub max_tick_crossed_within_block: u32,
    /// `maxPriceSpreadRatio`: the largest market–index spread a swap may leave (`EX_OPB`).
    pub max_price_spread: Wad,
    /// `exchangeFeeRatio`: the taker fee the clearing house charges in quote, replacing the
    /// vAMM pool's own fee (default 0.05%, the pool's tier, as `addPool` sets it).
    pub exchange_fee_ratio: Wad,
    /// `insuranceFundFeeRatio`: the insurance fund's share of that fee (default 0).
    pub insurance_fund_fee_ratio: Wad,
    /// Starting base price for simulations (USD).
    pub price: Wad,
    /// Methodology kind (`fli`).
    pub kind: String,
    /// The exchange's name (e.g. `perp-v2`).
    pub exchange_name: String,
    /// The strategy's settings.
    pub methodology: crate::strategy::fli::perp::PerpMethodology,
    /// Execution settings.
    pub execution: crate::strategy::fli::perp::PerpExecution,
    /// Incentive settings.
    pub incentive: crate::strategy::fli::perp::PerpIncentive,
    /// Trade caps (base wad).
    pub exchange: crate::strategy::fli::perp::PerpExchange,
}

/// A wad fraction in the contracts' 1e-6 units (validated to be whole units of at most 100%).
fn to_1e6(w: Wad) -> u32 {
    (w.0 / U256::from(1_000_000_000_000u64)).saturating_to::<u32>()
}

fn signed_ratio(s: &str) -> Result<crate::math::I256, String> {
    crate::math::SignedWad::parse(s).map(|w| w.0).map_err(|e| e.to_string())
}

impl PerpProduct {
    /// Parse and validate a perp product file; every violated rule is reported at once.
    pub fn from_toml(text: &str) -> Result<Self, ProductError> {
        let root: Table = text.parse::<Table>().map_err(|e| ProductError::Syntax(e.to_string()))?;
        for k in root.keys() {
            if !["token", "perp", "methodology", "execution", "incentive", "exchanges"].contains(&k.as_str()) {
                return Err(ProductError::Unknown(k.clone()));
            }
        }
        let mut t = Section::new(&root, "token");
        let mut p = Section::new(&root, "perp");
        let mut m = Section::new(&root, "methodology");
        let mut e = Section::new(&root, "execution");
        let mut i = Section::new(&root, "incentive");
        let token = TokenSpec {
            name: t.conv("name", None, bounds::text)?,
            symbol: t.conv("symbol", None, bounds::text)?,
            supply_cap: t.conv("supply_cap", None, units(18))?,
            mint_fee: Wad(t.conv("mint_fee", Some("0"), parse_fraction)?),
            redeem_fee: Wad(t.conv("redeem_fee", Some("0"), parse_fraction)?),
            streaming_fee: Wad(t.conv("streaming_fee", Some("0"), parse_fraction)?),
            initial_collateral_per_token: t.conv("initial_collateral_per_token", Some("100"), units(18))?,
            underlying: t.raw("underlying")?.unwrap_or_default(),
        };
        let venue = p.req("venue")?;
        if venue != "perp-v2" {
            return Err(ProductError::Field {
                field: "perp.venue".into(),
                reason: format!("'{venue}' is not supported for fli yet (supported: perp-v2)"),
            });
        }
        let base = p.conv("base", None, bounds::text)?;
        let collateral = p.conv("collateral", None, bounds::text)?;
        let initial_margin_ratio = Wad(p.conv("initial_margin_ratio", Some("10%"), parse_fraction)?);
        let maintenance_margin_ratio = Wad(p.conv("maintenance_margin_ratio", Some("6.25%"), parse_fraction)?);
        let liquidation_penalty = Wad(p.conv("liquidation_penalty", Some("2.5%"), parse_fraction)?);
        let max_tick_crossed_within_block =
            p.conv("max_tick_crossed_within_block", Some("1000"), |s| match s.parse::<u32>() {
                Ok(n) if (1..=1_774_544).contains(&n) => Ok(n),
                _ => Err(format!("'{s}' must be a whole number of ticks from 1 to 1774544 (MAX_TICK − MIN_TICK)")),
            })?;
        // ratios the contracts hold in 1e-6 units
        let ratio = |s: &str, zero: bool, hundred: bool| {
            let w = parse_fraction(s)?;
            let unit = U256::from(1_000_000_000_000u64);
            let (low, high) = (if zero { "at least 0" } else { "above 0" }, if hundred { "at most" } else { "below" });
            if (!zero && w.is_zero()) || w > WAD || (!hundred && w == WAD) || !(w % unit).is_zero() {
                return Err(format!("'{s}' must be {low}, {high} 100%, in steps of 0.0001%"));
            }
            Ok(w)
        };
        let max_price_spread = Wad(p.conv("max_price_spread", Some("10%"), |s| ratio(s, false, true))?);
        let exchange_fee_ratio = Wad(p.conv("exchange_fee_ratio", Some("0.05%"), |s| ratio(s, true, false))?);
        let insurance_fund_fee_ratio = Wad(p.conv("insurance_fund_fee_ratio", Some("0%"), |s| ratio(s, true, true))?);
        let price = Wad(p.conv("price", Some("2000"), bounds::usd_price)?);
        let kind = m.req("kind")?;
        if kind != "fli" {
            return Err(ProductError::Field {
                field: "methodology.kind".into(),
                reason: format!("'{kind}' is not supported on a perp product yet (supported: fli)"),
            });
        }
        let methodology = crate::strategy::fli::perp::PerpMethodology {
            target_leverage_ratio: m.conv("target_leverage_ratio", None, signed_ratio)?,
            min_leverage_ratio: m.conv("min_leverage_ratio", None, signed_ratio)?,
            max_leverage_ratio: m.conv("max_leverage_ratio", None, signed_ratio)?,
            recentering_speed: m.conv("recentering_speed", None, parse_fraction)?,
            rebalance_interval: m.conv("rebalance_interval", None, parse_duration)?,
        };
        let execution = crate::strategy::fli::perp::PerpExecution {
            slippage_tolerance: e.conv("slippage_tolerance", None, parse_fraction)?,
            twap_cooldown_period: e.conv("twap_cooldown_period", None, parse_duration)?,
        };
        let incentive = crate::strategy::fli::perp::PerpIncentive {
            ether_reward: i.conv("ether_reward", None, units(18))?,
            incentivized_leverage_ratio: i.conv("incentivized_leverage_ratio", None, signed_ratio)?,
            incentivized_slippage_tolerance: i.conv("incentivized_slippage_tolerance", None, parse_fraction)?,
            incentivized_twap_cooldown_period: i.conv("incentivized_twap_cooldown_period", None, parse_duration)?,
        };
        for s in [&t, &p, &m, &e, &i] {
            if let Some(err) = s.unknown() {
                return Err(err);
            }
        }
        let ex_table = root
            .get("exchanges")
            .and_then(|v| v.as_table())
            .ok_or_else(|| ProductError::Missing("exchanges (one [exchanges.NAME] section)".into()))?;
        if ex_table.len() != 1 {
            return Err(ProductError::Field {
                field: "exchanges".into(),
                reason: format!("a perp product has exactly one exchange, found {}", ex_table.len()),
            });
        }
        let (exchange_name, v) = ex_table.iter().next().expect("one exchange");
        let (path, wrapper) = exchange_table(exchange_name, v)?;
        let mut x = Section::new(&wrapper, &path);
        let exchange = crate::strategy::fli::perp::PerpExchange {
            twap_max_trade_size: x.conv("twap_max_trade_size", None, units(18))?,
            incentivized_twap_max_trade_size: x.conv("incentivized_twap_max_trade_size", None, units(18))?,
        };
        if let Some(err) = x.unknown() {
            return Err(err);
        }
        let mut token = token;
        if token.underlying.is_empty() {
            token.underlying = base.trim_start_matches('v').to_string();
        }
        let prod = PerpProduct {
            token,
            venue,
            base,
            collateral,
            initial_margin_ratio,
            max_tick_crossed_within_block,
            max_price_spread,
            exchange_fee_ratio,
            insurance_fund_fee_ratio,
            maintenance_margin_ratio,
            liquidation_penalty,
            price,
            kind,
            exchange_name: exchange_name.clone(),
            methodology,
            execution,
            incentive,
            exchange,
        };
        let mut v = crate::strategy::fli::perp::validate_perp(
            &prod.methodology,
            &prod.execution,
            &prod.incentive,
            &prod.exchange,
        );
        if prod.maintenance_margin_ratio > prod.initial_margin_ratio || prod.initial_margin_ratio.0 > WAD {
            v.push(RuleViolation {
                message: "Margin ratios must satisfy maintenance ≤ initial ≤ 100%",
                detail: format!(
                    "perp.maintenance_margin_ratio {} and perp.initial_margin_ratio {}",
                    prod.maintenance_margin_ratio, prod.initial_margin_ratio
                ),
            });
        }
        if prod.token.supply_cap.is_zero() {
            v.push(RuleViolation { message: "Supply cap must be > 0", detail: "token.supply_cap is 0".into() });
        }
        if !v.is_empty() {
            return Err(ProductError::Rules(v));
        }
        Ok(prod)
    }

    /// The strategy this product starts with.
    pub fn strategy(&self) -> Result<crate::strategy::fli::perp::PerpFli, crate::Error> {
        Ok(crate::strategy::fli::perp::PerpFli::new(
            self.methodology.clone(),
            self.execution.clone(),
            self.incentive.clone(),
            self.exchange.clone(),
        )?)
    }

    /// The token on a fresh Perp-v2-style account at `now`, its vAMM holding `pool_tvl` USD (wad)
    /// at the 0.05% tier around `price` (USD wad), the token file's cap and fees, no supply (the
    /// first issue is at 100 USD a token); the streaming fee goes to `fee_recipient`.
    pub fn build(
        &self,
        price: U256,
        pool_tvl: U256,
        fee_recipient: Address,
        now: u64,
    ) -> Result<crate::strategy::fli::perp_token::PerpFliToken, crate::Error> {
        use crate::strategy::fli::perp_token::{PerpFliToken, vamm};
        let params = crate::venue::perp_v2::PerpV2Params {
            im_ratio: self.initial_margin_ratio.0,
            mm_ratio: self.maintenance_margin_ratio.0,
            liquidation_penalty_ratio: self.liquidation_penalty.0,
            ..crate::venue::perp_v2::PerpV2Params::default()
        };
        let pool = vamm(price, pool_tvl, 500)?;
        let market = crate::venue::perp_v2::PerpV2Market::new(params, now);
        let tick = pool.tick();
        let mut t = PerpFliToken::new(self.strategy()?, market, pool, U256::ZERO, U256::ZERO, price)?;
        t.pool_tvl = pool_tvl;
        t.guards = crate::strategy::fli::perp_token::PriceGuards {
            max_tick_crossed: self.max_tick_crossed_within_block,
            max_price_spread: to_1e6(self.max_price_spread),
            last_tick: tick,
            last_tick_time: now,
        };
        t.fees = Some(crate::venue::perp_v2::MarketFees {
            exchange_fee_ratio: to_1e6(self.exchange_fee_ratio),
            insurance_fund_fee_ratio: to_1e6(self.insurance_fund_fee_ratio),
        });
        Ok(t.named(&self.token.symbol).with_streaming_fee(self.token.streaming_fee.0, fee_recipient, now).with_ledger(
            self.token.supply_cap,
            self.token.mint_fee.0,
            self.token.redeem_fee.0,
            U256::from(100u64) * WAD,
        ))
    }

    /// The PerpV2 extension's setter arguments, struct field order.
    pub fn calldata(&self) -> Vec<(String, Vec<String>)> {
        let m = &self.methodology;
        let e = &self.execution;
        let i = &self.incentive;
        vec![
            (
                "setMethodologySettings".into(),
                vec![
                    m.target_leverage_ratio.to_string(),
                    m.min_leverage_ratio.to_string(),
                    m.max_leverage_ratio.to_string(),
                    m.recentering_speed.to_string(),
                    m.rebalance_interval.to_string(),
                ],
            ),
            ("setExecutionSettings".into(), vec![e.slippage_tolerance.to_string(), e.twap_cooldown_period.to_string()]),
            (
                "setIncentiveSettings".into(),
                vec![
                    i.ether_reward.to_string(),
                    i.incentivized_leverage_ratio.to_string(),
                    i.incentivized_slippage_tolerance.to_string(),
                    i.incentivized_twap_cooldown_period.to_string(),
                ],
            ),
            (
                "setExchangeSettings".into(),
                vec![
                    self.exchange.twap_max_trade_size.to_string(),
                    self.exchange.incentivized_twap_max_trade_size.to_string(),
                ],
            ),
        ]
    }
}

/// A product file of either shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyProduct {
    /// On a lending market.
    Lending(Box<Product>),
    /// On a perp venue.
    Perp(Box<PerpProduct>),
    /// A threshold token on a Synthetix-Perps-V2-style venue.
    Threshold(Box<ThresholdProduct>),
}

impl AnyProduct {
    /// The methodology and venue in a few words, for tables: the kind's description, with the
    /// lending protocol named for a lending product (`fli (compound-v2 + v3 pool)`).
    pub fn describe(&self) -> String {
        match self {
            AnyProduct::Lending(p) => format!("fli ({} + v3 pool)", p.lending.protocol.as_str()),
            other => other.kind().describe().to_string(),
        }
    }

    /// The token kind the file describes.
    pub fn kind(&self) -> crate::leveraged::Kind {
        use crate::leveraged::Kind;
        use crate::strategy::threshold::token::Policy;
        match self {
            AnyProduct::Lending(_) => Kind::LendingFli,
            AnyProduct::Perp(_) => Kind::PerpFli,
            AnyProduct::Threshold(p) => match p.policy {
                Policy::Threshold => Kind::Threshold,
                Policy::Daily(_) => Kind::Daily,
                Policy::Continuous(_) => Kind::Continuous,
            },
        }
    }

    /// The underlying's USD price the file starts from.
    pub fn start_price(&self) -> f64 {
        match self {
            AnyProduct::Lending(p) => {
                if p.token.underlying == p.collateral.asset {
                    p.collateral.price.to_f64()
                } else {
                    p.borrow.price.to_f64()
                }
            }
            AnyProduct::Perp(p) => p.price.to_f64(),
            AnyProduct::Threshold(p) => p.price.to_f64(),
        }
    }

    /// The underlying the product tracks, without a wrapper's `W` (WETH tracks ETH).
    pub fn underlying(&self) -> String {
        match self {
            AnyProduct::Lending(p) => p.token.underlying.trim_start_matches('W').to_string(),
            AnyProduct::Threshold(p) => p.underlying.clone(),
            AnyProduct::Perp(p) => p.token.underlying.clone(),
        }
    }

    /// The product's ticker.
    pub fn symbol(&self) -> &str {
        match self {
            AnyProduct::Lending(p) => &p.token.symbol,
            AnyProduct::Perp(p) => &p.token.symbol,
            AnyProduct::Threshold(p) => &p.symbol,
        }
    }

    /// Parse a product file: a `[perp]` section makes it a perp product.
    pub fn from_toml(text: &str) -> Result<Self, ProductError> {
        let root: Table = text.parse::<Table>().map_err(|e| ProductError::Syntax(e.to_string()))?;
        let venue = root.get("perp").and_then(|p| p.get("venue")).and_then(|v| v.as_str());
        if venue == Some("synthetix-perps-v2") {
            ThresholdProduct::from_toml(text).map(|p| AnyProduct::Threshold(Box::new(p)))
        } else if root.contains_key("perp") {
            PerpProduct::from_toml(text).map(|p| AnyProduct::Perp(Box::new(p)))
        } else {
            Product::from_toml(text).map(|p| AnyProduct::Lending(Box::new(p)))
        }
    }
}
