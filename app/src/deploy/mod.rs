//! One-click deploy: the guide's procedure as named steps (`plan.rs`), run one at a time by the
//! server (`ssr.rs`) with live, scrubbed output, and every deploy kept in the history. The pages are
//! in `view.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod card;
pub mod changes;
pub mod form;
#[cfg(feature = "ssr")]
pub mod git;
#[cfg(feature = "ssr")]
pub mod plan;
#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
mod store;
pub mod undo;
pub mod view;

/// The options the guide names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployOptions {
    #[serde(default)]
    pub skip_migrations: bool,
    #[serde(default)]
    pub skip_seed: bool,
    /// No `--pull` (where there is no registry to refresh base images from).
    #[serde(default)]
    pub no_pull: bool,
    /// `down --volumes`: DELETES ALL DATA. Admin only, with the project name typed.
    #[serde(default)]
    pub recreate_volumes: bool,
    /// Deploy although the environment audit has error-level findings.
    #[serde(default)]
    pub ignore_audit_errors: bool,
    /// Back up the database before anything is stopped.
    #[serde(default)]
    pub backup_first: bool,
    /// The guide's order: stop the stack, then build (for a host short of disk or memory). Without it
    /// the new images are built while the running version serves, and the stack stops only for the
    /// switch.
    #[serde(default)]
    pub stop_first: bool,
    /// Don't wait for the Celery tasks that run (they are interrupted by the switch).
    #[serde(default)]
    pub no_drain: bool,
    /// A rollback: bring back the images of this earlier successful deploy, without building.
    #[serde(default)]
    pub rollback_of: Option<i64>,
    /// A restore of the database from a backup, run like a deploy (steps, log, history, the same
    /// one-at-a-time lock) in place of one. Admin only, with the database name typed.
    #[serde(default)]
    pub restore: Option<RestoreRequest>,
    /// What to deploy: a branch of the remote, a tag or a commit; unset (or empty): the configured
    /// branch's newest commit.
    #[serde(default)]
    pub git_ref: Option<String>,
    /// Discard changes made on the server to tracked files, and untracked files in the way (the
    /// workflow's `reset --hard`). Admin only, with the project name typed.
    #[serde(default)]
    pub discard_local_changes: bool,
}

impl DeployOptions {
    /// The ref the deployer named, if any (blank counts as none).
    pub fn wanted_ref(&self) -> Option<&str> {
        self.git_ref
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
    }

    /// Options that only an admin may choose, with the project name (a restore: the database name)
    /// typed.
    pub fn destructive(&self) -> bool {
        self.recreate_volumes || self.discard_local_changes || self.restore.is_some()
    }

    /// What this run is, in the audit log's actions and on its page: "deploy" or "restore" (a
    /// rollback with its data is a deploy: it changes the images too).
    pub fn kind(&self) -> &'static str {
        if self.restore.is_some() && self.rollback_of.is_none() {
            "restore"
        } else {
            "deploy"
        }
    }

    /// The options in words, for the audit log and the deploy's page.
    pub fn describe(&self) -> String {
        let parts: Vec<&str> = [
            (self.skip_migrations, "skip migrations"),
            (self.skip_seed, "skip seed"),
            (self.no_pull, "no pull"),
            (self.recreate_volumes, "RECREATE VOLUMES"),
            (self.ignore_audit_errors, "ignore audit errors"),
            (self.backup_first, "back up first"),
            (self.stop_first, "stop before building"),
            (self.no_drain, "don't wait for running tasks"),
            (self.discard_local_changes, "DISCARD LOCAL CHANGES"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        let mut parts: Vec<String> = parts.into_iter().map(String::from).collect();
        if let Some(git_ref) = self.wanted_ref() {
            parts.insert(0, format!("ref {git_ref}"));
        }
        if let Some(id) = self.rollback_of {
            return match &self.restore {
                Some(restore) => format!(
                    "rollback to the images of deploy #{id} and the database of {} (no build)",
                    restore.from.describe()
                ),
                None => format!("rollback to the images of deploy #{id} (no build)"),
            };
        }
        if let Some(restore) = &self.restore {
            return restore.describe();
        }
        if parts.is_empty() {
            "default options".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What a restore brings back, and whether it migrates afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub from: RestoreFrom,
    /// `migrate` after the restore (for a backup older than the running code's migrations).
    #[serde(default)]
    pub migrate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RestoreFrom {
    /// A successful backup of the history, by id.
    Backup(i64),
    /// A dump file on the host (`epsm-ops restore FILE`), custom format or plain SQL.
    File(String),
}

impl RestoreRequest {
    pub fn describe(&self) -> String {
        let migrate = if self.migrate { ", then migrate" } else { "" };
        format!(
            "RESTORE the database from {}{migrate}",
            self.from.describe()
        )
    }
}

impl RestoreFrom {
    pub fn describe(&self) -> String {
        match self {
            RestoreFrom::Backup(id) => format!("backup #{id}"),
            RestoreFrom::File(path) => format!("the file {path}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum DeployOutcome {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The server stopped while it ran.
    Interrupted,
}

impl DeployOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployStep {
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
}

/// A deploy as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    pub id: i64,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub options: DeployOptions,
    pub outcome: DeployOutcome,
    /// Why it failed or what it left, in one scrubbed line; empty while running.
    pub summary: String,
    /// The project directory's commit when the deploy started (what ran before).
    pub git_commit: Option<String>,
    /// The commit its source step checked out (None: no source step, e.g. not a git checkout).
    pub to_commit: Option<String>,
    pub version: Option<String>,
    /// What the deploy changes, as its preflight saw it (None: not a git checkout, or before it).
    pub change_card: Option<changes::ChangeCard>,
    pub env_sha256: Option<String>,
    pub compose_sha256: Option<String>,
    /// The image id of every service after the deploy.
    pub images: Vec<(String, String)>,
    pub steps: Vec<DeployStep>,
    /// How long EPSM's users were without it (None: deploys from before it was measured).
    pub downtime: Option<Downtime>,
}

/// How the public URL answered while a deploy ran, probed from the console every 250 ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Downtime {
    /// The URL probed.
    pub url: String,
    /// Milliseconds it did not answer 200, in all.
    pub total_ms: u64,
    /// The longest stretch of those.
    pub longest_ms: u64,
    /// Of `total_ms`, how long the maintenance page answered instead of an error.
    pub maintenance_ms: u64,
    /// Probes sent, and how many of them did not get a 200.
    pub probes: u32,
    pub failed_probes: u32,
    /// The first probe that did not get a 200, and the first 200 after the last such probe.
    pub first_down: Option<DateTime<Utc>>,
    pub back_at: Option<DateTime<Utc>>,
}

impl Downtime {
    /// In one line, for the log, the summary and the history.
    pub fn describe(&self) -> String {
        let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        if self.probes == 0 {
            return format!("{} was not probed", self.url);
        }
        if self.failed_probes == 0 {
            return format!(
                "{} answered 200 throughout ({} probes every 250 ms)",
                self.url, self.probes
            );
        }
        let maintenance = if self.maintenance_ms > 0 {
            format!(", the maintenance page for {}", secs(self.maintenance_ms))
        } else {
            String::new()
        };
        format!(
            "{} did not answer 200 for {} (longest stretch {}{maintenance}; {} of {} probes every 250 ms)",
            self.url,
            secs(self.total_ms),
            secs(self.longest_ms),
            self.failed_probes,
            self.probes
        )
    }
}

impl Deploy {
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at).num_milliseconds())
    }
}

/// One line of a deploy's output, scrubbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployLine {
    pub seq: u64,
    /// Position of the step that printed it.
    pub step: usize,
    pub stderr: bool,
    pub text: String,
}

/// What a deploy's live stream carries: everything so far first, then each change as it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeployEvent {
    /// This many lines came before the ones that follow and are not sent (the raw log has them).
    Earlier {
        lines: u64,
    },
    Line(DeployLine),
    Step {
        position: usize,
        step: DeployStep,
    },
    Finished {
        outcome: DeployOutcome,
        summary: String,
    },
}

/// Deploys per page of the history (the Deploys page; "Older" shows the next ones).
pub const HISTORY_PAGE: u32 = 50;

/// The most log lines a deploy page holds (and is sent): the newest ones; the raw log has them all.
pub const LOG_WINDOW: usize = 2000;
