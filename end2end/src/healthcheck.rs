//! How long Docker may take to decide a service's health, read from the compose file's own
//! healthchecks. Every wait of the suite for a Docker health state is bounded by these figures (plus
//! `with_margin`), never by a number picked near what the machine needed on a quiet day.

use std::collections::BTreeMap;
use std::time::Duration;

/// Docker's defaults for a healthcheck field the compose file leaves out.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

/// One service's healthcheck, as `docker compose config --format json` resolves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

impl Check {
    /// The longest a container can stay `starting`: failures in the start period do not count, after
    /// it `retries` failed checks in a row turn it `unhealthy`, each check taking up to `timeout`, the
    /// next one `interval` after the last ended.
    pub fn verdict_within(&self) -> Duration {
        self.start_period + (self.interval + self.timeout) * self.retries
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Service {
    check: Option<Check>,
    /// Services this one waits for at start (`depends_on`).
    depends_on: Vec<String>,
}

/// The healthchecks and start order of a compose project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Healthchecks {
    services: BTreeMap<String, Service>,
}

impl Healthchecks {
    /// Reads the output of `docker compose config --format json`.
    pub fn from_compose_config(json: &str) -> Result<Healthchecks, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let services = value["services"]
            .as_object()
            .ok_or("no `services` object")?;
        let mut out = Healthchecks::default();
        for (name, service) in services {
            let check = match service.get("healthcheck") {
                Some(h) if h["disable"].as_bool() != Some(true) && !h.is_null() => Some(Check {
                    interval: field_duration(h, "interval", DEFAULT_INTERVAL)?,
                    timeout: field_duration(h, "timeout", DEFAULT_TIMEOUT)?,
                    start_period: field_duration(h, "start_period", Duration::ZERO)?,
                    retries: h["retries"].as_u64().map_or(DEFAULT_RETRIES, |r| r as u32),
                }),
                _ => None,
            };
            let depends_on = service["depends_on"]
                .as_object()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            out.services
                .insert(name.clone(), Service { check, depends_on });
        }
        Ok(out)
    }

    /// The longest Docker may take to give `service` a verdict after its container started (zero
    /// without a healthcheck: running is all there is to wait for).
    pub fn verdict_within(&self, service: &str) -> Duration {
        self.services
            .get(service)
            .and_then(|s| s.check.as_ref())
            .map_or(Duration::ZERO, Check::verdict_within)
    }

    /// The longest `service` may take to settle after `up`: compose starts it only once the services
    /// it depends on settled, so their time comes first.
    pub fn settled_within(&self, service: &str) -> Duration {
        self.settled(service, 0)
    }

    fn settled(&self, service: &str, depth: usize) -> Duration {
        let Some(s) = self.services.get(service) else {
            return Duration::ZERO;
        };
        // A cycle is compose's error to report, not a reason to recurse forever.
        let before = if depth > self.services.len() {
            Duration::ZERO
        } else {
            s.depends_on
                .iter()
                .map(|d| self.settled(d, depth + 1))
                .max()
                .unwrap_or_default()
        };
        before + self.verdict_within(service)
    }

    /// The longest the whole project may take to settle after `up`.
    pub fn all_settled_within(&self) -> Duration {
        self.services
            .keys()
            .map(|s| self.settled_within(s))
            .max()
            .unwrap_or_default()
    }
}

/// A derived bound made safe for a busy machine: half again, plus 30 s for creating and starting
/// containers. A wait that ends when its condition holds costs this only when the test fails.
pub const fn with_margin(bound: Duration) -> Duration {
    let ms = bound.as_millis() as u64;
    Duration::from_millis(ms + ms / 2 + 30_000)
}

fn field_duration(
    check: &serde_json::Value,
    field: &str,
    default: Duration,
) -> Result<Duration, String> {
    match check.get(field).and_then(|v| v.as_str()) {
        None => Ok(default),
        Some(text) => go_duration(text).ok_or_else(|| format!("healthcheck {field} {text:?}")),
    }
}

/// A Go duration as compose prints it: `1m30s`, `3s`, `500ms`, `1h0m0s`, `1.5s`.
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    match rest {
        "" => return None,
        "0" => return Some(total),
        _ => {}
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_end..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_compose_prints_them() {
        for (text, want) in [
            ("3s", Duration::from_secs(3)),
            ("1m0s", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(go_duration(text), Some(want), "{text}");
        }
        for bad in ["", "s", "3", "3x", "1m-2s"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_chain_of_healthy_dependencies_adds_up_and_defaults_are_dockers() {
        let json = r#"{"services":{
            "database":{"healthcheck":{"interval":"3s","timeout":"5s","retries":10,"start_period":"1m30s"}},
            "backend":{"healthcheck":{"interval":"3s","timeout":"5s","retries":10,"start_period":"1m0s"},
                       "depends_on":{"database":{"condition":"service_healthy"}}},
            "nginx":{"depends_on":{"backend":{"condition":"service_healthy"}}},
            "plain":{"healthcheck":{"test":["CMD","true"]}},
            "off":{"healthcheck":{"disable":true}}}}"#;
        let checks = Healthchecks::from_compose_config(json).unwrap();
        assert_eq!(checks.verdict_within("database"), Duration::from_secs(170));
        assert_eq!(checks.verdict_within("backend"), Duration::from_secs(140));
        assert_eq!(checks.settled_within("backend"), Duration::from_secs(310));
        assert_eq!(checks.settled_within("nginx"), Duration::from_secs(310));
        assert_eq!(checks.verdict_within("plain"), Duration::from_secs(180));
        assert_eq!(checks.verdict_within("off"), Duration::ZERO);
        assert_eq!(checks.verdict_within("unknown"), Duration::ZERO);
        assert_eq!(checks.all_settled_within(), Duration::from_secs(310));
        assert_eq!(
            with_margin(Duration::from_secs(100)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn a_dependency_cycle_ends() {
        let json = r#"{"services":{"a":{"depends_on":{"b":{}}},"b":{"depends_on":{"a":{}}}}}"#;
        let checks = Healthchecks::from_compose_config(json).unwrap();
        assert_eq!(checks.settled_within("a"), Duration::ZERO);
    }
}
