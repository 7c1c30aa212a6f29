//! `keel product check` and `keel product calldata`.

use anyhow::{Context, Result};
use keel_core::Wad;
use keel_core::error::ProductError;
use keel_core::product::{AnyProduct, PerpProduct, Product};
use std::path::Path;
use std::process::ExitCode;

/// Read and parse a lending product file; the error names the file.
pub fn load(file: &Path) -> Result<Product> {
    match load_any(file)? {
        AnyProduct::Lending(p) => Ok(*p),
        AnyProduct::Perp(_) | AnyProduct::Threshold(_) => {
            anyhow::bail!("{}: a perp product; this step needs a lending product", file.display())
        }
    }
}

fn threshold_summary(p: &keel_core::product::ThresholdProduct) -> String {
    use keel_core::strategy::threshold::{Side, token::Policy};
    let s = &p.settings;
    let side = match s.side {
        Side::Long => "long",
        Side::Short => "short",
    };
    let rule = match p.policy {
        Policy::Threshold => format!(
            "full rebalance when leverage drifts θ = {} (an underlying move of about {:.2}%)",
            Wad(s.rebalance_threshold),
            Wad(s.rebalance_threshold).to_f64() / Wad(s.target_leverage).to_f64() * 100.0
        ),
        Policy::Continuous(c) => format!(
            "continuous: hold {} within {}, de-lever below LSM {} or MCSM {} ({} price levels; m {}, i {}), reverse split under ${}",
            if c.entry_basis { "entry exposure L × capital" } else { "L × NAV" },
            Wad(c.tolerance),
            Wad(c.lsm_min),
            Wad(c.mcsm_min),
            if c.seed_model { "seed" } else { "venue" },
            Wad(c.maintenance),
            Wad(c.initial),
            Wad(c.reverse_split_threshold)
        ),
        Policy::Daily(d) => format!(
            "rebalance daily at {:02}:{:02} UTC and intraday at {}x{}",
            d.rebalance_time / 3600,
            d.rebalance_time % 3600 / 60,
            Wad(d.upper_trigger),
            d.lower_trigger.map(|l| format!(" or {}x", Wad(l))).unwrap_or_default()
        ),
    };
    format!(
        "ok: {} ({}) — {} on synthetix-perps-v2 {}: {side} {}x, {rule}, close below {} sUSD of margin",
        p.symbol,
        p.name,
        p.kind(),
        p.underlying,
        Wad(s.target_leverage),
        Wad(s.min_margin)
    )
}

/// Read and parse a product file of either shape; the error names the file.
pub fn load_any(file: &Path) -> Result<AnyProduct> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read product file {}", file.display()))?;
    AnyProduct::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), describe(&e)))
}

fn perp_summary(p: &PerpProduct) -> String {
    use keel_core::SignedWad;
    let m = &p.methodology;
    format!(
        "ok: {} ({}) — {} on {} {} with {} collateral: target {}x in [{}x, {}x], ripcord at {}x",
        p.token.symbol,
        p.token.name,
        p.kind,
        p.venue,
        p.base,
        p.collateral,
        SignedWad(m.target_leverage_ratio),
        SignedWad(m.min_leverage_ratio),
        SignedWad(m.max_leverage_ratio),
        SignedWad(p.incentive.incentivized_leverage_ratio)
    )
}

fn describe(e: &ProductError) -> String {
    match e {
        ProductError::Rules(v) => {
            let mut s = format!("{} rule(s) violated", v.len());
            for r in v {
                s.push_str(&format!("\n  - {r}"));
            }
            s
        }
        other => other.to_string(),
    }
}

/// `keel product check FILE`.
pub fn check(file: &Path) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read product file {}", file.display()))?;
    match AnyProduct::from_toml(&text) {
        Ok(AnyProduct::Perp(p)) => {
            println!("{}", perp_summary(&p));
            Ok(ExitCode::SUCCESS)
        }
        Ok(AnyProduct::Threshold(p)) => {
            println!("{}", threshold_summary(&p));
            Ok(ExitCode::SUCCESS)
        }
        Ok(AnyProduct::Lending(p)) => {
            let m = &p.methodology;
            println!(
                "ok: {} ({}) — {} on {}/{}: target {}x in [{}x, {}x], ripcord at {}x, {} exchange(s)",
                p.token.symbol,
                p.token.name,
                p.kind,
                p.collateral.asset,
                p.borrow.asset,
                Wad(m.target_leverage_ratio),
                Wad(m.min_leverage_ratio),
                Wad(m.max_leverage_ratio),
                Wad(p.incentive.incentivized_leverage_ratio),
                p.exchanges.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: invalid product: {}", file.display(), describe(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `keel product calldata FILE [--json]`.
pub fn calldata(file: &Path, json: bool) -> Result<ExitCode> {
    let (symbol, name, calls) = match load_any(file)? {
        AnyProduct::Lending(p) => (p.token.symbol.clone(), p.token.name.clone(), p.calldata()),
        AnyProduct::Perp(p) => (p.token.symbol.clone(), p.token.name.clone(), p.calldata()),
        AnyProduct::Threshold(p) => anyhow::bail!(
            "{}: {} is a threshold product; its parameters are set when the token is created, so there are no setter calls to print",
            file.display(),
            p.symbol
        ),
    };
    if json {
        let mut obj = serde_json::Map::new();
        for (name, args) in &calls {
            obj.insert(
                name.clone(),
                serde_json::Value::Array(args.iter().map(|a| serde_json::Value::String(a.clone())).collect()),
            );
        }
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(obj))?);
    } else {
        println!("# {symbol} ({name}): reference setter arguments, struct field order");
        for (name, args) in &calls {
            let quoted: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
            println!("{name}\n  [{}]", quoted.join(","));
        }
    }
    Ok(ExitCode::SUCCESS)
}
