//! One-click deploys against the real engine and a private copy of the EPSM-like stack, through the
//! real server: the whole procedure ends green, a build broken by the engine's prune race is built
//! again, a failing migration fails at migrate with its output, one deploy at a time, a killed server's
//! deploy is interrupted and the lock freed, cancel stops a build.

use std::path::Path;
use std::time::Duration;

use app::compose::process::KILL_GRACE;
use app::deploy::{Deploy, DeployEvent, DeployOutcome, StepStatus};
use app::engine::NameSource;
use app::health::Verdict;
use end2end::{Console, StackProject, stack_secrets, with_margin};

mod runs;
use runs::*;

/// One deploy at a time on this 2-core machine: three builds at once would measure the machine.
static ONE_STACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

#[tokio::test]
async fn a_full_deploy_ends_green_with_every_step_recorded_and_a_second_is_refused() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmdeploy");
    let console = Console::for_stack(bin(), &project, &[]).await;
    let id = start(&console, &[]).await;

    // A second click while it runs is told which deploy runs and by whom.
    let (status, body) = console.call("deploy_start", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&format!("deploy #{id} started by")), "{body}");
    assert!(body.contains("is running"), "{body}");

    let (raw, events) = follow_to_end(&console, id).await;
    let log = lines(&events);
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => {
            assert_eq!(*outcome, DeployOutcome::Succeeded, "{summary}\n{log}")
        }
        other => panic!("no end: {other:?}"),
    }
    assert!(
        log.contains("$ docker compose build --no-cache --pull"),
        "{log}"
    );
    assert!(
        log.contains("$ exec backend python manage.py migrate --noinput"),
        "{log}"
    );
    assert!(log.contains("nginx: healthy (HTTP 200"), "{log}");
    assert!(
        log.contains("frontend: running (no healthcheck, no probe)"),
        "{log}"
    );

    let d = deploy(&console, id).await;
    assert_eq!(d.outcome, DeployOutcome::Succeeded);
    assert_eq!(d.steps.len(), 17, "{:?}", d.steps);
    let not_run: Vec<&str> = d
        .steps
        .iter()
        .filter(|s| s.status != StepStatus::Succeeded)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        not_run,
        ["back up database", "pull images"],
        "only the option not chosen is skipped, and the pull with nothing to pull"
    );
    assert!(
        log.contains("no service runs a registry image: nothing to pull"),
        "{log}"
    );
    let skipped = |s: &&app::deploy::DeployStep| s.status == StepStatus::Skipped;
    assert!(
        d.steps
            .iter()
            .filter(|s| !skipped(s))
            .all(|s| s.duration_ms.is_some())
    );
    assert_eq!(d.images.len(), 7, "{:?}", d.images);
    assert!(d.env_sha256.as_deref().is_some_and(|h| h.len() == 64));

    // A reload joins a finished deploy and sees the whole log.
    let (_, again) = follow_to_end(&console, id).await;
    assert_eq!(lines(&again), log);

    assert_audited(
        &console,
        &[
            ("deploy.start", "ok"),
            ("deploy.start", "refused"),
            ("deploy.finish", "ok"),
        ],
    )
    .await;
    for secret in stack_secrets() {
        assert!(!raw.contains(&secret), "the deploy stream carries a secret");
        assert!(
            !console.log().contains(&secret),
            "the server log carries a secret"
        );
    }
}

/// A docker CLI whose first `build` fails the way BuildKit does when a prune beside it removed a cache
/// record it was about to use (moby/buildkit#3959; seen when two deploys share an engine); every other
/// call, and every later build, is the real CLI's.
fn cli_with_one_prune_race(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let cli = dir.join("docker");
    let once = dir.join("raced");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\n\
             if [ ! -e '{once}' ] && printf '%s\\n' \"$@\" | grep -qx build; then\n\
             \x20 : > '{once}'\n\
             \x20 echo '#10 ERROR: failed to get dead record hh1pnk16bb02h080ljyi5qglp: not found' >&2\n\
             \x20 exit 17\n\
             fi\n\
             exec docker \"$@\"\n",
            once = once.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    cli
}

#[tokio::test]
async fn a_build_broken_by_the_engines_prune_race_builds_again_and_a_failing_migration_fails_at_migrate()
 {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmmigrate");
    project.set_env("EPSM_FAILURE", "migrate");
    let bin_dir = tempfile::tempdir().unwrap();
    let cli = cli_with_one_prune_race(bin_dir.path());
    let console = Console::for_stack(
        bin(),
        &project,
        &[("EPSM_OPS_DOCKER_CLI", cli.to_str().unwrap())],
    )
    .await;
    let id = start(
        &console,
        &[("options[skip_seed]", "true"), ("options[no_pull]", "true")],
    )
    .await;
    let (_, events) = follow_to_end(&console, id).await;
    let log = lines(&events);
    assert!(
        log.contains("EPSM_FAILURE=migrate: migration simulations.0002 fails on purpose"),
        "{log}"
    );
    assert!(!log.contains("--pull"), "no pull: {log}");
    let d = deploy(&console, id).await;
    assert_eq!(d.outcome, DeployOutcome::Failed);
    assert!(
        d.summary.starts_with("failed at step migrate: "),
        "{}",
        d.summary
    );
    let status = |name: &str| d.steps.iter().find(|s| s.name == name).unwrap().status;
    // The engine's race is said, and the build run once more, to its end.
    let race = "failed to get dead record hh1pnk16bb02h080ljyi5qglp: not found";
    let again = "(a BuildKit race, moby/buildkit#3959), not to the code: building once more";
    assert!(log.contains(race) && log.contains(again), "{log}");
    assert!(
        log.find(again) < log.rfind("$ docker compose build --no-cache"),
        "built again after the race: {log}"
    );
    assert_eq!(status("build"), StepStatus::Succeeded);
    assert_eq!(status("up"), StepStatus::Succeeded);
    assert_eq!(status("migrate"), StepStatus::Failed);
    assert_eq!(status("seed"), StepStatus::Skipped);
    assert_eq!(status("collectstatic"), StepStatus::Pending);
    assert_eq!(status("verify"), StepStatus::Pending);
    assert!(
        d.steps
            .iter()
            .find(|s| s.name == "migrate")
            .unwrap()
            .exit_code
            .is_some_and(|c| c != 0)
    );
}

#[tokio::test]
async fn a_build_that_fails_leaves_the_running_version_serving() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmbuildfail");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let containers = || project.compose_ok(&["ps", "--quiet"]).stdout;
    let before = containers();
    let console = Console::for_stack(bin(), &project, &[]).await;
    let broken =
        stack_file("backend/Dockerfile") + "RUN echo 'a build step that fails' && exit 3\n";
    project.push_to_origin(
        &[("backend/Dockerfile", Some(&broken))],
        "Break the backend's build",
    );
    let (id, outcome, summary, log) = deploy_to_end(
        &console,
        &[("options[no_pull]", "true"), ("options[skip_seed]", "true")],
    )
    .await;
    assert_eq!(outcome, DeployOutcome::Failed, "{log}");
    assert!(summary.starts_with("failed at step build: "), "{summary}");
    assert!(
        summary.ends_with("(nothing was stopped: the running version still serves)"),
        "{summary}"
    );
    assert!(log.contains("a build step that fails"), "{log}");
    let d = deploy(&console, id).await;
    let status = |name: &str| d.steps.iter().find(|s| s.name == name).unwrap().status;
    assert_eq!(status("build"), StepStatus::Failed);
    assert_eq!(status("down"), StepStatus::Pending, "the switch never came");
    // The same containers run, and EPSM answers through nginx as before.
    assert_eq!(containers(), before);
    assert_eq!(running_containers(&project), 7);
    let health = reqwest::get(format!("http://127.0.0.1:{}/health/", project.nginx_port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_killed_server_leaves_an_interrupted_deploy_and_cancel_stops_a_build() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmkill");
    // Builds take about a second; this one lasts until the test ends it.
    project.set_env("EPSM_FAILURE", "slow-build");
    let mut first = Console::for_stack(bin(), &project, &[]).await;
    let id = start(&first, &[("options[no_pull]", "true")]).await;
    until_step_runs(&first, id, "build").await;
    first.kill();

    // A new server on the same store: the deploy is interrupted, the compose build it left is
    // stopped, and a new deploy may start.
    let data = first.data_path().display().to_string();
    let second = Console::for_stack(bin(), &project, &[("EPSM_OPS_DATA_DIR", &data)]).await;
    let d = deploy(&second, id).await;
    assert_eq!(d.outcome, DeployOutcome::Interrupted);
    assert!(
        second.log().contains("marked interrupted"),
        "{}",
        second.log()
    );
    let next = start(&second, &[("options[no_pull]", "true")]).await;
    assert_eq!(next, id + 1);

    // Cancel while it builds: the build process tree goes, the deploy is cancelled.
    until_step_runs(&second, next, "build").await;
    let (outcome, summary, events) = cancel_to_end(&second, next).await;
    assert_eq!(outcome, DeployOutcome::Cancelled);
    assert!(summary.starts_with("cancelled at step build"), "{summary}");
    // The step heard the cancel itself and waited for compose to end before it said so.
    assert!(
        lines(&events)
            .contains("cancelled: compose and the processes it started were stopped; it ended"),
        "{}",
        lines(&events)
    );
    let d = deploy(&second, next).await;
    assert_eq!(
        d.steps.iter().find(|s| s.name == "build").unwrap().status,
        StepStatus::Cancelled
    );
    // No compose command of this project is left running once the group's SIGKILL is due (it waits
    // KILL_GRACE after SIGTERM).
    let deadline = std::time::Instant::now() + with_margin(KILL_GRACE);
    loop {
        let left = std::process::Command::new("pgrep")
            .args(["-f", &format!("compose.*-p {}", project.name)])
            .output()
            .unwrap();
        if left.stdout.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = second
        .call("deploy_cancel", &[("id", &next.to_string())])
        .await;
    assert_eq!(status, 400, "cancelling a finished deploy: {body}");
}

#[tokio::test]
async fn a_rollback_brings_back_the_images_of_an_earlier_deploy_without_building() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmrollback");
    let console =
        Console::for_stack(bin(), &project, &[("EPSM_OPS_DEPLOY_KEEP_IMAGES", "2")]).await;
    let no_pull = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = start(&console, &no_pull).await;
        follow_to_end(&console, id).await;
        let d = deploy(&console, id).await;
        assert_eq!(d.outcome, DeployOutcome::Succeeded, "{}", d.summary);
        ids.push(d);
    }
    let (first, second, third) = (&ids[0], &ids[1], &ids[2]);
    // Every build is from scratch (--no-cache): each deploy has images of its own.
    assert_ne!(second.images, third.images);

    // Only the last two are kept: the first can no longer be brought back, and says why.
    let (status, body) = console
        .call("deploy_rollback", &[("id", &first.id.to_string())])
        .await;
    assert_eq!(status, 200, "{body}");
    let refused: i64 = body.parse().unwrap();
    let (_, events) = follow_to_end(&console, refused).await;
    let d = deploy(&console, refused).await;
    assert_eq!(d.outcome, DeployOutcome::Failed, "{}", lines(&events));
    assert!(
        d.summary
            .contains("is no longer kept (the last 2 successful deploys are)"),
        "{}",
        d.summary
    );

    // The second comes back: its image ids run again, nothing was built, and the stack is healthy.
    let (status, body) = console
        .call("deploy_rollback", &[("id", &second.id.to_string())])
        .await;
    assert_eq!(status, 200, "{body}");
    let rollback: i64 = body.parse().unwrap();
    let (_, events) = follow_to_end(&console, rollback).await;
    let log = lines(&events);
    let d = deploy(&console, rollback).await;
    assert_eq!(d.outcome, DeployOutcome::Succeeded, "{}\n{log}", d.summary);
    assert_eq!(
        d.images, second.images,
        "the running images are the second deploy's"
    );
    assert!(
        log.contains("$ docker compose up -d --force-recreate --no-build"),
        "{log}"
    );
    assert!(!log.contains("build --no-cache"), "{log}");
    assert!(
        log.contains("does not undo") || log.contains("migrations applied since stay applied"),
        "{log}"
    );
    // It names the commit whose images it brings back, and leaves the files alone.
    let commit = second
        .to_commit
        .as_deref()
        .expect("the deploy checked out a commit");
    assert!(
        log.contains(&format!(
            "bringing back the images of deploy #{} (commit {}); the working tree is left alone",
            second.id,
            &commit[..10]
        )),
        "{log}"
    );
    assert_eq!(d.options.rollback_of, Some(second.id));
}

#[tokio::test]
async fn recreating_volumes_needs_the_project_name_typed_and_really_removes_the_data() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmvolumes");
    let console = Console::for_stack(bin(), &project, &[]).await;
    let quick = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];
    let id = start(&console, &quick).await;
    follow_to_end(&console, id).await;
    assert_eq!(deploy(&console, id).await.outcome, DeployOutcome::Succeeded);
    let psql = |sql: &str| project.psql("epsm_db", sql);
    psql("CREATE TABLE marker (x int)");
    assert_eq!(psql("SELECT to_regclass('marker')"), "marker");

    let mut form = quick.to_vec();
    form.push(("options[recreate_volumes]", "true"));
    let mut wrong = form.clone();
    wrong.push(("confirm", "epsm"));
    let (status, body) = console.call("deploy_start", &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("type the project name ({})", project.name)),
        "{body}"
    );
    assert_eq!(
        psql("SELECT to_regclass('marker')"),
        "marker",
        "nothing happened"
    );

    form.push(("confirm", &project.name));
    // Backed up first: the data about to be deleted is kept in a verified backup.
    form.push(("options[backup_first]", "true"));
    let id = start(&console, &form).await;
    let (_, events) = follow_to_end(&console, id).await;
    let log = lines(&events);
    assert_eq!(
        deploy(&console, id).await.outcome,
        DeployOutcome::Succeeded,
        "{log}"
    );
    assert!(
        log.contains("$ docker compose down --remove-orphans --volumes"),
        "{log}"
    );
    assert!(log.contains("backup #1: epsm_db-"), "{log}");
    let (_, backups) = console.call("backup_list", &[]).await;
    let backups: Vec<app::backup::Backup> = serde_json::from_str(&backups).unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].outcome, app::backup::BackupOutcome::Succeeded);
    assert_eq!(backups[0].actor, format!("deploy #{id}"));
    assert!(
        log.contains("Volume"),
        "compose reports the volumes it removed: {log}"
    );
    assert_eq!(
        psql("SELECT to_regclass('marker')"),
        "",
        "the old database is gone"
    );
    // The migration output came through live, line by line, in the deploy's log.
    assert!(log.contains("Applying simulations.0001"), "{log}");
}

#[tokio::test]
async fn a_stack_started_as_epsms_workflow_leaves_it_is_found_deployed_over_and_guarded_against_a_wrong_name()
 {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    // The host as EPSM's workflow leaves it: COMPOSE_PROJECT_NAME=<x>_prod in the env file, a
    // container_name on every service, started with plain `docker compose` before any console.
    let project = StackProject::real_host_shape("epsmreal");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let dir = project.dir.path().display().to_string();
    let public = format!("http://127.0.0.1:{}/", project.nginx_port);
    let interval = end2end::HEALTH_INTERVAL.as_secs().to_string();
    let found_as = [
        ("EPSM_OPS_PROJECT_DIR", dir.as_str()),
        ("EPSM_OPS_PROJECT_PUBLIC_URL", public.as_str()),
        ("EPSM_OPS_PROJECT_PROFILES", "[\"tools\"]"),
        ("EPSM_OPS_HEALTH_INTERVAL_SECS", interval.as_str()),
    ];

    // A console told another name explains, service by service, and refuses to deploy over it.
    let mut wrong = found_as.to_vec();
    wrong.push(("EPSM_OPS_PROJECT_NAME", "epsmother"));
    let wrong = Console::start(bin(), &wrong).await;
    // The stack is up: two of the console's rounds (probes time out after 10 s) see it.
    let report = health_until(&wrong, with_margin(Duration::from_secs(20)), |r| {
        r.services.len() == 7
            && r.services
                .iter()
                .all(|s| matches!(s.verdict, Verdict::OtherProject { .. }))
    })
    .await;
    let reason = report.service("backend").unwrap().verdict.reason().unwrap();
    assert!(
        reason.starts_with(&format!(
            "running as project {} (container {}); the console looks at project epsmother: set project.name",
            project.name,
            project.container_name("backend")
        )),
        "{reason}"
    );
    assert_eq!(report.project_source, NameSource::Configuration);
    let id = start(&wrong, &[]).await;
    let (_, events) = follow_to_end(&wrong, id).await;
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => {
            assert_eq!(*outcome, DeployOutcome::Failed, "{summary}");
            assert!(summary.starts_with("failed at step preflight"), "{summary}");
            for service in ["database", "backend", "nginx"] {
                assert!(
                    summary.contains(&format!(
                        "its container name {} is taken by container {} of compose project {}",
                        project.container_name(service),
                        project.container_name(service),
                        project.name
                    )),
                    "{service}: {summary}"
                );
            }
            assert!(
                summary.contains(&format!(
                    "host port 127.0.0.1:{}/tcp is published by container {}",
                    project.nginx_port,
                    project.container_name("nginx")
                )),
                "{summary}"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(wrong);
    assert_eq!(
        running_containers(&project),
        7,
        "a refused deploy touches nothing"
    );

    // The console with the default configuration names the project as compose does and sees it all.
    let console = Console::start(bin(), &found_as).await;
    let report = health_until(&console, project.stack_settle_bound(), |r| {
        r.services.len() == 7 && r.services.iter().all(|s| !s.verdict.needs_attention())
    })
    .await;
    assert_eq!(report.project, project.name);
    assert_eq!(report.project_source, NameSource::EnvFile);

    // The registry image of the `tools` profile is pulled before anything stops; with no registry
    // here the pull fails, naming the image, and the stack keeps running.
    let (_, outcome, summary, _) = deploy_to_end(&console, &[("options[skip_seed]", "true")]).await;
    assert_eq!(outcome, DeployOutcome::Failed, "{summary}");
    assert!(
        summary.starts_with(
            "failed at step pull images: pulling nrel/energyplus:23.2.0 (service energyplus) failed"
        ) && summary.ends_with("(nothing was stopped)"),
        "{summary}"
    );
    assert_eq!(running_containers(&project), 7);

    // Its deploy takes the stack over without a name conflict and ends verified.
    let (_, outcome, summary, log) = deploy_to_end(
        &console,
        &[("options[no_pull]", "true"), ("options[skip_seed]", "true")],
    )
    .await;
    assert_eq!(outcome, DeployOutcome::Succeeded, "{summary}\n{log}");
    assert!(
        log.contains(&format!(
            "compose project {} (from COMPOSE_PROJECT_NAME in the env file)",
            project.name
        )),
        "{log}"
    );
    let names = std::process::Command::new("docker")
        .args(["ps", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=com.docker.compose.project={}", project.name))
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    let mut want: Vec<String> = end2end::STACK_SERVICES
        .iter()
        .map(|s| project.container_name(s))
        .collect();
    want.sort();
    assert_eq!(names, want, "the same containers, recreated by the deploy");

    // EPSM's runner keeps its own button: `epsm-ops deploy` writes into the same history.
    let unasked = console.run(&["deploy", "--no-pull"]);
    assert_eq!(unasked.status.code(), Some(2), "{unasked:?}");
    assert!(
        String::from_utf8_lossy(&unasked.stderr).contains("pass --yes"),
        "{unasked:?}"
    );
    let runner = console
        .command(&["deploy", "--yes", "--no-pull", "--skip-seed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + with_margin(Duration::from_secs(10));
    let cli_id = loop {
        let (_, list) = console.call("deploy_list", &[]).await;
        let list: Vec<Deploy> = serde_json::from_str(&list).unwrap();
        if let Some(d) = list.iter().find(|d| d.outcome == DeployOutcome::Running) {
            // The history's rows leave the steps to the deploy's own page.
            assert!(d.steps.is_empty(), "{d:?}");
            let (status, alone) = console
                .call("deploy_get", &[("id", &d.id.to_string())])
                .await;
            assert_eq!(status, 200, "{alone}");
            let alone: Deploy = serde_json::from_str(&alone).unwrap();
            assert!(!alone.steps.is_empty(), "{alone:?}");
            break d.id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deploy running: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One deploy at a time, across processes: a second command and the button are told which runs.
    let second = console.run(&["deploy", "--yes", "--no-pull"]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("deploy #{cli_id} started by command line (")),
        "{said}"
    );
    let (status, body) = console.call("deploy_start", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(&format!("deploy #{cli_id} started by command line (")),
        "{body}"
    );
    // The console's page follows the runner's deploy live, to its end.
    let (_, events) = follow_to_end(&console, cli_id).await;
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => {
            assert_eq!(*outcome, DeployOutcome::Succeeded, "{summary}")
        }
        other => panic!("{other:?}"),
    }
    assert!(lines(&events).contains("nginx: healthy"));
    let out = runner.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("==> verify: succeeded"), "{printed}");
    assert!(
        printed.contains(&format!("deploy #{cli_id} succeeded")),
        "{printed}"
    );
    let d = deploy(&console, cli_id).await;
    assert!(d.actor.starts_with("command line ("), "{}", d.actor);
    assert_eq!(d.steps.len(), 17, "{:?}", d.steps);
}

/// The Django app of the bundled stack, as a developer changes it in the next commit.
fn stack_file(path: &str) -> String {
    std::fs::read_to_string(end2end::repo_root().join("stack").join(path)).unwrap()
}

const REMOVE_CREATED_AT: &str = r#"from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("simulations", "0002_failure_switch")]
    operations = [migrations.RemoveField(model_name="simulation", name="created_at")]
"#;

/// The Deploys page's card for the configured branch (`fetch`: "Check for updates" first).
async fn change_card(console: &Console, fetch: bool) -> app::deploy::changes::ChangeCard {
    let fetch = fetch.to_string();
    let (status, body) = console
        .call("deploy_changes", &[("fetch", fetch.as_str())])
        .await;
    assert_eq!(status, 200, "{body}");
    match serde_json::from_str(&body).unwrap() {
        app::deploy::changes::SourceView::Card(card) => *card,
        other => panic!("no card: {other:?}"),
    }
}

/// Ends a deploy that preflight must refuse: its summary, after checking nothing was stopped.
async fn refused_at_preflight(
    console: &Console,
    project: &StackProject,
    form: &[(&str, &str)],
) -> String {
    let (_, outcome, summary, _) = deploy_to_end(console, form).await;
    assert_eq!(outcome, DeployOutcome::Failed, "{summary}");
    assert!(
        summary.starts_with("failed at step preflight: "),
        "{summary}"
    );
    assert!(summary.ends_with("(nothing was changed)"), "{summary}");
    assert_eq!(
        running_containers(project),
        7,
        "a refused deploy stops nothing: {summary}"
    );
    summary
}

/// Starts a deploy and follows it to its end: its id, outcome, summary and log.
async fn deploy_to_end(
    console: &Console,
    form: &[(&str, &str)],
) -> (i64, DeployOutcome, String, String) {
    let id = start(console, form).await;
    let (_, events) = follow_to_end(console, id).await;
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => {
            (id, *outcome, summary.clone(), lines(&events))
        }
        other => panic!("deploy #{id} has no end: {other:?}"),
    }
}

/// How many of the project's containers run.
fn running_containers(project: &StackProject) -> usize {
    let out = project.compose_ok(&["ps", "--status", "running", "--quiet"]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn a_deploy_brings_what_origin_has_and_refuses_what_would_overwrite_the_servers_files() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmsource");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let console = Console::for_stack(bin(), &project, &[]).await;
    let quick = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];
    let running_before = project.git(&["rev-parse", "HEAD"]);

    // An unknown ref, an unreachable remote: preflight says why, and nothing stops.
    let mut unknown = quick.to_vec();
    unknown.push(("options[git_ref]", "no-such-branch"));
    let summary = refused_at_preflight(&console, &project, &unknown).await;
    assert!(
        summary
            .contains("unknown ref \"no-such-branch\": not a branch of origin, a tag or a commit"),
        "{summary}"
    );
    let origin = project.origin.path().display().to_string();
    project.git(&["remote", "set-url", "origin", "/nonexistent/epsm.git"]);
    let summary = refused_at_preflight(&console, &project, &quick).await;
    assert!(
        summary.contains("cannot fetch from origin: `git fetch")
            && summary.contains("'/nonexistent/epsm.git' does not appear to be a git repository"),
        "{summary}"
    );
    project.git(&["remote", "set-url", "origin", &origin]);

    // A developer merges: /health/ reports a version, and a migration drops a column.
    let views = stack_file("backend/app/simulations/views.py").replace(
        r#"return JsonResponse({"status": "healthy", "database": database})"#,
        r#"return JsonResponse({"status": "healthy", "database": database, "version": "2"})"#,
    );
    assert!(views.contains("\"version\": \"2\""));
    let models = stack_file("backend/app/simulations/models.py").replace(
        "    created_at = models.DateTimeField(auto_now_add=True)\n",
        "",
    );
    let target = project.push_to_origin(
        &[
            ("backend/app/simulations/views.py", Some(&views)),
            ("backend/app/simulations/models.py", Some(&models)),
            (
                "backend/app/simulations/migrations/0003_remove_simulation_created_at.py",
                Some(REMOVE_CREATED_AT),
            ),
        ],
        "Report the version; drop Simulation.created_at",
    );

    // Before the click: "Check for updates" fetches, and the card shows the commit, flags the migration
    // and advises a backup.
    let card = change_card(&console, true).await;
    assert_eq!(card.ahead, 1);
    assert!(card.descends);
    assert_eq!(card.target.id, target);
    assert_eq!(
        card.running.as_ref().map(|r| r.id.as_str()),
        Some(running_before.as_str())
    );
    assert_eq!(card.commits.len(), 1);
    assert_eq!(
        card.commits[0].subject,
        "Report the version; drop Simulation.created_at"
    );
    assert_eq!(card.commits[0].author, "Dana Developer");
    assert_eq!(
        card.migrations,
        [app::deploy::changes::MigrationChange {
            path: "backend/app/simulations/migrations/0003_remove_simulation_created_at.py".into(),
            data_losing: vec!["RemoveField".into()],
        }]
    );
    assert!(card.backup_advised);
    assert_eq!(card.files_total, 3);
    assert_eq!(card.folders.len(), 1, "{:?}", card.folders);
    assert_eq!(card.folders[0].folder, "backend");
    assert!(
        card.compose.is_empty(),
        "the compose file did not change: {:?}",
        card.compose
    );
    assert!(card.fetched_at.is_some());

    // Someone edited a tracked file on the server: the deploy names it and does not touch it.
    let settings = project.dir.path().join("backend/app/config/settings.py");
    let edited = std::fs::read_to_string(&settings).unwrap() + "# hotfix made on the server\n";
    std::fs::write(&settings, &edited).unwrap();
    let summary = refused_at_preflight(&console, &project, &quick).await;
    assert!(
        summary.contains(
            "tracked files were changed on the server: backend/app/config/settings.py; commit them"
        ),
        "{summary}"
    );
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), edited);

    // Discarding them is an admin's choice, confirmed by typing the project name.
    let mut discard = quick.to_vec();
    discard.push(("options[discard_local_changes]", "true"));
    let deployer = console.login(end2end::DEPLOYER).await.unwrap();
    let reply = deployer
        .post(format!("{}/api/deploy_start", console.url))
        .form(&discard)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403, "a deployer may not discard");
    let (status, body) = console.call("deploy_start", &discard).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(
            "discarding local changes loses what was changed on the server: type the project name"
        ),
        "{body}"
    );
    discard.push(("confirm", project.name.as_str()));
    let (id, outcome, summary, log) = deploy_to_end(&console, &discard).await;
    assert_eq!(outcome, DeployOutcome::Succeeded, "{summary}\n{log}");
    assert!(
        log.contains(
            "local changes on the server will be discarded: backend/app/config/settings.py"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "source: {} -> {}",
            &running_before[..10],
            &target[..10]
        )),
        "{log}"
    );

    // The new code serves behind nginx, its migration ran, the history has both commits.
    let health: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/health/", project.nginx_port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(health["version"], "2", "{health}");
    assert_eq!(
        project.psql(
            "epsm_db",
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'simulations_simulation' AND column_name = 'created_at'"
        ),
        "0"
    );
    let d = deploy(&console, id).await;
    assert_eq!(d.git_commit.as_deref(), Some(running_before.as_str()));
    assert_eq!(d.to_commit.as_deref(), Some(target.as_str()));
    let kept = d.change_card.expect("the deploy keeps its card");
    assert_eq!((kept.target.id.as_str(), kept.ahead), (target.as_str(), 1));
    assert!(log.contains("a migration it adds can lose data"), "{log}");

    // Production now runs the target; a force-push rewrites origin: the card warns.
    let card = change_card(&console, false).await;
    assert!(card.up_to_date(), "{card:?}");
    let rewritten = project.rewrite_origin("Rewritten: the version without the migration");
    let card = change_card(&console, true).await;
    assert_eq!(card.target.id, rewritten);
    assert!(!card.descends, "{card:?}");
    let (_, audit_so_far) = console.call("audit_log", &[]).await;
    assert!(
        audit_so_far.contains("deploy.check_updates"),
        "{audit_so_far}"
    );
    assert_eq!(project.git(&["rev-parse", "HEAD"]), target);
    assert_eq!(project.git(&["status", "--porcelain"]), "", "a clean tree");
    let (_, audit) = console.call("audit_log", &[]).await;
    assert!(audit.contains("DISCARD LOCAL CHANGES"), "{audit}");
    assert!(
        audit.contains("not confirmed: discarding local changes"),
        "{audit}"
    );

    // An env file committed to the repository: a finding, and no deploy moves the checkout.
    let env_before = std::fs::read_to_string(project.env_file()).unwrap();
    project.git(&["add", "--force", ".env.production"]);
    project.git(&["commit", "--quiet", "-m", "oops: the env file"]);
    let (_, report) = console.call("environment_report", &[]).await;
    assert!(report.contains("env-file-in-git"), "{report}");
    let mut anyway = quick.to_vec();
    anyway.push(("options[ignore_audit_errors]", "true"));
    let summary = refused_at_preflight(&console, &project, &anyway).await;
    assert!(
        summary.contains("the checkout on the server tracks .env.production"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read_to_string(project.env_file()).unwrap(),
        env_before
    );
    for secret in stack_secrets() {
        assert!(!log.contains(&secret) && !console.log().contains(&secret));
    }
}

/// A deploy's whole log, as `/deploys/{id}/log.txt` serves it.
async fn raw_log(console: &Console, id: i64) -> String {
    console.get_text(&format!("/deploys/{id}/log.txt")).await
}

/// Polls `check` every 200 ms until it holds; panics with `what` after `bound`.
async fn eventually(bound: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + bound;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} (after {bound:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_cancel_says_what_it_leaves_running_in_a_container_and_stops_a_backup_cleanly() {
    use app::backup::{Backup, BackupOutcome};
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmcancel");
    let slow_line = project.slow_migration();
    let console = Console::for_stack(bin(), &project, &[]).await;
    let form = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];

    // Cancelled during migrate: the migration goes on in the container, and the deploy says so.
    let id = start(&console, &form).await;
    until_line(&console, id, &slow_line).await;
    let (outcome, summary, events) = cancel_to_end(&console, id).await;
    assert_eq!(outcome, DeployOutcome::Cancelled);
    assert!(
        summary.contains("`python manage.py migrate --noinput` in backend is still running"),
        "{summary}\n{}",
        lines(&events)
    );
    // Its end is written into the deploy's log when it comes.
    eventually(
        with_margin(end2end::SLOW_MIGRATION),
        "the migration's end is not in the log",
        async || {
            raw_log(&console, id)
                .await
                .contains("(left running by the cancel) ended: exit 0")
        },
    )
    .await;

    // Cancelled during the backup: a session holds a lock, so pg_dump waits on it.
    project.psql_in_background(
        "epsm_db",
        "BEGIN; LOCK TABLE simulations_building IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);",
    );
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                WHERE c.relname = 'simulations_building' AND l.mode = 'AccessExclusiveLock' AND l.granted";
    // A psql connecting: nothing to wait for but the machine (the margin alone).
    eventually(
        with_margin(Duration::ZERO),
        "the lock was not taken",
        async || project.psql("epsm_db", held) == "1",
    )
    .await;
    let id = start(
        &console,
        &[form[0], form[1], ("options[backup_first]", "true")],
    )
    .await;
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE application_name LIKE 'epsm-ops-backup-%' AND wait_event_type = 'Lock'";
    // The backup comes after preflight and the source step's fetch (within the git timeout).
    let git_timeout = Duration::from_secs(app::config::Config::default().project.git.timeout_secs);
    eventually(
        with_margin(git_timeout),
        "pg_dump never waited on the lock",
        async || {
            let up = project
                .compose(&["exec", "-T", "database", "true"])
                .status
                .success();
            assert!(
                up,
                "the database went away before pg_dump waited:\n{}",
                raw_log(&console, id).await
            );
            project.psql("postgres", waiting) == "1"
        },
    )
    .await;
    let (_, summary, _) = cancel_to_end(&console, id).await;
    assert!(summary.contains("was stopped half-way"), "{summary}");
    // The backup's row ends failed, its pg_dump session is gone, no partial file is left.
    let backups = async || -> Vec<Backup> {
        serde_json::from_str(&console.call("backup_list", &[]).await.1).unwrap()
    };
    eventually(
        with_margin(app::backup::ssr::STOP_DUMP_WITHIN),
        "the backup is still running",
        async || {
            backups()
                .await
                .iter()
                .all(|b| b.outcome != BackupOutcome::Running)
        },
    )
    .await;
    let stopped = backups().await.into_iter().next().unwrap();
    assert_eq!(stopped.outcome, BackupOutcome::Failed);
    assert!(
        stopped.reason.contains("stopped before it finished"),
        "{}",
        stopped.reason
    );
    assert_eq!(
        project.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'epsm-ops-backup-%'"
        ),
        "0"
    );
    let partial: Vec<_> = std::fs::read_dir(console.data_path().join("backups"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    project.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
    );
}
