//! A deploy from the browser: click Deploy, watch the live lines and the step list advance, end green,
//! find it in the history.

use std::time::Duration;

use end2end::{ADMIN, Browser, Console, StackProject, console_binary, stack_secrets};

/// The whole deploy's bound: the stack settling after `up` (its healthchecks along the `depends_on`
/// chain) and the slow migration, with margin. The rest is seconds inside that margin: the build pulls
/// its base from the loopback registry and adds COPY layers (about 1 s), down and the other steps are
/// quick commands.
fn whole_deploy(project: &StackProject) -> Duration {
    end2end::with_margin(project.healthchecks().all_settled_within() + end2end::SLOW_MIGRATION)
}

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
    // Its migration takes a while, as real ones do: the test looks at the deploy while it runs.
    let slow_line = project.slow_migration();
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    // A fresh install: the Overview says what to do next, and the link leads to the Deploy form.
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let first = browser
        .text_of("[data-testid=overview-deploy-state][data-outcome=none]")
        .await;
    assert!(
        first.starts_with("No deploy yet. Deploy the newest code"),
        "{first}"
    );
    browser.screenshot("overview-fresh").await;
    browser
        .click_when_ready("[data-testid=overview-first-deploy]")
        .await;
    browser.wait_for("[data-testid=deploy-form]").await;
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/deploys"
    );

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
    let compose_part = browser.text_of("[data-testid=card-compose]").await;
    assert!(
        compose_part.contains("backend changed")
            && compose_part.contains("environment: + EPSM_RELEASE"),
        "{compose_part}"
    );
    browser
        .wait_for("[data-testid=change-card][data-ahead=\"1\"][data-backup-advised=false]")
        .await;
    browser.screenshot("deploy-change-card").await;
    // The button asks first, saying what the click will do: the stack goes down for the build, and
    // what the change card found.
    browser
        .click_when_ready("[data-testid=deploy-button]")
        .await;
    // The card is on the page already; the confirmation adds one server function (the form's state).
    let confirm = browser
        .wait_for_text(
            "[data-testid=deploy-confirm-lines]",
            end2end::with_margin(end2end::CONSOLE_REQUEST_TIMEOUT),
            |t| t.contains("new commit"),
        )
        .await;
    assert!(
        confirm.contains(
            "EPSM keeps serving while the new images build. For the switch, the worker first finishes"
        ),
        "{confirm}"
    );
    assert!(
        confirm.contains(
            "1 new commit from main, the newest “Release 2: EPSM_RELEASE for the backend”."
        ),
        "{confirm}"
    );
    // The release's setting sits in the environment block the backend shares with both Celery services.
    assert!(
        confirm.contains("The compose file changes backend, celery_beat, celery_worker."),
        "{confirm}"
    );
    browser
        .scroll_into_view("[data-testid=deploy-confirm]")
        .await;
    browser.screenshot("deploy-confirm").await;
    browser
        .click_when_ready("[data-testid=deploy-confirm-button]")
        .await;

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

    // The migration takes SLOW_MIGRATION: a deploy surely running for what follows.
    browser
        .wait_for_text("[data-testid=deploy-log]", whole_deploy(&project), |t| {
            t.contains(&slow_line)
        })
        .await;

    // Meanwhile the Deploys page says who runs what since when, instead of a button that would be
    // refused; "watch" leads back.
    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;
    let running = browser
        .text_of("[data-testid=deploy-running][data-deploy=\"1\"]")
        .await;
    assert!(
        running.starts_with("running Deploy #1 is running (by Ada Admin (admin@dev.idp), since ")
            && running.ends_with(" ago) — watch · cancel"),
        "{running}"
    );
    let disabled = browser
        .client
        .execute(
            "return document.querySelector('[data-testid=deploy-ref]').matches(':disabled');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        disabled,
        serde_json::json!(true),
        "the form is open during a deploy"
    );
    browser.screenshot("deploys-running").await;
    browser
        .click_when_ready("[data-testid=deploy-running-watch]")
        .await;
    browser.wait_for("[data-testid=deploy-steps]").await;

    // The log follows its newest line; a reader who scrolls up stays there and is told what came.
    const LOG: &str = "[data-testid=deploy-log]";
    browser
        .wait_until_scrolled_to_end(LOG, end2end::BROWSER_WAIT)
        .await;
    browser.scroll_to_top(LOG).await;
    browser
        .wait_for("[data-testid=deploy-log-following][data-following=false]")
        .await;
    // New lines come when the slow migration ends and the steps after it print.
    browser
        .wait_for_text(
            "[data-testid=deploy-log-jump]",
            end2end::with_margin(end2end::SLOW_MIGRATION),
            |t| t.starts_with("Jump to latest"),
        )
        .await;
    assert!(
        browser.scroll_state(LOG).await.top < 1.0,
        "the log moved while the reader read"
    );
    browser
        .click_when_ready("[data-testid=deploy-log-jump]")
        .await;

    browser
        .wait_for_text(
            "[data-testid=deploy-outcome]",
            whole_deploy(&project),
            |t| !t.contains("running"),
        )
        .await;
    browser
        .wait_for("[data-testid=deploy-outcome][data-outcome=succeeded]")
        .await;
    browser
        .wait_for_count(
            "li[data-testid=deploy-step][data-status=succeeded]",
            // 17 steps; the backup (not chosen) and the pull (nothing to pull) are skipped.
            15,
            Duration::from_secs(5),
        )
        .await;
    let log = browser.text_of("[data-testid=deploy-log]").await;
    assert!(log.contains("nginx: healthy"), "{log}");
    // Followed to its end: the verify step's last lines are in view.
    browser
        .wait_until_scrolled_to_end(LOG, end2end::PAGE_REACTS)
        .await;
    // compose's progress comes on stderr ("Built", "Started"): none of it is painted as an error in
    // a green deploy.
    let red = browser
        .client
        .execute(
            "return [...document.querySelectorAll('[data-testid=deploy-line].err')].map(l => l.textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(red, serde_json::json!([]), "red lines in a green deploy");
    browser.screenshot("deploy-succeeded").await;
    // Screen readers hear the outcome change; "Redeploy this one" is offered on the open page (no
    // reload) and keeps its distance from the facts above it.
    browser
        .wait_for("[data-testid=deploy-outcome][role=status][aria-live=polite]")
        .await;
    browser.wait_for("[data-testid=rollback-button]").await;
    let gap = browser
        .client
        .execute(
            "const button = document.querySelector('[data-testid=rollback-button]').getBoundingClientRect(); \
             const facts = document.querySelector('dl.facts').getBoundingClientRect(); \
             return button.top - facts.bottom;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        gap.as_f64().unwrap() >= 8.0,
        "the button touches the row above: {gap}"
    );

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
    // A filter that matches nothing says which one it is, and the way back to all.
    browser
        .open_hydrated(&format!("{}/deploys?outcome=failed", console.url))
        .await;
    let empty = browser.text_of("[data-testid=deploy-history-empty]").await;
    assert_eq!(empty, "No failed deploys. Show all");
    let active = browser
        .text_of("[data-testid=deploy-filters] a[aria-current=page]")
        .await;
    assert_eq!(active, "failed");

    // The overview sums it up: every service healthy, this deploy, no backup yet, and the audit's
    // counts as the Environment page's findings give them; then a service stops, live.
    browser.open_hydrated(&format!("{}/", console.url)).await;
    browser
        .wait_for("[data-testid=overview-deploy-state][data-outcome=succeeded]")
        .await;
    let deploy = browser.text_of("[data-testid=overview-deploy]").await;
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
    tour_every_page(&browser, &console.url).await;
    browser.open_hydrated(&format!("{}/", console.url)).await;
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

/// Every page of a console with a stack and a deploy behind it, on a desktop and on a phone: nothing
/// scrolls sideways (a wide table scrolls in its own box), the phone gets the menu instead of the
/// sidebar, axe-core finds no serious or critical violation, and each leaves a screenshot
/// (`<page>-desktop.png`, `<page>-phone.png`).
async fn tour_every_page(browser: &Browser, base: &str) {
    let pages = [
        ("overview", "/"),
        ("health", "/health"),
        ("deploys", "/deploys"),
        ("deploy", "/deploys/1"),
        ("environment", "/environment"),
        ("backups", "/backups"),
        ("audit", "/audit"),
    ];
    for (size, (width, height)) in [("desktop", (1280, 800)), ("phone", (390, 844))] {
        browser.set_size(width, height).await;
        for (name, path) in pages {
            browser.open_hydrated(&format!("{base}{path}")).await;
            browser.wait_for("main h1").await;
            let menu = browser.wait_for("[data-testid=menu-button]").await;
            let nav = browser.wait_for("nav.sidebar").await;
            if size == "phone" {
                assert!(
                    menu.is_displayed().await.unwrap(),
                    "{path}: no menu button on a phone"
                );
                assert!(
                    !nav.is_displayed().await.unwrap(),
                    "{path}: the sidebar takes a phone's width"
                );
            } else {
                assert!(
                    !menu.is_displayed().await.unwrap(),
                    "{path}: a menu button on a desktop"
                );
                assert!(
                    nav.is_displayed().await.unwrap(),
                    "{path}: no sidebar on a desktop"
                );
            }
            let (overflow, culprits) = browser.sideways_overflow().await;
            assert!(
                overflow <= 0.0,
                "{path} at {width} px scrolls sideways by {overflow} px: {culprits:?}"
            );
            if size == "desktop" {
                // On a desktop every table fits: none needs its own scrollbar either.
                let wide = browser
                    .client
                    .execute(
                        "return [...document.querySelectorAll('.table-wrap')] \
                           .filter(w => w.scrollWidth > w.clientWidth + 1) \
                           .map(w => `${w.firstElementChild.dataset.testid}: ${w.scrollWidth - w.clientWidth} px`);",
                        vec![],
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    wide,
                    serde_json::json!([]),
                    "{path}: tables wider than the page"
                );
            }
            let violations = browser.accessibility_violations().await;
            assert!(
                violations.is_empty(),
                "{path} at {width} px: {violations:#?}"
            );
            browser.screenshot(&format!("{name}-{size}")).await;
            if (name, size) == ("health", "phone") {
                // The services as cards, further down.
                browser.scroll_into_view("[data-testid=services]").await;
                browser.screenshot("health-phone-services").await;
            }
        }
    }
    browser.set_size(1280, 860).await;
}
