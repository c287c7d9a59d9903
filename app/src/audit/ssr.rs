//! Writing and reading the audit log. Every feature records its actions through `Store::record`.

use super::{AuditEntry, AuditEvent, Outcome};
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

    /// The newest `limit` events, newest first.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<(i64, String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, at, actor, action, target, outcome, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
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
        let log = store.audit_log(10).await.unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].id, id);
        assert_eq!(log[0].actor, "anna@chalmers.se");
        assert_eq!(log[0].outcome, Outcome::Refused);
        assert_eq!(log[0].detail, "another deploy is running");
        assert_eq!(log[1].action, "console.start");
        assert!(log[0].at >= log[1].at);
        assert!(Utc::now() - log[0].at < chrono::Duration::minutes(1));
        assert_eq!(store.audit_log(1).await.unwrap().len(), 1);
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
        assert_eq!(reopened.audit_log(10).await.unwrap().len(), 1);
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
