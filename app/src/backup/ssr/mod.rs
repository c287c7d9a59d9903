//! Running a backup: `pg_dump` through the Docker API exec, its output written straight to a
//! temporary file (hashed and counted on the way: the count is the progress the page shows), fsynced,
//! read back by `pg_restore --list` (or checked for the dump's closing line, for plain SQL), and only
//! then renamed into place. Any failure leaves no file and a failed record with the reason.
//!
//! One backup at a time per backups directory, across processes (the server, its schedule and the
//! `epsm-ops backup` command): a lock file in the directory is held while a dump runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Backup, BackupFormat, BackupOutcome};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::backup::store::CheckKind;
use crate::config::Config;
use crate::engine::ssr::Engine;
use crate::environment::secrets::Masker;
use crate::store::{Store, StoreError};

mod counts;
mod drill;
mod dump;
mod offsite;
pub(crate) mod pg;

pub use drill::{DrillOutcome, drill_for_page, run_drill_schedule};
pub(super) use dump::Dumped;
use dump::{Dumper, lock_path};
pub use dump::{STOP_DUMP_WITHIN, STOPPED_HALF_WAY};
pub(crate) use dump::{conninfo, terminate_session};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup #{id} failed: {reason}")]
    Failed { id: i64, reason: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The backups service, built once per process and shared by the server functions, the schedule, a
/// deploy's "back up first" step and the command line. It owns the one-at-a-time turn.
pub struct Backups {
    config: Arc<Config>,
    store: Store,
    masker: Arc<Masker>,
    /// One backup at a time in this process (the lock file orders processes).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// One restore drill at a time.
    drill_turn: tokio::sync::Mutex<()>,
    /// Where verified backups are copied off the host (None: not configured).
    offsite: Option<Arc<offsite::Offsite>>,
    /// The off-site copies running (one at a time, in order), for a command that must wait for them.
    copies: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    copy_turn: Arc<tokio::sync::Mutex<()>>,
    dumper: Dumper,
}

impl Backups {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        engine: Arc<Engine>,
        masker: Arc<Masker>,
    ) -> Arc<Backups> {
        let offsite = offsite::Offsite::from_config(&config).map(Arc::new);
        Arc::new(Backups {
            offsite,
            dumper: Dumper {
                config: config.clone(),
                store: store.clone(),
                engine,
            },
            config,
            store,
            masker,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            drill_turn: tokio::sync::Mutex::new(()),
            copies: std::sync::Mutex::new(Vec::new()),
            copy_turn: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The backups, newest first (a running one's size is its bytes so far).
    pub async fn list(&self, limit: u32) -> Result<Vec<Backup>, StoreError> {
        self.store.backups(limit).await
    }

    /// One backup's record.
    pub async fn get(&self, id: i64) -> Result<Option<Backup>, StoreError> {
        self.store.backup(id).await
    }

    /// The configured schedule and retention, with the next scheduled time.
    pub fn policy(&self) -> super::BackupPolicy {
        let policy = &self.config.backups;
        let cron = policy.cron();
        super::BackupPolicy {
            schedule: cron.as_ref().map(|c| c.pattern.to_string()),
            next_run: cron.and_then(|c| next_run(&c, Utc::now())),
            keep_last: policy.keep_last,
            keep_days: policy.keep_days,
        }
    }

    /// Deletes a successful backup by hand (the caller checked the admin role): refused, and audited
    /// as refused, unless `confirm` is the backup's file name.
    pub async fn delete_confirmed(
        &self,
        actor: &str,
        id: i64,
        confirm: &str,
    ) -> Result<(), crate::error::AppError> {
        use crate::error::AppError;
        let backup = self
            .store
            .backup(id)
            .await?
            .filter(|b| b.outcome == BackupOutcome::Succeeded)
            .ok_or_else(|| AppError::NotFound(format!("no backup #{id} to delete")))?;
        let name = backup.file_name.unwrap_or_default();
        if confirm.trim() != name {
            self.store
                .record(AuditEvent {
                    actor: actor.into(),
                    action: "backup.delete".into(),
                    target: format!("backup #{id}"),
                    outcome: AuditOutcome::Refused,
                    detail: "the file name was not typed".into(),
                })
                .await?;
            return Err(AppError::Invalid(format!(
                "type the file name ({name}) to confirm"
            )));
        }
        delete_backup(self, id, actor, "deleted by hand")
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))
    }

    /// Waits for the off-site copies this process started (the command line, before it exits).
    pub async fn wait_for_copies(&self) {
        let running = std::mem::take(&mut *self.copies.lock().unwrap_or_else(|e| e.into_inner()));
        for copy in running {
            let _ = copy.await;
        }
    }

    /// Copies backup `id` off site (when configured), in a task of its own: a deploy's or the page's
    /// backup does not wait for an upload. The row says "copying" until it is copied and checked.
    async fn start_copy(&self, id: i64, done: &Dumped, actor: &str) -> Result<(), StoreError> {
        let Some(offsite) = self.offsite.clone() else {
            return Ok(());
        };
        let remote = offsite.remote_path(&done.file_name);
        self.store
            .set_check(id, CheckKind::Copy, None, &format!("copying to {remote}"))
            .await?;
        let path = self.config.backups_dir().join(&done.file_name);
        let (name, sha) = (done.file_name.clone(), done.sha256.clone());
        let (store, config, turn, actor) = (
            self.store.clone(),
            self.config.clone(),
            self.copy_turn.clone(),
            actor.to_string(),
        );
        let scrubber = self.masker.env_file(&self.config).1;
        let task = tokio::spawn(async move {
            let _turn = turn.lock().await;
            let result = offsite.copy(&path, &name, &sha).await;
            let (ok, detail) = match result {
                Ok(detail) => (true, detail),
                Err(why) => (
                    false,
                    scrubber.scrub(&format!("the copy to {remote} failed: {why}")),
                ),
            };
            if !ok {
                tracing::error!(id, "off-site copy: {detail}");
                let origin = crate::alerts::events::Origin::of(&config);
                let message = crate::alerts::Message::check_failed(
                    crate::alerts::EventKind::CopyFailed,
                    id,
                    &detail,
                    &origin,
                    chrono::Utc::now(),
                );
                crate::alerts::events::notify(&config, &store, message).await;
            }
            let recorded = store
                .set_check(id, CheckKind::Copy, Some(ok), &detail)
                .await;
            let audited = store
                .record(AuditEvent {
                    actor,
                    action: "backup.copy".into(),
                    target: format!("backup #{id}"),
                    outcome: if ok {
                        AuditOutcome::Ok
                    } else {
                        AuditOutcome::Failed
                    },
                    detail,
                })
                .await;
            if let Err(e) = recorded.and(audited.map(drop)) {
                tracing::error!(id, "off-site copy: cannot record it: {e}");
            }
        });
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.retain(|c| !c.is_finished());
        copies.push(task);
        Ok(())
    }

    /// Waits until no other backup of this process runs.
    pub async fn wait_turn(&self) -> Turn {
        Turn {
            _held: Arc::new(self.turn.clone().lock_owned().await),
        }
    }

    /// The turn now, or None while another backup (or a restore) of this process runs.
    pub fn turn_now(&self) -> Option<Turn> {
        self.turn.clone().try_lock_owned().ok().map(|held| Turn {
            _held: Arc::new(held),
        })
    }

    /// Why the turn is taken, in words: the running backup, or the restore that holds it.
    pub async fn busy_reason(&self) -> Result<String, StoreError> {
        let running = self
            .store
            .backups(20)
            .await?
            .into_iter()
            .find(|b| b.outcome == BackupOutcome::Running);
        if let Some(b) = running {
            return Ok(format!(
                "backup #{} (by {}) is running; its row shows its progress",
                b.id, b.actor
            ));
        }
        Ok(match self.store.running_deploy().await? {
            Some((id, by, _, kind)) if kind == "restore" => {
                format!("restore #{id} (by {by}) is running: backups wait until it ends")
            }
            Some(_) => "another backup is running".to_string(),
            None => "another backup is running".to_string(),
        })
    }
}

/// The database user and name a dump or restore connects as: the env file's `DB_USER` /
/// `POSTGRES_USER` and `DB_NAME` / `POSTGRES_DB` (PostgreSQL's own defaults otherwise).
pub fn database_login(env: &std::collections::BTreeMap<String, String>) -> (String, String) {
    let value = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
            .cloned()
    };
    let user = value(&["DB_USER", "POSTGRES_USER"]).unwrap_or_else(|| "postgres".into());
    let database = value(&["DB_NAME", "POSTGRES_DB"]).unwrap_or_else(|| user.clone());
    (user, database)
}

/// Backups a stopped process left `running` are marked failed and their partial files removed, unless
/// a backup is running right now in another process (it holds the lock). Called at start.
pub async fn recover_interrupted(state: &Backups) -> Result<usize, StoreError> {
    let dir = state.config.backups_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        // The first backup reports the directory problem with its reason.
        return Ok(0);
    }
    let Ok(lock) = crate::files::open_lock_file(&lock_path(&dir)) else {
        return Ok(0);
    };
    if lock.try_lock().is_err() {
        return Ok(0);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".partial-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    state.store.interrupt_drills().await?;
    state.store.interrupt_backups().await
}

/// This process's turn to back up (backups run one at a time; the lock file orders processes). A
/// restore holds it from start to end and lends a clone to its safety backup: the turn is free again
/// when the last clone goes.
#[derive(Clone)]
pub struct Turn {
    _held: Arc<tokio::sync::OwnedMutexGuard<()>>,
}

/// A backup whose record exists (`running`) and that has its turn; `run` takes it.
pub struct Started {
    pub id: i64,
    actor: String,
    user: String,
    database: String,
    format: BackupFormat,
    env: std::collections::BTreeMap<String, String>,
    /// Whether the retention policy runs after it (not after a restore's safety backup: it could
    /// delete the very backup being restored).
    retention: bool,
    _turn: Turn,
}

/// Backs up the project's database now, waiting for its turn; returns the record (succeeded or failed).
pub async fn backup_now(
    state: &Backups,
    actor: &str,
    format: BackupFormat,
) -> Result<Backup, BackupError> {
    begin(state, state.wait_turn().await, actor, format)
        .await?
        .run(state)
        .await
}

/// Records a backup as running (who, database, format, the deploy that is current).
pub async fn begin(
    state: &Backups,
    turn: Turn,
    actor: &str,
    format: BackupFormat,
) -> Result<Started, BackupError> {
    let env = crate::environment::disk::env_values(&state.config);
    let (user, database) = database_login(&env);
    let deploy_id = state
        .store
        .last_succeeded_deploy_env()
        .await?
        .map(|(id, _)| id);
    let id = state
        .store
        .insert_backup(actor, &database, format, deploy_id)
        .await?;
    Ok(Started {
        id,
        actor: actor.into(),
        user,
        database,
        format,
        env,
        retention: true,
        _turn: turn,
    })
}

impl Started {
    /// This backup deletes nothing by the retention policy (the next backup applies it).
    pub fn without_retention(mut self) -> Started {
        self.retention = false;
        self
    }

    /// Dumps, verifies and keeps the backup (or records why not), audits it, applies retention.
    pub async fn run(self, state: &Backups) -> Result<Backup, BackupError> {
        let Started {
            id,
            actor,
            user,
            database,
            format,
            env,
            retention,
            _turn,
        } = self;
        let scrubber = state
            .masker
            .scrubber(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let started = Instant::now();
        let dir = state.config.backups_dir();
        let result = dump::dump(&state.dumper, &dir, id, &user, &database, format).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (outcome, detail) = match &result {
            Ok(done) => {
                state.store.finish_backup(id, Ok(done), duration_ms).await?;
                state.start_copy(id, done, &actor).await?;
                (
                    AuditOutcome::Ok,
                    format!(
                        "{} ({} bytes, sha256 {})",
                        done.file_name, done.size_bytes, done.sha256
                    ),
                )
            }
            Err(reason) => {
                let reason = scrubber.scrub(reason);
                state
                    .store
                    .finish_backup(id, Err(&reason), duration_ms)
                    .await?;
                (AuditOutcome::Failed, reason)
            }
        };
        state
            .store
            .record(AuditEvent {
                actor: actor.clone(),
                action: "backup.create".into(),
                target: format!("backup #{id}"),
                outcome,
                detail: detail.clone(),
            })
            .await?;
        if result.is_err() {
            let origin = crate::alerts::events::Origin::of(&state.config);
            let message = crate::alerts::Message::backup_failed(
                id,
                &actor,
                &detail,
                &origin,
                chrono::Utc::now(),
            );
            crate::alerts::events::notify(&state.config, &state.store, message).await;
        }
        if result.is_ok() && retention {
            apply_retention(state, &actor).await?;
        }
        match result {
            Ok(_) => Ok(state.store.backup(id).await?.ok_or(BackupError::Failed {
                id,
                reason: "its record is gone".into(),
            })?),
            Err(_) => Err(BackupError::Failed { id, reason: detail }),
        }
    }
}

/// How long "Back up now" waits for its backup to end before it answers with the running record (the
/// page then follows the backup in the list); below the 30 s a request may take.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// The page's "Back up now": answers with the backup's record, finished (succeeded, or the failure as
/// an error) when it ends within `REPLY_WITHIN`, else running. The backup is the console's own task,
/// not the request's: a closed tab or a timed-out request does not stop it. A second one while one
/// runs is refused, naming it (and audited).
pub async fn start_for_page(
    state: &Arc<Backups>,
    actor: &str,
    format: BackupFormat,
) -> Result<Backup, crate::error::AppError> {
    use crate::error::AppError;
    let Some(turn) = state.turn_now() else {
        let reason = state.busy_reason().await?;
        state
            .store
            .record(AuditEvent {
                actor: actor.into(),
                action: "backup.create".into(),
                target: String::new(),
                outcome: AuditOutcome::Refused,
                detail: reason.clone(),
            })
            .await?;
        return Err(AppError::Invalid(reason));
    };
    let failed = |e: BackupError| AppError::Unavailable(e.to_string());
    let started = begin(state, turn, actor, format).await.map_err(failed)?;
    let id = started.id;
    let task = tokio::spawn({
        let state = Arc::clone(state);
        async move { started.run(&state).await }
    });
    match tokio::time::timeout(REPLY_WITHIN, task).await {
        Ok(Ok(result)) => result.map_err(failed),
        Ok(Err(e)) => Err(AppError::Unavailable(format!("backup #{id} stopped: {e}"))),
        Err(_) => state
            .store
            .backup(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("backup #{id} has no record"))),
    }
}

/// Takes a backup at each time of `backups.schedule` until `stop`; recorded with the actor
/// "schedule". A failure is recorded (and logged) like any other; the next time comes anyway.
pub async fn run_schedule(state: Arc<Backups>, stop: CancellationToken) {
    let Some(cron) = state.config.backups.cron() else {
        return;
    };
    let actor = format!("schedule ({})", cron.pattern);
    on_schedule(&cron, &stop, || async {
        match backup_now(&state, &actor, BackupFormat::Custom).await {
            Ok(b) => tracing::info!(id = b.id, "scheduled backup done"),
            Err(e) => tracing::error!("scheduled backup: {e}"),
        }
    })
    .await
}

/// Runs `job` at each time of `cron` until `stop` (a job that runs long delays the next one).
async fn on_schedule<F: Future<Output = ()>>(
    cron: &croner::Cron,
    stop: &CancellationToken,
    mut job: impl FnMut() -> F,
) {
    loop {
        let Some(next) = next_run(cron, Utc::now()) else {
            tracing::warn!("schedule {} has no next time", cron.pattern);
            return;
        };
        tracing::info!(%next, schedule = %cron.pattern, "next scheduled run");
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        job().await;
    }
}

/// The schedule's next time strictly after `now`.
pub fn next_run(cron: &croner::Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now, false).ok()
}

/// Which successful backups the policy deletes: beyond the newest `keep_last` (0: no count limit), or
/// older than `keep_days` days (0: no age limit). `backups` is newest first.
pub fn to_delete(
    backups: &[Backup],
    keep_last: usize,
    keep_days: u32,
    now: DateTime<Utc>,
) -> Vec<i64> {
    backups
        .iter()
        .filter(|b| b.outcome == BackupOutcome::Succeeded)
        .enumerate()
        .filter(|(rank, b)| {
            (keep_last > 0 && *rank >= keep_last)
                || (keep_days > 0
                    && now - b.started_at > chrono::Duration::days(i64::from(keep_days)))
        })
        .map(|(_, b)| b.id)
        .collect()
}

/// Deletes what the retention policy says, each deletion recorded.
async fn apply_retention(state: &Backups, actor: &str) -> Result<(), BackupError> {
    let policy = &state.config.backups;
    let all = state.store.backups(100_000).await?;
    for id in to_delete(&all, policy.keep_last, policy.keep_days, Utc::now()) {
        delete_backup(
            state,
            id,
            "system",
            &format!("retention policy (after a backup by {actor})"),
        )
        .await?;
    }
    Ok(())
}

/// Removes a backup's file and marks it deleted; recorded in the audit log.
pub async fn delete_backup(
    state: &Backups,
    id: i64,
    actor: &str,
    why: &str,
) -> Result<(), BackupError> {
    let Some(backup) = state.store.backup(id).await? else {
        return Ok(());
    };
    let mut remote = String::new();
    if let (Some(name), Some(offsite)) = (&backup.file_name, &state.offsite)
        && backup.copy.is_some()
    {
        // The remote copy goes with it; one that cannot be deleted is said, not hidden.
        remote = match offsite.delete(name).await {
            Ok(()) => format!("; its copy at {} too", offsite.remote_path(name)),
            Err(e) => format!("; its off-site copy stays: {e}"),
        };
    }
    if let Some(name) = &backup.file_name {
        let path = state.config.backups_dir().join(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BackupError::Failed {
                    id,
                    reason: format!("cannot delete {}: {e}", path.display()),
                });
            }
        }
    }
    state.store.mark_backup_deleted(id).await?;
    state
        .store
        .record(AuditEvent {
            actor: actor.into(),
            action: "backup.delete".into(),
            target: format!("backup #{id}"),
            outcome: AuditOutcome::Ok,
            detail: format!("{} ({why}){remote}", backup.file_name.unwrap_or_default()),
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: i64, outcome: BackupOutcome, days_old: i64, now: DateTime<Utc>) -> Backup {
        Backup {
            id,
            actor: "a".into(),
            started_at: now - chrono::Duration::days(days_old),
            finished_at: None,
            database: "db".into(),
            format: BackupFormat::Custom,
            outcome,
            reason: String::new(),
            file_name: Some(format!("{id}.dump")),
            size_bytes: Some(1),
            sha256: None,
            duration_ms: None,
            deploy_id: None,
            tables_recorded: None,
            drill: None,
            copy: None,
        }
    }

    #[test]
    fn retention_deletes_exactly_the_successful_backups_beyond_count_or_age() {
        let now = Utc::now();
        use BackupOutcome::*;
        // Newest first: 6 (failed), 5, 4, 3 (deleted), 2, 1.
        let list = vec![
            backup(6, Failed, 0, now),
            backup(5, Succeeded, 1, now),
            backup(4, Succeeded, 5, now),
            backup(3, Deleted, 6, now),
            backup(2, Succeeded, 10, now),
            backup(1, Succeeded, 40, now),
        ];
        assert_eq!(
            to_delete(&list, 2, 0, now),
            vec![2, 1],
            "the two newest successful are kept"
        );
        assert_eq!(to_delete(&list, 0, 7, now), vec![2, 1], "older than a week");
        assert_eq!(to_delete(&list, 3, 30, now), vec![1], "either rule deletes");
        assert_eq!(
            to_delete(&list, 0, 0, now),
            Vec::<i64>::new(),
            "no policy, nothing deleted"
        );
    }
}
