//! History benchmark (run by scripts/bench.sh; prints table rows, asserts nothing): how long the
//! store takes to list a long deploy history, as the Deploys page (a page of rows) and the image
//! pruning (every succeeded deploy) read it. A real SQLite store in a temporary directory, filled
//! with a year of deploys, each with the default plan's steps.

use std::time::{Duration, Instant};

use app::deploy::{Deploy, DeployOutcome, HISTORY_PAGE};
use app::store::{Store, StoreError};
use end2end::bench::row;

const DEPLOYS: i64 = 500;
const STEPS: i64 = 9;
const READS: u32 = 50;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path()).await.expect("the store opens");
    fill(&store).await;
    let how = format!(
        "a store of {DEPLOYS} deploys with {STEPS} steps each, mean of {READS} reads after one to warm up, release build"
    );
    // What reads the history: the Deploys page (a page of rows, without steps), the image pruning
    // (every succeeded deploy, with steps), and the listing with steps at the size the page once had.
    time(
        &format!("the Deploys page's {HISTORY_PAGE} (deploy_history_rows)"),
        &how,
        || store.deploy_history_rows(None, None, HISTORY_PAGE),
    )
    .await;
    time(
        "the newest 200 with their steps (Store::deploys)",
        &how,
        || store.deploys(None, 200),
    )
    .await;
    time(
        "every succeeded deploy with its steps (Store::deploys)",
        &how,
        || store.deploys(Some(DeployOutcome::Succeeded), 10_000),
    )
    .await;
}

/// Prints the mean time of `READS` calls of `list`, after one to warm up.
async fn time<F, L>(what: &str, how: &str, list: L)
where
    L: Fn() -> F,
    F: std::future::Future<Output = Result<Vec<Deploy>, StoreError>>,
{
    list().await.expect("a listing");
    let started = Instant::now();
    let mut listed = 0;
    for _ in 0..READS {
        listed = list().await.expect("a listing").len();
    }
    let mean: Duration = started.elapsed() / READS;
    row(
        &format!("deploy history: {what}"),
        format!("{:.2} ms ({listed} deploys)", mean.as_secs_f64() * 1e3),
        how,
    );
}

/// `DEPLOYS` finished deploys, every tenth failed, each with `STEPS` steps that ran.
async fn fill(store: &Store) {
    let mut tx = store.pool().begin().await.expect("a transaction");
    for id in 1..=DEPLOYS {
        let outcome = if id % 10 == 0 { "failed" } else { "succeeded" };
        sqlx::query(
            "INSERT INTO deploys (id, actor, started_at, finished_at, options, outcome, summary, git_commit)
             VALUES (?, 'Ada Admin (ada@chalmers.se)', '2026-01-01T10:00:00Z', '2026-01-01T10:04:00Z',
                     '{}', ?, 'deployed', 'a3f9c21')",
        )
        .bind(id)
        .bind(outcome)
        .execute(&mut *tx)
        .await
        .expect("a deploy row");
        for position in 0..STEPS {
            sqlx::query(
                "INSERT INTO deploy_steps (deploy_id, position, name, status, exit_code, started_at, duration_ms)
                 VALUES (?, ?, ?, 'succeeded', 0, '2026-01-01T10:00:00Z', 12000)",
            )
            .bind(id)
            .bind(position)
            .bind(format!("step {position}"))
            .execute(&mut *tx)
            .await
            .expect("a step row");
        }
    }
    tx.commit().await.expect("the history is stored");
}
