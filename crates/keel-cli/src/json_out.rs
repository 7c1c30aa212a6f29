//! `--json`: a command's CSV results as JSON objects, numbers as numbers.

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Each row of `csv` as an object keyed by the header; a cell that parses as a finite number
/// becomes a number, an empty cell `null`, anything else a string.
pub fn csv_rows(csv: &[u8]) -> Result<Value> {
    let mut r = csv::Reader::from_reader(csv);
    let head: Vec<String> = r.headers().context("results header")?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.context("results row")?;
        let mut o = Map::new();
        for (k, v) in head.iter().zip(rec.iter()) {
            let value = match v.parse::<f64>() {
                _ if v.is_empty() => Value::Null,
                Ok(x) if x.is_finite() => serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null),
                _ => Value::String(v.to_string()),
            };
            o.insert(k.clone(), value);
        }
        rows.push(Value::Object(o));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_numbers() {
        let v = csv_rows(b"token,return,stress,note\nETH2x,-0.25,0 ripcord,\n").unwrap();
        assert_eq!(v, serde_json::json!([{"token": "ETH2x", "return": -0.25, "stress": "0 ripcord", "note": null}]));
    }
}
