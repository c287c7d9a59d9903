//! A restore's own steps: the dump checked before anything is stopped, then streamed from its file
//! into the database container through the Docker API exec (never whole in memory) and restored in
//! one transaction, so a restore that fails leaves the database as it was.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::*;
use crate::backup::ssr::pg::{dump_format, exited, restore_command, restore_tool};
use crate::backup::{Backup, BackupFormat, BackupOutcome};
use crate::deploy::{RestoreFrom, RestoreRequest};

/// How often a running restore says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The last lines of the restore command's messages shown when it ends.
const MESSAGES_SHOWN: usize = 20;

/// The dump a restore reads: where it is, what it is, what its record says.
struct Dump {
    path: PathBuf,
    format: BackupFormat,
    size: u64,
    /// "backup #7 (file name)" or "the file /path".
    label: String,
}

impl Deployer {
    /// The restore these options ask for (a step of a restore's plan has one).
    fn restore_request(options: &DeployOptions) -> Result<&RestoreRequest, StepFailure> {
        options
            .restore
            .as_ref()
            .ok_or_else(|| StepFailure::new("this run is not a restore".into()))
    }

    /// Where the dump is and what it is; for a backup of the history, its record must say succeeded.
    async fn locate_dump(&self, from: &RestoreFrom) -> Result<(Dump, Option<Backup>), StepFailure> {
        let (path, label, backup) = match from {
            RestoreFrom::Backup(id) => {
                let backup = self
                    .store
                    .backup(*id)
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()))?
                    .filter(|b| b.outcome == BackupOutcome::Succeeded)
                    .ok_or_else(|| {
                        StepFailure::new(format!("backup #{id} is not a successful backup"))
                    })?;
                let name = backup.file_name.clone().unwrap_or_default();
                let path = self.config.backups_dir().join(&name);
                (path, format!("backup #{id} ({name})"), Some(backup))
            }
            RestoreFrom::File(path) => (PathBuf::from(path), format!("the file {path}"), None),
        };
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| StepFailure::new(format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(StepFailure::new(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let format = dump_format(&path).await.map_err(StepFailure::new)?;
        Ok((
            Dump {
                path,
                format,
                size: meta.len(),
                label,
            },
            backup,
        ))
    }

    /// The "check backup" step: the file is the one recorded (size and sha256), a dump of a known
    /// format, and the database runs; what the restore loses is said before anything is stopped.
    pub(super) async fn check_dump(
        &self,
        options: &DeployOptions,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let request = Self::restore_request(options)?;
        let (dump, backup) = self.locate_dump(&request.from).await?;
        let size = crate::health::maintenance::human_bytes(dump.size);
        if let Some(b) = &backup {
            if b.size_bytes != Some(dump.size) {
                return Err(StepFailure::new(format!(
                    "{} is {} bytes, its record says {}: the file changed since the backup",
                    dump.label,
                    dump.size,
                    b.size_bytes.unwrap_or(0)
                )));
            }
            let sha = crate::files::sha256_of(&dump.path)
                .await
                .map_err(|e| StepFailure::new(format!("cannot read {}: {e}", dump.label)))?;
            if b.sha256.as_deref() != Some(sha.as_str()) {
                return Err(StepFailure::new(format!(
                    "{}: its sha256 is not the recorded one: the file changed since the backup",
                    dump.label
                )));
            }
            let age = crate::deploy::view::seconds((Utc::now() - b.started_at).num_milliseconds());
            out.line(
                position,
                false,
                &format!(
                    "{}: {size}, sha256 {} as recorded; taken {} UTC ({age} ago){}",
                    dump.label,
                    &sha[..16],
                    b.started_at.format("%Y-%m-%d %H:%M:%S"),
                    b.deploy_id
                        .map(|d| format!(" while deploy #{d} ran"))
                        .unwrap_or_default()
                ),
            )
            .await;
            out.line(
                position,
                false,
                "everything written to the database since is lost (the safety backup keeps it)",
            )
            .await;
        } else {
            out.line(position, false, &format!("{}: {size}", dump.label))
                .await;
        }
        out.line(
            position,
            false,
            &format!(
                "{}: restored with {}",
                match dump.format {
                    BackupFormat::Custom => "a pg_dump custom archive",
                    BackupFormat::Plain => "plain SQL",
                },
                restore_tool(dump.format)
            ),
        )
        .await;
        self.running_database().await?;
        out.line(position, false, "the database container runs")
            .await;
        Ok(())
    }

    /// The database service's running container.
    async fn running_database(&self) -> Result<String, StepFailure> {
        let container = self
            .container_of("database")
            .await?
            .ok_or_else(|| StepFailure::new("the project has no database container".into()))?;
        let running = self
            .engine
            .inspect_container(&container)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            return Err(StepFailure::new(
                "the database container is not running".into(),
            ));
        }
        Ok(container)
    }

    /// The "restore" step: the dump streamed into `pg_restore` (or `psql`) in the database container,
    /// in one transaction; its progress every few seconds, its messages at the end.
    pub(super) async fn restore_database(
        &self,
        options: &DeployOptions,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<i64, StepFailure> {
        let request = Self::restore_request(options)?;
        let (dump, _) = self.locate_dump(&request.from).await?;
        let container = self.running_database().await?;
        let (user, database) =
            crate::backup::ssr::database_login(&self.masker.env_file(&self.config).0);
        let session = format!("epsm-ops-restore-{}", out.id);
        let conninfo = crate::backup::ssr::conninfo(&database, &session);
        let cmd = restore_command(dump.format, &user, &conninfo);
        out.line(
            position,
            false,
            &format!(
                "$ exec database {} < {}",
                cmd.join(" ").replace(&conninfo, &database),
                dump.label
            ),
        )
        .await;
        let file = tokio::fs::File::open(&dump.path)
            .await
            .map_err(|e| StepFailure::new(format!("cannot read {}: {e}", dump.path.display())))?;
        let read = Arc::new(AtomicU64::new(0));
        let input = Counting {
            inner: file,
            read: read.clone(),
        };
        // Dropped half-way (a cancel), the restore's session is ended: its transaction rolls back.
        let guard = EndSessionIfDropped {
            engine: self.engine.clone(),
            container: container.clone(),
            user: user.clone(),
            session: session.clone(),
            left: out.left.clone(),
            armed: true,
        };
        let started = Instant::now();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut sink = tokio::io::sink();
        let restoring =
            self.engine
                .exec_streaming(&container, &cmd, &mut sink, Some(Box::new(input)));
        tokio::pin!(restoring);
        let mut every = tokio::time::interval(PROGRESS_EVERY);
        every.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut restoring => break r,
                _ = every.tick() => {
                    let done = read.load(Ordering::Relaxed);
                    out.line(position, false, &format!(
                        "read {} of {} ({}%) in {:.0} s",
                        crate::health::maintenance::human_bytes(done),
                        crate::health::maintenance::human_bytes(dump.size),
                        done * 100 / dump.size.max(1),
                        started.elapsed().as_secs_f64()
                    )).await;
                }
            }
        };
        guard.disarm();
        let (code, messages) = result.map_err(|e| StepFailure::new(e.to_string()))?;
        let lines: Vec<&str> = messages.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines[lines.len().saturating_sub(MESSAGES_SHOWN)..] {
            out.line(position, code != Some(0), line).await;
        }
        match code {
            Some(0) => {
                out.line(
                    position,
                    false,
                    &format!(
                        "restored {} from {} in {:.1} s, in one transaction",
                        database,
                        dump.label,
                        started.elapsed().as_secs_f64()
                    ),
                )
                .await;
                Ok(0)
            }
            code => Err(StepFailure {
                exit_code: code,
                ..StepFailure::new(exited(restore_tool(dump.format), code, &messages))
            }),
        }
    }
}

/// What a restore's failure at `step` leaves, for the summary.
pub(super) fn restore_left_state(step: &str) -> &'static str {
    match step {
        "check backup" | "safety backup" | "restore images" | "drain tasks"
        | "maintenance page" | "stop writers" => " (the database was not touched)",
        "restore" => " (the restore runs in one transaction: the database is as it was)",
        _ => " (the database is restored)",
    }
}

/// A reader that counts what was read (the restore's progress).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let added = buf.filled().len() - before;
        self.read.fetch_add(added as u64, Ordering::Relaxed);
        poll
    }
}

/// A restore in progress, as its guard: dropped before `disarm` (the run was cancelled), it ends the
/// restore's database session, so its one transaction rolls back.
struct EndSessionIfDropped {
    engine: Arc<Engine>,
    container: String,
    user: String,
    session: String,
    left: output::LeftBehind,
    armed: bool,
}

impl EndSessionIfDropped {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for EndSessionIfDropped {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.left.say(
            "the restore was stopped: its database session is ended, so its transaction rolls back \
             and the database stays as it was"
                .into(),
        );
        let (engine, container, user, session) = (
            self.engine.clone(),
            self.container.clone(),
            self.user.clone(),
            self.session.clone(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                crate::backup::ssr::terminate_session(&engine, &container, &user, &session).await;
            });
        }
    }
}
