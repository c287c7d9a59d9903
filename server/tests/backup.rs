//! Database backups against the real stack through the real server: a backup of the seeded database
//! restores into a scratch database with the same tables and row counts; its download has the recorded
//! sha256 and ranges work; a stopped database is a clear failure that leaves no file.

use std::path::Path;

use app::backup::{Backup, BackupOutcome};
use end2end::{Console, StackProject, stack_secrets};
use sha2::{Digest, Sha256};

const COUNTS: &str = "SELECT string_agg(relname || '=' || n_live_tup, ',' ORDER BY relname) \
                      FROM pg_stat_user_tables";

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_backup_restores_with_the_same_tables_downloads_intact_and_a_stopped_database_leaves_no_file()
 {
    let project = StackProject::new("epsmbackup");
    project.compose_ok(&["build"]);
    project.compose_ok(&["up", "-d", "--wait", "--wait-timeout", "300"]);
    project.compose_ok(&[
        "exec",
        "-T",
        "backend",
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]);
    project.compose_ok(&["exec", "-T", "backend", "python", "manage.py", "seed"]);
    let console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        &[("EPSM_OPS_BACKUPS_KEEP_LAST", "1")],
    )
    .await;

    let (status, body) = console.call("backup_start", &[]).await;
    assert_eq!(status, 200, "{body}");
    let backup: Backup = serde_json::from_str(&body).unwrap();
    assert_eq!(
        backup.outcome,
        BackupOutcome::Succeeded,
        "{}",
        backup.reason
    );
    assert_eq!(backup.database, "epsm_db");
    let dir = console.data_path().join("backups");
    let file = dir.join(backup.file_name.as_deref().unwrap());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(Some(bytes.len() as u64), backup.size_bytes);
    assert_eq!(
        backup.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );

    // Restored into a scratch database inside the container: the same tables with the same rows.
    project.psql("epsm_db", "ANALYZE");
    let original = project.psql("epsm_db", COUNTS);
    assert!(original.contains("simulations_building=3"), "{original}");
    project.psql("epsm_db", "CREATE DATABASE scratch");
    let name = backup.file_name.clone().unwrap();
    let out = std::process::Command::new("docker")
        .args(["cp", &file.display().to_string()])
        .arg(format!("{}-database-1:/tmp/{name}", project.name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    project.compose_ok(&[
        "exec",
        "-T",
        "database",
        "pg_restore",
        "-U",
        "epsm_user",
        "-d",
        "scratch",
        &format!("/tmp/{name}"),
    ]);
    project.psql("scratch", "ANALYZE");
    assert_eq!(project.psql("scratch", COUNTS), original);

    // Download: the recorded sha256, the size, a file name; a range is the right slice.
    let url = format!("{}/backups/{}/download", console.url, backup.id);
    let reply = reqwest::get(&url).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.headers()["x-checksum-sha256"].to_str().unwrap(),
        backup.sha256.as_deref().unwrap()
    );
    assert!(
        reply.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&name)
    );
    let downloaded = reply.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&downloaded)),
        backup.sha256.clone().unwrap()
    );
    let ranged = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=10-99")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &bytes[10..100]);

    // A plain SQL backup; the retention policy (keep the last 1) then deletes exactly the first.
    let (status, body) = console.call("backup_start", &[("format", "Plain")]).await;
    assert_eq!(status, 200, "{body}");
    let plain: Backup = serde_json::from_str(&body).unwrap();
    assert!(plain.file_name.as_deref().unwrap().ends_with(".sql"));
    let (_, list) = console.call("backup_list", &[]).await;
    assert!(
        !file.exists(),
        "the first backup's file is deleted by the policy: {list}\n{}",
        console.log()
    );
    assert_eq!(files(&dir), vec![plain.file_name.clone().unwrap()]);

    // A stopped database: a clear failure, a failed record, and no file (partial or whole).
    project.compose_ok(&["stop", "database"]);
    let before = files(&dir);
    let (status, body) = console.call("backup_start", &[("format", "Plain")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the database container is not running"),
        "{body}"
    );
    assert_eq!(files(&dir), before, "no new file");
    let (_, list) = console.call("backup_list", &[]).await;
    let list: Vec<Backup> = serde_json::from_str(&list).unwrap();
    let outcomes: Vec<BackupOutcome> = list.iter().map(|b| b.outcome).collect();
    assert_eq!(
        outcomes,
        [
            BackupOutcome::Failed,
            BackupOutcome::Succeeded,
            BackupOutcome::Deleted
        ]
    );

    let (_, audit) = console.call("audit_log", &[]).await;
    assert!(
        audit.contains("backup.create") && audit.contains("backup.download"),
        "{audit}"
    );
    assert!(audit.contains("bytes=10-99"), "{audit}");
    for secret in stack_secrets() {
        assert!(!console.log().contains(&secret) && !audit.contains(&secret));
    }
}
