//! Headless Chromium over WebDriver (chromedriver), for the browser tests: open a page, run
//! scripts in it, move the mouse like a user. Needs Debian's chromium and chromium-driver
//! (`.ci/run` installs them); `Browser::start` returns `None` without them unless
//! KEEL_REQUIRE_BROWSER=1, which makes their absence a failure.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    agent: ureq::Agent,
    driver: Child,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Start chromedriver and a headless Chromium session (1300 × 1000), or `None` when they
    /// are not installed and not required.
    pub fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
            assert!(
                std::env::var("KEEL_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "KEEL_REQUIRE_BROWSER=1 but chromium or chromedriver is missing"
            );
            eprintln!("skipping: install chromium and chromium-driver");
            return None;
        }
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!(
            "keel-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1300,1000", "--allow-file-access-from-files",
                     format!("--user-data-dir={}", profile.display())]
        } } } });
        let mut b = Browser { agent, driver, session: String::new(), profile };
        let v = b.wd("POST", &format!("{base}/session"), Some(caps));
        b.session =
            format!("{base}/session/{}", v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")));
        Some(b)
    }

    fn wd(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let mut resp = match body {
            Some(b) => self.agent.post(url).send_json(&b),
            None if method == "DELETE" => self.agent.delete(url).call(),
            None => self.agent.get(url).call(),
        }
        .unwrap_or_else(|e| panic!("webdriver {method} {url}: {e}"));
        resp.body_mut().read_json::<Value>().unwrap()
    }

    /// Open a URL (http:// or file://).
    pub fn goto(&self, url: &str) {
        self.wd("POST", &format!("{}/url", self.session), Some(json!({ "url": url })));
    }

    /// Run a script (a function body; `return` its result).
    pub fn run(&self, script: &str) -> Value {
        self.wd("POST", &format!("{}/execute/sync", self.session), Some(json!({ "script": script, "args": [] })))["value"]
            .clone()
    }

    /// Wait up to 20 s for `script` to return true.
    pub fn wait_for(&self, script: &str, what: &str) {
        let t0 = Instant::now();
        loop {
            let v = self.run(script);
            if v.as_bool() == Some(true) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "page never showed {what}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.wd(
            "POST",
            &format!("{}/element", self.session),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v["value"][ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    fn pointer(&self, actions: Vec<Value>) {
        let v = self.wd(
            "POST",
            &format!("{}/actions", self.session),
            Some(json!({ "actions": [{ "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" }, "actions": actions }] })),
        );
        assert!(v["value"].is_null(), "pointer actions: {v}");
    }

    /// Scroll the element matching `css` into view and move the mouse to `dx` pixels right of
    /// its centre, as a user hovering it.
    pub fn hover(&self, css: &str, dx: i64) {
        let sel = serde_json::to_string(css).unwrap();
        self.run(&format!("document.querySelector({sel}).scrollIntoView({{block: 'center'}}); return true"));
        let e = self.element(css);
        self.pointer(vec![json!({ "type": "pointerMove", "duration": 0, "origin": { ELEMENT: e }, "x": dx, "y": 0 })]);
    }

    /// Press the mouse `from` pixels right of the element's centre, drag to `to`, release.
    pub fn drag(&self, css: &str, from: i64, to: i64) {
        let e = self.element(css);
        self.pointer(vec![
            json!({ "type": "pointerMove", "duration": 0, "origin": { ELEMENT: e.clone() }, "x": from, "y": 0 }),
            json!({ "type": "pointerDown", "button": 0 }),
            json!({ "type": "pointerMove", "duration": 100, "origin": { ELEMENT: e.clone() }, "x": (from + to) / 2, "y": 0 }),
            json!({ "type": "pointerMove", "duration": 100, "origin": { ELEMENT: e }, "x": to, "y": 0 }),
            json!({ "type": "pointerUp", "button": 0 }),
        ]);
    }

    /// Double-click the element's centre.
    pub fn double_click(&self, css: &str) {
        let e = self.element(css);
        self.pointer(vec![
            json!({ "type": "pointerMove", "duration": 0, "origin": { ELEMENT: e }, "x": 0, "y": 0 }),
            json!({ "type": "pointerDown", "button": 0 }),
            json!({ "type": "pointerUp", "button": 0 }),
            json!({ "type": "pointerDown", "button": 0 }),
            json!({ "type": "pointerUp", "button": 0 }),
        ]);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&self.session).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
