//! Writing and reading the audit log. Every feature records its actions through `Store::record`.

use super::{AuditEntry, AuditEvent, AuditFilter, AuditOutcome};
use crate::store::{Store, StoreError, now_text, parse_time, query_failed, time_text};

/// The most of an actor or target kept, and of a detail: what an anonymous poster controls (a
/// refusal's reason may quote their input) never grows a row past this.
pub const MAX_NAME_CHARS: usize = 300;
pub const MAX_DETAIL_CHARS: usize = 2000;

impl Store {
    /// Records one event, stamped now. Returns its id.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, StoreError> {
        self.insert_audit(event, None).await
    }

    async fn insert_audit(
        &self,
        event: AuditEvent,
        fold_key: Option<&str>,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, fold_key)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now_text())
        .bind(capped(&event.actor, MAX_NAME_CHARS))
        .bind(capped(&event.action, MAX_NAME_CHARS))
        .bind(capped(&event.target, MAX_NAME_CHARS))
        .bind(event.outcome.as_str())
        .bind(capped(&one_line(&event.detail), MAX_DETAIL_CHARS))
        .bind(fold_key)
        .execute(self.pool())
        .await
        .map_err(query_failed("record audit event"))?
        .last_insert_rowid();
        Ok(id)
    }

    /// Records a refusal, or, when the same actor (an anonymous client, by address) was refused the
    /// same action for the same kind of reason (`fold_key`) within `window`, counts it on that entry
    /// instead: a flood of bad posts is one row per reason. Returns the id of the entry that holds it.
    pub async fn record_folded(
        &self,
        event: AuditEvent,
        fold_key: &str,
        window: chrono::Duration,
    ) -> Result<i64, StoreError> {
        let since = time_text(&(chrono::Utc::now() - window));
        let folded: Option<i64> = sqlx::query_scalar(
            "UPDATE audit_log SET repeats = repeats + 1, last_at = ?
             WHERE id = (SELECT id FROM audit_log
                         WHERE actor = ? AND action = ? AND outcome = ? AND fold_key = ?
                           AND coalesce(last_at, at) >= ?
                         ORDER BY id DESC LIMIT 1)
             RETURNING id",
        )
        .bind(now_text())
        .bind(capped(&event.actor, MAX_NAME_CHARS))
        .bind(capped(&event.action, MAX_NAME_CHARS))
        .bind(event.outcome.as_str())
        .bind(fold_key)
        .bind(since)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("fold audit event"))?;
        match folded {
            Some(id) => Ok(id),
            None => self.insert_audit(event, Some(fold_key)).await,
        }
    }

    /// Deletes entries older than `keep_days` days (0: none). Returns how many went.
    pub async fn prune_audit_log(&self, keep_days: u32) -> Result<u64, StoreError> {
        if keep_days == 0 {
            return Ok(0);
        }
        let before =
            time_text(&(chrono::Utc::now() - chrono::Duration::days(i64::from(keep_days))));
        let result = sqlx::query("DELETE FROM audit_log WHERE coalesce(last_at, at) < ?")
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(query_failed("prune audit log"))?;
        Ok(result.rows_affected())
    }

    /// The newest `limit` events that match `filter`, newest first.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, at, actor, action, target, outcome, detail, repeats, last_at FROM audit_log WHERE 1 = 1",
        );
        // A filter text that is empty (what a form sends for "all") filters nothing.
        let given = |text: &Option<String>| {
            text.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
        };
        if let Some(action) = given(&filter.action) {
            // The action itself, or its family: "deploy" is deploy.start, deploy.finish, ...
            query
                .push(" AND (action = ")
                .push_bind(action.clone())
                .push(" OR substr(action, 1, length(")
                .push_bind(action.clone())
                .push(") + 1) = ")
                .push_bind(format!("{action}."))
                .push(")");
        }
        if let Some(actor) = given(&filter.actor) {
            query
                .push(" AND instr(lower(actor), lower(")
                .push_bind(actor)
                .push(")) > 0");
        }
        if let Some(outcome) = filter.outcome {
            query.push(" AND outcome = ").push_bind(outcome.as_str());
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows: Vec<AuditRow> = query
            .build_query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("read audit log"))?;
        Ok(rows.into_iter().map(AuditRow::into_entry).collect())
    }
}

/// A row of `audit_log` as stored.
#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    detail: String,
    repeats: i64,
    last_at: Option<String>,
}

impl AuditRow {
    fn into_entry(self) -> AuditEntry {
        AuditEntry {
            id: self.id,
            at: parse_time(&self.at),
            actor: self.actor,
            action: self.action,
            target: self.target,
            // The store holds only these names (a CHECK constraint).
            outcome: self.outcome.parse().unwrap_or(AuditOutcome::Failed),
            detail: self.detail,
            repeats: u32::try_from(self.repeats).unwrap_or(u32::MAX),
            last_at: self.last_at.as_deref().map(parse_time),
        }
    }
}

/// At most `max` characters of `text`, saying how much was cut.
fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}… ({} more bytes cut)", &text[..at], text.len() - at),
    }
}

/// The log is read line by line: fold a multi-line detail into one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn all() -> AuditFilter {
        AuditFilter::default()
    }

    #[tokio::test]
    async fn filters_by_action_family_actor_and_outcome_and_pages_older_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let events = [
            ("system", "console.start", AuditOutcome::Ok),
            (
                "Anna A (anna@chalmers.se)",
                "deploy.start",
                AuditOutcome::Ok,
            ),
            (
                "Anna A (anna@chalmers.se)",
                "deploy.finish",
                AuditOutcome::Failed,
            ),
            (
                "Bo B (bo@chalmers.se)",
                "deploy.start",
                AuditOutcome::Refused,
            ),
            (
                "Bo B (bo@chalmers.se)",
                "deployment.weird",
                AuditOutcome::Ok,
            ),
            ("Bo B (bo@chalmers.se)", "backup.create", AuditOutcome::Ok),
        ];
        let mut ids = Vec::new();
        for (actor, action, outcome) in events {
            ids.push(
                store
                    .record(AuditEvent {
                        actor: actor.into(),
                        action: action.into(),
                        target: String::new(),
                        outcome,
                        detail: String::new(),
                    })
                    .await
                    .unwrap(),
            );
        }
        let actions = |filter: AuditFilter| {
            let store = &store;
            async move {
                store
                    .audit_log(&filter, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| format!("{} {}", e.action, e.outcome.as_str()))
                    .collect::<Vec<_>>()
            }
        };
        let family = |a: &str| AuditFilter {
            action: Some(a.into()),
            ..all()
        };
        // A family is the prefix up to a dot: "deploy" is not "deployment".
        assert_eq!(
            actions(family("deploy")).await,
            [
                "deploy.start refused",
                "deploy.finish failed",
                "deploy.start ok"
            ]
        );
        assert_eq!(
            actions(family("deploy.start")).await,
            ["deploy.start refused", "deploy.start ok"]
        );
        assert_eq!(actions(family("deploy%")).await, Vec::<String>::new());
        let anna = AuditFilter {
            actor: Some("ANNA@".into()),
            ..all()
        };
        assert_eq!(
            actions(anna).await,
            ["deploy.finish failed", "deploy.start ok"]
        );
        let refused = AuditFilter {
            outcome: Some(AuditOutcome::Refused),
            ..all()
        };
        assert_eq!(actions(refused).await, ["deploy.start refused"]);
        // The next page: entries older than the last one shown, the filters kept.
        let older = AuditFilter {
            before: Some(ids[3]),
            ..family("deploy")
        };
        assert_eq!(
            actions(older).await,
            ["deploy.finish failed", "deploy.start ok"]
        );
        assert_eq!(actions(all()).await.len(), 6);
    }

    #[tokio::test]
    async fn recorded_events_come_back_newest_first_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store
            .record(AuditEvent::system(
                "console.start",
                AuditOutcome::Ok,
                "listening on 127.0.0.1:3000",
            ))
            .await
            .unwrap();
        let id = store
            .record(AuditEvent {
                actor: "anna@chalmers.se".into(),
                action: "deploy.start".into(),
                target: "epsm".into(),
                outcome: AuditOutcome::Refused,
                detail: "another deploy\nis running".into(),
            })
            .await
            .unwrap();
        let log = store.audit_log(&all(), 10).await.unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].id, id);
        assert_eq!(log[0].actor, "anna@chalmers.se");
        assert_eq!(log[0].outcome, AuditOutcome::Refused);
        assert_eq!(log[0].detail, "another deploy is running");
        assert_eq!(log[1].action, "console.start");
        assert!(log[0].at >= log[1].at);
        assert!(Utc::now() - log[0].at < chrono::Duration::minutes(1));
        assert_eq!(store.audit_log(&all(), 1).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn repeated_refusals_of_one_client_fold_into_one_capped_row_and_old_rows_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let refusal = |actor: &str, detail: String| AuditEvent {
            actor: actor.into(),
            action: "auth.login".into(),
            target: "idp".into(),
            outcome: AuditOutcome::Refused,
            detail,
        };
        let window = chrono::Duration::minutes(10);
        let flood = "x".repeat(250_000);
        let first = store
            .record_folded(
                refusal("anonymous (198.51.100.9)", flood.clone()),
                "Status",
                window,
            )
            .await
            .unwrap();
        for _ in 0..49 {
            let id = store
                .record_folded(
                    refusal("anonymous (198.51.100.9)", flood.clone()),
                    "Status",
                    window,
                )
                .await
                .unwrap();
            assert_eq!(id, first);
        }
        store
            .record_folded(
                refusal("anonymous (203.0.113.5)", "bad".into()),
                "Status",
                window,
            )
            .await
            .unwrap();
        // Another kind of reason from the same client is its own row.
        store
            .record_folded(
                refusal("anonymous (198.51.100.9)", "x".into()),
                "Unsigned",
                window,
            )
            .await
            .unwrap();
        let log = store.audit_log(&all(), 10).await.unwrap();
        assert_eq!(log.len(), 3, "one row per client and reason");
        let log = &log[1..];
        assert_eq!(log[1].repeats, 49);
        assert!(log[1].last_at.is_some());
        assert!(log[1].detail.chars().count() < MAX_DETAIL_CHARS + 40);
        assert!(
            log[1].detail.ends_with("more bytes cut)"),
            "{}",
            &log[1].detail[1990..]
        );
        assert_eq!(log[0].repeats, 0);
        let log = store.audit_log(&all(), 10).await.unwrap();

        // Kept by age: an entry older than keep_days goes, a recent one stays.
        sqlx::query(
            "UPDATE audit_log SET at = '2020-01-01T00:00:00.000Z', last_at = NULL WHERE id = ?",
        )
        .bind(log[0].id)
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(
            store.prune_audit_log(0).await.unwrap(),
            0,
            "0 keeps for ever"
        );
        assert_eq!(store.prune_audit_log(400).await.unwrap(), 1);
        let left = store.audit_log(&all(), 10).await.unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.iter().any(|e| e.id == first));
    }

    #[tokio::test]
    async fn the_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .await
            .unwrap()
            .record(AuditEvent::system("console.start", AuditOutcome::Ok, ""))
            .await
            .unwrap();
        let reopened = Store::open(dir.path()).await.unwrap();
        assert_eq!(reopened.audit_log(&all(), 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unopenable_store_names_its_path() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Store::open(&file.path().join("sub"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("store {}", file.path().display())),
            "{err}"
        );
        assert!(err.contains("cannot open"), "{err}");
    }
}
