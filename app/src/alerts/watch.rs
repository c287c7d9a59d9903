//! The health rounds, watched for alerts: each new report's services (and the engine) go through
//! the rules; what they decide is queued in the outbox for the channels that take it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Message;
use super::rules::{Rules, Seen};
use crate::config::Config;
use crate::engine::EngineState;
use crate::health::ssr::HealthMonitor;
use crate::health::{HealthReport, Verdict};
use crate::store::Store;

/// The engine, as the rules see it: one more thing that can be down.
pub const ENGINE: &str = "Docker engine";

/// What a service's verdict is to the rules. Starting and degraded are neither good nor bad (a slow
/// probe is not "down"); a stack found under another project's name is the Health page's business,
/// not a reason to wake anyone.
pub fn seen_of(verdict: &Verdict) -> Seen {
    match verdict {
        Verdict::Healthy | Verdict::Unchecked => Seen::Good,
        Verdict::Down { reason } => Seen::Bad(reason.clone()),
        Verdict::Missing => Seen::Bad("no container".into()),
        Verdict::Starting { .. } | Verdict::Degraded { .. } | Verdict::OtherProject { .. } => {
            Seen::Unsure
        }
    }
}

/// What one report shows: the engine, then every service (none when the engine did not answer: its
/// services are unknown, not down).
pub fn observations(report: &HealthReport) -> Vec<(String, Seen)> {
    match &report.engine.state {
        EngineState::Unreachable { reason } => vec![(ENGINE.into(), Seen::Bad(reason.clone()))],
        EngineState::Reachable(_) => std::iter::once((ENGINE.to_string(), Seen::Good))
            .chain(
                report
                    .services
                    .iter()
                    .map(|s| (s.name.clone(), seen_of(&s.verdict))),
            )
            .collect(),
    }
}

/// Watches the monitor's reports until `stop`. `deploying`: whether the console's own deploy or
/// restore runs now (its services' restarts are not alerted; its result is the message).
pub async fn watch(
    monitor: Arc<HealthMonitor>,
    config: Arc<Config>,
    store: Store,
    deploying: impl Fn() -> bool + Send + 'static,
    stop: CancellationToken,
) {
    let repeat = config.alerts.repeat_minutes;
    let mut rules = Rules::new(
        chrono::Duration::seconds(config.alerts.grace_secs as i64),
        (repeat > 0).then(|| chrono::Duration::minutes(repeat as i64)),
    );
    let mut reports = monitor.follow_internally();
    let project = config.project_name();
    let base = config.public_url.as_str().to_string();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = reports.changed() => if changed.is_err() { return },
        }
        let report = reports.borrow_and_update().clone();
        let restarting = deploying();
        for (service, seen) in observations(&report) {
            let restarting = restarting && service != ENGINE;
            let Some(decided) = rules.observe(report.taken_at, &service, seen, restarting) else {
                continue;
            };
            let mut message = Message::of(&decided, report.taken_at, &project, &base);
            if service == ENGINE {
                message.kind = super::EventKind::EngineUnreachable;
            }
            super::events::notify(&config, &store, message).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_good_bad_or_neither() {
        assert_eq!(seen_of(&Verdict::Healthy), Seen::Good);
        assert_eq!(seen_of(&Verdict::Unchecked), Seen::Good);
        assert_eq!(
            seen_of(&Verdict::Down {
                reason: "exited (1)".into()
            }),
            Seen::Bad("exited (1)".into())
        );
        assert_eq!(seen_of(&Verdict::Missing), Seen::Bad("no container".into()));
        assert_eq!(
            seen_of(&Verdict::Degraded {
                reason: "probe timed out".into()
            }),
            Seen::Unsure,
            "one slow probe is not down"
        );
    }
}
