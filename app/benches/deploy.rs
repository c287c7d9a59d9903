//! Deploy benchmark (run by scripts/bench.sh; prints table rows, asserts nothing): a one-click deploy
//! through the release console against the same steps typed by hand as shell commands, on the same
//! stack in the same run; and how long a line of the build takes from the console reading it to a
//! viewer of the live stream.

use std::process::Command;
use std::time::{Duration, Instant};

use app::deploy::{Deploy, DeployEvent, DeployOutcome};
use chrono::{DateTime, Utc};
use end2end::bench::row;
use end2end::{Console, SseReader, StackProject, console_binary};

/// The guide's procedure typed by hand, step for step (the seed skipped in both).
fn by_hand(project: &StackProject) -> Duration {
    let started = Instant::now();
    project.compose_ok(&["down", "--remove-orphans"]);
    let prune = Command::new("docker")
        .args(["builder", "prune", "-af"])
        .output()
        .unwrap();
    assert!(prune.status.success());
    project.compose_ok(&["build", "--no-cache", "--pull"]);
    project.compose_ok(&[
        "up",
        "-d",
        "--force-recreate",
        "--wait",
        "--wait-timeout",
        "300",
    ]);
    for cmd in [
        &["python", "manage.py", "migrate", "--noinput"][..],
        &["python", "manage.py", "collectstatic", "--noinput"][..],
    ] {
        let mut args = vec!["exec", "-T", "backend"];
        args.extend_from_slice(cmd);
        project.compose_ok(&args);
    }
    // Verify as the guide does: the public /health/ answers healthy.
    let health = Command::new("curl")
        .args([
            "-fsS",
            &format!("http://127.0.0.1:{}/health/", project.nginx_port),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("\"database\": \"healthy\"")
            || String::from_utf8_lossy(&health.stdout).contains("\"database\":\"healthy\"")
    );
    started.elapsed()
}

async fn get(console: &Console, id: i64) -> Deploy {
    let (status, body) = console.call("deploy_get", &[("id", &id.to_string())]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::main]
async fn main() {
    let project = StackProject::new("epsmbenchdeploy");
    let console = Console::for_stack(&console_binary(), &project, &[]).await;
    let client = console.client().clone();
    let start = |console: &Console| {
        client
            .post(format!("{}/api/deploy_start", console.url))
            .form(&[("options[skip_seed]", "true")])
            .send()
    };

    // Warm-up deploy: the stack's first database initialisation is not part of either figure.
    let mut runs = Vec::new();
    for round in 0..2 {
        let t = Instant::now();
        let id: i64 = start(&console)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        let mut stream = SseReader::open(
            console.client(),
            &format!("{}/api/deploys/{id}/events", console.url),
        )
        .await;
        let mut arrivals: Vec<(u64, DateTime<Utc>)> = Vec::new();
        let outcome = loop {
            let data = stream
                .next_data(Duration::from_secs(900))
                .await
                .expect("event");
            match serde_json::from_str::<DeployEvent>(&data).unwrap() {
                DeployEvent::Line(l) => arrivals.push((l.seq, Utc::now())),
                DeployEvent::Finished { outcome, .. } => break outcome,
                DeployEvent::Step { .. } | DeployEvent::Earlier { .. } => {}
            }
        };
        let wall = t.elapsed();
        assert_eq!(outcome, DeployOutcome::Succeeded);
        if round == 1 {
            runs.push((id, wall, arrivals));
        }
    }
    let (id, console_wall, arrivals) = runs.pop().unwrap();
    let built_first = get(&console, id).await;
    // The same deploy in the guide's order (stopped before the build), same stack, same run.
    let guide_id = {
        let (status, body) = console
            .call(
                "deploy_start",
                &[
                    ("options[skip_seed]", "true"),
                    ("options[stop_first]", "true"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body.parse::<i64>().unwrap()
    };
    let mut stream = SseReader::open(
        console.client(),
        &format!("{}/api/deploys/{guide_id}/events", console.url),
    )
    .await;
    while let Some(data) = stream.next_data(Duration::from_secs(900)).await {
        if data.contains("\"Finished\"") {
            break;
        }
    }
    let guide = get(&console, guide_id).await;
    assert_eq!(guide.outcome, DeployOutcome::Succeeded);
    let offline = |d: &Deploy| d.downtime.clone().expect("measured");
    let (first, stopped) = (offline(&built_first), offline(&guide));
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    row(
        "downtime per deploy, built first",
        secs(first.total_ms),
        &format!(
            "public URL not 200 (the console's probe, every 250 ms); the maintenance page {} of it",
            secs(first.maintenance_ms)
        ),
    );
    row(
        "downtime per deploy, the guide's order",
        secs(stopped.total_ms),
        &format!(
            "stopped before the build; the maintenance page {} of it",
            secs(stopped.maintenance_ms)
        ),
    );
    row(
        "downtime, guide's order / built first",
        format!(
            "{:.2}x",
            stopped.total_ms as f64 / first.total_ms.max(1) as f64
        ),
        "same stack, same run",
    );
    let drain = built_first
        .steps
        .iter()
        .find(|s| s.name == "drain tasks")
        .and_then(|s| s.duration_ms)
        .expect("the drain ran");
    row(
        "drain with no running task",
        secs(drain),
        "the drain tasks step: cancel_consumer, inspect active and reserved, in one exec",
    );
    let hand = by_hand(&project);
    row(
        "one-click deploy, wall time",
        format!("{:.1} s", console_wall.as_secs_f64()),
        "Deploy (seed skipped) from the click to the verified end, release console",
    );
    row(
        "same steps by hand, wall time",
        format!("{:.1} s", hand.as_secs_f64()),
        "down, builder prune, build --no-cache --pull, up --wait, exec migrate, collectstatic, curl /health/",
    );
    row(
        "deploy / by hand",
        format!("{:.2}x", console_wall.as_secs_f64() / hand.as_secs_f64()),
        "same stack, same run; the console also runs the audit and all deep probes",
    );

    // Line latency: the time the console stored with each line (when it read it from compose) to the
    // moment the stream reader got it.
    let store = app::store::Store::open(&console.data_path()).await.unwrap();
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, at FROM deploy_log WHERE deploy_id = ?")
            .bind(id)
            .fetch_all(store.pool())
            .await
            .unwrap();
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .filter_map(|(seq, got)| {
            let (_, at) = stored.iter().find(|(s, _)| *s as u64 == *seq)?;
            let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
            Some((*got - at).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let how = format!(
        "{} lines of one deploy; console read the line -> live-stream client got it, loopback",
        latencies.len()
    );
    row(
        "deploy line to viewer, p50",
        format!("{:.1} ms", p(0.5)),
        &how,
    );
    row(
        "deploy line to viewer, p99",
        format!("{:.1} ms", p(0.99)),
        &how,
    );
}
