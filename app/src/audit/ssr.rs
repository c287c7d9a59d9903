//! Writing and reading the audit log. Every feature records its actions through `Store::record`.

use super::{AuditEntry, AuditEvent, AuditFilter, Outcome};
use crate::store::{Store, StoreError, now_text, parse_time, query_failed};

impl Store {
    /// Records one event, stamped now. Returns its id.
    pub async fn record(&self, event: AuditEvent) -> Result<i64, StoreError> {
        let id = sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(now_text())
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(one_line(&event.detail))
        .execute(self.pool())
        .await
        .map_err(query_failed("record audit event"))?
        .last_insert_rowid();
        Ok(id)
    }

    /// The newest `limit` events that match `filter`, newest first.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, at, actor, action, target, outcome, detail FROM audit_log WHERE 1 = 1",
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
        let rows: Vec<(i64, String, String, String, String, String, String)> = query
            .build_query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("read audit log"))?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, actor, action, target, outcome, detail)| AuditEntry {
                    id,
                    at: parse_time(&at),
                    actor,
                    action,
                    target,
                    outcome: Outcome::parse(&outcome),
                    detail,
                },
            )
            .collect())
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
            ("system", "console.start", Outcome::Ok),
            ("Anna A (anna@chalmers.se)", "deploy.start", Outcome::Ok),
            (
                "Anna A (anna@chalmers.se)",
                "deploy.finish",
                Outcome::Failed,
            ),
            ("Bo B (bo@chalmers.se)", "deploy.start", Outcome::Refused),
            ("Bo B (bo@chalmers.se)", "deployment.weird", Outcome::Ok),
            ("Bo B (bo@chalmers.se)", "backup.create", Outcome::Ok),
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
            outcome: Some(Outcome::Refused),
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
                Outcome::Ok,
                "listening on 127.0.0.1:3000",
            ))
            .await
            .unwrap();
        let id = store
            .record(AuditEvent {
                actor: "anna@chalmers.se".into(),
                action: "deploy.start".into(),
                target: "epsm".into(),
                outcome: Outcome::Refused,
                detail: "another deploy\nis running".into(),
            })
            .await
            .unwrap();
        let log = store.audit_log(&all(), 10).await.unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].id, id);
        assert_eq!(log[0].actor, "anna@chalmers.se");
        assert_eq!(log[0].outcome, Outcome::Refused);
        assert_eq!(log[0].detail, "another deploy is running");
        assert_eq!(log[1].action, "console.start");
        assert!(log[0].at >= log[1].at);
        assert!(Utc::now() - log[0].at < chrono::Duration::minutes(1));
        assert_eq!(store.audit_log(&all(), 1).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .await
            .unwrap()
            .record(AuditEvent::system("console.start", Outcome::Ok, ""))
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
