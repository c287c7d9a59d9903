//! The Health page in a real browser against a real stack: seven green rows, a row that turns red by
//! itself (no reload) seconds after its service is stopped, and a service's log following a line the
//! test writes into the container's output, with the secret in that line masked.

use std::time::Duration;

use end2end::{ADMIN, Browser, Console, StackProject, console_binary, stack_secrets};

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

    // The filter narrows the view to matching lines.
    let filter = browser.wait_for("input[data-testid=log-filter]").await;
    filter.send_keys("e2e-marker").await.unwrap();
    browser
        .wait_for_count("[data-testid=log-line]", 1, Duration::from_secs(5))
        .await;

    let source = browser.client.source().await.unwrap();
    for secret in stack_secrets() {
        assert!(!source.contains(&secret), "a secret value is in the page");
    }
    browser.screenshot("health-logs").await;
}
