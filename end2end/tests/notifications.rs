//! The Notifications page from the browser: the channels with their URLs masked, "Send a test
//! message" delivered to a Teams endpoint on loopback and not to a webhook that is down, each listed
//! with its state; an alert given up shows on the Overview; a viewer is told the page is for admins.
//! At desktop and phone sizes, without an accessibility violation.

use std::time::{Duration, Instant};

use end2end::receiver::Receiver;
use end2end::{
    ADMIN, Browser, Console, VIEWER, console_binary, private_file as private, with_margin,
};

/// A page action the server answers at once: nothing to wait for but the machine.
const ANSWER_WITHIN: Duration = with_margin(Duration::ZERO);
/// A queued message wakes the console's sender at once: sending it (and giving it up, with one
/// attempt) has nothing to wait for but the machine.
const SENT_WITHIN: Duration = with_margin(Duration::ZERO);

#[tokio::test]
async fn an_admin_tests_each_channel_and_the_overview_shows_what_was_not_delivered() {
    // Teams: an endpoint that keeps each card.
    let receiver = Receiver::start().await;
    let teams = &receiver.url;
    // The webhook: nobody listens at its port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook/t0ken", dead.local_addr().unwrap());
    drop(dead);

    let secrets = tempfile::tempdir().unwrap();
    let teams_file = private(
        secrets.path(),
        "teams.url",
        &format!("{teams}/workflows/sig=abc"),
    );
    let hook_file = private(secrets.path(), "hook.url", &hook);
    let secret_file = private(secrets.path(), "hook.secret", "s3cret");
    // One attempt: an alert that fails is given up at once (and shown on the Overview). The
    // machine's own disk is not this test's subject.
    let config = private(
        secrets.path(),
        "epsm-ops.toml",
        &format!(
            "[alerts]\ngrace_secs = 3600\ndisk_free_percent = 0\nattempts = 1\n\
             [[alerts.channels]]\nname = \"teams\"\nkind = \"teams\"\nurl_file = {teams_file:?}\n\
             [[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {hook_file:?}\n\
             secret_file = {secret_file:?}\n"
        ),
    );
    let console = Console::start(&console_binary(), &[("EPSM_OPS_CONFIG", config.as_str())]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    browser
        .open_hydrated(&format!("{}/notifications", console.url))
        .await;

    // Where each channel goes: scheme, host and port, never the URL's path.
    let target = browser
        .text_of("[data-testid=channel][data-name=teams] [data-testid=channel-target]")
        .await;
    assert!(target.starts_with(&format!("{teams}/… (in ")), "{target}");
    let page = browser.client.source().await.unwrap();
    assert!(
        !page.contains("sig=abc") && !page.contains("t0ken"),
        "a URL's credential on the page"
    );

    // Teams: delivered, listed as such, the card received.
    browser
        .click_when_ready("[data-testid=channel][data-name=teams] [data-testid=channel-test]")
        .await;
    browser
        .wait_for_text("[data-testid=test-result]", ANSWER_WITHIN, |t| {
            t == "Delivered to teams."
        })
        .await;
    browser
        .wait_for("tr[data-testid=delivery][data-state=delivered][data-channel=teams]")
        .await;
    let cards = receiver.received();
    assert_eq!(cards.len(), 1);
    assert_eq!(
        cards[0].json()["attachments"][0]["content"]["body"][0]["text"],
        "epsm: a test message from EPSM Ops"
    );

    // The webhook is down: said on the page, listed as given up.
    browser
        .click_when_ready("[data-testid=channel][data-name=hook] [data-testid=channel-test]")
        .await;
    let said = browser
        .wait_for_text("[data-testid=test-result]", ANSWER_WITHIN, |t| {
            t.starts_with("Not delivered to hook")
        })
        .await;
    assert!(said.contains("the receiver did not answer"), "{said}");
    browser
        .wait_for("tr[data-testid=delivery][data-state='given up'][data-channel=hook]")
        .await;
    let violations = browser.accessibility_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    browser.screenshot("notifications").await;

    // On a phone: nothing scrolls sideways.
    browser.set_size(390, 844).await;
    browser
        .open_hydrated(&format!("{}/notifications", console.url))
        .await;
    browser.wait_for("[data-testid=deliveries]").await;
    let (overflow, culprits) = browser.sideways_overflow().await;
    assert!(
        overflow <= 0.0,
        "scrolls sideways by {overflow} px: {culprits:?}"
    );
    browser.screenshot("notifications-phone").await;
    browser.set_size(1280, 800).await;

    // A backup fails (no stack runs here): its alert to the webhook is given up at its one attempt
    // and the Overview says so (a failed test message does not count).
    let (status, body) = console.call("backup_start", &[]).await;
    assert_ne!(
        status, 200,
        "the backup should fail without a database: {body}"
    );
    let deadline = Instant::now() + SENT_WITHIN;
    loop {
        let (_, overview) = console.call("overview", &[]).await;
        let overview: serde_json::Value = serde_json::from_str(&overview).unwrap();
        if overview["undelivered"][0] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not given up: {overview}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.open_hydrated(&format!("{}/", console.url)).await;
    let card = browser.text_of("[data-testid=overview-undelivered]").await;
    assert!(
        card.contains("1 alert of the last 7 days could not be delivered"),
        "{card}"
    );
    assert!(card.contains("backup #1 failed (to hook)"), "{card}");

    // A viewer is told the page is an admin's.
    let viewer = Browser::start().await;
    viewer.login(&console, VIEWER).await;
    viewer
        .open_hydrated(&format!("{}/notifications", console.url))
        .await;
    let note = viewer.text_of("[data-testid=role-note]").await;
    assert!(note.contains("admin"), "{note}");
}
