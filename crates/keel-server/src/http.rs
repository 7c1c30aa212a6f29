//! The HTTP API: JSON in and out, API keys in `Authorization: Bearer KEY`, idempotency keys
//! in `Idempotency-Key`. Handlers only parse, authenticate and forward to the writer; every
//! decision is the engine's.

use crate::error::ApiError;
use crate::model::{
    Actor, Call, Command, Idempotency, KeyRecord, Request, Role, address_of_hash, parse_address, parse_price,
    parse_quantity, sha256_hex, wad_str,
};
use crate::store::Store;
use crate::writer::{Ack, Shared, Submitter};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Published state.
    pub shared: Arc<Shared>,
    /// The writer's queue.
    pub submitter: Submitter,
    /// A second connection for reading the log.
    pub reader: Reader,
}

type EventsQuery =
    (crate::store::EventFilter, tokio::sync::oneshot::Sender<Result<Vec<crate::model::StoredEvent>, String>>);

/// The log reader: its own thread and connection (database clients block).
#[derive(Clone)]
pub struct Reader {
    tx: std::sync::mpsc::Sender<EventsQuery>,
}

impl Reader {
    /// Start the reader thread on `store`.
    pub fn spawn(mut store: Box<dyn Store>) -> Reader {
        let (tx, rx) = std::sync::mpsc::channel::<EventsQuery>();
        std::thread::Builder::new()
            .name("keel-reader".into())
            .spawn(move || {
                while let Ok((filter, reply)) = rx.recv() {
                    let _ = reply.send(store.events_where(&filter).map_err(|e| e.to_string()));
                }
            })
            .expect("spawn the reader thread");
        Reader { tx: tx.clone() }
    }

    async fn events(&self, filter: crate::store::EventFilter) -> Result<Vec<crate::model::StoredEvent>, ApiError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send((filter, reply)).map_err(|_| ApiError::Unavailable("the log reader stopped".into()))?;
        rx.await.map_err(|_| ApiError::Unavailable("the log reader stopped".into()))?.map_err(ApiError::Unavailable)
    }
}

/// Every route, for the router and the OpenAPI document: method, path, role, summary.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/", "public", "The dashboard: products, live NAV and leverage with its band, recent events."),
    ("get", "/openapi.json", "public", "This API's OpenAPI 3.1 document."),
    ("get", "/metrics", "public", "Prometheus metrics."),
    ("get", "/health", "public", "Liveness and the last committed event."),
    ("post", "/keys", "operator", "Create an API key (returned once; stored hashed)."),
    ("get", "/products", "public", "Every product's state."),
    ("post", "/products", "operator", "Create a product from its TOML file (validated as `keel product check`)."),
    (
        "get",
        "/products/{id}",
        "public",
        "NAV per token, leverage ratio and band, should_rebalance per exchange, position, venue accounts, prices, why anything is blocked.",
    ),
    (
        "get",
        "/products/{id}/history",
        "public",
        "NAV, leverage (with each bucket's low and high), the underlying's price and supply after each event, from the whole log; the last call on the token; the in-process keeper's record. Query: points (2–5000, default 500).",
    ),
    ("get", "/products/{id}/balances/{address}", "public", "A holder's balance."),
    ("post", "/products/{id}/mint", "holder", "Mint at NAV to the caller's account. Body: {quantity}."),
    ("post", "/products/{id}/redeem", "holder", "Redeem the caller's tokens at NAV. Body: {quantity}."),
    ("post", "/products/{id}/transfer", "holder", "Transfer the caller's tokens. Body: {to, quantity}."),
    (
        "post",
        "/products/{id}/prices",
        "oracle",
        "Push a USD price. Body: {price, asset?} (asset defaults to the collateral).",
    ),
    ("post", "/products/{id}/engage", "operator", "engage(exchange). Body: {exchange?}."),
    ("post", "/products/{id}/disengage", "operator", "disengage(exchange). Body: {exchange?}."),
    ("post", "/products/{id}/rebalance", "keeper", "rebalance(exchange), allow-listed keepers. Body: {exchange?}."),
    (
        "post",
        "/products/{id}/iterate",
        "keeper",
        "iterateRebalance(exchange), allow-listed keepers. Body: {exchange?}.",
    ),
    ("post", "/products/{id}/ripcord", "any key", "ripcord(exchange): anyone, as on-chain. Body: {exchange?}."),
    (
        "post",
        "/products/{id}/liquidate",
        "any key",
        "Liquidate the token's lending account when its health factor is below 1.",
    ),
    (
        "patch",
        "/products/{id}/settings",
        "operator",
        "Change settings. Body: {patch: TOML fragment of the product file}.",
    ),
    ("delete", "/products/{id}/exchanges/{name}", "operator", "Remove an exchange."),
    ("post", "/products/{id}/callers", "operator", "Keeper allow-list. Body: {callers: [address], allowed: [bool]}."),
    ("post", "/products/{id}/anyone-callable", "operator", "Open rebalance/iterate to any keeper key. Body: {value}."),
    ("get", "/events", "public", "The log, paged: ?after=SEQ&limit=N&product=ID."),
    ("get", "/events/stream", "public", "Committed events as server-sent events."),
];

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.body())).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

fn ack_response(a: Ack) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut r = (status, axum::Json(a.result)).into_response();
    r.headers_mut().insert("x-keel-seq", HeaderValue::from(a.seq));
    if a.replayed {
        r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

fn json_response(body: Arc<str>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Look up the caller's key. `None` without a key header.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Option<KeyRecord>, ApiError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string())
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()));
    let Some(raw) = raw else { return Ok(None) };
    let hash = shared.secret.key_hash(&raw);
    match shared.keys.read().expect("keys lock").get(&hash) {
        Some(k) => Ok(Some(k.clone())),
        None => Err(ApiError::Unauthorized("unknown API key".into())),
    }
}

fn require_key(shared: &Shared, headers: &HeaderMap) -> Result<Actor, ApiError> {
    match authenticate(shared, headers)? {
        Some(k) => Ok(k.actor()),
        None => Err(ApiError::Unauthorized(
            "this call needs an API key: send `Authorization: Bearer KEY` (operators create keys with POST /keys)"
                .into(),
        )),
    }
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad("body", format!("must be a JSON object, got {other}"))),
        Err(e) => Err(ApiError::bad("body", format!("not valid JSON: {e}"))),
    }
}

fn idempotency(
    actor: &Actor,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().map_err(|_| ApiError::bad("Idempotency-Key", "must be printable ASCII"))?.trim();
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return Err(ApiError::bad("Idempotency-Key", "must be 1-200 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"));
    }
    let mut buf = Vec::with_capacity(body.len() + path.len() + 8);
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(path.as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(body);
    Ok(Some(Idempotency { scope: format!("{}:{key}", actor.key_id), request_hash: sha256_hex(&buf) }))
}

/// Authenticate, build the request and wait for the durable acknowledgement.
async fn submit(
    st: &AppState,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: &Bytes,
    build: impl FnOnce(&Actor, &serde_json::Map<String, Value>) -> Result<Command, ApiError>,
) -> Response {
    let run = async {
        let actor = require_key(&st.shared, headers)?;
        let fields = parse_body(body)?;
        let command = build(&actor, &fields)?;
        let idem = idempotency(&actor, headers, &method, path, body)?;
        st.submitter.submit(Request { actor, idempotency: idem, command }).await
    };
    match run.await {
        Ok(a) => ack_response(a),
        Err(e) => error_response(&e),
    }
}

fn check_known(fields: &serde_json::Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    for k in fields.keys() {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::bad(k.clone(), format!("unknown field; this call takes {}", known.join(", "))));
        }
    }
    Ok(())
}

fn product_exists(st: &AppState, id: &str) -> Result<(), ApiError> {
    if st.shared.view(id).is_none() {
        return Err(ApiError::no_product(id));
    }
    Ok(())
}

fn exchange_of(st: &AppState, id: &str, fields: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match fields.get("exchange") {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => st
            .shared
            .view(id)
            .and_then(|p| p.view.should_rebalance.keys().next().cloned())
            .ok_or_else(|| ApiError::no_product(id)),
        Some(other) => Err(ApiError::bad("exchange", format!("must be an exchange name, got {other}"))),
    }
}

async fn create_key(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // a retry with the same Idempotency-Key derives the same key, so the first reply's key is
    // the one stored and a retry returns it again
    let key = (|| -> Result<String, ApiError> {
        let actor = require_key(&st.shared, &headers)?;
        let scope = idempotency(&actor, &headers, &Method::POST, "/keys", &body)?.map(|i| i.scope);
        st.shared.secret.new_key(scope.as_deref()).map_err(ApiError::Unavailable)
    })();
    let key = match key {
        Ok(k) => k,
        Err(e) => return error_response(&e),
    };
    let hash = st.shared.secret.key_hash(&key);
    let mut resp = submit(&st, &headers, Method::POST, "/keys", &body, |_, f| {
        check_known(f, &["role", "address", "label"])?;
        let role = match f.get("role") {
            Some(Value::String(s)) => Role::parse(s)?,
            _ => return Err(ApiError::bad("role", "is required: operator, keeper, holder, oracle or public")),
        };
        let address = match f.get("address") {
            None | Some(Value::Null) => address_of_hash(&hash),
            v => parse_address("address", v)?,
        };
        let label = match f.get("label") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(ApiError::bad("label", format!("must be a string, got {other}"))),
        };
        crate::engine::check_label(&label)?;
        Ok(Command::CreateKey { key: KeyRecord { hash: hash.clone(), role, address, label } })
    })
    .await;
    if resp.status() == StatusCode::CREATED {
        // the key is shown in this reply (and in a retry's) only; keep the reply's headers
        let (mut parts, b) = resp.into_parts();
        let bytes = axum::body::to_bytes(b, 1 << 20).await.unwrap_or_default();
        let mut v: Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
        v["key"] = Value::String(key);
        let text = v.to_string();
        parts.headers.remove(header::CONTENT_LENGTH);
        resp = Response::from_parts(parts, axum::body::Body::from(text));
    }
    resp
}

async fn list_products(State(st): State<AppState>) -> Response {
    let views = st.shared.all_views();
    let mut s = String::with_capacity(views.len() * 1500 + 2);
    s.push('[');
    for (i, v) in views.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&v.json);
    }
    s.push(']');
    ([(header::CONTENT_TYPE, "application/json")], s).into_response()
}

async fn create_product(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    submit(&st, &headers, Method::POST, "/products", &body, |_, f| {
        check_known(f, &["id", "toml", "allowed_callers", "anyone_callable"])?;
        let id = match f.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ApiError::bad("id", "is required: a product id such as \"eth2x\"")),
        };
        crate::engine::check_product_id(&id)?;
        let toml = match f.get("toml") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ApiError::bad("toml", "is required: the product file as a string")),
        };
        let allowed_callers = match f.get("allowed_callers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| parse_address(&format!("allowed_callers[{i}]"), Some(v)))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ApiError::bad("allowed_callers", format!("must be an array of addresses, got {other}")));
            }
        };
        let anyone_callable = match f.get("anyone_callable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(ApiError::bad("anyone_callable", format!("must be true or false, got {other}"))),
        };
        Ok(Command::CreateProduct { id, toml, allowed_callers, anyone_callable })
    })
    .await
}

async fn get_product(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.shared.view(&id) {
        Some(p) => json_response(p.json.clone()),
        None => error_response(&ApiError::no_product(&id)),
    }
}

async fn get_history(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let run = || -> Result<Value, ApiError> {
        for k in q.keys() {
            if k != "points" {
                return Err(ApiError::bad(k.clone(), "unknown query parameter; this call takes points"));
            }
        }
        let points = match q.get("points") {
            None => 500,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (2..=5_000).contains(&n) => n,
                _ => return Err(ApiError::bad("points", format!("must be a whole number from 2 to 5000, got '{v}'"))),
            },
        };
        product_exists(&st, &id)?;
        let running = st.shared.keeper_running.load(std::sync::atomic::Ordering::SeqCst);
        let h = st.shared.history.read().expect("history lock");
        let Some(h) = h.get(&id) else {
            return Ok(
                json!({ "product": id, "points": [], "last_call": null, "keeper": null, "keeper_running": running }),
            );
        };
        Ok(json!({
            "product": id,
            "points": h.points.sample(points),
            "last_call": h.last_call,
            "keeper": h.keeper,
            "keeper_running": running,
        }))
    };
    match run() {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn get_balance(State(st): State<AppState>, Path((id, addr)): Path<(String, String)>) -> Response {
    let run = || -> Result<Value, ApiError> {
        product_exists(&st, &id)?;
        let a = parse_address("address", Some(&Value::String(addr.clone())))?;
        let b = st
            .shared
            .balances
            .read()
            .expect("balances lock")
            .get(&id)
            .and_then(|m| m.get(&a).copied())
            .unwrap_or_default();
        Ok(
            json!({ "product": id, "address": a, "balance": wad_str(b), "seq": st.shared.seq.load(std::sync::atomic::Ordering::SeqCst) }),
        )
    };
    match run() {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn mint(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/mint");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["quantity"])?;
        product_exists(&st, &id)?;
        Ok(Command::Mint { product: id.clone(), quantity: parse_quantity("quantity", f.get("quantity"))? })
    })
    .await
}

async fn redeem(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/redeem");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["quantity"])?;
        product_exists(&st, &id)?;
        Ok(Command::Redeem { product: id.clone(), quantity: parse_quantity("quantity", f.get("quantity"))? })
    })
    .await
}

async fn transfer(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/transfer");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["to", "quantity"])?;
        product_exists(&st, &id)?;
        Ok(Command::Transfer {
            product: id.clone(),
            to: parse_address("to", f.get("to"))?,
            quantity: parse_quantity("quantity", f.get("quantity"))?,
        })
    })
    .await
}

async fn push_price(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/prices");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["price", "asset"])?;
        product_exists(&st, &id)?;
        let asset = match f.get("asset") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => {
                let v = st.shared.view(&id).ok_or_else(|| ApiError::no_product(&id))?;
                // the collateral of a lending product, the underlying of a perp-venue one
                v.view
                    .position
                    .keys()
                    .find_map(|k| k.strip_prefix("collateral_").or_else(|| k.strip_prefix("size_")).map(str::to_string))
                    .unwrap_or_default()
            }
            Some(other) => return Err(ApiError::bad("asset", format!("must be an asset symbol, got {other}"))),
        };
        Ok(Command::ObservePrice { product: id.clone(), asset, price: parse_price("price", f.get("price"))? })
    })
    .await
}

async fn call(
    State(st): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/products/{id}/{name}");
    let c = match name.as_str() {
        "engage" => Call::Engage,
        "rebalance" => Call::Rebalance,
        "iterate" => Call::Iterate,
        "ripcord" => Call::Ripcord,
        "disengage" => Call::Disengage,
        "liquidate" => {
            return submit(&st, &headers, Method::POST, &path, &body, |_, f| {
                check_known(f, &[])?;
                product_exists(&st, &id)?;
                Ok(Command::Liquidate { product: id.clone() })
            })
            .await;
        }
        other => {
            return error_response(&ApiError::NotFound(format!(
                "no route /products/{}/{}",
                crate::error::excerpt(&id),
                crate::error::excerpt(other)
            )));
        }
    };
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["exchange"])?;
        product_exists(&st, &id)?;
        Ok(Command::Call { product: id.clone(), call: c, exchange: exchange_of(&st, &id, f)? })
    })
    .await
}

async fn update_settings(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/products/{id}/settings");
    submit(&st, &headers, Method::PATCH, &path, &body, |_, f| {
        check_known(f, &["patch"])?;
        product_exists(&st, &id)?;
        match f.get("patch") {
            Some(Value::String(s)) => Ok(Command::UpdateSettings { product: id.clone(), patch: s.clone() }),
            _ => Err(ApiError::bad(
                "patch",
                "is required: a TOML fragment, e.g. \"[methodology]\\nmax_leverage_ratio = \\\"2.4\\\"\"",
            )),
        }
    })
    .await
}

async fn remove_exchange(
    State(st): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/products/{id}/exchanges/{name}");
    submit(&st, &headers, Method::DELETE, &path, &body, |_, _| {
        product_exists(&st, &id)?;
        Ok(Command::RemoveExchange { product: id.clone(), exchange: name.clone() })
    })
    .await
}

async fn set_callers(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/callers");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["callers", "allowed"])?;
        product_exists(&st, &id)?;
        let callers = match f.get("callers") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| parse_address(&format!("callers[{i}]"), Some(v)))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(ApiError::bad("callers", "is required: an array of addresses")),
        };
        let allowed = match f.get("allowed") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_bool().ok_or_else(|| ApiError::bad(format!("allowed[{i}]"), "must be true or false"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Bool(b)) => vec![*b; callers.len()],
            _ => return Err(ApiError::bad("allowed", "is required: true, false, or one per caller")),
        };
        Ok(Command::SetCallers { product: id.clone(), callers, allowed })
    })
    .await
}

async fn set_anyone(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/products/{id}/anyone-callable");
    submit(&st, &headers, Method::POST, &path, &body, |_, f| {
        check_known(f, &["value"])?;
        product_exists(&st, &id)?;
        match f.get("value") {
            Some(Value::Bool(b)) => Ok(Command::SetAnyoneCallable { product: id.clone(), value: *b }),
            _ => Err(ApiError::bad("value", "is required: true or false")),
        }
    })
    .await
}

async fn events(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let parse = |k: &str, default: u64, max: u64| -> Result<u64, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad(k, format!("must be a whole number up to {max}, got '{v}'"))),
            },
        }
    };
    let run = async {
        for k in q.keys() {
            if !["after", "limit", "product", "kind", "exclude_kind"].contains(&k.as_str()) {
                return Err(ApiError::bad(
                    k.clone(),
                    "unknown query parameter; this call takes after, limit, product, kind, exclude_kind",
                ));
            }
        }
        // sequence numbers are stored as signed 64-bit integers
        let after = parse("after", 0, i64::MAX as u64)?;
        let limit = parse("limit", 100, 1000)? as u32;
        let product = q.get("product").cloned();
        if let Some(p) = &product {
            crate::engine::check_product_id(p)?;
        }
        let kinds = |k: &str| -> Result<Vec<String>, ApiError> {
            let Some(v) = q.get(k) else { return Ok(Vec::new()) };
            v.split(',')
                .map(|x| {
                    let x = x.trim();
                    if crate::model::EVENT_KINDS.contains(&x) {
                        Ok(x.to_string())
                    } else {
                        Err(ApiError::bad(
                            k,
                            format!("'{x}' is not an event kind; kinds: {}", crate::model::EVENT_KINDS.join(", ")),
                        ))
                    }
                })
                .collect()
        };
        let (take, leave) = (kinds("kind")?, kinds("exclude_kind")?);
        if !take.is_empty() && !leave.is_empty() {
            return Err(ApiError::bad("exclude_kind", "give kind or exclude_kind, not both"));
        }
        let filter = crate::store::EventFilter {
            product,
            exclude: take.is_empty() && !leave.is_empty(),
            kinds: if take.is_empty() { leave } else { take },
            after,
            limit,
        };
        let rows = st.reader.events(filter).await?;
        let next = rows.last().map(|e| e.seq);
        Ok(json!({
            "events": rows.iter().map(|e| e.public_json()).collect::<Vec<_>>(),
            "next_after": next,
        }))
    };
    match run.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn stream(State(st): State<AppState>) -> Response {
    let rx = st.shared.stream.subscribe();
    let s = BroadcastStream::new(rx).filter_map(|m| match m {
        Ok(text) => Some(Ok::<Event, std::convert::Infallible>(Event::default().event("event").data(&*text))),
        Err(_) => Some(Ok(Event::default().event("lagged").data("{}"))),
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut g = String::new();
    use std::fmt::Write;
    let gauge = |g: &mut String, name: &str, help: &str| {
        let _ = writeln!(g, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let views = st.shared.all_views();
    let num = |s: &Option<String>| s.as_deref().and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN);
    gauge(&mut g, "keel_leverage_ratio", "Leverage ratio (NaN while it cannot be measured).");
    for p in &views {
        let _ = writeln!(g, "keel_leverage_ratio{{product=\"{}\"}} {}", p.view.id, num(&p.view.leverage_ratio));
    }
    gauge(&mut g, "keel_nav_per_token_usd", "NAV per token, USD.");
    for p in &views {
        let _ = writeln!(g, "keel_nav_per_token_usd{{product=\"{}\"}} {}", p.view.id, num(&p.view.nav_per_token));
    }
    gauge(
        &mut g,
        "keel_funding_paid_usd",
        "Funding a perp product's account has paid to date, USD (negative: received).",
    );
    for p in views.iter().filter(|p| p.view.funding_paid_usd.is_some()) {
        let _ = writeln!(g, "keel_funding_paid_usd{{product=\"{}\"}} {}", p.view.id, num(&p.view.funding_paid_usd));
    }
    gauge(&mut g, "keel_supply", "Total supply, tokens.");
    for p in &views {
        let _ = writeln!(g, "keel_supply{{product=\"{}\"}} {}", p.view.id, p.view.supply.parse::<f64>().unwrap_or(0.0));
    }
    gauge(&mut g, "keel_blocked", "1 while minting, redeeming and rebalancing are paused (stale price).");
    for p in &views {
        let _ = writeln!(g, "keel_blocked{{product=\"{}\"}} {}", p.view.id, u8::from(p.view.blocked.is_some()));
    }
    gauge(&mut g, "keel_leverage_band", "The leverage band: bound is min, target, max or ripcord.");
    for p in &views {
        let b = &p.view.band;
        for (bound, v) in [("min", &b.min), ("target", &b.target), ("max", &b.max), ("ripcord", &b.ripcord)] {
            if let Ok(x) = v.parse::<f64>() {
                let _ = writeln!(g, "keel_leverage_band{{product=\"{}\",bound=\"{bound}\"}} {x}", p.view.id);
            }
        }
    }
    gauge(
        &mut g,
        "keel_health",
        "The venue's health measure: the lending market's health factor or the perp venue's margin ratio (+Inf without debt).",
    );
    for p in &views {
        for measure in ["health_factor", "margin_ratio"] {
            if let Some(v) = p.view.risk.get(measure) {
                let x = if v == "inf" { f64::INFINITY } else { v.parse::<f64>().unwrap_or(f64::NAN) };
                let _ = writeln!(g, "keel_health{{product=\"{}\",measure=\"{measure}\"}} {x}", p.view.id);
            }
        }
    }
    gauge(
        &mut g,
        "keel_adverse_move",
        "The adverse price move, as a fraction, that would reach an event: liquidation, ripcord or close.",
    );
    for p in &views {
        for (k, v) in p.view.risk.iter().filter(|(k, _)| k.starts_with("to_")) {
            if let Ok(x) = v.parse::<f64>() {
                let _ = writeln!(g, "keel_adverse_move{{product=\"{}\",to=\"{}\"}} {x}", p.view.id, &k[3..]);
            }
        }
    }
    gauge(&mut g, "keel_price_age_seconds", "Age of the last observed price, by asset.");
    for p in &views {
        for (asset, pv) in &p.view.prices {
            let _ = writeln!(g, "keel_price_age_seconds{{product=\"{}\",asset=\"{asset}\"}} {}", p.view.id, pv.age_s);
        }
    }
    gauge(
        &mut g,
        "keel_price_heartbeat_seconds",
        "The oracle's heartbeat: a price older than this pauses the product.",
    );
    for p in &views {
        for (asset, pv) in &p.view.prices {
            let _ = writeln!(
                g,
                "keel_price_heartbeat_seconds{{product=\"{}\",asset=\"{asset}\"}} {}",
                p.view.id, pv.heartbeat_s
            );
        }
    }
    {
        let h = st.shared.history.read().expect("history lock");
        gauge(
            &mut g,
            "keel_keeper_last_success_timestamp_seconds",
            "When the in-process keeper's last call on the product was accepted, unix seconds.",
        );
        for (id, ph) in h.iter() {
            if let Some(t) = ph.keeper.as_ref().and_then(|k| k.last_success_at) {
                let _ = writeln!(g, "keel_keeper_last_success_timestamp_seconds{{product=\"{id}\"}} {t}");
            }
        }
        gauge(&mut g, "keel_keeper_consecutive_failures", "The in-process keeper's refusals since its last success.");
        for (id, ph) in h.iter() {
            if let Some(k) = &ph.keeper {
                let _ = writeln!(g, "keel_keeper_consecutive_failures{{product=\"{id}\"}} {}", k.failures);
            }
        }
        gauge(
            &mut g,
            "keel_last_call_timestamp_seconds",
            "When the last call on the token (rebalance, iterate, ripcord, ...) ran.",
        );
        for (id, ph) in h.iter() {
            if let Some(at) = ph.last_call.as_ref().and_then(|c| c["at"].as_u64()) {
                let _ = writeln!(g, "keel_last_call_timestamp_seconds{{product=\"{id}\"}} {at}");
            }
        }
    }
    gauge(&mut g, "keel_event_seq", "Last committed event.");
    let _ = writeln!(g, "keel_event_seq {}", st.shared.seq.load(std::sync::atomic::Ordering::SeqCst));
    let body = st.shared.metrics.render(&g);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn health(State(st): State<AppState>) -> Response {
    use crate::writer::Health;
    let seq = st.shared.seq.load(std::sync::atomic::Ordering::SeqCst);
    let stopped = st.shared.stopped.load(std::sync::atomic::Ordering::SeqCst);
    let (code, v) = match st.shared.health() {
        Health::Ok if !stopped => (StatusCode::OK, json!({ "status": "ok", "seq": seq })),
        Health::Ok => (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "stopped", "seq": seq })),
        Health::Degraded(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "degraded", "reason": reason, "seq": seq }))
        }
        Health::Stopped(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "stopped", "reason": reason, "seq": seq }))
        }
    };
    (code, axum::Json(v)).into_response()
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn track(
    State(st): State<AppState>,
    matched: Option<MatchedPath>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let t = Instant::now();
    let resp = next.run(req).await;
    st.shared.metrics.request(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> Response {
    error_response(&ApiError::NotFound("no such route; see /openapi.json".into()))
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/keys", post(create_key))
        .route("/products", get(list_products).post(create_product))
        .route("/products/{id}", get(get_product))
        .route("/products/{id}/history", get(get_history))
        .route("/products/{id}/balances/{address}", get(get_balance))
        .route("/products/{id}/mint", post(mint))
        .route("/products/{id}/redeem", post(redeem))
        .route("/products/{id}/transfer", post(transfer))
        .route("/products/{id}/prices", post(push_price))
        .route("/products/{id}/settings", patch(update_settings))
        .route("/products/{id}/exchanges/{name}", delete(remove_exchange))
        .route("/products/{id}/callers", post(set_callers))
        .route("/products/{id}/anyone-callable", post(set_anyone))
        .route("/products/{id}/{call}", post(call))
        .route("/events", get(events))
        .route("/events/stream", get(stream))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// The longest request target (path and query) keel reads.
pub const MAX_URI: usize = 8 * 1024;

/// Every refusal is JSON: the framework's own (405 method not allowed, 413 body too large, a
/// path that is not UTF-8) arrive as plain text and are wrapped here, and a target longer than
/// [`MAX_URI`] is refused with 414. (A request line over 64 KiB is refused by the HTTP parser
/// itself, before keel sees it, with an empty 414.)
async fn json_errors(req: axum::extract::Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if len > MAX_URI {
        return (
            StatusCode::URI_TOO_LONG,
            axum::Json(json!({ "error": "uri_too_long", "message": format!("the request target is {len} bytes; at most {MAX_URI}") })),
        )
            .into_response();
    }
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let kind = match status.as_u16() {
        405 => "method_not_allowed",
        413 => "payload_too_large",
        414 => "uri_too_long",
        400 => "bad_request",
        404 => "not_found",
        _ => "error",
    };
    let mut r = (status, axum::Json(json!({ "error": kind, "message": message }))).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}
