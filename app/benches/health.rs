//! Health benchmark (run by scripts/bench.sh; prints table rows, asserts nothing): the Health page under
//! concurrent clients, one probe round against its slowest probe, and Docker API calls per round with
//! 1 and with 100 live viewers. Real stack, real engine, the release console (`EPSM_CONSOLE_BIN`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::config::Config;
use app::engine::ssr::Engine;
use app::environment::secrets::{DEFAULT_SECRET_NAME_PARTS, Masker};
use app::health::ssr::HealthMonitor;
use app::health::{HealthReport, ProbeResult};
use end2end::bench::row;
use end2end::{Console, SseReader, StackProject, console_binary, docker_host};

const CLIENTS: usize = 32;
const LOAD_FOR: Duration = Duration::from_secs(10);
const VIEWERS: usize = 100;
const COUNT_FOR: Duration = Duration::from_secs(20);

/// Docker API calls per probe round while `viewers` pages follow the reports.
async fn calls_per_round(console: &Console, viewers: usize) -> f64 {
    let url = format!("{}/api/health/events", console.url);
    let mut open = Vec::new();
    for _ in 0..viewers {
        let mut viewer = SseReader::open(console.client(), &url).await;
        viewer.next_data(Duration::from_secs(10)).await;
        open.push(viewer);
    }
    // Every viewer drains its stream, as a page does.
    let readers: Vec<_> = open
        .into_iter()
        .map(|mut v| {
            tokio::spawn(async move { while v.next_data(COUNT_FOR * 2).await.is_some() {} })
        })
        .collect();
    let (calls0, rounds0) = (
        console.metric("epsm_ops_docker_api_calls_total").await,
        console.metric("epsm_ops_health_rounds_total").await,
    );
    tokio::time::sleep(COUNT_FOR).await;
    let (calls1, rounds1) = (
        console.metric("epsm_ops_docker_api_calls_total").await,
        console.metric("epsm_ops_health_rounds_total").await,
    );
    for r in readers {
        r.abort();
    }
    (calls1 - calls0) as f64 / (rounds1 - rounds0).max(1) as f64
}

#[tokio::main]
async fn main() {
    let project = StackProject::new("epsmbench");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    // 100 viewers from one login (one client): the limits raised above them.
    let console = Console::for_stack(
        &console_binary(),
        &project,
        &[
            ("EPSM_OPS_LIMITS_STREAMS_PER_SESSION", "200"),
            ("EPSM_OPS_LIMITS_STREAMS_TOTAL", "200"),
        ],
    )
    .await;

    // Wait for a healthy report, so the load measures the page as people see it.
    let mut first = SseReader::open(
        console.client(),
        &format!("{}/api/health/events", console.url),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let data = first
            .next_data(Duration::from_secs(60))
            .await
            .expect("report");
        let report: HealthReport = serde_json::from_str(&data).unwrap();
        assert!(
            Instant::now() < deadline,
            "the stack is not all healthy after 5 min: {:#?}",
            report
                .services
                .iter()
                .map(|s| (&s.name, &s.verdict))
                .collect::<Vec<_>>()
        );
        if report.services.len() == 7
            && report.services.iter().all(|s| !s.verdict.needs_attention())
        {
            break;
        }
    }
    drop(first);

    // The Health page (server-rendered with the newest report) under concurrent clients.
    let page = format!("{}/health", console.url);
    let run = end2end::bench::load(console.client(), &page, CLIENTS, LOAD_FOR).await;
    let how = format!(
        "{CLIENTS} concurrent clients on loopback for {} s, release build",
        LOAD_FOR.as_secs()
    );
    row(
        "health page p50",
        format!("{:.1} ms", run.percentile(0.5).as_secs_f64() * 1e3),
        &how,
    );
    row(
        "health page p99",
        format!("{:.1} ms", run.percentile(0.99).as_secs_f64() * 1e3),
        &how,
    );
    row(
        "health page throughput",
        format!("{:.0} req/s", run.per_second()),
        &how,
    );

    // One probe round (in-process monitor on the same stack) against its slowest single probe.
    let mut config = Config::default();
    config.project.name = Some(project.name.clone());
    config.project.dir = project.dir.path().to_path_buf();
    config.project.public_url = format!("http://127.0.0.1:{}/", project.nginx_port)
        .parse()
        .unwrap();
    config.docker.host = docker_host();
    let monitor = HealthMonitor::new(
        Arc::new(Engine::new(docker_host())),
        Arc::new(config),
        Arc::new(Masker::new(DEFAULT_SECRET_NAME_PARTS, &[1; 32])),
    );
    monitor.round_and_probes().await; // warm: connection, compose model, image dates
    let mut ratios = Vec::new();
    let mut walls = Vec::new();
    let mut slowest_names = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let report = monitor.round_and_probes().await;
        let wall = t.elapsed();
        let (name, slowest) = report
            .services
            .iter()
            .filter_map(|s| match &s.probe {
                ProbeResult::Passed { latency_ms, .. } | ProbeResult::Failed { latency_ms, .. } => {
                    Some((s.name.clone(), *latency_ms))
                }
                _ => None,
            })
            .max_by_key(|(_, l)| *l)
            .expect("probes ran");
        walls.push(wall.as_secs_f64() * 1e3);
        ratios.push(wall.as_secs_f64() * 1e3 / slowest.max(1) as f64);
        slowest_names.push(format!("{name} {slowest} ms"));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    row(
        "probe round wall time",
        format!("{:.0} ms", median(&mut walls)),
        "median of 5 rounds: state of 7 containers + 6 deep probes in parallel",
    );
    row(
        "probe round / slowest probe",
        format!("{:.2}x", median(&mut ratios)),
        &format!(
            "median of 5; slowest probe each round: {}",
            slowest_names.join(", ")
        ),
    );

    // Docker API calls per round: the monitor's rounds are shared, viewers add none.
    let one = calls_per_round(&console, 1).await;
    let hundred = calls_per_round(&console, VIEWERS).await;
    let how = format!(
        "/metrics counters over {} s of scheduled rounds",
        COUNT_FOR.as_secs()
    );
    row(
        "Docker API calls per round, 1 viewer",
        format!("{one:.1}"),
        &how,
    );
    row(
        "Docker API calls per round, 100 viewers",
        format!("{hundred:.1}"),
        &how,
    );
}
