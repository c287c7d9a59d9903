//! Backups from the browser: click "Back up now", watch the bytes grow while it runs, see it succeed,
//! then delete it as an admin: a wrong name is refused, the typed file name deletes. A restore asks
//! for the database name and is followed on its own page like a deploy.

use std::time::Duration;

use end2end::{ADMIN, Browser, Console, StackProject, console_binary, with_margin};

/// A page action the server answers at once (a refusal, a delete): nothing to wait for but the
/// machine.
const ANSWER_WITHIN: Duration = with_margin(Duration::ZERO);

/// How long `docker compose stop` may wait for a service before it kills it: Docker's default stop
/// timeout (the stack sets no `stop_grace_period`).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the Backups page as an admin of `console` and clicks "Back up now".
async fn back_up_from_the_page(console: &Console) -> Browser {
    let browser = Browser::start().await;
    browser.login(console, ADMIN).await;
    browser
        .open_hydrated(&format!("{}/backups", console.url))
        .await;
    browser
        .wait_for("[data-testid=backup-button]")
        .await
        .click()
        .await
        .unwrap();
    browser
}

/// Waits for "Backup #1 done: <file>"; returns the file name.
async fn first_backup_done(browser: &Browser) -> String {
    let done = browser
        .wait_for_text(
            "[data-testid=backup-result]",
            Duration::from_secs(120),
            |t| t.starts_with("Backup #1 done"),
        )
        .await;
    done.rsplit(": ").next().unwrap().to_string()
}

/// Opens backup #1's `action` form ("delete", "restore"), types `typed` (the form then pictured as
/// `shot`, if given) and submits it. The list is re-read after each attempt, which renders the form
/// closed again: it is opened every time.
async fn confirm_typing(browser: &Browser, action: &str, typed: &str, shot: Option<&str>) {
    browser
        .click_when_ready(&format!("[data-testid={action}-open-1]"))
        .await;
    browser
        .client
        .execute(
            &format!(
                "document.querySelector('[data-testid={action}-open-1]').closest('details').open = true"
            ),
            vec![],
        )
        .await
        .unwrap();
    let confirm = browser
        .wait_for(&format!("[data-testid={action}-confirm-1]"))
        .await;
    confirm.clear().await.unwrap();
    confirm.send_keys(typed).await.unwrap();
    if let Some(name) = shot {
        browser.screenshot(name).await;
    }
    browser
        .wait_for(&format!("[data-testid={action}-1]"))
        .await
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_backup_shows_its_progress_succeeds_and_is_deleted_only_with_its_name_typed() {
    let project = StackProject::new("epsmbackclick");
    // Enough rows that the dump runs for a few seconds, so its progress can be seen.
    project.database_only_with_rows(3_000_000);
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = back_up_from_the_page(&console).await;
    browser
        .wait_for_text("[data-testid=backup-size]", Duration::from_secs(30), |t| {
            t.ends_with("so far")
        })
        .await;
    browser.screenshot("backup-running").await;
    let name = first_backup_done(&browser).await;
    assert!(name.ends_with("-1.dump"), "{name}");
    browser
        .wait_for("tr[data-testid=backup-row][data-outcome=succeeded]")
        .await;

    // Delete: the summary opens the form; a wrong name is refused and nothing is deleted.
    confirm_typing(&browser, "delete", "yes", None).await;
    browser
        .wait_for_text("[data-testid=delete-error]", ANSWER_WITHIN, |t| {
            t.contains(&format!("type the file name ({name})"))
        })
        .await;
    assert!(console.data_path().join("backups").join(&name).exists());
    confirm_typing(&browser, "delete", &name, None).await;
    browser
        .wait_for_count(
            "tr[data-testid=backup-row][data-outcome=deleted]",
            1,
            ANSWER_WITHIN,
        )
        .await;
    assert!(!console.data_path().join("backups").join(&name).exists());
    browser.screenshot("backups").await;
}

#[tokio::test]
async fn a_restore_asks_for_the_database_name_and_is_followed_like_a_deploy() {
    let project = StackProject::new("epsmrestoreclick");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    project.manage(&["migrate", "--noinput"]);
    project.manage(&["seed"]);
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = back_up_from_the_page(&console).await;
    first_backup_done(&browser).await;
    project.psql(
        "epsm_db",
        "DELETE FROM simulations_simulation; DELETE FROM simulations_building",
    );

    // A wrong name is refused and nothing starts; the database name starts the restore.
    confirm_typing(&browser, "restore", "yes", None).await;
    browser
        .wait_for_text("[data-testid=restore-error]", ANSWER_WITHIN, |t| {
            t.contains("type the database name (epsm_db)")
        })
        .await;
    assert_eq!(
        project.psql("epsm_db", "SELECT count(*) FROM simulations_building"),
        "0"
    );
    confirm_typing(&browser, "restore", "epsm_db", Some("restore-confirm")).await;

    // Its page follows it like a deploy's, to the end: the writers stopped (each within the stop
    // timeout), then the stack settling again after they start.
    let outcome = browser
        .wait_for_text(
            "[data-testid=deploy-outcome]",
            project.stack_settle_bound() + with_margin(STOP_TIMEOUT),
            |t| {
                ["succeeded", "failed", "cancelled"]
                    .iter()
                    .any(|end| t.starts_with(end))
            },
        )
        .await;
    assert!(outcome.starts_with("succeeded"), "{outcome}");
    assert!(
        outcome.contains("restored the database from backup #1"),
        "{outcome}"
    );
    assert!(browser.text_of("h1").await.starts_with("Restore #"));
    assert_eq!(
        project.psql("epsm_db", "SELECT count(*) FROM simulations_building"),
        "3"
    );
    browser.screenshot("restore-succeeded").await;
}
