//! The deploy history in the store: a row per deploy, its steps and its scrubbed log. Written by the
//! running deploy (`ssr.rs`), read by the pages and the live stream.

use super::plan::PlannedStep;
use super::ssr::ProjectFacts;
use super::{Deploy, DeployLine, DeployOptions, DeployOutcome, DeployStep, StepStatus};
use crate::compose::process::ProcessGroup;
use crate::store::{Store, StoreError, now_text, parse_time, query_failed, time_text};

/// A row of `deploys` as the history reads it.
#[derive(sqlx::FromRow)]
struct DeployRow {
    id: i64,
    actor: String,
    started_at: String,
    finished_at: Option<String>,
    options: String,
    outcome: String,
    summary: String,
    git_commit: Option<String>,
    to_commit: Option<String>,
    change_card: Option<String>,
    version: Option<String>,
    env_sha256: Option<String>,
    compose_sha256: Option<String>,
    images: String,
    downtime: Option<String>,
}

/// The columns `DeployRow` reads.
const DEPLOY_COLUMNS: &str = "id, actor, started_at, finished_at, options, outcome, summary, git_commit, \
     to_commit, change_card, version, env_sha256, compose_sha256, images, downtime";

/// `DEPLOY_COLUMNS` as the history's rows read them: no change card (a deploy's commits and files) and
/// no images, which only a deploy's own page shows.
const HISTORY_ROW_COLUMNS: &str = "id, actor, started_at, finished_at, options, outcome, summary, \
     git_commit, to_commit, NULL AS change_card, version, env_sha256, compose_sha256, '[]' AS images, \
     downtime";

impl Store {
    pub(super) async fn insert_deploy(
        &self,
        actor: &str,
        options: &DeployOptions,
        plan: &[PlannedStep],
        facts: &ProjectFacts,
    ) -> Result<i64, StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(query_failed("begin deploy"))?;
        let id = sqlx::query(
            "INSERT INTO deploys (actor, started_at, options, outcome, git_commit, version, env_sha256,
                                  compose_sha256, owner_pid, env_fingerprints, kind)
             VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(actor)
        .bind(now_text())
        .bind(serde_json::to_string(options).unwrap_or_default())
        .bind(&facts.git_commit)
        .bind(&facts.version)
        .bind(&facts.env_sha256)
        .bind(&facts.compose_sha256)
        .bind(std::process::id())
        .bind(serde_json::to_string(&facts.env_fingerprints).unwrap_or_default())
        .bind(options.kind())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert deploy"))?
        .last_insert_rowid();
        for (position, step) in plan.iter().enumerate() {
            sqlx::query("INSERT INTO deploy_steps (deploy_id, position, name, status) VALUES (?, ?, ?, 'pending')")
                .bind(id)
                .bind(position as i64)
                .bind(step.name)
                .execute(&mut *tx)
                .await
                .map_err(query_failed("insert deploy step"))?;
        }
        tx.commit().await.map_err(query_failed("commit deploy"))?;
        Ok(id)
    }

    pub(super) async fn update_deploy_step(
        &self,
        id: i64,
        position: usize,
        step: &DeployStep,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deploy_steps SET status = ?, exit_code = ?, started_at = ?, duration_ms = ?
             WHERE deploy_id = ? AND position = ?",
        )
        .bind(step.status.as_str())
        .bind(step.exit_code)
        .bind(step.started_at.map(|t| time_text(&t)))
        .bind(step.duration_ms.map(|d| d as i64))
        .bind(id)
        .bind(position as i64)
        .execute(self.pool())
        .await
        .map_err(query_failed("update deploy step"))?;
        Ok(())
    }

    pub(super) async fn append_deploy_line(
        &self,
        id: i64,
        line: &DeployLine,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO deploy_log (deploy_id, seq, step, stderr, at, text) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(id)
            .bind(line.seq as i64)
            .bind(line.step as i64)
            .bind(line.stderr)
            .bind(now_text())
            .bind(&line.text)
            .execute(self.pool())
            .await
            .map_err(query_failed("append deploy log"))?;
        Ok(())
    }

    pub(super) async fn finish_deploy(
        &self,
        id: i64,
        outcome: DeployOutcome,
        summary: &str,
        images: &[(String, String)],
        downtime: Option<&super::Downtime>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deploys SET outcome = ?, summary = ?, finished_at = ?, images = ?, downtime = ? \
             WHERE id = ?",
        )
        .bind(outcome.as_str())
        .bind(summary)
        .bind(now_text())
        .bind(serde_json::to_string(images).unwrap_or_default())
        .bind(downtime.and_then(|d| serde_json::to_string(d).ok()))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_failed("finish deploy"))?;
        Ok(())
    }

    pub(super) async fn set_child_group(
        &self,
        id: i64,
        group: Option<u32>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deploys SET child_group = ? WHERE id = ?")
            .bind(group.map(i64::from))
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record deploy child"))?;
        Ok(())
    }

    /// The deploy (or restore) running now, in this process or another one: id, who, when, which.
    pub async fn running_deploy(
        &self,
    ) -> Result<Option<(i64, String, String, String)>, StoreError> {
        sqlx::query_as("SELECT id, actor, started_at, kind FROM deploys WHERE outcome = 'running'")
            .fetch_optional(self.pool())
            .await
            .map_err(query_failed("find the running deploy"))
    }

    /// Deploys a process that is gone left running become interrupted, and the compose commands they
    /// left running are stopped; returns their ids. A deploy another live epsm-ops process runs (the
    /// server, or `epsm-ops deploy`) is left alone.
    pub async fn interrupt_running_deploys(&self) -> Result<Vec<i64>, StoreError> {
        let running: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, owner_pid, child_group FROM deploys WHERE outcome = 'running'",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("find running deploys"))?;
        let orphaned: Vec<(i64, Option<i64>)> = running
            .into_iter()
            .filter(|(_, owner, _)| !owner.is_some_and(owner_alive))
            .map(|(id, _, group)| (id, group))
            .collect();
        for group in orphaned.iter().filter_map(|(_, g)| *g) {
            // Only if that process is still a compose command (after a reboot the number may be reused).
            let cmdline = std::fs::read(format!("/proc/{group}/cmdline")).unwrap_or_default();
            let is_compose = String::from_utf8_lossy(&cmdline).contains("compose");
            if let Ok(pid) = u32::try_from(group)
                && is_compose
            {
                tracing::warn!("stopping process group {pid} left by an interrupted deploy");
                drop(ProcessGroup(Some(pid)));
            }
        }
        let mut ids = Vec::new();
        for (id, _) in orphaned {
            let done: Option<(i64,)> = sqlx::query_as(
                "UPDATE deploys SET outcome = 'interrupted', finished_at = ?,
                        summary = 'interrupted: the console stopped while it ran; the stack may be in any state of the step that ran',
                        child_group = NULL
                 WHERE id = ? AND outcome = 'running' RETURNING id",
            )
            .bind(now_text())
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_failed("interrupt running deploys"))?;
            if let Some((id,)) = done {
                sqlx::query(
                    "UPDATE deploy_steps SET status = 'cancelled' WHERE deploy_id = ? AND status = 'running'",
                )
                .bind(id)
                .execute(self.pool())
                .await
                .map_err(query_failed("interrupt running steps"))?;
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// At most `limit` lines of a deploy's log after `seq`, in order (a viewer following a deploy
    /// another process runs reads them as they are written; the raw log is read page by page).
    pub async fn deploy_log_after(
        &self,
        id: i64,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<DeployLine>, StoreError> {
        let rows: Vec<(i64, i64, bool, String)> = sqlx::query_as(
            "SELECT seq, step, stderr, text FROM deploy_log WHERE deploy_id = ? AND seq > ?
             ORDER BY seq LIMIT ?",
        )
        .bind(id)
        .bind(seq as i64)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read deploy log"))?;
        Ok(rows.into_iter().map(log_line).collect())
    }

    /// The id and env-file sha256 of the newest successful deploy, if any (what the environment
    /// audit's drift check and a backup's "deploy current at the time" read).
    pub async fn last_succeeded_deploy_env(
        &self,
    ) -> Result<Option<(i64, Option<String>)>, StoreError> {
        sqlx::query_as(
            "SELECT id, env_sha256 FROM deploys WHERE outcome = 'succeeded' AND kind = 'deploy'
             ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("read the last successful deploy"))
    }

    /// The newest deploys, newest first, with their steps.
    pub async fn deploys(
        &self,
        outcome: Option<DeployOutcome>,
        limit: u32,
    ) -> Result<Vec<Deploy>, StoreError> {
        let rows = self
            .deploy_rows(DEPLOY_COLUMNS, outcome, None, limit)
            .await?;
        // The listed deploys' steps in one query, not one per deploy: each deploy's image step lists
        // every succeeded one before it.
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let step_rows: Vec<ListedStepRow> = sqlx::query_as(
            "SELECT deploy_id, name, status, exit_code, started_at, duration_ms FROM deploy_steps
             WHERE deploy_id IN (SELECT value FROM json_each(?)) ORDER BY deploy_id, position",
        )
        .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read deploy steps"))?;
        let mut steps: std::collections::HashMap<i64, Vec<DeployStep>> =
            std::collections::HashMap::with_capacity(rows.len());
        for row in step_rows {
            steps
                .entry(row.deploy_id)
                .or_default()
                .push(DeployStep::from(row.step));
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let steps = steps.remove(&row.id).unwrap_or_default();
                deploy_from_row(row, steps)
            })
            .collect())
    }

    /// The newest deploys (older than deploy `before` when given), newest first, as the history's
    /// rows show them: without their steps, change cards and images (not read, not decoded), which a
    /// deploy's own page reads.
    pub async fn deploy_history_rows(
        &self,
        outcome: Option<DeployOutcome>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Deploy>, StoreError> {
        let rows = self
            .deploy_rows(HISTORY_ROW_COLUMNS, outcome, before, limit)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| deploy_from_row(row, Vec::new()))
            .collect())
    }

    /// The newest rows of `deploys` (`columns` of them), newest first (only those that ended so when
    /// `outcome` is given, only those older than deploy `before` when that is).
    async fn deploy_rows(
        &self,
        columns: &str,
        outcome: Option<DeployOutcome>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeployRow>, StoreError> {
        sqlx::query_as(&format!(
            "SELECT {columns} FROM deploys WHERE (?1 IS NULL OR outcome = ?1) \
             AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .bind(outcome.map(DeployOutcome::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("list deploys"))
    }

    pub async fn deploy(&self, id: i64) -> Result<Option<Deploy>, StoreError> {
        let row: Option<DeployRow> = sqlx::query_as(&format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("read deploy"))?;
        match row {
            Some(row) => {
                let steps = self.deploy_steps(id).await?;
                Ok(Some(deploy_from_row(row, steps)))
            }
            None => Ok(None),
        }
    }

    async fn deploy_steps(&self, id: i64) -> Result<Vec<DeployStep>, StoreError> {
        let rows: Vec<StepRow> = sqlx::query_as(
            "SELECT name, status, exit_code, started_at, duration_ms FROM deploy_steps
             WHERE deploy_id = ? ORDER BY position",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read deploy steps"))?;
        Ok(rows.into_iter().map(DeployStep::from).collect())
    }

    /// The change card the deploy's preflight made.
    pub(super) async fn set_change_card(
        &self,
        id: i64,
        card: &super::changes::ChangeCard,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deploys SET change_card = ? WHERE id = ?")
            .bind(serde_json::to_string(card).unwrap_or_default())
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record the deploy's change card"))?;
        Ok(())
    }

    /// The env file's keys and value fingerprints the last successful deploy recorded, with its id.
    pub(super) async fn last_env_fingerprints(
        &self,
    ) -> Result<Option<(i64, std::collections::BTreeMap<String, String>)>, StoreError> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT id, env_fingerprints FROM deploys WHERE outcome = 'succeeded' AND kind = 'deploy'
             AND env_fingerprints IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("read the last deploy's env keys"))?;
        Ok(row.and_then(|(id, keys)| Some((id, serde_json::from_str(keys.as_deref()?).ok()?))))
    }

    /// The commit the deploy's source step checked out.
    pub(super) async fn set_to_commit(&self, id: i64, commit: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE deploys SET to_commit = ? WHERE id = ?")
            .bind(commit)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record the deploy's commit"))?;
        Ok(())
    }

    /// A deploy's stored log, in order.
    pub async fn deploy_log(&self, id: i64) -> Result<Vec<DeployLine>, StoreError> {
        let rows: Vec<(i64, i64, bool, String)> = sqlx::query_as(
            "SELECT seq, step, stderr, text FROM deploy_log WHERE deploy_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read deploy log"))?;
        Ok(rows.into_iter().map(log_line).collect())
    }

    /// The last `n` lines of a deploy's log, in order, and how many lines come before them.
    pub async fn deploy_log_tail(
        &self,
        id: i64,
        n: usize,
    ) -> Result<(Vec<DeployLine>, u64), StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM deploy_log WHERE deploy_id = ?")
            .bind(id)
            .fetch_one(self.pool())
            .await
            .map_err(query_failed("count deploy log"))?;
        let mut rows: Vec<(i64, i64, bool, String)> = sqlx::query_as(
            "SELECT seq, step, stderr, text FROM deploy_log WHERE deploy_id = ?
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(id)
        .bind(n as i64)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read deploy log"))?;
        rows.reverse();
        let earlier = (total as u64).saturating_sub(rows.len() as u64);
        Ok((rows.into_iter().map(log_line).collect(), earlier))
    }
}

fn log_line((seq, step, stderr, text): (i64, i64, bool, String)) -> DeployLine {
    DeployLine {
        seq: seq.max(0) as u64,
        step: step.max(0) as usize,
        stderr,
        text,
    }
}

/// Whether the process that owns a running deploy is still an epsm-ops process (after a reboot the
/// number may belong to another program).
fn owner_alive(pid: i64) -> bool {
    if pid == i64::from(std::process::id()) {
        // This process is starting: whatever it ran before is gone.
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("epsm-ops"))
}

/// A `deploy_steps` row as stored.
#[derive(sqlx::FromRow)]
struct StepRow {
    name: String,
    status: String,
    exit_code: Option<i64>,
    started_at: Option<String>,
    duration_ms: Option<i64>,
}

/// A `deploy_steps` row with its deploy's id, as a listing of many deploys reads it.
#[derive(sqlx::FromRow)]
struct ListedStepRow {
    deploy_id: i64,
    #[sqlx(flatten)]
    step: StepRow,
}

impl From<StepRow> for DeployStep {
    fn from(row: StepRow) -> DeployStep {
        DeployStep {
            name: row.name,
            // The store holds only these names (a CHECK constraint).
            status: row.status.parse().unwrap_or(StepStatus::Failed),
            exit_code: row.exit_code,
            started_at: row.started_at.as_deref().map(parse_time),
            duration_ms: row.duration_ms.map(|d| d.max(0) as u64),
        }
    }
}

fn deploy_from_row(row: DeployRow, steps: Vec<DeployStep>) -> Deploy {
    Deploy {
        id: row.id,
        actor: row.actor,
        started_at: parse_time(&row.started_at),
        finished_at: row.finished_at.as_deref().map(parse_time),
        options: serde_json::from_str(&row.options).unwrap_or_default(),
        // The store holds only these names (a CHECK constraint).
        outcome: row.outcome.parse().unwrap_or(DeployOutcome::Failed),
        summary: row.summary,
        git_commit: row.git_commit,
        to_commit: row.to_commit,
        change_card: row
            .change_card
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
        version: row.version,
        env_sha256: row.env_sha256,
        compose_sha256: row.compose_sha256,
        images: serde_json::from_str(&row.images).unwrap_or_default(),
        steps,
        downtime: row
            .downtime
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::plan::plan;
    use chrono::Utc;

    fn facts() -> ProjectFacts {
        ProjectFacts {
            git_commit: Some("abc".into()),
            version: None,
            env_sha256: None,
            compose_sha256: None,
            env_fingerprints: [("DEBUG".to_string(), "ab12".to_string())].into(),
        }
    }

    #[tokio::test]
    async fn the_store_keeps_steps_lines_and_outcome_and_interrupts_what_a_crash_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let options = DeployOptions {
            skip_seed: true,
            ..Default::default()
        };
        let steps = plan(&options, &crate::config::Config::default().deploy);
        let id = store
            .insert_deploy("ada", &options, &steps, &facts())
            .await
            .unwrap();
        // The store itself refuses a second running deploy.
        assert!(
            store
                .insert_deploy("bob", &options, &steps, &facts())
                .await
                .is_err()
        );
        let running = DeployStep {
            name: "down".into(),
            status: StepStatus::Running,
            exit_code: None,
            started_at: Some(Utc::now()),
            duration_ms: None,
        };
        store.update_deploy_step(id, 1, &running).await.unwrap();
        let line = DeployLine {
            seq: 1,
            step: 1,
            stderr: false,
            text: "Container x Stopped".into(),
        };
        store.append_deploy_line(id, &line).await.unwrap();

        assert_eq!(store.interrupt_running_deploys().await.unwrap(), vec![id]);
        let d = store.deploy(id).await.unwrap().unwrap();
        assert_eq!(d.outcome, DeployOutcome::Interrupted);
        assert_eq!(d.options, options);
        assert_eq!(d.steps.len(), steps.len());
        assert_eq!(d.steps[1].status, StepStatus::Cancelled);
        assert_eq!(d.steps[0].status, StepStatus::Pending);
        assert_eq!(store.deploy_log(id).await.unwrap(), vec![line]);
        assert!(d.finished_at.is_some());

        // The lock is free: a new deploy may be recorded, and it finishes.
        let next = store
            .insert_deploy("bob", &options, &steps, &facts())
            .await
            .unwrap();
        store
            .finish_deploy(
                next,
                DeployOutcome::Succeeded,
                "ok",
                &[("backend".into(), "sha256:1".into())],
                Some(&super::super::Downtime {
                    url: "http://epsm/".into(),
                    total_ms: 2250,
                    probes: 40,
                    failed_probes: 9,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        let list = store.deploys(None, 10).await.unwrap();
        assert_eq!(
            list.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![next, id]
        );
        // The listing reads every deploy's steps in one query: each gets its own, in order, as a
        // read of that deploy alone gives them (the two differ: the first was interrupted).
        assert_ne!(list[0].steps, list[1].steps);
        for listed in &list {
            let alone = store.deploy(listed.id).await.unwrap().unwrap();
            assert_eq!(listed.steps, alone.steps, "deploy #{}", listed.id);
        }
        let failed = store
            .deploys(Some(DeployOutcome::Succeeded), 10)
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        // The commit the source step checked out is kept beside the one it started from.
        store.set_to_commit(next, "def").await.unwrap();
        let d = store.deploy(next).await.unwrap().unwrap();
        assert_eq!(
            (d.git_commit.as_deref(), d.to_commit.as_deref()),
            (Some("abc"), Some("def"))
        );
        assert_eq!(
            failed[0].images,
            vec![("backend".to_string(), "sha256:1".to_string())]
        );
        // The history's rows: the same deploys, without their steps and images.
        let rows = store
            .deploy_history_rows(Some(DeployOutcome::Succeeded), None, 10)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].id, &rows[0].summary), (next, &failed[0].summary));
        assert!(
            rows[0].steps.is_empty() && rows[0].images.is_empty() && !failed[0].steps.is_empty()
        );
        // A page of them: one at a time, the older page after the newest one's last row.
        let newest = store.deploy_history_rows(None, None, 1).await.unwrap();
        let older = store
            .deploy_history_rows(None, Some(newest[0].id), 1)
            .await
            .unwrap();
        let oldest = store
            .deploy_history_rows(None, Some(older[0].id), 1)
            .await
            .unwrap();
        assert_eq!(
            (newest[0].id, older[0].id, oldest.len()),
            (next, id, 0),
            "pages follow each other and end"
        );
        assert_eq!(
            d.downtime.map(|d| (d.total_ms, d.failed_probes)),
            Some((2250, 9)),
            "the measured downtime is kept"
        );
    }

    #[tokio::test]
    async fn a_long_log_is_read_as_its_tail_and_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let options = DeployOptions::default();
        let steps = plan(&options, &crate::config::Config::default().deploy);
        let id = store
            .insert_deploy("ada", &options, &steps, &facts())
            .await
            .unwrap();
        for seq in 1..=5000u64 {
            let line = DeployLine {
                seq,
                step: 3,
                stderr: false,
                text: format!("line {seq}"),
            };
            store.append_deploy_line(id, &line).await.unwrap();
        }
        let (tail, earlier) = store.deploy_log_tail(id, 2000).await.unwrap();
        assert_eq!((tail.len(), earlier), (2000, 3000));
        assert_eq!((tail[0].seq, tail[1999].seq), (3001, 5000));
        let page = store.deploy_log_after(id, 4500, 2000).await.unwrap();
        assert_eq!((page.len(), page[0].seq), (500, 4501));
        let page = store.deploy_log_after(id, 0, 2000).await.unwrap();
        assert_eq!((page.len(), page[1999].seq), (2000, 2000));
    }
}
