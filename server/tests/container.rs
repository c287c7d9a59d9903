//! The console in its container (`packaging/Dockerfile`, `packaging/compose.yml`) on the real engine:
//! the image built offline from this build's binary by `packaging/build-image.sh`, started as a
//! compose project of its own with the Docker socket and the project mounted. It runs a full deploy
//! of the stack, and the stack's `down` and `up` leave it running and watching.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use app::deploy::{DeployEvent, DeployOutcome};
use app::health::{HealthReport, Verdict};
use end2end::{Console, StackProject, docker_host, repo_root, stack_env, with_margin};

mod runs;
use runs::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

fn every(report: &HealthReport, verdict: fn(&Verdict) -> bool) -> bool {
    !report.services.is_empty() && report.services.iter().all(|s| verdict(&s.verdict))
}

/// Healthy, or running with nothing to check it by (the frontend has neither healthcheck nor probe).
fn up(v: &Verdict) -> bool {
    matches!(v, Verdict::Healthy | Verdict::Unchecked)
}

fn gone(v: &Verdict) -> bool {
    matches!(v, Verdict::Missing)
}

#[tokio::test]
async fn the_console_container_deploys_the_stack_and_outlives_its_down_and_up() {
    let project = StackProject::new("epsmcontainer");
    let tag = format!("epsm-ops:test{}", std::process::id());
    let built = Command::new("bash")
        .arg(repo_root().join("packaging/build-image.sh"))
        .arg(&tag)
        .env("CONSOLE_BINARY", bin())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-image.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    // The shipped compose file as it is, and what a test adds: the stack's git remote mounted at its
    // path (on the host it is GitHub). The configuration file is there but says nothing: the test
    // bed's variables, which the console reads over the file, configure it.
    let place = tempfile::tempdir().unwrap();
    let origin = project.origin.path().display().to_string();
    let additions = place.path().join("test.yml");
    std::fs::write(
        &additions,
        format!("services:\n  console:\n    volumes:\n      - {origin}:{origin}:ro\n"),
    )
    .unwrap();
    let (config, backups) = (place.path().join("etc"), place.path().join("backups"));
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("epsm-ops.toml"),
        "# The test bed's EPSM_OPS_* variables configure this console.\n",
    )
    .unwrap();
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&backups)
        .unwrap();
    let socket = docker_host();
    let socket = socket
        .strip_prefix("unix://")
        .unwrap_or(&socket)
        .to_string();
    let stack = stack_env(&project);
    let mut env: Vec<(&str, &str)> = stack.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (config, backups) = (config.display().to_string(), backups.display().to_string());
    let project_dir = project.dir.path().display().to_string();
    env.extend([
        ("CONSOLE_IMAGE", tag.as_str()),
        ("DOCKER_SOCKET", socket.as_str()),
        ("PROJECT_DIR", project_dir.as_str()),
        ("BACKUPS_DIR", backups.as_str()),
        ("CONFIG_DIR", config.as_str()),
        // The shipped file's data volume.
        ("EPSM_OPS_DATA_DIR", "/var/lib/epsm-ops"),
        ("EPSM_OPS_BACKUPS_DIR", backups.as_str()),
    ]);
    let name = format!("epsmopsct{}", std::process::id());
    let console = Console::in_container(
        &[repo_root().join("packaging/compose.yml"), additions],
        &name,
        &env,
    )
    .await;
    let container = format!("{name}-console-1");
    let inspect = |format: &str| {
        let out = Command::new("docker")
            .args(["inspect", "--format", format, &container])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        inspect("{{index .Config.Labels \"com.docker.compose.project\"}}"),
        name,
        "the console is a project of its own"
    );

    // A full deploy, run from inside the container: fetch, build --no-cache, migrate, up, verify.
    let id = start(&console, &[]).await;
    let (raw, events) = follow_to_end(&console, id).await;
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => {
            assert_eq!(*outcome, DeployOutcome::Succeeded, "{summary}\n{raw}")
        }
        other => panic!("no end: {other:?}\n{raw}"),
    }
    health_until(&console, project.stack_settle_bound(), |r| every(r, up)).await;

    // EPSM's project down: the console, in its own, goes on and sees the services gone.
    project.compose_ok(&["down"]);
    assert_eq!(inspect("{{.State.Status}}"), "running");
    health_until(&console, project.stack_settle_bound(), |r| every(r, gone)).await;
    // And up again.
    project.up_wait(&[]);
    health_until(&console, project.stack_settle_bound(), |r| every(r, up)).await;
    assert_eq!(inspect("{{.State.Status}}"), "running");
    assert_eq!(inspect("{{.RestartCount}}"), "0");
    // The image's healthcheck (`epsm-ops healthz`) says so too: its next check starts within its
    // interval and ends within its timeout, as the image declares them (nanoseconds).
    let check: serde_json::Value =
        serde_json::from_str(&inspect("{{json .Config.Healthcheck}}")).unwrap();
    let nanos = |key: &str| {
        Duration::from_nanos(
            check[key]
                .as_u64()
                .unwrap_or_else(|| panic!("the image's healthcheck has no {key}: {check}")),
        )
    };
    let deadline = std::time::Instant::now() + with_margin(nanos("Interval") + nanos("Timeout"));
    while inspect("{{.State.Health.Status}}") != "healthy" {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's health: {}",
            inspect("{{json .State.Health}}")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    drop(console);
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", &tag])
        .output();
}
