//! The OpenAPI 3.1 document, generated from the same route table the router is built from.

use crate::http::ROUTES;
use serde_json::{Map, Value, json};

fn body_schema(method: &str, path: &str) -> Option<Value> {
    let s = |props: Value, required: &[&str]| json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false });
    let qty = json!({ "type": "string", "description": "Tokens, a positive decimal with up to 18 decimals", "example": "1.5" });
    let exchange =
        json!({ "type": "object", "properties": { "exchange": { "type": "string" } }, "additionalProperties": false });
    Some(match (method, path) {
        ("post", "/keys") => s(
            json!({ "role": { "enum": ["operator", "keeper", "holder", "oracle", "public"] }, "address": { "type": "string" }, "label": { "type": "string" } }),
            &["role"],
        ),
        ("post", "/products") => s(
            json!({ "id": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" }, "toml": { "type": "string" }, "allowed_callers": { "type": "array", "items": { "type": "string" } }, "anyone_callable": { "type": "boolean" } }),
            &["id", "toml"],
        ),
        ("post", "/products/{id}/mint") | ("post", "/products/{id}/redeem") => {
            s(json!({ "quantity": qty }), &["quantity"])
        }
        ("post", "/products/{id}/transfer") => {
            s(json!({ "to": { "type": "string" }, "quantity": qty }), &["to", "quantity"])
        }
        ("post", "/products/{id}/prices") => {
            s(json!({ "price": { "type": "string", "example": "2000.5" }, "asset": { "type": "string" } }), &["price"])
        }
        ("patch", "/products/{id}/settings") => s(json!({ "patch": { "type": "string" } }), &["patch"]),
        ("post", "/products/{id}/callers") => s(
            json!({ "callers": { "type": "array", "items": { "type": "string" } }, "allowed": { "type": "array", "items": { "type": "boolean" } } }),
            &["callers", "allowed"],
        ),
        ("post", "/products/{id}/anyone-callable") => s(json!({ "value": { "type": "boolean" } }), &["value"]),
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

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    let error = json!({ "description": "Refused; nothing changed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    for (method, path, role, summary) in ROUTES {
        let mut op = Map::new();
        op.insert("summary".into(), Value::String(summary.to_string()));
        op.insert("description".into(), Value::String(format!("Role: {role}.")));
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut params = params;
        if *path == "/events" {
            for (n, t) in [("after", "integer"), ("limit", "integer"), ("product", "string")] {
                params.push(json!({ "name": n, "in": "query", "required": false, "schema": { "type": t } }));
            }
        }
        if *method != "get" {
            params.push(json!({ "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 200 }, "description": "A retry with the same key and request returns the first result and does nothing twice." }));
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
        let content_type = match *path {
            "/" => "text/html",
            "/metrics" => "text/plain",
            "/events/stream" => "text/event-stream",
            _ => "application/json",
        };
        responses.insert(ok.into(), json!({ "description": "OK", "content": { content_type: {} } }));
        if *method != "get" {
            for code in ["400", "401", "403", "404", "409", "422", "503"] {
                responses.insert(code.into(), error.clone());
            }
        } else if path.contains('{') || *path == "/events" {
            for code in ["400", "404"] {
                responses.insert(code.into(), error.clone());
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(path.to_string()).or_insert_with(|| Value::Object(Map::new()));
        entry[*method] = Value::Object(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "keel",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run leveraged tokens: mint and redeem at NAV, keeper calls, settings, prices, the event log."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" }, "field": { "type": "string" } },
                    "required": ["error", "message"]
                }
            }
        }
    })
}
