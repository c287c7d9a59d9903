//! Restores against the real engine and a private EPSM-like stack, through the real server and the
//! command line: a backup brings back rows that were changed and deleted since, after a safety backup,
//! with every service healthy again; a truncated dump fails at the restore step and leaves the
//! database as it was, with the writers running again; a restore and a deploy (or a backup) never run
//! at once, and the refusal names the one that runs. A restore drill brings the newest backup back in
//! a scratch container with the row counts recorded at the backup, leaves nothing behind, and fails
//! with the reason on a corrupt file; the drill schedule runs on its own.

use std::path::Path;
use std::time::Duration;

use app::backup::{Backup, BackupOutcome};
use app::deploy::{DeployOutcome, StepStatus};
use end2end::{Console, StackProject};

mod runs;
use runs::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// Exact row counts of the stack's own tables (a restore must bring back every row).
fn counts(project: &StackProject) -> String {
    project.psql(
        "epsm_db",
        "SELECT (SELECT count(*) FROM simulations_building) || ',' || \
                (SELECT count(*) FROM simulations_simulation) || ',' || \
                (SELECT count(*) FROM django_migrations)",
    )
}

/// The first seeded building's name: a known row.
fn known_row(project: &StackProject) -> String {
    project.psql(
        "epsm_db",
        "SELECT name FROM simulations_building ORDER BY id LIMIT 1",
    )
}

/// Writes after the backup: rows deleted, one added.
fn change_data(project: &StackProject, known: &str) {
    project.psql(
        "epsm_db",
        &format!(
            "DELETE FROM simulations_simulation; \
             DELETE FROM simulations_building WHERE name = '{known}'; \
             INSERT INTO simulations_building (name, floor_area_m2) VALUES ('after the backup', 1)"
        ),
    );
}

async fn backup_now(console: &Console, format: &str) -> Backup {
    let (status, body) = console.call("backup_start", &[("format", format)]).await;
    assert_eq!(status, 200, "{body}");
    let backup: Backup = serde_json::from_str(&body).unwrap();
    assert_eq!(
        backup.outcome,
        BackupOutcome::Succeeded,
        "{}",
        backup.reason
    );
    backup
}

async fn backups(console: &Console) -> Vec<Backup> {
    let (_, list) = console.call("backup_list", &[]).await;
    serde_json::from_str(&list).unwrap()
}

fn health_of(project: &StackProject, service: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &format!("{}-{service}-1", project.name),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_restore_brings_back_changed_and_deleted_rows_and_never_runs_beside_a_deploy_or_backup() {
    let project = StackProject::new("epsmrestore");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    project.manage(&["migrate", "--noinput"]);
    project.manage(&["seed"]);
    let console = Console::for_stack(bin(), &project, &[]).await;
    let backup = backup_now(&console, "Custom").await;
    let original = counts(&project);
    let known = known_row(&project);
    assert!(
        !known.is_empty() && original.starts_with("3,"),
        "{original}"
    );
    change_data(&project, &known);
    assert_ne!(counts(&project), original);
    let id = backup.id.to_string();

    // The database name must be typed; a refusal is audited.
    let (status, body) = console
        .call("backup_restore", &[("id", &id), ("confirm", "epsmrestore")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("type the database name (epsm_db)"), "{body}");

    // Not while a deploy runs: the refusal names it.
    let deploy = start(&console, &[("options[no_pull]", "true")]).await;
    let (status, body) = console
        .call("backup_restore", &[("id", &id), ("confirm", "epsm_db")])
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("deploy #{deploy} started by")),
        "{body}"
    );
    let (outcome, _, _) = cancel_to_end(&console, deploy).await;
    assert_eq!(outcome, DeployOutcome::Cancelled);

    // A simulation runs: the restore's drain waits for it, and meanwhile no deploy or backup starts.
    let long_run = Duration::from_secs(15);
    project
        .start_simulation("during-the-restore", long_run.as_secs())
        .await;
    let (status, body) = console
        .call("backup_restore", &[("id", &id), ("confirm", " epsm_db ")])
        .await;
    assert_eq!(status, 200, "{body}");
    let restore: i64 = body.parse().unwrap();
    until_step_runs(&console, restore, "drain tasks").await;
    let (status, body) = console.call("deploy_start", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("restore #{restore} started by")),
        "{body}"
    );
    let (status, body) = console.call("backup_start", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&format!("restore #{restore}")), "{body}");

    let (_, events) = follow_to_end(&console, restore).await;
    let log = lines(&events);
    let done = runs::deploy(&console, restore).await;
    assert_eq!(
        done.outcome,
        DeployOutcome::Succeeded,
        "{}\n{log}",
        done.summary
    );
    let statuses: Vec<(&str, StepStatus)> = done
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert!(
        statuses
            .iter()
            .all(|(name, s)| *s == StepStatus::Succeeded || *name == "migrate"),
        "{statuses:?}"
    );
    assert!(
        log.contains(&format!("backup #{} (", backup.id)) && log.contains("as recorded"),
        "{log}"
    );
    assert!(
        log.contains("everything written to the database since is lost"),
        "{log}"
    );

    // The data is back: the counts, the deleted row, and nothing written since.
    assert_eq!(counts(&project), original);
    assert_eq!(known_row(&project), known);
    assert_eq!(
        project.psql(
            "epsm_db",
            "SELECT count(*) FROM simulations_building WHERE name = 'after the backup'"
        ),
        "0"
    );
    // The safety backup holds what was there before, and the writers run healthy again.
    let safety = backups(&console)
        .await
        .into_iter()
        .find(|b| b.actor == format!("restore #{restore}"))
        .expect("a safety backup");
    assert_eq!(
        safety.outcome,
        BackupOutcome::Succeeded,
        "{}",
        safety.reason
    );
    assert!(log.contains(&format!("backup #{}:", safety.id)), "{log}");
    for service in ["backend", "celery_worker", "celery_beat"] {
        let state = health_of(&project, service);
        assert!(state.starts_with("running"), "{service}: {state}");
        assert!(!state.contains("unhealthy"), "{service}: {state}");
    }
    // The drain let the simulation finish before the worker stopped; its row, written after the
    // backup, is gone with the rest of what was written since.
    assert!(
        log.lines()
            .any(|l| l.starts_with("waiting for ") && l.contains("simulations.tasks.simulate["))
            && log.contains("the worker is drained"),
        "{log}"
    );
    assert_eq!(project.simulation_status("during-the-restore"), "");

    // In the audit log: who asked, refused and done.
    assert_audited(
        &console,
        &[
            ("restore.start", "refused"),
            ("restore.start", "ok"),
            ("restore.finish", "ok"),
            ("deploy.start", "refused"),
            ("backup.create", "refused"),
        ],
    )
    .await;

    // A truncated dump, from the command line: it fails at the restore step, the database is as it
    // was, the writers run again, and the history says both.
    change_data(&project, &known);
    let changed = counts(&project);
    let whole = std::fs::read(
        console
            .data_path()
            .join("backups")
            .join(backup.file_name.as_deref().unwrap()),
    )
    .unwrap();
    let truncated = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(truncated.path(), &whole[..whole.len() * 2 / 3]).unwrap();
    let out = console.run(&["restore", truncated.path().to_str().unwrap(), "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("failed at step restore: pg_restore exited 1"),
        "{said}"
    );
    assert!(said.contains("the database is as it was"), "{said}");
    assert!(
        said.contains("backend, celery_worker, celery_beat were started again"),
        "{said}"
    );
    assert_eq!(
        counts(&project),
        changed,
        "nothing of the truncated dump stays"
    );
    for service in ["backend", "celery_worker", "celery_beat", "nginx"] {
        let state = health_of(&project, service);
        assert!(state.starts_with("running"), "{service}: {state}");
    }
    let (_, list) = console.call("deploy_list", &[]).await;
    let history: Vec<app::deploy::Deploy> = serde_json::from_str(&list).unwrap();
    let failed = &history[0];
    assert_eq!(failed.outcome, DeployOutcome::Failed);
    assert!(
        failed.actor.starts_with("command line ("),
        "{}",
        failed.actor
    );
    assert!(
        failed.summary.contains("the database is as it was"),
        "{}",
        failed.summary
    );

    // A plain SQL backup, restored by id from the command line.
    let plain = backup_now(&console, "Plain").await;
    project.psql(
        "epsm_db",
        "DELETE FROM simulations_building WHERE name = 'after the backup'",
    );
    assert_ne!(counts(&project), changed);
    let out = console.run(&["restore", &plain.id.to_string(), "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("restore #")
            && said.contains(" succeeded: restored the database from backup #"),
        "{said}"
    );
    assert_eq!(counts(&project), changed, "as it was at the plain backup");
}

/// The console's drill containers (running or not) and the engine's anonymous volumes, as `docker`
/// lists them.
fn scratch_left(project: &StackProject) -> (String, Vec<String>) {
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let containers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=epsm-ops.drill={}", project.name),
    ]);
    // Anonymous volumes only (64 hex digits): other tests' stacks come and go with named ones.
    let mut volumes: Vec<String> = docker(&["volume", "ls", "-q"])
        .lines()
        .filter(|v| v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()))
        .map(String::from)
        .collect();
    volumes.sort();
    (containers, volumes)
}

/// "Test restore" from the page, followed in the list until the drill ends; the drilled backup. The
/// scratch server starts as the database service does (its image and data): its settle bound.
async fn drill(console: &Console, project: &StackProject) -> Backup {
    let (status, body) = console.call("backup_drill", &[]).await;
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Backup>(&body).unwrap().id;
    let deadline = std::time::Instant::now() + project.settle_bound(&["database"]);
    loop {
        let backup = backups(console)
            .await
            .into_iter()
            .find(|b| b.id == id)
            .unwrap();
        if backup.drill.as_ref().is_some_and(|d| d.ok.is_some()) {
            return backup;
        }
        assert!(std::time::Instant::now() < deadline, "{backup:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_drill_restores_the_newest_backup_into_a_scratch_database_that_is_gone_afterwards() {
    let project = StackProject::new("epsmdrill");
    project.database_only_with_rows(50_000);
    project.psql("epsm_db", "CREATE TABLE small AS SELECT 1 AS one");
    let mut console = Console::for_stack(bin(), &project, &[]).await;
    let (_, before) = scratch_left(&project);
    let backup = backup_now(&console, "Custom").await;
    assert_eq!(backup.tables_recorded, Some(2), "big and small: {backup:?}");

    // A good backup: restored, its two tables with their rows as recorded; nothing left behind.
    let drilled = drill(&console, &project).await;
    assert_eq!(drilled.id, backup.id);
    let found = drilled.drill.unwrap();
    assert_eq!(found.ok, Some(true), "{}", found.detail);
    assert!(
        found
            .detail
            .contains("2 tables with their rows as recorded (2 counted exactly"),
        "{}",
        found.detail
    );
    assert_eq!(scratch_left(&project), (String::new(), before.clone()));
    assert_audited(&console, &[("backup.drill", "ok")]).await;

    // The live database was not touched by it.
    assert_eq!(project.psql("epsm_db", "SELECT count(*) FROM big"), "50000");

    // A corrupt file (truncated on disk): the drill fails and says why; the Overview shows it.
    let file = console
        .data_path()
        .join("backups")
        .join(backup.file_name.as_deref().unwrap());
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    let found = drill(&console, &project).await.drill.unwrap();
    assert_eq!(found.ok, Some(false));
    assert!(
        found
            .detail
            .contains("the file is not the one backed up: its sha256 is"),
        "{}",
        found.detail
    );
    assert_eq!(scratch_left(&project), (String::new(), before.clone()));
    let (_, overview) = console.call("overview", &[]).await;
    let overview: serde_json::Value = serde_json::from_str(&overview).unwrap();
    assert_eq!(overview["last_drill"][0], backup.id, "{overview}");
    assert_eq!(overview["last_drill"][1]["ok"], false, "{overview}");

    // The schedule drills on its own, recorded as "drill schedule (...)".
    std::fs::write(&file, &whole).unwrap();
    let data = console.data_path();
    console.stop();
    let console = Console::for_stack(
        bin(),
        &project,
        &[
            ("EPSM_OPS_DATA_DIR", data.to_str().unwrap()),
            ("EPSM_OPS_BACKUPS_DRILL_SCHEDULE", "*/2 * * * * *"),
        ],
    )
    .await;
    // The schedule fires within its 2 s, then a drill as above.
    let deadline = std::time::Instant::now() + project.settle_bound(&["database"]);
    loop {
        let (_, audit) = console
            .call("audit_log", &[("action", "backup.drill")])
            .await;
        if audit.contains("drill schedule (*/2 * * * * *)") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{audit}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const REMOVE_CREATED_AT: &str = r#"from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("simulations", "0002_failure_switch")]
    operations = [migrations.RemoveField(model_name="simulation", name="created_at")]
"#;

/// Whether `simulations_simulation` has its `created_at` column.
fn has_created_at(project: &StackProject) -> bool {
    project.psql(
        "epsm_db",
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'simulations_simulation' AND column_name = 'created_at'",
    ) == "1"
}

async fn run_to_end(console: &Console, id: i64) -> app::deploy::Deploy {
    let (_, events) = follow_to_end(console, id).await;
    let d = runs::deploy(console, id).await;
    assert_eq!(
        d.outcome,
        DeployOutcome::Succeeded,
        "{}\n{}",
        d.summary,
        lines(&events)
    );
    d
}

#[tokio::test]
async fn undoing_a_deploy_with_its_data_brings_back_a_dropped_column_and_its_values() {
    let project = StackProject::new("epsmundo");
    let console = Console::for_stack(bin(), &project, &[]).await;
    let first = start(&console, &[("options[no_pull]", "true")]).await;
    let first = run_to_end(&console, first).await;
    project.psql(
        "epsm_db",
        "INSERT INTO simulations_simulation (building_id, name, status, created_at) \
         VALUES ((SELECT min(id) FROM simulations_building), 'kept', 'finished', \
                 '2026-01-02 03:04:05+00')",
    );

    // A deploy that drops Simulation.created_at, backing up first.
    let models = std::fs::read_to_string(
        end2end::repo_root().join("stack/backend/app/simulations/models.py"),
    )
    .unwrap()
    .replace(
        "    created_at = models.DateTimeField(auto_now_add=True)\n",
        "",
    );
    project.push_to_origin(
        &[
            ("backend/app/simulations/models.py", Some(&models)),
            (
                "backend/app/simulations/migrations/0003_remove_simulation_created_at.py",
                Some(REMOVE_CREATED_AT),
            ),
        ],
        "Drop Simulation.created_at",
    );
    let second = start(
        &console,
        &[
            ("options[no_pull]", "true"),
            ("options[skip_seed]", "true"),
            ("options[backup_first]", "true"),
        ],
    )
    .await;
    run_to_end(&console, second).await;
    assert!(!has_created_at(&project), "the migration dropped it");

    // The undo offers the images before it and the backup it took.
    let id = second.to_string();
    let (status, body) = console.call("deploy_undo_choices", &[("id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    let choices: app::deploy::undo::UndoChoices = serde_json::from_str(&body).unwrap();
    assert_eq!(choices.previous, Some(first.id));
    let backup = choices.backup.expect("the backup deploy #2 took first");
    assert_eq!(backup.actor, format!("deploy #{second}"));
    let (status, body) = console
        .call(
            "deploy_undo",
            &[("id", &id), ("with_data", "true"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("type the database name (epsm_db)"), "{body}");

    // Images and data of before: the column is back with its value, and the backend runs the
    // first deploy's image.
    let (status, body) = console
        .call(
            "deploy_undo",
            &[("id", &id), ("with_data", "true"), ("confirm", "epsm_db")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let undo = run_to_end(&console, body.parse().unwrap()).await;
    assert_eq!(
        undo.options.describe(),
        format!(
            "rollback to the images of deploy #{} and the database of backup #{} (no build)",
            first.id, backup.id
        )
    );
    assert!(has_created_at(&project));
    assert_eq!(
        project.psql(
            "epsm_db",
            "SELECT created_at AT TIME ZONE 'UTC' FROM simulations_simulation WHERE name = 'kept'"
        ),
        "2026-01-02 03:04:05"
    );
    let image = |d: &app::deploy::Deploy| {
        d.images
            .iter()
            .find(|(service, _)| service == "backend")
            .map(|(_, image)| image.clone())
    };
    assert_eq!(image(&undo), image(&first));
    assert_ne!(image(&undo), None);
}
