//! Funding end to end: `compare` shows it for every perp product, `--funding FILE.csv` replays a
//! history (and refuses bad files by line), `--funding off` and `--costs none` turn it off, and
//! `crowded-long` makes longs pay.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel")).args(args).current_dir(root()).output().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keel-funding-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn summary(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

const PERPS: [&str; 5] = [
    "products/eth2x-perp.toml",
    "products/eth-3x-threshold.toml",
    "products/eth-minus1x-threshold.toml",
    "products/eth-3x-daily.toml",
    "products/eth-minus2x-bear.toml",
];

#[test]
fn compare_on_the_default_scenario_shows_funding_for_every_perp_product() {
    let out = tmpdir("compare");
    let mut args = vec!["compare", "--scenario", "default", "--block-time", "1h", "--out", out.to_str().unwrap()];
    args.push("--products");
    args.push("products/eth2x-fli.toml");
    args.extend(PERPS);
    let o = keel(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("funding $"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let col = r.headers().unwrap().iter().position(|h| h == "funding").expect("a funding column");
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 1 + PERPS.len());
    assert_eq!(rows[0][col].parse::<f64>().unwrap(), 0.0, "the lending FLI pays interest, not funding");
    for row in &rows[1..] {
        let f: f64 = row[col].parse().unwrap();
        assert!(f.abs() > 100.0, "{}: funding {f}", &row[0]);
    }
    let _ = std::fs::remove_dir_all(out);
}

fn backtest(product: &str, extra: &[&str], name: &str) -> (Output, PathBuf) {
    let out = tmpdir(name);
    let mut args = vec!["backtest", "--product", product, "--quiet", "--out", out.to_str().unwrap()];
    args.extend(extra);
    (keel(&args), out)
}

#[test]
fn table_funding_switches() {
    let bars = "crates/keel-cli/tests/fixtures/eth-10d-1h.csv";
    for (case, product, extra, want) in [
        (
            "off",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--block-time", "1h", "--funding", "off"],
            "zero",
        ),
        (
            "costs none",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--block-time", "1h", "--costs", "none"],
            "zero",
        ),
        (
            "crowded long pays",
            "products/eth2x-perp.toml",
            vec!["--scenario", "crowded-long", "--block-time", "1h"],
            "paid",
        ),
        (
            "crowded long pays (synthetix)",
            "products/eth-3x-threshold.toml",
            vec!["--scenario", "crowded-long", "--block-time", "1h"],
            "paid",
        ),
        (
            "a short receives",
            "products/eth-minus1x-threshold.toml",
            vec!["--scenario", "crowded-long", "--block-time", "1h"],
            "received",
        ),
        (
            "mean tuned negative: a long receives",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--block-time", "1h", "--funding-mean", "-30%/yr"],
            "received",
        ),
        (
            "replayed",
            "products/eth2x-perp.toml",
            vec![
                "--prices",
                bars,
                "--block-time",
                "1h",
                "--funding",
                "crates/keel-cli/tests/fixtures/funding-10d-8h.csv",
            ],
            "paid",
        ),
    ] {
        let (o, out) = backtest(product, &extra, &case.replace(' ', "-"));
        assert!(o.status.success(), "case {case}: {}", String::from_utf8_lossy(&o.stderr));
        let s = summary(&out);
        let f = s["costs_usd"]["funding"].as_f64().unwrap();
        match want {
            "zero" => assert_eq!(f, 0.0, "case {case}"),
            "paid" => assert!(f > 0.0, "case {case}: {f}"),
            _ => assert!(f < 0.0, "case {case}: {f}"),
        }
        let line = String::from_utf8_lossy(&o.stdout);
        assert!(line.contains("funding "), "case {case}: {line}");
        if case == "replayed" {
            assert!(s["funding"].as_str().unwrap().starts_with("replayed"), "case {case}: {}", s["funding"]);
        }
        let _ = std::fs::remove_dir_all(out);
    }
}

#[test]
fn table_bad_funding_input_is_refused_with_the_field_and_the_rule() {
    let dir = tmpdir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let bars = "crates/keel-cli/tests/fixtures/eth-10d-1h.csv";
    let absurd = file("absurd.csv", "timestamp,funding_rate\n2024-01-01,0.0001\n2024-01-02,3\n");
    let short = file("short.csv", "timestamp,funding_rate\n2024-01-01,0.0001\n2024-01-02,0.0001\n");
    let gap = file(
        "gap.csv",
        "timestamp,funding_rate_8h\n2024-01-01T00:00:00Z,0.0001\n2024-01-01T08:00:00Z,0.0001\n2024-01-02T08:00:00Z,0.0001\n",
    );
    for (case, product, extra, words) in [
        (
            "absurd rate",
            "products/eth2x-perp.toml",
            vec!["--prices", bars, "--funding", &absurd],
            "line 3: funding rate 3",
        ),
        ("gap", "products/eth2x-perp.toml", vec!["--prices", bars, "--funding", &gap], "line 4: gap"),
        (
            "does not cover the prices",
            "products/eth2x-perp.toml",
            vec!["--prices", bars, "--funding", &short],
            "must be in force",
        ),
        (
            "lending",
            "products/eth2x-fli.toml",
            vec!["--scenario", "calm", "--funding", "off"],
            "apply to perp products",
        ),
        (
            "bad mean",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--funding-mean", "lots"],
            "--funding-mean",
        ),
        (
            "mean past the cap",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--funding-mean", "20%/day"],
            "funding.mean_rate = 0.2",
        ),
        (
            "capacity past the bound",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--arb-capacity", "1e13"],
            "funding.capacity_usd = 10000000000000",
        ),
        (
            "off with a tuned process",
            "products/eth2x-perp.toml",
            vec!["--scenario", "calm", "--funding", "off", "--premium-sd", "0.001"],
            "need the process",
        ),
    ] {
        let (o, out) = backtest(product, &extra, &format!("bad-{}", case.replace(' ', "-")));
        assert!(!o.status.success(), "case {case}: accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(words), "case {case}: {err}");
        assert!(!out.join("summary.json").exists(), "case {case}: nothing written");
    }
    let _ = std::fs::remove_dir_all(dir);
}
