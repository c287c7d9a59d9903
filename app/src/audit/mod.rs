//! The audit log: who did what, when, and how it ended. Every button's action lands here; this page
//! shows the newest entries. Writing and reading the table is in `ssr.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
mod store;
pub mod view;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum AuditOutcome {
    Ok,
    Failed,
    Refused,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An event to record. `detail` must already be scrubbed of secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: AuditOutcome,
    pub detail: String,
}

impl AuditEvent {
    /// An action of the console itself (start, stop, scheduled work).
    pub fn system(action: &str, outcome: AuditOutcome, detail: &str) -> AuditEvent {
        AuditEvent {
            actor: "system".into(),
            action: action.into(),
            target: String::new(),
            outcome,
            detail: detail.into(),
        }
    }
}

/// Which entries to show; every part optional, all of them must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// An action (`deploy.start`) or its family (`deploy`: every `deploy.*`).
    pub action: Option<String>,
    /// Part of who did it, in any case (a name or an id).
    pub actor: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// Only entries older than this one: the next page.
    pub before: Option<i64>,
}

/// The families of actions the console records, for the page's filter.
pub const ACTION_FAMILIES: [(&str, &str); 6] = [
    ("auth", "logins, logouts, refusals"),
    ("deploy", "deploys, cancels, rollbacks"),
    ("backup", "backups, downloads, deletions"),
    ("maintenance", "prunes"),
    ("notifications", "test messages"),
    ("console", "the console's start and stop"),
];

/// A recorded event as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: AuditOutcome,
    pub detail: String,
    /// Refusals of one client folded into this entry: how many more, and the last one's time.
    #[serde(default)]
    pub repeats: u32,
    #[serde(default)]
    pub last_at: Option<DateTime<Utc>>,
}

/// How many entries a page of the log shows.
pub const PAGE_SIZE: u32 = 200;
