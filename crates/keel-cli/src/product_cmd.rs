//! `keel product check` and `keel product calldata`.

use anyhow::{Context, Result};
use keel_core::Wad;
use keel_core::error::ProductError;
use keel_core::product::{AnyProduct, PerpProduct};
use std::path::Path;
use std::process::ExitCode;

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

/// The product `keel backtest` and `keel sweep` run without `--product`: ETH2x-FLI, built
/// into the binary (the same text as `products/eth2x-fli.toml`), so they work from any
/// directory.
pub const DEFAULT_PRODUCT: &str = include_str!("../../../products/eth2x-fli.toml");

/// How a default product is named in messages.
pub const DEFAULT_PRODUCT_NAME: &str = "eth2x-fli (built in)";

/// The largest product, state or config file keel reads (they are a few kilobytes).
pub const MAX_FILE: u64 = 1 << 20;

/// Read a small text file (a product, a state, a config), refusing one over [`MAX_FILE`]
/// before reading it.
pub fn read_small(path: &Path, what: &str) -> Result<String> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?.len();
    if len > MAX_FILE {
        anyhow::bail!("{what} {} is {len} bytes; keel reads at most {MAX_FILE} bytes (1 MiB) of it", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The text of `--product FILE`, or of the built-in default; with a name for messages.
pub fn product_text(file: Option<&Path>) -> Result<(String, String)> {
    match file {
        Some(f) => Ok((read_small(f, "product file")?, f.display().to_string())),
        None => Ok((DEFAULT_PRODUCT.to_string(), DEFAULT_PRODUCT_NAME.to_string())),
    }
}

/// Parse `--product FILE` or the built-in default.
pub fn load_product(file: Option<&Path>) -> Result<AnyProduct> {
    let (text, name) = product_text(file)?;
    parse_product(&text, &name)
}

/// Parse a product's text; the error names it (`name`) and lists every rule it breaks.
pub fn parse_product(text: &str, name: &str) -> Result<AnyProduct> {
    AnyProduct::from_toml(text).map_err(|e| anyhow::anyhow!("{name}: {}", describe(&e)))
}

/// Read and parse a product file of either shape; the error names the file.
pub fn load_any(file: &Path) -> Result<AnyProduct> {
    load_product(Some(file))
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

/// A product error as `keel product check` prints it: every violated rule on its own line.
pub fn describe(e: &ProductError) -> String {
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

/// `keel product check FILE`: the file's rules, then a start as a backtest starts it.
pub fn check(file: &Path) -> Result<ExitCode> {
    let text = read_small(file, "product file")?;
    match check_text(&text, &file.display().to_string()) {
        Ok(line) => {
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Check a product's text (named `name` in messages): its rules, then a start as a backtest
/// starts it. `Ok` is the one-line summary `keel product check` prints; `Err` the message it
/// prints, every violated rule on its own line.
pub fn check_text(text: &str, name: &str) -> std::result::Result<String, String> {
    let parsed = AnyProduct::from_toml(text);
    if let Ok(p) = &parsed
        && let Err(e) = keel_sim::start_check::start_check(p)
    {
        return Err(format!(
            "{name}: invalid product: its rules hold, but it cannot start on its venues at its own prices: {e}"
        ));
    }
    match parsed {
        Ok(AnyProduct::Perp(p)) => Ok(perp_summary(&p)),
        Ok(AnyProduct::Threshold(p)) => Ok(threshold_summary(&p)),
        Ok(AnyProduct::Lending(p)) => {
            let m = &p.methodology;
            Ok(format!(
                "ok: {} ({}) — {} on {}/{} ({}): target {}x in [{}x, {}x], ripcord at {}x, {} exchange(s)",
                p.token.symbol,
                p.token.name,
                p.kind,
                p.collateral.asset,
                p.borrow.asset,
                p.lending.protocol.as_str(),
                Wad(m.target_leverage_ratio),
                Wad(m.min_leverage_ratio),
                Wad(m.max_leverage_ratio),
                Wad(p.incentive.incentivized_leverage_ratio),
                p.exchanges.len()
            ))
        }
        Err(e) => Err(format!("{name}: invalid product: {}", describe(&e))),
    }
}

/// Setter calls: (function, arguments) in struct field order.
pub type Calls = Vec<(String, Vec<String>)>;

/// The symbol, name and setter calls of a product (`name` in messages). A threshold product
/// has none: its parameters are set when the token is created.
pub fn calldata_of(product: &AnyProduct, name: &str) -> Result<(String, String, Calls)> {
    Ok(match product {
        AnyProduct::Lending(p) => (p.token.symbol.clone(), p.token.name.clone(), p.calldata()),
        AnyProduct::Perp(p) => (p.token.symbol.clone(), p.token.name.clone(), p.calldata()),
        AnyProduct::Threshold(p) => anyhow::bail!(
            "{name}: {} is a threshold product; its parameters are set when the token is created, so there are no setter calls to print",
            p.symbol
        ),
    })
}

/// `keel product calldata FILE [--json]`.
pub fn calldata(file: &Path, json: bool) -> Result<ExitCode> {
    let (symbol, name, calls) = calldata_of(&load_any(file)?, &file.display().to_string())?;
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
