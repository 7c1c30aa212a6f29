//! The token a product runs, of any kind, and what the service does with the kinds that are not
//! lending FLI. Lending FLI keeps its own paths in [`crate::engine`] (in-kind issue and redeem,
//! pools, exchanges, the allow-list); every other kind is driven through
//! [`keel_core::leveraged::LeveragedToken`]: mint, redeem, transfer, the keeper's call, the
//! price feed (with the venue's keeper filling a pending delayed order once it is executable),
//! liquidation and settings patches.

use crate::error::ApiError;
use crate::model::{Call, wad_str};
use keel_core::Address;
use keel_core::leveraged::LeveragedToken;
use keel_core::math::WAD;
use keel_core::math::{U256, mul_div_up};
use keel_core::product::PerpProduct;
use keel_core::product::{AnyProduct, ThresholdProduct, bounds};
use keel_core::strategy::fli::FliToken;
use keel_core::strategy::fli::perp_token::{PerpFliToken, vamm};
use keel_core::strategy::keeper::{Action, Candidate};
use keel_core::strategy::threshold::token::ThresholdToken;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A product's token. Stored in snapshots; a lending token is stored as it always was (the
/// representation is untagged: the kinds' fields differ), so existing snapshots load unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ServedToken {
    /// Lending FLI.
    Lending(Box<FliToken>),
    /// A threshold, daily or continuous token on a Synthetix-style market.
    Synthetix(Box<ThresholdToken>),
    /// A PerpV2 FLI token on a Perp-v2-style account and vAMM.
    Perp(Box<PerpFliToken>),
}

/// The vAMM liquidity the service gives a PerpV2 product (USD), as the simulator does.
pub const VAMM_TVL_USD: u64 = 200_000_000;

impl<'de> Deserialize<'de> for ServedToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // a lending token has a ledger, a PerpV2 token an index price; the Synthetix-style token
        // neither
        let v = Value::deserialize(d)?;
        if v.get("ledger").is_some() {
            serde_json::from_value(v).map(ServedToken::Lending).map_err(D::Error::custom)
        } else if v.get("index_price").is_some() {
            serde_json::from_value(v).map(ServedToken::Perp).map_err(D::Error::custom)
        } else {
            serde_json::from_value(v).map(ServedToken::Synthetix).map_err(D::Error::custom)
        }
    }
}

impl ServedToken {
    /// The token through the one interface.
    pub fn as_dyn(&self) -> &dyn LeveragedToken {
        match self {
            ServedToken::Lending(t) => t.as_ref(),
            ServedToken::Synthetix(t) => t.as_ref(),
            ServedToken::Perp(t) => t.as_ref(),
        }
    }

    /// The token through the one interface, to operate on.
    pub fn as_dyn_mut(&mut self) -> &mut dyn LeveragedToken {
        match self {
            ServedToken::Lending(t) => t.as_mut(),
            ServedToken::Synthetix(t) => t.as_mut(),
            ServedToken::Perp(t) => t.as_mut(),
        }
    }

    /// The lending FLI token, for what only it has.
    pub fn lending(&self) -> Option<&FliToken> {
        match self {
            ServedToken::Lending(t) => Some(t),
            _ => None,
        }
    }

    /// The lending FLI token, mutably.
    pub fn lending_mut(&mut self) -> Option<&mut FliToken> {
        match self {
            ServedToken::Lending(t) => Some(t),
            _ => None,
        }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.as_dyn().kind().name()
    }
}

/// A refusal for something only lending FLI products have.
pub fn lending_only(kind: &str, what: &str) -> ApiError {
    ApiError::Rejected(format!("{what} applies to lending FLI products; this is a {kind} product"))
}

/// Build a Synthetix-style product's token at `now`, its feed at the file's price.
pub fn create(p: &ThresholdProduct, now: u64) -> Result<ServedToken, ApiError> {
    let mut t = p.build(now);
    t.observe_price(now, p.price.0).map_err(|e| ApiError::bad("toml", e.to_string()))?;
    Ok(ServedToken::Synthetix(Box::new(t)))
}

/// Parse a product file of the Synthetix-style shape, for settings patches.
pub fn parse_threshold(text: &str) -> Result<ThresholdProduct, ApiError> {
    match AnyProduct::from_toml(text) {
        Ok(AnyProduct::Threshold(p)) => Ok(*p),
        Ok(_) => Err(ApiError::bad("patch", "would change the product's kind; create a new product")),
        Err(e) => Err(ApiError::bad("patch", e.to_string())),
    }
}

fn core(e: impl Into<keel_core::Error>) -> ApiError {
    ApiError::from_core(e.into())
}

/// A price for the underlying: the feed answers and the venue's keeper fills the token's
/// pending delayed order if it has become executable (at this price). Returns what happened.
pub fn observe_price(
    t: &mut ThresholdToken,
    underlying: &str,
    asset: &str,
    price: U256,
    now: u64,
) -> Result<Value, ApiError> {
    if asset != underlying {
        return Err(ApiError::bad(
            "asset",
            format!("'{asset}' is not this product's underlying; it tracks {underlying}"),
        ));
    }
    bounds::check_usd_price(price).map_err(|e| ApiError::bad("price", e))?;
    let mut next = t.clone();
    next.observe_price(now, price).map_err(core)?;
    let mut filled = Value::Null;
    if let Some(order) = next.market.orders.get(&next.account).cloned()
        && now > order.intention_time + next.market.params.delayed_order_min_age
    {
        let account = next.account;
        filled = match next.market.execute_delayed_order(account, now, price, false) {
            Ok(_) => {
                json!({ "filled": wad_str(order.size_delta.unsigned_abs()), "side": if order.size_delta.is_negative() { "sell" } else { "buy" } })
            }
            Err(e) => {
                // refused at execution (limit, margin): cancelled once past the maximum age
                if now.saturating_sub(order.intention_time) >= next.market.params.delayed_order_max_age {
                    next.market
                        .cancel_delayed_order(account, now, price, false)
                        .map_err(|e| ApiError::Rejected(e.to_string()))?;
                    json!({ "cancelled": e.to_string() })
                } else {
                    json!({ "refused": e.to_string() })
                }
            }
        };
    }
    *t = next;
    Ok(filled)
}

/// Mint `quantity` tokens for `holder` at the exchange rate: the holder pays `quantity × NAV`
/// (1.0 before the first mint), rounded up.
pub fn mint(t: &mut dyn LeveragedToken, holder: Address, quantity: U256, now: u64) -> Result<Value, ApiError> {
    let nav = t.issue_price(now).map_err(core)?;
    if nav.is_zero() {
        return Err(ApiError::Rejected("minting is paused: the token has no equity".into()));
    }
    let value = mul_div_up(quantity, nav, WAD, "mint").map_err(|e| core(keel_core::Error::from(e)))?;
    let f = t.issue(holder, value, now).map_err(core)?;
    Ok(json!({
        "quantity": wad_str(f.tokens),
        "paid_usd": wad_str(f.value),
        "fee_usd": wad_str(f.fee),
        "nav_per_token": wad_str(nav),
        "balance": wad_str(t.balance_of(holder)),
        "supply": wad_str(t.supply()),
    }))
}

/// [`mint`] on a Synthetix-style market: every order pays the venue's keeper deposit, so a
/// payment that does not cover it twice cannot open or resize the position.
pub fn mint_synthetix(t: &mut ThresholdToken, holder: Address, quantity: U256, now: u64) -> Result<Value, ApiError> {
    let nav = t.issue_price(now).map_err(core)?;
    let value = mul_div_up(quantity, nav, WAD, "mint").map_err(|e| core(keel_core::Error::from(e)))?;
    let fee = t.market.params.min_keeper_fee;
    if value <= fee.saturating_mul(U256::from(2u64)) {
        return Err(ApiError::bad(
            "quantity",
            format!(
                "{} tokens pay {} sUSD; a mint must pay more than twice the venue's keeper deposit ({} sUSD), which its order pays",
                wad_str(quantity),
                wad_str(value),
                wad_str(fee)
            ),
        ));
    }
    mint(t, holder, quantity, now)
}

/// Redeem `quantity` of `holder`'s tokens at the exchange rate.
pub fn redeem(t: &mut dyn LeveragedToken, holder: Address, quantity: U256, now: u64) -> Result<Value, ApiError> {
    let nav = t.nav_per_token(now).map_err(core)?;
    let f = t.redeem(holder, quantity, now).map_err(core)?;
    Ok(json!({
        "quantity": wad_str(f.tokens),
        "received_usd": wad_str(f.value),
        "fee_usd": wad_str(f.fee),
        "nav_per_token": wad_str(nav),
        "balance": wad_str(t.balance_of(holder)),
        "supply": wad_str(t.supply()),
    }))
}

/// The keeper's call: the token's evaluation (a rebalance order, or a close under the minimum
/// margin). Refused when the methodology wants nothing now.
pub fn call(t: &mut dyn LeveragedToken, caller: Address, call: Call, now: u64) -> Result<Value, ApiError> {
    let action = match call {
        Call::Rebalance => Action::Rebalance,
        Call::Ripcord => Action::Ripcord,
        Call::Iterate => Action::Iterate,
        Call::Engage | Call::Disengage => {
            return Err(ApiError::Rejected(format!(
                "{} applies to FLI products; a {} product opens its position with the first mint",
                call.name(),
                t.kind().name()
            )));
        }
    };
    let wanted = t.wanted(now).map_err(core)?;
    if !wanted.iter().any(|c| c.action == action) {
        return Err(ApiError::Rejected(format!(
            "{} is not due: the methodology wants {}",
            call.name(),
            if wanted.is_empty() {
                "nothing now".to_string()
            } else {
                wanted.iter().map(|c| c.action.name()).collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let before = t.leverage(now).ok();
    let d = t.execute(caller, &Candidate { exchange: String::new(), action, chunk: U256::ZERO }, now).map_err(core)?;
    Ok(json!({
        "call": call.name(),
        "event": d.event,
        "ordered": keel_core::math::SignedWad(d.traded).to_string(),
        "leverage_before": before.map(|l| keel_core::math::SignedWad(l).to_string()),
    }))
}

/// Liquidate the token's account on its venue, if the venue allows.
pub fn liquidate(t: &mut ThresholdToken, now: u64) -> Result<Value, ApiError> {
    let p = t.oracle_price;
    if !t.market.can_liquidate(t.account, now, p).map_err(|e| ApiError::Rejected(e.to_string()))? {
        return Err(ApiError::Rejected(
            "the token's position is above its liquidation margin; nothing to liquidate".into(),
        ));
    }
    let mut next = t.clone();
    let fee = next.market.liquidate(next.account, now, p).map_err(|e| ApiError::Rejected(e.to_string()))?;
    *t = next;
    Ok(json!({ "liquidation_fee": wad_str(fee) }))
}

/// Apply a validated product file's settings to the running token.
pub fn update_settings(
    t: &mut ThresholdToken,
    new: &ThresholdProduct,
    old: &ThresholdProduct,
) -> Result<Vec<String>, ApiError> {
    if new.underlying != old.underlying || new.venue != old.venue {
        return Err(ApiError::bad(
            "patch",
            "the underlying and the venue cannot change on a running product; create a new product",
        ));
    }
    let mut changed = Vec::new();
    if new.settings != old.settings {
        t.settings = new.settings.clone();
        changed.push("methodology".to_string());
    }
    if new.policy != old.policy {
        t.policy = new.policy;
        changed.push("policy".to_string());
    }
    if new.symbol != old.symbol {
        t.symbol = new.symbol.clone();
        changed.push("token.symbol".to_string());
    }
    if new.name != old.name {
        changed.push("token.name".to_string());
    }
    Ok(changed)
}

/// Build a PerpV2 FLI product's token at `now` around the file's price.
pub fn create_perp(p: &PerpProduct, operator: Address, now: u64) -> Result<ServedToken, ApiError> {
    let tvl = U256::from(VAMM_TVL_USD) * WAD;
    let t = p.build(p.price.0, tvl, operator, now).map_err(|e| ApiError::bad("toml", e.to_string()))?;
    Ok(ServedToken::Perp(Box::new(t)))
}

/// Parse a PerpV2 product file, for settings patches.
pub fn parse_perp(text: &str) -> Result<PerpProduct, ApiError> {
    match AnyProduct::from_toml(text) {
        Ok(AnyProduct::Perp(p)) => Ok(*p),
        Ok(_) => Err(ApiError::bad("patch", "would change the product's kind; create a new product")),
        Err(e) => Err(ApiError::bad("patch", e.to_string())),
    }
}

/// A price for a PerpV2 token's underlying: the index moves; the arbitrageur trades the vAMM to
/// it (its liquidity re-centred once the price is 20% from where it was placed); funding is
/// settled at a zero premium.
pub fn observe_perp_price(
    t: &mut PerpFliToken,
    underlying: &str,
    asset: &str,
    price: U256,
    center: &mut U256,
    now: u64,
) -> Result<(), ApiError> {
    if asset != underlying {
        return Err(ApiError::bad(
            "asset",
            format!("'{asset}' is not this product's underlying; it tracks {underlying}"),
        ));
    }
    bounds::check_usd_price(price).map_err(|e| ApiError::bad("price", e))?;
    let mut next = t.clone();
    next.index_price = price;
    let moved = keel_core::math::to_f64(price, 18) / keel_core::math::to_f64(*center, 18);
    let recenter = moved.ln().abs() >= 0.2;
    if recenter {
        next.pool =
            vamm(price, U256::from(VAMM_TVL_USD) * WAD, 500).map_err(|e| ApiError::bad("price", e.to_string()))?;
    } else {
        let sqrt = keel_core::venue::amm::sqrt_price_x96_from_ratio(price, WAD)
            .map_err(|e| ApiError::bad("price", format!("the vAMM cannot trade at this price: {e}")))?;
        next.pool.move_price_to(sqrt).map_err(|e| ApiError::Rejected(format!("vAMM: {e}")))?;
    }
    next.market.accrue_funding(now, price, price).map_err(|e| ApiError::Rejected(e.to_string()))?;
    *t = next;
    if recenter {
        *center = price;
    }
    Ok(())
}

/// Liquidate a PerpV2 token's account under its maintenance margin.
pub fn liquidate_perp(t: &mut PerpFliToken) -> Result<Value, ApiError> {
    let p = t.index_price;
    if !t.market.is_liquidatable(p).map_err(|e| ApiError::Rejected(e.to_string()))? {
        return Err(ApiError::Rejected("the token's margin ratio is above maintenance; nothing to liquidate".into()));
    }
    let mut next = t.clone();
    let out = next.market.liquidate(p).map_err(|e| ApiError::Rejected(e.to_string()))?;
    *t = next;
    Ok(json!({ "liquidation": format!("{out:?}") }))
}

/// Apply a validated PerpV2 product file's settings to the running token.
pub fn update_perp_settings(
    t: &mut PerpFliToken,
    new: &PerpProduct,
    old: &PerpProduct,
) -> Result<Vec<String>, ApiError> {
    if new.base != old.base || new.venue != old.venue || new.collateral != old.collateral {
        return Err(ApiError::bad(
            "patch",
            "the venue and its assets cannot change on a running product; create a new product",
        ));
    }
    let mut changed = Vec::new();
    if new.methodology != old.methodology {
        t.fli.methodology = new.methodology.clone();
        changed.push("methodology".to_string());
    }
    if new.execution != old.execution {
        t.fli.execution = new.execution.clone();
        changed.push("execution".to_string());
    }
    if new.incentive != old.incentive {
        t.fli.incentive = new.incentive.clone();
        changed.push("incentive".to_string());
    }
    if new.exchange != old.exchange {
        t.fli.exchange = new.exchange.clone();
        changed.push("exchange".to_string());
    }
    if new.token.supply_cap != old.token.supply_cap
        || new.token.mint_fee != old.token.mint_fee
        || new.token.redeem_fee != old.token.redeem_fee
    {
        (t.supply_cap, t.mint_fee, t.redeem_fee) = (new.token.supply_cap, new.token.mint_fee.0, new.token.redeem_fee.0);
        changed.push("token".to_string());
    }
    if new.token.symbol != old.token.symbol {
        t.symbol = new.token.symbol.clone();
        changed.push("token.symbol".to_string());
    }
    if new.token.name != old.token.name {
        changed.push("token.name".to_string());
    }
    Ok(changed)
}
