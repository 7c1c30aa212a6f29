//! What readers see of a product: NAV, leverage and its band, what a keeper should do on each
//! exchange, the position, the venue accounts, prices and why anything is blocked.
//!
//! Views are computed by the writer after each committed batch (and once a second, so a price
//! going stale shows without any write) and published as ready-to-send JSON.

use crate::engine::ProductState;
use crate::model::{units_str, wad_str};
use keel_core::U256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One observed price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PriceView {
    /// USD per whole unit.
    pub price: String,
    /// Unix seconds of the observation.
    pub observed_at: u64,
    /// Seconds since.
    pub age_s: u64,
    /// The oracle's heartbeat, seconds.
    pub heartbeat_s: u64,
    /// Age beyond which the price is refused (heartbeat + 10%), seconds.
    pub max_age_s: u64,
    /// Relative move that makes a feed post (e.g. `0.005`).
    pub deviation: String,
    /// Older than the heartbeat: minting, redeeming and rebalancing are paused.
    pub stale: bool,
}

/// The leverage band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Band {
    /// Minimum leverage ratio.
    pub min: String,
    /// Target.
    pub target: String,
    /// Maximum.
    pub max: String,
    /// Ripcord (incentivized) leverage ratio.
    pub ripcord: String,
}

/// A product's state as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProductView {
    /// Product id.
    pub id: String,
    /// The token's kind: `lending-fli`, `threshold`, `daily`, `continuous`.
    #[serde(default)]
    pub kind: String,
    /// Ticker.
    pub symbol: String,
    /// The asset whose price the token's leverage applies to (a key of `prices`).
    #[serde(default)]
    pub underlying: String,
    /// Name.
    pub name: String,
    /// Log position the view reflects.
    pub seq: u64,
    /// Unix seconds the view was computed at.
    pub as_of: u64,
    /// Why minting, redeeming and rebalancing are refused now (a stale price), if they are.
    pub blocked: Option<String>,
    /// NAV per token, USD.
    pub nav_per_token: Option<String>,
    /// Equity, USD.
    pub equity_usd: Option<String>,
    /// Leverage ratio (collateral value / equity).
    pub leverage_ratio: Option<String>,
    /// The band it is kept in.
    pub band: Band,
    /// TWAP target while a rebalance is in progress.
    pub twap_leverage_ratio: Option<String>,
    /// What a keeper should call on each exchange: none, rebalance, iterate, ripcord.
    pub should_rebalance: BTreeMap<String, String>,
    /// Keepers allowed to rebalance (empty with anyone-callable).
    pub allowed_callers: Vec<String>,
    /// Rebalance and iterate open to any keeper key.
    pub anyone_callable: bool,
    /// Collateral supplied, debt owed and idle cash, in asset units.
    pub position: BTreeMap<String, String>,
    /// The token's lending account: collateral and debt values (USD), health factor.
    pub lending_account: BTreeMap<String, String>,
    /// The token's account on a perp venue: margin, position, margin ratio, the pending order.
    #[serde(default)]
    pub venue_account: BTreeMap<String, String>,
    /// Funding the token's perp account has paid to date, settled and pending, USD (negative:
    /// received); `None` for a lending FLI, which pays interest instead.
    #[serde(default)]
    pub funding_paid_usd: Option<String>,
    /// Risk now: the venue's health measure, and the adverse price moves to liquidation and to
    /// the emergency action (ripcord or close), as fractions.
    #[serde(default)]
    pub risk: BTreeMap<String, String>,
    /// Each pool's price of the collateral, USD.
    pub pools: BTreeMap<String, String>,
    /// Last observed prices by asset.
    pub prices: BTreeMap<String, PriceView>,
    /// Total supply.
    pub supply: String,
    /// Supply cap.
    pub supply_cap: String,
    /// Number of holders.
    pub holders: usize,
    /// The ledger invariant: supply equals the sum of balances.
    pub supply_equals_balances: bool,
}

fn fmt_hf(v: U256) -> String {
    if v == U256::MAX { "inf".into() } else { wad_str(v) }
}

/// Risk figures through the token interface.
fn risk(t: &dyn keel_core::leveraged::LeveragedToken, now: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(r) = t.risk(now) {
        let (name, v) = match r.health {
            keel_core::leveraged::Health::HealthFactor(v) => ("health_factor", v),
            keel_core::leveraged::Health::MarginRatio(v) => ("margin_ratio", v),
        };
        out.insert(name.to_string(), fmt_hf(v));
        if let Some(d) = r.to_liquidation {
            out.insert("to_liquidation".into(), format!("{d:.4}"));
        }
        if let Some(d) = r.to_emergency {
            let action = t.band().emergency.map(|e| e.action).unwrap_or("emergency");
            out.insert(format!("to_{action}"), format!("{d:.4}"));
        }
    }
    out
}

/// Compute the view of `p` at `now`, after event `seq`.
pub fn product_view(p: &ProductState, seq: u64, now: u64) -> ProductView {
    match p.token.lending() {
        Some(t) => lending_view(p, t, seq, now),
        None => token_view(p, p.token.as_dyn(), seq, now),
    }
}

fn signed(x: keel_core::I256) -> String {
    keel_core::math::SignedWad(x).to_string()
}

/// Any kind but lending FLI, through the token interface.
fn token_view(p: &ProductState, t: &dyn keel_core::leveraged::LeveragedToken, seq: u64, now: u64) -> ProductView {
    let product = keel_core::product::AnyProduct::from_toml(&p.toml).ok();
    let underlying = product.as_ref().map(|x| x.underlying()).unwrap_or_default();
    let name = match &product {
        Some(keel_core::product::AnyProduct::Threshold(x)) => x.name.clone(),
        Some(keel_core::product::AnyProduct::Perp(x)) => x.token.name.clone(),
        Some(keel_core::product::AnyProduct::Lending(x)) => x.token.name.clone(),
        None => String::new(),
    };
    let mut prices = BTreeMap::new();
    if let Some((price, at)) = p.prices.get(&underlying).copied() {
        prices.insert(
            underlying.clone(),
            PriceView {
                price: wad_str(price),
                observed_at: at,
                age_s: now.saturating_sub(at),
                heartbeat_s: 0,
                max_age_s: 0,
                deviation: "0".into(),
                stale: false,
            },
        );
    }
    let band = t.band();
    let e = t.exposure(now).ok();
    let wanted = t.wanted(now).unwrap_or_default();
    let mut should = BTreeMap::new();
    should.insert("venue".to_string(), wanted.first().map(|c| c.action.name()).unwrap_or("none").to_string());
    let mut venue = t.venue_figures(now);
    let mut position = BTreeMap::new();
    if let Some(size) = venue.remove("size") {
        position.insert(format!("size_{underlying}"), size);
    }
    let pending = venue.get("pending_order").cloned();
    let twap = venue.remove("twap_leverage_ratio");
    let balances = t.balances();
    let sum = balances.iter().fold(U256::ZERO, |a, (_, v)| a + *v);
    ProductView {
        underlying: underlying.clone(),
        id: p.id.clone(),
        kind: t.kind().name().to_string(),
        symbol: t.symbol().to_string(),
        name,
        seq,
        as_of: now,
        blocked: pending
            .map(|o| format!("an order of {o} is pending on the venue: mint, redeem and rebalance wait for it")),
        nav_per_token: t.nav_per_token(now).ok().map(wad_str),
        equity_usd: e.map(|e| wad_str(e.equity)),
        leverage_ratio: t.leverage(now).ok().map(signed),
        band: Band {
            min: signed(band.min),
            target: signed(band.target),
            max: signed(band.max),
            ripcord: band.emergency.and_then(|e| e.leverage).map(signed).unwrap_or_default(),
        },
        twap_leverage_ratio: twap,
        should_rebalance: should,
        allowed_callers: vec![],
        anyone_callable: true,
        position,
        lending_account: BTreeMap::new(),
        venue_account: venue,
        funding_paid_usd: t.funding_paid(now).ok().map(signed),
        risk: risk(t, now),
        pools: BTreeMap::new(),
        prices,
        supply: wad_str(t.supply()),
        supply_cap: String::new(),
        holders: balances.len(),
        supply_equals_balances: sum == t.supply(),
    }
}

fn lending_view(p: &ProductState, t: &keel_core::strategy::fli::FliToken, seq: u64, now: u64) -> ProductView {
    let f = &t.fli;
    let m = &t.market;
    let (cd, bd) = (m.decimals(t.collateral), m.decimals(t.borrow));
    let (cs, bs) = (m.symbol(t.collateral).to_string(), m.symbol(t.borrow).to_string());
    let mut prices = BTreeMap::new();
    let mut blocked = Vec::new();
    for (asset, feed) in [(&cs, m.feed(t.collateral)), (&bs, m.feed(t.borrow))] {
        let (price, at) = p.prices.get(asset).copied().unwrap_or((U256::ZERO, 0));
        let age = now.saturating_sub(at);
        let stale = feed.latest(now).is_err();
        if let Err(e) = feed.latest(now) {
            blocked.push(format!("{asset} price: {e}"));
        }
        prices.insert(
            asset.clone(),
            PriceView {
                price: wad_str(price),
                observed_at: at,
                age_s: age,
                heartbeat_s: feed.heartbeat,
                max_age_s: feed.max_staleness,
                deviation: wad_str(feed.deviation_threshold.0),
                stale,
            },
        );
    }
    let nav = t.nav(now).ok();
    let lr = t.current_leverage_ratio(now).ok();
    let mut should = BTreeMap::new();
    match t.should_rebalance(now) {
        Ok(list) => {
            for (name, s) in list {
                should.insert(
                    name,
                    match s {
                        keel_core::strategy::fli::ShouldRebalance::None => "none",
                        keel_core::strategy::fli::ShouldRebalance::Rebalance => "rebalance",
                        keel_core::strategy::fli::ShouldRebalance::IterateRebalance => "iterate",
                        keel_core::strategy::fli::ShouldRebalance::Ripcord => "ripcord",
                    }
                    .to_string(),
                );
            }
        }
        Err(_) => {
            for (name, _) in &f.exchanges {
                should.insert(name.clone(), "none".to_string());
            }
        }
    }
    let mut position = BTreeMap::new();
    let supplied = t.market.supply_balance(t.account, t.collateral, now).unwrap_or_default();
    let owed = t.market.debt_balance(t.account, t.borrow, now).unwrap_or_default();
    position.insert(format!("collateral_{cs}"), units_str(supplied, cd));
    position.insert(format!("debt_{bs}"), units_str(owed, bd));
    position.insert(format!("idle_{bs}"), units_str(t.idle_borrow, bd));
    let mut lending = BTreeMap::new();
    if let Ok(a) = t.market.account_data(t.account, now) {
        lending.insert("collateral_usd".into(), units_str(a.collateral_base, 8));
        lending.insert("debt_usd".into(), units_str(a.debt_base, 8));
        lending.insert("health_factor".into(), fmt_hf(a.health_factor));
        lending.insert("protocol".into(), m.protocol().as_str().into());
    }
    let mut pools = BTreeMap::new();
    for (name, pool) in &t.pools {
        // chart figure only (f64): the collateral's price in the pool, in the borrow asset
        let p1in0 = pool.price1_in_0_f64();
        let usd = if pool.token1.symbol == cs {
            p1in0
        } else if p1in0 > 0.0 {
            1.0 / p1in0
        } else {
            0.0
        };
        pools.insert(name.clone(), format!("{usd:.2}"));
    }
    let underlying = p.product().map(|x| x.token.underlying.clone()).unwrap_or_else(|_| cs.clone());
    ProductView {
        underlying,
        id: p.id.clone(),
        kind: "lending-fli".into(),
        symbol: t.ledger.config.symbol.clone(),
        name: t.ledger.config.name.clone(),
        seq,
        as_of: now,
        blocked: if blocked.is_empty() { None } else { Some(blocked.join("; ")) },
        nav_per_token: nav.map(|n| wad_str(n.per_token)),
        equity_usd: nav.map(|n| wad_str(n.equity)),
        leverage_ratio: lr.map(wad_str),
        band: Band {
            min: wad_str(f.methodology.min_leverage_ratio),
            target: wad_str(f.methodology.target_leverage_ratio),
            max: wad_str(f.methodology.max_leverage_ratio),
            ripcord: wad_str(f.incentive.incentivized_leverage_ratio),
        },
        twap_leverage_ratio: if f.twap_leverage_ratio.is_zero() { None } else { Some(wad_str(f.twap_leverage_ratio)) },
        should_rebalance: should,
        allowed_callers: f.allowed_callers.iter().map(|a| a.to_string()).collect(),
        anyone_callable: f.anyone_callable,
        position,
        lending_account: lending,
        venue_account: BTreeMap::new(),
        funding_paid_usd: None,
        risk: risk(t, now),
        pools,
        prices,
        supply: wad_str(t.ledger.total_supply()),
        supply_cap: wad_str(t.ledger.config.supply_cap),
        holders: t.ledger.balances().count(),
        supply_equals_balances: t.ledger.supply_matches_balances(),
    }
}
