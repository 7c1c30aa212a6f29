//! The Grafana dashboard (`deploy/grafana/keel.json`) asks only for metrics keel exports: every
//! metric name in its queries is described (`# HELP`) by a running `keel serve`'s /metrics or by
//! the RPC keeper's.

mod common;

use common::{OP, agent, call, spawn};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn helped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Metric names in a PromQL expression: words starting `keel_` or `process_`.
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = (expr[i..].starts_with("keel_") || expr[i..].starts_with("process_"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if starts {
            let end = expr[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(expr.len(), |e| i + e);
            out.push(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let srv = spawn(&keel_server::testing::sqlite_url("grafana"), &["--keeper"]);
    let a = agent();
    let toml = include_str!("../../../products/eth2x-fli.toml");
    assert_eq!(call(&a, &srv.base, "/products", OP, None, json!({ "id": "eth2x", "toml": toml })).unwrap().0, 201);
    let text = a.get(format!("{}/metrics", srv.base)).call().unwrap().body_mut().read_to_string().unwrap();
    srv.kill();
    let keeper = keel_keeper::metrics::Metrics::default();
    keeper.with("eth2x", |_| {});
    let mut known = helped(&text);
    known.extend(helped(&keeper.render()));

    let dash: Value = serde_json::from_str(include_str!("../../../deploy/grafana/keel.json")).unwrap();
    let mut asked = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for n in names(expr) {
                let base = n.strip_suffix("_bucket").unwrap_or(&n);
                assert!(known.contains(base), "panel '{}' asks for {n}, which keel does not export", p["title"]);
                asked += 1;
            }
        }
    }
    assert!(asked > 20, "the dashboard's queries were read ({asked} metric names)");
}
