//! The OpenAPI 3.1 document, generated from the same route table the router is built from:
//! every operation with an `operationId`, a tag, its parameters with the patterns and bounds
//! the server enforces, its request body, and the schema of every response it can give, so a
//! generated client works and a schema-driven test (schemathesis, in CI) can hold the server
//! to it. The product view and the history are described from their Rust types (schemars).

use crate::http::ROUTES;
use crate::model::EVENT_KINDS;
use serde_json::{Map, Value, json};

/// Characters of an `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,200}$";
/// A product id.
pub const PRODUCT_ID_PATTERN: &str = "^[a-z0-9_-]{1,64}$";
/// An account address.
pub const ADDRESS_PATTERN: &str = "^0x[0-9a-fA-F]{40}$";
/// A decimal amount with at most 18 decimals (tokens or USD).
pub const DECIMAL_PATTERN: &str = "^[0-9]{1,60}(\\.[0-9]{1,18})?$";

/// `operationId` and tag of each route (every route has one; a test checks).
pub fn operation(method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    Some(match (method, path) {
        ("get", "/") => ("dashboard", "service"),
        ("get", "/openapi.json") => ("openapi", "service"),
        ("get", "/metrics") => ("metrics", "service"),
        ("get", "/health") => ("health", "service"),
        ("post", "/keys") => ("createKey", "keys"),
        ("get", "/products") => ("listProducts", "products"),
        ("post", "/products") => ("createProduct", "products"),
        ("get", "/products/{id}") => ("getProduct", "products"),
        ("get", "/products/{id}/history") => ("getProductHistory", "products"),
        ("get", "/products/{id}/balances/{address}") => ("getBalance", "holders"),
        ("post", "/products/{id}/mint") => ("mint", "holders"),
        ("post", "/products/{id}/redeem") => ("redeem", "holders"),
        ("post", "/products/{id}/transfer") => ("transfer", "holders"),
        ("post", "/products/{id}/prices") => ("pushPrice", "oracle"),
        ("post", "/products/{id}/engage") => ("engage", "calls"),
        ("post", "/products/{id}/disengage") => ("disengage", "calls"),
        ("post", "/products/{id}/rebalance") => ("rebalance", "calls"),
        ("post", "/products/{id}/iterate") => ("iterateRebalance", "calls"),
        ("post", "/products/{id}/ripcord") => ("ripcord", "calls"),
        ("post", "/products/{id}/liquidate") => ("liquidate", "calls"),
        ("patch", "/products/{id}/settings") => ("updateSettings", "settings"),
        ("delete", "/products/{id}/exchanges/{name}") => ("removeExchange", "settings"),
        ("post", "/products/{id}/callers") => ("setCallers", "settings"),
        ("post", "/products/{id}/anyone-callable") => ("setAnyoneCallable", "settings"),
        ("get", "/events") => ("listEvents", "events"),
        ("get", "/events/stream") => ("streamEvents", "events"),
        _ => return None,
    })
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
}

fn decimal(description: &str, example: &str) -> Value {
    json!({ "type": "string", "pattern": DECIMAL_PATTERN, "description": description, "example": example })
}

fn body_schema(method: &str, path: &str) -> Option<Value> {
    let address = json!({ "type": "string", "pattern": ADDRESS_PATTERN });
    let exchange = obj(json!({ "exchange": { "type": "string", "minLength": 1, "maxLength": 64 } }), &[]);
    Some(match (method, path) {
        ("post", "/keys") => obj(
            json!({ "role": { "enum": ["operator", "keeper", "holder", "oracle", "public"] }, "address": address, "label": { "type": "string", "maxLength": 200 } }),
            &["role"],
        ),
        ("post", "/products") => obj(
            json!({ "id": { "type": "string", "pattern": PRODUCT_ID_PATTERN }, "toml": { "type": "string", "maxLength": 65536, "description": "A product file, as `keel product check` takes it" }, "allowed_callers": { "type": "array", "items": address, "maxItems": 100 }, "anyone_callable": { "type": "boolean" } }),
            &["id", "toml"],
        ),
        ("post", "/products/{id}/mint") | ("post", "/products/{id}/redeem") => {
            obj(json!({ "quantity": decimal("Tokens, positive, at most 18 decimals", "1.5") }), &["quantity"])
        }
        ("post", "/products/{id}/transfer") => obj(
            json!({ "to": address, "quantity": decimal("Tokens, positive, at most 18 decimals", "1.5") }),
            &["to", "quantity"],
        ),
        ("post", "/products/{id}/prices") => obj(
            json!({ "price": decimal("USD per whole unit, positive", "2000.5"), "asset": { "type": "string", "minLength": 1, "maxLength": 32 } }),
            &["price"],
        ),
        ("patch", "/products/{id}/settings") => obj(
            json!({ "patch": { "type": "string", "maxLength": 65536, "description": "A TOML fragment of the product file" } }),
            &["patch"],
        ),
        ("post", "/products/{id}/callers") => obj(
            json!({ "callers": { "type": "array", "items": address, "maxItems": 100 }, "allowed": { "type": "array", "items": { "type": "boolean" }, "maxItems": 100 } }),
            &["callers", "allowed"],
        ),
        ("post", "/products/{id}/anyone-callable") => obj(json!({ "value": { "type": "boolean" } }), &["value"]),
        ("post", p)
            if p.ends_with("engage")
                || p.ends_with("rebalance")
                || p.ends_with("iterate")
                || p.ends_with("ripcord") =>
        {
            exchange
        }
        _ => return None,
    })
}

/// A reply object: these fields at least, more allowed (each kind of token adds its own).
fn reply(props: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": props, "required": required })
}

fn response_schema(method: &str, path: &str) -> Value {
    let s = json!({ "type": "string" });
    let n = json!({ "type": ["string", "null"] });
    let product = json!({ "type": "string", "pattern": PRODUCT_ID_PATTERN });
    let seq = json!({ "type": "integer", "minimum": 0 });
    match (method, path) {
        ("get", "/openapi.json") => json!({ "type": "object" }),
        ("get", "/health") => reply(
            json!({ "status": { "enum": ["ok", "degraded", "stopped"] }, "seq": seq, "reason": s }),
            &["status", "seq"],
        ),
        ("post", "/keys") => reply(
            json!({ "key": s, "key_id": s, "role": s, "address": { "type": "string", "pattern": ADDRESS_PATTERN }, "label": n }),
            &["key", "key_id", "role", "address"],
        ),
        ("get", "/products") => json!({ "type": "array", "items": { "$ref": "#/components/schemas/ProductView" } }),
        ("post", "/products") | ("get", "/products/{id}") => json!({ "$ref": "#/components/schemas/ProductView" }),
        ("get", "/products/{id}/history") => reply(
            json!({
                "product": product,
                "points": { "type": "array", "items": { "$ref": "#/components/schemas/Point" } },
                "last_call": { "type": ["object", "null"] },
                "keeper": { "oneOf": [{ "$ref": "#/components/schemas/KeeperStatus" }, { "type": "null" }] },
                "keeper_running": { "type": "boolean" }
            }),
            &["product", "points", "last_call", "keeper", "keeper_running"],
        ),
        ("get", "/products/{id}/balances/{address}") => reply(
            json!({ "product": product, "address": s, "balance": s, "seq": seq }),
            &["product", "address", "balance", "seq"],
        ),
        ("post", "/products/{id}/mint") | ("post", "/products/{id}/redeem") => reply(
            json!({ "product": product, "holder": s, "quantity": s, "nav_per_token": s, "balance": s, "supply": s }),
            &["product", "quantity", "nav_per_token", "balance", "supply"],
        ),
        ("post", "/products/{id}/transfer") => {
            reply(json!({ "product": product, "from": s, "to": s, "quantity": s }), &["product"])
        }
        ("post", "/products/{id}/prices") => reply(
            json!({ "product": product, "asset": s, "price": s, "at": seq }),
            &["product", "asset", "price", "at"],
        ),
        ("patch", "/products/{id}/settings") => {
            reply(json!({ "product": product, "changed": {} }), &["product", "changed"])
        }
        ("delete", "/products/{id}/exchanges/{name}") => {
            reply(json!({ "product": product, "removed": s }), &["product", "removed"])
        }
        ("post", "/products/{id}/callers") => reply(
            json!({ "product": product, "callers": { "type": "array" }, "allowed": { "type": "array" } }),
            &["product", "callers", "allowed"],
        ),
        ("post", "/products/{id}/anyone-callable") => reply(
            json!({ "product": product, "anyone_callable": { "type": "boolean" } }),
            &["product", "anyone_callable"],
        ),
        ("post", "/products/{id}/liquidate") => reply(json!({ "product": product }), &["product"]),
        ("post", _) => reply(json!({ "call": s, "leverage_before": n }), &["call"]),
        ("get", "/events") => reply(
            json!({ "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } }, "next_after": { "type": ["integer", "null"], "minimum": 0 } }),
            &["events", "next_after"],
        ),
        _ => json!({}),
    }
}

fn parameters(method: &str, path: &str) -> Vec<Value> {
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = match name {
                "id" => json!({ "type": "string", "pattern": PRODUCT_ID_PATTERN, "examples": ["eth2x"] }),
                "address" => json!({ "type": "string", "pattern": ADDRESS_PATTERN, "examples": ["0x000000000000000000000000000000000000dead"] }),
                _ => json!({ "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$", "examples": ["uniswap-v3"] }),
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    let kinds = format!("^({k})(,({k}))*$", k = EVENT_KINDS.join("|"));
    match path {
        "/events" => {
            params.push(json!({ "name": "after", "in": "query", "required": false, "description": "Events after this sequence number", "schema": { "type": "integer", "minimum": 0, "maximum": i64::MAX } }));
            params.push(json!({ "name": "limit", "in": "query", "required": false, "description": "At most this many (default 100)", "schema": { "type": "integer", "minimum": 0, "maximum": 1000 } }));
            params.push(json!({ "name": "product", "in": "query", "required": false, "schema": { "type": "string", "pattern": PRODUCT_ID_PATTERN } }));
            params.push(json!({ "name": "kind", "in": "query", "required": false, "description": "Only these kinds, comma-separated", "schema": { "type": "string", "pattern": kinds } }));
            params.push(json!({ "name": "exclude_kind", "in": "query", "required": false, "description": "Every kind but these (not with kind)", "schema": { "type": "string", "pattern": kinds } }));
        }
        "/products/{id}/history" => {
            params.push(json!({ "name": "points", "in": "query", "required": false, "description": "At most this many points (default 500)", "schema": { "type": "integer", "minimum": 2, "maximum": 5000 } }));
        }
        _ => {}
    }
    if method != "get" {
        params.push(json!({ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN }, "description": "A retry with the same key and request returns the first result and does nothing twice." }));
    }
    params
}

/// The JSON schemas of the product view and the history's types, with references into
/// `#/components/schemas`.
fn type_schemas() -> Map<String, Value> {
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let named = [
        ("ProductView", g.subschema_for::<crate::view::ProductView>()),
        ("Point", g.subschema_for::<crate::history::Point>()),
        ("KeeperStatus", g.subschema_for::<crate::history::KeeperStatus>()),
    ];
    let mut out: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    // a type the generator inlined (no definition of its own) gets one under its name
    for (name, schema) in named {
        out.entry(name).or_insert_with(|| schema.to_value());
    }
    out
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    let error = json!({ "description": "Refused; nothing changed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    for (method, path, role, summary) in ROUTES {
        let mut op = Map::new();
        let (id, tag) = operation(method, path).unwrap_or(("undocumented", "service"));
        op.insert("operationId".into(), json!(id));
        op.insert("tags".into(), json!([tag]));
        op.insert("summary".into(), Value::String(summary.to_string()));
        op.insert("description".into(), Value::String(format!("Role: {role}.")));
        let params = parameters(method, path);
        if *method != "get" {
            op.insert("security".into(), json!([{ "apiKey": [] }]));
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(schema) = body_schema(method, path) {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
            );
        }
        let ok = if *method == "post" && (*path == "/products" || *path == "/keys") { "201" } else { "200" };
        let mut responses = Map::new();
        let content = match *path {
            "/" => json!({ "text/html": { "schema": { "type": "string" } } }),
            "/metrics" => json!({ "text/plain": { "schema": { "type": "string" } } }),
            "/events/stream" => json!({ "text/event-stream": { "schema": { "type": "string" } } }),
            _ => json!({ "application/json": { "schema": response_schema(method, path) } }),
        };
        responses.insert(ok.into(), json!({ "description": "OK", "content": content }));
        if *path == "/health" {
            responses.insert(
                "503".into(),
                json!({ "description": "Degraded or stopped, with the reason", "content": { "application/json": { "schema": response_schema("get", "/health") } } }),
            );
        }
        if *method != "get" {
            for code in ["400", "401", "403", "404", "409", "422", "503"] {
                responses.insert(code.into(), error.clone());
            }
        } else if path.contains('{') || *path == "/events" {
            for code in ["400", "404", "503"] {
                responses.insert(code.into(), error.clone());
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(path.to_string()).or_insert_with(|| Value::Object(Map::new()));
        entry[*method] = Value::Object(op);
    }
    let mut schemas = type_schemas();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": { "error": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } },
            "required": ["error", "message"]
        }),
    );
    schemas.insert(
        "Event".into(),
        json!({
            "type": "object",
            "properties": {
                "seq": { "type": "integer", "minimum": 1 },
                "at": { "type": "integer", "minimum": 0 },
                "kind": { "enum": EVENT_KINDS },
                "product": { "type": ["string", "null"] },
                "actor": { "type": "object", "properties": { "key_id": { "type": "string" }, "role": { "type": "string" }, "address": { "type": "string" } }, "required": ["key_id", "role", "address"] },
                "idempotency_key": { "type": ["string", "null"] },
                "command": { "type": "object" },
                "result": {}
            },
            "required": ["seq", "at", "kind", "product", "actor", "command", "result"]
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keel",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run leveraged tokens: mint and redeem at NAV, keeper calls, settings, prices, the event log."
        },
        "tags": [
            { "name": "products", "description": "Create products and read their state and history" },
            { "name": "holders", "description": "Mint, redeem, transfer, balances" },
            { "name": "oracle", "description": "Prices" },
            { "name": "calls", "description": "The methodology's calls: engage, rebalance, iterate, ripcord, disengage, liquidate" },
            { "name": "settings", "description": "The operator's settings" },
            { "name": "keys", "description": "API keys" },
            { "name": "events", "description": "The event log" },
            { "name": "service", "description": "Dashboard, metrics, health, this document" }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_an_operation_id_and_every_reference_resolves() {
        let mut ids = std::collections::BTreeSet::new();
        for (method, path, _, _) in ROUTES {
            let (id, _) = operation(method, path).unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id), "operationId {id} used twice");
        }
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = &r[..r.find('"').unwrap()];
            let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("ref {target}"));
            assert!(schemas.contains_key(name), "{target} resolves");
        }
        assert!(schemas["ProductView"]["properties"]["nav_per_token"].is_object(), "{}", schemas["ProductView"]);
    }
}
