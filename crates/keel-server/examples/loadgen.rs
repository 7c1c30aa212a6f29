//! A load generator for `keel serve` on loopback: durable mints and redeems (each with its own
//! idempotency key) or state reads, from N client threads with keep-alive connections.
//! Reports acknowledged requests per second and latency percentiles.
//!
//! ```text
//! cargo run --release -p keel-server --example loadgen -- http://127.0.0.1:8080 OPERATOR_KEY write 64 10
//! cargo run --release -p keel-server --example loadgen -- http://127.0.0.1:8080 OPERATOR_KEY read 32 10
//! ```
//!
//! `setup` mode only creates the product and seeded holder keys and prints them, for wrk:
//!
//! ```text
//! set -- $(cargo run --release -p keel-server --example loadgen -- URL OPERATOR_KEY setup 64 0)
//! wrk -t2 -c64 -d10s --latency -s crates/keel-server/examples/mint_redeem.lua URL -- $1 $2
//! ```

use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(a: &ureq::Agent, url: &str, key: &str, idem: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = a.post(url).header("Authorization", &format!("Bearer {key}"));
    if let Some(i) = idem {
        r = r.header("Idempotency-Key", i);
    }
    let mut resp = r.send_json(body).expect("request");
    let s = resp.status().as_u16();
    (s, resp.body_mut().read_json().unwrap_or(Value::Null))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: loadgen SERVER OPERATOR_KEY write|read|setup THREADS SECONDS");
        std::process::exit(2);
    }
    let (base, op, mode) = (args[1].trim_end_matches('/').to_string(), args[2].clone(), args[3].clone());
    let threads: usize = args[4].parse().expect("THREADS");
    let secs: u64 = args[5].parse().expect("SECONDS");
    let a = agent();
    let id = format!("load{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let toml =
        include_str!("../../../products/eth2x-fli.toml").replace("supply_cap = \"5000\"", "supply_cap = \"100000000\"");
    let (s, v) = post(&a, &format!("{base}/products"), &op, None, &json!({ "id": id, "toml": toml }));
    assert_eq!(s, 201, "create product: {v}");
    let keys: Vec<String> = (0..threads)
        .map(|_| {
            post(&a, &format!("{base}/keys"), &op, None, &json!({ "role": "holder" })).1["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // seed every holder so redeems have something to redeem
    for k in &keys {
        let (s, v) = post(&a, &format!("{base}/products/{id}/mint"), k, None, &json!({ "quantity": "1" }));
        assert_eq!(s, 200, "seed mint: {v}");
    }
    if mode == "setup" {
        // for an external load generator (wrk with examples/mint_redeem.lua)
        println!("{id} {}", keys.join(","));
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let (base, id, mode) = (base.clone(), id.clone(), mode.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = if mode == "read" {
                        let mut r = a.get(format!("{base}/products/{id}")).call().expect("read");
                        let ok = r.status() == 200;
                        let _ = r.body_mut().read_to_string();
                        ok
                    } else {
                        let kind = if n.is_multiple_of(2) { "mint" } else { "redeem" };
                        let idem = format!("lg-{i}-{n}");
                        let (s, _) = post(
                            &a,
                            &format!("{base}/products/{id}/{kind}"),
                            &key,
                            Some(&idem),
                            &json!({ "quantity": "0.001" }),
                        );
                        s == 200
                    };
                    lat.push(t.elapsed().as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                    n += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let ok = lat.len() as u64 - errors;
    println!(
        "{mode}: {} requests in {elapsed:.1} s with {threads} clients: {:.0} acknowledged/s, {errors} errors; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        lat.len(),
        ok as f64 / elapsed,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}
