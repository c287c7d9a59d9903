//! A deploy from the browser: click Deploy, watch the live lines and the step list advance, end green,
//! find it in the history.

use std::time::Duration;

use end2end::{ADMIN, Browser, Console, StackProject, console_binary, stack_secrets};

#[tokio::test]
async fn clicking_deploy_shows_live_progress_ends_green_and_lands_in_the_history() {
    let project = StackProject::new("epsmclick");
    // A developer merged a change: the backend gets a new setting from the compose file.
    let compose = std::fs::read_to_string(project.compose_file())
        .unwrap()
        .replacen(
            "  EPSM_FAILURE: ${EPSM_FAILURE:-}\n",
            "  EPSM_FAILURE: ${EPSM_FAILURE:-}\n  EPSM_RELEASE: \"2\"\n",
            1,
        );
    assert!(compose.contains("EPSM_RELEASE"));
    project.push_to_origin(
        &[
            ("docker-compose.production.yml", Some(&compose)),
            ("docs/release-notes.md", Some("# Release 2\n")),
        ],
        "Release 2: EPSM_RELEASE for the backend",
    );
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;

    // Before the click: "Check for updates" fetches, and the card says what the deploy brings.
    browser
        .click_when_ready("[data-testid=check-updates]")
        .await;
    let commit = browser
        // The check is one server function (its fetch within the request timeout).
        .wait_for_text(
            "[data-testid=card-commit]",
            end2end::with_margin(end2end::CONSOLE_REQUEST_TIMEOUT),
            |t| t.contains("Release 2: EPSM_RELEASE for the backend"),
        )
        .await;
    assert!(commit.contains("Dana Developer"), "{commit}");
    let compose_part = browser
        .wait_for("[data-testid=card-compose]")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        compose_part.contains("backend changed")
            && compose_part.contains("environment: + EPSM_RELEASE"),
        "{compose_part}"
    );
    browser
        .wait_for("[data-testid=change-card][data-ahead=\"1\"][data-backup-advised=false]")
        .await;
    browser.screenshot("deploy-change-card").await;
    browser
        .wait_for("[data-testid=deploy-button]")
        .await
        .click()
        .await
        .unwrap();

    // The deploy's own page, following it live: lines arrive and the build step runs.
    browser
        .wait_for_text("[data-testid=deploy-log]", Duration::from_secs(60), |t| {
            t.contains("$ docker compose build --no-cache --pull")
        })
        .await;
    browser
        .wait_for("li[data-testid=deploy-step][data-status=running]")
        .await;
    browser.screenshot("deploy-running").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.path().starts_with("/deploys/"), "{url}");
    let title = browser.client.title().await.unwrap();
    assert_eq!(title, "Deploy #1 · EPSM Ops");

    browser
        .wait_for_text(
            "[data-testid=deploy-outcome]",
            Duration::from_secs(600),
            |t| !t.contains("running"),
        )
        .await;
    browser
        .wait_for("[data-testid=deploy-outcome][data-outcome=succeeded]")
        .await;
    browser
        .wait_for_count(
            "li[data-testid=deploy-step][data-status=succeeded]",
            12,
            Duration::from_secs(5),
        )
        .await;
    let log = browser
        .wait_for("[data-testid=deploy-log]")
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("nginx: healthy"), "{log}");
    // compose's progress comes on stderr ("Built", "Started"): none of it is painted as an error in
    // a green deploy.
    browser
        .wait_for_count("[data-testid=deploy-line].err", 0, Duration::from_secs(1))
        .await;
    browser.screenshot("deploy-succeeded").await;

    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;
    browser
        .wait_for_count(
            "tr[data-testid=deploy-row][data-outcome=succeeded]",
            1,
            Duration::from_secs(10),
        )
        .await;
    let source = browser.client.source().await.unwrap();
    for secret in stack_secrets() {
        assert!(!source.contains(&secret), "a secret value is in the page");
    }
    browser.screenshot("deploys").await;

    // The overview sums it up: every service healthy, this deploy, no backup yet, and the audit's
    // counts as the Environment page's findings give them; then a service stops, live.
    browser.open_hydrated(&format!("{}/", console.url)).await;
    browser
        .wait_for("[data-testid=overview-deploy-state][data-outcome=succeeded]")
        .await;
    let deploy = browser
        .wait_for("[data-testid=overview-deploy]")
        .await
        .text()
        .await
        .unwrap();
    assert!(deploy.contains("Deploy #1 succeeded"), "{deploy}");
    assert!(deploy.contains("Ada Admin"), "{deploy}");
    browser
        .wait_for("[data-testid=overview-backup-state][data-state=none]")
        .await;
    let (_, report) = console.call("environment_report", &[]).await;
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let count = |severity: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == severity)
            .count()
            .to_string()
    };
    let audit = browser.wait_for("[data-testid=overview-audit-state]").await;
    assert_eq!(
        audit.attr("data-errors").await.unwrap(),
        Some(count("Error"))
    );
    assert_eq!(
        audit.attr("data-warnings").await.unwrap(),
        Some(count("Warning"))
    );
    browser
        .wait_for_text(
            "[data-testid=overview-services-state]",
            Duration::from_secs(30),
            |t| t == "6 of 7 healthy, 1 running without a check",
        )
        .await;
    browser.screenshot("overview").await;
    project.compose_ok(&["stop", "redis"]);
    browser
        .wait_for_text(
            "[data-testid=overview-services-state]",
            Duration::from_secs(30),
            |t| t.contains(" of 7 healthy") && !t.starts_with("6 of 7"),
        )
        .await;
    browser
        .wait_for("[data-testid=overview-service][data-service=redis]")
        .await;
    browser.screenshot("overview-redis-down").await;
}
