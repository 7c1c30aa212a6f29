//! `keel product check` and `keel product calldata`.

use anyhow::{Context, Result};
use keel_core::Wad;
use keel_core::error::ProductError;
use keel_core::product::Product;
use std::path::Path;
use std::process::ExitCode;

/// Read and parse a product file; the error names the file.
pub fn load(file: &Path) -> Result<Product> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read product file {}", file.display()))?;
    Product::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), describe(&e)))
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
    match Product::from_toml(&text) {
        Ok(p) => {
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
    let p = load(file)?;
    let calls = p.calldata();
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
        println!("# {} ({}): reference setter arguments, struct field order", p.token.symbol, p.token.name);
        for (name, args) in &calls {
            let quoted: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
            println!("{name}\n  [{}]", quoted.join(","));
        }
    }
    Ok(ExitCode::SUCCESS)
}
