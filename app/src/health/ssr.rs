//! The health monitor: one task per console that looks at the project on a schedule (and at once when
//! the engine reports a container event), runs the deep probes in parallel with timeouts, and publishes
//! one report every viewer shares. A hundred open pages read the same report; none causes an exec.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

/// Modification time and size of the compose and env files: compose is asked again only when they change.
type FilesStamp = Vec<Option<(SystemTime, u64)>>;

/// What one round read that probes need: the env file's values and the scrubber made from them.
struct RoundInputs {
    env: BTreeMap<String, String>,
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

    /// A monitor whose rounds run only when asked (`round_and_probes`): what tests and benchmarks use.
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
            wake: Notify::new(),
            rounds: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            engine,
            config,
            masker,
        })
    }

    /// The newest report.
    pub fn latest(&self) -> Arc<HealthReport> {
        self.published.borrow().clone()
    }

    /// Follows the reports as they are published (the live page's stream).
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthReport>> {
        self.published.subscribe()
    }

    /// Pages following the reports right now.
    pub fn viewers(&self) -> usize {
        self.published.receiver_count()
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
        let env = crate::environment::disk::env_values(&self.config);
        RoundInputs {
            scrubber: Arc::new(
                self.masker
                    .scrubber(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            ),
            env,
        }
    }

    async fn read_compose(&self, scrubber: &Scrubber) {
        let stamp: FilesStamp = [self.config.compose_file(), self.config.env_file()]
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            })
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

    /// Lists and inspects the project's containers (all inspects at once).
    async fn read_containers(&self, inputs: &RoundInputs) -> Result<Vec<ContainerFacts>, String> {
        let list = self
            .engine
            .project_containers(&self.config.project_name())
            .await
            .map_err(|e| e.to_string())?;
        let inspects = futures::future::join_all(
            list.iter()
                .filter_map(|c| c.id.as_deref())
                .map(|id| self.engine.inspect_container(id)),
        )
        .await;
        let inspects: Vec<_> = inspects.into_iter().filter_map(Result::ok).collect();
        let scrubber = self.scrubber_with(
            &inputs.env,
            inspects
                .iter()
                .filter_map(|i| i.config.as_ref()?.env.as_deref()),
        );
        let images: HashSet<String> = inspects.iter().filter_map(|i| i.image.clone()).collect();
        self.learn_image_dates(images).await;
        let now = Instant::now();
        let mut state = self.state.lock().expect("health state");
        let mut facts: Vec<ContainerFacts> = inspects
            .into_iter()
            .map(|i| container_facts(i, &scrubber, &mut state, now))
            .collect();
        facts.sort_by(|a, b| a.name.cmp(&b.name));
        let alive: HashSet<&str> = facts.iter().map(|f| f.id.as_str()).collect();
        state
            .restarts_seen
            .retain(|id, _| alive.contains(id.as_str()));
        Ok(facts)
    }

    /// When a declared service has no container of the project, whether another compose project holds
    /// it (the stack was started under another name): asked only then, so a healthy stack costs no
    /// extra listing.
    async fn look_elsewhere(&self) {
        let (model, missing) = {
            let state = self.state.lock().expect("health state");
            let missing = state
                .declared
                .iter()
                .any(|s| !state.containers.iter().any(|c| &c.service == s));
            (state.model.clone(), missing)
        };
        let found = match (model, missing) {
            (Some(model), true) => match self.engine.all_containers().await {
                Ok(all) => model
                    .held_elsewhere(&self.compose.project, &self.compose.dir, &all)
                    .into_iter()
                    .map(|(service, c)| (service, c.clone()))
                    .collect(),
                Err(e) => {
                    tracing::debug!("health: listing all containers: {e}");
                    BTreeMap::new()
                }
            },
            _ => BTreeMap::new(),
        };
        self.state.lock().expect("health state").elsewhere = found;
    }

    async fn learn_image_dates(&self, images: HashSet<String>) {
        let unknown: Vec<String> = {
            let state = self.state.lock().expect("health state");
            images
                .into_iter()
                .filter(|i| !state.image_created.contains_key(i))
                .collect()
        };
        for id in unknown {
            let created = self
                .engine
                .inspect_image(&id)
                .await
                .ok()
                .and_then(|i| i.created)
                .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
                .map(|c| c.with_timezone(&Utc));
            self.state
                .lock()
                .expect("health state")
                .image_created
                .insert(id, created);
        }
    }

    fn refresh_disk_usage_when_due(self: &Arc<Self>) {
        {
            let mut state = self.state.lock().expect("health state");
            if state.disk_due.is_some_and(|due| Instant::now() < due) {
                return;
            }
            let every = Duration::from_secs(self.config.health.disk_usage_interval_secs);
            state.disk_due = Some(Instant::now() + every);
        }
        let monitor = Arc::clone(self);
        tokio::spawn(async move {
            match disk_usage(&monitor.compose.program, &monitor.config.docker.host).await {
                Ok(disk) => {
                    monitor.state.lock().expect("health state").disk = Some(disk);
                    monitor.publish();
                }
                Err(e) => tracing::warn!("health: disk usage: {e}"),
            }
        });
    }

    /// Starts the probe of every running service whose previous probe has ended.
    fn start_probes(self: &Arc<Self>, inputs: &RoundInputs) -> Vec<tokio::task::JoinHandle<()>> {
        let env: BTreeMap<&str, &str> = inputs
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut state = self.state.lock().expect("health state");
        let mut handles = Vec::new();
        for service in state.declared.clone() {
            let probe = self.probe_of(&service);
            let Some(container) = state
                .containers
                .iter()
                .find(|c| c.service == service && c.state == "running")
                .map(|c| c.id.clone())
            else {
                continue;
            };
            if probe == Probe::None || state.in_flight.contains(&service) {
                continue;
            }
            state.in_flight.insert(service.clone());
            let plan = probe.plan(&env, &self.config.project.public_url);
            let monitor = Arc::clone(self);
            let scrubber = Arc::clone(&inputs.scrubber);
            handles.push(tokio::spawn(async move {
                let started = Instant::now();
                let outcome = monitor.run_probe(&container, plan).await;
                let latency_ms = started.elapsed().as_millis() as u64;
                let at = Utc::now();
                let result = match outcome {
                    Ok(detail) => ProbeResult::Passed {
                        detail: scrubber.scrub(&detail),
                        latency_ms,
                        at,
                    },
                    Err(reason) => ProbeResult::Failed {
                        reason: scrubber.scrub(&reason),
                        latency_ms,
                        at,
                    },
                };
                {
                    let mut state = monitor.state.lock().expect("health state");
                    state.in_flight.remove(&service);
                    state.probes.insert(service, result);
                }
                monitor.publish();
            }));
        }
        handles
    }

    /// A scrubber for one container's log: the env file's secrets and those in the container's own
    /// environment (it may have been started with values the file no longer holds).
    pub async fn log_scrubber(&self, container: &str) -> Scrubber {
        let env = crate::environment::disk::env_values(&self.config);
        let inspect = self.engine.inspect_container(container).await.ok();
        let container_env = inspect
            .as_ref()
            .and_then(|i| i.config.as_ref()?.env.as_deref());
        self.scrubber_with(&env, container_env)
    }

    /// A scrubber for the env file's secrets and the secret-looking values of containers' own
    /// environments (`KEY=value` lists): a container started before the env file changed may hold
    /// values the file no longer has.
    fn scrubber_with<'a>(
        &self,
        env: &BTreeMap<String, String>,
        container_envs: impl IntoIterator<Item = &'a [String]>,
    ) -> Scrubber {
        let mut secrets = self
            .masker
            .secret_values(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for vars in container_envs {
            secrets.extend(
                self.masker
                    .secret_values(vars.iter().filter_map(|kv| kv.split_once('='))),
            );
        }
        Scrubber::new(&secrets)
    }

    fn probe_of(&self, service: &str) -> Probe {
        self.config
            .health
            .probes
            .get(service)
            .cloned()
            .unwrap_or_else(|| default_probe(service))
    }

    async fn run_probe(&self, container: &str, plan: ProbePlan) -> Result<String, String> {
        let timeout = Duration::from_secs(self.config.health.probe_timeout_secs);
        match plan {
            ProbePlan::None => Ok(String::new()),
            ProbePlan::Exec {
                cmd,
                env,
                judge: how,
            } => {
                let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
                let out = self
                    .engine
                    .exec(container, &cmd, &env, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                judge(how, out.exit_code, &out.stdout, &out.stderr)
            }
            ProbePlan::Http { url } => {
                let reply = self
                    .http
                    .get(&url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", http_reason(&e)))?;
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("GET {url}: HTTP {status}"));
                }
                // Through nginx, the backend's JSON: read it as the backend probe does.
                if body.trim_start().starts_with('{') {
                    judge(super::probe::Judge::DjangoHealthJson, Some(0), &body, "")
                        .map(|ok| format!("HTTP {}, {ok}", status.as_u16()))
                } else {
                    Ok(format!("HTTP {}", status.as_u16()))
                }
            }
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
                    (None, _) => verdict(container, &probe),
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

/// Whether a container event changes what the page shows. Execs (the probes' own, and every
/// healthcheck's) are events too: reacting to them would make each round start the next.
fn changes_state(action: &str) -> bool {
    let action = action.split(':').next().unwrap_or("").trim();
    matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "die"
            | "stop"
            | "kill"
            | "pause"
            | "unpause"
            | "destroy"
            | "oom"
            | "health_status"
            | "rename"
            | "update"
    )
}

/// The facts of one inspected container; remembers its restart count to tell loops.
fn container_facts(
    inspect: bollard::models::ContainerInspectResponse,
    scrubber: &Scrubber,
    state: &mut State,
    now: Instant,
) -> ContainerFacts {
    let id = inspect.id.clone().unwrap_or_default();
    let labels = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let s = inspect.state.clone().unwrap_or_default();
    let health = s.health.clone();
    let restarts = inspect.restart_count.unwrap_or(0);
    let started_at = parse_time(s.started_at.as_deref());
    let seen = state.restarts_seen.entry(id.clone()).or_default();
    seen.push_back((now, restarts));
    while seen
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > RESTART_WINDOW)
    {
        seen.pop_front();
    }
    let restarts_in_window = restarts - seen.front().map_or(restarts, |(_, n)| *n);
    let running = s.running.unwrap_or(false);
    let up_for = started_at
        .filter(|_| running)
        .map(|t| (Utc::now() - t).num_seconds());
    let health_status = health
        .as_ref()
        .and_then(|h| h.status)
        .map(|h| h.to_string())
        .filter(|h| !h.is_empty() && h != "none");
    let health_output = health
        .as_ref()
        .filter(|_| health_status.as_deref() != Some("healthy"))
        .and_then(|h| h.log.as_ref()?.last()?.output.clone())
        .map(|o| scrubber.scrub(o.trim()))
        .filter(|o| !o.is_empty());
    let image_id = inspect.image.clone().unwrap_or_default();
    ContainerFacts {
        name: inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
        state: s.status.map(|st| st.to_string()).unwrap_or_default(),
        exit_code: s.exit_code,
        error: s
            .error
            .filter(|e| !e.is_empty())
            .map(|e| scrubber.scrub(&e)),
        oom_killed: s.oom_killed.unwrap_or(false),
        failing_streak: health.as_ref().and_then(|h| h.failing_streak).unwrap_or(0),
        health: health_status,
        health_output,
        restart_loop: in_restart_loop(
            s.restarting.unwrap_or(false),
            restarts_in_window,
            restarts,
            up_for,
        ),
        restarts,
        started_at,
        finished_at: parse_time(s.finished_at.as_deref()),
        image: inspect
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        image_created: state.image_created.get(&image_id).copied().flatten(),
        image_id,
        ports: published_ports(&inspect),
        id: short_id(&id).to_string(),
    }
}

/// The lines of one frame of a container's log (`timestamps` on): each scrubbed, then cut to
/// `MAX_LOG_LINE` bytes, numbered from `seq`.
pub fn log_lines(
    frame: &bollard::container::LogOutput,
    seq: &mut u64,
    scrubber: &Scrubber,
) -> Vec<LogLine> {
    use bollard::container::LogOutput;
    let (bytes, stderr) = match frame {
        LogOutput::StdErr { message } => (message, true),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (message, false),
        LogOutput::StdIn { .. } => return vec![],
    };
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (time, text) = match line.split_once(' ') {
                Some((t, rest)) if DateTime::parse_from_rfc3339(t).is_ok() => (t, rest),
                _ => ("", line),
            };
            let mut text = scrubber.scrub(text);
            if text.len() > MAX_LOG_LINE {
                let mut end = MAX_LOG_LINE;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str(" [line cut]");
            }
            *seq += 1;
            LogLine {
                seq: *seq,
                stderr,
                time: time.to_string(),
                text,
            }
        })
        .collect()
}

/// Docker's zero time (`0001-01-01T00:00:00Z`) means never.
fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text?)
        .ok()?
        .with_timezone(&Utc);
    (t.timestamp() > 0).then_some(t)
}

fn published_ports(inspect: &bollard::models::ContainerInspectResponse) -> Vec<String> {
    let Some(ports) = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    else {
        return vec![];
    };
    let mut out: Vec<String> = ports
        .iter()
        .flat_map(|(port, bindings)| {
            bindings.iter().flatten().map(move |b| {
                let ip = b.host_ip.as_deref().unwrap_or("");
                let host_port = b.host_port.as_deref().unwrap_or("");
                format!("{ip}:{host_port}->{port}")
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn http_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}

/// `docker system df` through the CLI: it speaks every engine's dialect of `/system/df` (the engine
/// API's format changed in 1.52 and bollard follows the newest).
async fn disk_usage(program: &PathBuf, host: &str) -> Result<DiskUsage, String> {
    let out = tokio::process::Command::new(program)
        .args(["system", "df", "--format", "{{json .}}"])
        .env("DOCKER_HOST", host)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(DiskUsage {
        taken_at: Utc::now(),
        rows: parse_disk_usage(&String::from_utf8_lossy(&out.stdout)),
    })
}

fn parse_disk_usage(text: &str) -> Vec<DiskUsageRow> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Line {
        #[serde(rename = "Type")]
        kind: String,
        total_count: String,
        active: String,
        size: String,
        reclaimable: String,
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .map(|l| DiskUsageRow {
            kind: l.kind,
            total: l.total_count,
            active: l.active,
            size: l.size,
            reclaimable: l.reclaimable,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_lines_are_read_and_junk_is_skipped() {
        let text = r#"{"Active":"7","Reclaimable":"1.2GB (40%)","Size":"3GB","TotalCount":"10","Type":"Images"}
WARNING: something
{"Active":"1","Reclaimable":"0B","Size":"12kB","TotalCount":"2","Type":"Build Cache"}
"#;
        let rows = parse_disk_usage(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, "Images");
        assert_eq!(rows[0].reclaimable, "1.2GB (40%)");
        assert_eq!(rows[1].total, "2");
    }

    #[test]
    fn log_frames_become_scrubbed_numbered_lines() {
        use crate::environment::secrets::Secret;
        let scrubber = Scrubber::new(&[Secret::new("hunter2-secret")]);
        let frame = bollard::container::LogOutput::StdErr {
            message: "2026-11-25T10:00:00.000000001Z password=hunter2-secret\r\n\
                      2026-11-25T10:00:01Z redis://:pw12345@redis:6379/0\nno timestamp here\n"
                .into(),
        };
        let mut seq = 10;
        let lines = log_lines(&frame, &mut seq, &scrubber);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.stderr));
        assert_eq!(lines[0].seq, 11);
        assert_eq!(lines[0].time, "2026-11-25T10:00:00.000000001Z");
        assert!(!lines[0].text.contains("hunter2"), "{}", lines[0].text);
        assert!(!lines[1].text.contains("pw12345"), "{}", lines[1].text);
        assert_eq!(lines[2].time, "");
        assert_eq!(lines[2].text, "no timestamp here");
        assert_eq!(seq, 13);
    }

    #[test]
    fn a_runaway_line_is_cut() {
        let frame = bollard::container::LogOutput::StdOut {
            message: "é".repeat(MAX_LOG_LINE).into(),
        };
        let lines = log_lines(&frame, &mut 0, &Scrubber::new(&[]));
        assert!(lines[0].text.len() <= MAX_LOG_LINE + 12);
        assert!(lines[0].text.ends_with("[line cut]"));
    }

    #[test]
    fn only_state_changes_start_a_round() {
        assert!(changes_state("die"));
        assert!(changes_state("health_status: unhealthy"));
        assert!(!changes_state("exec_start: redis-cli ping"));
        assert!(!changes_state("exec_die"));
        assert!(!changes_state("attach"));
    }

    #[test]
    fn dockers_zero_time_means_never() {
        assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(parse_time(None), None);
        assert!(parse_time(Some("2026-11-25T10:00:00.123456789Z")).is_some());
    }
}
