//! Real clients against `seqlab serve`: the official `openai` Python package, and headless Chromium driving
//! the playground page. Each skips with a message where its client is absent (`.ci/run` installs both:
//! a venv with `openai` at `target/serve-venv`, or `SEQLAB_TEST_PYTHON`; Debian's `chromium` and
//! `chromium-driver`).

mod serve_common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::*;

/// A Python with `openai` importable, if there is one.
fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("SEQLAB_TEST_PYTHON").map(PathBuf::from),
        Some(root.join("target/serve-venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import openai"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn the_openai_python_client_completes_and_streams() {
    let Some(python) = python() else {
        eprintln!(
            "skipped: no Python with the openai package (make one: python3 -m venv target/serve-venv && \
             target/serve-venv/bin/pip install openai; or set SEQLAB_TEST_PYTHON)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lm = lm(dir.path());
    let server = Serving::start(&["--model", p(&lm)]);
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openai_completions.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&server.base)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["models"], json!(["lm"]));
    let out = ok(&[
        "lm",
        "generate",
        "--model",
        p(&lm),
        "--prompt",
        "the ",
        "--length",
        "30",
        "--temperature",
        "0.8",
        "--seed",
        "7",
    ]);
    let expected = out.strip_prefix("the ").unwrap().trim_end_matches('\n');
    assert_eq!(lines[1]["text"], expected);
    assert!(lines[1]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(lines[2]["streamed"], expected);
    assert!(
        lines[2]["chunks"].as_u64().unwrap() > 2,
        "streamed in pieces: {}",
        lines[2]
    );
    assert_eq!(lines[3]["error"], 400, "{}", lines[3]);
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session of headless Chromium through chromedriver.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start() -> Option<Browser> {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })?;
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        let binary =
            String::from_utf8(Command::new("which").arg(chromium).output().ok()?.stdout).ok()?;
        let created = browser.call(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": binary.trim(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900"]}}}}),
        );
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = ureq::request(method, &url).set("Content-Type", "application/json");
        let response = match method {
            "GET" | "DELETE" => request.call(),
            _ => request.send_string(&body.to_string()),
        };
        let response = match response {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("webdriver {path}: {e}"),
        };
        let value: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
        assert!(
            value["value"].get("error").is_none(),
            "webdriver {path}: {value}"
        );
        value["value"].clone()
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().unwrap().to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Waits until `script` returns true.
    fn wait_for(&self, script: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.script(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = ureq::delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn headless_chromium_streams_text_into_the_playground() {
    let Some(browser) = Browser::start() else {
        eprintln!("skipped: no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lm = lm(dir.path());
    let server = Serving::start(&["--model", p(&lm)]);
    browser.call("POST", "/url", json!({"url": server.url("/")}));
    browser.wait_for(
        "return document.querySelector('#lm-model').options.length === 1",
        "the model list",
    );

    browser.type_into("#prompt", "the ");
    browser.type_into("#length", "400");
    browser.type_into("#seed", "3");
    // The temperature slider: focused, then moved by the keyboard, 0.8 → 1.0 in steps of 0.05.
    let slider = browser.element("#temperature");
    browser.call(
        "POST",
        &format!("/element/{slider}/value"),
        json!({"text": "\u{E014}\u{E014}\u{E014}\u{E014}"}),
    );
    assert_eq!(
        browser.script("return document.querySelector('#temperature-value').textContent"),
        "1.00"
    );
    // The stream is throttled in the browser's network stack, so that its tokens arrive over seconds
    // however fast the server generates them, and an observer in the page records the number of token
    // spans after every change to the output: text that streams is seen at counts between none and all.
    browser.call(
        "POST",
        "/chromium/network_conditions",
        json!({"network_conditions": {"offline": false, "latency": 0,
               "download_throughput": 32 * 1024, "upload_throughput": 1 << 20}}),
    );
    browser.script(
        "window.spanCounts = []; \
         new MutationObserver(() => window.spanCounts.push(document.querySelectorAll('#output .token').length)) \
           .observe(document.querySelector('#output'), {childList: true}); \
         return true",
    );
    browser.click("#generate-button");
    browser.wait_for(
        "return document.querySelectorAll('#output .token').length >= 400",
        "400 tokens on the page",
    );
    browser.call("DELETE", "/chromium/network_conditions", json!({}));
    let mut seen: Vec<u64> =
        serde_json::from_value(browser.script("return window.spanCounts")).unwrap();
    seen.dedup();
    eprintln!(
        "token spans seen while streaming: {} counts, {:?}",
        seen.len(),
        &seen[..seen.len().min(20)]
    );
    assert!(
        seen.iter().filter(|&&n| n > 0 && n < 400).count() >= 2,
        "text appeared in pieces, not at once: {seen:?}"
    );
    let shown = browser.script(
        "return Array.from(document.querySelectorAll('#output .token')).map(s => s.textContent).join('')",
    );
    let (_, body) = post(
        &server.url("/v1/completions"),
        &json!({"model": "lm", "prompt": "the ", "max_tokens": 400, "temperature": 1.0, "seed": 3}),
    );
    assert_eq!(
        shown, body["choices"][0]["text"],
        "the page shows the streamed completion"
    );
    // Each token is coloured by its probability.
    let coloured = browser.script(
        "return Array.from(document.querySelectorAll('#output .token')).every(s => s.style.background.startsWith('rgb'))",
    );
    assert_eq!(coloured, json!(true));

    // The lesson's figure: greedy and three temperatures side by side.
    browser.click("#tabs button[data-tab=compare]");
    browser.click("#compare-button");
    browser.wait_for(
        "const cells = document.querySelectorAll('#compare-grid .text'); \
         return cells.length === 4 && Array.from(cells).every(c => c.querySelectorAll('.token').length > 0)",
        "four compared streams",
    );
}
