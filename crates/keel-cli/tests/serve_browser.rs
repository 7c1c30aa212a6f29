//! Browser test: headless Chromium (driven over WebDriver by chromedriver) loads the
//! dashboard, a holder mints over the API, and the mint shows up on the page from the live
//! stream. Needs Debian's chromium and chromium-driver (`.ci/run` installs them); skipped
//! without them unless KEEL_REQUIRE_BROWSER=1.

mod common;

use common::browser::Browser;
use common::{OP, agent, call, spawn};
use serde_json::json;
use std::time::Duration;

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");

/// Create the ETH2x-FLI product as `eth2x` and a holder's and an oracle's key.
fn eth2x_with_keys(a: &ureq::Agent, base: &str) -> (String, String) {
    assert_eq!(call(a, base, "/products", OP, None, json!({ "id": "eth2x", "toml": ETH2X })).unwrap().0, 201);
    let key = |role: &str| {
        let (_, k) = call(a, base, "/keys", OP, None, json!({ "role": role })).unwrap();
        k["key"].as_str().unwrap().to_string()
    };
    (key("holder"), key("oracle"))
}

#[test]
fn the_dashboard_shows_a_mint() {
    let Some(browser) = Browser::start() else { return };
    let srv = spawn(&keel_server::testing::sqlite_url("browser"), &[]);
    let a = agent();
    let (holder, oracle) = eth2x_with_keys(&a, &srv.base);

    let run = |script: &str| browser.run(script);
    let wait_for = |script: &str, what: &str| browser.wait_for(script, what);
    browser.goto(&srv.base);
    wait_for("return document.getElementById('status').textContent === 'live'", "the stream connected");
    wait_for("return !!document.querySelector('[data-product=\"eth2x\"]')", "the product");
    let (status, _) =
        call(&a, &srv.base, "/products/eth2x/mint", &holder, None, json!({ "quantity": "7.25" })).unwrap();
    assert_eq!(status, 200);
    wait_for(
        "const r = document.querySelector('#events tr[data-kind=\"mint\"]'); return !!r && r.textContent.includes('7.25 tokens')",
        "the mint in the events table",
    );
    wait_for(
        "const f = document.querySelector('[data-product=\"eth2x\"] [data-field=\"supply\"]'); return !!f && f.textContent === '7.25725'",
        "the new supply on the product card",
    );
    // a threshold token and the Bear: created, minted, their order filled at the next price
    for (id, toml, kind) in [
        ("eth3l", include_str!("../../../products/eth-3x-threshold.toml"), "threshold"),
        ("bear", include_str!("../../../products/eth-minus2x-bear.toml"), "continuous"),
    ] {
        assert_eq!(call(&a, &srv.base, "/products", OP, None, json!({ "id": id, "toml": toml })).unwrap().0, 201);
        let (status, body) =
            call(&a, &srv.base, &format!("/products/{id}/mint"), &holder, None, json!({ "quantity": "1000" })).unwrap();
        assert_eq!(status, 200, "{id}: {body}");
        wait_for(
            &format!(
                "const f = document.querySelector('[data-product=\"{id}\"] [data-field=\"kind\"]'); return !!f && f.textContent === '{kind}'"
            ),
            "the product's kind on its card",
        );
        std::thread::sleep(Duration::from_millis(2_100)); // the order is executable after its minimum age (1 s), in whole seconds
        let (status, body) = call(
            &a,
            &srv.base,
            &format!("/products/{id}/prices"),
            &oracle,
            None,
            json!({ "asset": "ETH", "price": "2000" }),
        )
        .unwrap();
        assert_eq!(status, 200, "{id}: {body}");
        wait_for(
            &format!(
                "const f = document.querySelector('[data-product=\"{id}\"] [data-field=\"health\"]'); return !!f && f.textContent !== 'inf' && f.nextSibling.textContent.includes('margin ratio')"
            ),
            "the margin ratio once the order filled",
        );
        wait_for(
            &format!(
                "const f = document.querySelector('[data-product=\"{id}\"] [data-field=\"supply\"]'); return !!f && parseFloat(f.textContent) > 900"
            ),
            "the supply on the card",
        );
    }
    let title = run("return document.title");
    assert_eq!(title, "keel — products");
    drop(browser);
    srv.kill();
}

#[test]
fn the_dashboard_after_a_restart_draws_the_history_from_the_log() {
    let Some(browser) = Browser::start() else { return };
    let db = keel_server::testing::sqlite_url("browser-restart");
    let srv = spawn(&db, &[]);
    let a = agent();
    let (holder, oracle) = eth2x_with_keys(&a, &srv.base);
    let (status, first) =
        call(&a, &srv.base, "/products/eth2x/mint", &holder, None, json!({ "quantity": "10" })).unwrap();
    assert_eq!(status, 200);
    assert_ne!(first["nav_per_token"], "0", "the first mint says the NAV it created: {first}");
    assert_eq!(call(&a, &srv.base, "/products/eth2x/engage", OP, None, json!({})).unwrap().0, 200);
    for p in ["2010", "1990", "2030", "1970", "2050"] {
        let (status, body) =
            call(&a, &srv.base, "/products/eth2x/prices", &oracle, None, json!({ "asset": "WETH", "price": p }))
                .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let before = common::get(&a, &format!("{}/products/eth2x/history", srv.base));
    srv.kill();

    // a new process on the same log: the history is the log's, not the last browser's
    let srv = spawn(&db, &[]);
    let after = common::get(&a, &format!("{}/products/eth2x/history", srv.base));
    assert_eq!(after["points"], before["points"], "the history survives the restart");
    assert_eq!(after["last_call"]["kind"], "engage");
    assert!(after["points"].as_array().unwrap().len() >= 6, "{after}");
    // price updates are filtered out of the event list by kind
    let ev = common::get(&a, &format!("{}/events?exclude_kind=price_observed", srv.base));
    assert!(ev["events"].as_array().unwrap().iter().all(|e| e["kind"] != "price_observed"), "{ev}");
    let ev = common::get(&a, &format!("{}/events?kind=mint", srv.base));
    assert_eq!(ev["events"][0]["command"]["quantity"], "10", "amounts in tokens, not hex: {ev}");

    browser.goto(&srv.base);
    browser.wait_for("return document.body.dataset.ready === '1'", "the first paint");
    let points = browser.run(
        "return [...document.querySelectorAll('[data-product=\"eth2x\"] svg')].map(s => +s.getAttribute('data-points'))",
    );
    let points: Vec<u64> = points.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(points.len(), 2, "a NAV chart and a leverage chart");
    assert!(points.iter().all(|n| *n >= 6), "both charts drawn from the log on first paint: {points:?}");
    browser.wait_for(
        "return document.querySelector('[data-field=\"last-call\"]').textContent === 'engage'",
        "the last call on the card",
    );
    browser.wait_for(
        "return [...document.querySelectorAll('#events tr')].every(tr => tr.dataset.kind !== 'price_observed') && !!document.querySelector('#events tr[data-kind=\"mint\"]')",
        "events without price updates",
    );
    browser.hover("[data-chart=\"eth2x:leverage\"] rect.overlay", 60);
    browser.wait_for(
        "const t = document.querySelector('[data-chart=\"eth2x:leverage\"] .tip'); return t.style.display === 'block' && t.textContent.includes('leverage')",
        "the leverage chart's tooltip",
    );
    assert_eq!(browser.run("return window.keelErrors"), json!([]), "no script errors");
    drop(browser);
    srv.kill();
}
