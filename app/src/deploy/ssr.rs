//! Running deploys: one at a time (a lock in memory and a unique row in the store), each step of the
//! plan carried out for real (compose as a child process in its own process group, in-container steps
//! through the API), every line scrubbed, stored and sent to the live viewers, and the outcome kept.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::changes::ChangeCard;
use super::git::Git;
use super::plan::{Action, PlannedStep, plan};
use super::{DeployEvent, DeployLine, DeployOptions, DeployOutcome, DeployStep, StepStatus};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::auth::Actor;
use crate::backup::ssr::Backups;
use crate::compose::ComposeCli;
use crate::config::Config;
use crate::engine::ssr::{Engine, SERVICE_LABEL};
use crate::environment::disk::file_sha256;
use crate::environment::secrets::{Masker, Scrubber};
use crate::error::AppError;
use crate::health::Verdict;
use crate::health::ssr::HealthMonitor;
use crate::store::{Store, StoreError};

/// Longer lines are cut: one runaway line must not fill the store or a page.
const MAX_LINE: usize = 8 * 1024;

mod lines;
mod source;

pub use lines::LineSplitter;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "deploy #{id} started by {actor} at {started_at} UTC is running: wait for it or cancel it"
    )]
    Busy {
        id: i64,
        actor: String,
        started_at: String,
    },
    #[error("{what}: type the project name ({project}) to confirm")]
    NotConfirmed { what: &'static str, project: String },
    #[error("deploy #{0} is not running")]
    NotRunning(i64),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl DeployError {
    pub fn into_app_error(self) -> AppError {
        match self {
            DeployError::Busy { .. } | DeployError::NotRunning(_) => {
                AppError::Invalid(self.to_string())
            }
            DeployError::NotConfirmed { .. } => AppError::Invalid(self.to_string()),
            DeployError::Store(e) => AppError::from(e),
        }
    }
}

/// The running deploy, as the lock holds it.
struct Running {
    id: i64,
    actor: String,
    started_at: DateTime<Utc>,
    cancel: CancellationToken,
    /// What a viewer who joins late is sent first: the steps and the last `LOG_WINDOW` lines (the
    /// earlier ones are in the store).
    history: History,
    live: broadcast::Sender<DeployEvent>,
}

/// A running deploy's events so far, bounded: each step's latest state, the newest `LOG_WINDOW`
/// lines and how many came before them, and the end once it came.
#[derive(Default)]
struct History {
    steps: std::collections::BTreeMap<usize, DeployStep>,
    lines: std::collections::VecDeque<DeployLine>,
    earlier: u64,
    finished: Option<DeployEvent>,
}

impl History {
    fn push(&mut self, event: &DeployEvent) {
        match event {
            DeployEvent::Line(line) => {
                if self.lines.len() == crate::deploy::LOG_WINDOW {
                    self.lines.pop_front();
                    self.earlier += 1;
                }
                self.lines.push_back(line.clone());
            }
            DeployEvent::Step { position, step } => {
                self.steps.insert(*position, step.clone());
            }
            DeployEvent::Finished { .. } => self.finished = Some(event.clone()),
            DeployEvent::Earlier { .. } => {}
        }
    }

    fn events(&self) -> Vec<DeployEvent> {
        let steps = self.steps.iter().map(|(position, step)| DeployEvent::Step {
            position: *position,
            step: step.clone(),
        });
        let earlier = (self.earlier > 0).then_some(DeployEvent::Earlier {
            lines: self.earlier,
        });
        steps
            .chain(earlier)
            .chain(self.lines.iter().cloned().map(DeployEvent::Line))
            .chain(self.finished.clone())
            .collect()
    }
}

pub struct Deployer {
    config: Arc<Config>,
    store: Store,
    engine: Arc<Engine>,
    masker: Arc<Masker>,
    health: Arc<HealthMonitor>,
    /// The "back up the database first" step's backups (the same service, and turn, as the page's).
    backups: Arc<Backups>,
    compose: ComposeCli,
    git: Git,
    running: Mutex<Option<Running>>,
    /// The git and compose parts of the last change card, by (running, target) commit.
    card_cache: Mutex<Option<(CardKey, ChangeCard)>>,
    /// When the console last fetched the remote.
    last_fetch: Mutex<Option<DateTime<Utc>>>,
}

/// What a change card's git and compose parts depend on: the commit that runs and the target.
type CardKey = (Option<String>, String);

impl Deployer {
    /// Marks deploys a previous process left running as interrupted (the lock is free again).
    pub async fn new(
        config: Arc<Config>,
        store: Store,
        engine: Arc<Engine>,
        masker: Arc<Masker>,
        health: Arc<HealthMonitor>,
        backups: Arc<Backups>,
    ) -> Result<Arc<Deployer>, StoreError> {
        for id in store.interrupt_running_deploys().await? {
            tracing::warn!("deploy #{id} was running when the console stopped: marked interrupted");
            store
                .record(AuditEvent {
                    actor: "system".into(),
                    action: "deploy.interrupted".into(),
                    target: format!("deploy #{id}"),
                    outcome: AuditOutcome::Failed,
                    detail: "the console stopped while it ran".into(),
                })
                .await?;
        }
        Ok(Arc::new(Deployer {
            compose: ComposeCli::from_config(&config),
            git: Git::from_config(&config),
            card_cache: Mutex::new(None),
            last_fetch: Mutex::new(None),
            config,
            store,
            engine,
            masker,
            health,
            backups,
            running: Mutex::new(None),
        }))
    }

    /// Starts a deploy unless one runs. Returns its id at once; the deploy goes on in a task.
    pub async fn start(
        self: &Arc<Self>,
        actor: &Actor,
        options: DeployOptions,
        confirm: Option<&str>,
    ) -> Result<i64, DeployError> {
        let project = &self.config.project_name();
        if options.destructive() && confirm.map(str::trim) != Some(project.as_str()) {
            let what = if options.recreate_volumes {
                "recreating volumes deletes all data"
            } else {
                "discarding local changes loses what was changed on the server"
            };
            self.audit(
                actor,
                "deploy.start",
                "",
                AuditOutcome::Refused,
                &format!("not confirmed: {what}"),
            )
            .await?;
            return Err(DeployError::NotConfirmed {
                what,
                project: project.clone(),
            });
        }
        let plan = plan(&options, &self.config.deploy.seed_command);
        let claimed = {
            // Held across no await: the check and the claim are one step.
            let mut running = self.running.lock().expect("deploy lock");
            match running.as_ref() {
                Some(r) => Err(DeployError::Busy {
                    id: r.id,
                    actor: r.actor.clone(),
                    started_at: r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                }),
                None => {
                    let cancel = CancellationToken::new();
                    // Claimed with id 0 until the store gives the id (a second click meanwhile is refused).
                    *running = Some(Running {
                        id: 0,
                        actor: actor.name.clone(),
                        started_at: Utc::now(),
                        cancel: cancel.clone(),
                        history: History::default(),
                        live: broadcast::channel(1024).0,
                    });
                    Ok(cancel)
                }
            }
        };
        let cancel = match claimed {
            Ok(cancel) => cancel,
            Err(busy) => return Err(self.refused(actor, busy).await),
        };
        let facts = self.project_facts().await;
        let inserted = self
            .store
            .insert_deploy(&actor.name, &options, &plan, &facts)
            .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                *self.running.lock().expect("deploy lock") = None;
                // The store's one-running rule: another process (`epsm-ops deploy`) runs one.
                if let Ok(Some((id, by, at))) = self.store.running_deploy().await {
                    let busy = DeployError::Busy {
                        id,
                        actor: by,
                        started_at: crate::store::parse_time(&at)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                    };
                    return Err(self.refused(actor, busy).await);
                }
                return Err(e.into());
            }
        };
        if let Some(r) = self.running.lock().expect("deploy lock").as_mut() {
            r.id = id;
        }
        self.audit(
            actor,
            "deploy.start",
            &format!("deploy #{id}"),
            AuditOutcome::Ok,
            &options.describe(),
        )
        .await?;
        let me = Arc::clone(self);
        let actor = actor.clone();
        tokio::spawn(async move { me.run(id, actor, options, plan, cancel).await });
        Ok(id)
    }

    /// A start refused because another deploy runs: in the audit log, then the error to return.
    async fn refused(&self, actor: &Actor, busy: DeployError) -> DeployError {
        match self
            .audit(
                actor,
                "deploy.start",
                "",
                AuditOutcome::Refused,
                &busy.to_string(),
            )
            .await
        {
            Ok(()) => busy,
            Err(e) => e.into(),
        }
    }

    /// Cancels the running deploy `id`: its current step is stopped (a child process with its whole
    /// process tree).
    pub async fn cancel(&self, actor: &Actor, id: i64) -> Result<(), DeployError> {
        let token = {
            let running = self.running.lock().expect("deploy lock");
            match running.as_ref() {
                Some(r) if r.id == id => r.cancel.clone(),
                _ => return Err(DeployError::NotRunning(id)),
            }
        };
        token.cancel();
        self.audit(
            actor,
            "deploy.cancel",
            &format!("deploy #{id}"),
            AuditOutcome::Ok,
            "",
        )
        .await?;
        Ok(())
    }

    /// The deploys, newest first (only those that ended so when `outcome` is given).
    pub async fn list(
        &self,
        outcome: Option<DeployOutcome>,
        limit: u32,
    ) -> Result<Vec<super::Deploy>, StoreError> {
        self.store.deploys(outcome, limit).await
    }

    /// One deploy with its steps.
    pub async fn get(&self, id: i64) -> Result<Option<super::Deploy>, StoreError> {
        self.store.deploy(id).await
    }

    /// The running deploy's events so far and a receiver for the rest, when `id` is the running one.
    pub fn follow(&self, id: i64) -> Option<(Vec<DeployEvent>, broadcast::Receiver<DeployEvent>)> {
        let running = self.running.lock().expect("deploy lock");
        let r = running.as_ref().filter(|r| r.id == id)?;
        Some((r.history.events(), r.live.subscribe()))
    }

    async fn run(
        self: Arc<Self>,
        id: i64,
        actor: Actor,
        options: DeployOptions,
        plan: Vec<PlannedStep>,
        cancel: CancellationToken,
    ) {
        let scrubber = Arc::new(self.scrubber());
        let mut out = Output {
            deployer: &self,
            id,
            seq: Arc::new(AtomicU64::new(0)),
            scrubber: Arc::clone(&scrubber),
            source: None,
            left: LeftBehind::default(),
        };
        let mut outcome = DeployOutcome::Succeeded;
        let mut summary = String::new();
        for (position, planned) in plan.iter().enumerate() {
            if planned.skipped {
                out.step(
                    position,
                    planned.name,
                    StepStatus::Skipped,
                    None,
                    None,
                    None,
                )
                .await;
                continue;
            }
            if outcome != DeployOutcome::Succeeded {
                continue;
            }
            let started = Utc::now();
            let clock = Instant::now();
            out.step(
                position,
                planned.name,
                StepStatus::Running,
                None,
                Some(started),
                None,
            )
            .await;
            let result = tokio::select! {
                r = self.carry_out(&planned.action, &options, position, &mut out) => r,
                _ = cancel.cancelled() => Err(StepFailure::cancelled()),
            };
            let ms = Some(clock.elapsed().as_millis() as u64);
            match result {
                Ok(done) => {
                    let (status, code) = match done {
                        Done::Code(code) => (StepStatus::Succeeded, code),
                        Done::Skipped => (StepStatus::Skipped, None),
                    };
                    out.step(position, planned.name, status, code, Some(started), ms)
                        .await
                }
                Err(failure) => {
                    let status = if failure.cancelled {
                        StepStatus::Cancelled
                    } else {
                        StepStatus::Failed
                    };
                    out.step(
                        position,
                        planned.name,
                        status,
                        failure.exit_code,
                        Some(started),
                        ms,
                    )
                    .await;
                    out.line(
                        position,
                        true,
                        &format!(
                            "step {} {}: {}",
                            planned.name,
                            status.as_str(),
                            failure.reason
                        ),
                    )
                    .await;
                    outcome = if failure.cancelled {
                        DeployOutcome::Cancelled
                    } else {
                        DeployOutcome::Failed
                    };
                    // What the cancelled step's guards said as it was dropped.
                    let left = out.left.take();
                    for note in &left {
                        out.line(position, true, note).await;
                    }
                    let left: String = left.iter().map(|n| format!("; {n}")).collect();
                    summary = scrubber.scrub(&format!(
                        "{} at step {}: {}{}{left}",
                        outcome.as_str(),
                        planned.name,
                        failure.reason,
                        left_state(planned.name)
                    ));
                }
            }
        }
        if outcome == DeployOutcome::Succeeded {
            summary = "all steps succeeded; every service up and healthy".into();
        }
        let images = self.images().await;
        if let Err(e) = self
            .store
            .finish_deploy(id, outcome, &summary, &images)
            .await
        {
            tracing::error!("deploy #{id}: cannot record the outcome: {e}");
        }
        let audit_outcome = if outcome == DeployOutcome::Succeeded {
            AuditOutcome::Ok
        } else {
            AuditOutcome::Failed
        };
        let _ = self
            .audit(
                &actor,
                "deploy.finish",
                &format!("deploy #{id}"),
                audit_outcome,
                &summary,
            )
            .await;
        out.send(DeployEvent::Finished { outcome, summary });
        *self.running.lock().expect("deploy lock") = None;
        self.health.refresh();
    }

    async fn carry_out(
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
        }
    }

    async fn preflight(
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
    async fn compose_step(
        &self,
        args: &[String],
        position: usize,
        out: &mut Output<'_>,
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
        while let Some((stderr, line)) = rx.recv().await {
            out.line(position, stderr, &line).await;
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

    async fn exec_step(
        &self,
        service: &str,
        cmd: &[String],
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<i64, StepFailure> {
        let container = self
            .engine
            .service_container(&self.config.project_name(), service)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .ok_or_else(|| StepFailure::new(format!("service {service} has no container")))?;
        out.line(
            position,
            false,
            &format!("$ exec {service} {}", cmd.join(" ")),
        )
        .await;
        // The command's output is shown as it comes; the result (exit code, bounded output) at the end.
        // It runs as a task of its own: a cancel cannot stop a command inside a container, so when
        // this step is dropped the command's guard says so and writes its end into the log.
        let (tx, rx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(64);
        let timeout = Duration::from_secs(self.config.deploy.exec_timeout_secs);
        let task = tokio::spawn({
            let (engine, container) = (self.engine.clone(), container.clone());
            let cmd = cmd.to_vec();
            async move {
                let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
                engine
                    .exec_following(&container, &cmd, &[], timeout, Some(tx))
                    .await
            }
        });
        let mut running = ExecInContainer {
            task: Some(task),
            rx,
            splitters: [
                lines::LineSplitter::new(MAX_LINE),
                lines::LineSplitter::new(MAX_LINE),
            ],
            what: format!("`{}` in {service}", cmd.join(" ")),
            position,
            store: self.store.clone(),
            id: out.id,
            seq: out.seq.clone(),
            scrubber: out.scrubber.clone(),
            left: out.left.clone(),
        };
        let result = loop {
            let task = running.task.as_mut().expect("held until the step ends");
            tokio::select! {
                result = task => {
                    running.task = None;
                    break match result {
                        Ok(done) => done.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("the command's task ended: {e}")),
                    };
                }
                Some((stderr, bytes)) = running.rx.recv() => {
                    for line in running.splitters[usize::from(stderr)].push(&bytes) {
                        out.line(position, stderr, &line).await;
                    }
                }
            }
        };
        for (stderr, line) in running.rest() {
            out.line(position, stderr, &line).await;
        }
        let result = result.map_err(StepFailure::new)?;
        match result.exit_code {
            Some(0) => Ok(0),
            code => {
                let last = result
                    .stderr
                    .lines()
                    .chain(result.stdout.lines())
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
                    .to_string();
                Err(StepFailure {
                    reason: format!(
                        "`{}` exited {}: {last}",
                        cmd.join(" "),
                        code.map_or("without a code".into(), |c| c.to_string())
                    ),
                    exit_code: code,
                    cancelled: false,
                })
            }
        }
    }

    /// Until the services' containers are healthy (Docker's healthcheck), bounded.
    async fn wait_healthy(
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
    async fn verify(&self, position: usize, out: &mut Output<'_>) -> Result<(), StepFailure> {
        let within = Duration::from_secs(self.config.deploy.wait_timeout_secs);
        let deadline = Instant::now() + within;
        loop {
            let report = self.health.round_and_probes().await;
            let bad: Vec<String> = report
                .services
                .iter()
                .filter(|s| s.verdict != Verdict::Healthy)
                .map(|s| format!("{}: {}", s.name, s.verdict.reason().unwrap_or_default()))
                .collect();
            if bad.is_empty() && !report.services.is_empty() {
                for s in &report.services {
                    let probe = match &s.probe {
                        crate::health::ProbeResult::Passed { detail, .. } => detail.clone(),
                        _ => "running".into(),
                    };
                    out.line(position, false, &format!("{}: healthy ({probe})", s.name))
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

    /// Every service's image as it runs: the reference compose gave it (`epsm-backend:latest`,
    /// `postgres:15`) and the image id, from one listing of the project's containers.
    async fn service_images(&self) -> Vec<ServiceImage> {
        let mut images: Vec<ServiceImage> = self
            .engine
            .project_containers(&self.config.project_name())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                Some(ServiceImage {
                    service: c.labels.as_ref()?.get(SERVICE_LABEL)?.clone(),
                    reference: with_tag(c.image.as_deref()?),
                    id: c.image_id?,
                })
            })
            .collect();
        images.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        images.dedup_by(|a, b| a.service == b.service && a.id == b.id);
        images
    }

    /// Names this deploy's images `<repo>:deploy-<id>` so a rollback finds them, and removes those
    /// names of successful deploys older than the last `deploy.keep_images`.
    async fn keep_images(&self, position: usize, out: &mut Output<'_>) -> Result<(), StepFailure> {
        let images = self.service_images().await;
        for ServiceImage {
            service,
            reference,
            id,
        } in &images
        {
            let repo = repo_of(reference);
            let tag = format!("deploy-{}", out.id);
            self.engine
                .tag_image(id, repo, &tag)
                .await
                .map_err(|e| StepFailure::new(e.to_string()))?;
            out.line(position, false, &format!("{service}: kept as {repo}:{tag}"))
                .await;
        }
        let keep = self.config.deploy.keep_images.max(1);
        let older = self
            .store
            .deploys(Some(DeployOutcome::Succeeded), 10_000)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        // This deploy is not recorded as succeeded yet: it is one of the `keep`.
        for old in older.iter().skip(keep - 1).take(20) {
            for (service, _) in &old.images {
                if let Some(now) = images.iter().find(|i| &i.service == service) {
                    let name = format!("{}:deploy-{}", repo_of(&now.reference), old.id);
                    if self.engine.untag_image(&name).await.is_ok() {
                        out.line(position, false, &format!("no longer kept: {name}"))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Names the kept images of deploy `id` as the references compose runs, so `up --no-build`
    /// starts exactly those images.
    async fn restore_images(
        &self,
        id: i64,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let deploy = self
            .store
            .deploy(id)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .ok_or_else(|| StepFailure::new(format!("there is no deploy #{id}")))?;
        if deploy.outcome != DeployOutcome::Succeeded {
            return Err(StepFailure::new(format!(
                "deploy #{id} {}: only a successful deploy can be brought back",
                deploy.outcome.as_str()
            )));
        }
        // The images carry the code of the commit that deploy checked out; the files stay as they are.
        let commit = deploy.to_commit.as_deref().or(deploy.git_commit.as_deref());
        let now = self.git.head(&out.scrubber).await;
        out.line(
            position,
            false,
            &format!(
                "bringing back the images of deploy #{id}{}; the working tree is left alone{}",
                commit.map_or(String::new(), |c| format!(" (commit {})", short(c))),
                now.map_or(String::new(), |c| format!(" (it stays at {})", short(&c)))
            ),
        )
        .await;
        let running = self.service_images().await;
        let project = &self.config.project_name();
        for (service, image_id) in &deploy.images {
            let reference = running
                .iter()
                .find(|i| &i.service == service)
                .map(|i| i.reference.clone())
                .unwrap_or_else(|| format!("{project}-{service}:latest"));
            let kept = format!("{}:deploy-{id}", repo_of(&reference));
            match self.engine.inspect_image(&kept).await {
                Ok(image) if image.id.as_deref() == Some(image_id.as_str()) => {}
                _ => {
                    return Err(StepFailure::new(format!(
                        "{kept} is no longer kept (the last {} successful deploys are)",
                        self.config.deploy.keep_images
                    )));
                }
            }
            let (repo, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
            self.engine
                .tag_image(&kept, repo, tag)
                .await
                .map_err(|e| StepFailure::new(e.to_string()))?;
            out.line(
                position,
                false,
                &format!("{service}: {reference} is now {kept} ({image_id})"),
            )
            .await;
        }
        out.line(
            position,
            false,
            "a rollback brings back images, not the database: migrations applied since stay applied",
        )
        .await;
        Ok(())
    }

    /// A backup before anything is stopped. No database container yet (a first deploy) means there is
    /// nothing to lose; one that exists but cannot be dumped stops the deploy.
    async fn backup(&self, position: usize, out: &mut Output<'_>) -> Result<(), StepFailure> {
        let exists = self
            .engine
            .service_container(&self.config.project_name(), "database")
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
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
        let actor = format!("deploy #{}", out.id);
        let turn = backups.wait_turn().await;
        let started = crate::backup::ssr::begin(backups, turn, &actor, Default::default())
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
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

    fn scrubber(&self) -> Scrubber {
        let env = crate::environment::disk::env_values(&self.config);
        self.masker
            .scrubber(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Git commit and VERSION of the project directory, and the hashes of the two files as deployed.
    async fn project_facts(&self) -> ProjectFacts {
        let dir = &self.config.project.dir;
        let git_commit = tokio::process::Command::new("git")
            .args(["-C"])
            .arg(dir)
            .args(["rev-parse", "HEAD"])
            .stderr(Stdio::null())
            .output()
            .await
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let version = std::fs::read_to_string(dir.join("VERSION"))
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        ProjectFacts {
            git_commit,
            version,
            env_sha256: file_sha256(&self.config.env_file()),
            compose_sha256: file_sha256(&self.config.compose_file()),
            env_fingerprints: self.env_fingerprints(),
        }
    }

    /// (service, image id) of every service now, as the history keeps it.
    async fn images(&self) -> Vec<(String, String)> {
        self.service_images()
            .await
            .into_iter()
            .map(|i| (i.service, i.id))
            .collect()
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.store
            .record(AuditEvent {
                actor: actor.name.clone(),
                action: action.into(),
                target: target.into(),
                outcome,
                detail: detail.into(),
            })
            .await
            .map(drop)
    }
}

struct ServiceImage {
    service: String,
    /// The name compose runs it by, with its tag.
    reference: String,
    id: String,
}

pub struct ProjectFacts {
    pub git_commit: Option<String>,
    pub version: Option<String>,
    pub env_sha256: Option<String>,
    pub compose_sha256: Option<String>,
    /// The env file's keys, each with its value's fingerprint (never a value).
    pub env_fingerprints: std::collections::BTreeMap<String, String>,
}

/// `name` with `:latest` when it has no tag (a `:` in its last path segment).
fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// `registry:5000/epsm-backend:latest` -> `registry:5000/epsm-backend`.
fn repo_of(reference: &str) -> &str {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => &reference[..last_slash + i],
        None => reference,
    }
}

/// What state a step's failure leaves the stack in, for the summary.
fn left_state(step: &str) -> &'static str {
    match step {
        "preflight" | "back up database" => " (nothing was changed)",
        "source" => " (nothing was stopped; the working tree is as git left it)",
        "pull images" => " (nothing was stopped)",
        "down" | "prune build cache" | "build" => {
            " (the stack is down: run a deploy again, or roll back)"
        }
        "up" | "wait for healthy" => " (the new containers may be partly up)",
        "restore images" => " (nothing was changed)",
        "keep images" => {
            " (the new containers are up and healthy; this deploy cannot be rolled back to)"
        }
        _ => " (the new containers are up)",
    }
}

/// How a step that did not fail ended.
enum Done {
    /// It ran; the exit code of its command, if it had one.
    Code(Option<i64>),
    /// Nothing to do here (the reason is in the log).
    Skipped,
}

/// What preflight resolved for the source step to check out.
#[derive(Debug, Clone)]
struct SourcePlan {
    from: Option<String>,
    to: String,
    /// The configured branch is reset to `to` (else a detached HEAD: a tag or a commit).
    on_branch: bool,
    /// Discard local changes (admin, confirmed).
    force: bool,
}

/// A commit id as people read it.
fn short(commit: &str) -> String {
    commit.chars().take(10).collect()
}

struct StepFailure {
    reason: String,
    exit_code: Option<i64>,
    cancelled: bool,
}

impl StepFailure {
    fn new(reason: String) -> StepFailure {
        StepFailure {
            reason,
            exit_code: None,
            cancelled: false,
        }
    }

    fn cancelled() -> StepFailure {
        StepFailure {
            reason: "cancelled".into(),
            exit_code: None,
            cancelled: true,
        }
    }
}

/// How long a cancelled child's process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Kills a child's whole process group when dropped (the step was cancelled or failed), unless the
/// child ended by itself first.
pub(super) struct ProcessGroup(pub(super) Option<u32>);

impl ProcessGroup {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            // compose, and the buildx / docker processes it started.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
            std::thread::spawn(move || {
                std::thread::sleep(KILL_GRACE);
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            });
        }
    }
}

/// Writes a deploy's lines and steps to the store and to the live viewers.
struct Output<'a> {
    deployer: &'a Deployer,
    id: i64,
    /// The last line's number; shared with work a cancel left running (it writes on after the end).
    seq: Arc<AtomicU64>,
    scrubber: Arc<Scrubber>,
    /// What preflight resolved for the source step (None: no git checkout, or not resolved yet).
    source: Option<SourcePlan>,
    /// What a cancelled step left behind or cleaned up, said by the step's guards as it is dropped.
    left: LeftBehind,
}

/// A command running in a container for a step. Dropped while the command still runs (the step was
/// cancelled), it says so and hands the command to a task that writes the rest of its output and its
/// exit code into the deploy's log when it ends.
struct ExecInContainer {
    task: Option<
        tokio::task::JoinHandle<
            Result<crate::engine::ssr::ExecOutput, crate::engine::ssr::EngineError>,
        >,
    >,
    rx: tokio::sync::mpsc::Receiver<(bool, Vec<u8>)>,
    splitters: [lines::LineSplitter; 2],
    what: String,
    position: usize,
    store: Store,
    id: i64,
    seq: Arc<AtomicU64>,
    scrubber: Arc<Scrubber>,
    left: LeftBehind,
}

impl ExecInContainer {
    /// What is left of the output once the command ended: chunks still queued, unfinished lines.
    fn rest(&mut self) -> Vec<(bool, String)> {
        let mut lines = Vec::new();
        while let Ok((stderr, bytes)) = self.rx.try_recv() {
            lines.extend(
                self.splitters[usize::from(stderr)]
                    .push(&bytes)
                    .into_iter()
                    .map(|l| (stderr, l)),
            );
        }
        let splitters = std::mem::replace(
            &mut self.splitters,
            [
                lines::LineSplitter::new(MAX_LINE),
                lines::LineSplitter::new(MAX_LINE),
            ],
        );
        for (stderr, splitter) in [false, true].into_iter().zip(splitters) {
            lines.extend(splitter.finish().map(|l| (stderr, l)));
        }
        lines
    }
}

impl Drop for ExecInContainer {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        if task.is_finished() {
            return;
        }
        self.left.say(format!(
            "{} is still running: a cancel does not stop a command inside a container (a migration \
             stopped half-way could leave the schema between versions); its output and exit code \
             are added to this log when it ends",
            self.what
        ));
        let (rx, splitters) = (
            std::mem::replace(&mut self.rx, tokio::sync::mpsc::channel(1).1),
            std::mem::replace(
                &mut self.splitters,
                [
                    lines::LineSplitter::new(MAX_LINE),
                    lines::LineSplitter::new(MAX_LINE),
                ],
            ),
        );
        let mut rest = ExecInContainer {
            task: None,
            rx,
            splitters,
            what: self.what.clone(),
            position: self.position,
            store: self.store.clone(),
            id: self.id,
            seq: self.seq.clone(),
            scrubber: self.scrubber.clone(),
            left: LeftBehind::default(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut task = task;
            let ended = loop {
                tokio::select! {
                    result = &mut task => break result,
                    Some((stderr, bytes)) = rest.rx.recv() => {
                        for line in rest.splitters[usize::from(stderr)].push(&bytes) {
                            rest.append(stderr, &line).await;
                        }
                    }
                }
            };
            for (stderr, line) in rest.rest() {
                rest.append(stderr, &line).await;
            }
            let end = match ended {
                Ok(Ok(output)) => format!(
                    "{} (left running by the cancel) ended: exit {}",
                    rest.what,
                    output
                        .exit_code
                        .map_or("without a code".into(), |c| c.to_string())
                ),
                Ok(Err(e)) => format!("{} (left running by the cancel) ended: {e}", rest.what),
                Err(e) => format!("{} (left running by the cancel): {e}", rest.what),
            };
            rest.append(true, &end).await;
        });
    }
}

impl ExecInContainer {
    async fn append(&self, stderr: bool, text: &str) {
        let line = DeployLine {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            step: self.position,
            stderr,
            text: self.scrubber.scrub(text.trim_end()),
        };
        if let Err(e) = self.store.append_deploy_line(self.id, &line).await {
            tracing::error!("deploy #{}: cannot store a log line: {e}", self.id);
        }
    }
}

/// Sentences the guards of a cancelled step leave: what is still running (and where its end will be
/// told), what was stopped and cleaned up.
#[derive(Clone, Default)]
struct LeftBehind(Arc<Mutex<Vec<String>>>);

impl LeftBehind {
    fn say(&self, note: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(note);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Says `note` to `LeftBehind` if dropped before `done` (its step's future was dropped: cancelled).
struct SayIfDropped {
    note: Option<String>,
    left: LeftBehind,
}

impl SayIfDropped {
    fn done(mut self) {
        self.note = None;
    }
}

impl Drop for SayIfDropped {
    fn drop(&mut self) {
        if let Some(note) = self.note.take() {
            self.left.say(note);
        }
    }
}

impl Output<'_> {
    async fn line(&mut self, step: usize, stderr: bool, text: &str) {
        // Lines come cut to MAX_LINE from the splitter; scrubbing may lengthen one a little.
        let text = self.scrubber.scrub(text.trim_end());
        let line = DeployLine {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            step,
            stderr,
            text,
        };
        if let Err(e) = self.deployer.store.append_deploy_line(self.id, &line).await {
            tracing::error!("deploy #{}: cannot store a log line: {e}", self.id);
        }
        self.send(DeployEvent::Line(line));
    }

    async fn step(
        &mut self,
        position: usize,
        name: &str,
        status: StepStatus,
        exit_code: Option<i64>,
        started_at: Option<DateTime<Utc>>,
        duration_ms: Option<u64>,
    ) {
        let step = DeployStep {
            name: name.to_string(),
            status,
            exit_code,
            started_at,
            duration_ms,
        };
        if let Err(e) = self
            .deployer
            .store
            .update_deploy_step(self.id, position, &step)
            .await
        {
            tracing::error!("deploy #{}: cannot store a step: {e}", self.id);
        }
        self.send(DeployEvent::Step { position, step });
    }

    fn send(&self, event: DeployEvent) {
        let mut running = self.deployer.running.lock().expect("deploy lock");
        if let Some(r) = running.as_mut().filter(|r| r.id == self.id) {
            r.history.push(&event);
            let _ = r.live.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_viewer_gets_the_steps_the_newest_lines_and_how_many_came_before() {
        let mut history = History::default();
        let step = |status| DeployStep {
            name: "build".into(),
            status,
            exit_code: None,
            started_at: None,
            duration_ms: None,
        };
        history.push(&DeployEvent::Step {
            position: 2,
            step: step(StepStatus::Running),
        });
        for seq in 1..=(crate::deploy::LOG_WINDOW as u64 + 500) {
            history.push(&DeployEvent::Line(DeployLine {
                seq,
                step: 2,
                stderr: false,
                text: "x".into(),
            }));
        }
        history.push(&DeployEvent::Step {
            position: 2,
            step: step(StepStatus::Succeeded),
        });
        let events = history.events();
        assert_eq!(events.len(), 2 + crate::deploy::LOG_WINDOW);
        assert!(
            matches!(&events[0], DeployEvent::Step { step, .. } if step.status == StepStatus::Succeeded)
        );
        assert_eq!(events[1], DeployEvent::Earlier { lines: 500 });
        assert!(matches!(&events[2], DeployEvent::Line(l) if l.seq == 501));
    }

    #[test]
    fn image_references_keep_registry_ports_apart_from_tags() {
        assert_eq!(with_tag("epsm-backend"), "epsm-backend:latest");
        assert_eq!(with_tag("postgres:15"), "postgres:15");
        assert_eq!(
            with_tag("registry:5000/epsm/api"),
            "registry:5000/epsm/api:latest"
        );
        assert_eq!(
            repo_of("registry:5000/epsm/api:latest"),
            "registry:5000/epsm/api"
        );
        assert_eq!(repo_of("postgres:15"), "postgres");
        assert_eq!(repo_of("epsm-backend"), "epsm-backend");
    }
}
