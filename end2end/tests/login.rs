//! Login in a real browser through the development IdP: the pages are closed to anonymous visitors,
//! a deployer sees their name and only the buttons their role allows (a viewer fewer), logging out
//! closes the pages again.

use std::time::Duration;

use end2end::{Browser, Console, DEPLOYER, VIEWER, console_binary};
use fantoccini::Locator;

/// How many elements match `css` on the current page.
async fn count(browser: &Browser, css: &str) -> usize {
    browser
        .client
        .find_all(Locator::Css(css))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_deployer_logs_in_sees_their_buttons_only_and_logging_out_closes_the_pages() {
    let console = Console::start(&console_binary(), &[]).await;
    let browser = Browser::start().await;

    // Anonymous: the console sends the browser to the IdP, which asks who to be.
    browser
        .client
        .goto(&format!("{}/deploys", console.url))
        .await
        .unwrap();
    browser
        .wait_for(&format!("[data-testid=\"dev-login-{DEPLOYER}\"]"))
        .await;
    browser.screenshot("login-dev-idp").await;
    browser.pick_dev_user(DEPLOYER).await;
    // Back on the page asked for, with a name and a role.
    let url = browser.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/deploys");
    let who = browser
        .wait_for_text("[data-testid=user-name]", Duration::from_secs(10), |t| {
            !t.is_empty()
        })
        .await;
    assert_eq!(who, "Dan Deployer · deployer");
    browser.wait_for("[data-testid=dev-idp-banner]").await;
    // A deployer deploys, but recreating volumes (admin) is not offered.
    browser.wait_for("[data-testid=deploy-button]").await;
    assert_eq!(
        count(&browser, "details.danger").await,
        0,
        "no admin-only option"
    );
    browser.screenshot("login-deployer").await;
    // Maintenance (admin only) is not on the Health page; Back up now (deployer) is on Backups.
    browser
        .open_hydrated(&format!("{}/health", console.url))
        .await;
    browser.wait_for("[data-testid=user-name]").await;
    assert_eq!(count(&browser, "[data-testid=maintenance]").await, 0);
    browser
        .open_hydrated(&format!("{}/backups", console.url))
        .await;
    browser.wait_for("[data-testid=backup-button]").await;

    // Log out: the pages are closed again.
    browser
        .wait_for("[data-testid=logout]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("[data-testid=login-title]", Duration::from_secs(10), |t| {
            t == "Logged out"
        })
        .await;
    browser
        .client
        .goto(&format!("{}/backups", console.url))
        .await
        .unwrap();
    browser
        .wait_for(&format!("[data-testid=\"dev-login-{VIEWER}\"]"))
        .await;

    // A viewer: no Deploy, no Back up now.
    browser.pick_dev_user(VIEWER).await;
    browser
        .wait_for_text("[data-testid=user-name]", Duration::from_secs(10), |t| {
            t == "Vera Viewer · viewer"
        })
        .await;
    assert_eq!(count(&browser, "[data-testid=backup-button]").await, 0);
    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;
    browser.wait_for("[data-testid=user-name]").await;
    assert_eq!(count(&browser, "[data-testid=deploy-button]").await, 0);
}
