//! The service's state machine: products on the deterministic core and API keys; whether an
//! idempotency key was used before is looked up in the log by the caller. Pure: no I/O, no
//! clock, no randomness — the time of every command is given, so the state is exactly the
//! replay of the log.
//!
//! [`Engine::apply`] authorises a request, runs it on the core and either returns the event to
//! append (with the acknowledgement it carries) or refuses it having changed nothing.

use crate::error::{ApiError, StoreError};
use crate::model::{Actor, Call, Command, KeyRecord, Request, Role, StoredEvent, units_str, wad_str};
use crate::served::{self, ServedToken, lending_only};
use keel_core::error::ProductError;
use keel_core::math::mul_div_down;
use keel_core::product::{AnyProduct, Product, bounds, price_e8};
use keel_core::strategy::fli::{FliOutcome, FliToken};
use keel_core::venue::amm::sqrt_price_x96_from_ratio;
use keel_core::{Address, U256, Wad};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// LPs re-centre a pool's liquidity when the price has moved this far (log distance) from
/// where it was built, as the simulator's LP agent does.
const RECENTER_LOG_DISTANCE: f64 = 0.2;

/// One product run by the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    /// Product id.
    pub id: String,
    /// The product file, with every accepted settings patch merged in.
    pub toml: String,
    /// Unix seconds of creation.
    pub created_at: u64,
    /// The operator's address (fee recipient, settings).
    pub operator: Address,
    /// The token and its venues.
    pub token: ServedToken,
    /// Collateral USD price (wad) around which the pools' liquidity is centred.
    pub pool_center: U256,
    /// Last observed USD price (wad) and time, by asset.
    pub prices: BTreeMap<String, (U256, u64)>,
}

impl ProductState {
    /// The lending FLI token, or a refusal naming what needs one.
    fn fli(&mut self, what: &str) -> Result<&mut FliToken, ApiError> {
        let kind = self.token.kind();
        self.token.lending_mut().ok_or_else(|| lending_only(kind.name(), what))
    }

    /// The product definition as it stands (lending FLI products).
    pub fn product(&self) -> Result<Product, ApiError> {
        Product::from_toml(&self.toml).map_err(|e| ApiError::Unavailable(format!("stored product file: {e}")))
    }
}

/// What an idempotency key was first used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of the first request.
    pub request_hash: String,
    /// The event it produced.
    pub seq: u64,
    /// Status of the first acknowledgement (its body is in the event).
    pub status: u16,
    /// When it was first used (unix seconds).
    #[serde(default)]
    pub at: u64,
}

impl IdempotencyRecord {
    /// What an applied event records for its idempotency key.
    pub fn of(ev: &StoredEvent) -> Self {
        IdempotencyRecord {
            request_hash: ev.request.idempotency.as_ref().map(|i| i.request_hash.clone()).unwrap_or_default(),
            seq: ev.seq,
            status: ev.status,
            at: ev.at,
        }
    }
}

/// The client's scope of a stored idempotency scope: a key reused after it expired is logged
/// as `scope@seq`, so each use has its own entry in the log's unique index.
pub fn base_scope(scope: &str) -> &str {
    scope.split_once('@').map(|(b, _)| b).unwrap_or(scope)
}

/// The result of applying a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new event to append; acknowledge with its status and result once it is durable.
    Applied(Box<StoredEvent>),
    /// The idempotency key was seen with the same request: return the first result again
    /// (the body of event `seq`).
    Replayed {
        /// Status of the first acknowledgement.
        status: u16,
        /// The event that holds its body.
        seq: u64,
    },
}

/// Products and keys (idempotency records live in the log; see [`Engine::apply`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// Sequence number of the last event applied.
    pub seq: u64,
    /// Time of the last event applied.
    pub last_at: u64,
    /// Keys by hash.
    pub keys: BTreeMap<String, KeyRecord>,
    /// Products by id.
    pub products: BTreeMap<String, ProductState>,
    /// Seconds an idempotency key is remembered (0: forever); set by a logged command, so a
    /// replay expires exactly what the live run expired.
    #[serde(default)]
    pub idempotency_ttl: u64,
}

fn need(actor: &Actor, roles: &[Role], what: &str) -> Result<(), ApiError> {
    if roles.contains(&actor.role) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().filter(|r| **r != Role::System).map(|r| r.name()).collect();
    Err(ApiError::Forbidden(format!(
        "{what} needs a key with role {}; this key has role {}",
        names.join(" or "),
        actor.role.name()
    )))
}

fn core(e: impl Into<keel_core::Error>) -> ApiError {
    ApiError::from_core(e.into())
}

/// Collateral or borrow-asset base units valued in USD (wad).
/// A report figure only (never a refusal: it runs after the operation has happened), so an
/// overflow shows as the largest value rather than failing an applied request.
fn usd(units: U256, decimals: u8, price: U256) -> U256 {
    mul_div_down(units, price, U256::from(10u64).pow(U256::from(decimals)), "usd").unwrap_or(U256::MAX)
}

fn describe_product_error(e: &ProductError) -> String {
    match e {
        ProductError::Rules(v) => {
            let list: Vec<String> = v.iter().map(|r| r.to_string()).collect();
            format!("{} rule(s) violated: {}", v.len(), list.join("; "))
        }
        other => other.to_string(),
    }
}

/// Longest key label.
pub const MAX_LABEL_LEN: usize = 200;

/// A key's label: at most [`MAX_LABEL_LEN`] characters, no control characters.
pub fn check_label(label: &str) -> Result<(), ApiError> {
    let n = label.chars().count();
    if n > MAX_LABEL_LEN {
        return Err(ApiError::bad("label", format!("is {n} characters long; at most {MAX_LABEL_LEN}")));
    }
    if label.chars().any(char::is_control) {
        return Err(ApiError::bad("label", "must not contain control characters"));
    }
    Ok(())
}

/// Validate a product id: 1–64 of `a-z 0-9 - _`.
pub fn check_product_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad("id", format!("'{id}' must be 1-64 characters of a-z, 0-9, '-' and '_'")))
    }
}

/// Parse a product file for the service: the same messages as `keel product check`.
pub fn parse_product(toml: &str) -> Result<Product, ApiError> {
    match AnyProduct::from_toml(toml) {
        Ok(AnyProduct::Lending(p)) => Ok(*p),
        Ok(AnyProduct::Perp(_)) | Ok(AnyProduct::Threshold(_)) => Err(ApiError::bad(
            "toml",
            "keel serve runs FLI products on a lending market; perp and threshold products run in `keel backtest`",
        )),
        Err(e) => Err(ApiError::bad("toml", describe_product_error(&e))),
    }
}

fn merge(into: &mut toml::Table, patch: toml::Table) {
    for (k, v) in patch {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

impl Engine {
    /// A fresh engine.
    pub fn new() -> Self {
        Engine::default()
    }

    /// A copy for the snapshot thread. Idempotency records are not part of the engine: the
    /// log's index keeps them and the writer looks each key up there ([`Engine::apply`]), so
    /// memory does not grow with the number of requests.
    pub fn snapshot_copy(&self) -> Engine {
        Engine {
            seq: self.seq,
            last_at: self.last_at,
            keys: self.keys.clone(),
            products: self.products.clone(),
            idempotency_ttl: self.idempotency_ttl,
        }
    }

    /// Apply a request at `now`. `prior` is what the request's idempotency key was first used
    /// for, if it was (the caller looks it up in the log by [`base_scope`]). On `Err` nothing
    /// changed.
    pub fn apply(&mut self, req: &Request, now: u64, prior: Option<&IdempotencyRecord>) -> Result<Outcome, ApiError> {
        let now = now.max(self.last_at);
        let ttl = self.idempotency_ttl;
        let mut expired = false;
        if let Some(idem) = &req.idempotency
            && let Some(r) = prior
        {
            if ttl > 0 && now.saturating_sub(r.at) > ttl {
                expired = true;
            } else if r.request_hash == idem.request_hash {
                return Ok(Outcome::Replayed { status: r.status, seq: r.seq });
            } else {
                return Err(ApiError::Conflict(format!(
                    "Idempotency-Key '{}' was first used with a different request (event {}); send a new key for a new request",
                    base_scope(&idem.scope).split_once(':').map(|x| x.1).unwrap_or(&idem.scope),
                    r.seq
                )));
            }
        }
        let (status, result) = self.execute(&req.actor, &req.command, now)?;
        self.seq += 1;
        self.last_at = now;
        let mut request = req.clone();
        if let Some(idem) = &mut request.idempotency
            && expired
            && !idem.scope.contains('@')
        {
            idem.scope = format!("{}@{}", idem.scope, self.seq);
        }
        Ok(Outcome::Applied(Box::new(StoredEvent { seq: self.seq, at: now, request, status, result })))
    }

    /// [`Engine::apply`] with the idempotency records kept in `records` (by base scope): looks
    /// the key up there and records what an applied request used it for. The writer keeps one
    /// such map per batch (the log holds the rest); tests keep one for a whole run.
    pub fn apply_tracked(
        &mut self,
        req: &Request,
        now: u64,
        records: &mut std::collections::HashMap<String, IdempotencyRecord>,
    ) -> Result<Outcome, ApiError> {
        let scope = req.idempotency.as_ref().map(|i| base_scope(&i.scope).to_string());
        let out = self.apply(req, now, scope.as_ref().and_then(|s| records.get(s)))?;
        if let (Outcome::Applied(ev), Some(scope)) = (&out, scope) {
            records.insert(scope, IdempotencyRecord::of(ev));
        }
        Ok(out)
    }

    /// Replay a stored event: it must apply, at its sequence number, with the result recorded.
    pub fn replay(&mut self, ev: &StoredEvent) -> Result<(), StoreError> {
        if ev.seq != self.seq + 1 {
            return Err(StoreError::Diverged { seq: ev.seq, detail: format!("expected event {}", self.seq + 1) });
        }
        // a logged request was applied, never answered from an earlier one: no lookup
        match self.apply(&ev.request, ev.at, None) {
            Ok(Outcome::Applied(got))
                if got.status == ev.status && (got.result == ev.result || first_mint_nav(&ev.result, &got.result)) =>
            {
                Ok(())
            }
            Ok(Outcome::Applied(got)) => Err(StoreError::Diverged {
                seq: ev.seq,
                detail: format!("recorded {} {}, replay gave {} {}", ev.status, ev.result, got.status, got.result),
            }),
            Ok(Outcome::Replayed { .. }) => {
                Err(StoreError::Diverged { seq: ev.seq, detail: "idempotency key already used".into() })
            }
            Err(e) => Err(StoreError::Diverged { seq: ev.seq, detail: format!("refused on replay: {e}") }),
        }
    }

    fn product_mut(&mut self, id: &str) -> Result<&mut ProductState, ApiError> {
        self.products.get_mut(id).ok_or_else(|| ApiError::no_product(id))
    }

    fn execute(&mut self, actor: &Actor, cmd: &Command, now: u64) -> Result<(u16, Value), ApiError> {
        match cmd {
            Command::CreateKey { key } => {
                if actor.role == Role::System && !self.keys.is_empty() {
                    return Err(ApiError::Forbidden("the service creates only the first key".into()));
                }
                need(actor, &[Role::Operator, Role::System], "creating a key")?;
                if key.role == Role::System {
                    return Err(ApiError::bad("role", "keys cannot have the system role"));
                }
                if self.keys.contains_key(&key.hash) {
                    return Err(ApiError::Conflict("that key already exists".into()));
                }
                check_label(&key.label)?;
                self.keys.insert(key.hash.clone(), key.clone());
                Ok((201, key.public_json()))
            }
            Command::SetIdempotencyTtl { seconds } => {
                need(actor, &[Role::Operator, Role::System], "changing how long idempotency keys are kept")?;
                self.idempotency_ttl = *seconds;
                Ok((200, json!({ "idempotency_ttl_s": seconds })))
            }
            Command::CreateProduct { id, toml, allowed_callers, anyone_callable } => {
                need(actor, &[Role::Operator], "creating a product")?;
                check_product_id(id)?;
                if self.products.contains_key(id) {
                    return Err(ApiError::Conflict(format!("product '{id}' already exists")));
                }
                let product = match AnyProduct::from_toml(toml) {
                    Ok(AnyProduct::Lending(p)) => *p,
                    Ok(other) => {
                        // any other kind: built from its file, driven through the token interface
                        let token = ServedToken::build(&other, actor.address, now)
                            .map_err(|e| ApiError::bad("toml", e.to_string()))?;
                        let price = keel_core::math::U256::from((other.start_price() * 1e8).round() as u128)
                            * keel_core::math::U256::from(10_000_000_000u64);
                        let mut prices = BTreeMap::new();
                        prices.insert(other.underlying(), (price, now));
                        let state = ProductState {
                            id: id.clone(),
                            toml: toml.clone(),
                            created_at: now,
                            operator: actor.address,
                            token,
                            pool_center: price,
                            prices,
                        };
                        let kind = state.token.kind().name();
                        let symbol = state.token.as_dyn().symbol().to_string();
                        self.products.insert(id.clone(), state);
                        return Ok((
                            201,
                            json!({ "id": id, "kind": kind, "symbol": symbol, "operator": actor.address }),
                        ));
                    }
                    Err(e) => return Err(ApiError::bad("toml", describe_product_error(&e))),
                };
                let mut token = product.build(actor.address, now).map_err(core)?;
                if !allowed_callers.is_empty() {
                    let statuses = vec![true; allowed_callers.len()];
                    token
                        .update_caller_status(actor.address, allowed_callers, &statuses)
                        .map_err(|e| ApiError::bad("allowed_callers", e.to_string()))?;
                }
                if *anyone_callable {
                    token.update_anyone_callable(actor.address, true).map_err(core)?;
                }
                let mut prices = BTreeMap::new();
                prices.insert(product.collateral.asset.clone(), (product.collateral.price.0, now));
                prices.insert(product.borrow.asset.clone(), (product.borrow.price.0, now));
                let state = ProductState {
                    id: id.clone(),
                    toml: toml.clone(),
                    created_at: now,
                    operator: actor.address,
                    token: ServedToken::Lending(Box::new(token)),
                    pool_center: product.collateral.price.0,
                    prices,
                };
                self.products.insert(id.clone(), state);
                Ok((
                    201,
                    json!({
                        "id": id,
                        "kind": "lending-fli",
                        "symbol": product.token.symbol,
                        "name": product.token.name,
                        "operator": actor.address,
                        "exchanges": product.exchanges.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                    }),
                ))
            }
            Command::UpdateSettings { product, patch } => {
                need(actor, &[Role::Operator], "changing settings")?;
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let patch_table: toml::Table =
                        patch.parse().map_err(|e| ApiError::bad("patch", format!("not valid TOML: {e}")))?;
                    if patch_table.is_empty() {
                        return Err(ApiError::bad("patch", "is empty; give the sections and fields to change"));
                    }
                    let mut table: toml::Table = p.toml.parse().map_err(|e| ApiError::Unavailable(format!("{e}")))?;
                    merge(&mut table, patch_table);
                    let text = toml::to_string(&table).map_err(|e| ApiError::Unavailable(e.to_string()))?;
                    let (old, new) = (served::parse(&p.toml, "toml")?, served::parse(&text, "patch")?);
                    let mut next = p.token.clone();
                    let changed = next
                        .as_dyn_mut()
                        .apply_settings(&new, &old)
                        .map_err(|e| ApiError::bad("patch", e.to_string()))?;
                    if changed.is_empty() {
                        return Err(ApiError::bad(
                            "patch",
                            "changes nothing: every value given equals the current one",
                        ));
                    }
                    p.token = next;
                    p.toml = text;
                    return Ok((200, json!({ "product": product, "changed": changed })));
                }
                let next = update_settings(p, p.operator, patch, now)?;
                let changed = next.1;
                *p = next.0;
                Ok((200, json!({ "product": product, "changed": changed })))
            }
            Command::RemoveExchange { product, exchange } => {
                need(actor, &[Role::Operator], "removing an exchange")?;
                let p = self.product_mut(product)?;
                p.fli("removing an exchange")?;
                let mut table: toml::Table = p.toml.parse().map_err(|e| ApiError::Unavailable(format!("{e}")))?;
                if let Some(toml::Value::Table(x)) = table.get_mut("exchanges") {
                    x.remove(exchange);
                }
                let text = toml::to_string(&table).map_err(|e| ApiError::Unavailable(e.to_string()))?;
                if Product::from_toml(&text).is_err() {
                    return Err(ApiError::Rejected(format!(
                        "removing '{exchange}' would leave the product without a valid exchange"
                    )));
                }
                let operator = p.operator;
                p.fli("removing an exchange")?.remove_enabled_exchange(operator, exchange).map_err(core)?;
                p.toml = text;
                Ok((200, json!({ "product": product, "removed": exchange })))
            }
            Command::SetCallers { product, callers, allowed } => {
                need(actor, &[Role::Operator], "changing the keeper allow-list")?;
                let p = self.product_mut(product)?;
                let operator = p.operator;
                p.fli("the keeper allow-list")?.update_caller_status(operator, callers, allowed).map_err(core)?;
                Ok((200, json!({ "product": product, "callers": callers, "allowed": allowed })))
            }
            Command::SetAnyoneCallable { product, value } => {
                need(actor, &[Role::Operator], "changing anyone-callable")?;
                let p = self.product_mut(product)?;
                let operator = p.operator;
                p.fli("anyone-callable")?.update_anyone_callable(operator, *value).map_err(core)?;
                Ok((200, json!({ "product": product, "anyone_callable": value })))
            }
            Command::ObservePrice { product, asset, price } => {
                need(actor, &[Role::Oracle, Role::System], "pushing a price")?;
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let underlying = served::parse(&p.toml, "toml")?.underlying();
                    let venue = served::observe_price(p.token.as_dyn_mut(), &underlying, asset, *price, now)?;
                    p.prices.insert(asset.clone(), (*price, now));
                    return Ok((
                        200,
                        json!({ "product": product, "asset": asset, "price": wad_str(*price), "at": now, "venue": venue }),
                    ));
                }
                observe_price(p, asset, *price, now)?;
                Ok((200, json!({ "product": product, "asset": asset, "price": wad_str(*price), "at": now })))
            }
            Command::Mint { product, quantity } => {
                need(actor, &[Role::Holder], "minting")?;
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let mut body = served::mint(p.token.as_dyn_mut(), actor.address, *quantity, now)?;
                    body["product"] = json!(product);
                    body["holder"] = json!(actor.address);
                    return Ok((200, body));
                }
                mint_or_redeem(p, actor.address, *quantity, true, now)
            }
            Command::Redeem { product, quantity } => {
                need(actor, &[Role::Holder], "redeeming")?;
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let mut body = served::redeem(p.token.as_dyn_mut(), actor.address, *quantity, now)?;
                    body["product"] = json!(product);
                    body["holder"] = json!(actor.address);
                    return Ok((200, body));
                }
                mint_or_redeem(p, actor.address, *quantity, false, now)
            }
            Command::Transfer { product, to, quantity } => {
                need(actor, &[Role::Holder], "transferring")?;
                let p = self.product_mut(product)?;
                if quantity.is_zero() {
                    return Err(ApiError::bad("quantity", "must be greater than 0"));
                }
                if *to == Address::ZERO {
                    return Err(ApiError::bad("to", "cannot transfer to the zero address"));
                }
                p.token.as_dyn_mut().transfer(actor.address, *to, *quantity).map_err(core)?;
                Ok((
                    200,
                    json!({
                        "product": product,
                        "from": actor.address,
                        "to": to,
                        "quantity": wad_str(*quantity),
                        "balance": wad_str(p.token.as_dyn().balance_of(actor.address)),
                    }),
                ))
            }
            Command::Call { product, call, exchange } => {
                let what = format!("{} on {product}", call.name());
                match call {
                    Call::Engage | Call::Disengage => need(actor, &[Role::Operator], &what)?,
                    Call::Rebalance | Call::Iterate => need(actor, &[Role::Keeper], &what)?,
                    Call::Ripcord => {
                        need(actor, &[Role::Public, Role::Keeper, Role::Holder, Role::Operator, Role::Oracle], &what)?
                    }
                }
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let mut body = served::call(p.token.as_dyn_mut(), actor.address, *call, now)?;
                    body["product"] = json!(product);
                    return Ok((200, body));
                }
                let Some(fli) = p.token.lending() else { return Err(lending_only(p.token.kind().name(), &what)) };
                if fli.fli.exchange(exchange).is_err() {
                    return Err(ApiError::NotFound(format!("product '{product}' has no exchange '{exchange}'")));
                }
                let operator = p.operator;
                let t = p.fli(&what)?;
                let before = t.current_leverage_ratio(now).ok();
                let out: FliOutcome = match call {
                    // every operator key acts as the product's operator account (operators
                    // are equal; the log records which key made the call)
                    Call::Engage => t.engage(operator, exchange, now),
                    Call::Rebalance => t.rebalance(actor.address, exchange, now),
                    Call::Iterate => t.iterate_rebalance(actor.address, exchange, now),
                    Call::Ripcord => t.ripcord(actor.address, exchange, now),
                    Call::Disengage => t.disengage(operator, exchange, now),
                }
                .map_err(core)?;
                let after = t.current_leverage_ratio(now).ok();
                Ok((
                    200,
                    json!({
                        "product": product,
                        "call": call.name(),
                        "exchange": exchange,
                        "leverage_before": before.map(wad_str),
                        "leverage_after": after.map(wad_str),
                        "event": event_json(&out.event),
                        "trade": out.trade.map(|t| json!({
                            "is_lever": t.is_lever,
                            "sold": t.sold.to_string(),
                            "bought": t.bought.to_string(),
                            "pool_fee": t.pool_fee.to_string(),
                        })),
                        "reward_paid_wei": out.reward_paid.to_string(),
                    }),
                ))
            }
            Command::Liquidate { product } => {
                need(actor, &[Role::Public, Role::Keeper, Role::Holder, Role::Operator, Role::Oracle], "liquidating")?;
                let p = self.product_mut(product)?;
                if p.token.lending().is_none() {
                    let mut body = served::liquidate(p.token.as_dyn_mut(), now)?;
                    body["product"] = json!(product);
                    return Ok((200, body));
                }
                let t = p.fli("liquidating")?;
                let data = t.market.account_data(t.account, now).map_err(core)?;
                if data.health_factor >= U256::from(10u64).pow(U256::from(18u64)) {
                    return Err(ApiError::Rejected(format!(
                        "the token's health factor {} is not below 1; nothing to liquidate",
                        if data.health_factor == U256::MAX { "∞".to_string() } else { wad_str(data.health_factor) }
                    )));
                }
                let (c, b, acct) = (t.collateral, t.borrow, t.account);
                let mut market = t.market.clone();
                let out = market.liquidation_call(c, b, acct, U256::MAX, now).map_err(core)?;
                t.market = market;
                Ok((
                    200,
                    json!({
                        "product": product,
                        "debt_repaid": out.debt_repaid.to_string(),
                        "collateral_to_liquidator": out.collateral_to_liquidator.to_string(),
                        "protocol_fee": out.protocol_fee.to_string(),
                        "health_factor_before": wad_str(out.health_factor_before),
                    }),
                ))
            }
        }
    }
}

/// A core event with its numbers as decimal strings (leverage ratios as wads, amounts in
/// collateral base units).
fn event_json(e: &keel_core::strategy::fli::FliEvent) -> Value {
    let name = serde_json::to_value(e)
        .ok()
        .and_then(|v| match v {
            Value::Object(m) => m.keys().next().cloned(),
            Value::String(s) => Some(s),
            _ => None,
        })
        .unwrap_or_default();
    match e.notional() {
        Some(n) => json!({
            "name": name,
            "current_leverage_ratio": wad_str(n.current_leverage_ratio),
            "new_leverage_ratio": wad_str(n.new_leverage_ratio),
            "chunk": n.chunk.to_string(),
            "total": n.total.to_string(),
        }),
        None => json!({ "name": name }),
    }
}

/// Post an observed price on the product's oracle and let the arbitrageur trade each pool to
/// it; LPs re-centre liquidity after a large move. Checks everything before it changes anything.
fn observe_price(p: &mut ProductState, asset: &str, price: U256, now: u64) -> Result<(), ApiError> {
    let pool_center = p.pool_center;
    let mut prices = p.prices.clone();
    let product = p.product()?;
    let t = p.fli("the lending market's price feed")?;
    let m = &t.market;
    let (c, b) = (
        (m.symbol(t.collateral).to_string(), m.decimals(t.collateral)),
        (m.symbol(t.borrow).to_string(), m.decimals(t.borrow)),
    );
    let id = if asset == c.0 {
        t.collateral
    } else if asset == b.0 {
        t.borrow
    } else {
        return Err(ApiError::bad(
            "asset",
            format!("'{asset}' is not an asset of this product; one of {}, {}", c.0, b.0),
        ));
    };
    bounds::check_usd_price(price).map_err(|e| ApiError::bad("price", e))?;
    let answer =
        price_e8(Wad(price)).map_err(|e| ApiError::bad("price", e.to_string().replace("field `price`: ", "")))?;
    prices.insert(asset.to_string(), (price, now));
    let pc = prices.get(&c.0).map(|x| x.0).unwrap_or(price);
    let pb = prices.get(&b.0).map(|x| x.0).unwrap_or(price);
    bounds::check_pool_quote((&c.0, c.1, pc), (&b.0, b.1, pb)).map_err(|e| ApiError::bad("price", e))?;
    let recenter = {
        let ratio = Wad(pc).to_f64() / Wad(pool_center).to_f64();
        ratio.ln().abs() >= RECENTER_LOG_DISTANCE
    };
    // pools: token0 = borrow asset, token1 = collateral; raw token1 per raw token0
    let ten = |d: u8| U256::from(10u64).pow(U256::from(d));
    let target = sqrt_price_x96_from_ratio(pb * ten(c.1), pc * ten(b.1))
        .map_err(|e| ApiError::bad("price", format!("the pools cannot trade at this price: {e}")))?;
    let mut pools = t.pools.clone();
    for (name, pool) in pools.iter_mut() {
        if recenter {
            *pool = product.build_pool(name, Wad(pc), Wad(pb)).map_err(core)?;
        } else {
            pool.move_price_to(target).map_err(|e| ApiError::Rejected(format!("pool {name}: {e}")))?;
        }
    }
    t.market.post_price(id, answer, now);
    t.pools = pools;
    p.prices = prices;
    if recenter {
        p.pool_center = pc;
    }
    Ok(())
}

fn mint_or_redeem(
    p: &mut ProductState,
    holder: Address,
    quantity: U256,
    mint: bool,
    now: u64,
) -> Result<(u16, Value), ApiError> {
    let what = if mint { "minting" } else { "redeeming" };
    let id = p.id.clone();
    let t = p.fli(what)?;
    let nav = t.nav(now).map_err(|e| ApiError::Rejected(format!("{what} is paused: {e}")))?;
    let pc = t.market.price(t.collateral, now).map_err(core)? * U256::from(10_000_000_000u64);
    let pb = t.market.price(t.borrow, now).map_err(core)? * U256::from(10_000_000_000u64);
    // accrue the streaming fee first (new holders do not pay for the past); undone on refusal
    let last = t.ledger.last_fee_accrual;
    let fee_minted = t.accrue_streaming_fee(now).map_err(core)?;
    let undo = |t: &mut FliToken| {
        let r = t.ledger.config.fee_recipient;
        t.ledger.burn(r, fee_minted);
        t.ledger.last_fee_accrual = last;
    };
    let (cd, bd) = (t.market.decimals(t.collateral), t.market.decimals(t.borrow));
    let outcome = if mint {
        t.issue(holder, quantity, now).map(|r| {
            let paid = usd(r.collateral_in, cd, pc).saturating_add(usd(r.cash_in, bd, pb));
            let net = paid.saturating_sub(usd(r.borrow_out, bd, pb));
            (
                r.quantity,
                r.fee,
                json!({
                    "collateral_in": units_str(r.collateral_in, cd),
                    "cash_in": units_str(r.cash_in, bd),
                    "borrow_out": units_str(r.borrow_out, bd),
                    "net_paid_usd": wad_str(net),
                }),
            )
        })
    } else {
        t.redeem(holder, quantity, now).map(|r| {
            let got = usd(r.collateral_out, cd, pc).saturating_add(usd(r.cash_out, bd, pb));
            let net = got.saturating_sub(usd(r.borrow_in, bd, pb));
            (
                r.quantity,
                r.fee,
                json!({
                    "collateral_out": units_str(r.collateral_out, cd),
                    "cash_out": units_str(r.cash_out, bd),
                    "borrow_in": units_str(r.borrow_in, bd),
                    "net_received_usd": wad_str(net),
                }),
            )
        })
    };
    let (q, fee, assets) = match outcome {
        Ok(x) => x,
        Err(e) => {
            undo(t);
            return Err(core(e));
        }
    };
    // from here on nothing can fail: the operation happened. The first mint (no supply, so no
    // NAV before it) reports the NAV it created.
    let shown_nav =
        if nav.per_token.is_zero() { t.nav(now).map(|n| n.per_token).unwrap_or(U256::ZERO) } else { nav.per_token };
    let mut body = json!({
        "product": id,
        "holder": holder,
        "quantity": wad_str(q),
        "fee": wad_str(fee),
        "nav_per_token": wad_str(shown_nav),
        "balance": wad_str(t.ledger.balance_of(holder)),
        "supply": wad_str(t.ledger.total_supply()),
    });
    if let (Value::Object(b), Value::Object(a)) = (&mut body, assets) {
        b.extend(a);
    }
    Ok((200, body))
}

/// Logs written before a first mint reported the NAV it created recorded `nav_per_token: "0"`
/// for it; that reply (and nothing else) may differ on replay. The state is the same.
fn first_mint_nav(recorded: &Value, replayed: &Value) -> bool {
    if recorded["nav_per_token"] != "0" || replayed["nav_per_token"] == "0" {
        return false;
    }
    let mut r = replayed.clone();
    r["nav_per_token"] = json!("0");
    &r == recorded
}

/// Merge `patch` over the product file, validate the whole, and apply what changed through
/// the core's setters, on a copy: the copy replaces the product only if every step succeeds.
fn update_settings(
    p: &ProductState,
    operator: Address,
    patch: &str,
    now: u64,
) -> Result<(ProductState, Vec<String>), ApiError> {
    let patch_table: toml::Table = patch.parse().map_err(|e| ApiError::bad("patch", format!("not valid TOML: {e}")))?;
    if patch_table.is_empty() {
        return Err(ApiError::bad("patch", "is empty; give the sections and fields to change"));
    }
    for section in ["collateral", "borrow", "lending"] {
        if patch_table.contains_key(section) {
            return Err(ApiError::bad(
                "patch",
                format!("section [{section}] cannot change on a running product; create a new product"),
            ));
        }
    }
    let mut table: toml::Table = p.toml.parse().map_err(|e| ApiError::Unavailable(format!("{e}")))?;
    merge(&mut table, patch_table);
    let text = toml::to_string(&table).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let old = p.product()?;
    let new = parse_product(&text).map_err(|e| match e {
        ApiError::BadRequest { reason, .. } => ApiError::bad("patch", reason),
        other => other,
    })?;
    let mut next = p.clone();
    let mut changed = Vec::new();
    let t = next.fli("settings")?;
    if new.token.supply_cap != old.token.supply_cap
        || new.token.mint_fee != old.token.mint_fee
        || new.token.redeem_fee != old.token.redeem_fee
        || new.token.streaming_fee != old.token.streaming_fee
    {
        t.accrue_streaming_fee(now).map_err(core)?;
        let c = &mut t.ledger.config;
        c.supply_cap = new.token.supply_cap;
        c.mint_fee = new.token.mint_fee;
        c.redeem_fee = new.token.redeem_fee;
        c.streaming_fee = new.token.streaming_fee;
        changed.push("token".to_string());
    }
    if new.methodology != old.methodology {
        t.set_methodology_settings(operator, new.methodology.clone()).map_err(core)?;
        changed.push("methodology".into());
    }
    if new.execution != old.execution {
        t.set_execution_settings(operator, new.execution.clone()).map_err(core)?;
        changed.push("execution".into());
    }
    if new.incentive != old.incentive {
        t.set_incentive_settings(operator, new.incentive.clone()).map_err(core)?;
        changed.push("incentive".into());
    }
    for (name, x) in &new.exchanges {
        match old.exchanges.iter().find(|(n, _)| n == name) {
            Some((_, o)) if o.settings == x.settings => {}
            Some(_) => {
                t.update_enabled_exchange(operator, name, x.settings.clone()).map_err(core)?;
                changed.push(format!("exchanges.{name}"));
            }
            None => {
                let pc = p.prices.get(&new.collateral.asset).map(|v| v.0).unwrap_or(new.collateral.price.0);
                let pb = p.prices.get(&new.borrow.asset).map(|v| v.0).unwrap_or(new.borrow.price.0);
                let pool = new.build_pool(name, Wad(pc), Wad(pb)).map_err(core)?;
                t.pools.insert(x.settings.lever_route.clone(), pool.clone());
                t.pools.insert(x.settings.delever_route.clone(), pool);
                t.add_enabled_exchange(operator, name, x.settings.clone()).map_err(core)?;
                changed.push(format!("exchanges.{name}"));
            }
        }
    }
    // names: only the ledger's display fields
    if new.token.name != old.token.name {
        t.ledger.config.name = new.token.name.clone();
        changed.push("token.name".into());
    }
    if new.token.symbol != old.token.symbol {
        t.ledger.config.symbol = new.token.symbol.clone();
        changed.push("token.symbol".into());
    }
    if changed.is_empty() {
        return Err(ApiError::bad("patch", "changes nothing: every value given equals the current one"));
    }
    next.toml = text;
    Ok((next, changed))
}
