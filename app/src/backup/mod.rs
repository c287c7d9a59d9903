//! Database backups: `pg_dump` inside the database container, streamed to a file in the backups
//! directory (never held in memory), verified before it counts, listed and downloadable. The work is in
//! `ssr.rs`; downloads are a streaming route of the server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
mod store;
pub mod view;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum BackupFormat {
    /// `pg_dump -Fc`: compressed, restorable with `pg_restore`, checked with `pg_restore --list`.
    #[default]
    Custom,
    /// Plain SQL.
    Plain,
}

impl BackupFormat {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn extension(self) -> &'static str {
        match self {
            BackupFormat::Custom => "dump",
            BackupFormat::Plain => "sql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum BackupOutcome {
    Running,
    Succeeded,
    Failed,
    Deleted,
}

impl BackupOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: i64,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub database: String,
    pub format: BackupFormat,
    pub outcome: BackupOutcome,
    pub reason: String,
    pub file_name: Option<String>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub duration_ms: Option<u64>,
    pub deploy_id: Option<i64>,
    /// How many tables had their rows recorded when it was taken (None: not recorded).
    pub tables_recorded: Option<usize>,
    /// Its last restore drill (restored into a throwaway PostgreSQL container, its tables and row
    /// counts compared with those recorded when it was taken), if it had one.
    pub drill: Option<Check>,
    /// Its off-site copy (copied and checked on the remote), when one is configured.
    pub copy: Option<Check>,
}

/// A check of a backup that runs after it: a restore drill, an off-site copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub at: DateTime<Utc>,
    /// None while it runs.
    pub ok: Option<bool>,
    /// What it found (why it failed).
    pub detail: String,
}

/// One table's rows when a backup was taken: counted before and after the dump (`low`..=`high`:
/// writes during the dump move it), exactly for tables under `EXACT_BELOW` rows, else PostgreSQL's
/// estimate (`exact` false).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub table: String,
    pub low: i64,
    pub high: i64,
    pub exact: bool,
}

/// How backups are taken and kept, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupPolicy {
    /// The cron expression of scheduled backups (UTC), if any.
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub keep_last: usize,
    pub keep_days: u32,
}
