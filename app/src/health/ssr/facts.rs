//! What a round reads of the engine, turned into facts about each container: state, health,
//! restarts, ports, the events that start a round.

use super::*;

impl HealthMonitor {
    /// Lists and inspects the project's containers (all inspects at once).
    pub(super) async fn read_containers(
        &self,
        inputs: &RoundInputs,
    ) -> Result<Vec<ContainerFacts>, String> {
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
    pub(super) async fn look_elsewhere(&self) {
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

    pub(super) async fn learn_image_dates(&self, images: HashSet<String>) {
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
}

/// Whether a container event changes what the page shows. Execs (the probes' own, and every
/// healthcheck's) are events too: reacting to them would make each round start the next.
pub(super) fn changes_state(action: &str) -> bool {
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
pub(super) fn container_facts(
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

/// Docker's zero time (`0001-01-01T00:00:00Z`) means never.
pub(super) fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text?)
        .ok()?
        .with_timezone(&Utc);
    (t.timestamp() > 0).then_some(t)
}

pub(super) fn published_ports(inspect: &bollard::models::ContainerInspectResponse) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
