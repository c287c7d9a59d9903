//! The health monitor against a real EPSM-like stack on the real engine: every verdict the Health page
//! shows is produced here from a real failure (a stopped service, a stopped database, a failing
//! healthcheck, a crash loop, a removed container, an orphan, a dead engine, a broken compose file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::config::Config;
use app::engine::EngineState;
use app::engine::ssr::Engine;
use app::environment::secrets::{DEFAULT_SECRET_NAME_PARTS, Masker};
use app::health::probe::Probe;
use app::health::ssr::HealthMonitor;
use app::health::{HealthReport, ProbeResult, Verdict};
use end2end::{STACK_SERVICES, StackProject, docker_host, stack_secrets, with_margin};

/// The probes' timeout in these tests' monitor.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a change of the stack takes to show in a report once Docker shows it: the round that is
/// running may have read the containers just before it (each round waits for its probes, which take
/// at most `PROBE_TIMEOUT`), and the next one sees it.
fn two_rounds() -> Duration {
    with_margin(2 * PROBE_TIMEOUT)
}

fn monitor_for(project: &StackProject, engine: &str) -> Arc<HealthMonitor> {
    monitor_with(project, engine, |_| {})
}

/// A monitor of `project` whose configuration `tweak` changes first.
fn monitor_with(
    project: &StackProject,
    engine: &str,
    tweak: impl FnOnce(&mut Config),
) -> Arc<HealthMonitor> {
    let mut config = Config::default();
    config.project.name = Some(project.name.clone());
    config.project.dir = project.dir.path().to_path_buf();
    config.project.public_url = format!("http://127.0.0.1:{}/", project.nginx_port)
        .parse()
        .unwrap();
    config.docker.host = engine.to_string();
    config.health.probe_timeout_secs = PROBE_TIMEOUT.as_secs();
    tweak(&mut config);
    HealthMonitor::new(
        Arc::new(Engine::new(engine)),
        Arc::new(config),
        Arc::new(Masker::new(DEFAULT_SECRET_NAME_PARTS, &[7; 32])),
    )
}

/// Runs rounds until `done` holds for the report (or panics with the last report after `within`).
async fn until(
    monitor: &Arc<HealthMonitor>,
    within: Duration,
    what: &str,
    done: impl Fn(&HealthReport) -> bool,
) -> Arc<HealthReport> {
    let deadline = Instant::now() + within;
    loop {
        let report = monitor.round_and_probes().await;
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last report: {}",
            summary(&report)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn summary(report: &HealthReport) -> String {
    report
        .services
        .iter()
        .map(|s| format!("{}={:?}", s.name, s.verdict))
        .collect::<Vec<_>>()
        .join("; ")
}

fn verdict<'a>(report: &'a HealthReport, service: &str) -> &'a Verdict {
    &report
        .service(service)
        .unwrap_or_else(|| panic!("no row for {service}"))
        .verdict
}

fn reason(report: &HealthReport, service: &str) -> String {
    verdict(report, service).reason().unwrap_or_default()
}

fn all_healthy(report: &HealthReport) -> bool {
    report.services.len() == STACK_SERVICES.len()
        && report.services.iter().all(|s| !s.verdict.needs_attention())
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", &self.0])
            .output();
    }
}

#[tokio::test]
async fn the_health_monitor_sees_each_failure_of_the_real_stack_with_its_reason() {
    let project = StackProject::new("epsmhealth");
    project.compose_ok(&["build"]);
    project.compose_ok(&["up", "-d"]);
    let monitor = monitor_for(&project, &docker_host());

    // Six healthy, each backed by its own probe read in this run; the frontend (no healthcheck, no
    // probe) running, and said to be unchecked rather than green.
    let report = until(
        &monitor,
        project.stack_settle_bound() + two_rounds(),
        "all healthy",
        all_healthy,
    )
    .await;
    let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STACK_SERVICES, "compose order");
    for s in &report.services {
        let want = if s.name == "frontend" {
            Verdict::Unchecked
        } else {
            Verdict::Healthy
        };
        assert_eq!(s.verdict, want, "{}", s.name);
    }
    let detail = |service: &str| match &report.service(service).unwrap().probe {
        ProbeResult::Passed { detail, .. } => detail.clone(),
        other => panic!("{service}: probe {other:?}"),
    };
    assert!(detail("database").contains("accepting connections"));
    assert_eq!(detail("redis"), "PONG");
    assert_eq!(detail("backend"), "status healthy, database healthy");
    assert!(detail("celery_worker").contains("answered pong"));
    assert!(detail("celery_beat").starts_with("written "));
    assert!(detail("nginx").starts_with("HTTP 200"));
    assert_eq!(
        report.service("frontend").unwrap().probe,
        ProbeResult::NotConfigured
    );
    let database = report
        .service("database")
        .unwrap()
        .container
        .clone()
        .unwrap();
    assert_eq!(database.health.as_deref(), Some("healthy"));
    assert!(database.image_created.is_some() && database.started_at.is_some());
    assert!(
        database.ports.iter().any(|p| p.starts_with("127.0.0.1:")),
        "{:?}",
        database.ports
    );
    assert!(report.orphans.is_empty() && report.compose_error.is_none());

    // A probe that does not answer in time (a command that sleeps past the timeout) makes the
    // running, Docker-healthy redis degraded; only the second timeout in a row makes it down.
    let slow = monitor_with(&project, &docker_host(), |config| {
        config.health.probe_timeout_secs = 1;
        config.health.probe_timeouts_before_down = 2;
        config.health.probes.insert(
            "redis".into(),
            Probe::Exec {
                command: vec!["sleep".into(), "5".into()],
            },
        );
    });
    let first = slow.round_and_probes().await;
    assert_eq!(
        verdict(&first, "redis").word(),
        "degraded",
        "{}",
        reason(&first, "redis")
    );
    assert!(
        reason(&first, "redis").starts_with("probe timed out (1 in a row; down after 2): "),
        "{}",
        reason(&first, "redis")
    );
    let second = slow.round_and_probes().await;
    assert_eq!(
        verdict(&second, "redis").word(),
        "down",
        "{}",
        reason(&second, "redis")
    );

    // `docker stop redis`: redis is red and says why.
    project.compose_ok(&["stop", "redis"]);
    let report = until(&monitor, two_rounds(), "redis down", |r| {
        verdict(r, "redis").word() == "down"
    })
    .await;
    assert!(
        reason(&report, "redis").starts_with("container is exited (exit code"),
        "{}",
        reason(&report, "redis")
    );
    project.compose_ok(&["start", "redis"]);
    // Celery's worker stops answering `inspect ping` after its broker restarted (its control queue is
    // not re-subscribed; the monitor shows it as failing, which is how this was found): restart it,
    // as an operator would.
    project.compose_ok(&["restart", "celery_worker"]);

    // Database stopped: the backend's probe fails with the reason its JSON gives.
    project.compose_ok(&["stop", "database"]);
    let report = until(&monitor, two_rounds(), "backend probe fails", |r| {
        reason(r, "backend").contains("database: unhealthy")
    })
    .await;
    assert!(
        reason(&report, "backend").starts_with("probe failed: database: unhealthy: "),
        "{}",
        reason(&report, "backend")
    );
    assert_eq!(verdict(&report, "database").word(), "down");
    project.compose_ok(&["start", "database"]);
    until(
        &monitor,
        ["database", "redis", "celery_worker"]
            .map(|s| project.verdict_bound(s))
            .into_iter()
            .max()
            .unwrap_or_default()
            + two_rounds(),
        "healthy again",
        all_healthy,
    )
    .await;

    // A container of the project that compose does not declare is an orphan.
    let orphan = std::process::Command::new("docker")
        .args(["run", "-d", "--label"])
        .arg(format!("com.docker.compose.project={}", project.name))
        .args(["--label", "com.docker.compose.service=old_worker"])
        .arg(format!("{}-backend", project.name))
        .args(["sleep", "600"])
        .output()
        .unwrap();
    assert!(orphan.status.success(), "{orphan:?}");
    // `compose down --remove-orphans` stops such a container but leaves it: remove it at the end.
    let _orphan = RemoveOnDrop(String::from_utf8_lossy(&orphan.stdout).trim().to_string());
    let report = until(&monitor, two_rounds(), "orphan", |r| !r.orphans.is_empty()).await;
    assert_eq!(report.orphans[0].service, "old_worker");
    assert!(report.service("old_worker").is_none());

    // A declared service without a container is missing.
    project.compose_ok(&["rm", "--stop", "--force", "nginx"]);
    let report = until(&monitor, two_rounds(), "nginx missing", |r| {
        *verdict(r, "nginx") == Verdict::Missing
    })
    .await;
    assert!(report.service("nginx").unwrap().container.is_none());

    // A failing healthcheck: unhealthy, with the healthcheck's own output.
    project.set_env("EPSM_FAILURE", "unhealthy");
    project.compose_ok(&["up", "-d", "--no-deps", "backend"]);
    let report = until(
        &monitor,
        project.verdict_bound("backend") + two_rounds(),
        "backend unhealthy",
        |r| reason(r, "backend").starts_with("healthcheck failing"),
    )
    .await;
    let backend = report
        .service("backend")
        .unwrap()
        .container
        .clone()
        .unwrap();
    assert_eq!(backend.health.as_deref(), Some("unhealthy"));
    assert!(
        backend
            .health_output
            .as_deref()
            .is_some_and(|o| o.contains("503")),
        "{backend:?}"
    );

    // A crash loop is detected as such.
    project.set_env("EPSM_FAILURE", "crash");
    project.compose_ok(&["up", "-d", "--no-deps", "backend"]);
    let report = until(&monitor, Duration::from_secs(120), "restart loop", |r| {
        r.service("backend")
            .and_then(|s| s.container.as_ref())
            .is_some_and(|c| c.restart_loop)
    })
    .await;
    assert!(
        reason(&report, "backend").starts_with("restart loop: "),
        "{}",
        reason(&report, "backend")
    );

    // Nothing the monitor published carries a secret of the stack.
    let json = serde_json::to_string(&*monitor.latest()).unwrap();
    for secret in stack_secrets() {
        assert!(!json.contains(&secret), "a secret in the report");
    }
}

#[tokio::test]
async fn a_dead_engine_and_a_broken_compose_file_are_clear_errors() {
    let project = StackProject::new("epsmdead");
    std::fs::write(
        project.compose_file(),
        "services:\n  backend:\n    image: x\n    environment:\n      A: ${DB_PASSWORD:?}\n  bad: [\n",
    )
    .unwrap();
    let monitor = monitor_for(&project, "unix:///nonexistent/docker.sock");
    let report = monitor.round_and_probes().await;
    match &report.engine.state {
        EngineState::Unreachable { reason } => assert_eq!(
            reason,
            "Docker engine not reachable at unix:///nonexistent/docker.sock: \
             the socket does not exist (is dockerd running?)"
        ),
        other => panic!("expected unreachable, got {other:?}"),
    }
    let error = report.compose_error.clone().expect("compose error");
    assert!(
        error.starts_with("`docker compose config --format json` failed"),
        "{error}"
    );
    for secret in stack_secrets() {
        assert!(!error.contains(&secret), "{error}");
    }
}
