//! The reports in a real browser (headless Chromium over WebDriver): a backtest report of every
//! kind, a compare page and a sweep page load from their files with no script error; hovering a
//! chart shows a tooltip; dragging zooms and a double-click resets; the leverage chart's highest
//! point is the summary's max leverage; every ripcord is listed. Skipped without Chromium
//! unless KEEL_REQUIRE_BROWSER=1.

mod common;

use common::browser::Browser;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn keel(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel")).args(args).current_dir(root()).output().unwrap();
    assert!(o.status.success(), "keel {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn out(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keel-report-browser-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The page loaded, drew every chart and raised no script error.
fn loaded(b: &Browser, what: &str) {
    b.wait_for("return document.body.getAttribute('data-ready') === '1'", &format!("{what}: the charts drawn"));
    let errors = b.run("return window.keel.errors");
    assert_eq!(errors, serde_json::json!([]), "{what}: script errors");
}

/// Hover a chart: its tooltip shows a date and the series' values.
fn hover_shows_a_tooltip(b: &Browser, chart: &str, what: &str) {
    let overlay = format!("#chart-{chart} rect.overlay");
    b.hover(&overlay, 40);
    b.wait_for(
        &format!(
            "const t = document.querySelector('#chart-{chart} .tip'); return !!t && t.style.display === 'block' && /20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]/.test(t.textContent)"
        ),
        &format!("{what}: a tooltip with a date on the {chart} chart"),
    );
}

#[test]
fn reports_work_in_a_browser() {
    let Some(b) = Browser::start() else { return };
    // (case, product, scenario, block time): every kind of product
    let cases = [
        ("lending FLI through a crash", "products/eth2x-fli.toml", "crash", "5m"),
        ("perp FLI", "products/eth2x-perp.toml", "zigzag", "1h"),
        ("threshold", "products/eth-3x-threshold.toml", "calm", "1h"),
        ("daily", "products/eth-3x-daily.toml", "calm", "1h"),
        ("continuous (the Bear)", "products/eth-minus2x-bear.toml", "bear", "1h"),
    ];
    for (i, (case, product, scenario, block)) in cases.iter().enumerate() {
        let dir = out(&format!("backtest-{i}"));
        let d = dir.to_str().unwrap();
        keel(&["backtest", "--product", product, "--scenario", scenario, "--block-time", block, "--quiet", "--out", d]);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        b.goto(&url(&dir.join("report.html")));
        loaded(&b, case);
        // the chart keeps the peak the summary reports, to the last digit
        let top = b.run("return window.keel.extent('leverage')[1]");
        assert_eq!(top.as_f64(), summary["max_leverage"].as_f64(), "case {case}: the leverage chart's maximum");
        hover_shows_a_tooltip(&b, "leverage", case);
        // every ripcord (and close) is in the always-complete table
        let listed = b.run(
            "return [...document.querySelectorAll('tr.major td:nth-child(3)')].filter(td => td.textContent === 'ripcord' || td.textContent === 'close').length",
        );
        let c = &summary["counts"];
        assert_eq!(
            listed.as_u64(),
            Some(c["ripcords"].as_u64().unwrap() + c["closes"].as_u64().unwrap()),
            "case {case}: every ripcord and close listed"
        );
        // the routine calls are paged
        b.wait_for(
            "return /^page 1 of [0-9]+/.test(document.getElementById('calls-page').textContent)",
            "the calls' pager",
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    // zoom: drag across the price chart, every time chart follows; a double-click resets
    b.drag("#chart-price rect.overlay", -200, 100);
    b.wait_for(
        "return document.querySelector('.zoominfo').textContent.startsWith('showing') && !document.querySelector('#chart-leverage .reset').disabled",
        "the zoomed window",
    );
    b.double_click("#chart-nav rect.overlay");
    b.wait_for("return document.querySelector('.zoominfo').textContent === ''", "the zoom reset");

    // compare: one page, two products
    let dir = out("compare");
    keel(&[
        "compare",
        "--products",
        "products/eth2x-fli.toml",
        "products/eth-3x-threshold.toml",
        "--scenario",
        "zigzag",
        "--block-time",
        "1h",
        "--out",
        dir.to_str().unwrap(),
    ]);
    b.goto(&url(&dir.join("report.html")));
    loaded(&b, "compare");
    hover_shows_a_tooltip(&b, "nav", "compare");
    let keys = b.run("return document.querySelectorAll('#chart-nav .key').length");
    assert_eq!(keys.as_u64(), Some(2), "a legend entry per product, above the chart");
    let body = b.run("return document.body.textContent");
    let body = body.as_str().unwrap();
    assert!(
        body.contains(
            "keel compare --products products/eth2x-fli.toml products/eth-3x-threshold.toml --scenario zigzag --seed 1"
        ) && body.contains("products/eth2x-fli.toml: SHA-256 "),
        "the compare page says how to run it again"
    );
    let _ = std::fs::remove_dir_all(dir);

    // sweep: hovering a heatmap cell names its settings and value
    let dir = out("sweep");
    keel(&[
        "sweep",
        "--grid",
        "methodology.max_leverage_ratio=2.3,2.4",
        "--grid",
        "methodology.recentering_speed=5%,10%",
        "--scenario",
        "gbm:vol=80%",
        "--horizon",
        "30d",
        "--paths",
        "3",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    b.goto(&url(&dir.join("report.html")));
    loaded(&b, "sweep");
    b.hover("svg.heat rect[data-tip]", 0);
    b.wait_for(
        "const t = document.getElementById('hover-tip'); return t.style.display === 'block' && t.textContent.includes('methodology.max_leverage_ratio = ')",
        "the heatmap cell's tooltip",
    );
    let page = b.run("return document.body.textContent");
    assert!(page.as_str().unwrap().contains("seed 1"), "the sweep page says what ran");
    assert!(page.as_str().unwrap().contains("(SHA-256 "), "and the product's hash");
    let _ = std::fs::remove_dir_all(dir);
}
