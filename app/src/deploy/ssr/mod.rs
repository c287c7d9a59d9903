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
use super::plan::{Action, PlannedStep, plan_for};
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

mod downtime;
mod drain;
mod exec;
mod images;
mod lines;
mod maintenance;
mod output;
mod restore;
mod source;
mod steps;

use output::{History, LeftBehind, Output, SayIfDropped};
use steps::{Done, SourcePlan, StepFailure, left_state, short};

pub use lines::LineSplitter;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{kind} #{id} started by {actor} at {started_at} UTC is running: wait for it or cancel it"
    )]
    Busy {
        kind: String,
        id: i64,
        actor: String,
        started_at: String,
    },
    #[error("{what}: type the {word} ({expected}) to confirm")]
    NotConfirmed {
        what: &'static str,
        word: &'static str,
        expected: String,
    },
    /// A restore while a backup runs (the restore's safety backup and its data need the turn).
    #[error("{0}")]
    BackupRunning(String),
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
            DeployError::NotConfirmed { .. } | DeployError::BackupRunning(_) => {
                AppError::Invalid(self.to_string())
            }
            DeployError::Store(e) => AppError::from(e),
        }
    }
}

/// The running deploy, as the lock holds it.
struct Running {
    /// "deploy" or "restore".
    kind: &'static str,
    id: i64,
    actor: String,
    started_at: DateTime<Utc>,
    cancel: CancellationToken,
    /// What a viewer who joins late is sent first: the steps and the last `LOG_WINDOW` lines (the
    /// earlier ones are in the store).
    history: History,
    live: broadcast::Sender<DeployEvent>,
    /// A restore holds the backups' turn from start to end: no backup runs meanwhile.
    backup_turn: Option<crate::backup::ssr::Turn>,
}

/// The deploy lock as one deploy holds it: free again when this is dropped, however that deploy
/// ended (finished, refused by the store, or its task stopped).
struct Busy(Arc<Deployer>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
    /// What git said the change card's ref and HEAD are, under which ref stamps.
    refs_seen: Mutex<Option<RefsSeen>>,
    /// The worker the running deploy drained, until its switch begins (given back if it never does).
    drained: Mutex<Option<drain::Drained>>,
}

/// The change card's git answers (`resolve(wanted)`, `head`), kept while the refs are unchanged.
struct RefsSeen {
    wanted: String,
    stamps: Vec<Option<crate::environment::disk::FileStamp>>,
    target: Option<String>,
    running: Option<String>,
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
            refs_seen: Mutex::new(None),
            drained: Mutex::new(None),
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
        let kind = options.kind();
        let start_action = format!("{kind}.start");
        let (word, expected) = self.confirm_word(&options);
        if options.destructive() && confirm.map(str::trim) != Some(expected.as_str()) {
            let what = if options.restore.is_some() {
                "a restore replaces the database: what was written since the backup is lost"
            } else if options.recreate_volumes {
                "recreating volumes deletes all data"
            } else {
                "discarding local changes loses what was changed on the server"
            };
            self.audit(
                actor,
                &start_action,
                "",
                AuditOutcome::Refused,
                &format!("not confirmed: {what}"),
            )
            .await?;
            return Err(DeployError::NotConfirmed {
                what,
                word,
                expected,
            });
        }
        // A restore takes the backups' turn now, or is refused naming the backup that runs.
        let backup_turn = match &options.restore {
            None => None,
            Some(_) => match self.backups.turn_now() {
                Some(turn) => Some(turn),
                None => {
                    let reason = self.backups.busy_reason().await?;
                    let refused = DeployError::BackupRunning(format!(
                        "a restore cannot start while a backup runs: {reason}"
                    ));
                    return Err(self.refused(actor, &start_action, refused).await);
                }
            },
        };
        let plan = plan_for(&options, &self.config);
        let claimed = {
            // Held across no await: the check and the claim are one step.
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.as_ref() {
                Some(r) => Err(DeployError::Busy {
                    kind: r.kind.into(),
                    id: r.id,
                    actor: r.actor.clone(),
                    started_at: r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                }),
                None => {
                    let cancel = CancellationToken::new();
                    // Claimed with id 0 until the store gives the id (a second click meanwhile is refused).
                    *running = Some(Running {
                        kind,
                        id: 0,
                        actor: actor.name.clone(),
                        started_at: Utc::now(),
                        cancel: cancel.clone(),
                        history: History::default(),
                        live: broadcast::channel(1024).0,
                        backup_turn,
                    });
                    Ok(cancel)
                }
            }
        };
        let cancel = match claimed {
            Ok(cancel) => cancel,
            Err(busy) => return Err(self.refused(actor, &start_action, busy).await),
        };
        // From here the lock is free again whenever this guard goes, on every path.
        let busy = Busy(Arc::clone(self));
        let facts = self.project_facts().await;
        let inserted = self
            .store
            .insert_deploy(&actor.name, &options, &plan, &facts)
            .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                drop(busy);
                // The store's one-running rule: another process (`epsm-ops deploy`) runs one.
                if let Ok(Some((id, by, at, kind))) = self.store.running_deploy().await {
                    let busy = DeployError::Busy {
                        kind,
                        id,
                        actor: by,
                        started_at: crate::store::parse_time(&at)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                    };
                    return Err(self.refused(actor, &start_action, busy).await);
                }
                return Err(e.into());
            }
        };
        if let Some(r) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            r.id = id;
        }
        let recorded = self
            .audit(
                actor,
                &start_action,
                &format!("{kind} #{id}"),
                AuditOutcome::Ok,
                &options.describe(),
            )
            .await;
        if let Err(e) = recorded {
            // Not started: its record must not stay "running" (the store allows one at a time).
            let reason = format!("not started: the audit log could not be written ({e})");
            let _ = self
                .store
                .finish_deploy(id, DeployOutcome::Failed, &reason, &[], None)
                .await;
            return Err(e.into());
        }
        let me = Arc::clone(self);
        let actor = actor.clone();
        tokio::spawn(async move { me.run(id, actor, options, plan, cancel, busy).await });
        Ok(id)
    }

    /// What a destructive run's confirmation must be: the database name for a restore, else the
    /// project name.
    pub fn confirm_word(&self, options: &DeployOptions) -> (&'static str, String) {
        if options.restore.is_some() {
            ("database name", self.database_name())
        } else {
            ("project name", self.config.project_name())
        }
    }

    /// The project's database, as a restore names it (its confirmation).
    pub fn database_name(&self) -> String {
        crate::backup::ssr::database_login(&self.masker.env_file(&self.config).0).1
    }

    /// The backups' turn the running restore holds, lent to its safety backup.
    fn held_backup_turn(&self) -> Option<crate::backup::ssr::Turn> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.as_ref()?.backup_turn.clone()
    }

    /// A start refused because another run (or a backup) is in the way: in the audit log, then the
    /// error to return.
    async fn refused(&self, actor: &Actor, action: &str, busy: DeployError) -> DeployError {
        match self
            .audit(actor, action, "", AuditOutcome::Refused, &busy.to_string())
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
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
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

    /// The deploys as the history's rows show them (`Store::deploy_history_rows`).
    pub async fn history_rows(
        &self,
        outcome: Option<DeployOutcome>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<super::Deploy>, StoreError> {
        self.store.deploy_history_rows(outcome, before, limit).await
    }

    /// One deploy with its steps.
    pub async fn get(&self, id: i64) -> Result<Option<super::Deploy>, StoreError> {
        self.store.deploy(id).await
    }

    /// Whether a deploy (or restore) of this console runs now.
    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The running deploy's events so far and a receiver for the rest, when `id` is the running one.
    pub fn follow(&self, id: i64) -> Option<(Vec<DeployEvent>, broadcast::Receiver<DeployEvent>)> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
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
        busy: Busy,
    ) {
        let scrubber = self.scrubber();
        let mut out = Output {
            deployer: &self,
            id,
            seq: Arc::new(AtomicU64::new(0)),
            scrubber: Arc::clone(&scrubber),
            source: None,
            left: LeftBehind::default(),
            cancel: cancel.clone(),
        };
        let mut outcome = DeployOutcome::Succeeded;
        let mut summary = String::new();
        // What EPSM's users meet while this runs: the public URL, every 250 ms.
        let probe = downtime::DowntimeProbe::start(self.config.project.public_url.clone());
        let mut switch = SwitchState::default();
        let kind = options.kind();
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
            if matches!(planned.action, Action::MaintenanceOn) || planned.name == "down" {
                // The switch begins: the drained worker is replaced, not given back.
                self.forget_drain();
            }
            switch.maintenance |= matches!(planned.action, Action::MaintenanceOn);
            switch.writers_stopped |= planned.name == "stop writers";
            switch.reopened |= matches!(planned.action, Action::Reopen(_));
            switch.last = position;
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
            // A compose step hears the cancel itself: it stops its process group and waits for it to
            // end. Any other step is dropped at the cancel; its guards say what it left behind.
            let result = if matches!(planned.action, Action::Compose(_)) {
                self.carry_out(&planned.action, &options, position, &mut out)
                    .await
            } else {
                tokio::select! {
                    r = self.carry_out(&planned.action, &options, position, &mut out) => r,
                    _ = cancel.cancelled() => Err(StepFailure::cancelled()),
                }
            };
            let ms = Some(clock.elapsed().as_millis() as u64);
            match result {
                Ok(done) => {
                    if planned.name == "start writers" || planned.name == "up" {
                        switch.writers_stopped = false;
                    }
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
                    let state = if options.restore.is_some() {
                        restore::restore_left_state(planned.name)
                    } else {
                        left_state(
                            planned.name,
                            plan[..position]
                                .iter()
                                .any(|s| s.name == "down" || s.name == "maintenance page"),
                        )
                    };
                    summary = scrubber.scrub(&format!(
                        "{} at step {}: {}{state}{left}",
                        outcome.as_str(),
                        planned.name,
                        failure.reason,
                    ));
                }
            }
        }
        if outcome != DeployOutcome::Succeeded {
            summary.push_str(&self.after_failure(&plan, &switch, &mut out).await);
        }
        let downtime = probe.finish().await;
        if let Some(d) = &downtime {
            out.line(switch.last, false, &format!("downtime: {}", d.describe()))
                .await;
        }
        if outcome == DeployOutcome::Succeeded {
            summary = match options.restore.as_ref().filter(|_| kind == "restore") {
                Some(restore) => format!(
                    "{}: done; every service up and healthy",
                    restore.describe().replacen("RESTORE", "restored", 1)
                ),
                None => "all steps succeeded; every service up and healthy".into(),
            };
        }
        // A restore brings back data, not images: it is not a deploy to roll back to.
        let images = if kind == "restore" {
            Vec::new()
        } else {
            self.images().await
        };
        if let Err(e) = self
            .store
            .finish_deploy(id, outcome, &summary, &images, downtime.as_ref())
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
                &format!("{kind}.finish"),
                &format!("{kind} #{id}"),
                audit_outcome,
                &summary,
            )
            .await;
        out.send(DeployEvent::Finished { outcome, summary });
        drop(busy);
        // The team hears of the run's end (its own restarts were not alerted: this is the message).
        match self.store.deploy(id).await {
            Ok(Some(run)) => {
                let origin = crate::alerts::events::Origin::of(&self.config);
                let message = crate::alerts::Message::run_ended(&run, &origin, Utc::now());
                crate::alerts::events::notify(&self.config, &self.store, message).await;
            }
            Ok(None) => tracing::error!("{kind} #{id}: its record is gone; no alert sent"),
            Err(e) => tracing::error!("{kind} #{id}: cannot read it for its alert: {e}"),
        }
        self.health.refresh();
    }

    /// A deploy that did not succeed gives back what it took for the switch: the drained worker takes
    /// tasks again (the switch never began), and the public service is started again in place of the
    /// maintenance page (the switch began and did not reach `reopen`), so the stack is as compose
    /// leaves it. Returns what the summary adds.
    async fn after_failure(
        &self,
        plan: &[PlannedStep],
        switch: &SwitchState,
        out: &mut Output<'_>,
    ) -> String {
        self.resume_worker(switch.last, out).await;
        let mut said = String::new();
        if switch.writers_stopped {
            let writers = &self.config.backups.restore_stop_services;
            let mut args = vec!["start".to_string()];
            args.extend(writers.iter().cloned());
            let writers = writers.join(", ");
            said = match self.compose_step(&args, switch.last, out).await {
                Ok(0) => format!("; {writers} were started again"),
                Ok(code) => format!("; starting {writers} again exited {code}"),
                Err(failure) => {
                    format!("; {writers} could not be started again: {}", failure.reason)
                }
            };
        }
        if !switch.maintenance || switch.reopened {
            return said;
        }
        let Some(args) = plan.iter().find_map(|s| match &s.action {
            Action::Reopen(args) => Some(args.clone()),
            _ => None,
        }) else {
            return String::new();
        };
        let service = &self.config.deploy.public_service;
        said + &match self.reopen(&args, switch.last, out).await {
            Ok(_) => format!("; {service} was started again in place of the maintenance page"),
            Err(failure) => format!(
                "; {service} could not be started again ({}): the maintenance page may still answer",
                failure.reason
            ),
        }
    }

    /// The scrubber of the env file's secrets as the file is now.
    fn scrubber(&self) -> Arc<Scrubber> {
        self.masker.env_file(&self.config).1
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

/// How far a deploy's switch went, for what a failure must give back.
#[derive(Default)]
struct SwitchState {
    /// The maintenance page step began.
    maintenance: bool,
    /// The reopen step began.
    reopened: bool,
    /// A restore's "stop writers" began and its "start writers" has not succeeded.
    writers_stopped: bool,
    /// The position of the last step that began (where the closing lines go).
    last: usize,
}

pub struct ProjectFacts {
    pub git_commit: Option<String>,
    pub version: Option<String>,
    pub env_sha256: Option<String>,
    pub compose_sha256: Option<String>,
    /// The env file's keys, each with its value's fingerprint (never a value).
    pub env_fingerprints: std::collections::BTreeMap<String, String>,
}
