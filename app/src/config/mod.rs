//! The console's configuration: one typed struct, layered defaults -> TOML file -> `EPSM_OPS_*`
//! environment, validated once at start with errors that name the key, the problem and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

mod sections;
mod validate;

pub use sections::{
    AlertsConfig, AuditConfig, AuthConfig, BackupsConfig, ChannelConfig, ChannelKind, DeployConfig,
    DockerConfig, GitConfig, HealthConfig, LimitsConfig, ProjectConfig, RoleRule, SecretsConfig,
    SmtpTls,
};
use validate::{file_error, io_reason};

/// Prefix of every environment variable that sets a configuration key (`EPSM_OPS_LISTEN`, ...).
pub const ENV_PREFIX: &str = "EPSM_OPS_";
/// Sections of the file; `EPSM_OPS_PROJECT_DIR` sets `project.dir`.
const SECTIONS: [&str; 10] = [
    "project", "docker", "health", "deploy", "secrets", "backups", "auth", "audit", "limits",
    "alerts",
];
/// Sections inside sections; `EPSM_OPS_PROJECT_GIT_BRANCH` sets `project.git.branch`.
const SUBSECTIONS: [(&str, &str); 1] = [("project", "git")];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the console listens on.
    pub listen: SocketAddr,
    /// The URL people reach the console at (SAML and cookies are derived from it).
    pub public_url: Url,
    /// Where the console keeps its SQLite store, keys and (unless `backups.dir` says otherwise) backups.
    pub data_dir: PathBuf,
    /// A directory to serve the compiled site (wasm, js, css, public files) from, as `cargo leptos
    /// build` leaves it. Unset: the site this binary carries (the release artifact).
    pub site_root: Option<PathBuf>,
    pub project: ProjectConfig,
    pub docker: DockerConfig,
    pub health: HealthConfig,
    pub deploy: DeployConfig,
    pub secrets: SecretsConfig,
    pub backups: BackupsConfig,
    pub alerts: AlertsConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Type errors and unknown keys, as figment words them (it names the key and where it came from).
    #[error("{0}")]
    Invalid(String),
    #[error("`{key}` = {value:?}: {problem}; expected {expected}")]
    Value {
        key: &'static str,
        value: String,
        problem: String,
        expected: &'static str,
    },
}

impl Default for Config {
    /// The embedded default: run from the repository root, the bundled EPSM-like stack is the project.
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            public_url: Url::parse("http://127.0.0.1:3000/").expect("constant URL parses"),
            data_dir: PathBuf::from("data"),
            site_root: None,
            project: ProjectConfig {
                name: None,
                name_source: Default::default(),
                dir: PathBuf::from("stack"),
                compose_file: PathBuf::from("docker-compose.production.yml"),
                env_file: PathBuf::from(".env.production"),
                public_url: Url::parse("http://127.0.0.1:8080/").expect("constant URL parses"),
                git: GitConfig::default(),
                profiles: Vec::new(),
                recheck_secs: 60,
            },
            docker: DockerConfig {
                host: default_docker_host(std::env::var("DOCKER_HOST").ok()),
                cli: PathBuf::from("docker"),
            },
            health: HealthConfig {
                interval_secs: 5,
                probe_timeout_secs: 10,
                probe_timeouts_before_down: 3,
                disk_usage_interval_secs: 60,
                probes: Default::default(),
            },
            deploy: DeployConfig {
                wait_timeout_secs: 300,
                exec_timeout_secs: 1800,
                seed_command: ["python", "manage.py", "seed"].map(String::from).to_vec(),
                keep_images: 5,
                worker_service: "celery_worker".into(),
                celery_app: "config".into(),
                drain_timeout_secs: 600,
                public_service: "nginx".into(),
                maintenance_tls_certificate: None,
                maintenance_tls_key: None,
            },
            secrets: SecretsConfig::default(),
            auth: AuthConfig {
                idp_metadata: "https://www.ita.chalmers.se/idp.chalmers.se.xml".into(),
                metadata_refresh_hours: 6,
                metadata_retry_secs: 60,
                metadata_max_age_days: 14,
                allow_http_metadata: false,
                idp_metadata_cert: None,
                idp_entity_id: None,
                dev_idp: false,
                sp_key: PathBuf::from("saml/sp.key"),
                sp_cert: PathBuf::from("saml/sp.crt"),
                sign_requests: true,
                allow_sha1: false,
                allow_rsa15: false,
                clock_skew_secs: 60,
                allow_unsolicited: false,
                session_idle_minutes: 60,
                session_max_hours: 12,
                admins: RoleRule::default(),
                deployers: RoleRule::default(),
                viewers: RoleRule::default(),
                organization_name: "Chalmers University of Technology".into(),
                organization_url: "https://www.chalmers.se/".into(),
                technical_contact: "epsm-ops@chalmers.se".into(),
                support_contact: "epsm-ops@chalmers.se".into(),
            },
            audit: AuditConfig { keep_days: 400 },
            limits: LimitsConfig {
                streams_per_session: 12,
                streams_total: 64,
                saml_per_minute: 30,
                header_read_timeout_secs: 10,
                request_body_bytes: 1024 * 1024,
            },
            backups: BackupsConfig {
                keep_last: 10,
                keep_days: 0,
                dir: None,
                schedule: None,
                restore_stop_services: ["backend", "celery_worker", "celery_beat"]
                    .map(String::from)
                    .to_vec(),
                drill_schedule: None,
                copy_to: None,
                rclone_config: None,
            },
            alerts: AlertsConfig {
                grace_secs: 60,
                repeat_minutes: 60,
                disk_free_percent: 10,
                attempts: crate::alerts::store::ATTEMPTS,
                channels: Vec::new(),
            },
        }
    }
}

/// `DOCKER_HOST` when set (as the docker CLI does), else the local socket.
fn default_docker_host(docker_host_env: Option<String>) -> String {
    docker_host_env
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

impl Config {
    /// Loads defaults, then `file` (when given), then `EPSM_OPS_*` variables from the environment, and
    /// validates the result. Creates the data directory when it does not exist.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, Env::prefixed(ENV_PREFIX))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // figment treats a missing file as empty: an operator who named a file means that file.
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => return Err(file_error(path, "is not a regular file")),
                Err(e) => return Err(file_error(path, &io_reason(&e))),
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // EPSM_OPS_CONFIG names the file (the command line's `--config`): it is not a key in it.
        let env = env.ignore(&["config"]).map(|key| {
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS
                .iter()
                .find_map(|s| {
                    key.strip_prefix(s)
                        .and_then(|rest| rest.strip_prefix('_'))
                        .map(|rest| {
                            match SUBSECTIONS.iter().find_map(|(section, sub)| {
                                (section == s)
                                    .then(|| rest.strip_prefix(sub)?.strip_prefix('_'))
                                    .flatten()
                                    .map(|rest| (sub, rest))
                            }) {
                                Some((sub, rest)) => format!("{s}.{sub}.{rest}"),
                                None => format!("{s}.{rest}"),
                            }
                        })
                })
                .unwrap_or(key)
                .into()
        });
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Invalid(figment_errors(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// A path of the configuration, relative paths inside `data_dir`.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        self.data_dir.join(path)
    }

    /// Where backups are kept: `backups.dir`, else `<data_dir>/backups`.
    pub fn backups_dir(&self) -> PathBuf {
        self.data_path(self.backups.dir.as_deref().unwrap_or(Path::new("backups")))
    }

    /// rclone's configuration file: `backups.rclone_config`, else `<data_dir>/rclone.conf`.
    pub fn rclone_config(&self) -> PathBuf {
        self.data_path(
            self.backups
                .rclone_config
                .as_deref()
                .unwrap_or(Path::new("rclone.conf")),
        )
    }

    /// The compose project's name: `project.name` (as configured, or as found at start), else the
    /// directory's name as compose would normalise it.
    pub fn project_name(&self) -> String {
        self.project.name.clone().unwrap_or_else(|| {
            let dir = std::path::absolute(&self.project.dir).unwrap_or(self.project.dir.clone());
            normalize_project_name(
                &dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
    }

    pub fn compose_file(&self) -> PathBuf {
        self.project.dir.join(&self.project.compose_file)
    }

    pub fn env_file(&self) -> PathBuf {
        self.project.dir.join(&self.project.env_file)
    }
}

/// A name as compose makes a project name of it (of a directory's name, say): lowercase, only
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    kept.trim_start_matches(['-', '_']).to_string()
}

pub fn compose_project_name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            Some("does not start with a lowercase letter or digit")
        }
        _ if !chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') =>
        {
            Some("has a character compose does not allow")
        }
        _ => None,
    }
}

/// figment may report several problems at once; show each on its own line.
fn figment_errors(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
