//! The sections of the configuration file, each a typed struct with its defaults documented on its
//! fields (`[project]`, `[docker]`, `[health]`, `[deploy]`, `[secrets]`, `[backups]`, `[auth]`,
//! `[audit]`, `[limits]`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use url::Url;

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
    /// The services a restore stops while it replaces the database (those that write to it), started
    /// again afterwards.
    pub restore_stop_services: Vec<String>,
    /// A cron expression (UTC) for restore drills of the newest backup; unset or empty: none.
    pub drill_schedule: Option<String>,
    /// Where each verified backup is copied off the host: an rclone remote and path
    /// (`offsite:epsm-backups`); unset or empty: no copy.
    pub copy_to: Option<String>,
    /// rclone's own configuration file, which holds the remote and its credentials (mode 0600);
    /// unset: `<data_dir>/rclone.conf`.
    pub rclone_config: Option<PathBuf>,
}

impl BackupsConfig {
    /// The parsed schedule, if one is set (validated at load, so a set one parses).
    pub fn cron(&self) -> Option<croner::Cron> {
        set_cron(&self.schedule)
    }

    /// The off-site target (`remote:path`), if one is set.
    pub fn copy_target(&self) -> Option<&str> {
        self.copy_to
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The parsed drill schedule, if one is set (validated at load too).
    pub fn drill_cron(&self) -> Option<croner::Cron> {
        set_cron(&self.drill_schedule)
    }
}

fn set_cron(pattern: &Option<String>) -> Option<croner::Cron> {
    let pattern = pattern
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())?;
    parse_cron(pattern).ok()
}

/// Five-field cron, or six with seconds first; `@daily` and the like too.
pub(super) fn parse_cron(pattern: &str) -> Result<croner::Cron, croner::errors::CronError> {
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
    /// Seconds the environment audit is kept while the files and containers it read are unchanged
    /// (what a file stamp cannot see, such as a file compose includes, shows after this long).
    pub recheck_secs: u64,
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
    /// The Celery worker service drained before the switch (it stops taking tasks and the deploy waits
    /// for the running ones); empty: no drain.
    pub worker_service: String,
    /// The Celery app of `celery -A <app>` in that service.
    pub celery_app: String,
    /// Seconds the drain waits for running tasks before the switch goes ahead (EPSM's
    /// `SIMULATION_TIMEOUT`).
    pub drain_timeout_secs: u64,
    /// The service that publishes the public ports (nginx): recreated last, after the new version has
    /// migrated, while a maintenance page answers on its ports; empty: no maintenance page.
    pub public_service: String,
    /// For a TLS port of the public service (443), the certificate and key as paths inside its
    /// container (the maintenance page gets the same mounts); unset: that port is not answered during
    /// the switch.
    pub maintenance_tls_certificate: Option<String>,
    pub maintenance_tls_key: Option<String>,
}

/// The health monitor: how often it looks, how long a probe may take, and the probes themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between probe rounds (a container event also starts one at once).
    pub interval_secs: u64,
    /// Seconds one probe may take before it counts as timed out.
    pub probe_timeout_secs: u64,
    /// Probes timed out in a row before a running service counts as down (fewer: degraded).
    pub probe_timeouts_before_down: u32,
    /// Seconds between reads of the engine's disk usage (`docker system df` is expensive).
    pub disk_usage_interval_secs: u64,
    /// Deep probes by service name, replacing the guide's default for that service
    /// (see `crate::health::probe::default_probe`).
    pub probes: std::collections::BTreeMap<String, crate::health::probe::Probe>,
}

/// When alerts are sent, and where (`[alerts]` and `[[alerts.channels]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How long a service must be down or missing before it is alerted (0: at once).
    pub grace_secs: u64,
    /// A reminder this often while it stays down (0: none).
    pub repeat_minutes: u64,
    /// The backups' disk is alerted when less than this share of it is free (0: never).
    pub disk_free_percent: u8,
    /// Attempts to deliver a message before it is given up (and shown on the Overview); retries
    /// wait 30 s, then twice as long each time, at most an hour.
    pub attempts: u32,
    pub channels: Vec<ChannelConfig>,
}

/// How a channel is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Mail over SMTP.
    Email,
    /// A Microsoft Teams Workflows (or incoming webhook) URL: an Adaptive Card.
    Teams,
    /// A Slack-compatible incoming webhook.
    Slack,
    /// Any URL: the message as JSON, signed with HMAC-SHA256.
    Webhook,
}

/// How a mail channel talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587), required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a relay on the host or in its network only).
    None,
}

/// One channel. Secrets are never in this file: a password, a webhook URL (its path is the
/// credential) and a signing secret are each read from a file of their own, private (0600) like
/// every secret the console holds, and scrubbed from every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Its name in the outbox and on the Notifications page.
    pub name: String,
    pub kind: ChannelKind,
    /// The event kinds it gets (`service_down`, `deploy_ended`, ...); empty: all.
    #[serde(default)]
    pub events: Vec<crate::alerts::EventKind>,
    /// The least severity it gets.
    #[serde(default = "info")]
    pub min_severity: crate::alerts::Severity,
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// teams, slack, webhook: the file holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// webhook: the file holding the HMAC secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

fn info() -> crate::alerts::Severity {
    crate::alerts::Severity::Info
}

impl ChannelConfig {
    /// What this channel lacks for its kind, if anything.
    pub fn problem(&self) -> Option<String> {
        let missing = |what: &str| Some(format!("a {:?} channel needs {what}", self.kind));
        match self.kind {
            ChannelKind::Email => {
                if self
                    .smtp_host
                    .as_deref()
                    .is_none_or(|h| h.trim().is_empty())
                {
                    return missing("smtp_host");
                }
                if self.from.as_deref().is_none_or(|f| !f.contains('@')) {
                    return missing("from (an address)");
                }
                if self.to.is_empty() || self.to.iter().any(|t| !t.contains('@')) {
                    return missing("to (one address or more)");
                }
                if self.username.is_some() != self.password_file.is_some() {
                    return missing("both username and password_file, or neither");
                }
                None
            }
            ChannelKind::Teams | ChannelKind::Slack => self
                .url_file
                .is_none()
                .then(|| missing("url_file"))
                .flatten(),
            ChannelKind::Webhook => {
                if self.url_file.is_none() {
                    return missing("url_file");
                }
                self.secret_file
                    .is_none()
                    .then(|| missing("secret_file (its body is signed)"))
                    .flatten()
            }
        }
    }

    /// The secret files it reads.
    pub fn secret_files(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.password_file, &self.url_file, &self.secret_file]
            .into_iter()
            .flatten()
    }
}
