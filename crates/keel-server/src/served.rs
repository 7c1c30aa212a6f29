//! What the service does with a product of any kind through the one token interface
//! ([`keel_core::leveraged::LeveragedToken`], held as a [`keel_core::leveraged::AnyToken`]).
//! Lending FLI keeps its own paths in [`crate::engine`] for what only it has (in-kind issue and
//! redeem, its pools and exchanges, the allow-list); every other kind — and any kind added later —
//! is driven from here and needs no edit in the service: mint for a value at the issue price,
//! redeem, transfer, engage, the keeper's calls, the price feed with the venue's own keepers,
//! liquidation and settings patches.

use crate::error::ApiError;
use crate::model::{Call, wad_str};
use keel_core::Address;
use keel_core::leveraged::LeveragedToken;
use keel_core::math::{SignedWad, U256, WAD, mul_div_up};
use keel_core::product::{AnyProduct, bounds};
use keel_core::strategy::keeper::{Action, Candidate};
use serde_json::{Value, json};

/// A product's token, of any kind.
pub use keel_core::leveraged::AnyToken as ServedToken;

/// A refusal for something only lending FLI products have.
pub fn lending_only(kind: &str, what: &str) -> ApiError {
    ApiError::Rejected(format!("{what} applies to lending FLI products; this is a {kind} product"))
}

fn core(e: impl Into<keel_core::Error>) -> ApiError {
    ApiError::from_core(e.into())
}

/// Parse a running product's file (for settings patches and views).
pub fn parse(text: &str, field: &str) -> Result<AnyProduct, ApiError> {
    AnyProduct::from_toml(text).map_err(|e| ApiError::bad(field, e.to_string()))
}

/// A price for the underlying: the feed answers and the venue's own keepers act on it.
pub fn observe_price(
    t: &mut dyn LeveragedToken,
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
    let did = t.on_price(now, price).map_err(core)?;
    Ok(json!(did))
}

/// Mint `quantity` tokens for `holder`: the holder pays `quantity × issue price` (NAV, or the
/// first issue's price), rounded up, at least the venue's minimum.
pub fn mint(t: &mut dyn LeveragedToken, holder: Address, quantity: U256, now: u64) -> Result<Value, ApiError> {
    let nav = t.issue_price(now).map_err(core)?;
    if nav.is_zero() {
        return Err(ApiError::Rejected("minting is paused: the token has no equity".into()));
    }
    let value = mul_div_up(quantity, nav, WAD, "mint").map_err(|e| core(keel_core::Error::from(e)))?;
    let min = t.min_issue_value();
    if value <= min {
        return Err(ApiError::bad(
            "quantity",
            format!(
                "{} tokens pay {} USD; a mint must pay more than {} USD on this venue (each order pays the venue's keeper deposit)",
                wad_str(quantity),
                wad_str(value),
                wad_str(min)
            ),
        ));
    }
    let f = t.issue(holder, value, now).map_err(core)?;
    Ok(flow_json(t, holder, &f, nav, "paid_usd"))
}

/// A mint's or redeem's reply: tokens, the value paid or received (`value_key`), the fee, NAV,
/// the holder's balance and the supply after it.
fn flow_json(
    t: &dyn LeveragedToken,
    holder: Address,
    f: &keel_core::leveraged::Flow,
    nav: U256,
    value_key: &str,
) -> Value {
    let mut v = json!({
        "quantity": wad_str(f.tokens),
        "fee_usd": wad_str(f.fee),
        "nav_per_token": wad_str(nav),
        "balance": wad_str(t.balance_of(holder)),
        "supply": wad_str(t.supply()),
    });
    v[value_key] = json!(wad_str(f.value));
    v
}

/// Redeem `quantity` of `holder`'s tokens at NAV.
pub fn redeem(t: &mut dyn LeveragedToken, holder: Address, quantity: U256, now: u64) -> Result<Value, ApiError> {
    let nav = t.nav_per_token(now).map_err(core)?;
    let f = t.redeem(holder, quantity, now).map_err(core)?;
    Ok(flow_json(t, holder, &f, nav, "received_usd"))
}

/// An operator's or keeper's call: engage, or what the methodology wants now (refused when it
/// wants something else or nothing).
pub fn call(t: &mut dyn LeveragedToken, caller: Address, call: Call, now: u64) -> Result<Value, ApiError> {
    let before = t.leverage(now).ok();
    let action = match call {
        Call::Rebalance => Action::Rebalance,
        Call::Ripcord => Action::Ripcord,
        Call::Iterate => Action::Iterate,
        Call::Engage => {
            let d = t.engage(caller, now).map_err(core)?;
            return Ok(json!({
                "call": call.name(),
                "event": d.event,
                "ordered": SignedWad(d.traded).to_string(),
                "leverage_before": before.map(|l| SignedWad(l).to_string()),
            }));
        }
        Call::Disengage => {
            return Err(ApiError::Rejected(format!(
                "disengage applies to lending FLI products; this is a {} product",
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
    let d = t.execute(caller, &Candidate { exchange: String::new(), action, chunk: U256::ZERO }, now).map_err(core)?;
    Ok(json!({
        "call": call.name(),
        "event": d.event,
        "ordered": SignedWad(d.traded).to_string(),
        "leverage_before": before.map(|l| SignedWad(l).to_string()),
        "reward_paid_wei": d.reward.to_string(),
    }))
}

/// Liquidate the token's account on its venue, if the venue allows.
pub fn liquidate(t: &mut dyn LeveragedToken, now: u64) -> Result<Value, ApiError> {
    let taken = t.liquidate(now).map_err(|e| ApiError::Rejected(e.to_string()))?;
    Ok(json!({ "liquidation_usd": wad_str(taken) }))
}
