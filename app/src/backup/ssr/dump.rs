//! One dump: `pg_dump` through the Docker API exec into a private temporary file (hashed and
//! counted on the way), fsynced, read back, renamed into place; a guard that cleans up when the dump
//! is stopped half-way.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWrite;

use crate::backup::BackupFormat;
use crate::config::Config;
use crate::engine::ssr::Engine;
use crate::store::Store;

/// How often a running backup's byte count is written to its record.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What a dump needs of the console: the engine it runs in, the store its progress is written to,
/// the project and backups directory of the configuration.
pub(super) struct Dumper {
    pub(super) config: Arc<Config>,
    pub(super) store: Store,
    pub(super) engine: Arc<Engine>,
}

/// The lock file that orders backups across processes.
pub(super) fn lock_path(dir: &Path) -> PathBuf {
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

pub(crate) struct Dumped {
    pub(crate) file_name: String,
    pub(crate) size_bytes: u64,
    pub(crate) sha256: String,
    /// The tables' rows around the dump, for restore drills (None: they could not be counted).
    pub(crate) counts: Option<Vec<crate::backup::TableCount>>,
}

/// The dump itself; on any error the temporary file is removed and the reason returned.
pub(super) async fn dump(
    state: &Dumper,
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
    // The rows before and after the dump, what a restore drill checks the backup against.
    let session = conninfo(database, &application_name(id));
    let count = || super::counts::count_tables(&state.engine, &container, user, &session);
    let before = count().await;
    let result = dump_to(state, &container, &partial, id, user, database, format).await;
    let counts = match (&result, before) {
        (Err(_), _) => None,
        (Ok(_), Ok(before)) => match count().await {
            Ok(after) => Some(super::counts::record(&before, &after)),
            Err(e) => {
                tracing::warn!(id, "backup: row counts not recorded: {e}");
                None
            }
        },
        (Ok(_), Err(e)) => {
            tracing::warn!(id, "backup: row counts not recorded: {e}");
            None
        }
    };
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
                counts,
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

/// A libpq connection string for `database` under `application_name` (quoted as libpq reads it).
pub(crate) fn conninfo(database: &str, application_name: &str) -> String {
    format!(
        "dbname='{}' application_name={application_name}",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

async fn dump_to(
    state: &Dumper,
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
    // A plain dump drops what it creates first, as `pg_restore --clean --if-exists` does for a
    // custom one: either restores over the running database.
    let format_flags: &[&str] = match format {
        BackupFormat::Custom => &["--format=custom"],
        BackupFormat::Plain => &["--format=plain", "--clean", "--if-exists"],
    };
    let conninfo = conninfo(database, &application_name(id));
    let mut cmd = vec!["pg_dump", "-U", user, "-d", &conninfo];
    cmd.extend(format_flags);
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
        return Err(super::pg::exited("pg_dump", code, &stderr));
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
async fn stop_dump(state: &Dumper, container: &str, user: &str, id: i64) {
    terminate_dump(&state.engine, container, user, id).await
}

/// How long ending a dump's session may take (the psql call that ends it is given this long).
pub const STOP_DUMP_WITHIN: Duration = Duration::from_secs(10);

async fn terminate_dump(engine: &Engine, container: &str, user: &str, id: i64) {
    terminate_session(engine, container, user, &application_name(id)).await
}

/// Ends the database sessions named `application_name` (best effort: the database may be gone too);
/// a transaction they hold is rolled back.
pub(crate) async fn terminate_session(
    engine: &Engine,
    container: &str,
    user: &str,
    application_name: &str,
) {
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{application_name}'"
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
    state: &Dumper,
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
