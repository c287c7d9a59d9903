//! The steps of a deploy's plan, each carried out for real: preflight checks, compose commands as
//! child processes, waiting for health, verifying, the backup before.

use super::*;
use crate::compose::process::{KILL_GRACE, ProcessGroup};

/// Beyond the kill grace, how long a cancelled compose step waits for its process to be gone.
const STOPPED_WITHIN: Duration = Duration::from_secs(2);
/// What BuildKit prints when a build meets a cache record a concurrent prune removed
/// (moby/buildkit#3959): `ERROR: failed to get dead record <id>: not found`. Another console's deploy,
/// a cron's `docker builder prune` or the Health page's prune on the same engine can cause it.
pub(super) const BUILDKIT_PRUNE_RACE: &str = "failed to get dead record";

impl Deployer {
    pub(super) async fn carry_out(
        &self,
        action: &Action,
        options: &DeployOptions,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<Done, StepFailure> {
        let none = |_| Done::Code(None);
        match action {
            Action::Preflight => self.preflight(options, position, out).await.map(none),
            Action::Source => self.source(position, out).await,
            Action::PullImages => self.pull_images(position, out).await,
            Action::Compose(args) => self
                .compose_step(args, position, out)
                .await
                .map(|code| Done::Code(Some(code))),
            Action::PruneBuildCache => {
                let (removed, freed) = self
                    .engine
                    .prune_build_cache()
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()))?;
                out.line(
                    position,
                    false,
                    &format!(
                        "build cache: removed {removed} entries, freed {}",
                        crate::health::maintenance::human_bytes(freed)
                    ),
                )
                .await;
                Ok(Done::Code(None))
            }
            Action::WaitHealthy(services) => {
                self.wait_healthy(services, position, out).await.map(none)
            }
            Action::Exec { service, cmd } => self
                .exec_step(service, cmd, position, out)
                .await
                .map(|code| Done::Code(Some(code))),
            Action::Verify => self.verify(position, out).await.map(none),
            Action::RestoreImages(id) => self.restore_images(*id, position, out).await.map(none),
            Action::KeepImages => self.keep_images(position, out).await.map(none),
            Action::Backup => self.backup(position, out).await.map(none),
            Action::CheckDump => self.check_dump(options, position, out).await.map(none),
            Action::RestoreDatabase => self
                .restore_database(options, position, out)
                .await
                .map(|code| Done::Code(Some(code))),
            Action::Drain => self.drain(position, out).await.map(none),
            Action::MaintenanceOn => self.maintenance_on(position, out).await.map(none),
            Action::Reopen(args) => self
                .reopen(args, position, out)
                .await
                .map(|code| Done::Code(Some(code))),
        }
    }

    /// The container of one of the project's services (running or not), as a step needs it.
    pub(super) async fn container_of(&self, service: &str) -> Result<Option<String>, StepFailure> {
        self.engine
            .service_container(&self.config.project_name(), service)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))
    }

    pub(super) async fn preflight(
        &self,
        options: &DeployOptions,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let audit = crate::environment::ssr::audit_project(
            &self.config.project.dir,
            &self.config.project.compose_file,
            &self.config.project.env_file,
            &crate::environment::secrets::secret_name_parts(&self.config.secrets.extra_name_parts),
        )
        .map_err(|e| StepFailure::new(e.to_string()))?;
        let errors: Vec<String> = audit
            .findings
            .iter()
            .filter(|f| f.severity == crate::environment::Severity::Error)
            .map(|f| {
                format!(
                    "{} {} (line {}): {}",
                    f.rule,
                    f.key,
                    f.line.unwrap_or(0),
                    f.message
                )
            })
            .collect();
        for e in &errors {
            out.line(position, true, &format!("audit error: {e}")).await;
        }
        if !errors.is_empty() && !options.ignore_audit_errors {
            return Err(StepFailure::new(format!(
                "the environment audit has {} error-level finding(s) (see the Environment page; the deploy option \"ignore audit errors\" overrides)",
                errors.len()
            )));
        }
        let model = self
            .compose
            .model(&out.scrubber)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        out.line(
            position,
            false,
            "compose file and env file: compose accepts them",
        )
        .await;
        match self.engine.status().await.state {
            crate::engine::EngineState::Reachable(info) => {
                out.line(
                    position,
                    false,
                    &format!("Docker engine {} answers", info.version),
                )
                .await;
            }
            crate::engine::EngineState::Unreachable { reason } => {
                return Err(StepFailure::new(reason));
            }
        }
        // `up` would fail half-way on a name or port another project holds: refuse before `down`.
        let all = self
            .engine
            .all_containers()
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let collisions = model.collisions(&self.compose.project, &all);
        for c in &collisions {
            out.line(position, true, &format!("collision: {c}")).await;
        }
        if !collisions.is_empty() {
            return Err(StepFailure::new(format!(
                "compose project {} would collide with what runs: {}",
                self.compose.project,
                collisions.join("; ")
            )));
        }
        out.line(
            position,
            false,
            &format!(
                "compose project {} (from {}): no container name or port of another project in the way",
                self.compose.project,
                self.config.project.name_source.describe()
            ),
        )
        .await;
        self.check_source(options, position, out).await
    }

    /// `docker compose <args>` in its own process group; every line of its output is a log line.
    ///
    /// A build that fails because BuildKit lost a cache record to a prune running beside it (see
    /// [`BUILDKIT_PRUNE_RACE`]) is run once more: the failure was the engine's, not the code's.
    pub(super) async fn compose_step(
        &self,
        args: &[String],
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<i64, StepFailure> {
        let mut raced = false;
        let result = self.compose_run(args, position, out, &mut raced).await;
        let building = args.first().is_some_and(|a| a == "build");
        match result {
            Err(failure) if building && raced && !failure.cancelled => {
                out.line(
                    position,
                    true,
                    "the engine's build cache lost a record to a prune beside this build \
                     (a BuildKit race, moby/buildkit#3959), not to the code: building once more",
                )
                .await;
                self.compose_run(args, position, out, &mut raced).await
            }
            result => result,
        }
    }

    /// One run of `docker compose <args>`; sets `raced` when its output names BuildKit's prune race.
    async fn compose_run(
        &self,
        args: &[String],
        position: usize,
        out: &mut Output<'_>,
        raced: &mut bool,
    ) -> Result<i64, StepFailure> {
        let mut full = vec!["--ansi", "never", "--progress", "plain"];
        full.extend(args.iter().map(String::as_str));
        out.line(
            position,
            false,
            &format!("$ docker compose {}", args.join(" ")),
        )
        .await;
        let mut child = self
            .compose
            .command(&full)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                StepFailure::new(format!(
                    "cannot run {}: {e}",
                    self.compose.program.display()
                ))
            })?;
        let group = ProcessGroup(child.id());
        // Kept in the store too: if the console dies, the next start stops what it left running.
        if let Err(e) = self.store.set_child_group(out.id, child.id()).await {
            tracing::warn!("deploy #{}: {e}", out.id);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, String)>(256);
        for (stderr, pipe) in [
            (
                false,
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            ),
            (
                true,
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut pipe = pipe;
                let mut lines = lines::LineSplitter::new(MAX_LINE);
                let mut chunk = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
                    for line in lines.push(&chunk[..n]) {
                        if tx.send((stderr, line)).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some(line) = lines.finish() {
                    let _ = tx.send((stderr, line)).await;
                }
            });
        }
        drop(tx);
        let cancel = out.cancel.clone();
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some((stderr, line)) => {
                        *raced |= line.contains(BUILDKIT_PRUNE_RACE);
                        out.line(position, stderr, &line).await
                    }
                    None => break,
                },
                _ = cancel.cancelled() => {
                    // SIGTERM to compose and everything it started, SIGKILL after the grace.
                    drop(group);
                    let ended = tokio::time::timeout(KILL_GRACE + STOPPED_WITHIN, child.wait()).await;
                    let _ = self.store.set_child_group(out.id, None).await;
                    let how = match ended {
                        Ok(Ok(status)) => format!("it ended ({status})"),
                        _ => "it had not ended yet".to_string(),
                    };
                    out.line(
                        position,
                        true,
                        &format!("cancelled: compose and the processes it started were stopped; {how}"),
                    )
                    .await;
                    return Err(StepFailure::cancelled());
                }
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| StepFailure::new(format!("waiting for compose: {e}")))?;
        group.disarm();
        let _ = self.store.set_child_group(out.id, None).await;
        match status.code() {
            Some(0) => Ok(0),
            Some(code) => Err(StepFailure {
                reason: format!("`docker compose {}` exited {code}", args.join(" ")),
                exit_code: Some(code as i64),
                cancelled: false,
            }),
            None => Err(StepFailure::new("compose was killed by a signal".into())),
        }
    }

    /// Until the services' containers are healthy (Docker's healthcheck), bounded.
    pub(super) async fn wait_healthy(
        &self,
        services: &[String],
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let within = Duration::from_secs(self.config.deploy.wait_timeout_secs);
        let deadline = Instant::now() + within;
        let mut last_said = String::new();
        loop {
            let mut waiting = Vec::new();
            for service in services {
                let state = match self
                    .engine
                    .service_container(&self.config.project_name(), service)
                    .await
                {
                    Ok(Some(id)) => match self.engine.inspect_container(&id).await {
                        Ok(inspect) => {
                            let s = inspect.state.unwrap_or_default();
                            let status = s.status.map(|x| x.to_string()).unwrap_or_default();
                            let health = s
                                .health
                                .clone()
                                .and_then(|h| h.status)
                                .map(|h| h.to_string());
                            let output = s
                                .health
                                .and_then(|h| h.log?.last()?.output.clone())
                                .unwrap_or_default();
                            match (status.as_str(), health.as_deref()) {
                                ("running", Some("healthy") | None | Some("none") | Some("")) => {
                                    None
                                }
                                (status, health) => Some(format!(
                                    "{service}: {status}{}{}",
                                    health.map(|h| format!(", {h}")).unwrap_or_default(),
                                    if output.trim().is_empty() {
                                        String::new()
                                    } else {
                                        format!(" ({})", output.trim())
                                    }
                                )),
                            }
                        }
                        Err(e) => Some(format!("{service}: {e}")),
                    },
                    Ok(None) => Some(format!("{service}: no container")),
                    Err(e) => return Err(StepFailure::new(e.to_string())),
                };
                waiting.extend(state);
            }
            if waiting.is_empty() {
                out.line(
                    position,
                    false,
                    &format!("healthy: {}", services.join(", ")),
                )
                .await;
                return Ok(());
            }
            let said = waiting.join("; ");
            if said != last_said {
                out.line(position, false, &format!("waiting: {said}")).await;
                last_said = said.clone();
            }
            if Instant::now() >= deadline {
                return Err(StepFailure::new(format!(
                    "not healthy within {} s: {said}",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Every declared service healthy, deep probes included (the Health page's verdicts).
    pub(super) async fn verify(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let within = Duration::from_secs(self.config.deploy.wait_timeout_secs);
        let deadline = Instant::now() + within;
        loop {
            let report = self.health.round_and_probes().await;
            let bad: Vec<String> = report
                .services
                .iter()
                .filter(|s| s.verdict.needs_attention())
                .map(|s| format!("{}: {}", s.name, s.verdict.reason().unwrap_or_default()))
                .collect();
            if bad.is_empty() && !report.services.is_empty() {
                for s in &report.services {
                    let said = match (&s.verdict, &s.probe) {
                        (_, crate::health::ProbeResult::Passed { detail, .. }) => {
                            format!("healthy ({detail})")
                        }
                        (Verdict::Unchecked, _) => "running (no healthcheck, no probe)".into(),
                        _ => "healthy (Docker's healthcheck)".into(),
                    };
                    out.line(position, false, &format!("{}: {said}", s.name))
                        .await;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepFailure::new(format!("not healthy: {}", bad.join("; "))));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// A backup before anything is stopped. No database container yet (a first deploy) means there is
    /// nothing to lose; one that exists but cannot be dumped stops the deploy.
    pub(super) async fn backup(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let exists = self.container_of("database").await?;
        if exists.is_none() {
            out.line(
                position,
                false,
                "no database container yet: nothing to back up",
            )
            .await;
            return Ok(());
        }
        let backups = &self.backups;
        // A restore lends the turn it holds; a deploy waits for one.
        let held = self.held_backup_turn();
        let restoring = held.is_some();
        let (actor, turn) = match held {
            Some(turn) => (format!("restore #{}", out.id), turn),
            None => (format!("deploy #{}", out.id), backups.wait_turn().await),
        };
        let mut started = crate::backup::ssr::begin(backups, turn, &actor, Default::default())
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        if restoring {
            // The retention policy must not delete the backup about to be restored.
            started = started.without_retention();
        }
        let said = SayIfDropped {
            note: Some(format!(
                "backup #{} was stopped half-way: its partial file is removed, its pg_dump ended \
                 and it is marked failed",
                started.id
            )),
            left: out.left.clone(),
        };
        let backup = started
            .run(backups)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        said.done();
        out.line(
            position,
            false,
            &format!(
                "backup #{}: {} ({} bytes, sha256 {})",
                backup.id,
                backup.file_name.unwrap_or_default(),
                backup.size_bytes.unwrap_or(0),
                backup.sha256.unwrap_or_default()
            ),
        )
        .await;
        Ok(())
    }
}

/// What state a step's failure leaves the stack in, for the summary; `stopped`: the plan's `down`
/// came before this step (built first, a failed build leaves the running version serving).
pub(super) fn left_state(step: &str, stopped: bool) -> &'static str {
    match step {
        "preflight" | "back up database" => " (nothing was changed)",
        "source" => " (nothing was stopped; the working tree is as git left it)",
        "pull images" => " (nothing was stopped)",
        "drain tasks" => " (nothing was stopped; the worker takes tasks again)",
        "maintenance page" => " (nginx may be stopped: it is started again below)",
        "prune build cache" | "build" if !stopped => {
            " (nothing was stopped: the running version still serves)"
        }
        "down" | "prune build cache" | "build" => {
            " (the stack is down: run a deploy again, or roll back)"
        }
        "up" | "wait for healthy" => " (the new containers may be partly up)",
        "reopen" => " (the new version runs; nginx did not start again)",
        "restore images" => " (nothing was changed)",
        "keep images" => {
            " (the new containers are up and healthy; this deploy cannot be rolled back to)"
        }
        _ => " (the new containers are up)",
    }
}

/// How a step that did not fail ended.
pub(super) enum Done {
    /// It ran; the exit code of its command, if it had one.
    Code(Option<i64>),
    /// Nothing to do here (the reason is in the log).
    Skipped,
}

/// What preflight resolved for the source step to check out.
#[derive(Debug, Clone)]
pub(super) struct SourcePlan {
    pub(super) from: Option<String>,
    pub(super) to: String,
    /// The configured branch is reset to `to` (else a detached HEAD: a tag or a commit).
    pub(super) on_branch: bool,
    /// Discard local changes (admin, confirmed).
    pub(super) force: bool,
}

/// A commit id as people read it.
pub(super) fn short(commit: &str) -> String {
    commit.chars().take(10).collect()
}

pub(super) struct StepFailure {
    pub(super) reason: String,
    pub(super) exit_code: Option<i64>,
    pub(super) cancelled: bool,
}

impl StepFailure {
    pub(super) fn new(reason: String) -> StepFailure {
        StepFailure {
            reason,
            exit_code: None,
            cancelled: false,
        }
    }

    pub(super) fn cancelled() -> StepFailure {
        StepFailure {
            reason: "cancelled".into(),
            exit_code: None,
            cancelled: true,
        }
    }
}
