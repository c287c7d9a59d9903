//! Chromium, headless, driven through the DevTools protocol at desktop and phone sizes.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::{CONSOLE_REQUEST_TIMEOUT, Console};
use crate::healthcheck::with_margin;
use crate::host::{free_port, repo_root};

/// The longest hydration of the debug build's wasm seen: over 20 s with both cores busy (a stack
/// build and a CPU hog beside the test; milliseconds on a quiet machine).
pub const HYDRATION_SEEN: Duration = Duration::from_secs(20);

/// How long the page may take to react by itself, with no request (a filter typed, a box scrolled to
/// its newest line on the next animation frame): milliseconds on a quiet machine; bounded by the
/// slowest the wasm was seen to be, its hydration with both cores busy.
pub const PAGE_REACTS: Duration = HYDRATION_SEEN;

/// How long the browser waits for an element to appear or be clickable: the page within the
/// console's request timeout, then hydration, with margin. The wait ends when the element is there,
/// so the bound costs only a failing test's time.
pub const BROWSER_WAIT: Duration = with_margin(Duration::from_secs(
    CONSOLE_REQUEST_TIMEOUT.as_secs() + HYDRATION_SEEN.as_secs(),
));

/// Headless Chromium through chromedriver, both from Debian's packages. Killed (with every child
/// process) on drop, so a failing test leaves no browser behind. (fantoccini's `close()` would wait for
/// every clone of the client to be dropped first; the process-group kill needs no such care.)
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver; scripts/setup.sh does)");
        let profile = tempfile::tempdir().expect("temp dir");
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }))
        .expect("capabilities");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match fantoccini::ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("chromedriver did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// Opens `url` and waits until the app has hydrated (the layout's `data-hydrated` turns true).
    /// Logs in to `console` as `subject_id` through the development IdP's pages, as a person would:
    /// the login link, the IdP's "Log in as", "Continue"; ends on the console's overview.
    pub async fn login(&self, console: &Console, subject_id: &str) {
        self.client
            .goto(&format!("{}/saml/login?return_to=/", console.url))
            .await
            .expect("navigate");
        self.pick_dev_user(subject_id).await;
    }

    /// On the development IdP's page: "Log in as" `subject_id`, then "Continue"; waits until the
    /// console's page it returns to is live.
    pub async fn pick_dev_user(&self, subject_id: &str) {
        self.wait_for(&format!("[data-testid=\"dev-login-{subject_id}\"]"))
            .await
            .click()
            .await
            .expect("click log in as");
        self.wait_for("[data-testid=dev-continue]")
            .await
            .click()
            .await
            .expect("click continue");
        self.wait_for("[data-hydrated=true]").await;
    }

    /// Clicks `css` once it can be clicked: a list that is re-read (a live page) may replace the
    /// element between finding and clicking it; each try finds it anew, for up to `BROWSER_WAIT`.
    pub async fn click_when_ready(&self, css: &str) {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let clicked = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(element) => element.click().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match clicked {
                Ok(()) => return,
                Err(e) => assert!(Instant::now() < deadline, "cannot click {css:?}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn open_hydrated(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        self.wait_for("[data-hydrated=true]").await;
    }

    /// The text of the element `css`, once it is there.
    pub async fn text_of(&self, css: &str) -> String {
        self.wait_for(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// Waits up to `BROWSER_WAIT` for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} within {BROWSER_WAIT:?}: {e}"))
    }

    /// Waits up to `within` until `css` matches exactly `count` elements.
    pub async fn wait_for_count(&self, css: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .client
                .find_all(fantoccini::Locator::Css(css))
                .await
                .map_or(0, |v| v.len());
            if found == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?}: {found} elements, not {count}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits up to `within` until the text of the element `css` satisfies `done`; returns that text.
    pub async fn wait_for_text(
        &self,
        css: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} after {within:?}: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Resizes the window to `width` x `height` CSS pixels (headless: the viewport is the window).
    pub async fn set_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("set window size");
    }

    /// How many pixels the page is wider than the window (0: nothing scrolls sideways), and the
    /// elements that stick out past the window's right edge (tag, class, test id), for the message.
    pub async fn sideways_overflow(&self) -> (f64, Vec<String>) {
        let value = self
            .client
            .execute(
                "const root = document.documentElement; const w = root.clientWidth; \
                 const out = [...document.querySelectorAll('body *')] \
                   .filter(e => e.getBoundingClientRect().right > w + 0.5 && !e.closest('.table-wrap, .log')) \
                   .slice(0, 8) \
                   .map(e => `${e.tagName.toLowerCase()}.${e.className}[${e.dataset.testid || ''}]`); \
                 return [root.scrollWidth - w, out];",
                vec![],
            )
            .await
            .expect("measure the page");
        let overflow = value[0].as_f64().unwrap_or_default();
        let culprits = value[1]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        (overflow, culprits)
    }

    /// Where the scrollable box `css` is scrolled to: how far from its bottom (0: the newest line is
    /// in view) and whether it has more than fits (a box that fits all cannot follow or be scrolled).
    pub async fn scroll_state(&self, css: &str) -> ScrollState {
        let value = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); \
                 return [e.scrollTop, e.clientHeight, e.scrollHeight];",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll state of {css:?}: {e}"));
        let n = |i: usize| value[i].as_f64().unwrap_or_default();
        ScrollState {
            top: n(0),
            from_bottom: n(2) - n(0) - n(1),
            overflows: n(2) > n(1),
        }
    }

    /// Scrolls the page until the element `css` is in view (for a screenshot of it).
    pub async fn scroll_into_view(&self, css: &str) {
        self.on_element(css, "e.scrollIntoView()").await;
    }

    /// Scrolls the box `css` to its top, as a reader scrolling up would (the page hears a scroll event).
    pub async fn scroll_to_top(&self, css: &str) {
        self.on_element(css, "e.scrollTop = 0").await;
    }

    /// Runs the JavaScript `statement` with `e` the element `css`.
    async fn on_element(&self, css: &str, statement: &str) {
        self.client
            .execute(
                &format!(
                    "const e = document.querySelector(arguments[0]); {statement}; return true;"
                ),
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("{statement} on {css:?}: {e}"));
    }

    /// Waits up to `within` until the box `css` shows its newest line (scrolled to within a few pixels
    /// of its bottom) while having more than fits.
    pub async fn wait_until_scrolled_to_end(&self, css: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let state = self.scroll_state(css).await;
            if state.overflows && state.from_bottom <= 8.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} is not at its newest line after {within:?}: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs axe-core (from npm, installed by scripts/setup.sh) on the page as it is now and returns
    /// its serious and critical violations, one line each: rule, impact, what it says, where.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let path = repo_root().join(".tools/axe/node_modules/axe-core/axe.min.js");
        let source = fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/setup.sh installs axe-core)",
                path.display()
            )
        });
        // WebDriver scripts run outside the page's CSP, as a browser extension's would.
        self.client
            .execute(&format!("{source}; return true;"), vec![])
            .await
            .expect("load axe-core");
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document, { resultTypes: ['violations'] }) \
                   .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical') \
                     .map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`))) \
                   .catch(e => done([`axe failed: ${e}`]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the page to `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = repo_root().join("target/screenshots");
        fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        fs::write(&path, png).expect("write screenshot");
        path
    }
}

/// A scrollable box's position, in CSS pixels.
#[derive(Debug, Clone, Copy)]
pub struct ScrollState {
    pub top: f64,
    pub from_bottom: f64,
    pub overflows: bool,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: chromedriver and the Chromium it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // chromedriver starts Chromium in a process group of its own: find it by its unique profile.
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                // `--`: the pattern itself starts with dashes.
                "--",
                &format!("--user-data-dir={}", self.profile.path().display()),
            ])
            .status();
    }
}
