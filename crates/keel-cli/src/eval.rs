//! `keel strategy eval`: read a position snapshot and print what the methodology would do.

use anyhow::{Context, Result, anyhow, bail};
use keel_core::I256;
use keel_core::Wad;
use keel_core::math::{U256, parse_units};
use keel_core::strategy::fli::perp::PerpSnapshot;
use keel_core::strategy::fli::{Evaluation, Fli, RiskParams, Snapshot};
use serde_json::{Map, Value};
use std::path::Path;
use std::process::ExitCode;

const KNOWN: &[&str] = &[
    "now",
    "total_supply",
    "collateral_balance",
    "borrow_balance",
    "collateral_price",
    "borrow_price",
    "twap_leverage_ratio",
    "global_last_trade_timestamp",
    "exchanges",
    "ether_balance",
];

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Value> {
    obj.get(name).ok_or_else(|| anyhow!("state file: missing field `{name}`"))
}

/// A non-negative integer given as a decimal string or a JSON integer.
fn integer(v: &Value, name: &str) -> Result<U256> {
    let s = match v {
        Value::String(s) => s.clone(),
        // Exact digits: serde_json keeps big numbers as written (arbitrary_precision).
        Value::Number(n) => n.to_string(),
        _ => bail!("state file: field `{name}` must be a non-negative whole number as a decimal string, got {v}"),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("state file: field `{name}` must be a non-negative whole number as a decimal string, got \"{s}\"");
    }
    U256::from_str_radix(&s, 10).map_err(|_| anyhow!("state file: field `{name}` is too large for 256 bits"))
}

fn timestamp(v: &Value, name: &str) -> Result<u64> {
    let n = integer(v, name)?;
    u64::try_from(n).map_err(|_| anyhow!("state file: field `{name}` is not a unix time in seconds"))
}

/// A USD price as an 8-decimal oracle answer.
fn price(v: &Value, name: &str) -> Result<U256> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => bail!("state file: field `{name}` must be a USD price as a decimal string, got {v}"),
    };
    let e8 =
        parse_units(&s, 8).map_err(|e| anyhow!("state file: field `{name}`: {e} (oracle answers have 8 decimals)"))?;
    if e8.is_zero() {
        bail!("state file: field `{name}` must be positive, got \"{s}\"");
    }
    Ok(e8)
}

/// A custom bound: a ratio (`1.6`) or a whole number in 1e18 units.
pub fn bound(s: &str, flag: &str) -> Result<U256> {
    let t = s.trim();
    if t.bytes().all(|b| b.is_ascii_digit()) && t.len() >= 16 {
        return U256::from_str_radix(t, 10).map_err(|_| anyhow!("{flag} {s} is too large"));
    }
    let w = Wad::parse(t).map_err(|e| anyhow!("{flag}: {e}"))?;
    if w.0 > U256::from(1000u64) * Wad::ONE.0 {
        bail!("{flag} {s}: give a ratio such as 2.4, or a whole number in 1e18 units of at least 16 digits");
    }
    Ok(w.0)
}

/// The fields of a state file that `strategy eval` does not read (they are ignored; the caller
/// warns about them).
pub fn unknown_state_fields(text: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(obj)) => obj.keys().filter(|k| !KNOWN.contains(&k.as_str())).cloned().collect(),
        _ => Vec::new(),
    }
}

/// Build the strategy and snapshot a state file describes.
pub fn load_state(fli: &mut Fli, text: &str) -> Result<Snapshot> {
    let v: Value = serde_json::from_str(text).context("state file is not valid JSON")?;
    let obj = v.as_object().ok_or_else(|| anyhow!("state file must be a JSON object"))?;
    let snap = Snapshot {
        now: timestamp(field(obj, "now")?, "now")?,
        total_supply: integer(field(obj, "total_supply")?, "total_supply")?,
        collateral_balance: integer(field(obj, "collateral_balance")?, "collateral_balance")?,
        borrow_balance: integer(field(obj, "borrow_balance")?, "borrow_balance")?,
        collateral_price_e8: price(field(obj, "collateral_price")?, "collateral_price")?,
        borrow_price_e8: price(field(obj, "borrow_price")?, "borrow_price")?,
    };
    fli.twap_leverage_ratio = integer(field(obj, "twap_leverage_ratio")?, "twap_leverage_ratio")?;
    fli.global_last_trade_timestamp =
        timestamp(field(obj, "global_last_trade_timestamp")?, "global_last_trade_timestamp")?;
    fli.ether_balance = integer(field(obj, "ether_balance")?, "ether_balance")?;
    let ex = field(obj, "exchanges")?.as_object().ok_or_else(|| {
        anyhow!("state file: field `exchanges` must be an object of NAME: {{\"last_trade_timestamp\": T}}")
    })?;
    for name in ex.keys() {
        if fli.exchange(name).is_err() {
            let known: Vec<&str> = fli.exchanges.iter().map(|(n, _)| n.as_str()).collect();
            bail!(
                "state file: field `exchanges.{name}`: the product has no exchange named '{name}' (it has: {})",
                known.join(", ")
            );
        }
    }
    for (name, x) in fli.exchanges.iter_mut() {
        let path = format!("exchanges.{name}.last_trade_timestamp");
        let e = ex
            .get(name.as_str())
            .ok_or_else(|| anyhow!("state file: missing field `exchanges.{name}` (the product's exchange)"))?;
        let ts = e.get("last_trade_timestamp").ok_or_else(|| anyhow!("state file: missing field `{path}`"))?;
        x.last_trade_timestamp = timestamp(ts, &path)?;
    }
    Ok(snap)
}

fn to_json(e: &Evaluation) -> Value {
    let map = |v: &[(String, U256)]| {
        Value::Object(v.iter().map(|(k, x)| (k.clone(), Value::String(x.to_string()))).collect())
    };
    let mut o = Map::new();
    o.insert("leverage_ratio".into(), Value::String(e.leverage_ratio.to_string()));
    o.insert(
        "should_rebalance".into(),
        Value::Object(e.should_rebalance.iter().map(|(k, s)| (k.clone(), Value::String(s.as_str().into()))).collect()),
    );
    o.insert("new_leverage_ratio".into(), Value::String(e.new_leverage_ratio.to_string()));
    o.insert("is_lever".into(), Value::Bool(e.is_lever));
    o.insert("is_ripcord".into(), Value::Bool(e.is_ripcord));
    o.insert("total_rebalance_notional".into(), map(&e.total_rebalance_notional));
    o.insert("chunk_rebalance_notional".into(), map(&e.chunk_rebalance_notional));
    o.insert("sizes".into(), map(&e.sizes));
    o.insert("sell_asset".into(), Value::String(e.sell_asset.clone()));
    o.insert("buy_asset".into(), Value::String(e.buy_asset.clone()));
    o.insert("ether_incentive".into(), Value::String(e.ether_incentive.to_string()));
    Value::Object(o)
}

/// A signed whole number given as a decimal string or a JSON integer.
fn signed(v: &Value, name: &str) -> Result<I256> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => bail!("state file: field `{name}` must be a whole number (1e18 units) as a decimal string, got {v}"),
    };
    let body = s.strip_prefix('-').unwrap_or(&s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        bail!("state file: field `{name}` must be a whole number (1e18 units) as a decimal string, got \"{s}\"");
    }
    I256::from_dec_str(&s).map_err(|_| anyhow!("state file: field `{name}` does not fit in a signed 256-bit integer"))
}

/// A signed bound: a ratio (`-1.6`) or a whole number in 1e18 units.
fn signed_bound(s: &str, flag: &str) -> Result<I256> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let mag = bound(body, flag)?;
    let v = I256::try_from(mag).map_err(|_| anyhow!("{flag} {s} is too large"))?;
    Ok(if neg { -v } else { v })
}

fn run_perp(
    p: &keel_core::product::PerpProduct,
    state: &Path,
    min: Option<&str>,
    max: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let mut fli = p.strategy().map_err(|e| anyhow!("{e}"))?;
    let text = crate::product_cmd::read_small(state, "state file")?;
    let v: Value = serde_json::from_str(&text).context("state file is not valid JSON")?;
    let obj = v.as_object().ok_or_else(|| anyhow!("state file must be a JSON object"))?;
    const PERP_KNOWN: &[&str] = &[
        "now",
        "total_supply",
        "collateral_balance",
        "base_balance",
        "quote_balance",
        "owed_realized_pnl",
        "pending_funding",
        "base_price",
        "twap_leverage_ratio",
        "global_last_trade_timestamp",
        "exchanges",
        "ether_balance",
    ];
    for k in obj.keys() {
        if !PERP_KNOWN.contains(&k.as_str()) {
            eprintln!("warning: state file: unknown field `{k}` ignored");
        }
    }
    let snap = PerpSnapshot {
        now: timestamp(field(obj, "now")?, "now")?,
        total_supply: integer(field(obj, "total_supply")?, "total_supply")?,
        collateral: signed(field(obj, "collateral_balance")?, "collateral_balance")?,
        base_balance: signed(field(obj, "base_balance")?, "base_balance")?,
        quote_balance: signed(field(obj, "quote_balance")?, "quote_balance")?,
        owed_realized_pnl: obj
            .get("owed_realized_pnl")
            .map(|v| signed(v, "owed_realized_pnl"))
            .transpose()?
            .unwrap_or(I256::ZERO),
        pending_funding: obj
            .get("pending_funding")
            .map(|v| signed(v, "pending_funding"))
            .transpose()?
            .unwrap_or(I256::ZERO),
        base_price: {
            let e8 = price(field(obj, "base_price")?, "base_price")?;
            I256::try_from(e8 * keel_core::math::pow10(10))
                .map_err(|_| anyhow!("state file: field `base_price` is too large"))?
        },
    };
    fli.twap_leverage_ratio = signed(field(obj, "twap_leverage_ratio")?, "twap_leverage_ratio")?;
    fli.ether_balance = integer(field(obj, "ether_balance")?, "ether_balance")?;
    // PerpV2 keeps one timestamp for everything: the later of the two the state gives.
    let global =
        obj.get("global_last_trade_timestamp").map(|v| timestamp(v, "global_last_trade_timestamp")).transpose()?;
    let mut exchange_ts = None;
    if let Some(ex) = obj.get("exchanges") {
        let ex = ex.as_object().ok_or_else(|| {
            anyhow!("state file: field `exchanges` must be an object of NAME: {{\"last_trade_timestamp\": T}}")
        })?;
        for (name, e) in ex {
            if name != &p.exchange_name {
                bail!("state file: field `exchanges.{name}`: the product's exchange is '{}'", p.exchange_name);
            }
            let path = format!("exchanges.{name}.last_trade_timestamp");
            exchange_ts = Some(timestamp(
                e.get("last_trade_timestamp").ok_or_else(|| anyhow!("state file: missing field `{path}`"))?,
                &path,
            )?);
        }
    }
    fli.last_trade_timestamp = match (global, exchange_ts) {
        (Some(g), Some(x)) => {
            if g != x {
                eprintln!(
                    "warning: state file: global_last_trade_timestamp {g} and exchanges.{}.last_trade_timestamp {x} differ; PerpV2 keeps one timestamp, using the later",
                    p.exchange_name
                );
            }
            g.max(x)
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => bail!(
            "state file: missing field `global_last_trade_timestamp` (or exchanges.{}.last_trade_timestamp)",
            p.exchange_name
        ),
    };
    let bounds = match (min, max) {
        (Some(lo), Some(hi)) => Some((signed_bound(lo, "--min")?, signed_bound(hi, "--max")?)),
        _ => None,
    };
    let e = fli.evaluate(&snap, bounds).map_err(|e| anyhow!("{e}"))?;
    let asset = |a: &str| if a == "base" { p.base.clone() } else { "vUSD".to_string() };
    let name = &p.exchange_name;
    if json {
        let one = |v: String| Value::Object(std::iter::once((name.clone(), Value::String(v))).collect());
        let mut o = Map::new();
        o.insert("leverage_ratio".into(), Value::String(e.leverage_ratio.to_string()));
        o.insert("should_rebalance".into(), one(e.should_rebalance.as_str().to_string()));
        o.insert("new_leverage_ratio".into(), Value::String(e.new_leverage_ratio.to_string()));
        o.insert("is_lever".into(), Value::Bool(e.is_lever));
        o.insert("is_ripcord".into(), Value::Bool(e.is_ripcord));
        o.insert("total_rebalance_notional".into(), one(e.total.to_string()));
        o.insert("chunk_rebalance_notional".into(), one(e.chunk.to_string()));
        o.insert("sizes".into(), one(e.chunk.to_string()));
        o.insert("sell_asset".into(), Value::String(asset(e.sell_asset)));
        o.insert("buy_asset".into(), Value::String(asset(e.buy_asset)));
        o.insert("ether_incentive".into(), Value::String(e.ether_incentive.to_string()));
        println!("{}", serde_json::to_string_pretty(&Value::Object(o))?);
        return Ok(ExitCode::SUCCESS);
    }
    use keel_core::SignedWad;
    println!("{} at t={}", p.token.symbol, snap.now);
    println!(
        "  leverage ratio      {}x  (band {}x..{}x, ripcord at |{}|x)",
        SignedWad(e.leverage_ratio),
        SignedWad(p.methodology.min_leverage_ratio),
        SignedWad(p.methodology.max_leverage_ratio),
        SignedWad(p.incentive.incentivized_leverage_ratio)
    );
    println!("  should_rebalance    {}", e.should_rebalance.as_str());
    println!(
        "  next target         {}x  (sell {}, buy {})",
        SignedWad(e.new_leverage_ratio),
        asset(e.sell_asset),
        asset(e.buy_asset)
    );
    println!("  total               {} base units (positive buys base)", e.total);
    println!("  chunk               {} base units", e.chunk);
    println!("  ether incentive     {} ETH", Wad(e.ether_incentive));
    Ok(ExitCode::SUCCESS)
}

/// `keel strategy eval`.
pub fn run(product: &Path, state: &Path, min: Option<&str>, max: Option<&str>, json: bool) -> Result<ExitCode> {
    let p = match crate::product_cmd::load_any(product)? {
        keel_core::product::AnyProduct::Lending(p) => *p,
        keel_core::product::AnyProduct::Perp(p) => return run_perp(&p, state, min, max, json),
        keel_core::product::AnyProduct::Threshold(p) => anyhow::bail!(
            "{}: {} is a threshold product; `strategy eval` covers FLI (lending and PerpV2) for now",
            product.display(),
            p.symbol
        ),
    };
    let mut fli = p.strategy(keel_core::Address::ZERO).map_err(|e| anyhow!("{e}"))?;
    let text = crate::product_cmd::read_small(state, "state file")?;
    for k in unknown_state_fields(&text) {
        eprintln!("warning: state file: unknown field `{k}` ignored");
    }
    let snap = load_state(&mut fli, &text)?;
    let bounds = match (min, max) {
        (Some(lo), Some(hi)) => Some((bound(lo, "--min")?, bound(hi, "--max")?)),
        _ => None,
    };
    let risk = RiskParams { ltv_bp: p.lending.ltv_bp, liquidation_threshold_bp: p.lending.liquidation_threshold_bp };
    let e = fli.evaluate(&snap, bounds, risk).map_err(|e| anyhow!("{e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(&e))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} at t={}", p.token.symbol, snap.now);
    println!(
        "  leverage ratio      {}x  (band {}x..{}x, ripcord at {}x)",
        Wad(e.leverage_ratio),
        Wad(p.methodology.min_leverage_ratio),
        Wad(p.methodology.max_leverage_ratio),
        Wad(p.incentive.incentivized_leverage_ratio)
    );
    println!(
        "  next target         {}x  ({}{})",
        Wad(e.new_leverage_ratio),
        if e.is_lever { "lever: sell " } else { "delever: sell " },
        e.sell_asset
    );
    if !fli.twap_leverage_ratio.is_zero() {
        println!("  TWAP in progress    target {}x", Wad(fli.twap_leverage_ratio));
    }
    println!("  ether incentive     {} ETH", Wad(e.ether_incentive));
    println!(
        "  {:<16} {:<18} {:>28} {:>28} {:>28}",
        "exchange",
        "should_rebalance",
        "total (collateral units)",
        "chunk (collateral units)",
        "size (sold asset units)"
    );
    for (i, (name, s)) in e.should_rebalance.iter().enumerate() {
        println!(
            "  {:<16} {:<18} {:>28} {:>28} {:>28}",
            name,
            s.as_str(),
            e.total_rebalance_notional[i].1.to_string(),
            e.chunk_rebalance_notional[i].1.to_string(),
            e.sizes[i].1.to_string()
        );
    }
    Ok(ExitCode::SUCCESS)
}
