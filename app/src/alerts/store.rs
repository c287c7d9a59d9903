//! The outbox: every message for every channel is a row before anything is sent, so a receiver that
//! is down, or a console restart, loses nothing. Attempts back off; after the last one the row is
//! given up and stays visible.

use chrono::{DateTime, Duration, Utc};

use super::{Delivery, Message};
use crate::store::{Store, StoreError, now_text, parse_time, query_failed, time_text};

/// The first retry waits this long; each next one twice as long, up to `LONGEST_WAIT`.
pub const FIRST_WAIT: Duration = Duration::seconds(30);
pub const LONGEST_WAIT: Duration = Duration::hours(1);
/// Attempts before a message is given up, unless `alerts.attempts` says otherwise (about a day of
/// retries at the longest wait).
pub const ATTEMPTS: u32 = 30;

/// A message waiting for a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub channel: String,
    pub message: Message,
    pub attempts: u32,
}

/// How long after attempt number `attempts` (1 = the first failed) the next one comes.
pub fn wait_after(attempts: u32) -> Duration {
    let doubled = FIRST_WAIT * 2i32.saturating_pow(attempts.saturating_sub(1).min(16));
    doubled.min(LONGEST_WAIT)
}

impl Store {
    /// Queues `message` for each of `channels` and wakes the sender; returns the rows' ids.
    pub async fn enqueue_alert(
        &self,
        message: &Message,
        channels: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        let ids = self.insert_alert(message, channels, Utc::now()).await?;
        self.alert_wake.notify_one();
        Ok(ids)
    }

    /// Records a test message for `channel`, which its sender delivers itself: not due for the
    /// outbox's sender until after the longest wait (only if the console stopped half-way).
    pub async fn record_test_alert(
        &self,
        message: &Message,
        channel: &str,
    ) -> Result<i64, StoreError> {
        let ids = self
            .insert_alert(message, &[channel.to_string()], Utc::now() + LONGEST_WAIT)
            .await?;
        Ok(ids[0])
    }

    async fn insert_alert(
        &self,
        message: &Message,
        channels: &[String],
        due: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let json = serde_json::to_string(message).unwrap_or_default();
        let now = now_text();
        let due = time_text(&due);
        let mut ids = Vec::with_capacity(channels.len());
        for channel in channels {
            let done = sqlx::query(
                "INSERT INTO alerts_outbox (channel, message, created_at, next_at) VALUES (?, ?, ?, ?)",
            )
            .bind(channel)
            .bind(&json)
            .bind(&now)
            .bind(&due)
            .execute(self.pool())
            .await
            .map_err(query_failed("queue an alert"))?;
            ids.push(done.last_insert_rowid());
        }
        Ok(ids)
    }

    /// Resolves when an alert is queued (or was queued since the last wait ended).
    pub async fn alert_queued(&self) {
        self.alert_wake.notified().await
    }

    /// A test message that was not delivered: given up at once (the operator who sent it reads the
    /// error on the page; a test is not worth a day of retries).
    pub async fn alert_test_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alerts_outbox SET attempts = 1, given_up_at = ?, last_error = ? WHERE id = ?",
        )
        .bind(now_text())
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_failed("record a test message"))?;
        Ok(())
    }

    /// The messages due at `now`, oldest first (at most `limit`).
    pub async fn due_alerts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Pending>, StoreError> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, channel, message, attempts FROM alerts_outbox
             WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_at <= ?
             ORDER BY id LIMIT ?",
        )
        .bind(time_text(&now))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read due alerts"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, channel, message, attempts)| {
                Some(Pending {
                    id,
                    channel,
                    message: serde_json::from_str(&message).ok()?,
                    attempts: attempts.max(0) as u32,
                })
            })
            .collect())
    }

    /// Records an attempt of `pending`: delivered, or failed with `error` (retried after the backoff,
    /// or given up after `allowed` attempts).
    pub async fn alert_attempted(
        &self,
        pending: &Pending,
        now: DateTime<Utc>,
        error: Option<&str>,
        allowed: u32,
    ) -> Result<(), StoreError> {
        let attempts = pending.attempts + 1;
        let at = |t: DateTime<Utc>| time_text(&t);
        let query = match error {
            None => sqlx::query(
                "UPDATE alerts_outbox SET attempts = ?, delivered_at = ?, last_error = '' WHERE id = ?",
            )
            .bind(attempts as i64)
            .bind(at(now)),
            Some(error) if attempts >= allowed => sqlx::query(
                "UPDATE alerts_outbox SET attempts = ?, given_up_at = ?, last_error = ? WHERE id = ?",
            )
            .bind(attempts as i64)
            .bind(at(now))
            .bind(error.to_string()),
            Some(error) => sqlx::query(
                "UPDATE alerts_outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            )
            .bind(attempts as i64)
            .bind(at(now + wait_after(attempts)))
            .bind(error.to_string()),
        };
        query
            .bind(pending.id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record an alert's delivery"))?;
        Ok(())
    }

    /// The newest deliveries, newest first.
    pub async fn deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!("{ROWS} ORDER BY id DESC LIMIT ?"))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("read deliveries"))?;
        Ok(rows.into_iter().map(Delivery::from).collect())
    }

    /// Deletes the rows delivered or given up before `before`; returns how many.
    pub async fn prune_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = time_text(&before);
        let done =
            sqlx::query("DELETE FROM alerts_outbox WHERE delivered_at < ? OR given_up_at < ?")
                .bind(&before)
                .bind(&before)
                .execute(self.pool())
                .await
                .map_err(query_failed("prune the outbox"))?;
        Ok(done.rows_affected())
    }

    /// One delivery.
    pub async fn delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        let row: Option<DeliveryRow> = sqlx::query_as(&format!("{ROWS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_failed("read a delivery"))?;
        Ok(row.map(Delivery::from))
    }

    /// Messages given up since `since` (newest first, at most `limit`), with how many there are:
    /// what the Overview shows until they age out. Test messages are not among them (whoever sent
    /// one read its outcome on the page).
    pub async fn undelivered(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Vec<Delivery>), StoreError> {
        let since = time_text(&since);
        let (count,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM alerts_outbox WHERE {GIVEN_UP_SINCE}"
        ))
        .bind(&since)
        .fetch_one(self.pool())
        .await
        .map_err(query_failed("count undelivered alerts"))?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "{ROWS} WHERE {GIVEN_UP_SINCE} ORDER BY id DESC LIMIT ?"
        ))
        .bind(&since)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("read undelivered alerts"))?;
        Ok((
            count.max(0) as u64,
            rows.into_iter().map(Delivery::from).collect(),
        ))
    }
}

/// The outbox's rows as `DeliveryRow` reads them.
const ROWS: &str = "SELECT id, channel, message, created_at, attempts, last_error, delivered_at, \
                    given_up_at FROM alerts_outbox";
/// Given up at or after `?`, test messages left out (their sender read the outcome on the page).
const GIVEN_UP_SINCE: &str =
    "given_up_at IS NOT NULL AND given_up_at >= ? AND json_extract(message, '$.kind') != 'test'";

/// An `alerts_outbox` row as stored.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    channel: String,
    message: String,
    created_at: String,
    attempts: i64,
    last_error: String,
    delivered_at: Option<String>,
    given_up_at: Option<String>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Delivery {
        let message = serde_json::from_str::<Message>(&row.message).ok();
        Delivery {
            id: row.id,
            channel: row.channel,
            severity: message.as_ref().map(|m| m.severity),
            title: message.map(|m| m.title).unwrap_or_default(),
            created_at: parse_time(&row.created_at),
            attempts: row.attempts.max(0) as u32,
            last_error: row.last_error,
            delivered_at: row.delivered_at.as_deref().map(parse_time),
            given_up_at: row.given_up_at.as_deref().map(parse_time),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{EventKind, Severity};

    fn message(title: &str) -> Message {
        Message {
            kind: EventKind::Test,
            severity: Severity::Info,
            at: Utc::now(),
            title: title.into(),
            text: "text".into(),
            facts: vec![],
            link: None,
        }
    }

    #[test]
    fn retries_back_off_and_stop_growing() {
        assert_eq!(wait_after(1), Duration::seconds(30));
        assert_eq!(wait_after(2), Duration::seconds(60));
        assert_eq!(wait_after(4), Duration::seconds(240));
        assert_eq!(wait_after(12), LONGEST_WAIT);
        assert_eq!(wait_after(u32::MAX), LONGEST_WAIT);
    }

    #[tokio::test]
    async fn a_failed_delivery_waits_its_turn_survives_a_reopen_and_is_given_up_at_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store
            .enqueue_alert(&message("redis is down"), &["mail".into(), "teams".into()])
            .await
            .unwrap();
        let now = Utc::now() + Duration::seconds(1);
        let due = store.due_alerts(now, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        store
            .alert_attempted(&due[0], now, None, ATTEMPTS)
            .await
            .unwrap();
        store
            .alert_attempted(&due[1], now, Some("connection refused"), ATTEMPTS)
            .await
            .unwrap();
        assert!(
            store.due_alerts(now, 10).await.unwrap().is_empty(),
            "the failed one waits"
        );

        // A restart: the store is opened again; the message is still there, due after its wait.
        drop(store);
        let store = Store::open(dir.path()).await.unwrap();
        let later = now + wait_after(1) + Duration::seconds(1);
        let mut pending = store.due_alerts(later, 10).await.unwrap().remove(0);
        assert_eq!((pending.channel.as_str(), pending.attempts), ("teams", 1));
        pending.attempts = ATTEMPTS - 1;
        store
            .alert_attempted(&pending, later, Some("still refused"), ATTEMPTS)
            .await
            .unwrap();
        let list = store.deliveries(10).await.unwrap();
        let teams = list.iter().find(|d| d.channel == "teams").unwrap();
        assert!(teams.given_up_at.is_some() && teams.delivered_at.is_none());
        assert_eq!(teams.last_error, "still refused");
        let mail = list.iter().find(|d| d.channel == "mail").unwrap();
        assert!(mail.delivered_at.is_some());
        assert_eq!(mail.title, "redis is down");
        assert!(
            store
                .due_alerts(later + LONGEST_WAIT, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_overview_gets_what_was_given_up_but_not_a_failed_test() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut down = message("redis is down");
        down.kind = EventKind::ServiceDown;
        let ids = store.enqueue_alert(&down, &["hook".into()]).await.unwrap();
        let test = store
            .enqueue_alert(&message("a test"), &["hook".into()])
            .await
            .unwrap();
        store.alert_test_failed(test[0], "refused").await.unwrap();
        let since = Utc::now() - Duration::days(7);
        assert_eq!(store.undelivered(since, 3).await.unwrap().0, 0);
        let now = Utc::now() + Duration::seconds(1);
        let pending = store.due_alerts(now, 10).await.unwrap().remove(0);
        assert_eq!(pending.id, ids[0]);
        // One attempt allowed: given up at the first failure.
        store
            .alert_attempted(&pending, now, Some("refused"), 1)
            .await
            .unwrap();
        let (count, rows) = store.undelivered(since, 3).await.unwrap();
        assert_eq!(count, 1);
        assert_eq!(rows[0].title, "redis is down");
        assert_eq!(rows[0].state(), "given up");
        assert_eq!(
            store
                .undelivered(now + Duration::seconds(1), 3)
                .await
                .unwrap()
                .0,
            0
        );
        // Pruned once old enough.
        assert_eq!(
            store
                .prune_alerts(now + Duration::seconds(1))
                .await
                .unwrap(),
            2
        );
        assert!(store.deliveries(10).await.unwrap().is_empty());
    }
}
