//! The `backups` table: a record per backup, written as it starts, progresses and ends.

use super::ssr::Dumped;
use super::{Backup, BackupFormat, BackupOutcome, Check, TableCount};
use crate::store::{Store, StoreError, now_text, parse_time, query_failed};

/// The checks that run after a backup, each with its columns.
#[derive(Clone, Copy)]
pub(crate) enum CheckKind {
    Drill,
    Copy,
}

/// A `backups` row as stored.
#[derive(sqlx::FromRow)]
struct BackupRow {
    id: i64,
    actor: String,
    started_at: String,
    finished_at: Option<String>,
    database: String,
    format: String,
    outcome: String,
    reason: String,
    file_name: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    duration_ms: Option<i64>,
    deploy_id: Option<i64>,
    table_counts: Option<String>,
    drill_at: Option<String>,
    drill_ok: Option<bool>,
    drill_detail: Option<String>,
    copy_at: Option<String>,
    copy_ok: Option<bool>,
    copy_detail: Option<String>,
}

impl From<BackupRow> for Backup {
    fn from(row: BackupRow) -> Backup {
        Backup {
            id: row.id,
            actor: row.actor,
            started_at: parse_time(&row.started_at),
            finished_at: row.finished_at.as_deref().map(parse_time),
            database: row.database,
            // The store holds only these names (CHECK constraints).
            format: row.format.parse().unwrap_or(BackupFormat::Custom),
            outcome: row.outcome.parse().unwrap_or(BackupOutcome::Failed),
            reason: row.reason,
            file_name: row.file_name,
            size_bytes: row.size_bytes.map(|s| s.max(0) as u64),
            sha256: row.sha256,
            duration_ms: row.duration_ms.map(|m| m.max(0) as u64),
            deploy_id: row.deploy_id,
            tables_recorded: row
                .table_counts
                .as_deref()
                .and_then(|t| serde_json::from_str::<Vec<TableCount>>(t).ok())
                .map(|t| t.len()),
            drill: row.drill_at.as_deref().map(|at| Check {
                at: parse_time(at),
                ok: row.drill_ok,
                detail: row.drill_detail.unwrap_or_default(),
            }),
            copy: row.copy_at.as_deref().map(|at| Check {
                at: parse_time(at),
                ok: row.copy_ok,
                detail: row.copy_detail.unwrap_or_default(),
            }),
        }
    }
}

const COLUMNS: &str = "id, actor, started_at, finished_at, database, format, outcome, reason, file_name, \
                       size_bytes, sha256, duration_ms, deploy_id, table_counts, drill_at, drill_ok, \
                       drill_detail, copy_at, copy_ok, copy_detail";

impl Store {
    pub(super) async fn insert_backup(
        &self,
        actor: &str,
        database: &str,
        format: BackupFormat,
        deploy_id: Option<i64>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO backups (actor, started_at, database, format, outcome, deploy_id)
             VALUES (?, ?, ?, ?, 'running', ?)",
        )
        .bind(actor)
        .bind(now_text())
        .bind(database)
        .bind(format.as_str())
        .bind(deploy_id)
        .execute(self.pool())
        .await
        .map_err(query_failed("insert backup"))?
        .last_insert_rowid())
    }

    pub(super) async fn finish_backup(
        &self,
        id: i64,
        result: Result<&Dumped, &str>,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        let (outcome, reason, file, size, sha, counts) = match result {
            Ok(d) => (
                "succeeded",
                "",
                Some(d.file_name.as_str()),
                Some(d.size_bytes as i64),
                Some(d.sha256.as_str()),
                d.counts
                    .as_ref()
                    .map(|c| serde_json::to_string(c).unwrap_or_default()),
            ),
            Err(reason) => ("failed", reason, None, None, None, None),
        };
        sqlx::query(
            "UPDATE backups SET outcome = ?, reason = ?, file_name = ?, size_bytes = ?, sha256 = ?,
                    table_counts = ?, duration_ms = ?, finished_at = ? WHERE id = ?",
        )
        .bind(outcome)
        .bind(reason)
        .bind(file)
        .bind(size)
        .bind(sha)
        .bind(counts)
        .bind(duration_ms as i64)
        .bind(now_text())
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_failed("finish backup"))?;
        Ok(())
    }

    /// A running backup's bytes so far (its size column, until it finishes).
    pub(super) async fn backup_progress(&self, id: i64, bytes: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE backups SET size_bytes = ? WHERE id = ? AND outcome = 'running'")
            .bind(bytes as i64)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record backup progress"))?;
        Ok(())
    }

    /// Marks backups a stopped process left running as failed; returns how many.
    pub(super) async fn interrupt_backups(&self) -> Result<usize, StoreError> {
        Ok(sqlx::query(
            "UPDATE backups SET outcome = 'failed', size_bytes = NULL, finished_at = ?,
                    reason = 'interrupted: the process running it stopped' WHERE outcome = 'running'",
        )
        .bind(now_text())
        .execute(self.pool())
        .await
        .map_err(query_failed("mark interrupted backups"))?
        .rows_affected() as usize)
    }

    pub(super) async fn mark_backup_deleted(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE backups SET outcome = 'deleted' WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("mark backup deleted"))?;
        Ok(())
    }

    pub async fn backups(&self, limit: u32) -> Result<Vec<Backup>, StoreError> {
        let rows: Vec<BackupRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM backups ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("list backups"))?;
        Ok(rows.into_iter().map(Backup::from).collect())
    }

    pub async fn backup(&self, id: i64) -> Result<Option<Backup>, StoreError> {
        let row: Option<BackupRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE id = ?"))
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_failed("read backup"))?;
        Ok(row.map(Backup::from))
    }

    /// The row counts recorded with backup `id` (None: none were).
    pub(super) async fn table_counts(
        &self,
        id: i64,
    ) -> Result<Option<Vec<TableCount>>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT table_counts FROM backups WHERE id = ?")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_failed("read a backup's row counts"))?;
        Ok(row
            .and_then(|(t,)| t)
            .and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Records backup `id`'s `check` (a drill, a copy): started (`ok` None) or ended.
    pub(super) async fn set_check(
        &self,
        id: i64,
        check: CheckKind,
        ok: Option<bool>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (sql, what) = match check {
            CheckKind::Drill => (
                "UPDATE backups SET drill_at = ?, drill_ok = ?, drill_detail = ? WHERE id = ?",
                "record a restore drill",
            ),
            CheckKind::Copy => (
                "UPDATE backups SET copy_at = ?, copy_ok = ?, copy_detail = ? WHERE id = ?",
                "record an off-site copy",
            ),
        };
        sqlx::query(sql)
            .bind(now_text())
            .bind(ok)
            .bind(detail)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed(what))?;
        Ok(())
    }

    /// Drills and off-site copies a stopped process left running are marked failed.
    pub(super) async fn interrupt_drills(&self) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE backups SET drill_ok = 0, drill_detail = 'interrupted: the process running it stopped'
             WHERE drill_at IS NOT NULL AND drill_ok IS NULL",
        )
        .execute(self.pool())
        .await
        .map_err(query_failed("mark interrupted drills"))?;
        sqlx::query(
            "UPDATE backups SET copy_ok = 0, copy_detail = 'interrupted: the process copying it stopped'
             WHERE copy_at IS NOT NULL AND copy_ok IS NULL",
        )
        .execute(self.pool())
        .await
        .map_err(query_failed("mark interrupted copies"))?;
        Ok(())
    }
}
