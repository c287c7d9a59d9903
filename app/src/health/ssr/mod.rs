//! The health monitor: one task per console that looks at the project on a schedule (and at once when
//! the engine reports a container event), runs the deep probes in parallel with timeouts, and publishes
//! one report every viewer shares. A hundred open pages read the same report; none causes an exec.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use super::probe::{Probe, ProbePlan, default_probe, judge};
use super::{
    ContainerFacts, DiskUsage, DiskUsageRow, HealthReport, LogLine, MAX_LOG_LINE, ProbeResult,
    ServiceHealth, Verdict, in_restart_loop, verdict,
};
use crate::compose::{ComposeCli, ComposeModel};
use crate::config::Config;
use crate::engine::SeenContainer;
use crate::engine::ssr::{Engine, SERVICE_LABEL, short_id};
use crate::engine::{EngineState, EngineStatus};
use crate::environment::secrets::{Masker, Scrubber};

mod disk;
mod facts;
mod logs;
mod probes;

use facts::changes_state;
pub use logs::log_lines;
pub use probes::http_reason;

/// How long restart counts are remembered to tell a loop from old restarts.
const RESTART_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Container events come in bursts (die, stop, start, health_status): one round after the burst.
const EVENT_SETTLE: Duration = Duration::from_millis(250);

pub struct HealthMonitor {
    engine: Arc<Engine>,
    config: Arc<Config>,
    masker: Arc<Masker>,
    compose: ComposeCli,
    http: reqwest::Client,
    published: watch::Sender<Arc<HealthReport>>,
    /// Receivers of `published` held inside the console (the alerts' watch), not by pages.
    internal: std::sync::atomic::AtomicUsize,
    wake: Notify,
    rounds: AtomicU64,
    state: Mutex<State>,
}

/// What the monitor knows between rounds.
#[derive(Default)]
struct State {
    engine: Option<EngineStatus>,
    taken_at: Option<DateTime<Utc>>,
    declared: Vec<String>,
    compose_error: Option<String>,
    compose_cache: Option<(FilesStamp, Result<ComposeModel, String>)>,
    containers: Vec<ContainerFacts>,
    disk: Option<DiskUsage>,
    disk_due: Option<Instant>,
    /// The compose model of the last good `docker compose config`.
    model: Option<ComposeModel>,
    /// Declared services with no container of the project but one of another project: service ->
    /// that container.
    elsewhere: BTreeMap<String, SeenContainer>,
    probes: HashMap<String, ProbeResult>,
    in_flight: HashSet<String>,
    restarts_seen: HashMap<String, VecDeque<(Instant, i64)>>,
    image_created: HashMap<String, Option<DateTime<Utc>>>,
}

/// The stamps of the compose and env files: compose is asked again only when they change.
type FilesStamp = Vec<Option<crate::environment::disk::FileStamp>>;

/// What one round read that probes need: the env file's values and the scrubber made from them.
struct RoundInputs {
    env: Arc<BTreeMap<String, String>>,
    scrubber: Arc<Scrubber>,
}

impl HealthMonitor {
    /// Creates the monitor and starts its two tasks (the rounds, and the engine's event stream).
    pub fn start(
        engine: Arc<Engine>,
        config: Arc<Config>,
        masker: Arc<Masker>,
    ) -> Arc<HealthMonitor> {
        let monitor = Self::new(engine, config, masker);
        tokio::spawn(Arc::clone(&monitor).run_rounds());
        tokio::spawn(Arc::clone(&monitor).watch_events());
        monitor
    }

    /// A monitor whose rounds run only when asked (`round_and_probes`): what the command line's deploy,
    /// the tests and the benchmarks use.
    pub fn new(
        engine: Arc<Engine>,
        config: Arc<Config>,
        masker: Arc<Masker>,
    ) -> Arc<HealthMonitor> {
        let first = HealthReport {
            round: 0,
            taken_at: Utc::now(),
            project: config.project_name(),
            project_source: config.project.name_source,
            engine: EngineStatus {
                endpoint: engine.endpoint().to_string(),
                state: EngineState::Unreachable {
                    reason: "not asked yet: the first round is running".into(),
                },
            },
            disk: None,
            compose_error: None,
            services: vec![],
            orphans: vec![],
        };
        Arc::new(HealthMonitor {
            compose: ComposeCli::from_config(&config),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .unwrap_or_default(),
            published: watch::channel(Arc::new(first)).0,
            internal: std::sync::atomic::AtomicUsize::new(0),
            wake: Notify::new(),
            rounds: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            engine,
            config,
            masker,
        })
    }

    /// The engine as the last round saw it (a page shows it without asking the engine again);
    /// asked now while the first round has not ended.
    pub async fn engine_status(&self) -> EngineStatus {
        let report = self.latest();
        if report.round > 0 {
            report.engine.clone()
        } else {
            self.engine.status().await
        }
    }

    /// The newest report.
    pub fn latest(&self) -> Arc<HealthReport> {
        self.published.borrow().clone()
    }

    /// Follows the reports as they are published (the live page's stream).
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthReport>> {
        self.published.subscribe()
    }

    /// Follows the reports from inside the console (the alerts' watch), for as long as it runs: not
    /// a page, so not among the viewers.
    pub fn follow_internally(&self) -> watch::Receiver<Arc<HealthReport>> {
        self.internal.fetch_add(1, Ordering::Relaxed);
        self.published.subscribe()
    }

    /// Pages following the reports right now.
    pub fn viewers(&self) -> usize {
        self.published
            .receiver_count()
            .saturating_sub(self.internal.load(Ordering::Relaxed))
    }

    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Asks for a round now (after an action that changed the stack).
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// Runs one round and waits for its probes to finish (tests and benchmarks; the server's own
    /// rounds do not wait, so a hung probe never holds up the next look at the containers).
    pub async fn round_and_probes(self: &Arc<Self>) -> Arc<HealthReport> {
        let probes = self.round().await;
        futures::future::join_all(probes).await;
        self.latest()
    }

    async fn run_rounds(self: Arc<Self>) {
        let interval = Duration::from_secs(self.config.health.interval_secs);
        loop {
            let _probes = self.round().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => tokio::time::sleep(EVENT_SETTLE).await,
            }
        }
    }

    /// Starts a round whenever the engine reports an event of the project's containers; reconnects
    /// after the engine goes away.
    async fn watch_events(self: Arc<Self>) {
        loop {
            match self
                .engine
                .project_events(&self.config.project_name())
                .await
            {
                Ok(events) => {
                    let mut events = std::pin::pin!(events);
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(e) if changes_state(e.action.as_deref().unwrap_or("")) => {
                                self.wake.notify_one()
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!("health: event stream ended: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("health: no event stream: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Looks at the engine and the containers, publishes, and starts the probes that are due. Returns
    /// the probes' handles.
    async fn round(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let engine = self.engine.status().await;
        let reachable = matches!(engine.state, EngineState::Reachable(_));
        let inputs = self.read_env();
        self.read_compose(&inputs.scrubber).await;
        let containers = if reachable {
            self.read_containers(&inputs).await
        } else {
            Ok(vec![])
        };
        {
            let mut state = self.state.lock().expect("health state");
            state.taken_at = Some(Utc::now());
            state.engine = Some(match (engine, containers.as_ref()) {
                // The engine answered `version` but failed the listing: it is not usable.
                (EngineStatus { endpoint, .. }, Err(reason)) => EngineStatus {
                    endpoint,
                    state: EngineState::Unreachable {
                        reason: reason.clone(),
                    },
                },
                (status, Ok(_)) => status,
            });
            state.containers = containers.unwrap_or_default();
        }
        if reachable {
            self.look_elsewhere().await;
        }
        self.publish();
        if !reachable {
            return vec![];
        }
        self.refresh_disk_usage_when_due();
        self.start_probes(&inputs)
    }

    /// The env file's values (the probes' user names and passwords) and a scrubber for them. A file
    /// that does not parse gives no values: the probes that need them say so by failing.
    fn read_env(&self) -> RoundInputs {
        let (env, scrubber) = self.masker.env_file(&self.config);
        RoundInputs { scrubber, env }
    }

    async fn read_compose(&self, scrubber: &Scrubber) {
        let stamp: FilesStamp = [self.config.compose_file(), self.config.env_file()]
            .iter()
            .map(|p| crate::environment::disk::stamp(p))
            .collect();
        let cached = {
            let state = self.state.lock().expect("health state");
            state
                .compose_cache
                .as_ref()
                .filter(|(s, _)| *s == stamp)
                .map(|(_, m)| m.clone())
        };
        let model = match cached {
            Some(model) => model,
            None => {
                let model = self
                    .compose
                    .model(scrubber)
                    .await
                    .map_err(|e| e.to_string());
                let mut state = self.state.lock().expect("health state");
                state.compose_cache = Some((stamp, model.clone()));
                model
            }
        };
        let mut state = self.state.lock().expect("health state");
        match model {
            Ok(model) => {
                state.declared = model.services.clone();
                state.model = Some(model);
                state.compose_error = None;
            }
            // Keep the last services compose gave, so the rows do not vanish while the file is wrong.
            Err(e) => state.compose_error = Some(e),
        }
    }

    /// Builds the report from what the monitor knows now and gives it to every viewer.
    fn publish(&self) {
        let report = {
            let state = self.state.lock().expect("health state");
            self.report(&state)
        };
        self.published.send_replace(Arc::new(report));
    }

    fn report(&self, state: &State) -> HealthReport {
        let engine = state
            .engine
            .clone()
            .unwrap_or_else(|| self.latest().engine.clone());
        let engine_down = match &engine.state {
            EngineState::Unreachable { reason } => Some(reason.clone()),
            EngineState::Reachable(_) => None,
        };
        let mut declared = state.declared.clone();
        if declared.is_empty() && state.compose_error.is_some() {
            // Compose cannot say what is declared: show what runs.
            declared = state.containers.iter().map(|c| c.service.clone()).collect();
            declared.dedup();
        }
        let services = declared
            .iter()
            .map(|name| {
                let replicas: Vec<&ContainerFacts> = state
                    .containers
                    .iter()
                    .filter(|c| &c.service == name)
                    .collect();
                let container = replicas.first().copied();
                let probe = match (self.probe_of(name), container) {
                    (Probe::None, _) => ProbeResult::NotConfigured,
                    (_, Some(c)) if c.state != "running" => ProbeResult::NotRun {
                        reason: format!("container is {}", c.state),
                    },
                    (_, None) => ProbeResult::NotRun {
                        reason: "no container".into(),
                    },
                    (_, Some(_)) => {
                        state
                            .probes
                            .get(name)
                            .cloned()
                            .unwrap_or(ProbeResult::NotRun {
                                reason: "the first probe is running".into(),
                            })
                    }
                };
                let verdict = match (&engine_down, state.elsewhere.get(name)) {
                    (Some(reason), _) => Verdict::Down {
                        reason: format!("unknown: {reason}"),
                    },
                    (None, Some(other)) if container.is_none() => Verdict::OtherProject {
                        container: other.name.clone(),
                        project: other.project.clone(),
                        state: other.state.clone(),
                        looking_at: self.compose.project.clone(),
                    },
                    (None, _) => verdict(
                        container,
                        &probe,
                        self.config.health.probe_timeouts_before_down,
                    ),
                };
                ServiceHealth {
                    name: name.clone(),
                    container: container.cloned(),
                    replicas: replicas.len(),
                    probe,
                    verdict,
                }
            })
            .collect();
        let orphans = state
            .containers
            .iter()
            .filter(|c| !declared.contains(&c.service))
            .cloned()
            .collect();
        HealthReport {
            round: self.rounds(),
            taken_at: state.taken_at.unwrap_or_else(Utc::now),
            project: self.config.project_name(),
            project_source: self.config.project.name_source,
            engine,
            disk: state.disk.clone(),
            compose_error: state.compose_error.clone(),
            services,
            orphans,
        }
    }
}
