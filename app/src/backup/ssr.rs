//! Running a backup: `pg_dump` through the Docker API exec, its output written straight to a
//! temporary file (hashed and counted on the way: the count is the progress the page shows), fsynced,
//! read back by `pg_restore --list` (or checked for the dump's closing line, for plain SQL), and only
//! then renamed into place. Any failure leaves no file and a failed record with the reason.
//!
//! One backup at a time per backups directory, across processes (the server, its schedule and the
//! `epsm-ops backup` command): a lock file in the directory is held while a dump runs.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use super::{Backup, BackupFormat, BackupOutcome};
use crate::audit::{AuditEvent, Outcome as AuditOutcome};
use crate::config::Config;
use crate::engine::ssr::Engine;
use crate::environment::secrets::Masker;
use crate::state::AppState;
use crate::store::{Store, StoreError, now_text, parse_time, query_failed};

/// One backup at a time in this process (the lock file orders processes).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often a running backup's byte count is written to its record.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup #{id} failed: {reason}")]
    Failed { id: i64, reason: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a backup needs of the console (the server functions, the schedule, a deploy's "back up
/// first" step and the command line).
pub struct Backups<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub engine: &'a Engine,
    pub masker: &'a Masker,
}

impl<'a> From<&'a AppState> for Backups<'a> {
    fn from(state: &'a AppState) -> Backups<'a> {
        Backups {
            config: &state.config,
            store: &state.store,
            engine: &state.engine,
            masker: &state.masker,
        }
    }
}

/// The lock file that orders backups across processes.
fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// Waits for the backups directory's lock; held until the returned file is dropped.
async fn lock_dir(dir: &Path) -> Result<std::fs::File, String> {
    let path = lock_path(dir);
    let file = crate::files::open_lock_file(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| format!("waiting for the backups lock: {e}"))?
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))
}

/// Backups a stopped process left `running` are marked failed and their partial files removed, unless
/// a backup is running right now in another process (it holds the lock). Called at start.
pub async fn recover_interrupted(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let dir = config.backups_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        // The first backup reports the directory problem with its reason.
        return Ok(0);
    }
    let Ok(lock) = crate::files::open_lock_file(&lock_path(&dir)) else {
        return Ok(0);
    };
    if lock.try_lock().is_err() {
        return Ok(0);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".partial-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    store.interrupt_backups().await
}

/// This process's turn to back up (backups run one at a time; the lock file orders processes).
pub struct Turn {
    _held: tokio::sync::MutexGuard<'static, ()>,
}

impl Turn {
    /// Waits until no other backup of this process runs.
    pub async fn wait() -> Turn {
        Turn {
            _held: ONE_AT_A_TIME.lock().await,
        }
    }

    /// The turn now, or None while another backup of this process runs.
    pub fn now() -> Option<Turn> {
        ONE_AT_A_TIME
            .try_lock()
            .ok()
            .map(|held| Turn { _held: held })
    }
}

/// A backup whose record exists (`running`) and that has its turn; `run` takes it.
pub struct Started {
    pub id: i64,
    actor: String,
    user: String,
    database: String,
    format: BackupFormat,
    env: std::collections::BTreeMap<String, String>,
    _turn: Turn,
}

/// Backs up the project's database now, waiting for its turn; returns the record (succeeded or failed).
pub async fn backup_now(
    state: &Backups<'_>,
    actor: &str,
    format: BackupFormat,
) -> Result<Backup, BackupError> {
    begin(state, Turn::wait().await, actor, format)
        .await?
        .run(state)
        .await
}

/// Records a backup as running (who, database, format, the deploy that is current).
pub async fn begin(
    state: &Backups<'_>,
    turn: Turn,
    actor: &str,
    format: BackupFormat,
) -> Result<Started, BackupError> {
    let env = crate::environment::ssr::env_values(state.config);
    let value = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| env.iter().find(|(key, v)| key == k && !v.is_empty()))
            .map(|(_, v)| v.clone())
    };
    let user = value(&["DB_USER", "POSTGRES_USER"]).unwrap_or_else(|| "postgres".into());
    let database = value(&["DB_NAME", "POSTGRES_DB"]).unwrap_or_else(|| user.clone());
    let deploy_id = state
        .store
        .deploys(Some(crate::deploy::Outcome::Succeeded), 1)
        .await?
        .first()
        .map(|d| d.id);
    let id = state
        .store
        .insert_backup(actor, &database, format, deploy_id)
        .await?;
    Ok(Started {
        id,
        actor: actor.into(),
        user,
        database,
        format,
        env,
        _turn: turn,
    })
}

impl Started {
    /// Dumps, verifies and keeps the backup (or records why not), audits it, applies retention.
    pub async fn run(self, state: &Backups<'_>) -> Result<Backup, BackupError> {
        let Started {
            id,
            actor,
            user,
            database,
            format,
            env,
            _turn,
        } = self;
        let scrubber = state
            .masker
            .scrubber(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let started = Instant::now();
        let dir = state.config.backups_dir();
        let result = dump(state, &dir, id, &user, &database, format).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (outcome, detail) = match &result {
            Ok(done) => {
                state.store.finish_backup(id, Ok(done), duration_ms).await?;
                (
                    AuditOutcome::Ok,
                    format!(
                        "{} ({} bytes, sha256 {})",
                        done.file_name, done.size_bytes, done.sha256
                    ),
                )
            }
            Err(reason) => {
                let reason = scrubber.scrub(reason);
                state
                    .store
                    .finish_backup(id, Err(&reason), duration_ms)
                    .await?;
                (AuditOutcome::Failed, reason)
            }
        };
        state
            .store
            .record(AuditEvent {
                actor: actor.clone(),
                action: "backup.create".into(),
                target: format!("backup #{id}"),
                outcome,
                detail: detail.clone(),
            })
            .await?;
        if result.is_ok() {
            apply_retention(state, &actor).await?;
        }
        match result {
            Ok(_) => Ok(state.store.backup(id).await?.ok_or(BackupError::Failed {
                id,
                reason: "its record is gone".into(),
            })?),
            Err(_) => Err(BackupError::Failed { id, reason: detail }),
        }
    }
}

/// How long "Back up now" waits for its backup to end before it answers with the running record (the
/// page then follows the backup in the list); below the 30 s a request may take.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// The page's "Back up now": answers with the backup's record, finished (succeeded, or the failure as
/// an error) when it ends within `REPLY_WITHIN`, else running. The backup is the console's own task,
/// not the request's: a closed tab or a timed-out request does not stop it. A second one while one
/// runs is refused, naming it (and audited).
pub async fn start_for_page(
    state: AppState,
    actor: &str,
    format: BackupFormat,
) -> Result<Backup, crate::error::AppError> {
    use crate::error::AppError;
    let Some(turn) = Turn::now() else {
        let running = state
            .store
            .backups(20)
            .await?
            .into_iter()
            .find(|b| b.outcome == BackupOutcome::Running);
        let reason = match running {
            Some(b) => format!(
                "backup #{} (by {}) is running; its row shows its progress",
                b.id, b.actor
            ),
            None => "another backup is running".to_string(),
        };
        state
            .store
            .record(AuditEvent {
                actor: actor.into(),
                action: "backup.create".into(),
                target: String::new(),
                outcome: AuditOutcome::Refused,
                detail: reason.clone(),
            })
            .await?;
        return Err(AppError::Invalid(reason));
    };
    let failed = |e: BackupError| AppError::Unavailable(e.to_string());
    let started = begin(&(&state).into(), turn, actor, format)
        .await
        .map_err(failed)?;
    let id = started.id;
    let task = tokio::spawn({
        let state = state.clone();
        async move { started.run(&(&state).into()).await }
    });
    match tokio::time::timeout(REPLY_WITHIN, task).await {
        Ok(Ok(result)) => result.map_err(failed),
        Ok(Err(e)) => Err(AppError::Unavailable(format!("backup #{id} stopped: {e}"))),
        Err(_) => state
            .store
            .backup(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("backup #{id} has no record"))),
    }
}

/// Takes a backup at each time of `backups.schedule` until `stop`; recorded with the actor
/// "schedule". A failure is recorded (and logged) like any other; the next time comes anyway.
pub async fn run_schedule(
    config: Arc<Config>,
    store: Store,
    engine: Arc<Engine>,
    masker: Arc<Masker>,
    stop: CancellationToken,
) {
    let Some(cron) = config.backups.cron() else {
        return;
    };
    let actor = format!("schedule ({})", cron.pattern);
    loop {
        let Some(next) = next_run(&cron, Utc::now()) else {
            tracing::warn!("backup schedule {} has no next time", cron.pattern);
            return;
        };
        tracing::info!(%next, "next scheduled backup");
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let backups = Backups {
            config: &config,
            store: &store,
            engine: &engine,
            masker: &masker,
        };
        match backup_now(&backups, &actor, BackupFormat::Custom).await {
            Ok(b) => tracing::info!(id = b.id, "scheduled backup done"),
            Err(e) => tracing::error!("scheduled backup: {e}"),
        }
    }
}

/// The schedule's next time strictly after `now`.
pub fn next_run(cron: &croner::Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now, false).ok()
}

/// Which successful backups the policy deletes: beyond the newest `keep_last` (0: no count limit), or
/// older than `keep_days` days (0: no age limit). `backups` is newest first.
pub fn to_delete(
    backups: &[Backup],
    keep_last: usize,
    keep_days: u32,
    now: DateTime<Utc>,
) -> Vec<i64> {
    backups
        .iter()
        .filter(|b| b.outcome == BackupOutcome::Succeeded)
        .enumerate()
        .filter(|(rank, b)| {
            (keep_last > 0 && *rank >= keep_last)
                || (keep_days > 0
                    && now - b.started_at > chrono::Duration::days(i64::from(keep_days)))
        })
        .map(|(_, b)| b.id)
        .collect()
}

/// Deletes what the retention policy says, each deletion recorded.
async fn apply_retention(state: &Backups<'_>, actor: &str) -> Result<(), BackupError> {
    let policy = &state.config.backups;
    let all = state.store.backups(100_000).await?;
    for id in to_delete(&all, policy.keep_last, policy.keep_days, Utc::now()) {
        delete_backup(
            state,
            id,
            "system",
            &format!("retention policy (after a backup by {actor})"),
        )
        .await?;
    }
    Ok(())
}

/// Removes a backup's file and marks it deleted; recorded in the audit log.
pub async fn delete_backup(
    state: &Backups<'_>,
    id: i64,
    actor: &str,
    why: &str,
) -> Result<(), BackupError> {
    let Some(backup) = state.store.backup(id).await? else {
        return Ok(());
    };
    if let Some(name) = &backup.file_name {
        let path = state.config.backups_dir().join(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BackupError::Failed {
                    id,
                    reason: format!("cannot delete {}: {e}", path.display()),
                });
            }
        }
    }
    state.store.mark_backup_deleted(id).await?;
    state
        .store
        .record(AuditEvent {
            actor: actor.into(),
            action: "backup.delete".into(),
            target: format!("backup #{id}"),
            outcome: AuditOutcome::Ok,
            detail: format!("{} ({why})", backup.file_name.unwrap_or_default()),
        })
        .await?;
    Ok(())
}

struct Dumped {
    file_name: String,
    size_bytes: u64,
    sha256: String,
}

/// The dump itself; on any error the temporary file is removed and the reason returned.
async fn dump(
    state: &Backups<'_>,
    dir: &Path,
    id: i64,
    user: &str,
    database: &str,
    format: BackupFormat,
) -> Result<Dumped, String> {
    let project = &state.config.project_name();
    let container = state
        .engine
        .service_container(project, "database")
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("project {project} has no database container"))?;
    let inspect = state
        .engine
        .inspect_container(&container)
        .await
        .map_err(|e| e.to_string())?;
    let running = inspect.state.and_then(|s| s.running).unwrap_or(false);
    if !running {
        return Err("the database container is not running".into());
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock = lock_dir(dir).await?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let file_name = format!(
        "{}-{stamp}-{id}.{}",
        crate::files::file_name_part(database),
        format.extension()
    );
    let partial = dir.join(format!(".partial-{id}"));
    // Stopped half-way (this future dropped: a cancelled deploy, a shutdown), nothing is left behind.
    let unfinished = Unfinished {
        store: state.store.clone(),
        docker_host: state.config.docker.host.clone(),
        container: container.clone(),
        user: user.to_string(),
        id,
        partial: partial.clone(),
        armed: true,
    };
    let result = dump_to(state, &container, &partial, id, user, database, format).await;
    unfinished.disarm();
    match result {
        Ok((size_bytes, sha256)) => {
            let target = dir.join(&file_name);
            if let Err(e) = tokio::fs::rename(&partial, &target).await {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(format!("cannot move the backup into place: {e}"));
            }
            // The rename itself is durable only once the directory is synced.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Dumped {
                file_name,
                size_bytes,
                sha256,
            })
        }
        Err(reason) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(reason)
        }
    }
}

/// A dump in progress, as its guard: dropped before `disarm` (the backup's future was dropped half-way),
/// it removes the partial file at once, then ends pg_dump's session in the database and marks the
/// backup failed, in a task of its own.
struct Unfinished {
    store: Store,
    docker_host: String,
    container: String,
    user: String,
    id: i64,
    partial: PathBuf,
    armed: bool,
}

/// Why a backup stopped by its guard failed.
pub const STOPPED_HALF_WAY: &str =
    "stopped before it finished (the deploy that took it was cancelled, or the console stopped)";

impl Unfinished {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = std::fs::remove_file(&self.partial);
        let (store, host, container, user, id) = (
            self.store.clone(),
            self.docker_host.clone(),
            self.container.clone(),
            self.user.clone(),
            self.id,
        );
        tracing::warn!(
            id,
            "backup stopped half-way: partial file removed, ending its dump"
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let engine = Engine::new(host);
                terminate_dump(&engine, &container, &user, id).await;
                if let Err(e) = store.finish_backup(id, Err(STOPPED_HALF_WAY), 0).await {
                    tracing::error!(id, "cannot mark the stopped backup failed: {e}");
                }
            });
        }
    }
}

/// The name pg_dump's session carries in `pg_stat_activity` (and the handle to end it by).
fn application_name(id: i64) -> String {
    format!("epsm-ops-backup-{id}")
}

async fn dump_to(
    state: &Backups<'_>,
    container: &str,
    partial: &Path,
    id: i64,
    user: &str,
    database: &str,
    format: BackupFormat,
) -> Result<(u64, String), String> {
    let file = crate::files::create_new_private(partial)
        .await
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let progress = Arc::new(AtomicU64::new(0));
    let mut sink = Hashing::new(file, progress.clone());
    let format_flag = match format {
        BackupFormat::Custom => "--format=custom",
        BackupFormat::Plain => "--format=plain",
    };
    let conninfo = format!(
        "dbname='{}' application_name={}",
        database.replace('\\', "\\\\").replace('\'', "\\'"),
        application_name(id)
    );
    let cmd = ["pg_dump", "-U", user, "-d", &conninfo, format_flag];
    let started = Instant::now();
    // Aborted when this future ends, however it ends (dropped half-way included).
    let _reporter = tokio_util::task::AbortOnDropHandle::new(tokio::spawn({
        let store = state.store.clone();
        async move {
            let mut every = tokio::time::interval(PROGRESS_EVERY);
            loop {
                every.tick().await;
                let _ = store
                    .backup_progress(id, progress.load(Ordering::Relaxed))
                    .await;
            }
        }
    }));
    let result = state
        .engine
        .exec_streaming(container, &cmd, &mut sink, None)
        .await;
    drop(_reporter);
    let (code, stderr) = match result {
        Ok(done) => done,
        Err(e) => {
            // The dump stopped half-way on our side (disk full, engine gone): pg_dump may still be
            // running in the container, holding its snapshot. End its session.
            stop_dump(state, container, user, id).await;
            return Err(match sink.write_error.take() {
                Some(io) => format!(
                    "cannot write the backup to {}: {io}",
                    partial.parent().unwrap_or(partial).display()
                ),
                None => e.to_string(),
            });
        }
    };
    if code != Some(0) {
        let said = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!(
            "pg_dump exited {}: {said}",
            code.map_or("without a code".into(), |c| c.to_string())
        ));
    }
    let (file, size, sha256) = sink.finish();
    use tokio::io::AsyncWriteExt;
    let mut file = file;
    file.flush()
        .await
        .map_err(|e| format!("writing the backup: {e}"))?;
    file.sync_all()
        .await
        .map_err(|e| format!("writing the backup: {e}"))?;
    drop(file);
    let dumped = started.elapsed();
    verify(state, container, partial, format).await?;
    tracing::info!(
        id,
        bytes = size,
        dump_ms = dumped.as_millis() as u64,
        verify_ms = (started.elapsed() - dumped).as_millis() as u64,
        "backup written and verified"
    );
    Ok((size, sha256))
}

/// Ends a dump's database session (best effort: the database may be gone too).
async fn stop_dump(state: &Backups<'_>, container: &str, user: &str, id: i64) {
    terminate_dump(state.engine, container, user, id).await
}

/// How long ending a dump's session may take (the psql call that ends it is given this long).
pub const STOP_DUMP_WITHIN: Duration = Duration::from_secs(10);

async fn terminate_dump(engine: &Engine, container: &str, user: &str, id: i64) {
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
        application_name(id)
    );
    let _ = engine
        .exec(
            container,
            &["psql", "-U", user, "-d", "postgres", "-Atc", &sql],
            &[],
            STOP_DUMP_WITHIN,
        )
        .await;
}

/// The archive reads back: `pg_restore --list` in the container, fed the file; a plain dump ends
/// with pg_dump's closing comment.
async fn verify(
    state: &Backups<'_>,
    container: &str,
    path: &Path,
    format: BackupFormat,
) -> Result<(), String> {
    match format {
        BackupFormat::Custom => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| format!("cannot read the backup back: {e}"))?;
            let mut listing = Vec::new();
            let (code, stderr) = state
                .engine
                .exec_streaming(
                    container,
                    &["pg_restore", "--list"],
                    &mut listing,
                    Some(Box::new(file)),
                )
                .await
                .map_err(|e| e.to_string())?;
            // The listing starts with the archive's header; an empty database has no entries.
            let listing = String::from_utf8_lossy(&listing);
            if code != Some(0) || !listing.contains("Format: CUSTOM") {
                let said = stderr
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no archive header");
                return Err(format!(
                    "the archive does not read back (pg_restore --list exited {}: {said})",
                    code.map_or("without a code".into(), |c| c.to_string())
                ));
            }
            Ok(())
        }
        BackupFormat::Plain => {
            // Only the tail is read: the file may be larger than memory.
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let read_back = |e: std::io::Error| format!("cannot read the backup back: {e}");
            let mut file = tokio::fs::File::open(path).await.map_err(read_back)?;
            let len = file.metadata().await.map_err(read_back)?.len();
            file.seek(std::io::SeekFrom::Start(len.saturating_sub(200)))
                .await
                .map_err(read_back)?;
            let mut tail = Vec::new();
            file.read_to_end(&mut tail).await.map_err(read_back)?;
            if String::from_utf8_lossy(&tail).contains("PostgreSQL database dump complete") {
                Ok(())
            } else {
                Err("the SQL dump does not end with pg_dump's closing line".into())
            }
        }
    }
}

/// Writes through to `inner`, hashing and counting what was written (the count shared as progress);
/// keeps the first write error, to say "disk full" rather than "the stream broke".
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: Arc<AtomicU64>,
    write_error: Option<std::io::Error>,
}

impl<W> Hashing<W> {
    fn new(inner: W, bytes: Arc<AtomicU64>) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes,
            write_error: None,
        }
    }

    fn finish(self) -> (W, u64, String) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        (self.inner, bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &poll {
            Poll::Ready(Ok(n)) => {
                let n = *n;
                self.hasher.update(&buf[..n]);
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Poll::Ready(Err(e)) if self.write_error.is_none() => {
                self.write_error = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
            _ => {}
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type BackupRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

const COLUMNS: &str = "id, actor, started_at, finished_at, database, format, outcome, reason, file_name, \
                       size_bytes, sha256, duration_ms, deploy_id";

impl Store {
    async fn insert_backup(
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

    async fn finish_backup(
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
    async fn backup_progress(&self, id: i64, bytes: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE backups SET size_bytes = ? WHERE id = ? AND outcome = 'running'")
            .bind(bytes as i64)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_failed("record backup progress"))?;
        Ok(())
    }

    /// Marks backups a stopped process left running as failed; returns how many.
    async fn interrupt_backups(&self) -> Result<usize, StoreError> {
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

    async fn mark_backup_deleted(&self, id: i64) -> Result<(), StoreError> {
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
        Ok(rows.into_iter().map(backup_from_row).collect())
    }

    pub async fn backup(&self, id: i64) -> Result<Option<Backup>, StoreError> {
        let row: Option<BackupRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE id = ?"))
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_failed("read backup"))?;
        Ok(row.map(backup_from_row))
    }
}

fn backup_from_row(row: BackupRow) -> Backup {
    let (
        id,
        actor,
        started,
        finished,
        database,
        format,
        outcome,
        reason,
        file,
        size,
        sha,
        ms,
        deploy,
    ) = row;
    Backup {
        id,
        actor,
        started_at: parse_time(&started),
        finished_at: finished.as_deref().map(parse_time),
        database,
        format: if format == "plain" {
            BackupFormat::Plain
        } else {
            BackupFormat::Custom
        },
        outcome: BackupOutcome::parse(&outcome),
        reason,
        file_name: file,
        size_bytes: size.map(|s| s.max(0) as u64),
        sha256: sha,
        duration_ms: ms.map(|m| m.max(0) as u64),
        deploy_id: deploy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: i64, outcome: BackupOutcome, days_old: i64, now: DateTime<Utc>) -> Backup {
        Backup {
            id,
            actor: "a".into(),
            started_at: now - chrono::Duration::days(days_old),
            finished_at: None,
            database: "db".into(),
            format: BackupFormat::Custom,
            outcome,
            reason: String::new(),
            file_name: Some(format!("{id}.dump")),
            size_bytes: Some(1),
            sha256: None,
            duration_ms: None,
            deploy_id: None,
        }
    }

    #[test]
    fn retention_deletes_exactly_the_successful_backups_beyond_count_or_age() {
        let now = Utc::now();
        use BackupOutcome::*;
        // Newest first: 6 (failed), 5, 4, 3 (deleted), 2, 1.
        let list = vec![
            backup(6, Failed, 0, now),
            backup(5, Succeeded, 1, now),
            backup(4, Succeeded, 5, now),
            backup(3, Deleted, 6, now),
            backup(2, Succeeded, 10, now),
            backup(1, Succeeded, 40, now),
        ];
        assert_eq!(
            to_delete(&list, 2, 0, now),
            vec![2, 1],
            "the two newest successful are kept"
        );
        assert_eq!(to_delete(&list, 0, 7, now), vec![2, 1], "older than a week");
        assert_eq!(to_delete(&list, 3, 30, now), vec![1], "either rule deletes");
        assert_eq!(
            to_delete(&list, 0, 0, now),
            Vec::<i64>::new(),
            "no policy, nothing deleted"
        );
    }
}
