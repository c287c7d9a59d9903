//! Database backups against the real stack through the real server: a backup of the seeded database
//! restores into a scratch database with the same tables and row counts; its download has the recorded
//! sha256 and ranges work; a stopped database, a full disk, a database killed mid-dump and a console
//! killed mid-dump each leave no file and no "success"; the command line and the schedule record
//! their backups like the page does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use app::backup::{Backup, BackupOutcome};
use end2end::{Console, StackProject, stack_secrets};
use sha2::{Digest, Sha256};

const COUNTS: &str = "SELECT string_agg(relname || '=' || n_live_tup, ',' ORDER BY relname) \
                      FROM pg_stat_user_tables";

/// The files in a backups directory (partial ones included), but the lock file.
fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .filter(|name| name != ".lock")
                .collect()
        })
        .unwrap_or_default()
}

/// A small tmpfs mounted for the test (the tests run as root), unmounted on drop. Mode 0700, as the
/// console requires of a backups directory (a tmpfs is 1777 by default).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting a tmpfs needs root: {out:?}");
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn backups(list: &str) -> Vec<Backup> {
    serde_json::from_str(list).unwrap_or_else(|e| panic!("{e}: {list}"))
}

/// Starts a backup without waiting for it, then waits until its record shows bytes written (the
/// progress the page shows); returns the pending reply.
async fn start_and_watch_progress(console: &Console) -> tokio::task::JoinHandle<(u16, String)> {
    let url = format!("{}/api/backup_start", console.url);
    let client = console.client().clone();
    let reply = tokio::spawn(async move {
        // (A console killed mid-way gives no reply: status 0 and the error.)
        match client.post(url).form(&[("format", "Custom")]).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = console.call("backup_list", &[]).await;
        let running = backups(&list)
            .into_iter()
            .find(|b| b.outcome == BackupOutcome::Running);
        if running.and_then(|b| b.size_bytes).is_some_and(|n| n > 0) {
            return reply;
        }
        assert!(
            Instant::now() < deadline && !reply.is_finished(),
            "no progress seen: {list}\n{}",
            console.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions of pg_dumps the console started (its application_name) still open in the database.
fn dump_sessions(project: &StackProject) -> String {
    project.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'epsm-ops-backup-%'",
    )
}

#[tokio::test]
async fn a_full_disk_a_killed_database_or_console_leave_no_file_and_the_command_line_and_schedule_back_up()
 {
    let project = StackProject::new("epsmbackfail");
    // ~120 MB of barely compressible rows: the dump takes seconds and outgrows the tmpfs.
    project.database_only_with_rows(1_500_000);
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(dir.path(), "1m");
    let dir_text = dir.path().display().to_string();
    let mut console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        &[("EPSM_OPS_BACKUPS_DIR", dir_text.as_str())],
    )
    .await;

    // A full disk: a clear failure, no file (partial or whole), and pg_dump's session ended.
    let (status, body) = console.call("backup_start", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot write the backup to") && body.contains("No space left on device"),
        "{body}"
    );
    assert_eq!(files(dir.path()), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while dump_sessions(&project) != "0" {
        assert!(
            Instant::now() < deadline,
            "pg_dump still connected after the failure"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The database killed mid-dump (progress seen first): no success, no file.
    tmpfs.resize("1g");
    let reply = start_and_watch_progress(&console).await;
    let out = Command::new("docker")
        .args(["kill", &format!("{}-database-1", project.name)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (status, body) = reply.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failed"), "{body}");
    assert_eq!(files(dir.path()), Vec::<String>::new());
    let (_, list) = console.call("backup_list", &[]).await;
    let list = backups(&list);
    assert_eq!(list[0].outcome, BackupOutcome::Failed, "{list:?}");
    assert_eq!(list[0].size_bytes, None, "a failed backup has no size");

    // The browser gone mid-dump (its request dropped, as a closed tab or a proxy's timeout does): the
    // backup belongs to the console, not to the request, and ends on its own.
    project.up_wait(&["database"]);
    let reply = start_and_watch_progress(&console).await;
    // Meanwhile a second click is refused, naming the running backup.
    let (status, body) = console.call("backup_start", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is running"), "{body}");
    reply.abort();
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let (_, list) = console.call("backup_list", &[]).await;
        let newest = backups(&list).remove(0);
        if newest.outcome != BackupOutcome::Running {
            break newest;
        }
        assert!(Instant::now() < deadline, "still running: {newest:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        finished.outcome,
        BackupOutcome::Succeeded,
        "{}",
        finished.reason
    );
    let finished_file = finished.file_name.clone().unwrap();
    assert_eq!(files(dir.path()), vec![finished_file.clone()]);

    // The console killed mid-dump: the next start (here the command line) marks that backup failed,
    // removes its partial file, and backs up.
    let _reply = start_and_watch_progress(&console).await;
    console.kill();
    let partial = |dir: &Path| {
        files(dir)
            .into_iter()
            .filter(|f| f.starts_with(".partial-"))
            .count()
    };
    assert_eq!(partial(dir.path()), 1, "the partial file is there");
    let out = console.run(&["backup", "--format", "plain"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("backup #") && said.contains("sha256"),
        "{said}"
    );
    let mut console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        &[
            ("EPSM_OPS_BACKUPS_DIR", dir_text.as_str()),
            ("EPSM_OPS_DATA_DIR", console.data_path().to_str().unwrap()),
        ],
    )
    .await;
    let (_, list) = console.call("backup_list", &[]).await;
    let list = backups(&list);
    let (cli, interrupted) = (&list[0], &list[1]);
    assert_eq!(cli.outcome, BackupOutcome::Succeeded, "{list:?}");
    assert!(cli.actor.starts_with("command line ("), "{}", cli.actor);
    assert_eq!(interrupted.outcome, BackupOutcome::Failed);
    assert!(
        interrupted.reason.contains("interrupted"),
        "{}",
        interrupted.reason
    );
    let mut expected = vec![cli.file_name.clone().unwrap(), finished_file];
    let mut found = files(dir.path());
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    console.stop();

    // The schedule: a backup every 2 s (six-field cron, seconds first), recorded as "schedule (...)".
    project.psql("epsm_db", "DROP TABLE big");
    let console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        &[
            ("EPSM_OPS_BACKUPS_DIR", dir_text.as_str()),
            ("EPSM_OPS_BACKUPS_SCHEDULE", "*/2 * * * * *"),
        ],
    )
    .await;
    let (_, policy) = console.call("backup_policy", &[]).await;
    assert!(
        policy.contains("*/2 * * * * *") && policy.contains("next_run"),
        "{policy}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = console.call("backup_list", &[]).await;
        if backups(&list)
            .iter()
            .any(|b| b.actor.starts_with("schedule (") && b.outcome == BackupOutcome::Succeeded)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled backup: {list}\n{}",
            console.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(console);
    drop(tmpfs);
}

#[tokio::test]
async fn a_backup_restores_with_the_same_tables_downloads_intact_and_a_stopped_database_leaves_no_file()
 {
    let project = StackProject::new("epsmbackup");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    project.manage(&["migrate", "--noinput"]);
    project.manage(&["seed"]);
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
    // A dump is the console's alone, in a directory that is too.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
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
    let reply = console.client().get(&url).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["cache-control"], "no-store");
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
    let ranged = console
        .client()
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

    // Deleting by hand needs the file name typed; a refusal is audited too.
    let id = plain.id.to_string();
    let (status, body) = console
        .call("backup_delete", &[("id", &id), ("confirm", "yes")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("type the file name"), "{body}");
    assert_eq!(files(&dir), vec![plain.file_name.clone().unwrap()]);
    let (status, body) = console
        .call(
            "backup_delete",
            &[
                ("id", &id),
                ("confirm", plain.file_name.as_deref().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(files(&dir), Vec::<String>::new());
    let (status, _) = console
        .call("backup_delete", &[("id", &id), ("confirm", "x")])
        .await;
    assert_eq!(status, 404, "a deleted backup is not deleted twice");

    let (_, audit) = console.call("audit_log", &[]).await;
    assert!(
        audit.contains("backup.create") && audit.contains("backup.download"),
        "{audit}"
    );
    assert!(
        audit.contains("the file name was not typed") && audit.contains("deleted by hand"),
        "{audit}"
    );
    assert!(audit.contains("bytes=10-99"), "{audit}");
    for secret in stack_secrets() {
        assert!(!console.log().contains(&secret) && !audit.contains(&secret));
    }
}

/// The newest backups once none of them has a copy still running. Small files over loopback, and a
/// stopped server refuses at once: nothing to wait for but the machine.
async fn after_copies(console: &Console) -> Vec<Backup> {
    let deadline = Instant::now() + end2end::with_margin(Duration::ZERO);
    loop {
        let (_, list) = console.call("backup_list", &[]).await;
        let list = backups(&list);
        if list
            .iter()
            .all(|b| b.copy.as_ref().is_none_or(|c| c.ok.is_some()))
        {
            return list;
        }
        assert!(Instant::now() < deadline, "a copy still runs: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_backup_is_copied_off_site_and_checked_there_and_a_dead_remote_is_said() {
    let mut sftp = end2end::sftp::SftpServer::start();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("rclone.conf");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&conf)
            .unwrap();
        file.write_all(sftp.rclone_config("offsite").as_bytes())
            .unwrap();
    }
    let target = format!("offsite:{}", sftp.store().display());
    let project = StackProject::new("epsmoffsite");
    project.database_only_with_rows(10_000);
    let env = [
        ("EPSM_OPS_BACKUPS_COPY_TO", target.as_str()),
        ("EPSM_OPS_BACKUPS_RCLONE_CONFIG", conf.to_str().unwrap()),
        ("EPSM_OPS_BACKUPS_KEEP_LAST", "1"),
    ];
    let console =
        Console::for_stack(Path::new(env!("CARGO_BIN_EXE_epsm-ops")), &project, &env).await;

    // Copied, and checked there: the same bytes on the SFTP server.
    let (status, body) = console.call("backup_start", &[]).await;
    assert_eq!(status, 200, "{body}");
    let first = after_copies(&console).await.remove(0);
    let copy = first.copy.clone().expect("a copy");
    assert_eq!(copy.ok, Some(true), "{}", copy.detail);
    let name = first.file_name.clone().unwrap();
    assert_eq!(
        copy.detail,
        format!("copied to {target}/{name}; its size and sha1 checked there")
    );
    let remote = std::fs::read(sftp.store().join(&name)).unwrap();
    assert_eq!(
        Some(hex::encode(Sha256::digest(&remote))),
        first.sha256.clone()
    );

    // The next one too; retention (keep the last 1) deletes the first here and there.
    console.call("backup_start", &[]).await;
    let second = after_copies(&console).await.remove(0);
    assert_eq!(second.copy.as_ref().and_then(|c| c.ok), Some(true));
    let second_name = second.file_name.clone().unwrap();
    assert_eq!(sftp.stored(), vec![second_name.clone()]);

    // The remote gone: the backup is kept here, its copy failed with the reason, the Overview says so.
    sftp.stop();
    console.call("backup_start", &[]).await;
    let third = after_copies(&console).await.remove(0);
    assert_eq!(third.outcome, BackupOutcome::Succeeded);
    let copy = third.copy.clone().unwrap();
    assert_eq!(copy.ok, Some(false));
    assert!(
        copy.detail.contains("failed") && copy.detail.contains("connection refused"),
        "{}",
        copy.detail
    );
    let (_, overview) = console.call("overview", &[]).await;
    let overview: serde_json::Value = serde_json::from_str(&overview).unwrap();
    assert_eq!(overview["last_copy"][0], third.id, "{overview}");
    assert_eq!(overview["last_copy"][1]["ok"], false, "{overview}");
    // Retention could not delete the second's copy there: it stays, and the audit log says so.
    assert_eq!(sftp.stored(), vec![second_name]);
    let (_, audit) = console
        .call("audit_log", &[("action", "backup.delete")])
        .await;
    assert!(audit.contains("its off-site copy stays"), "{audit}");
    let (_, audit) = console
        .call("audit_log", &[("action", "backup.copy")])
        .await;
    assert!(audit.contains("\"outcome\":\"Failed\""), "{audit}");

    // The command line waits for the copy and fails when it failed.
    let out = console.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("its off-site copy failed"), "{said}");
    sftp.resume();
    let out = console.run(&["backup"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("checked there"), "{said}");

    // rclone's configuration holds the credentials: open to others, the console does not start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = console.run(&["backup"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("rclone.conf is open to other local users"),
        "{said}"
    );
}
