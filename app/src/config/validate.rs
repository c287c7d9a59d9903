//! What serde cannot check: values that parse but cannot work, each refusal naming the key, the
//! problem and what was expected.

use super::sections::parse_cron;
use super::*;

impl Config {
    /// Checks what serde cannot: values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.public_url.scheme(), "http" | "https") {
            return Err(value_error(
                "public_url",
                self.public_url.as_str(),
                "the scheme is not http or https",
                "the URL people open the console at, e.g. https://ops.epsm.chalmers.se/",
            ));
        }
        if !matches!(self.project.public_url.scheme(), "http" | "https") {
            return Err(value_error(
                "project.public_url",
                self.project.public_url.as_str(),
                "the scheme is not http or https",
                "the URL EPSM's users open, e.g. https://epsm.chalmers.se/",
            ));
        }
        for (key, value) in [
            (
                "limits.streams_per_session",
                self.limits.streams_per_session as u64,
            ),
            ("limits.streams_total", self.limits.streams_total as u64),
            (
                "limits.saml_per_minute",
                u64::from(self.limits.saml_per_minute),
            ),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            (
                "limits.request_body_bytes",
                self.limits.request_body_bytes as u64,
            ),
            ("health.interval_secs", self.health.interval_secs),
            ("health.probe_timeout_secs", self.health.probe_timeout_secs),
            (
                "health.probe_timeouts_before_down",
                u64::from(self.health.probe_timeouts_before_down),
            ),
            (
                "health.disk_usage_interval_secs",
                self.health.disk_usage_interval_secs,
            ),
        ] {
            if value == 0 {
                return Err(value_error(
                    key,
                    "0",
                    "is zero",
                    "a number of seconds, 1 or more",
                ));
            }
        }
        if let Some(name) = &self.project.name
            && let Some(problem) = compose_project_name_problem(name)
        {
            return Err(value_error(
                "project.name",
                name,
                problem,
                "a compose project name: lowercase letters, digits, '-' and '_', starting with a letter or digit",
            ));
        }
        if !self.project.dir.is_dir() {
            return Err(value_error(
                "project.dir",
                &self.project.dir.display().to_string(),
                "is not an existing directory",
                "the compose project directory (e.g. /opt/epsm)",
            ));
        }
        for (key, path) in [
            ("project.compose_file", self.compose_file()),
            ("project.env_file", self.env_file()),
        ] {
            if !path.is_file() {
                return Err(value_error(
                    key,
                    &path.display().to_string(),
                    "no such file",
                    "a file in the project directory (relative to project.dir, or absolute)",
                ));
            }
        }
        if let Some(key) = &self.project.git.ssh_key {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(key) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    return Err(value_error(
                        "project.git.ssh_key",
                        &key.display().to_string(),
                        &format!(
                            "is readable by others (mode {:o})",
                            meta.permissions().mode() & 0o777
                        ),
                        "a deploy key only its owner can read: chmod 600",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(value_error(
                        "project.git.ssh_key",
                        &key.display().to_string(),
                        &io_reason(&e),
                        "the path of the deploy key (mode 0600)",
                    ));
                }
            }
        }
        if self.project.git.remote.trim().is_empty() || self.project.git.branch.trim().is_empty() {
            return Err(value_error(
                "project.git",
                &format!("{}/{}", self.project.git.remote, self.project.git.branch),
                "the remote or the branch is empty",
                "a remote name (origin) and a branch (main)",
            ));
        }
        if let Some(problem) = docker_host_problem(&self.docker.host) {
            return Err(value_error(
                "docker.host",
                &self.docker.host,
                problem,
                "unix:///path/to/docker.sock, tcp://host:port or http://host:port",
            ));
        }
        if let Err(e) = std::fs::create_dir_all(&self.data_dir) {
            return Err(value_error(
                "data_dir",
                &self.data_dir.display().to_string(),
                &format!("cannot be created: {}", io_reason(&e)),
                "a directory the console may write to",
            ));
        }
        if self.auth.idp_metadata.trim().starts_with("http://") && !self.auth.allow_http_metadata {
            return Err(value_error(
                "auth.idp_metadata",
                &self.auth.idp_metadata,
                "is plain http: anyone on the way could put their own keys in it",
                "an https:// URL or a file (auth.allow_http_metadata = true to accept it anyway)",
            ));
        }
        if self.auth.dev_idp
            && let Some(problem) = dev_idp_problem(self.listen, &self.public_url)
        {
            return Err(value_error(
                "auth.dev_idp",
                "true",
                &problem,
                "false in production; the development IdP logs anybody in as anyone",
            ));
        }
        if self.alerts.disk_free_percent > 99 {
            return Err(value_error(
                "alerts.disk_free_percent",
                &self.alerts.disk_free_percent.to_string(),
                "is a share of the disk",
                "a percentage below 100 (0: never)",
            ));
        }
        if self.alerts.attempts == 0 {
            return Err(value_error(
                "alerts.attempts",
                "0",
                "leaves no attempt to deliver a message",
                "1 or more (30: about a day of retries)",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for channel in &self.alerts.channels {
            if channel.name.trim().is_empty() || !names.insert(channel.name.as_str()) {
                return Err(value_error(
                    "alerts.channels.name",
                    &channel.name,
                    "is empty or names two channels",
                    "a name of its own for each channel",
                ));
            }
            if let Some(problem) = channel.problem() {
                return Err(value_error(
                    "alerts.channels",
                    &channel.name,
                    &problem,
                    "see the alerts section of the README",
                ));
            }
        }
        if let Some(target) = self.backups.copy_target() {
            let remote = target.split_once(':').map(|(r, _)| r);
            let named = remote.is_some_and(|r| {
                !r.is_empty()
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
            });
            if !named {
                // An inline remote may carry a password: it is not repeated.
                let shown = if target.contains(',') {
                    "(an inline remote, not shown)"
                } else {
                    target
                };
                return Err(value_error(
                    "backups.copy_to",
                    shown,
                    "is not a remote of rclone's configuration file and a path",
                    "remote:path, e.g. \"offsite:epsm-backups\", the remote defined (with its credentials) in \
                     rclone's configuration file (backups.rclone_config), never inline",
                ));
            }
        }
        for (key, value) in [
            ("backups.schedule", &self.backups.schedule),
            ("backups.drill_schedule", &self.backups.drill_schedule),
        ] {
            if let Some(pattern) = value.as_deref().map(str::trim)
                && !pattern.is_empty()
                && let Err(e) = parse_cron(pattern)
            {
                return Err(value_error(
                    key,
                    pattern,
                    &format!("is not a cron expression: {e}"),
                    "five fields (minute hour day-of-month month day-of-week, UTC), e.g. \"0 3 * * *\" for 03:00 daily",
                ));
            }
        }
        Ok(())
    }
}

/// Why the development IdP may not run here: it logs anybody in as anyone, so it is only for a
/// console nobody else can reach. Behind nginx the console listens on loopback too, so the public
/// URL must be a plain-http loopback address as well.
pub(super) fn dev_idp_problem(
    listen: std::net::SocketAddr,
    public_url: &url::Url,
) -> Option<String> {
    if !listen.ip().is_loopback() {
        return Some(format!(
            "is only allowed when the console listens on loopback, not on {listen}"
        ));
    }
    let loopback_host = match public_url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if public_url.scheme() != "http" || !loopback_host {
        return Some(format!(
            "is only allowed when public_url is a plain-http loopback address, not {public_url} \
             (a console others reach is a production console)"
        ));
    }
    None
}

pub(super) fn docker_host_problem(host: &str) -> Option<&'static str> {
    if let Some(path) = host.strip_prefix("unix://") {
        return (!path.starts_with('/')).then_some("the socket path is not absolute");
    }
    match host.split_once("://") {
        Some(("tcp" | "http", rest)) if !rest.is_empty() => None,
        Some(("tcp" | "http", _)) => Some("no host:port after the scheme"),
        _ => Some("unsupported scheme"),
    }
}

pub(super) fn value_error(
    key: &'static str,
    value: &str,
    problem: &str,
    expected: &'static str,
) -> ConfigError {
    ConfigError::Value {
        key,
        value: value.to_string(),
        problem: problem.to_string(),
        expected,
    }
}

pub(super) fn file_error(path: &Path, reason: &str) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
