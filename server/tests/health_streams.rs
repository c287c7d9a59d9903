//! The live routes of the Health page over HTTP against a real stack: the report stream every viewer
//! shares, a service's log stream (scrubbed, as raw bytes on the wire), and the maintenance prune with
//! its typed confirmation and audit entries.

use std::path::Path;
use std::time::Duration;

use app::health::maintenance::PruneReport;
use app::health::{HealthReport, LogEvent, Verdict};
use end2end::{Console, SseReader, StackProject, stack_secrets};

async fn next_report(stream: &mut SseReader) -> HealthReport {
    let data = stream
        .next_data(Duration::from_secs(30))
        .await
        .expect("a health report");
    serde_json::from_str(&data).unwrap_or_else(|e| panic!("not a report ({e}): {data}"))
}

#[tokio::test]
async fn health_and_log_streams_are_shared_scrubbed_and_prunes_are_confirmed_and_audited() {
    let project = StackProject::new("epsmstream");
    project.compose_ok(&["build"]);
    project.compose_ok(&["up", "-d"]);
    let console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        // 21 viewers from one login (one client): above the default per-session limit.
        &[("EPSM_OPS_LIMITS_STREAMS_PER_SESSION", "50")],
    )
    .await;
    let events = format!("{}/api/health/events", console.url);

    // One viewer follows until the stack is healthy.
    let mut first = SseReader::open(console.client(), &events).await;
    let deadline = std::time::Instant::now() + project.stack_settle_bound();
    loop {
        let report = next_report(&mut first).await;
        if report.services.len() == 7
            && report.services.iter().all(|s| !s.verdict.needs_attention())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not healthy: {report:?}"
        );
    }

    // Twenty more viewers: each gets the newest report at once, from the same rounds.
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(SseReader::open(console.client(), &events).await);
    }
    assert_eq!(console.metric("epsm_ops_health_viewers").await, 21);
    let rounds_before = console.metric("epsm_ops_health_rounds_total").await;
    for viewer in &mut viewers {
        let report = next_report(viewer).await;
        assert_eq!(report.project, project.name);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rounds = console.metric("epsm_ops_health_rounds_total").await - rounds_before;
    assert!(
        rounds <= 3,
        "viewers must not cause rounds: {rounds} rounds in 3 s"
    );
    drop(viewers);

    // The log stream: a line with a secret written into the backend's output arrives masked.
    let mut log = SseReader::open(
        console.client(),
        &format!("{}/api/logs/backend?tail=5", console.url),
    )
    .await;
    let secret = &stack_secrets()[2];
    project.write_to_output(
        "backend",
        &format!("stream-marker-99 redis password {secret}"),
        true,
    );
    let line = loop {
        let data = log
            .next_data(Duration::from_secs(15))
            .await
            .expect("log line");
        match serde_json::from_str::<LogEvent>(&data).unwrap() {
            LogEvent::Line(l) if l.text.contains("stream-marker-99") => break l,
            LogEvent::Line(_) => {}
            LogEvent::End { reason } => panic!("log ended: {reason}"),
        }
    };
    assert!(line.stderr, "written to stderr");
    assert_eq!(line.text, "stream-marker-99 redis password ••••");
    let unknown = console
        .client()
        .get(format!("{}/api/logs/nosuchservice", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("no container for service \"nosuchservice\"")
    );

    // Pruning stopped containers needs the project's name typed; refused and done are both audited.
    project.compose_ok(&["stop", "frontend"]);
    let prune = |confirm: &str| {
        console
            .client()
            .post(format!("{}/api/maintenance_prune", console.url))
            .form(&[("target", "StoppedContainers"), ("confirm", confirm)])
            .send()
    };
    let refused = prune("epsm").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("type the project name")
    );
    let done = prune(&project.name).await.unwrap();
    assert_eq!(done.status(), 200);
    let done: PruneReport = done.json().await.unwrap();
    assert_eq!(done.removed, 1, "the stopped frontend container");
    let report = loop {
        let report = next_report(&mut first).await;
        if report
            .service("frontend")
            .is_some_and(|s| s.verdict == Verdict::Missing)
        {
            break report;
        }
    };
    assert!(report.service("frontend").unwrap().container.is_none());
    let (_, audit) = console.call("audit_log", &[]).await;
    assert!(
        audit.contains("maintenance.prune_stopped_containers"),
        "{audit}"
    );
    assert!(
        audit.contains("\"Refused\"") && audit.contains("removed 1, freed"),
        "{audit}"
    );

    for secret in stack_secrets() {
        assert!(
            !first.raw.contains(&secret),
            "health stream carries a secret"
        );
        assert!(!log.raw.contains(&secret), "log stream carries a secret");
        assert!(
            !console.log().contains(&secret),
            "server log carries a secret"
        );
    }
}
