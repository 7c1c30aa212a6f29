//! What it takes to run a backtest again: keel's version, the product's file, settings and
//! hash, the prices file's hash, and a command line with every setting spelled out.

use crate::backtest::Args;
use keel_sim::RunInfo;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `s` quoted for a POSIX shell when it needs to be.
pub(crate) fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=%,+@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The run's record: `a` as parsed, `product` the product's text and name, `block_time` and
/// `chain` as resolved (defaults filled in), `prices` the prices file's bytes if any.
pub fn run_info(a: &Args, product: (&str, &str), block_time: u64, chain: &str, prices: Option<&[u8]>) -> RunInfo {
    let (text, name) = product;
    let mut c: Vec<String> = vec!["keel".into(), "backtest".into()];
    let mut flag = |f: &str, v: String| {
        c.push(format!("--{f}"));
        c.push(quote(&v));
    };
    if name != crate::product_cmd::DEFAULT_PRODUCT_NAME {
        flag("product", name.to_string());
    }
    match (&a.market.prices, &a.market.scenario) {
        (Some(p), _) => flag("prices", p.display().to_string()),
        (None, s) => flag("scenario", s.clone().unwrap_or_else(|| "default".into())),
    }
    if let Some(f) = &a.market.from {
        flag("from", f.clone());
    }
    if let Some(t) = &a.market.to {
        flag("to", t.clone());
    }
    flag("seed", a.market.seed.to_string());
    flag("chain", chain.to_string());
    flag("block-time", format!("{block_time}s"));
    flag("costs", a.costs.clone());
    if let Some(t) = a.tvl {
        flag("tvl", t.to_string());
    }
    flag("mints-per-day", a.mints_per_day.to_string());
    flag("redeems-per-day", a.redeems_per_day.to_string());
    flag("flow-size", a.flow_size.to_string());
    flag("keeper-poll", a.keeper_poll.to_string());
    flag("keeper-latency", a.keeper_latency.clone());
    flag("ripcord-bots", a.ripcord_bots.to_string());
    for (f, v) in a.funding.flags() {
        flag(f, v);
    }
    flag("sample", a.sample.clone());
    if a.market.allow_gaps {
        c.push("--allow-gaps".into());
    }
    RunInfo {
        keel_version: env!("CARGO_PKG_VERSION").to_string(),
        command: c.join(" "),
        product_file: name.to_string(),
        product_sha256: sha256_hex(text.as_bytes()),
        product_toml: text.to_string(),
        prices_file: a.market.prices.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        prices_sha256: prices.map(sha256_hex).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_quotes() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        for (case, s, want) in [
            ("plain", "eth2x-fli.toml", "eth2x-fli.toml"),
            ("space", "my file.csv", "'my file.csv'"),
            ("quote", "it's", r"'it'\''s'"),
            ("empty", "", "''"),
        ] {
            assert_eq!(quote(s), want, "case {case}");
        }
    }
}
