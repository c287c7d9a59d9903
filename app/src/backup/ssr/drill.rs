//! Restore drills: proof that a backup restores. The newest successful backup is checked against its
//! recorded sha256, restored into a throwaway PostgreSQL container (the `database` service's own
//! image, no network at all, no published port; removed with its volume afterwards, whatever
//! happened), and its tables and row counts compared with those recorded when it was taken. The
//! result is kept on the backup's row and in the audit log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use tokio_util::sync::CancellationToken;

use super::Backups;
use super::counts::{compare, count_tables};
use super::pg::{dump_format, exited, restore_command, restore_tool};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::backup::store::CheckKind;
use crate::backup::{Backup, BackupOutcome};
use crate::error::AppError;

/// How long the scratch database may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The scratch server is asked over TCP on its own loopback: the set-up server an image's entrypoint
/// runs first listens on a socket only, so this answers only once the real one runs.
const LOOPBACK: &str = "127.0.0.1";

/// What a drill found, as its row keeps it.
pub struct DrillOutcome {
    pub backup_id: i64,
    pub ok: bool,
    pub detail: String,
}

impl Backups {
    /// The scratch container's name: one per project, so one left by a crash is found and removed.
    fn drill_container(&self) -> String {
        format!("{}-epsm-ops-drill", self.config.project_name())
    }

    /// Drills the newest successful backup now (one drill at a time; a second is refused). Recorded
    /// on the backup's row and in the audit log as `actor`.
    pub async fn drill_now(&self, actor: &str) -> Result<DrillOutcome, AppError> {
        let Ok(_turn) = self.drill_turn.try_lock() else {
            return Err(AppError::Invalid("a restore test is running".into()));
        };
        let backup = self
            .store
            .backups(1_000)
            .await?
            .into_iter()
            .find(|b| b.outcome == BackupOutcome::Succeeded)
            .ok_or_else(|| AppError::Invalid("there is no backup to test".into()))?;
        self.store
            .set_check(
                backup.id,
                CheckKind::Drill,
                None,
                "restoring into a scratch database",
            )
            .await?;
        let started = Instant::now();
        let result = self.drill(&backup).await;
        let took = format!("{:.1} s", started.elapsed().as_secs_f64());
        let (ok, detail) = match result {
            Ok(found) => (true, format!("restored in {took}: {found}")),
            Err(why) => (false, format!("{why} (after {took})")),
        };
        let scrubber = self.masker.env_file(&self.config).1;
        let detail = scrubber.scrub(&detail);
        self.store
            .set_check(backup.id, CheckKind::Drill, Some(ok), &detail)
            .await?;
        self.store
            .record(AuditEvent {
                actor: actor.into(),
                action: "backup.drill".into(),
                target: format!("backup #{}", backup.id),
                outcome: if ok {
                    AuditOutcome::Ok
                } else {
                    AuditOutcome::Failed
                },
                detail: detail.clone(),
            })
            .await?;
        if !ok {
            let origin = crate::alerts::events::Origin::of(&self.config);
            let message = crate::alerts::Message::check_failed(
                crate::alerts::EventKind::DrillFailed,
                backup.id,
                &detail,
                &origin,
                chrono::Utc::now(),
            );
            crate::alerts::events::notify(&self.config, &self.store, message).await;
        }
        Ok(DrillOutcome {
            backup_id: backup.id,
            ok,
            detail,
        })
    }

    /// The drill of `backup`: Ok with what it found, Err with why it failed. The scratch container
    /// is removed on every path.
    async fn drill(&self, backup: &Backup) -> Result<String, String> {
        let path = self
            .config
            .backups_dir()
            .join(backup.file_name.as_deref().unwrap_or_default());
        let sha = crate::files::sha256_of(&path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if backup.sha256.as_deref() != Some(sha.as_str()) {
            return Err(format!(
                "the file is not the one backed up: its sha256 is {}…, {}… was recorded",
                &sha[..16],
                backup
                    .sha256
                    .as_deref()
                    .unwrap_or("")
                    .get(..16)
                    .unwrap_or("")
            ));
        }
        let format = dump_format(&path).await?;
        let name = self.drill_container();
        // One a crashed drill left behind goes first.
        let _ = self.dumper.engine.stop_and_remove(&name, 0).await;
        let result = self.restore_in_scratch(backup, &path, format, &name).await;
        if let Err(e) = self.dumper.engine.stop_and_remove(&name, 0).await {
            tracing::warn!("restore drill: removing {name}: {e}");
        }
        result
    }

    async fn restore_in_scratch(
        &self,
        backup: &Backup,
        path: &std::path::Path,
        format: crate::backup::BackupFormat,
        name: &str,
    ) -> Result<String, String> {
        let engine = &self.dumper.engine;
        let project = self.config.project_name();
        let live = engine
            .service_container(&project, "database")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the project has no database container to take the image from")?;
        let image = engine
            .inspect_container(&live)
            .await
            .map_err(|e| e.to_string())?
            .image
            .ok_or("the database container has no image")?;
        let (user, database) = super::database_login(&self.masker.env_file(&self.config).0);
        // A password of its own, for a server no network reaches (it is asked on its loopback).
        let password = hex::encode(rand::random::<[u8; 16]>());
        let body = ContainerCreateBody {
            image: Some(image),
            env: Some(vec![
                format!("POSTGRES_USER={user}"),
                format!("POSTGRES_DB={database}"),
                format!("POSTGRES_PASSWORD={password}"),
                format!("PGPASSWORD={password}"),
            ]),
            labels: Some(HashMap::from([(
                "epsm-ops.drill".to_string(),
                project.clone(),
            )])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        engine
            .create_container(name, body)
            .await
            .map_err(|e| e.to_string())?;
        engine
            .start_container(name)
            .await
            .map_err(|e| e.to_string())?;
        self.until_ready(name, &user, &database).await?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let conninfo = format!(
            "host={LOOPBACK} {}",
            super::conninfo(&database, "epsm-ops-drill")
        );
        let cmd = restore_command(format, &user, &conninfo);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let (code, messages) = engine
            .exec_streaming(name, &cmd, &mut tokio::io::sink(), Some(Box::new(file)))
            .await
            .map_err(|e| e.to_string())?;
        if code != Some(0) {
            return Err(exited(restore_tool(format), code, &messages));
        }
        let Some(recorded) = self
            .store
            .table_counts(backup.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(format!(
                "{} exited 0 (no row counts were recorded with this backup: tables not compared)",
                restore_tool(format)
            ));
        };
        let restored = count_tables(engine, name, &user, &conninfo).await?;
        compare(&recorded, &restored)
    }

    /// Waits until the scratch server accepts connections on its loopback.
    async fn until_ready(&self, name: &str, user: &str, database: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let probe = ["pg_isready", "-h", LOOPBACK, "-U", user, "-d", database];
        loop {
            let answered = self
                .dumper
                .engine
                .exec(name, &probe, &[], Duration::from_secs(10))
                .await;
            if answered.as_ref().is_ok_and(|o| o.succeeded()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let why = match answered {
                    Ok(o) => o.stdout.trim().to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(format!(
                    "the scratch database did not start within {} s: {why}",
                    READY_WITHIN.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The page's "Test restore": the drill runs as the console's own task; the answer is the drilled
/// backup's record when the drill ends within the reply time, else with its drill still running (the
/// page then follows the row).
pub async fn drill_for_page(state: &Arc<Backups>, actor: &str) -> Result<Backup, AppError> {
    let task = tokio::spawn({
        let (state, actor) = (Arc::clone(state), actor.to_string());
        async move { state.drill_now(&actor).await }
    });
    let id = match tokio::time::timeout(super::REPLY_WITHIN, task).await {
        Ok(Ok(result)) => result?.backup_id,
        Ok(Err(e)) => {
            return Err(AppError::Unavailable(format!(
                "the restore test stopped: {e}"
            )));
        }
        Err(_) => state
            .store
            .backups(1_000)
            .await?
            .into_iter()
            .find(|b| b.drill.as_ref().is_some_and(|d| d.ok.is_none()))
            .map(|b| b.id)
            .ok_or_else(|| AppError::Unavailable("the restore test has no record".into()))?,
    };
    state
        .store
        .backup(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("backup #{id} has no record")))
}

/// Drills at each time of `backups.drill_schedule` until `stop`; recorded with the actor
/// "drill schedule (...)". A failure is recorded like any other; the next time comes anyway.
pub async fn run_drill_schedule(state: Arc<Backups>, stop: CancellationToken) {
    let Some(cron) = state.config.backups.drill_cron() else {
        return;
    };
    let actor = format!("drill schedule ({})", cron.pattern);
    super::on_schedule(&cron, &stop, || async {
        match state.drill_now(&actor).await {
            Ok(d) if d.ok => tracing::info!(backup = d.backup_id, "restore drill passed"),
            Ok(d) => tracing::error!(backup = d.backup_id, "restore drill failed: {}", d.detail),
            Err(e) => tracing::error!("restore drill: {e}"),
        }
    })
    .await
}
