//! Backups from the browser: click "Back up now", watch the bytes grow while it runs, see it succeed,
//! then delete it as an admin: a wrong name is refused, the typed file name deletes. A restore asks
//! for the database name and is followed on its own page like a deploy.

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

#[tokio::test]
async fn a_restore_asks_for_the_database_name_and_is_followed_like_a_deploy() {
    let project = StackProject::new("epsmrestoreclick");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    project.manage(&["migrate", "--noinput"]);
    project.manage(&["seed"]);
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
        .wait_for_text(
            "[data-testid=backup-result]",
            Duration::from_secs(120),
            |t| t.starts_with("Backup #1 done"),
        )
        .await;
    project.psql(
        "epsm_db",
        "DELETE FROM simulations_simulation; DELETE FROM simulations_building",
    );

    // A wrong name is refused and nothing starts; the database name starts the restore.
    browser
        .click_when_ready("[data-testid=restore-open-1]")
        .await;
    let restore_typing = |typed: &'static str| {
        let browser = &browser;
        async move {
            browser
                .client
                .execute(
                    "document.querySelector('[data-testid=restore-open-1]').closest('details').open = true",
                    vec![],
                )
                .await
                .unwrap();
            let confirm = browser.wait_for("[data-testid=restore-confirm-1]").await;
            confirm.clear().await.unwrap();
            confirm.send_keys(typed).await.unwrap();
            browser
                .wait_for("[data-testid=restore-1]")
                .await
                .click()
                .await
                .unwrap();
        }
    };
    restore_typing("yes").await;
    browser
        .wait_for_text(
            "[data-testid=restore-error]",
            Duration::from_secs(10),
            |t| t.contains("type the database name (epsm_db)"),
        )
        .await;
    assert_eq!(
        project.psql("epsm_db", "SELECT count(*) FROM simulations_building"),
        "0"
    );
    browser
        .client
        .execute(
            "document.querySelector('[data-testid=restore-open-1]').closest('details').open = true",
            vec![],
        )
        .await
        .unwrap();
    let confirm = browser.wait_for("[data-testid=restore-confirm-1]").await;
    confirm.clear().await.unwrap();
    confirm.send_keys("epsm_db").await.unwrap();
    browser.screenshot("restore-confirm").await;
    browser
        .wait_for("[data-testid=restore-1]")
        .await
        .click()
        .await
        .unwrap();

    // Its page follows it like a deploy's, to the end.
    let outcome = browser
        .wait_for_text(
            "[data-testid=deploy-outcome]",
            project.stack_settle_bound() + Duration::from_secs(120),
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
