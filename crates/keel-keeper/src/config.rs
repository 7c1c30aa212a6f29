//! `keeper.toml`: the strategies to keep, the signer, gas caps and budgets, the poll mode.
//! Every problem names its field; the private key is never in this file.

use alloy_primitives::{Address, I256, U256};
use keel_core::math::parse_units;
use serde::Deserialize;
use thiserror::Error;

/// A config problem, naming the field.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The TOML path.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

/// Which strategy contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The lending FLI extension (exchanges by name).
    Fli,
    /// The PerpV2 extension.
    PerpV2,
}

/// Custom bounds for `shouldRebalanceWithBounds` (1e18-scaled; signed for PerpV2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// Minimum leverage ratio.
    pub min: I256,
    /// Maximum leverage ratio.
    pub max: I256,
}

/// One strategy to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    /// Name in logs and metrics.
    pub name: String,
    /// Contract address.
    pub address: Address,
    /// Kind.
    pub kind: Kind,
    /// Exchanges to consider (FLI); empty: every one `shouldRebalance` lists.
    pub exchanges: Vec<String>,
    /// Custom bounds, if any.
    pub bounds: Option<Bounds>,
    /// Gas the keeper may spend on routine calls per UTC day, wei.
    pub daily_budget: U256,
}

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable holding the hex key.
    Env(String),
    /// A file holding the hex key.
    File(String),
}

/// How often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Every so many milliseconds.
    Every(u64),
    /// On each new block (the head is checked every `ms`).
    NewBlock(u64),
}

/// Gas settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gas {
    /// Max fee per gas for rebalance and iterate, wei.
    pub max_fee: U256,
    /// Max fee per gas for ripcord, wei.
    pub ripcord_max_fee: U256,
    /// Priority fee (tip) per gas, wei.
    pub priority_fee: U256,
    /// Blocks without a receipt before a transaction is replaced with a higher fee.
    pub stuck_after_blocks: u64,
}

/// The whole config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Expected chain id (checked against the node), if given.
    pub chain_id: Option<u64>,
    /// Signer.
    pub key: KeySource,
    /// Poll mode.
    pub poll: Poll,
    /// Gas.
    pub gas: Gas,
    /// Strategies.
    pub strategies: Vec<Strategy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounds {
    min: String,
    max: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    name: String,
    address: String,
    kind: String,
    #[serde(default)]
    exchanges: Vec<String>,
    bounds: Option<RawBounds>,
    daily_gas_budget_eth: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    key_env: Option<String>,
    key_file: Option<String>,
    key: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGas {
    max_fee_gwei: String,
    ripcord_max_fee_gwei: String,
    priority_fee_gwei: Option<String>,
    stuck_after_blocks: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    chain_id: Option<u64>,
    poll: Option<String>,
    signer: RawSigner,
    gas: RawGas,
    #[serde(default)]
    strategy: Vec<RawStrategy>,
}

fn units(field: &str, s: &str, decimals: u8) -> Result<U256, ConfigError> {
    parse_units(s, decimals).map_err(|e| err(field, e.to_string()))
}

fn ratio(field: &str, s: &str) -> Result<I256, ConfigError> {
    let (neg, body) = match s.trim().strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.trim()),
    };
    let v = I256::try_from(units(field, body, 18)?).map_err(|_| err(field, "too large"))?;
    Ok(if neg { -v } else { v })
}

fn duration_ms(field: &str, s: &str) -> Result<u64, ConfigError> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map_err(|_| err(field, format!("'{s}' is not a duration")));
    }
    keel_core::product::parse_duration(s).map(|v| v * 1000).map_err(|e| err(field, e))
}

impl Config {
    /// Parse and check a config file's text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| err("keeper.toml", e.message().to_string()))?;
        if raw.signer.key.is_some() {
            return Err(err("signer.key", "never put a private key in the config; use key_env or key_file"));
        }
        let key = match (raw.signer.key_env, raw.signer.key_file) {
            (Some(e), None) => KeySource::Env(e),
            (None, Some(f)) => KeySource::File(f),
            _ => return Err(err("signer", "give exactly one of key_env (a variable name) or key_file (a path)")),
        };
        let poll = match raw.poll.as_deref().unwrap_or("new-block") {
            "new-block" => Poll::NewBlock(1000),
            s => Poll::Every(duration_ms("poll", s)?),
        };
        let gas = Gas {
            max_fee: units("gas.max_fee_gwei", &raw.gas.max_fee_gwei, 9)?,
            ripcord_max_fee: units("gas.ripcord_max_fee_gwei", &raw.gas.ripcord_max_fee_gwei, 9)?,
            priority_fee: units("gas.priority_fee_gwei", raw.gas.priority_fee_gwei.as_deref().unwrap_or("1"), 9)?,
            stuck_after_blocks: raw.gas.stuck_after_blocks.unwrap_or(3),
        };
        if gas.max_fee.is_zero() {
            return Err(err("gas.max_fee_gwei", "must be above 0"));
        }
        if gas.ripcord_max_fee < gas.max_fee {
            return Err(err(
                "gas.ripcord_max_fee_gwei",
                "must be at least gas.max_fee_gwei (ripcords are the urgent calls)",
            ));
        }
        if gas.priority_fee > gas.max_fee {
            return Err(err("gas.priority_fee_gwei", "must not exceed gas.max_fee_gwei"));
        }
        if gas.stuck_after_blocks == 0 {
            return Err(err("gas.stuck_after_blocks", "must be at least 1"));
        }
        if raw.strategy.is_empty() {
            return Err(err("strategy", "list at least one [[strategy]]"));
        }
        let mut strategies = Vec::new();
        for (i, s) in raw.strategy.into_iter().enumerate() {
            let f = |k: &str| format!("strategy[{i}].{k}");
            let address = s
                .address
                .parse::<Address>()
                .map_err(|_| err(f("address"), format!("'{}' is not an address", s.address)))?;
            let kind = match s.kind.as_str() {
                "fli" => Kind::Fli,
                "perp-v2" => Kind::PerpV2,
                other => return Err(err(f("kind"), format!("'{other}': use fli or perp-v2"))),
            };
            if kind == Kind::PerpV2 && !s.exchanges.is_empty() {
                return Err(err(f("exchanges"), "a perp-v2 strategy has no exchange names"));
            }
            let bounds = match s.bounds {
                None => None,
                Some(b) => {
                    let (min, max) = (ratio(&f("bounds.min"), &b.min)?, ratio(&f("bounds.max"), &b.max)?);
                    if min.abs() > max.abs() {
                        return Err(err(f("bounds"), "|min| must not exceed |max|"));
                    }
                    if kind == Kind::Fli && min.is_negative() {
                        return Err(err(f("bounds.min"), "a lending FLI's ratios are positive"));
                    }
                    Some(Bounds { min, max })
                }
            };
            let budget = s.daily_gas_budget_eth.as_deref().unwrap_or("1");
            let daily_budget = units(&f("daily_gas_budget_eth"), budget, 18)?;
            if strategies.iter().any(|x: &Strategy| x.name == s.name) {
                return Err(err(f("name"), format!("'{}' is used twice", s.name)));
            }
            strategies.push(Strategy { name: s.name, address, kind, exchanges: s.exchanges, bounds, daily_budget });
        }
        Ok(Config { chain_id: raw.chain_id, key, poll, gas, strategies })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
chain_id = 1
poll = "12s"
[signer]
key_env = "KEEL_KEEPER_PRIVATE_KEY"
[gas]
max_fee_gwei = "60"
ripcord_max_fee_gwei = "300"
priority_fee_gwei = "1.5"
[[strategy]]
name = "eth2x"
address = "0x0000000000000000000000000000000000000001"
kind = "fli"
exchanges = ["UniswapV3"]
bounds = { min = "1.9", max = "2.1" }
daily_gas_budget_eth = "0.2"
[[strategy]]
name = "eth-perp"
address = "0x0000000000000000000000000000000000000002"
kind = "perp-v2"
bounds = { min = "-1.9", max = "-2.1" }
"#;

    #[test]
    fn a_good_config() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.poll, Poll::Every(12_000));
        assert_eq!(c.gas.max_fee, U256::from(60_000_000_000u64));
        assert_eq!(c.gas.priority_fee, U256::from(1_500_000_000u64));
        assert_eq!(c.strategies[0].daily_budget, U256::from(200_000_000_000_000_000u64));
        assert_eq!(c.strategies[1].bounds.as_ref().unwrap().min, ratio("x", "-1.9").unwrap());
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                "key in the file",
                GOOD.replace("key_env = \"KEEL_KEEPER_PRIVATE_KEY\"", "key = \"0xabc\""),
                "signer.key: never put a private key",
            ),
            (
                "two key sources",
                GOOD.replace("key_env = \"KEEL_KEEPER_PRIVATE_KEY\"", "key_env = \"A\"\nkey_file = \"b\""),
                "signer: give exactly one",
            ),
            (
                "ripcord cap below routine cap",
                GOOD.replace("\"300\"", "\"30\""),
                "gas.ripcord_max_fee_gwei: must be at least",
            ),
            ("bad address", GOOD.replace("0x0000000000000000000000000000000000000001", "0x1"), "strategy[0].address"),
            ("bad kind", GOOD.replace("kind = \"fli\"", "kind = \"aave\""), "strategy[0].kind: 'aave'"),
            (
                "bad bounds",
                GOOD.replace("min = \"1.9\", max = \"2.1\"", "min = \"2.2\", max = \"2.1\""),
                "strategy[0].bounds",
            ),
            ("typo", GOOD.replace("poll = ", "pol = "), "unknown field"),
            ("no strategies", GOOD.split("[[strategy]]").next().unwrap().to_string(), "strategy: list at least one"),
            ("bad gwei", GOOD.replace("\"60\"", "\"sixty\""), "gas.max_fee_gwei"),
        ];
        for (name, text, want) in cases {
            let e = Config::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
