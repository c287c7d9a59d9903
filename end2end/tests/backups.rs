//! Backups from the browser: click "Back up now", watch the bytes grow while it runs, see it succeed,
//! then delete it as an admin: a wrong name is refused, the typed file name deletes.

use std::time::Duration;

use end2end::{ADMIN, Browser, Console, StackProject, console_binary};

#[tokio::test]
async fn a_backup_shows_its_progress_succeeds_and_is_deleted_only_with_its_name_typed() {
    let project = StackProject::new("epsmbackclick");
    // Enough rows that the dump runs for a few seconds, so its progress can be seen.
    project.database_only_with_rows(3_000_000);
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let browser = Browser::start().await;
    browser.login(&console, ADMIN).await;
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
        .wait_for_text("[data-testid=backup-size]", Duration::from_secs(30), |t| {
            t.ends_with("so far")
        })
        .await;
    browser.screenshot("backup-running").await;
    let done = browser
        .wait_for_text(
            "[data-testid=backup-result]",
            Duration::from_secs(120),
            |t| t.starts_with("Backup #1 done"),
        )
        .await;
    let name = done.rsplit(": ").next().unwrap().to_string();
    assert!(name.ends_with("-1.dump"), "{done}");
    browser
        .wait_for("tr[data-testid=backup-row][data-outcome=succeeded]")
        .await;

    // Delete: the summary opens the form; a wrong name is refused and nothing is deleted.
    browser
        .click_when_ready("[data-testid=delete-open-1]")
        .await;
    let delete_typing = |typed: String| {
        let browser = &browser;
        async move {
            // The list is re-read after each attempt, which renders the form closed again: open it.
            browser
                .client
                .execute(
                    "document.querySelector('[data-testid=delete-open-1]').closest('details').open = true",
                    vec![],
                )
                .await
                .unwrap();
            let confirm = browser.wait_for("[data-testid=delete-confirm-1]").await;
            confirm.clear().await.unwrap();
            confirm.send_keys(&typed).await.unwrap();
            browser
                .wait_for("[data-testid=delete-1]")
                .await
                .click()
                .await
                .unwrap();
        }
    };
    delete_typing("yes".into()).await;
    browser
        .wait_for_text("[data-testid=delete-error]", Duration::from_secs(10), |t| {
            t.contains(&format!("type the file name ({name})"))
        })
        .await;
    assert!(console.data_path().join("backups").join(&name).exists());
    delete_typing(name.clone()).await;
    browser
        .wait_for_count(
            "tr[data-testid=backup-row][data-outcome=deleted]",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert!(!console.data_path().join("backups").join(&name).exists());
    browser.screenshot("backups").await;
}
