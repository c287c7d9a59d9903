//! Service health: every service of the compose project with its container's state, Docker health,
//! restarts and the guide's deep probe, kept fresh by one monitor on the server (`ssr.rs`) and pushed
//! live to every open page (`view.rs`). The verdict rules are plain functions here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::EngineStatus;

pub mod maintenance;
#[cfg(feature = "ssr")]
pub mod probe;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod view;

/// One probe round's picture of the project, as every viewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Counts rounds since the console started; a page shows whether it is following.
    pub round: u64,
    pub taken_at: DateTime<Utc>,
    pub project: String,
    /// Where the project's name came from (the page says so: a wrong name hides a running stack).
    pub project_source: crate::engine::NameSource,
    pub engine: EngineStatus,
    /// `docker system df`, refreshed less often than the rest (it is expensive).
    pub disk: Option<DiskUsage>,
    /// Why the compose file's services could not be read (the rows then come from containers only).
    pub compose_error: Option<String>,
    /// Declared services in compose order, then nothing else: orphans are listed apart.
    pub services: Vec<ServiceHealth>,
    /// Containers of the project whose service compose no longer declares.
    pub orphans: Vec<ContainerFacts>,
}

impl HealthReport {
    pub fn service(&self, name: &str) -> Option<&ServiceHealth> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub taken_at: DateTime<Utc>,
    pub rows: Vec<DiskUsageRow>,
}

/// One line of `docker system df` (sizes as the engine words them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskUsageRow {
    pub kind: String,
    pub total: String,
    pub active: String,
    pub size: String,
    pub reclaimable: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub name: String,
    /// The service's container (the first replica when scaled); None when it has none.
    pub container: Option<ContainerFacts>,
    pub replicas: usize,
    pub probe: ProbeResult,
    pub verdict: Verdict,
}

/// What the engine says of one container, read in the round that made the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    pub service: String,
    /// created, running, paused, restarting, removing, exited, dead.
    pub state: String,
    pub exit_code: Option<i64>,
    /// The engine's error for the container (e.g. a failed start), scrubbed.
    pub error: Option<String>,
    pub oom_killed: bool,
    /// Docker's healthcheck state: starting, healthy, unhealthy; None without a healthcheck.
    pub health: Option<String>,
    /// The last healthcheck's output when it is not healthy (scrubbed).
    pub health_output: Option<String>,
    pub failing_streak: i64,
    pub restarts: i64,
    pub restart_loop: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub image: String,
    pub image_id: String,
    pub image_created: Option<DateTime<Utc>>,
    /// Published ports as `127.0.0.1:8080->80/tcp`.
    pub ports: Vec<String>,
}

/// The last result of a service's deep probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProbeResult {
    /// The configuration gives this service no deep probe.
    NotConfigured,
    /// Not run, and why (the container is not running; waiting for the first run).
    NotRun { reason: String },
    Passed {
        detail: String,
        latency_ms: u64,
        at: DateTime<Utc>,
    },
    Failed {
        reason: String,
        latency_ms: u64,
        at: DateTime<Utc>,
        /// No answer within the probe timeout (slow, not necessarily broken).
        #[serde(default)]
        timed_out: bool,
        /// How many of this service's probes in a row failed, this one included.
        #[serde(default)]
        streak: u32,
    },
}

/// One message of a service's live log stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogEvent {
    Line(LogLine),
    /// The stream ended (the container stopped, or the engine went away): why.
    End {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Numbers the lines of one stream, for the page's list keys.
    pub seq: u64,
    pub stderr: bool,
    /// The engine's timestamp of the line (RFC 3339), empty when it gave none.
    pub time: String,
    /// The line, scrubbed of secrets and cut at `MAX_LOG_LINE` bytes.
    pub text: String,
}

/// Longer lines are cut (and say so): one runaway line must not fill a page's memory.
pub const MAX_LOG_LINE: usize = 8 * 1024;

/// The one word a row is coloured by, with the reason for anything but healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Running, Docker health (when there is a healthcheck) healthy, deep probe (when configured) passed.
    Healthy,
    /// Running, but its healthcheck or probe has not answered yet.
    Starting { reason: String },
    /// Running and Docker-healthy, but its probe timed out (fewer times in a row than make it down):
    /// slow, not yet down.
    Degraded { reason: String },
    /// Running, with neither a Docker healthcheck nor a probe: nothing says it works, nor that it
    /// does not.
    Unchecked,
    /// Something failed: the reason says what.
    Down { reason: String },
    /// Compose declares it; there is no container.
    Missing,
    /// No container under the console's project name, but one of another compose project (or none)
    /// stands for it: the stack was started under another name.
    OtherProject {
        container: String,
        /// The other project's name; None for a container compose did not start.
        project: Option<String>,
        state: String,
        /// The name the console looks at.
        looking_at: String,
    },
}

impl Verdict {
    pub fn css_class(&self) -> &'static str {
        match self {
            Verdict::Healthy => "ok",
            Verdict::Starting { .. } | Verdict::Degraded { .. } => "warn",
            Verdict::Unchecked => "unchecked",
            Verdict::Down { .. } | Verdict::Missing => "down",
            Verdict::OtherProject { .. } => "warn",
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Starting { .. } => "starting",
            Verdict::Degraded { .. } => "degraded",
            Verdict::Unchecked => "running (no check)",
            Verdict::Down { .. } => "down",
            Verdict::Missing => "missing",
            Verdict::OtherProject { .. } => "other project",
        }
    }

    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Healthy => None,
            Verdict::Unchecked => Some(
                "running; it has no healthcheck and no probe, so nothing was measured (add a \
                 probe in health.probes)"
                    .into(),
            ),
            Verdict::Starting { reason }
            | Verdict::Degraded { reason }
            | Verdict::Down { reason } => Some(reason.clone()),
            Verdict::Missing => {
                Some("declared in the compose file, but there is no container".into())
            }
            Verdict::OtherProject {
                container,
                project,
                state,
                looking_at,
            } => Some(match project {
                Some(project) => format!(
                    "{state} as project {project} (container {container}); the console looks at \
                     project {looking_at}: set project.name = \"{project}\", or leave it unset so \
                     the console names the project as compose does"
                ),
                None => format!(
                    "container {container} ({state}) has this service's container name but was not \
                     started by compose as project {looking_at}"
                ),
            }),
        }
    }
}

impl Verdict {
    /// Whether the service wants someone's attention: anything but healthy, or running with nothing
    /// to check it by.
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Verdict::Healthy | Verdict::Unchecked)
    }
}

/// The verdict of one service from its container's facts and its probe. The first failure found is the
/// reason given, in the order an operator would look: existence, state, restarts, healthcheck, probe.
/// A probe that timed out makes the service degraded until `timeouts_before_down` of them in a row
/// (one slow answer is not an outage); a probe that answered "broken" makes it down at once.
pub fn verdict(
    container: Option<&ContainerFacts>,
    probe: &ProbeResult,
    timeouts_before_down: u32,
) -> Verdict {
    let Some(c) = container else {
        return Verdict::Missing;
    };
    let down = |reason: String| Verdict::Down { reason };
    if c.restart_loop {
        return down(format!(
            "restart loop: {} restarts, now {}{}",
            c.restarts,
            c.state,
            exit_text(c)
        ));
    }
    if c.state != "running" {
        let mut reason = format!("container is {}{}", c.state, exit_text(c));
        if c.oom_killed {
            reason.push_str(", killed for lack of memory");
        }
        if let Some(error) = &c.error {
            reason.push_str(": ");
            reason.push_str(error);
        }
        return down(reason);
    }
    if c.health.as_deref() == Some("unhealthy") {
        let output = c.health_output.as_deref().unwrap_or("no output");
        return down(format!(
            "healthcheck failing ({} in a row): {output}",
            c.failing_streak
        ));
    }
    if let ProbeResult::Failed {
        reason,
        timed_out,
        streak,
        ..
    } = probe
    {
        if *timed_out && *streak < timeouts_before_down.max(1) {
            return Verdict::Degraded {
                reason: format!(
                    "probe timed out ({streak} in a row; down after {}): {reason}",
                    timeouts_before_down.max(1)
                ),
            };
        }
        return down(format!("probe failed: {reason}"));
    }
    if c.health.as_deref() == Some("starting") {
        return Verdict::Starting {
            reason: "healthcheck has not passed yet".into(),
        };
    }
    if let ProbeResult::NotRun { reason } = probe {
        return Verdict::Starting {
            reason: format!("probe not run yet: {reason}"),
        };
    }
    let healthcheck = c
        .health
        .as_deref()
        .is_some_and(|h| !h.is_empty() && h != "none");
    if !healthcheck && *probe == ProbeResult::NotConfigured {
        return Verdict::Unchecked;
    }
    Verdict::Healthy
}

fn exit_text(c: &ContainerFacts) -> String {
    match c.exit_code {
        Some(code) if c.state != "running" => format!(" (exit code {code})"),
        _ => String::new(),
    }
}

/// A container is in a restart loop when the engine is restarting it now, or it restarted at least
/// twice within the window the monitor remembers (`restarts_in_window`), or it has restarted several
/// times and died again within a minute of its last start.
pub fn in_restart_loop(
    restarting: bool,
    restarts_in_window: i64,
    restarts: i64,
    up_for_secs: Option<i64>,
) -> bool {
    restarting || restarts_in_window >= 2 || (restarts >= 3 && up_for_secs.is_some_and(|s| s < 60))
}

/// The plural "s" of a count: `format!("{n} worker{}", plural(n))`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "42 s", "5 min", "3 h", "2 days": how long, as a row shows it.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> ContainerFacts {
        ContainerFacts {
            id: "abc".into(),
            name: "epsm-redis-1".into(),
            service: "redis".into(),
            state: "running".into(),
            exit_code: Some(0),
            error: None,
            oom_killed: false,
            health: Some("healthy".into()),
            health_output: None,
            failing_streak: 0,
            restarts: 0,
            restart_loop: false,
            started_at: None,
            finished_at: None,
            image: "epsm-redis".into(),
            image_id: "sha256:1".into(),
            image_created: None,
            ports: vec![],
        }
    }

    fn passed() -> ProbeResult {
        ProbeResult::Passed {
            detail: "PONG".into(),
            latency_ms: 3,
            at: Utc::now(),
        }
    }

    fn reason(v: Verdict) -> String {
        v.reason().unwrap_or_else(|| "healthy".into())
    }

    #[test]
    fn a_service_held_by_another_project_says_which_and_what_to_set() {
        let v = Verdict::OtherProject {
            container: "epsm_backend_prod".into(),
            project: Some("epsm_prod".into()),
            state: "running".into(),
            looking_at: "epsm".into(),
        };
        assert_eq!(v.word(), "other project");
        let reason = reason(v);
        assert!(
            reason.starts_with(
                "running as project epsm_prod (container epsm_backend_prod); the console looks at project epsm: set project.name = \"epsm_prod\""
            ),
            "{reason}"
        );
    }

    #[test]
    fn healthy_needs_running_healthy_and_a_passed_probe() {
        assert_eq!(verdict(Some(&running()), &passed(), 3), Verdict::Healthy);
        assert_eq!(
            verdict(Some(&running()), &ProbeResult::NotConfigured, 3),
            Verdict::Healthy
        );
        let no_healthcheck = ContainerFacts {
            health: None,
            ..running()
        };
        assert_eq!(
            verdict(Some(&no_healthcheck), &passed(), 3),
            Verdict::Healthy
        );
    }

    #[test]
    fn running_with_nothing_to_check_it_by_is_never_green() {
        for health in [None, Some(""), Some("none")] {
            let unchecked = ContainerFacts {
                health: health.map(String::from),
                ..running()
            };
            let v = verdict(Some(&unchecked), &ProbeResult::NotConfigured, 3);
            assert_eq!(v, Verdict::Unchecked, "{health:?}");
            assert_eq!(v.word(), "running (no check)");
            assert_ne!(v.css_class(), Verdict::Healthy.css_class());
            assert!(!v.needs_attention(), "running is not a problem either");
        }
    }

    #[test]
    fn a_slow_probe_degrades_and_only_a_run_of_them_makes_down() {
        let timed_out = |streak| ProbeResult::Failed {
            reason: "no answer in time".into(),
            latency_ms: 10_000,
            at: Utc::now(),
            timed_out: true,
            streak,
        };
        for streak in [1, 2] {
            let v = verdict(Some(&running()), &timed_out(streak), 3);
            assert_eq!(v.word(), "degraded", "{streak} in a row");
            assert_eq!(v.css_class(), "warn");
            assert!(v.needs_attention());
            assert_eq!(
                reason(v),
                format!("probe timed out ({streak} in a row; down after 3): no answer in time")
            );
        }
        for streak in [3, 7] {
            let v = verdict(Some(&running()), &timed_out(streak), 3);
            assert_eq!(
                reason(v),
                "probe failed: no answer in time",
                "{streak} in a row"
            );
        }
        // A probe that answered "broken" is down at once; so is a timeout when one is the limit.
        let broken = ProbeResult::Failed {
            reason: "database unhealthy".into(),
            latency_ms: 40,
            at: Utc::now(),
            timed_out: false,
            streak: 1,
        };
        assert_eq!(verdict(Some(&running()), &broken, 3).word(), "down");
        assert_eq!(verdict(Some(&running()), &timed_out(1), 1).word(), "down");
        // Docker saying unhealthy outranks a slow probe.
        let unhealthy = ContainerFacts {
            health: Some("unhealthy".into()),
            ..running()
        };
        assert_eq!(verdict(Some(&unhealthy), &timed_out(1), 3).word(), "down");
    }

    #[test]
    fn each_failure_gives_its_reason() {
        let exited = ContainerFacts {
            state: "exited".into(),
            exit_code: Some(137),
            ..running()
        };
        assert_eq!(
            reason(verdict(Some(&exited), &passed(), 3)),
            "container is exited (exit code 137)"
        );
        let oom = ContainerFacts {
            oom_killed: true,
            ..exited.clone()
        };
        assert!(reason(verdict(Some(&oom), &passed(), 3)).ends_with("killed for lack of memory"));
        let unhealthy = ContainerFacts {
            health: Some("unhealthy".into()),
            health_output: Some("curl: (22) 503".into()),
            failing_streak: 4,
            ..running()
        };
        assert_eq!(
            reason(verdict(Some(&unhealthy), &passed(), 3)),
            "healthcheck failing (4 in a row): curl: (22) 503"
        );
        let failed = ProbeResult::Failed {
            reason: "database: unhealthy: connection refused".into(),
            latency_ms: 40,
            at: Utc::now(),
            timed_out: false,
            streak: 1,
        };
        assert_eq!(
            reason(verdict(Some(&running()), &failed, 3)),
            "probe failed: database: unhealthy: connection refused"
        );
        let looping = ContainerFacts {
            restart_loop: true,
            restarts: 5,
            state: "restarting".into(),
            exit_code: Some(1),
            ..running()
        };
        assert_eq!(
            reason(verdict(Some(&looping), &passed(), 3)),
            "restart loop: 5 restarts, now restarting (exit code 1)"
        );
        assert_eq!(verdict(None, &passed(), 3), Verdict::Missing);
    }

    #[test]
    fn not_yet_answered_is_starting_not_green() {
        let starting = ContainerFacts {
            health: Some("starting".into()),
            ..running()
        };
        assert_eq!(verdict(Some(&starting), &passed(), 3).word(), "starting");
        let waiting = ProbeResult::NotRun {
            reason: "first round".into(),
        };
        assert_eq!(verdict(Some(&running()), &waiting, 3).word(), "starting");
    }

    #[test]
    fn restart_loops_are_recent_restarts_not_old_ones() {
        assert!(
            in_restart_loop(true, 0, 1, None),
            "the engine is restarting it"
        );
        assert!(
            in_restart_loop(false, 2, 2, Some(3000)),
            "two restarts seen recently"
        );
        assert!(
            in_restart_loop(false, 0, 7, Some(5)),
            "many restarts, died again at once"
        );
        assert!(
            !in_restart_loop(false, 0, 7, Some(86_400)),
            "old restarts, stable for a day"
        );
        assert!(
            !in_restart_loop(false, 1, 1, Some(20)),
            "one restart is not a loop"
        );
    }
}
