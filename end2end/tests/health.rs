//! The Health page in a real browser against a real stack: six green rows and one running without a
//! check, a row that turns red by itself (no reload) seconds after its service is stopped, and a
//! service's log following the lines the test writes into the container's output (the newest in view
//! until the reader scrolls up or pauses), with the secret in a line masked.

use std::time::Duration;

use end2end::{
    ADMIN, BROWSER_WAIT, Browser, Console, PAGE_REACTS, StackProject, console_binary, stack_secrets,
};

/// A line written into a container's output reaches the open page through docker's log follow and
/// the console's stream, with no polling: the bound of anything the console sends to a page.
const LINE_ARRIVES: Duration = BROWSER_WAIT;

const HEALTHY_ROWS: &str = "tr[data-testid=service-row][data-verdict=healthy]";

#[tokio::test]
async fn the_health_page_follows_the_stack_live_and_shows_its_logs() {
    let project = StackProject::new("epsmpage");
    project.compose_ok(&["build"]);
    project.compose_ok(&["up", "-d"]);
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    browser
        .open_hydrated(&format!("{}/health", console.url))
        .await;

    // Six measured healthy; the frontend, which nothing checks, says so instead of green.
    browser
        .wait_for_count(HEALTHY_ROWS, 6, project.stack_settle_bound())
        .await;
    browser
        .wait_for(r#"tr[data-service=frontend][data-verdict="running (no check)"] .tag.unchecked"#)
        .await;
    browser.wait_for("[data-testid=live][data-live=true]").await;
    let engine = browser.text_of("[data-testid=health-engine]").await;
    assert!(
        !engine.contains("round"),
        "a round number means nothing to a reader: {engine}"
    );
    browser.screenshot("health").await;

    // Stop redis: its row turns red on the open page, which is never reloaded.
    browser
        .client
        .execute("window.__sameDocument = true; return true;", vec![])
        .await
        .unwrap();
    project.compose_ok(&["stop", "redis"]);
    let reason = browser
        .wait_for_text(
            "tr[data-service=redis][data-verdict=down] [data-testid=verdict-reason]",
            Duration::from_secs(15),
            |t| !t.is_empty(),
        )
        .await;
    assert!(reason.starts_with("container is exited"), "{reason}");
    let same = browser
        .client
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, serde_json::json!(true), "the page was reloaded");
    browser.screenshot("health-redis-down").await;

    // The backend's log follows a line written into its output now; the secret in it is masked.
    let select = browser.wait_for("select[data-testid=log-service]").await;
    select.select_by_value("backend").await.unwrap();
    browser
        .wait_for_text("[data-testid=log-state]", Duration::from_secs(15), |t| {
            t.contains("following")
        })
        .await;
    let secret = &stack_secrets()[1];
    let line = format!("e2e-marker-4711 connecting with password {secret}");
    project.write_to_output("backend", &line, false);
    let log = browser
        .wait_for_text("[data-testid=log-view]", Duration::from_secs(15), |t| {
            t.contains("e2e-marker-4711")
        })
        .await;
    assert!(log.contains("connecting with password ••••"), "{log}");

    // The log follows: more lines than fit arrive, and the newest is in view.
    const LOG: &str = "[data-testid=log-view]";
    project.write_lines_to_output("backend", "e2e-burst", 120);
    browser
        .wait_for_text(LOG, LINE_ARRIVES, |t| t.contains("e2e-burst 120"))
        .await;
    browser.wait_until_scrolled_to_end(LOG, PAGE_REACTS).await;
    // The reader scrolls up: the log stays where they read, and says how many lines came since.
    browser.scroll_to_top(LOG).await;
    browser
        .wait_for("[data-testid=log-view-following][data-following=false]")
        .await;
    project.write_lines_to_output("backend", "e2e-later", 5);
    let jump = browser
        .wait_for_text("[data-testid=log-view-jump]", LINE_ARRIVES, |t| {
            t.contains("5 new")
        })
        .await;
    assert_eq!(jump, "Jump to latest ↓ 5 new");
    let held = browser.scroll_state(LOG).await;
    assert!(
        held.top < 1.0,
        "the log moved while the reader read: {held:?}"
    );
    browser.screenshot("health-logs-paused").await;
    browser
        .click_when_ready("[data-testid=log-view-jump]")
        .await;
    browser.wait_until_scrolled_to_end(LOG, PAGE_REACTS).await;
    browser
        .wait_for("[data-testid=log-view-following][data-following=true]")
        .await;
    // Pause holds the view still while lines arrive; Follow goes back to the newest.
    browser
        .click_when_ready("[data-testid=log-view-follow]")
        .await;
    browser
        .wait_for("[data-testid=log-view-following][data-following=false]")
        .await;
    browser.scroll_to_top(LOG).await;
    project.write_lines_to_output("backend", "e2e-paused", 3);
    browser
        .wait_for_text("[data-testid=log-view-jump]", LINE_ARRIVES, |t| {
            t.contains("3 new")
        })
        .await;
    assert!(browser.scroll_state(LOG).await.top < 1.0);
    browser
        .click_when_ready("[data-testid=log-view-follow]")
        .await;
    browser.wait_until_scrolled_to_end(LOG, PAGE_REACTS).await;

    // The filter narrows the view to matching lines; a filter nothing matches says so.
    let filter = browser.wait_for("input[data-testid=log-filter]").await;
    filter.send_keys("e2e-marker").await.unwrap();
    browser
        .wait_for_count("[data-testid=log-line]", 1, PAGE_REACTS)
        .await;
    filter.clear().await.unwrap();
    filter.send_keys("no-such-line-anywhere").await.unwrap();
    let none = browser
        .wait_for_text("[data-testid=log-no-match]", PAGE_REACTS, |t| !t.is_empty())
        .await;
    assert!(
        none.starts_with("No line of the last ")
            && none.ends_with("matches “no-such-line-anywhere”."),
        "{none}"
    );
    filter.clear().await.unwrap();
    filter.send_keys("e2e-marker").await.unwrap();
    browser
        .wait_for_count("[data-testid=log-line]", 1, PAGE_REACTS)
        .await;

    let source = browser.client.source().await.unwrap();
    for secret in stack_secrets() {
        assert!(!source.contains(&secret), "a secret value is in the page");
    }
    browser.screenshot("health-logs").await;
}
