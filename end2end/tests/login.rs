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
    let violations = browser.accessibility_violations().await;
    assert!(
        violations.is_empty(),
        "the development IdP's page: {violations:#?}"
    );
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
    // ... and says why.
    let note = browser
        .text_of("[data-testid=role-note][data-needs=admin]")
        .await;
    assert_eq!(
        note,
        "Destructive options (discarding local changes, recreating volumes) need the admin role \
         (you are a deployer): ask an admin."
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
    let violations = browser.accessibility_violations().await;
    assert!(
        violations.is_empty(),
        "the logged-out page: {violations:#?}"
    );
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
    // Told why, instead of finding nothing.
    let note = browser
        .text_of("[data-testid=role-note][data-needs=deployer]")
        .await;
    assert_eq!(
        note,
        "Deploys need the deployer role (you are a viewer): ask an admin."
    );
    browser.screenshot("viewer-deploys").await;

    // What the viewer reaches directly is a page of the console that says why, not plain text, raw
    // JSON or the browser's own error page.
    let refusal = async |url: &str| {
        browser.wait_for("[data-testid=refusal-title]").await;
        let title = browser.text_of("[data-testid=refusal-title]").await;
        let message = browser.text_of("[data-testid=refusal-message]").await;
        browser.wait_for("[data-testid=refusal-home]").await;
        (url.to_string(), title, message)
    };
    browser
        .client
        .goto(&format!("{}/backups/1/download", console.url))
        .await
        .unwrap();
    let (_, title, message) = refusal("download").await;
    assert_eq!(title, "Not allowed");
    assert!(message.contains("deployer"), "{message}");
    browser.screenshot("refused-download").await;
    browser
        .client
        .goto(&format!("{}/api/deploy_start", console.url))
        .await
        .unwrap();
    let (_, title, _) = refusal("a visit to a server function").await;
    assert_eq!(title, "Not a page");
    // A form posted before the page's script ran (or by a page without it).
    browser
        .open_hydrated(&format!("{}/deploys", console.url))
        .await;
    browser
        .client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/api/deploy_start'; \
             document.body.append(f); f.submit(); return true;",
            vec![],
        )
        .await
        .unwrap();
    let (_, title, message) = refusal("a form post").await;
    assert_eq!(title, "Not allowed");
    assert!(message.contains("deployer"), "{message}");
    let back = browser.wait_for("[data-testid=refusal-back]").await;
    assert_eq!(
        back.attr("href").await.unwrap().as_deref(),
        Some("/deploys")
    );
    browser.screenshot("refused-form-post").await;
    // An address that names no deploy.
    browser
        .open_hydrated(&format!("{}/deploys/new", console.url))
        .await;
    let text = browser.text_of("[data-testid=no-such-deploy]").await;
    assert!(text.starts_with("There is no deploy “new”"), "{text}");
}

#[tokio::test]
async fn with_an_idp_the_project_did_not_write_a_person_logs_in_and_out_through_its_pages() {
    use end2end::pysaml2::{EPPN, IDP_ANSWER_SEEN, PySaml2Idp};
    use end2end::{CONSOLE_REQUEST_TIMEOUT, HYDRATION_SEEN, with_margin};
    let port = end2end::free_port();
    // Another origin than the console's (another port): its logout page is reached only if the
    // page's CSP lets the logout form's redirect go there. The same site, as idp.chalmers.se is to a
    // console under chalmers.se: the session cookie (SameSite=Lax) goes with the IdP's post.
    let idp = PySaml2Idp::at(
        &format!("http://127.0.0.1:{port}"),
        &["employee@chalmers.se"],
    );
    let metadata = idp.metadata_file().display().to_string();
    let admins = format!("{{ids=[\"{EPPN}\"]}}");
    let console = Console::start_anonymous(
        &console_binary(),
        &[
            ("EPSM_OPS_AUTH_DEV_IDP", "false"),
            ("EPSM_OPS_AUTH_IDP_METADATA", metadata.as_str()),
            ("EPSM_OPS_AUTH_ALLOW_HTTP_METADATA", "true"),
            ("EPSM_OPS_AUTH_ADMINS", admins.as_str()),
        ],
    )
    .await;
    let sp = reqwest::get(format!("{}/saml/metadata", console.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    idp.register_sp(&sp);
    let _idp = idp.serve("shibboleth", port).await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{}/deploys", console.url))
        .await
        .unwrap();
    // To the IdP's page, which posts the response back: logged in, on the page asked for. Three
    // console requests (the login's redirect, the ACS, the page), the IdP's answer, hydration.
    let login_within = with_margin(CONSOLE_REQUEST_TIMEOUT * 3 + IDP_ANSWER_SEEN + HYDRATION_SEEN);
    let who = browser
        .wait_for_text("[data-testid=user-name]", login_within, |t| !t.is_empty())
        .await;
    assert_eq!(who, "Anna Andersson · admin");
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/deploys"
    );
    // Log out: on to the IdP's single logout.
    browser
        .wait_for("[data-testid=logout]")
        .await
        .click()
        .await
        .unwrap();
    // The logout request, then the IdP's page.
    let logout_within = with_margin(CONSOLE_REQUEST_TIMEOUT + IDP_ANSWER_SEEN);
    let said = browser
        .wait_for_text("#idp-logged-out", logout_within, |t| !t.is_empty())
        .await;
    assert_eq!(said, "Logged out at the IdP");
    let url = browser.client.current_url().await.unwrap();
    assert_eq!((url.port(), url.path()), (Some(port), "/slo"));
}
