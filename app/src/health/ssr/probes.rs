//! The guide's own probes, run in parallel with a timeout each: an HTTP request or a command in
//! the container, judged by `probe.rs`.

use super::*;

impl HealthMonitor {
    /// Starts the probe of every running service whose previous probe has ended.
    pub(super) fn start_probes(
        self: &Arc<Self>,
        inputs: &RoundInputs,
    ) -> Vec<tokio::task::JoinHandle<()>> {
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
                    Err(failure) => ProbeResult::Failed {
                        reason: scrubber.scrub(&failure.reason),
                        latency_ms,
                        at,
                        timed_out: failure.timed_out,
                        streak: 1,
                    },
                };
                {
                    let mut state = monitor.state.lock().expect("health state");
                    state.in_flight.remove(&service);
                    let result = match (result, state.probes.get(&service)) {
                        (
                            ProbeResult::Failed {
                                reason,
                                latency_ms,
                                at,
                                timed_out,
                                ..
                            },
                            Some(ProbeResult::Failed { streak, .. }),
                        ) => ProbeResult::Failed {
                            reason,
                            latency_ms,
                            at,
                            timed_out,
                            streak: streak.saturating_add(1),
                        },
                        (result, _) => result,
                    };
                    state.probes.insert(service, result);
                }
                monitor.publish();
            }));
        }
        handles
    }

    pub(super) fn probe_of(&self, service: &str) -> Probe {
        self.config
            .health
            .probes
            .get(service)
            .cloned()
            .unwrap_or_else(|| default_probe(service))
    }

    pub(super) async fn run_probe(
        &self,
        container: &str,
        plan: ProbePlan,
    ) -> Result<String, ProbeFailure> {
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
                    .map_err(|e| ProbeFailure {
                        timed_out: matches!(e, crate::engine::ssr::EngineError::Timeout { .. }),
                        reason: e.to_string(),
                    })?;
                judge(how, out.exit_code, &out.stdout, &out.stderr).map_err(ProbeFailure::said)
            }
            ProbePlan::Http { url } => {
                let reply = self
                    .http
                    .get(&url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| ProbeFailure {
                        timed_out: e.is_timeout(),
                        reason: format!("GET {url}: {}", http_reason(&e)),
                    })?;
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(ProbeFailure::said(format!("GET {url}: HTTP {status}")));
                }
                // Through nginx, the backend's JSON: read it as the backend probe does.
                if body.trim_start().starts_with('{') {
                    judge(
                        crate::health::probe::Judge::DjangoHealthJson,
                        Some(0),
                        &body,
                        "",
                    )
                    .map(|ok| format!("HTTP {}, {ok}", status.as_u16()))
                    .map_err(ProbeFailure::said)
                } else {
                    Ok(format!("HTTP {}", status.as_u16()))
                }
            }
        }
    }
}

/// Why a probe failed, and whether it was only slow (no answer within the probe timeout).
pub(super) struct ProbeFailure {
    reason: String,
    timed_out: bool,
}

impl ProbeFailure {
    /// The probe answered, and the answer says broken.
    fn said(reason: String) -> ProbeFailure {
        ProbeFailure {
            reason,
            timed_out: false,
        }
    }
}

pub fn http_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}
