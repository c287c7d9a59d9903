//! Alerts: tell the team when something needs them. `rules.rs` decides when a service's state is
//! worth a message (grace, one per transition, reminders, flapping folded, the console's own deploys
//! left out); the messages are plain data here, so every channel renders the same facts.
//!
//! `events.rs` and `conditions.rs` make the messages of everything else; `store.rs` keeps them in the
//! outbox and `send.rs` delivers them (SMTP, Teams, Slack, signed webhook); `view.rs` is the
//! Notifications page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod conditions;
#[cfg(feature = "ssr")]
pub mod events;
#[cfg(feature = "ssr")]
pub mod render;
#[cfg(feature = "ssr")]
pub mod rules;
#[cfg(feature = "ssr")]
pub mod send;
#[cfg(feature = "ssr")]
pub mod store;
pub mod view;
#[cfg(feature = "ssr")]
pub mod watch;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize
)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// What a message is about, for routing (`[[alerts.channels]] events = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    ServiceDown,
    ServiceRecovered,
    ServiceFlapping,
    EngineUnreachable,
    DeployEnded,
    BackupFailed,
    DrillFailed,
    CopyFailed,
    DiskNearlyFull,
    CertificateExpiring,
    MetadataStale,
    Test,
}

/// A message for one channel, as the Notifications page and the Overview list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub title: String,
    /// None: a row whose message could not be read back.
    pub severity: Option<Severity>,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    /// Why the last attempt failed (the receiver's answer, never its URL).
    pub last_error: String,
    pub delivered_at: Option<DateTime<Utc>>,
    /// After its last retry (or a failed test): it stays here, and on the Overview for a week.
    pub given_up_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// "delivered", "retrying", "given up" or "queued".
    pub fn state(&self) -> &'static str {
        match (self.delivered_at, self.given_up_at, self.attempts) {
            (Some(_), _, _) => "delivered",
            (_, Some(_), _) => "given up",
            (_, _, 0) => "queued",
            _ => "retrying",
        }
    }
}

/// One message, as every channel renders it: a title, a line of text, facts, and a link to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub kind: EventKind,
    pub severity: Severity,
    pub at: DateTime<Utc>,
    pub title: String,
    pub text: String,
    /// (name, value) pairs: service, since, reason, who, duration...
    pub facts: Vec<(String, String)>,
    /// The console's page about it (absolute URL), if any.
    pub link: Option<String>,
}

#[cfg(feature = "ssr")]
impl Message {
    /// The message of a decision of the rules; `base`: the console's public URL.
    pub fn of(decided: &rules::Decided, now: DateTime<Utc>, project: &str, base: &str) -> Message {
        use rules::Decided;
        let link = Some(format!("{}/health", base.trim_end_matches('/')));
        let minutes =
            |d: chrono::Duration| crate::health::human_duration(d.num_seconds().max(0) as u64);
        let (kind, severity, title, text, facts) = match decided {
            Decided::Down {
                service,
                reason,
                since,
            }
            | Decided::StillDown {
                service,
                reason,
                since,
            } => (
                EventKind::ServiceDown,
                Severity::Error,
                match decided {
                    Decided::StillDown { .. } => format!("{project}: {service} is still down"),
                    _ => format!("{project}: {service} is down"),
                },
                format!(
                    "{service} has been down for {}: {reason}",
                    minutes(now - *since)
                ),
                vec![(
                    "since".into(),
                    format!("{} UTC", since.format("%Y-%m-%d %H:%M:%S")),
                )],
            ),
            Decided::Recovered { service, was_down } => (
                EventKind::ServiceRecovered,
                Severity::Info,
                format!("{project}: {service} is healthy again"),
                format!(
                    "{service} is healthy again after {} down",
                    minutes(*was_down)
                ),
                Vec::new(),
            ),
            Decided::Flapping {
                service,
                blips,
                within,
            } => (
                EventKind::ServiceFlapping,
                Severity::Warning,
                format!("{project}: {service} is flapping"),
                format!(
                    "{service} went down and came back {blips} times within {}",
                    minutes(*within)
                ),
                Vec::new(),
            ),
        };
        let service = match decided {
            Decided::Down { service, .. }
            | Decided::StillDown { service, .. }
            | Decided::Recovered { service, .. }
            | Decided::Flapping { service, .. } => service.clone(),
        };
        let mut all = vec![("service".to_string(), service)];
        all.extend(facts);
        Message {
            kind,
            severity,
            at: now,
            title,
            text,
            facts: all,
            link,
        }
    }
}

/// The channels that get `message`: those whose events include its kind (or that name none), at
/// its severity or below. A test message goes only to the channel it tests.
#[cfg(feature = "ssr")]
pub fn route<'a>(
    channels: &'a [crate::config::ChannelConfig],
    message: &Message,
    test_of: Option<&str>,
) -> Vec<&'a str> {
    channels
        .iter()
        .filter(|c| match test_of {
            Some(name) => c.name == name,
            None => {
                (c.events.is_empty() || c.events.contains(&message.kind))
                    && message.severity >= c.min_severity
            }
        })
        .map(|c| c.name.as_str())
        .collect()
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn a_decision_reads_the_same_on_every_channel() {
        let since = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let now = since + chrono::Duration::seconds(75);
        let down = Message::of(
            &rules::Decided::Down {
                service: "redis".into(),
                reason: "exited (137)".into(),
                since,
            },
            now,
            "epsm",
            "https://ops.epsm.chalmers.se/",
        );
        assert_eq!(down.kind, EventKind::ServiceDown);
        assert_eq!(down.severity, Severity::Error);
        assert_eq!(down.title, "epsm: redis is down");
        assert_eq!(down.text, "redis has been down for 75 s: exited (137)");
        assert_eq!(down.facts[0], ("service".into(), "redis".into()));
        assert_eq!(
            down.link.as_deref(),
            Some("https://ops.epsm.chalmers.se/health")
        );
        let back = Message::of(
            &rules::Decided::Recovered {
                service: "redis".into(),
                was_down: chrono::Duration::minutes(12),
            },
            now,
            "epsm",
            "https://ops.epsm.chalmers.se",
        );
        assert_eq!(back.severity, Severity::Info);
        assert_eq!(back.text, "redis is healthy again after 12 min down");

        // Routing: by kind and least severity; a test goes to its channel only.
        let channel =
            |name: &str, events: Vec<EventKind>, min: Severity| crate::config::ChannelConfig {
                name: name.into(),
                kind: crate::config::ChannelKind::Teams,
                events,
                min_severity: min,
                smtp_host: None,
                smtp_port: None,
                tls: Default::default(),
                username: None,
                password_file: None,
                from: None,
                to: vec![],
                url_file: Some("u".into()),
                secret_file: None,
            };
        let channels = [
            channel("all", vec![], Severity::Info),
            channel("errors", vec![], Severity::Error),
            channel("deploys", vec![EventKind::DeployEnded], Severity::Info),
        ];
        assert_eq!(route(&channels, &down, None), ["all", "errors"]);
        assert_eq!(route(&channels, &back, None), ["all"]);
        assert_eq!(route(&channels, &back, Some("deploys")), ["deploys"]);
    }
}
