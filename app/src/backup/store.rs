//! The `backups` table: a record per backup, written as it starts, progresses and ends.

use super::ssr::Dumped;
use super::{Backup, BackupFormat, BackupOutcome};
use crate::store::{Store, StoreError, now_text, parse_time, query_failed};

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
        }
    }
}

const COLUMNS: &str = "id, actor, started_at, finished_at, database, format, outcome, reason, file_name, \
                       size_bytes, sha256, duration_ms, deploy_id";

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
        let (outcome, reason, file, size, sha) = match result {
            Ok(d) => (
                "succeeded",
                "",
                Some(d.file_name.as_str()),
                Some(d.size_bytes as i64),
                Some(d.sha256.as_str()),
            ),
            Err(reason) => ("failed", reason, None, None, None),
        };
        sqlx::query(
            "UPDATE backups SET outcome = ?, reason = ?, file_name = ?, size_bytes = ?, sha256 = ?,
                    duration_ms = ?, finished_at = ? WHERE id = ?",
        )
        .bind(outcome)
        .bind(reason)
        .bind(file)
        .bind(size)
        .bind(sha)
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
}
