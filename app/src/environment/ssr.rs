//! Reading a compose project from disk for the audit: the env file (text and mode), the compose
//! file's references, and the retired files beside them. Everything else is the pure rules' work.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use super::audit::{AuditInput, audit, compose_references};
use super::disk::{FileStamp, file_sha256, stamp};
use super::envfile::{EnvFile, parse};
use super::secrets::Masker;
use super::{EnvironmentReport, Finding, Severity, Variable};
use crate::config::Config;
use crate::engine::ssr::Engine;
use crate::health::ssr::HealthMonitor;
use crate::store::Store;

/// The Environment page's content: every variable masked, and the audit's findings.
pub fn environment_report(
    config: &Config,
    masker: &Masker,
) -> Result<EnvironmentReport, AuditError> {
    let (compose_file, env_file) = (&config.project.compose_file, &config.project.env_file);
    let parts = super::secrets::secret_name_parts(&config.secrets.extra_name_parts);
    let ProjectAudit { findings, env } =
        audit_project(&config.project.dir, compose_file, env_file, &parts)?;
    // A file that does not parse has no variables to show: its syntax finding says why.
    let mut variables: Vec<Variable> = env.map_or_else(Vec::new, |env| {
        env.resolved()
            .into_iter()
            .map(|(key, value)| Variable {
                key: key.to_string(),
                line: env.last(key).map_or(0, |e| e.line),
                value: masker.mask(key, value),
                secret_kind: masker.classify(key, value),
            })
            .collect()
    });
    variables.sort_by_key(|v| v.line);
    Ok(EnvironmentReport {
        checked_at: chrono::Utc::now(),
        env_file: config.env_file().display().to_string(),
        compose_file: config.compose_file().display().to_string(),
        variables,
        findings,
    })
}

/// Files the deployment guide retired; their presence is a finding.
const RETIRED: &[&str] = &[
    ".env",
    "docker-compose.prod.yml",
    "docker-compose.yml",
    "docker-compose.production.yml.bak",
];

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

impl From<AuditError> for crate::error::AppError {
    fn from(e: AuditError) -> Self {
        crate::error::AppError::Unavailable(e.to_string())
    }
}

/// What auditing a project found, and the env file it read (None when it does not parse).
pub struct ProjectAudit {
    pub findings: Vec<Finding>,
    pub env: Option<EnvFile>,
}

/// Audits the project in `dir` whose compose and env files are `compose_file` and `env_file`
/// (relative to `dir` unless absolute). The env file is parsed in an empty environment, as the
/// deploy runs compose. A file that does not parse is an error-level finding with its line.
pub fn audit_project(
    dir: &Path,
    compose_file: &Path,
    env_file: &Path,
    secret_name_parts: &[String],
) -> Result<ProjectAudit, AuditError> {
    let (compose_path, env_path) = (dir.join(compose_file), dir.join(env_file));
    let compose_text = read(&compose_path)?;
    let env_text = read(&env_path)?;
    let env_name = env_file.display().to_string();
    let compose_name = compose_file.display().to_string();
    let mode = std::fs::metadata(&env_path)
        .ok()
        .map(|m| m.permissions().mode());
    let retired: Vec<String> = RETIRED
        .iter()
        .filter(|name| Path::new(name) != compose_file && dir.join(name).exists())
        .map(|name| name.to_string())
        .collect();
    let (env, syntax) = match parse(&env_text, &|_| None) {
        Ok(env) => (env, None),
        Err(e) => (
            EnvFile::default(),
            Some(Finding {
                severity: Severity::Error,
                rule: "env-file-syntax".into(),
                key: String::new(),
                file: env_name.clone(),
                line: Some(e.line),
                message: format!("compose cannot read this file: {}", e.reason),
                fix: "correct the line (quotes must be closed; keys are letters, digits, _ . -)"
                    .into(),
            }),
        ),
    };
    let references = compose_references(&compose_text);
    let mut findings = audit(&AuditInput {
        env: &env,
        env_file_name: &env_name,
        compose: &references,
        compose_file_name: &compose_name,
        env_file_mode: mode,
        retired_files: &retired,
        secret_name_parts,
        env_file_in_git: env_file_in_git(dir, env_file),
    });
    let env = match syntax {
        Some(syntax) => {
            // Without the file's values, the value rules would only repeat "missing": keep the file facts.
            findings.retain(|f| f.key.is_empty());
            findings.insert(0, syntax);
            None
        }
        None => Some(env),
    };
    Ok(ProjectAudit { findings, env })
}

/// How the project's git checkout holds the env file (two quick git commands; None when the directory
/// is not a git checkout or git is not there).
fn env_file_in_git(dir: &Path, env_file: &Path) -> Option<super::audit::GitTracking> {
    use super::audit::GitTracking;
    let command = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        cmd.arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    // Only the project's own repository counts, not one the directory happens to sit in (the bundled
    // stack inside this repository, say).
    let top = command(&["rev-parse", "--show-toplevel"]).output().ok()?;
    let top = String::from_utf8_lossy(&top.stdout);
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    if !top.trim().is_empty() && canonical(Path::new(top.trim())) != canonical(dir) {
        return None;
    }
    let git = |args: &[&str]| {
        command(args)
            .arg(env_file)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()
    };
    // `ls-files --error-unmatch` exits 1 for an untracked file, 128 outside a repository.
    match git(&["ls-files", "--error-unmatch", "--"])?.code()? {
        0 => Some(GitTracking::Tracked),
        1 => match git(&["check-ignore", "--quiet", "--"])?.code()? {
            0 => Some(GitTracking::Ignored),
            1 => Some(GitTracking::NotIgnored),
            _ => None,
        },
        _ => None,
    }
}

fn read(path: &Path) -> Result<String, AuditError> {
    std::fs::read_to_string(path).map_err(|e| AuditError::Read {
        path: path.display().to_string(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            std::io::ErrorKind::InvalidData => "not UTF-8 text".into(),
            _ => e.to_string(),
        },
    })
}

/// The environment audit as a service: the files' audit (blocking file reads, on a blocking thread)
/// and the drift against the running containers and the last successful deploy.
///
/// The audit costs child processes (`docker compose config`, git) and engine calls, so it is made
/// once per change of what it reads and kept: a page view compares a few file stamps and the
/// containers the health monitor last saw, and answers from memory while they are the same (for at
/// most `project.recheck_secs`; the report says when it was made).
pub struct EnvironmentAudit {
    config: Arc<Config>,
    masker: Arc<Masker>,
    engine: Arc<Engine>,
    store: Store,
    health: Arc<HealthMonitor>,
    /// The last report and what it was made from. Held while a new one is made, so concurrent views
    /// wait for that one instead of each making their own.
    kept: tokio::sync::Mutex<Option<Kept>>,
}

struct Kept {
    inputs: Inputs,
    made: std::time::Instant,
    report: EnvironmentReport,
}

/// What the audit read, as cheaply as it can be compared: the stat of each file (a change of
/// content, mode or the file itself shows), and each service's container.
#[derive(Debug, PartialEq, Eq)]
struct Inputs {
    files: Vec<Option<FileStamp>>,
    containers: Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)>,
}

impl EnvironmentAudit {
    pub fn new(
        config: Arc<Config>,
        masker: Arc<Masker>,
        engine: Arc<Engine>,
        store: Store,
        health: Arc<HealthMonitor>,
    ) -> Arc<EnvironmentAudit> {
        Arc::new(EnvironmentAudit {
            config,
            masker,
            engine,
            store,
            health,
            kept: tokio::sync::Mutex::new(None),
        })
    }

    /// What the report depends on that a stat or memory can tell: the env and compose files, the
    /// retired files beside them, the git index and ignore file (whether the env file is tracked), and
    /// the container of each service as the health monitor last saw it.
    fn inputs(&self) -> Inputs {
        let dir = &self.config.project.dir;
        let mut paths = vec![self.config.env_file(), self.config.compose_file()];
        paths.extend(RETIRED.iter().map(|name| dir.join(name)));
        paths.extend([dir.join(".git/index"), dir.join(".gitignore")]);
        let report = self.health.latest();
        Inputs {
            files: paths.iter().map(|p| stamp(p)).collect(),
            containers: report
                .services
                .iter()
                .filter_map(|s| {
                    let c = s.container.as_ref()?;
                    Some((s.name.clone(), c.id.clone(), c.started_at))
                })
                .collect(),
        }
    }

    /// The Environment page's report: the kept one while nothing it read changed and it is younger
    /// than `project.recheck_secs`, else a new one.
    pub async fn report(&self) -> Result<EnvironmentReport, AuditError> {
        let inputs = self.inputs();
        let mut kept = self.kept.lock().await;
        if let Some(k) = kept.as_ref()
            && k.inputs == inputs
            && k.made.elapsed() < std::time::Duration::from_secs(self.config.project.recheck_secs)
        {
            return Ok(k.report.clone());
        }
        let report = self.make_report().await?;
        *kept = Some(Kept {
            inputs,
            made: std::time::Instant::now(),
            report: report.clone(),
        });
        Ok(report)
    }

    /// The files' findings and variables, then the drift findings, read now.
    async fn make_report(&self) -> Result<EnvironmentReport, AuditError> {
        let (config, masker) = (self.config.clone(), self.masker.clone());
        let mut report = tokio::task::spawn_blocking(move || environment_report(&config, &masker))
            .await
            .map_err(|e| AuditError::Read {
                path: self.config.env_file().display().to_string(),
                reason: format!("the audit did not finish: {e}"),
            })??;
        report.findings.extend(self.drift_findings().await);
        Ok(report)
    }

    /// Drift findings: running containers whose environment differs from what the files resolve to
    /// now, and an env file changed since the last successful deploy. Needs the engine and the
    /// store; when either cannot answer there is simply nothing to compare (the Health page says
    /// why).
    pub async fn drift_findings(&self) -> Vec<Finding> {
        let config = &self.config;
        let compose_name = config.project.compose_file.display().to_string();
        let env_name = config.project.env_file.display().to_string();
        let mut findings = Vec::new();
        let scrubber = super::secrets::Scrubber::new(&[]);
        if let Ok(model) = crate::compose::ComposeCli::from_config(config)
            .model(&scrubber)
            .await
        {
            for service in &model.services {
                let Ok(Some(id)) = self
                    .engine
                    .service_container(&config.project_name(), service)
                    .await
                else {
                    continue;
                };
                let Ok(inspect) = self.engine.inspect_container(&id).await else {
                    continue;
                };
                let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
                let running = env.iter().filter_map(|kv| kv.split_once('=')).collect();
                if let Some(declared) = model.environment.get(service) {
                    findings.extend(super::drift::container_drift(
                        service,
                        &compose_name,
                        declared,
                        &running,
                    ));
                }
            }
        }
        let now = file_sha256(&config.env_file());
        if let Ok(last) = self.store.last_succeeded_deploy_env().await {
            findings.extend(super::drift::changed_since_deploy(
                &env_name,
                now.as_deref(),
                last.as_ref().map(|(id, sha)| (*id, sha.as_deref())),
            ));
        }
        findings
    }
}
