//! Following a deploy or restore through the real server, shared by the test binaries that run them:
//! start one, follow its event stream, read it back from the history.

#![allow(dead_code)]

use std::time::Duration;

use app::audit::AuditEntry;
use app::deploy::{Deploy, DeployEvent, DeployOutcome, StepStatus};
use app::health::HealthReport;
use end2end::{Console, SseReader};

pub async fn start(console: &Console, form: &[(&str, &str)]) -> i64 {
    let (status, body) = console.call("deploy_start", form).await;
    assert_eq!(status, 200, "deploy_start: {body}");
    body.parse().unwrap_or_else(|_| panic!("an id: {body}"))
}

/// Follows a deploy's stream until an event for which `done` holds (kept), or until the stream ends;
/// returns the raw stream, the events and whether `done` held.
pub async fn follow_until(
    console: &Console,
    id: i64,
    done: impl Fn(&DeployEvent) -> bool,
) -> (String, Vec<DeployEvent>, bool) {
    let mut stream = SseReader::open(
        console.client(),
        &format!("{}/api/deploys/{id}/events", console.url),
    )
    .await;
    let mut events = Vec::new();
    while let Some(data) = stream.next_data(Duration::from_secs(600)).await {
        let event: DeployEvent = serde_json::from_str(&data).unwrap();
        let found = done(&event);
        events.push(event);
        if found {
            return (stream.raw, events, true);
        }
    }
    (stream.raw, events, false)
}

/// Follows a deploy's stream to its end; returns the raw stream and the events.
pub async fn follow_to_end(console: &Console, id: i64) -> (String, Vec<DeployEvent>) {
    let (raw, events, _) =
        follow_until(console, id, |e| matches!(e, DeployEvent::Finished { .. })).await;
    (raw, events)
}

/// Follows a deploy's stream until `step` is running.
pub async fn until_step_runs(console: &Console, id: i64, step: &str) {
    let (raw, _, found) = follow_until(console, id, |e| {
        matches!(e, DeployEvent::Step { step: s, .. } if s.name == step && s.status == StepStatus::Running)
    })
    .await;
    assert!(found, "the stream ended before {step} ran:\n{raw}");
}

/// Follows a deploy's stream until a log line contains `text`.
pub async fn until_line(console: &Console, id: i64, text: &str) {
    let (raw, _, found) = follow_until(
        console,
        id,
        |e| matches!(e, DeployEvent::Line(line) if line.text.contains(text)),
    )
    .await;
    assert!(
        found,
        "the stream ended before a line said {text:?}:\n{raw}"
    );
}

/// Cancels a running deploy and follows it to its end: its outcome, summary and events.
pub async fn cancel_to_end(
    console: &Console,
    id: i64,
) -> (DeployOutcome, String, Vec<DeployEvent>) {
    let (status, body) = console
        .call("deploy_cancel", &[("id", &id.to_string())])
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, events) = follow_to_end(console, id).await;
    match events.last() {
        Some(DeployEvent::Finished { outcome, summary }) => (*outcome, summary.clone(), events),
        other => panic!("no end: {other:?}"),
    }
}

pub async fn deploy(console: &Console, id: i64) -> Deploy {
    let (status, body) = console.call("deploy_get", &[("id", &id.to_string())]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

pub fn lines(events: &[DeployEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            DeployEvent::Line(l) => Some(l.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every (action, outcome) of the audit log's newest page.
pub async fn audit_actions(console: &Console) -> Vec<(String, String)> {
    let (_, audit) = console.call("audit_log", &[]).await;
    let audit: Vec<AuditEntry> = serde_json::from_str(&audit).unwrap();
    audit
        .into_iter()
        .map(|e| (e.action, e.outcome.as_str().to_string()))
        .collect()
}

/// Panics unless each (action, outcome) is in the audit log.
pub async fn assert_audited(console: &Console, wanted: &[(&str, &str)]) {
    let actions = audit_actions(console).await;
    for (action, outcome) in wanted {
        assert!(
            actions.iter().any(|(a, o)| a == action && o == outcome),
            "({action}, {outcome}) not in {actions:?}"
        );
    }
}

/// Reads the console's health report until `done` holds for it.
pub async fn health_until(
    console: &Console,
    within: Duration,
    done: impl Fn(&HealthReport) -> bool,
) -> HealthReport {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (status, body) = console.call("health_report", &[]).await;
        assert_eq!(status, 200, "{body}");
        let report: HealthReport = serde_json::from_str(&body).unwrap();
        if done(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {:?}",
            report
                .services
                .iter()
                .map(|s| (s.name.as_str(), s.verdict.word()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
