//! The console's configuration: one typed struct, layered defaults -> TOML file -> `EPSM_OPS_*`
//! environment, validated once at start with errors that name the key, the problem and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

/// Prefix of every environment variable that sets a configuration key (`EPSM_OPS_LISTEN`, ...).
pub const ENV_PREFIX: &str = "EPSM_OPS_";
/// Sections of the file; `EPSM_OPS_PROJECT_DIR` sets `project.dir`.
const SECTIONS: [&str; 9] = [
    "project", "docker", "health", "deploy", "secrets", "backups", "auth", "audit", "limits",
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
    /// Where the console keeps its SQLite store (and, later, backups).
    pub data_dir: PathBuf,
    /// Where `cargo leptos build` put the compiled site (wasm, js, css, public files).
    pub site_root: PathBuf,
    pub project: ProjectConfig,
    pub docker: DockerConfig,
    pub health: HealthConfig,
    pub deploy: DeployConfig,
    pub secrets: SecretsConfig,
    pub backups: BackupsConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub limits: LimitsConfig,
}

/// How long the audit log keeps its entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Entries older than this many days are deleted (daily; 0: kept for ever).
    pub keep_days: u32,
}

/// Bounds on what one client, or everyone together, may hold of the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Live streams (health, a service's log, a deploy's output) one session may have open.
    pub streams_per_session: usize,
    /// Live streams open at once, all sessions together.
    pub streams_total: usize,
    /// Requests to `/saml/*` one client address may make per minute (a burst of as many at once).
    pub saml_per_minute: u32,
    /// A connection that has not sent a request's headers within this long is closed.
    pub header_read_timeout_secs: u64,
    /// The largest request body accepted (server functions, forms); the ACS takes less.
    pub request_body_bytes: usize,
}

/// SAML login and who may do what (see the README's "Login and roles").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The IdP's metadata: an https URL (fetched at start and every `metadata_refresh_hours`, the
    /// last good copy kept in the data directory) or a file path.
    pub idp_metadata: String,
    pub metadata_refresh_hours: u64,
    /// While no copy of the metadata could be read, try again this often.
    pub metadata_retry_secs: u64,
    /// A copy older than this (the source failing all that time) stops logins; 0: never.
    pub metadata_max_age_days: u64,
    /// Accept a plain-http metadata URL (anyone on the path could swap the IdP's keys).
    pub allow_http_metadata: bool,
    /// Read only metadata signed by this certificate (PEM or DER; SWAMID signs its aggregate).
    pub idp_metadata_cert: Option<PathBuf>,
    /// The IdP to trust in an aggregate listing several (its entityID).
    pub idp_entity_id: Option<String>,
    /// Run the development IdP inside the console (only allowed when listening on loopback) and
    /// trust it instead of `idp_metadata`.
    pub dev_idp: bool,
    /// The SP's key and certificate (PEM); generated on first start when both are absent. Relative
    /// paths are inside `data_dir`.
    pub sp_key: PathBuf,
    pub sp_cert: PathBuf,
    /// Sign AuthnRequests (HTTP-Redirect binding, rsa-sha256).
    pub sign_requests: bool,
    /// Accept rsa-sha1 / sha1 signatures (ADFS may still use them).
    pub allow_sha1: bool,
    /// Accept RSA PKCS#1 v1.5 key transport in encrypted assertions (open to padding oracles; only
    /// for an IdP that can do nothing else).
    pub allow_rsa15: bool,
    pub clock_skew_secs: u64,
    /// Accept IdP-initiated logins (responses to no request of ours).
    pub allow_unsolicited: bool,
    /// A session ends after this long without a request, and this long after login in any case.
    pub session_idle_minutes: u64,
    pub session_max_hours: u64,
    /// Who gets which role; the highest matching role wins, nobody matching is not let in.
    pub admins: RoleRule,
    pub deployers: RoleRule,
    pub viewers: RoleRule,
    /// For the SP metadata Chalmers IT / SWAMID registers.
    pub organization_name: String,
    pub organization_url: String,
    pub technical_contact: String,
    pub support_contact: String,
}

/// Matches a person by their stable id, an affiliation (eduPersonScopedAffiliation, e.g.
/// `employee@chalmers.se`) or the domain of their mail address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleRule {
    pub ids: Vec<String>,
    pub affiliations: Vec<String>,
    pub mail_domains: Vec<String>,
}

/// Where backups go, when they are taken by schedule, and how many are kept (applied after each
/// successful backup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsConfig {
    /// Keep at most this many successful backups (0: no limit by count).
    pub keep_last: usize,
    /// Delete successful backups older than this many days (0: no limit by age).
    pub keep_days: u32,
    /// The backups directory; unset: `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// A cron expression (UTC; five fields, or six with seconds first) for scheduled backups; unset or
    /// empty: none.
    pub schedule: Option<String>,
}

impl BackupsConfig {
    /// The parsed schedule, if one is set (validated at load, so a set one parses).
    pub fn cron(&self) -> Option<croner::Cron> {
        let pattern = self
            .schedule
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())?;
        parse_cron(pattern).ok()
    }
}

/// Why the development IdP may not run here: it logs anybody in as anyone, so it is only for a
/// console nobody else can reach. Behind nginx the console listens on loopback too, so the public
/// URL must be a plain-http loopback address as well.
fn dev_idp_problem(listen: std::net::SocketAddr, public_url: &url::Url) -> Option<String> {
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

/// Five-field cron, or six with seconds first; `@daily` and the like too.
fn parse_cron(pattern: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(pattern)
}

/// What makes a variable secret beyond the built-in rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Name parts that make a variable secret, added to the built-in ones (PASSWORD, SECRET, KEY,
    /// TOKEN, CREDENTIAL, PRIVATE, AUTH, SALT, PASSWD), matched case-insensitively anywhere in a name.
    pub extra_name_parts: Vec<String>,
}

/// The one compose project the console deploys, as the deployment guide fixes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Compose project name (`docker compose -p`). Unset: the name compose itself gives the files
    /// (COMPOSE_PROJECT_NAME, then the compose file's `name:`, then the directory), found at start by
    /// `compose::resolve_project_name`, so a stack started with plain `docker compose` is the one shown.
    pub name: Option<String>,
    /// Where `name` came from (set with it at start; not a key of the file).
    #[serde(skip)]
    pub name_source: crate::engine::NameSource,
    /// The project directory (`/opt/epsm` in production).
    pub dir: PathBuf,
    /// Compose file, relative to `dir` unless absolute.
    pub compose_file: PathBuf,
    /// Env file given to compose as `--env-file`, relative to `dir` unless absolute.
    pub env_file: PathBuf,
    /// The URL EPSM's users open (nginx); the health page GETs its `/health/` as a user would.
    pub public_url: Url,
    /// Where a deploy takes the code from (the workflow's "Pull latest code").
    pub git: GitConfig,
    /// Compose profiles whose registry images a deploy pulls too (EPSM's `energyplus` is under `tools`);
    /// their services are not started.
    pub profiles: Vec<String>,
}

/// The project directory's git checkout: what a deploy fetches and checks out before it builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// The remote fetched from.
    pub remote: String,
    /// The branch a deploy brings when the deployer names no other ref.
    pub branch: String,
    /// A deploy key for an ssh remote (refused unless its mode is 0600).
    pub ssh_key: Option<PathBuf>,
    /// The ssh known_hosts file for that remote (host keys are checked strictly).
    pub known_hosts: Option<PathBuf>,
    /// A link to a commit, `{commit}` replaced by its id, e.g.
    /// `https://github.com/chalmers/epsm/commit/{commit}`.
    pub commit_url: Option<String>,
    /// Seconds one git command (a fetch) may take.
    pub timeout_secs: u64,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            remote: "origin".into(),
            branch: "main".into(),
            ssh_key: None,
            known_hosts: None,
            commit_url: None,
            timeout_secs: 120,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Engine endpoint: `unix:///path/to/docker.sock`, `tcp://host:port` or `http://host:port`.
    pub host: String,
    /// The docker CLI (with the compose v2 plugin) that runs compose commands.
    pub cli: PathBuf,
}

/// The deploy procedure's bounds and the stack's own seed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Seconds to wait for database, redis and backend to be healthy after `up` (and for verify).
    pub wait_timeout_secs: u64,
    /// Seconds one in-container step (migrate, seed, collectstatic) may take.
    pub exec_timeout_secs: u64,
    /// The seed step, run in the backend container.
    pub seed_command: Vec<String>,
    /// Successful deploys whose images are kept for a rollback (named `<repo>:deploy-<id>`).
    pub keep_images: usize,
}

/// The health monitor: how often it looks, how long a probe may take, and the probes themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between probe rounds (a container event also starts one at once).
    pub interval_secs: u64,
    /// Seconds one probe may take before it counts as failed.
    pub probe_timeout_secs: u64,
    /// Seconds between reads of the engine's disk usage (`docker system df` is expensive).
    pub disk_usage_interval_secs: u64,
    /// Deep probes by service name, replacing the guide's default for that service
    /// (see `crate::health::probe::default_probe`).
    pub probes: std::collections::BTreeMap<String, crate::health::probe::Probe>,
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
            site_root: PathBuf::from("target/site"),
            project: ProjectConfig {
                name: None,
                name_source: Default::default(),
                dir: PathBuf::from("stack"),
                compose_file: PathBuf::from("docker-compose.production.yml"),
                env_file: PathBuf::from(".env.production"),
                public_url: Url::parse("http://127.0.0.1:8080/").expect("constant URL parses"),
                git: GitConfig::default(),
                profiles: Vec::new(),
            },
            docker: DockerConfig {
                host: default_docker_host(std::env::var("DOCKER_HOST").ok()),
                cli: PathBuf::from("docker"),
            },
            health: HealthConfig {
                interval_secs: 5,
                probe_timeout_secs: 10,
                disk_usage_interval_secs: 60,
                probes: Default::default(),
            },
            deploy: DeployConfig {
                wait_timeout_secs: 300,
                exec_timeout_secs: 1800,
                seed_command: ["python", "manage.py", "seed"].map(String::from).to_vec(),
                keep_images: 5,
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
        let env = env.map(|key| {
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
        if let Some(pattern) = self.backups.schedule.as_deref().map(str::trim)
            && !pattern.is_empty()
            && let Err(e) = parse_cron(pattern)
        {
            return Err(value_error(
                "backups.schedule",
                pattern,
                &format!("is not a cron expression: {e}"),
                "five fields (minute hour day-of-month month day-of-week, UTC), e.g. \"0 3 * * *\" for 03:00 daily",
            ));
        }
        Ok(())
    }

    /// A path of the configuration, relative paths inside `data_dir`.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        self.data_dir.join(path)
    }

    /// Where backups are kept: `backups.dir`, else `<data_dir>/backups`.
    pub fn backups_dir(&self) -> PathBuf {
        self.data_path(self.backups.dir.as_deref().unwrap_or(Path::new("backups")))
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

fn docker_host_problem(host: &str) -> Option<&'static str> {
    if let Some(path) = host.strip_prefix("unix://") {
        return (!path.starts_with('/')).then_some("the socket path is not absolute");
    }
    match host.split_once("://") {
        Some(("tcp" | "http", rest)) if !rest.is_empty() => None,
        Some(("tcp" | "http", _)) => Some("no host:port after the scheme"),
        _ => Some("unsupported scheme"),
    }
}

fn value_error(
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

fn file_error(path: &Path, reason: &str) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
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
mod tests {
    use super::*;

    /// A project directory holding the two files the guide requires, inside a temporary directory.
    fn project_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("docker-compose.production.yml"),
            "services: {}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env.production"), "DEBUG=False\n").unwrap();
        dir
    }

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        // A private prefix per call, so tests never see each other's (or the machine's) variables.
        let prefix = format!("EPSM_OPS_TEST_{}_", std::process::id() ^ rand_suffix());
        for (k, v) in env {
            // SAFETY: each test uses its own variable names; nothing else reads them.
            unsafe { std::env::set_var(format!("{prefix}{k}"), v) };
        }
        Config::load_from(Some(file.path()), Env::prefixed(&prefix))
    }

    fn rand_suffix() -> u32 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(1);
        N.fetch_add(1, Ordering::Relaxed) << 20
    }

    fn base_toml(project: &Path, data: &Path) -> String {
        format!(
            "data_dir = {data:?}\n[project]\ndir = {project:?}\n",
            data = data.display().to_string(),
            project = project.display().to_string()
        )
    }

    #[test]
    fn file_values_override_defaults_and_environment_overrides_file() {
        let project = project_dir();
        let data = tempfile::tempdir().unwrap();
        let toml =
            base_toml(project.path(), data.path()) + "[docker]\nhost = \"tcp://127.0.0.1:2375\"\n";
        let config = load(
            &format!("listen = \"127.0.0.1:4000\"\n{toml}"),
            &[
                ("LISTEN", "127.0.0.1:5000"),
                ("PROJECT_NAME", "epsm-staging"),
            ],
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:5000".parse().unwrap());
        let sections = load(
            &toml,
            &[
                ("BACKUPS_KEEP_LAST", "1"),
                ("HEALTH_INTERVAL_SECS", "2"),
                ("DEPLOY_KEEP_IMAGES", "3"),
            ],
        )
        .unwrap();
        assert_eq!(sections.backups.keep_last, 1);
        assert_eq!(sections.health.interval_secs, 2);
        assert_eq!(sections.deploy.keep_images, 3);
        let git = load(
            &toml,
            &[
                ("PROJECT_GIT_BRANCH", "release"),
                ("PROJECT_GIT_REMOTE", "upstream"),
            ],
        )
        .unwrap();
        assert_eq!(git.project.git.branch, "release");
        assert_eq!(git.project.git.remote, "upstream");
        assert_eq!(git.project.git.timeout_secs, 120, "the default stays");
        assert_eq!(config.project.name.as_deref(), Some("epsm-staging"));
        assert_eq!(config.project_name(), "epsm-staging");
        assert_eq!(config.docker.host, "tcp://127.0.0.1:2375");
        assert_eq!(config.project.env_file, PathBuf::from(".env.production"));
        assert_eq!(
            config.compose_file(),
            project.path().join("docker-compose.production.yml")
        );
    }

    #[test]
    fn without_a_configured_name_the_directory_names_the_project_as_compose_would() {
        for (dir, want) in [
            ("epsm", "epsm"),
            ("EPSM Prod.2", "epsmprod2"),
            ("_epsm-x", "epsm-x"),
        ] {
            assert_eq!(normalize_project_name(dir), want, "{dir}");
        }
        let config = Config {
            project: ProjectConfig {
                dir: PathBuf::from("/opt/EPSM"),
                ..Config::default().project
            },
            ..Config::default()
        };
        assert_eq!(config.project.name, None);
        assert_eq!(config.project_name(), "epsm");
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/epsm-ops.toml")),
            Env::prefixed("X_"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration file /nonexistent/epsm-ops.toml: not found"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_the_keys_that_exist() {
        let project = project_dir();
        let data = tempfile::tempdir().unwrap();
        let toml = format!(
            "lisen = \"127.0.0.1:1\"\n{}",
            base_toml(project.path(), data.path())
        );
        let msg = load(&toml, &[]).unwrap_err().to_string();
        assert!(msg.contains("unknown field: found `lisen`"), "{msg}");
        assert!(msg.contains("`listen`"), "{msg}");
    }

    #[test]
    fn a_value_of_the_wrong_type_names_key_and_source() {
        let project = project_dir();
        let data = tempfile::tempdir().unwrap();
        let msg = load(
            &base_toml(project.path(), data.path()),
            &[("LISTEN", "not-an-address")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.starts_with("invalid socket address syntax for key \"LISTEN\""),
            "{msg}"
        );
        assert!(
            msg.contains("EPSM_OPS_TEST_"),
            "the variables it came from are named: {msg}"
        );
    }

    #[test]
    fn validation_names_key_problem_and_expectation() {
        let project = project_dir();
        let data = tempfile::tempdir().unwrap();
        let toml = base_toml(project.path(), data.path());
        let cases: &[(&str, &str, &str)] = &[
            (
                "PROJECT_NAME",
                "EPSM",
                "`project.name` = \"EPSM\": does not start with a lowercase letter",
            ),
            (
                "PROJECT_NAME",
                "epsm prod",
                "has a character compose does not allow",
            ),
            (
                "PROJECT_DIR",
                "/nonexistent/epsm",
                "`project.dir` = \"/nonexistent/epsm\": is not an existing directory",
            ),
            ("PROJECT_ENV_FILE", ".env", "`project.env_file`"),
            (
                "DOCKER_HOST",
                "unix://var/run/docker.sock",
                "the socket path is not absolute",
            ),
            (
                "DOCKER_HOST",
                "ssh://host",
                "`docker.host` = \"ssh://host\": unsupported scheme; expected unix://",
            ),
            ("PUBLIC_URL", "ftp://ops.example", "`public_url`"),
            (
                "BACKUPS_SCHEDULE",
                "0 25 * * *",
                "`backups.schedule` = \"0 25 * * *\": is not a cron expression",
            ),
        ];
        let open_key = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(
            open_key.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let open_key = open_key.path().display().to_string();
        let msg = load(&toml, &[("PROJECT_GIT_SSH_KEY", &open_key)])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`project.git.ssh_key`")
                && msg.contains("is readable by others (mode 644)"),
            "{msg}"
        );
        for (var, value, want) in cases {
            let msg = load(&toml, &[(var, value)]).unwrap_err().to_string();
            assert!(
                msg.contains(want),
                "{var}={value}: got {msg:?}, want {want:?}"
            );
        }
        // The development IdP logs anyone in: never on an address others can reach.
        let msg = load(
            &toml,
            &[("AUTH_DEV_IDP", "true"), ("LISTEN", "0.0.0.0:3000")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("`auth.dev_idp`")
                && msg.contains("only allowed when the console listens on loopback"),
            "{msg}"
        );
        // The IdP's keys come from its metadata: not over plain http unless asked for.
        let http = [("AUTH_IDP_METADATA", "http://idp.example.org/metadata.xml")];
        let msg = load(&toml, &http).unwrap_err().to_string();
        assert!(
            msg.contains("`auth.idp_metadata`") && msg.contains("is plain http"),
            "{msg}"
        );
        assert!(load(&toml, &[http[0], ("AUTH_ALLOW_HTTP_METADATA", "true")]).is_ok());
        // Nor behind a proxy that others reach: listening on loopback is the production shape.
        for public_url in [
            "https://127.0.0.1:3000/",
            "http://ops.epsm.chalmers.se/",
            "https://ops.epsm.chalmers.se/",
            "http://10.0.0.5:3000/",
        ] {
            let msg = load(
                &toml,
                &[("AUTH_DEV_IDP", "true"), ("PUBLIC_URL", public_url)],
            )
            .unwrap_err()
            .to_string();
            assert!(
                msg.contains("`auth.dev_idp`") && msg.contains("plain-http loopback"),
                "{public_url}: {msg}"
            );
        }
        for public_url in [
            "http://127.0.0.1:3000/",
            "http://localhost:3000/",
            "http://[::1]:3000/",
        ] {
            assert!(
                load(
                    &toml,
                    &[("AUTH_DEV_IDP", "true"), ("PUBLIC_URL", public_url)]
                )
                .is_ok(),
                "{public_url} is fine"
            );
        }
    }

    #[test]
    fn a_schedule_is_five_fields_or_six_with_seconds_and_the_backups_dir_follows_data_dir() {
        let project = project_dir();
        let data = tempfile::tempdir().unwrap();
        let toml = base_toml(project.path(), data.path());
        let none = load(&toml, &[("BACKUPS_SCHEDULE", " ")]).unwrap();
        assert!(none.backups.cron().is_none(), "blank: no schedule");
        assert_eq!(none.backups_dir(), data.path().join("backups"));
        let daily = load(&toml, &[("BACKUPS_SCHEDULE", "30 3 * * *")]).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T04:00:00Z")
            .unwrap()
            .to_utc();
        let next = daily
            .backups
            .cron()
            .unwrap()
            .find_next_occurrence(&now, false)
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-26T03:30:00+00:00");
        let seconds = load(
            &toml,
            &[
                ("BACKUPS_SCHEDULE", "*/2 * * * * *"),
                ("BACKUPS_DIR", "/srv/b"),
            ],
        )
        .unwrap();
        let next = seconds
            .backups
            .cron()
            .unwrap()
            .find_next_occurrence(&now, false)
            .unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-25T04:00:02+00:00");
        assert_eq!(seconds.backups_dir(), PathBuf::from("/srv/b"));
    }

    #[test]
    fn an_uncreatable_data_dir_is_a_clear_error() {
        let project = project_dir();
        let blocker = tempfile::NamedTempFile::new().unwrap();
        let data = blocker.path().join("data");
        let msg = load(&base_toml(project.path(), &data), &[])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("`data_dir`"), "{msg}");
        assert!(msg.contains("cannot be created"), "{msg}");
    }

    #[test]
    fn docker_host_defaults_to_docker_host_variable_then_local_socket() {
        assert_eq!(default_docker_host(Some("tcp://h:1".into())), "tcp://h:1");
        assert_eq!(
            default_docker_host(Some(" ".into())),
            "unix:///var/run/docker.sock"
        );
        assert_eq!(default_docker_host(None), "unix:///var/run/docker.sock");
    }

    #[test]
    fn the_example_config_file_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../epsm-ops.example.toml");
        let text = std::fs::read_to_string(&example).unwrap();
        let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(&text))
            .extract()
            .unwrap();
        assert_eq!(
            parsed.project.compose_file,
            PathBuf::from("docker-compose.production.yml")
        );
        assert_eq!(
            parsed.health.probes["celery_beat"],
            crate::health::probe::default_probe("celery_beat"),
            "probes are configured by kind"
        );
    }
}
