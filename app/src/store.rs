//! The console's own store: one SQLite file in the data directory, schema by sqlx migrations
//! (`app/migrations/`). Each capability adds its queries in its own `store.rs` as `impl Store` blocks.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub const DATABASE_FILE: &str = "epsm-ops.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: cannot open: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("store {path}: migration failed: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("store query failed ({what}): {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Transactions that wrote (SQLite's commit hook, on every connection of the pool).
    commits: Arc<AtomicU64>,
    /// Woken when an alert is queued: the sender delivers it at once instead of at its next look.
    pub(crate) alert_wake: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Opens (creating when absent) the store in `data_dir` and brings its schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite://")
            .expect("constant URL parses")
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A local file does not go stale like a network connection: no ping before each query.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let counter = counter.clone();
                Box::pin(async move {
                    conn.lock_handle().await?.set_commit_hook(move || {
                        counter.fetch_add(1, Ordering::Relaxed);
                        true
                    });
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { path, source })?;
        Ok(Store {
            pool,
            commits,
            alert_wake: Arc::default(),
        })
    }

    /// Write transactions committed since the store was opened (migrations included): a page view
    /// should add none (the `/metrics` counter `epsm_ops_store_commits_total`).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// One trivial query: is the store usable right now?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(query_failed("ping"))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// How the store writes a time: RFC 3339, UTC, milliseconds.
pub(crate) fn time_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn now_text() -> String {
    time_text(&chrono::Utc::now())
}

/// A time the store wrote (the epoch for anything else: rows are only written by `time_text`).
pub(crate) fn parse_time(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

/// Maps a sqlx error of one named query to the store's error.
pub(crate) fn query_failed(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_transactions_that_write_count_as_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let opened = store.commits();
        assert!(opened > 0, "the migrations wrote");
        for _ in 0..5 {
            store.ping().await.unwrap();
        }
        assert_eq!(store.commits(), opened, "reads are not commits");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        for x in 0..3 {
            sqlx::query("INSERT INTO t VALUES (?)")
                .bind(x)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(store.commits(), opened + 2, "one per transaction");
    }
}
