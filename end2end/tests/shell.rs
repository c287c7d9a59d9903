//! The shell in a real browser: the server-rendered page hydrates, the navigation works client-side,
//! the engine is shown (or its absence explained), and each step leaves a screenshot in
//! target/screenshots/.

use end2end::{ADMIN, Browser, Console, console_binary, docker_host};
use fantoccini::Locator;

/// The console on the engine at `engine`, its overview open and hydrated in Chromium, and the engine
/// card's state as the page shows it (`reachable` or `unreachable`).
async fn open_overview(engine: &str) -> (Console, Browser, String) {
    let console = Console::start(&console_binary(), &[("EPSM_OPS_DOCKER_HOST", engine)]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let card = browser.wait_for("[data-testid=engine-state]").await;
    let state = card.attr("data-state").await.unwrap().unwrap_or_default();
    (console, browser, state)
}

/// Clicks the navigation's link `link` and waits until the page it leads to has that heading.
async fn follow_link(browser: &Browser, link: &str) {
    browser
        .client
        .find(Locator::LinkText(link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .client
        .wait()
        .for_element(Locator::XPath(&format!("//main/h1[text()='{link}']")))
        .await
        .unwrap_or_else(|e| panic!("{link}: the heading never became {link}: {e}"));
}

#[tokio::test]
async fn the_shell_hydrates_and_navigates_between_the_pages() {
    let (_console, browser, state) = open_overview(&docker_host()).await;
    assert_eq!(state, "reachable");
    let badge = browser.text_of("[data-testid=engine-state]").await;
    assert!(badge.starts_with("Reachable — Docker "), "{badge}");
    let project = browser.wait_for("[data-testid=project-name]").await;
    assert_eq!(project.text().await.unwrap(), "epsm");

    // Client-side navigation: a mark left on `window` survives only if no page is reloaded.
    browser
        .client
        .execute("window.epsmNoReload = true;", vec![])
        .await
        .unwrap();
    for (link, path) in [
        ("Health", "/health"),
        ("Deploys", "/deploys"),
        ("Environment", "/environment"),
        ("Backups", "/backups"),
        ("Notifications", "/notifications"),
        ("Audit log", "/audit"),
    ] {
        follow_link(&browser, link).await;
        assert_eq!(browser.client.current_url().await.unwrap().path(), path);
        let current = browser
            .client
            .find(Locator::Css("nav a[aria-current=page]"))
            .await
            .unwrap();
        assert_eq!(current.text().await.unwrap(), link);
        let kept = browser
            .client
            .execute("return window.epsmNoReload === true;", vec![])
            .await
            .unwrap();
        assert_eq!(
            kept,
            serde_json::json!(true),
            "navigating to {link} reloaded the page"
        );
    }

    // The audit log shows the console's own start.
    let table = browser.wait_for("[data-testid=audit-table]").await;
    let text = table.text().await.unwrap();
    assert!(text.contains("console.start"));
    assert!(
        text.starts_with("When (UTC) Who Action Target Outcome Detail"),
        "{text}"
    );
    browser.screenshot("audit-log").await;

    // Filtered to logins (client-side: the address carries the filter, the page is not reloaded).
    browser
        .wait_for("[data-testid=audit-filter-action] option[value=auth]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .click_when_ready("[data-testid=audit-filter-apply]")
        .await;
    browser
        .wait_for_count(
            "tr[data-testid=audit-row]:not([data-action^='auth.'])",
            0,
            std::time::Duration::from_secs(10),
        )
        .await;
    browser
        .wait_for("tr[data-testid=audit-row][data-action='auth.login']")
        .await;
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.query_pairs().any(|(k, v)| k == "action" && v == "auth"),
        "the address carries the filter: {url}"
    );
    assert!(
        url.query_pairs().all(|(k, _)| !k.is_empty()),
        "a field without a name in the address: {url}"
    );
    let kept = browser
        .client
        .execute("return window.epsmNoReload === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!(true), "filtering reloaded the page");
    // Someone who did nothing: an empty result, said as such.
    browser
        .wait_for("[data-testid=audit-filter-actor]")
        .await
        .send_keys("nobody-at-all")
        .await
        .unwrap();
    browser
        .click_when_ready("[data-testid=audit-filter-apply]")
        .await;
    let empty = browser.wait_for("[data-testid=audit-empty]").await;
    assert_eq!(
        empty.text().await.unwrap(),
        "Nothing recorded matches these filters."
    );
}

#[tokio::test]
async fn a_dead_engine_turns_the_overview_red_with_the_reason() {
    let (_console, browser, state) = open_overview("unix:///nonexistent/docker.sock").await;
    assert_eq!(state, "unreachable");
    let reason = browser.text_of("[data-testid=engine-reason]").await;
    assert_eq!(
        reason,
        "Docker engine not reachable at unix:///nonexistent/docker.sock: the socket does not exist (is dockerd running?)"
    );
    browser
        .wait_for("[data-testid=overview-services-state][data-state=unreachable]")
        .await;
    browser.screenshot("overview-engine-unreachable").await;
}

#[tokio::test]
async fn on_a_phone_the_navigation_is_a_menu_and_the_header_keeps_its_colours() {
    let (console, browser, _) = open_overview(&docker_host()).await;
    browser.set_size(390, 844).await;
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let nav = browser.wait_for("nav.sidebar").await;
    assert!(!nav.is_displayed().await.unwrap(), "the menu starts closed");
    let menu = browser.wait_for("[data-testid=menu-button]").await;
    assert_eq!(
        menu.attr("aria-expanded").await.unwrap().as_deref(),
        Some("false")
    );
    // "Log out" is on the header's own dark background, not past its edge on the light page.
    let inside = browser
        .client
        .execute(
            "const bar = document.querySelector('header.topbar').getBoundingClientRect(); \
             const out = document.querySelector('[data-testid=logout]').getBoundingClientRect(); \
             return out.bottom <= bar.bottom && out.right <= bar.right && out.top >= bar.top;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        inside,
        serde_json::json!(true),
        "Log out sits outside the header"
    );
    let (overflow, culprits) = browser.sideways_overflow().await;
    assert!(
        overflow <= 0.0,
        "the overview scrolls sideways by {overflow} px: {culprits:?}"
    );
    browser.screenshot("phone-menu-closed").await;

    menu.click().await.unwrap();
    browser
        .wait_for("[data-testid=menu-button][aria-expanded=true]")
        .await;
    assert!(nav.is_displayed().await.unwrap(), "the menu opened");
    browser.screenshot("phone-menu-open").await;
    follow_link(&browser, "Health").await;
    // Following a link closes the menu: the page it leads to is what shows.
    browser
        .wait_for("[data-testid=menu-button][aria-expanded=false]")
        .await;
    assert!(!nav.is_displayed().await.unwrap(), "the menu stayed open");

    // Keyboard: the first Tab reaches the skip link, which leads to the page's content.
    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;
    let skip = browser.wait_for("a.skip-link").await;
    assert_eq!(skip.attr("href").await.unwrap().as_deref(), Some("#main"));
    use fantoccini::actions::InputSource;
    let tab = fantoccini::actions::KeyActions::new("keyboard".into())
        .then(fantoccini::actions::KeyAction::Down { value: '\u{E004}' })
        .then(fantoccini::actions::KeyAction::Up { value: '\u{E004}' });
    browser.client.perform_actions(tab).await.unwrap();
    let focused = browser
        .client
        .execute("return document.activeElement.className;", vec![])
        .await
        .unwrap();
    assert_eq!(focused, serde_json::json!("skip-link"));
    // Focus shows: the console's own ring, not the browser's default or none.
    let ring = browser
        .client
        .execute(
            "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ring, serde_json::json!(["solid", "3px"]));
    browser.screenshot("phone-skip-link").await;
}

/// The binary alone, copied to an empty directory and started away from the repository, serves a
/// site that hydrates: the wasm, its JS and the stylesheet come out of the binary, under names that
/// carry their hash, which a browser keeps for a year and revalidates never.
#[tokio::test]
async fn the_binary_alone_serves_a_site_that_hydrates() {
    let alone = tempfile::tempdir().unwrap();
    let bin = alone.path().join("epsm-ops");
    std::fs::copy(console_binary(), &bin).unwrap();
    let console = Console::start(&bin, &[("EPSM_OPS_DOCKER_HOST", &docker_host())]).await;
    assert!(
        console.log().contains("site: embedded in this binary"),
        "{}",
        console.log()
    );
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    // Hydrated: the wasm ran (the mark is set by the hydrated app, not by the server's HTML).
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let styled: bool = serde_json::from_value(
        browser
            .client
            .execute(
                "return [...document.styleSheets].some(s => s.cssRules.length > 0);",
                vec![],
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(styled, "the page has no stylesheet with rules");

    // What the page loaded from the site: all of it from this build's folder, /pkg/<hash>/: the JS,
    // the wasm and the CSS.
    let loaded: Vec<String> = serde_json::from_value(
        browser
            .client
            .execute(
                "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
                    .filter(p => p.startsWith('/pkg/'));",
                vec![],
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let hash = loaded
        .first()
        .and_then(|p| p.strip_prefix("/pkg/"))
        .and_then(|rest| rest.split_once('/'))
        .map(|(hash, _)| hash)
        .unwrap_or_else(|| panic!("nothing loaded from /pkg/<hash>/: {loaded:?}"));
    let folder = format!("/pkg/{hash}/");
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{folder} is not named by a hash"
    );
    for path in &loaded {
        assert!(
            path.starts_with(&folder),
            "{path} is not in {folder}: {loaded:?}"
        );
    }
    for name in ["epsm-ops.js", "epsm-ops.wasm", "epsm-ops.css"] {
        assert!(
            loaded.contains(&format!("{folder}{name}")),
            "{name} not loaded from {folder}: {loaded:?}"
        );
    }
    let http = reqwest::Client::new();
    for path in &loaded {
        let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css",
            other => panic!("{path}: an unexpected kind of file ({other:?})"),
        };
        let response = http
            .get(format!("{}{path}", console.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(
            header("cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{path}: ETag {etag:?}");
        let again = http
            .get(format!("{}{path}", console.url))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} with its ETag");
    }
    // Another hash is another build: not served.
    let stale = http
        .get(format!(
            "{}/pkg/0000000000000000/epsm-ops.wasm",
            console.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 404);
    browser.screenshot("site-embedded").await;
}
