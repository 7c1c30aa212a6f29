//! The vocabulary of the service: roles, actors, commands and the events the log holds.
//!
//! A [`Command`] is what a caller asked for, already parsed and checked for shape at the
//! edge; the [`Engine`](crate::engine::Engine) decides whether it is allowed and what it does.
//! The log stores the command together with its result, so the state is the replay of the log
//! and every replay can be checked against what was acknowledged.

use crate::error::ApiError;
use keel_core::math::{format_units, parse_units};
use keel_core::{Address, U256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates products and keys; changes settings; engages and disengages.
    Operator,
    /// Rebalances and iterates (on the product's allow-list unless it is anyone-callable).
    Keeper,
    /// Mints, redeems and transfers on its own account.
    Holder,
    /// Pushes prices.
    Oracle,
    /// Reads; may call ripcord, as anyone can on-chain.
    Public,
    /// The service itself: the first operator key and the price feeds it runs.
    System,
}

impl Role {
    /// Parse a role name as the API takes it.
    pub fn parse(s: &str) -> Result<Role, ApiError> {
        Ok(match s {
            "operator" => Role::Operator,
            "keeper" => Role::Keeper,
            "holder" => Role::Holder,
            "oracle" => Role::Oracle,
            "public" => Role::Public,
            _ => {
                return Err(ApiError::bad(
                    "role",
                    format!("unknown role '{s}'; one of operator, keeper, holder, oracle, public"),
                ));
            }
        })
    }

    /// The name as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Keeper => "keeper",
            Role::Holder => "holder",
            Role::Oracle => "oracle",
            Role::Public => "public",
            Role::System => "system",
        }
    }
}

/// The caller of a command: which key, which role, which account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The first 16 hex digits of the key's hash (never the key), or a name for the service.
    pub key_id: String,
    /// The key's role.
    pub role: Role,
    /// The account the key acts for: the holder's balance, the keeper's or operator's address.
    pub address: Address,
}

impl Actor {
    /// The service itself.
    pub fn system(name: &str) -> Actor {
        Actor { key_id: name.to_string(), role: Role::System, address: Address::ZERO }
    }
}

/// A stored API key: its keyed hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// HMAC-SHA256 of the key under the server secret, hex ([`crate::secret::ServerSecret`]).
    pub hash: String,
    /// Role.
    pub role: Role,
    /// Account.
    pub address: Address,
    /// Free text for the operator.
    pub label: String,
}

impl KeyRecord {
    /// The actor this key makes.
    pub fn actor(&self) -> Actor {
        Actor { key_id: self.key_id().to_string(), role: self.role, address: self.address }
    }

    /// The public name of the key: the first 16 hex digits of its keyed hash.
    pub fn key_id(&self) -> &str {
        self.hash.get(..16).unwrap_or(&self.hash)
    }

    /// What anyone may see of the key: id, role, account, label (no hash).
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({ "key_id": self.key_id(), "role": self.role, "address": self.address, "label": self.label })
    }
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The account a key acts for when none is given: the first 20 bytes of its hash.
pub fn address_of_hash(hash_hex: &str) -> Address {
    let mut b = [0u8; 20];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(&hash_hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Address::from(b)
}

/// A keeper or operator call on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `engage(exchange)` — operator.
    Engage,
    /// `rebalance(exchange)` — keeper.
    Rebalance,
    /// `iterateRebalance(exchange)` — keeper.
    Iterate,
    /// `ripcord(exchange)` — anyone with a key.
    Ripcord,
    /// `disengage(exchange)` — operator.
    Disengage,
}

impl Call {
    /// The URL segment and event name.
    pub fn name(self) -> &'static str {
        match self {
            Call::Engage => "engage",
            Call::Rebalance => "rebalance",
            Call::Iterate => "iterate",
            Call::Ripcord => "ripcord",
            Call::Disengage => "disengage",
        }
    }
}

/// Everything that can change the state. Amounts are 18-decimal token base units (wad).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Register an API key (its hash).
    CreateKey {
        /// The key's record.
        key: KeyRecord,
    },
    /// Keep idempotency keys for this many seconds (0: forever).
    SetIdempotencyTtl {
        /// Seconds.
        seconds: u64,
    },
    /// Create a product from its TOML definition.
    CreateProduct {
        /// Product id (URL-safe).
        id: String,
        /// The product file, exactly as sent.
        toml: String,
        /// Keeper addresses put on the allow-list at creation.
        allowed_callers: Vec<Address>,
        /// Let anyone call rebalance and iterate.
        anyone_callable: bool,
    },
    /// Change settings: a TOML fragment merged over the product's file and validated whole.
    UpdateSettings {
        /// Product id.
        product: String,
        /// The fragment.
        patch: String,
    },
    /// Remove an exchange.
    RemoveExchange {
        /// Product id.
        product: String,
        /// Exchange name.
        exchange: String,
    },
    /// Put callers on or off the allow-list.
    SetCallers {
        /// Product id.
        product: String,
        /// Addresses.
        callers: Vec<Address>,
        /// Allowed or not, one per address.
        allowed: Vec<bool>,
    },
    /// Let anyone (or only the allow-list) call rebalance and iterate.
    SetAnyoneCallable {
        /// Product id.
        product: String,
        /// The flag.
        value: bool,
    },
    /// A price observation: USD per whole unit of `asset`, wad.
    ObservePrice {
        /// Product id.
        product: String,
        /// Asset symbol (the collateral or the borrow asset).
        asset: String,
        /// USD price, wad.
        price: U256,
    },
    /// Mint `quantity` to the caller at NAV.
    Mint {
        /// Product id.
        product: String,
        /// Tokens, wad.
        quantity: U256,
    },
    /// Redeem `quantity` of the caller's tokens at NAV.
    Redeem {
        /// Product id.
        product: String,
        /// Tokens, wad.
        quantity: U256,
    },
    /// Move tokens from the caller to `to`.
    Transfer {
        /// Product id.
        product: String,
        /// Recipient.
        to: Address,
        /// Tokens, wad.
        quantity: U256,
    },
    /// A keeper or operator call.
    Call {
        /// Product id.
        product: String,
        /// Which call.
        call: Call,
        /// Exchange name.
        exchange: String,
    },
    /// Liquidate the token's lending account (anyone, when its health factor is below 1).
    Liquidate {
        /// Product id.
        product: String,
    },
}

impl Command {
    /// The product a command acts on.
    pub fn product(&self) -> Option<&str> {
        match self {
            Command::CreateKey { .. } | Command::SetIdempotencyTtl { .. } => None,
            Command::CreateProduct { id, .. } => Some(id),
            Command::UpdateSettings { product, .. }
            | Command::RemoveExchange { product, .. }
            | Command::SetCallers { product, .. }
            | Command::SetAnyoneCallable { product, .. }
            | Command::ObservePrice { product, .. }
            | Command::Mint { product, .. }
            | Command::Redeem { product, .. }
            | Command::Transfer { product, .. }
            | Command::Call { product, .. }
            | Command::Liquidate { product } => Some(product),
        }
    }

    /// The event name it produces.
    pub fn kind(&self) -> &'static str {
        // every name here is in EVENT_KINDS
        match self {
            Command::CreateKey { .. } => "key_created",
            Command::SetIdempotencyTtl { .. } => "idempotency_ttl_changed",
            Command::CreateProduct { .. } => "product_created",
            Command::UpdateSettings { .. } => "settings_changed",
            Command::RemoveExchange { .. } => "exchange_removed",
            Command::SetCallers { .. } => "callers_changed",
            Command::SetAnyoneCallable { .. } => "anyone_callable_changed",
            Command::ObservePrice { .. } => "price_observed",
            Command::Mint { .. } => "mint",
            Command::Redeem { .. } => "redeem",
            Command::Transfer { .. } => "transfer",
            Command::Call { call, .. } => call.name(),
            Command::Liquidate { .. } => "liquidation",
        }
    }
}

/// Every event kind (`Command::kind`), for `GET /events?kind=` and the dashboard's filter.
pub const EVENT_KINDS: [&str; 17] = [
    "key_created",
    "idempotency_ttl_changed",
    "product_created",
    "settings_changed",
    "exchange_removed",
    "callers_changed",
    "anyone_callable_changed",
    "price_observed",
    "mint",
    "redeem",
    "transfer",
    "engage",
    "rebalance",
    "iterate",
    "ripcord",
    "disengage",
    "liquidation",
];

/// An idempotency key as the engine sees it: scoped to the caller, with the hash of the
/// request it first came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// `key_id:Idempotency-Key`.
    pub scope: String,
    /// SHA-256 of the method, path and body.
    pub request_hash: String,
}

/// A command with its caller and optional idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The caller.
    pub actor: Actor,
    /// Idempotency, when the caller sent a key.
    pub idempotency: Option<Idempotency>,
    /// What to do.
    pub command: Command,
}

/// One entry of the log: an accepted command, when it ran, and what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Unix seconds at which it ran (the `now` the core saw).
    pub at: u64,
    /// The request.
    pub request: Request,
    /// HTTP status of the acknowledgement.
    pub status: u16,
    /// The acknowledgement's body.
    pub result: serde_json::Value,
}

impl StoredEvent {
    /// The JSON an API reader or the live stream sees.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq,
            "at": self.at,
            "kind": self.request.command.kind(),
            "product": self.request.command.product(),
            "actor": { "key_id": self.request.actor.key_id, "role": self.request.actor.role, "address": self.request.actor.address },
            "idempotency_key": self.request.idempotency.as_ref().map(|i| i.scope.clone()),
            "command": match &self.request.command {
                // no key material in public: not even the keyed hash
                Command::CreateKey { key } => serde_json::json!({ "op": "create_key", "key": key.public_json() }),
                other => human(serde_json::to_value(other).unwrap_or(serde_json::Value::Null)),
            },
            "result": self.result,
        })
    }
}

/// A command's JSON with its 18-decimal amounts (`quantity`, `price`) written as decimals
/// (`"7.25"`), as replies write them, instead of the log's hex integers.
fn human(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["quantity", "price"] {
            if let Some(serde_json::Value::String(s)) = o.get(k)
                && let Ok(x) = s.parse::<U256>()
            {
                o.insert(k.into(), serde_json::Value::String(wad_str(x)));
            }
        }
    }
    v
}

/// Parse a positive token amount (18 decimals) from a JSON string or number.
pub fn parse_quantity(field: &str, v: Option<&serde_json::Value>) -> Result<U256, ApiError> {
    let s = match v {
        None | Some(serde_json::Value::Null) => {
            return Err(ApiError::bad(field, "is required: a positive decimal number of tokens, e.g. \"1.5\""));
        }
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ApiError::bad(field, format!("must be a decimal number of tokens as a string, got {other}")));
        }
    };
    if s.starts_with('-') {
        return Err(ApiError::bad(field, format!("must be positive, got {s}")));
    }
    let q = parse_units(&s, 18).map_err(|e| ApiError::bad(field, e.to_string()))?;
    if q.is_zero() {
        return Err(ApiError::bad(field, format!("must be greater than 0, got {s}")));
    }
    Ok(q)
}

/// Parse a positive USD price (wad).
pub fn parse_price(field: &str, v: Option<&serde_json::Value>) -> Result<U256, ApiError> {
    parse_quantity(field, v).map_err(|e| match e {
        ApiError::BadRequest { field, reason } => {
            ApiError::BadRequest { field, reason: reason.replace("tokens", "USD") }
        }
        other => other,
    })
}

/// Parse an address (`0x` and 40 hex digits).
pub fn parse_address(field: &str, v: Option<&serde_json::Value>) -> Result<Address, ApiError> {
    match v {
        Some(serde_json::Value::String(s)) => s
            .parse::<Address>()
            .map_err(|_| ApiError::bad(field, format!("'{s}' is not an address (0x and 40 hex digits)"))),
        None | Some(serde_json::Value::Null) => {
            Err(ApiError::bad(field, "is required: an address (0x and 40 hex digits)"))
        }
        Some(other) => Err(ApiError::bad(field, format!("must be an address string, got {other}"))),
    }
}

/// A wad as a decimal string with trailing zeros trimmed (`"1.5"`).
pub fn wad_str(v: U256) -> String {
    let s = format_units(v, 18);
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Base units of an asset with `decimals` as a decimal string.
pub fn units_str(v: U256, decimals: u8) -> String {
    let s = format_units(v, decimals);
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_table() {
        let cases: &[(&str, serde_json::Value, Result<&str, &str>)] = &[
            ("string", json!("1.5"), Ok("1.5")),
            ("number", json!(2), Ok("2")),
            ("tiny", json!("0.000000000000000001"), Ok("0.000000000000000001")),
            ("zero", json!("0"), Err("must be greater than 0")),
            ("negative", json!("-1"), Err("must be positive")),
            ("negative number", json!(-3), Err("must be positive")),
            ("too precise", json!("0.0000000000000000001"), Err("more than 18 decimals")),
            ("word", json!("ten"), Err("not a decimal number")),
            ("a sign", json!("+0.001"), Err("not a decimal number")),
            ("a digit separator", json!("0.0_01"), Err("not a decimal number")),
            ("bool", json!(true), Err("must be a decimal number")),
            ("null", json!(null), Err("is required")),
        ];
        for (name, v, want) in cases {
            let got = parse_quantity("quantity", Some(v));
            match (got, want) {
                (Ok(q), Ok(w)) => assert_eq!(wad_str(q), *w, "{name}"),
                (Err(e), Err(w)) => {
                    assert!(e.to_string().contains(w), "{name}: {e}");
                    assert!(e.to_string().starts_with("quantity: "), "{name}: names the field: {e}");
                }
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn addresses_and_hashes() {
        assert!(parse_address("to", Some(&json!("0x00000000000000000000000000000000000000aa"))).is_ok());
        let e = parse_address("to", Some(&json!("0x12"))).unwrap_err();
        assert_eq!(e.to_string(), "to: '0x12' is not an address (0x and 40 hex digits)");
        let h = sha256_hex(b"abc");
        assert_eq!(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(format!("{:?}", address_of_hash(&h)).len(), 42);
    }
}

#[cfg(test)]
mod human_tests {
    use super::*;

    #[test]
    fn the_event_log_shows_amounts_in_tokens_and_dollars() {
        let ev = StoredEvent {
            seq: 1,
            at: 0,
            request: Request {
                actor: Actor { key_id: "k".into(), role: Role::Holder, address: Address::ZERO },
                idempotency: None,
                command: Command::Mint { product: "p".into(), quantity: U256::from(7_250_000_000_000_000_000u128) },
            },
            status: 200,
            result: serde_json::json!({}),
        };
        assert_eq!(ev.public_json()["command"]["quantity"], "7.25");
    }
}
