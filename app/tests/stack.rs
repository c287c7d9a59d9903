//! The EPSM-like stack on the real engine, run as the deployment guide runs it: `build --no-cache
//! --pull`, `up -d`, then every service checked by the guide's own probes through the console's engine
//! client, and the failure switch shown to break exactly what it says.

use std::time::{Duration, Instant};

use app::engine::ssr::{Engine, ExecOutput};
use end2end::{STACK_SERVICES, StackProject, docker_host};

const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// One stack at a time: two stacks building and initialising databases at once on a 2-core machine
/// measure the machine, not the stack.
static ONE_STACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Stack {
    project: StackProject,
    engine: Engine,
}

impl Stack {
    async fn container(&self, service: &str) -> String {
        self.engine
            .service_container(&self.project.name, service)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no container for service {service}"))
    }

    async fn exec(&self, service: &str, cmd: &[&str], env: &[String]) -> ExecOutput {
        let container = self.container(service).await;
        self.engine
            .exec(&container, cmd, env, PROBE_TIMEOUT)
            .await
            .unwrap()
    }

    async fn docker_state(&self, service: &str) -> (String, Option<String>) {
        let docker = self.engine.client().await.unwrap();
        let inspect = docker
            .inspect_container(&self.container(service).await, None)
            .await
            .unwrap();
        let state = inspect.state.unwrap();
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        let health = state.health.and_then(|h| h.status).map(|s| s.to_string());
        (status, health)
    }

    /// Waits until every service with a healthcheck is healthy and the others run.
    async fn wait_all_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut waiting = Vec::new();
            for service in STACK_SERVICES {
                let (status, health) = self.docker_state(service).await;
                let ready = status == "running" && health.as_deref().is_none_or(|h| h == "healthy");
                if !ready {
                    waiting.push(format!(
                        "{service}: {status} {}",
                        health.unwrap_or_default()
                    ));
                }
            }
            if waiting.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy within {within:?}: {waiting:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn wait_health(&self, service: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, health) = self.docker_state(service).await;
            if health.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service} not {want} within {within:?}: {status} {health:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Sets the failure switch in the env file, recreates the backend with it (as a deploy's `up`
    /// would), and waits for the Docker health the switch should lead to.
    async fn switch_failure(&self, value: &str, expected_health: &str) {
        self.project.set_env("EPSM_FAILURE", value);
        self.project
            .compose_ok(&["up", "-d", "--no-deps", "backend"]);
        // Docker decides within the backend's own healthcheck bound (start period, then retries x
        // (interval + timeout)): a fixed 90 s raced exactly that on a busy machine.
        self.wait_health(
            "backend",
            expected_health,
            self.project.verdict_bound("backend"),
        )
        .await;
    }

    fn env_value(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.project.env_file()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not in env file"))
            .to_string()
    }

    async fn backend_health(&self) -> serde_json::Value {
        let out = self
            .exec(
                "backend",
                &["curl", "-sS", "http://localhost:8000/health/"],
                &[],
            )
            .await;
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("/health/ is not JSON ({e}): {out:?}"))
    }
}

fn assert_ok(what: &str, out: &ExecOutput) {
    assert!(out.succeeded(), "{what} failed: {out:?}");
}

#[tokio::test]
async fn the_stack_builds_without_cache_comes_up_healthy_and_answers_the_guides_probes() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let stack = Stack {
        project: StackProject::new("epsmtest"),
        engine: Engine::new(docker_host()),
    };
    // The guide's build: from source, no cache, base images refreshed.
    stack.project.compose_ok(&["build", "--no-cache", "--pull"]);
    stack.project.compose_ok(&["up", "-d"]);
    stack
        .wait_all_healthy(stack.project.stack_settle_bound())
        .await;

    // database: pg_isready with the stack's user and database.
    let (user, db) = (stack.env_value("DB_USER"), stack.env_value("DB_NAME"));
    let out = stack
        .exec("database", &["pg_isready", "-U", &user, "-d", &db], &[])
        .await;
    assert_ok("pg_isready", &out);
    assert!(out.stdout.contains("accepting connections"), "{out:?}");

    // redis: PING answers PONG with the password, and is refused without it.
    let auth = format!("REDISCLI_AUTH={}", stack.env_value("REDIS_PASSWORD"));
    let out = stack.exec("redis", &["redis-cli", "ping"], &[auth]).await;
    assert_eq!(out.stdout.trim(), "PONG", "{out:?}");
    let out = stack.exec("redis", &["redis-cli", "ping"], &[]).await;
    assert!(
        out.stdout.contains("NOAUTH"),
        "redis must require its password: {out:?}"
    );

    // backend: /health/ JSON says the database is healthy (read the JSON, not only the status).
    let health = stack.backend_health().await;
    assert_eq!(
        health,
        serde_json::json!({"status": "healthy", "database": "healthy"})
    );

    // celery_worker: inspect ping gets a pong.
    let out = stack
        .exec(
            "celery_worker",
            &["celery", "-A", "config", "inspect", "ping"],
            &[],
        )
        .await;
    assert_ok("celery inspect ping", &out);
    assert!(out.stdout.contains("pong"), "{out:?}");

    // celery_beat: its schedule file exists.
    let out = stack
        .exec(
            "celery_beat",
            &["test", "-f", "/app/celerybeat-schedule"],
            &[],
        )
        .await;
    assert_ok("beat schedule file", &out);

    // nginx: the public /health/ on the loopback port, proxied to the backend.
    let public = format!("http://127.0.0.1:{}/health/", stack.project.nginx_port);
    let reply: serde_json::Value = reqwest::get(&public).await.unwrap().json().await.unwrap();
    assert_eq!(reply["database"], "healthy");
    let page = reqwest::get(format!("http://127.0.0.1:{}/", stack.project.nginx_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("https://epsm.chalmers.se/api"),
        "frontend carries its build-time API URL"
    );

    // The guide's in-container steps succeed on the healthy stack.
    for (what, cmd) in [
        (
            "migrate",
            &["python", "manage.py", "migrate", "--noinput"][..],
        ),
        ("seed", &["python", "manage.py", "seed"][..]),
        (
            "collectstatic",
            &["python", "manage.py", "collectstatic", "--noinput"][..],
        ),
    ] {
        assert_ok(what, &stack.exec("backend", cmd, &[]).await);
    }
    let psql = [
        "psql",
        "-U",
        &user,
        "-d",
        &db,
        "-tAc",
        "SELECT count(*) FROM simulations_building",
    ];
    assert_eq!(
        stack.exec("database", &psql, &[]).await.stdout.trim(),
        "3",
        "seeded rows"
    );

    // Database down: backend still answers 200, and its JSON says why.
    stack.project.compose_ok(&["stop", "database"]);
    let health = stack.backend_health().await;
    assert_eq!(health["status"], "healthy");
    let database = health["database"].as_str().unwrap();
    assert!(database.starts_with("unhealthy: "), "{health}");
    stack.project.compose_ok(&["start", "database"]);
    stack
        .wait_health(
            "database",
            "healthy",
            stack.project.verdict_bound("database"),
        )
        .await;

    // Failure switch `migrate`: the env file's EPSM_FAILURE reaches the backend; migrate then fails in
    // the migration, with the reason in its output.
    stack.project.compose_ok(&[
        "exec",
        "-T",
        "backend",
        "python",
        "manage.py",
        "migrate",
        "simulations",
        "0001",
    ]);
    stack.switch_failure("migrate", "healthy").await;
    let out = stack
        .exec(
            "backend",
            &["python", "manage.py", "migrate", "--noinput"],
            &[],
        )
        .await;
    assert_ne!(
        out.exit_code,
        Some(0),
        "migrate must fail with EPSM_FAILURE=migrate: {out:?}"
    );
    assert!(
        out.stderr
            .contains("EPSM_FAILURE=migrate: migration simulations.0002 fails on purpose"),
        "{out:?}"
    );

    // Failure switch `seed`.
    stack.switch_failure("seed", "healthy").await;
    let out = stack
        .exec("backend", &["python", "manage.py", "seed"], &[])
        .await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    assert!(out.stderr.contains("EPSM_FAILURE=seed"), "{out:?}");

    // Failure switch `unhealthy`: the backend never becomes healthy, and says why.
    stack.switch_failure("unhealthy", "unhealthy").await;
    let health = stack.backend_health().await;
    assert_eq!(health["reason"], "EPSM_FAILURE=unhealthy");

    // Switch off: healthy again, and the migration that failed now applies.
    stack.switch_failure("", "healthy").await;
    assert_ok(
        "migrate",
        &stack
            .exec(
                "backend",
                &["python", "manage.py", "migrate", "--noinput"],
                &[],
            )
            .await,
    );
}

#[tokio::test]
async fn the_crash_switch_puts_the_backend_in_a_restart_loop() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let stack = Stack {
        project: StackProject::new("epsmcrash"),
        engine: Engine::new(docker_host()),
    };
    stack.project.set_env("EPSM_FAILURE", "crash");
    stack
        .project
        .compose_ok(&["build", "backend", "database", "redis"]);
    stack.project.compose_ok(&["up", "-d", "backend"]);
    let docker = stack.engine.client().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let inspect = docker
            .inspect_container(&stack.container("backend").await, None)
            .await
            .unwrap();
        let restarts = inspect.restart_count.unwrap_or(0);
        if restarts >= 2 {
            let logs = stack.project.compose(&["logs", "backend"]);
            let logs = String::from_utf8_lossy(&logs.stdout);
            assert!(logs.contains("EPSM_FAILURE=crash"), "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend restarted only {restarts} times in 120 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
