//! The shell in a real browser: the server-rendered page hydrates, the navigation works client-side,
//! the engine is shown (or its absence explained), and each step leaves a screenshot in
//! target/screenshots/.

use end2end::{Browser, Console, console_binary, docker_host};
use fantoccini::Locator;

#[tokio::test]
async fn the_shell_hydrates_and_navigates_between_the_pages() {
    let console = Console::start(
        &console_binary(),
        &[("EPSM_OPS_DOCKER_HOST", &docker_host())],
    )
    .await;
    let browser = Browser::start().await;
    browser.open_hydrated(&format!("{}/", console.url)).await;

    let state = browser.wait_for("[data-testid=engine-state]").await;
    assert_eq!(
        state.attr("data-state").await.unwrap().as_deref(),
        Some("reachable")
    );
    assert!(
        state
            .text()
            .await
            .unwrap()
            .starts_with("Reachable — Docker ")
    );
    let project = browser.wait_for("[data-testid=project-name]").await;
    assert_eq!(project.text().await.unwrap(), "epsm");
    browser.screenshot("overview").await;

    // Client-side navigation (the page is hydrated: no full reload, the marker stays).
    for (link, heading, path) in [
        ("Health", "Health", "/health"),
        ("Deploys", "Deploys", "/deploys"),
        ("Environment", "Environment", "/environment"),
        ("Backups", "Backups", "/backups"),
        ("Audit log", "Audit log", "/audit"),
    ] {
        browser
            .client
            .find(Locator::LinkText(link))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let h1 = browser.wait_for("main h1").await;
        browser
            .client
            .wait()
            .for_element(Locator::XPath(&format!("//main/h1[text()='{heading}']")))
            .await
            .unwrap_or_else(|e| panic!("{link}: heading never became {heading}: {e}"));
        drop(h1);
        let url = browser.client.current_url().await.unwrap();
        assert_eq!(url.path(), path);
        let current = browser
            .client
            .find(Locator::Css("nav a[aria-current=page]"))
            .await
            .unwrap();
        assert_eq!(current.text().await.unwrap(), link);
        browser.wait_for("[data-hydrated=true]").await;
    }

    // The audit log shows the console's own start.
    let table = browser.wait_for("[data-testid=audit-table]").await;
    assert!(table.text().await.unwrap().contains("console.start"));
    browser.screenshot("audit-log").await;
}

#[tokio::test]
async fn a_dead_engine_turns_the_overview_red_with_the_reason() {
    let console = Console::start(
        &console_binary(),
        &[("EPSM_OPS_DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    )
    .await;
    let browser = Browser::start().await;
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let state = browser.wait_for("[data-testid=engine-state]").await;
    assert_eq!(
        state.attr("data-state").await.unwrap().as_deref(),
        Some("unreachable")
    );
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
    browser.screenshot("overview-engine-unreachable").await;
}
