//! The Environment page in a real browser: the audit's verdict and findings, every variable with its
//! secrets masked (URLs stay readable), and no secret value anywhere in the page.

use end2end::{ADMIN, Browser, Console, console_binary, stack_secrets};

#[tokio::test]
async fn the_environment_page_shows_findings_and_masked_values() {
    let console = Console::start(&console_binary(), &[]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
    browser
        .open_hydrated(&format!("{}/environment", console.url))
        .await;

    let verdict = browser.text_of("[data-testid=audit-verdict]").await;
    assert!(
        verdict.starts_with("0 errors, "),
        "the bundled stack has no error-level finding: {verdict}"
    );
    let unused = browser.text_of("tr[data-rule=unused-variable]").await;
    assert!(unused.contains("SECRET_KEY"), "{unused}");

    let cell = |key: &str| format!("tr[data-key={key}] td.value");
    let redis_url = browser.text_of(&cell("REDIS_URL")).await;
    assert_eq!(redis_url, "redis://:••••@redis:6379/0");
    let password = browser.text_of(&cell("DB_PASSWORD")).await;
    assert_eq!(password, "••••");
    let db_name = browser.text_of(&cell("DB_NAME")).await;
    assert_eq!(
        db_name, "epsm_db",
        "values that are not secret are shown as they are"
    );

    let source = browser.client.source().await.unwrap();
    for secret in stack_secrets() {
        assert!(!source.contains(&secret), "a secret value is in the page");
    }
    browser.screenshot("environment").await;
}
