//! Browser test: headless Chromium (driven over WebDriver by chromedriver) loads the
//! dashboard, a holder mints over the API, and the mint shows up on the page from the live
//! stream. Needs Debian's chromium and chromium-driver (`.ci/run` installs them); skipped
//! without them unless KEEL_REQUIRE_BROWSER=1.

mod common;

use common::{OP, agent, call, spawn};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ETH2X: &str = include_str!("../../../products/eth2x-fli.toml");

fn wd(a: &ureq::Agent, method: &str, url: &str, body: Option<Value>) -> Value {
    let mut resp = match body {
        Some(b) => a.post(url).send_json(&b),
        None if method == "DELETE" => a.delete(url).call(),
        None => a.get(url).call(),
    }
    .unwrap_or_else(|e| panic!("webdriver {method} {url}: {e}"));
    resp.body_mut().read_json::<Value>().unwrap()
}

#[test]
fn the_dashboard_shows_a_mint() {
    let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
    if !std::path::Path::new(chromium).exists() || !std::path::Path::new(driver).exists() {
        assert!(
            std::env::var("KEEL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KEEL_REQUIRE_BROWSER=1 but chromium or chromedriver is missing"
        );
        eprintln!("skipping: install chromium and chromium-driver");
        return;
    }
    let srv = spawn(&keel_server::testing::sqlite_url("browser"), &[]);
    let a = agent();
    assert_eq!(call(&a, &srv.base, "/products", OP, None, json!({ "id": "eth2x", "toml": ETH2X })).unwrap().0, 201);
    let (_, h) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "holder" })).unwrap();
    let holder = h["key"].as_str().unwrap().to_string();
    let (_, o) = call(&a, &srv.base, "/keys", OP, None, json!({ "role": "oracle" })).unwrap();
    let oracle = o["key"].as_str().unwrap().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut chromedriver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let wdb = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    while a.get(format!("{wdb}/status")).call().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = std::env::temp_dir().join(format!("keel-chromium-{}", std::process::id()));
    let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 format!("--user-data-dir={}", profile.display())]
    } } } });
    let session = wd(&a, "POST", &format!("{wdb}/session"), Some(caps));
    let sid = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
    let s = format!("{wdb}/session/{sid}");
    let run = |script: &str| {
        wd(&a, "POST", &format!("{s}/execute/sync"), Some(json!({ "script": script, "args": [] })))["value"].clone()
    };
    let wait_for = |script: &str, what: &str| {
        let t0 = Instant::now();
        loop {
            let v = run(script);
            if v.as_bool() == Some(true) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "page never showed {what}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wd(&a, "POST", &format!("{s}/url"), Some(json!({ "url": srv.base })));
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
    wd(&a, "DELETE", &s, None);
    let _ = chromedriver.kill();
    let _ = chromedriver.wait();
    let _ = std::fs::remove_dir_all(profile);
    srv.kill();
}
