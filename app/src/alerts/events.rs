//! The messages of what ended or went wrong elsewhere in the console (a deploy or restore ended, a
//! backup, drill or off-site copy failed), and `notify`, which queues a message for the channels that
//! take it. Each is called where the thing happens, after it is recorded: the outbox row is written
//! before anything is sent.

use chrono::{DateTime, Utc};

use super::{EventKind, Message, Severity, route};
use crate::config::Config;
use crate::deploy::{Deploy, DeployOutcome};
use crate::store::Store;

/// Queues `message` for every channel that takes it. A store that cannot be written is logged,
/// never the caller's failure: the deploy or backup it is about has its own record.
pub async fn notify(config: &Config, store: &Store, message: Message) {
    let channels: Vec<String> = route(&config.alerts.channels, &message, None)
        .into_iter()
        .map(String::from)
        .collect();
    if channels.is_empty() {
        return;
    }
    tracing::info!(title = %message.title, channels = channels.len(), "alert queued");
    if let Err(e) = store.enqueue_alert(&message, &channels).await {
        tracing::error!("alerts: cannot queue {}: {e}", message.title);
    }
}

/// Where messages link to and what they are called: the console's public URL (no trailing slash)
/// and the compose project's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub project: String,
    pub base: String,
}

impl Origin {
    pub fn of(config: &Config) -> Origin {
        Origin {
            project: config.project_name(),
            base: config.public_url.as_str().trim_end_matches('/').to_string(),
        }
    }

    fn link(&self, path: &str) -> Option<String> {
        Some(format!("{}{path}", self.base))
    }

    /// The origin the unit tests' messages come from.
    #[cfg(test)]
    pub fn example() -> Origin {
        Origin {
            project: "epsm".into(),
            base: "https://ops.example".into(),
        }
    }
}

/// A message's text is at most this many characters (a failure's reason can be long; Teams takes
/// 28 KB a card, a mail subject far less): longer ones end in "…".
pub const TEXT_CHARS: usize = 2000;

/// `text` cut to `TEXT_CHARS`.
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// "4 min 12 s", "38 s".
pub fn took(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s} s"),
        _ if s < 7200 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

impl Message {
    /// A deploy or restore ended: its outcome, who started it, what it changed, how long it took
    /// and, when it did not succeed, why.
    pub fn run_ended(run: &Deploy, origin: &Origin, now: DateTime<Utc>) -> Message {
        let kind = run.options.kind();
        let outcome = run.outcome.as_str();
        let severity = match run.outcome {
            DeployOutcome::Succeeded => Severity::Info,
            DeployOutcome::Cancelled => Severity::Warning,
            _ => Severity::Error,
        };
        let short = |c: &str| c.chars().take(12).collect::<String>();
        let mut facts = vec![
            ("outcome".to_string(), outcome.to_string()),
            ("by".to_string(), run.actor.clone()),
            (
                "took".to_string(),
                took((run.finished_at.unwrap_or(now) - run.started_at).num_seconds()),
            ),
        ];
        match (&run.git_commit, &run.to_commit) {
            (Some(from), Some(to)) if from != to => {
                facts.push(("commits".into(), format!("{} → {}", short(from), short(to))))
            }
            (_, Some(to)) => facts.push(("commit".into(), short(to))),
            _ => {}
        }
        if let Some(card) = &run.change_card {
            let mut lines: Vec<String> = card
                .commits
                .iter()
                .take(5)
                .map(|c| format!("{} {} ({})", short(&c.id), c.subject, c.author))
                .collect();
            if card.ahead as usize > lines.len() {
                lines.push(format!("and {} more", card.ahead as usize - lines.len()));
            }
            if !lines.is_empty() {
                facts.push(("changes".into(), lines.join("\n")));
            }
        }
        if let Some(downtime) = &run.downtime {
            facts.push(("downtime".into(), downtime.describe()));
        }
        let text = if run.outcome == DeployOutcome::Succeeded {
            format!("{kind} #{} by {} succeeded", run.id, run.actor)
        } else {
            format!(
                "{kind} #{} by {} {outcome}: {}",
                run.id, run.actor, run.summary
            )
        };
        Message {
            kind: EventKind::DeployEnded,
            severity,
            at: now,
            title: format!("{}: {kind} #{} {outcome}", origin.project, run.id),
            text,
            facts,
            link: origin.link(&format!("/deploys/{}", run.id)),
        }
    }

    /// A backup failed (`reason` scrubbed by the caller).
    pub fn backup_failed(
        id: i64,
        actor: &str,
        reason: &str,
        origin: &Origin,
        now: DateTime<Utc>,
    ) -> Message {
        Message {
            kind: EventKind::BackupFailed,
            severity: Severity::Error,
            at: now,
            title: format!("{}: backup #{id} failed", origin.project),
            text: bounded(reason),
            facts: vec![("by".into(), actor.to_string())],
            link: origin.link("/backups"),
        }
    }

    /// A restore drill or an off-site copy of backup `id` failed (`detail` scrubbed by the caller).
    pub fn check_failed(
        kind: EventKind,
        id: i64,
        detail: &str,
        origin: &Origin,
        now: DateTime<Utc>,
    ) -> Message {
        let what = match kind {
            EventKind::CopyFailed => "the off-site copy",
            _ => "the restore drill",
        };
        Message {
            kind,
            severity: Severity::Error,
            at: now,
            title: format!("{}: {what} of backup #{id} failed", origin.project),
            text: bounded(detail),
            facts: Vec::new(),
            link: origin.link("/backups"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::DeployOptions;

    fn origin() -> Origin {
        Origin::example()
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(TEXT_CHARS + 10);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn durations_read_at_their_scale() {
        assert_eq!(took(-3), "0 s");
        assert_eq!(took(38), "38 s");
        assert_eq!(took(252), "4 min 12 s");
        assert_eq!(took(3 * 3600 + 61), "3 h 1 min");
    }

    #[test]
    fn a_run_ended_says_outcome_who_what_and_how_long() {
        let started = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut run = Deploy {
            id: 12,
            actor: "anna@chalmers.se".into(),
            started_at: started,
            finished_at: Some(started + chrono::Duration::seconds(252)),
            options: DeployOptions::default(),
            outcome: DeployOutcome::Succeeded,
            summary: "all steps succeeded".into(),
            git_commit: Some("aaaaaaaaaaaaaaaaaaaa".into()),
            to_commit: Some("bbbbbbbbbbbbbbbbbbbb".into()),
            version: None,
            change_card: None,
            env_sha256: None,
            compose_sha256: None,
            images: vec![],
            steps: vec![],
            downtime: None,
        };
        let now = started + chrono::Duration::seconds(300);
        let ok = Message::run_ended(&run, &origin(), now);
        assert_eq!(ok.title, "epsm: deploy #12 succeeded");
        assert_eq!(ok.severity, Severity::Info);
        assert_eq!(ok.link.as_deref(), Some("https://ops.example/deploys/12"));
        assert!(ok.facts.contains(&("took".into(), "4 min 12 s".into())));
        assert!(
            ok.facts
                .contains(&("commits".into(), "aaaaaaaaaaaa → bbbbbbbbbbbb".into()))
        );

        run.outcome = DeployOutcome::Failed;
        run.summary = "failed at step build: exit 1".into();
        let failed = Message::run_ended(&run, &origin(), now);
        assert_eq!(failed.severity, Severity::Error);
        assert_eq!(failed.title, "epsm: deploy #12 failed");
        assert!(
            failed
                .text
                .ends_with("failed: failed at step build: exit 1")
        );
    }
}
