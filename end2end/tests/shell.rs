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

#[tokio::test]
async fn the_shell_hydrates_and_navigates_between_the_pages() {
    let (_console, browser, state) = open_overview(&docker_host()).await;
    assert_eq!(state, "reachable");
    let badge = browser
        .wait_for("[data-testid=engine-state]")
        .await
        .text()
        .await
        .unwrap();
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
        ("Audit log", "/audit"),
    ] {
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
    assert!(table.text().await.unwrap().contains("console.start"));
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
    let reason = browser
        .wait_for("[data-testid=engine-reason]")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        reason,
        "Docker engine not reachable at unix:///nonexistent/docker.sock: the socket does not exist (is dockerd running?)"
    );
    browser
        .wait_for("[data-testid=overview-services-state][data-state=unreachable]")
        .await;
    browser.screenshot("overview-engine-unreachable").await;
}
