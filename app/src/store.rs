//! The console's own store: one SQLite file in the data directory, schema by sqlx migrations
//! (`app/migrations/`). Each capability adds its queries in its own `store.rs` as `impl Store` blocks.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    commits: Arc<Commits>,
    /// Woken when an alert is queued: the sender delivers it at once instead of at its next look.
    pub(crate) alert_wake: Arc<tokio::sync::Notify>,
    /// Reads that pages repeat, kept until the next commit (`read_kept`).
    kept: Arc<KeptReads>,
}

#[derive(Debug, Default)]
struct KeptReads {
    reads: Mutex<HashMap<&'static str, KeptRead>>,
    /// Page reads answered from memory / read from SQLite (`/metrics`).
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the commit hook counts: how many, and when the last one was about to land.
#[derive(Debug)]
struct Commits {
    count: AtomicU64,
    opened: Instant,
    /// Microseconds from `opened` to the last commit hook.
    last_us: AtomicU64,
}

impl Commits {
    fn hooked(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = self.opened.elapsed().as_micros() as u64;
        self.last_us.fetch_max(us, Ordering::Relaxed);
    }

    /// How long ago the last commit hook ran.
    fn since_last(&self) -> Duration {
        let last = Duration::from_micros(self.last_us.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// One kept read: its value, the commit count it was read at and when.
struct KeptRead {
    commits: u64,
    at: Instant,
    value: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for KeptRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptRead")
            .field("commits", &self.commits)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
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
        let commits = Arc::new(Commits {
            count: AtomicU64::new(0),
            opened: Instant::now(),
            last_us: AtomicU64::new(0),
        });
        let counter = commits.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A local file does not go stale like a network connection: no ping before each query.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let counter = counter.clone();
                Box::pin(async move {
                    conn.lock_handle().await?.set_commit_hook(move || {
                        counter.hooked();
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
            kept: Arc::default(),
        })
    }

    /// Write transactions committed since the store was opened (migrations included): a page view
    /// should add none (the `/metrics` counter `epsm_ops_store_commits_total`).
    pub fn commits(&self) -> u64 {
        self.commits.count.load(Ordering::Relaxed)
    }

    /// How long a page's read is reused while nothing is committed (`read_kept`).
    pub const PAGE_READ_KEPT_FOR: Duration = Duration::from_secs(2);

    /// How long after its commit hook a commit is taken to have landed (`read_kept`): the hook runs
    /// before SQLite writes and syncs the commit.
    pub const COMMIT_LANDS_WITHIN: Duration = Duration::from_secs(1);

    /// A read that page views repeat (the same query, the same arguments: `key` names both), kept in
    /// memory until anything is committed or it is `PAGE_READ_KEPT_FOR` old. A query costs a round trip to
    /// SQLite's worker thread and another to return the connection; a page view under load should
    /// read memory.
    ///
    /// SQLite calls the commit hook just before a commit lands (then writes and syncs it), so a read
    /// at that moment can see the state before it under the new count. A read that starts within
    /// `COMMIT_LANDS_WITHIN` of a commit hook, or during which something is committed, is answered
    /// but not kept; `PAGE_READ_KEPT_FOR` bounds the rest (a commit that took longer than that to land).
    pub async fn read_kept<T, E, Fut>(
        &self,
        key: &'static str,
        read: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        self.read_kept_for(key, Self::PAGE_READ_KEPT_FOR, read)
            .await
    }

    /// `read_kept`, kept for at most `max_age`.
    async fn read_kept_for<T, E, Fut>(
        &self,
        key: &'static str,
        max_age: Duration,
        read: impl FnOnce() -> Fut,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        let commits = self.commits();
        let kept = self
            .kept
            .reads
            .lock()
            .expect("kept reads lock")
            .get(key)
            .and_then(|k| {
                (k.commits == commits && k.at.elapsed() < max_age)
                    .then(|| k.value.clone().downcast::<T>().ok())
                    .flatten()
            });
        if let Some(value) = kept {
            self.kept.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        self.kept.misses.fetch_add(1, Ordering::Relaxed);
        let at = Instant::now();
        let landed = self.commits.since_last() >= Self::COMMIT_LANDS_WITHIN;
        let value = Arc::new(read().await?);
        if landed && self.commits() == commits {
            let kept = KeptRead {
                commits,
                at,
                value: value.clone(),
            };
            let mut reads = self.kept.reads.lock().expect("kept reads lock");
            reads.insert(key, kept);
        }
        Ok(value)
    }

    /// Page reads (`read_kept`) answered from memory, and read from SQLite, since the store opened.
    pub fn page_reads(&self) -> (u64, u64) {
        let kept = &self.kept;
        (
            kept.hits.load(Ordering::Relaxed),
            kept.misses.load(Ordering::Relaxed),
        )
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

    #[tokio::test]
    async fn a_kept_read_is_read_again_after_a_commit_or_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();
        let reads = AtomicU64::new(0);
        let count = |max_age| {
            let (store, reads) = (&store, &reads);
            async move {
                let n = store
                    .read_kept_for("count t", max_age, || async {
                        reads.fetch_add(1, Ordering::Relaxed);
                        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM t")
                            .fetch_one(store.pool())
                            .await
                    })
                    .await
                    .unwrap();
                n.0
            }
        };
        let long = Duration::from_secs(60);
        let reads_now = || reads.load(Ordering::Relaxed);
        assert_eq!((count(long).await, count(long).await), (0, 0));
        assert_eq!(reads_now(), 2, "within a second of a commit: not kept");
        tokio::time::sleep(Store::COMMIT_LANDS_WITHIN).await;
        assert_eq!((count(long).await, count(long).await), (0, 0));
        assert_eq!(reads_now(), 3, "the second read is kept");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(store.pool())
            .await
            .unwrap();
        tokio::time::sleep(Store::COMMIT_LANDS_WITHIN).await;
        assert_eq!(count(long).await, 1, "a commit since: read again");
        assert_eq!(reads_now(), 4);
        assert_eq!(count(Duration::ZERO).await, 1);
        assert_eq!(reads_now(), 5, "older than max_age: read again");

        // A commit while it reads: the answer is given, not kept.
        tokio::time::sleep(Store::COMMIT_LANDS_WITHIN).await;
        let during = store
            .read_kept("count t during", || async {
                sqlx::query("INSERT INTO t VALUES (2)")
                    .execute(store.pool())
                    .await
                    .map(|_| 2)
            })
            .await
            .unwrap();
        assert_eq!(*during, 2);
        let after = store
            .read_kept("count t during", || async { Ok::<_, sqlx::Error>(3) })
            .await
            .unwrap();
        assert_eq!(*after, 3, "the read during a commit was not kept");
    }
}
