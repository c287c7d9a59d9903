//! The `docker compose` CLI as a child process, the way the deployment guide (and Komodo, Dockge)
//! runs it: `-f <compose file> --env-file <env file> -p <project>`, in a clean environment so nothing
//! from the console's own environment changes how compose interpolates the files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub mod process;

use crate::config::Config;
use crate::engine::{NameSource, SeenContainer};
use crate::environment::secrets::Scrubber;

/// The variables a compose child keeps from the console's environment; everything else is dropped
/// (compose lets the shell environment override the env file, which the guide's procedure never wants).
const KEPT_VARIABLES: &[&str] = &["PATH", "HOME", "DOCKER_CONFIG", "TMPDIR", "LANG"];

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot run `{program} compose`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("`docker compose {what}` failed (exit {code}): {stderr}")]
    Failed {
        what: String,
        code: String,
        stderr: String,
    },
    #[error("`docker compose {what}` did not finish within {} s", .after.as_secs())]
    Timeout { what: String, after: Duration },
    #[error("`docker compose {what}` printed what the console cannot read: {reason}")]
    Output { what: String, reason: String },
}

/// One compose project as the configuration names it.
#[derive(Debug, Clone)]
pub struct ComposeCli {
    pub program: PathBuf,
    /// The `-p` value; empty: none (compose names the project itself).
    pub project: String,
    pub dir: PathBuf,
    pub compose_file: PathBuf,
    pub env_file: PathBuf,
    pub docker_host: String,
}

/// What the console reads of `docker compose config`: the services, in the order the file lists them,
/// and each service's environment as compose resolves it now (values may be secrets: server only,
/// never serialized).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComposeModel {
    pub services: Vec<String>,
    /// Service -> variable -> value (None: declared without a value).
    pub environment: BTreeMap<String, BTreeMap<String, Option<String>>>,
    /// Service -> its fixed `container_name` (EPSM's file gives every service one).
    pub container_names: BTreeMap<String, String>,
    /// Service -> the host ports it publishes, as `127.0.0.1:8080/tcp` (`0.0.0.0` when no address).
    pub published: BTreeMap<String, Vec<String>>,
    /// Service -> the registry image it runs, for services with `image:` and no `build:`.
    pub registry_images: BTreeMap<String, String>,
}

impl ComposeCli {
    pub fn from_config(config: &Config) -> ComposeCli {
        // Compose runs in the project directory: relative paths would be read from there twice.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        ComposeCli {
            program: config.docker.cli.clone(),
            project: config.project_name(),
            dir: absolute(config.project.dir.clone()),
            compose_file: absolute(config.compose_file()),
            env_file: absolute(config.env_file()),
            docker_host: config.docker.host.clone(),
        }
    }

    /// `docker compose -f .. --env-file .. -p .. <args>` in the project directory, clean environment.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("compose")
            .arg("-f")
            .arg(&self.compose_file)
            .arg("--env-file")
            .arg(&self.env_file);
        if !self.project.is_empty() {
            cmd.arg("-p").arg(&self.project);
        }
        cmd.args(args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(
                KEPT_VARIABLES
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .env("DOCKER_HOST", &self.docker_host)
            // Bake needs buildx, which a plain engine host may not have; compose then says so on
            // every build. The classic path builds the same images.
            .env("COMPOSE_BAKE", "false")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs a short compose command to its end and returns its stdout; stderr (scrubbed) is the error.
    pub async fn output(
        &self,
        args: &[&str],
        timeout: Duration,
        scrubber: &Scrubber,
    ) -> Result<String, ComposeError> {
        run_to_end(
            self.command(args),
            &args.join(" "),
            &self.program,
            timeout,
            scrubber,
        )
        .await
    }

    /// `docker compose config --no-interpolate --format json` of a compose file's text (the file at
    /// another commit), read in the project directory: compose's own model of it, values left as
    /// `${VAR}`. Returns the JSON.
    pub async fn config_of_text(
        &self,
        text: &str,
        scrubber: &Scrubber,
    ) -> Result<String, ComposeError> {
        use tokio::io::AsyncWriteExt;
        let what = "config --no-interpolate (another commit's file)".to_string();
        let from_stdin = ComposeCli {
            compose_file: PathBuf::from("-"),
            ..self.clone()
        };
        let dir = self.dir.display().to_string();
        let mut child = from_stdin
            .command(&[
                "--project-directory",
                &dir,
                "config",
                "--no-interpolate",
                "--format",
                "json",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ComposeError::Spawn {
                program: self.program.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut stdin = child.stdin.take().ok_or_else(|| ComposeError::Output {
            what: what.clone(),
            reason: "no stdin".into(),
        })?;
        let text = text.to_string();
        // Written beside the wait: a big file must not block on a full pipe while compose writes.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
        });
        let timeout = Duration::from_secs(20);
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| ComposeError::Timeout {
                what: what.clone(),
                after: timeout,
            })?
            .map_err(|e| ComposeError::Spawn {
                program: self.program.display().to_string(),
                reason: e.to_string(),
            })?;
        let _ = writer.await;
        stdout_of(out, what, scrubber)
    }

    /// The project's services as compose resolves them (so an error in either file is compose's own
    /// sentence), ordered as the compose file lists them.
    pub async fn model(&self, scrubber: &Scrubber) -> Result<ComposeModel, ComposeError> {
        self.model_with_profiles(&[], scrubber).await
    }

    /// `model`, with the services of these profiles too.
    pub async fn model_with_profiles(
        &self,
        profiles: &[String],
        scrubber: &Scrubber,
    ) -> Result<ComposeModel, ComposeError> {
        let mut args: Vec<&str> = profiles
            .iter()
            .flat_map(|p| ["--profile", p.as_str()])
            .collect();
        args.extend(["config", "--format", "json"]);
        let json = self
            .output(&args, Duration::from_secs(20), scrubber)
            .await?;
        let text = std::fs::read_to_string(&self.compose_file).unwrap_or_default();
        parse_model(&json, &text).map_err(|reason| ComposeError::Output {
            what: "config --format json".into(),
            reason,
        })
    }
}

/// Runs a short compose command to its end and returns its stdout; stderr (scrubbed) is the error.
async fn run_to_end(
    mut command: tokio::process::Command,
    what: &str,
    program: &std::path::Path,
    timeout: Duration,
    scrubber: &Scrubber,
) -> Result<String, ComposeError> {
    let what = what.to_string();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Err(_) => {
            return Err(ComposeError::Timeout {
                what,
                after: timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(ComposeError::Spawn {
                program: program.display().to_string(),
                reason: e.to_string(),
            });
        }
        Ok(Ok(out)) => out,
    };
    stdout_of(out, what, scrubber)
}

/// A finished compose command's stdout, or its exit code and scrubbed stderr as the error.
fn stdout_of(
    out: std::process::Output,
    what: String,
    scrubber: &Scrubber,
) -> Result<String, ComposeError> {
    if !out.status.success() {
        return Err(ComposeError::Failed {
            what,
            code: out
                .status
                .code()
                .map_or_else(|| "by signal".into(), |c| c.to_string()),
            stderr: scrubber.scrub(String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| ComposeError::Output {
        what,
        reason: "not UTF-8".into(),
    })
}

/// The services of `docker compose config --format json`, in the order `compose_text` names them
/// (compose prints them sorted; operators read them in the order they wrote them).
pub fn parse_model(json: &str, compose_text: &str) -> Result<ComposeModel, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON ({e})"))?;
    let services = value
        .get("services")
        .and_then(|s| s.as_object())
        .ok_or("no `services` object")?;
    let mut names: Vec<String> = services.keys().cloned().collect();
    names.sort_by_key(|name| (position_in(compose_text, name), name.clone()));
    let environment = services
        .iter()
        .map(|(name, service)| {
            let vars = service
                .get("environment")
                .and_then(|e| e.as_object())
                .map(|vars| {
                    vars.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(String::from)))
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), vars)
        })
        .collect();
    let container_names = services
        .iter()
        .filter_map(|(name, service)| {
            Some((
                name.clone(),
                service.get("container_name")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let published = services
        .iter()
        .map(|(name, service)| {
            let ports = service
                .get("ports")
                .and_then(|p| p.as_array())
                .map(|ports| ports.iter().filter_map(published_port).collect())
                .unwrap_or_default();
            (name.clone(), ports)
        })
        .filter(|(_, ports): &(String, Vec<String>)| !ports.is_empty())
        .collect();
    let registry_images = services
        .iter()
        .filter(|(_, service)| service.get("build").is_none())
        .filter_map(|(name, service)| {
            Some((name.clone(), service.get("image")?.as_str()?.to_string()))
        })
        .collect();
    Ok(ComposeModel {
        services: names,
        environment,
        container_names,
        published,
        registry_images,
    })
}

/// One `ports` entry of compose's JSON as `host_ip:published/protocol`; None when nothing is published
/// on the host.
fn published_port(port: &serde_json::Value) -> Option<String> {
    let published = match port.get("published")? {
        serde_json::Value::String(p) if !p.is_empty() => p.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ip = port
        .get("host_ip")
        .and_then(|i| i.as_str())
        .filter(|i| !i.is_empty())
        .unwrap_or("0.0.0.0");
    let protocol = port
        .get("protocol")
        .and_then(|p| p.as_str())
        .unwrap_or("tcp");
    Some(format!("{ip}:{published}/{protocol}"))
}

/// Whether two published host ports take the same port: the same port and protocol where one of the
/// addresses is the other or the wildcard.
pub fn ports_collide(a: &str, b: &str) -> bool {
    let split = |p: &str| -> Option<(String, String)> {
        let (ip, rest) = p.rsplit_once(':')?;
        Some((ip.trim_matches(['[', ']']).to_string(), rest.to_string()))
    };
    match (split(a), split(b)) {
        (Some((ip_a, port_a)), Some((ip_b, port_b))) => {
            let wildcard = |ip: &str| matches!(ip, "0.0.0.0" | "::" | "");
            port_a == port_b && (ip_a == ip_b || wildcard(&ip_a) || wildcard(&ip_b))
        }
        _ => false,
    }
}

impl ComposeModel {
    /// The containers that stand for one of this project's services under another compose project
    /// name (or none): same service from the same directory, or the service's fixed `container_name`.
    /// What a console pointed at the wrong name would otherwise call "missing".
    pub fn held_elsewhere<'a>(
        &self,
        project: &str,
        dir: &std::path::Path,
        containers: &'a [SeenContainer],
    ) -> Vec<(String, &'a SeenContainer)> {
        let dir = dir.display().to_string();
        self.services
            .iter()
            .filter_map(|service| {
                let held = containers.iter().find(|c| {
                    c.project.as_deref() != Some(project)
                        && ((c.service.as_deref() == Some(service.as_str())
                            && c.working_dir.as_deref() == Some(dir.as_str()))
                            || self.container_names.get(service) == Some(&c.name))
                })?;
                Some((service.clone(), held))
            })
            .collect()
    }

    /// What would make `up` of this project fail on containers of other projects: a fixed
    /// `container_name` another container has, or a host port a running container publishes. One
    /// sentence each, naming the container and its project.
    pub fn collisions(&self, project: &str, containers: &[SeenContainer]) -> Vec<String> {
        let owner = |c: &SeenContainer| match &c.project {
            Some(p) => format!("container {} of compose project {p}", c.name),
            None => format!("container {} (not started by compose)", c.name),
        };
        let others = || {
            containers
                .iter()
                .filter(move |c| c.project.as_deref() != Some(project))
        };
        let mut found = Vec::new();
        for (service, name) in &self.container_names {
            if let Some(c) = others().find(|c| &c.name == name) {
                found.push(format!(
                    "service {service}: its container name {name} is taken by {}",
                    owner(c)
                ));
            }
        }
        for (service, ports) in &self.published {
            for port in ports {
                if let Some(c) = others()
                    .filter(|c| c.state == "running")
                    .find(|c| c.ports.iter().any(|p| ports_collide(p, port)))
                {
                    found.push(format!(
                        "service {service}: host port {port} is published by {}",
                        owner(c)
                    ));
                }
            }
        }
        found
    }
}

/// The project's name as compose gives it to the files when nobody passes `-p`, and where it came from:
/// `project.name` when configured; else compose's own rule, read from `docker compose config` run
/// without `-p` (COMPOSE_PROJECT_NAME of the console's environment, then of the env file, then the
/// compose file's `name:`, then the directory). When compose cannot say (a broken file, no CLI), the
/// same rule over the files as the console reads them, and the reason in the third field.
pub async fn resolve_project_name(
    config: &Config,
    scrubber: &Scrubber,
) -> (String, NameSource, Option<String>) {
    if let Some(name) = &config.project.name {
        return (name.clone(), NameSource::Configuration, None);
    }
    let process = std::env::var("COMPOSE_PROJECT_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty());
    let env_file = crate::environment::disk::env_values(config)
        .remove("COMPOSE_PROJECT_NAME")
        .filter(|n| !n.trim().is_empty());
    let compose_text = std::fs::read_to_string(config.compose_file()).unwrap_or_default();
    let source = if process.is_some() {
        NameSource::ConsoleEnvironment
    } else if env_file.is_some() {
        NameSource::EnvFile
    } else if top_level_name(&compose_text).is_some() {
        NameSource::ComposeFile
    } else {
        NameSource::Directory
    };
    let mut cli = ComposeCli::from_config(config);
    cli.project = String::new();
    let mut command = cli.command(&["config", "--format", "json"]);
    if let Some(name) = &process {
        command.env("COMPOSE_PROJECT_NAME", name);
    }
    let asked = run_to_end(
        command,
        "config --format json",
        &cli.program,
        Duration::from_secs(20),
        scrubber,
    )
    .await
    .and_then(|json| {
        serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v.get("name")?.as_str().map(String::from))
            .filter(|n| !n.is_empty())
            .ok_or(ComposeError::Output {
                what: "config --format json".into(),
                reason: "no project name in it".into(),
            })
    });
    match asked {
        Ok(name) => (name, source, None),
        Err(e) => {
            let name = process
                .or(env_file)
                .or_else(|| top_level_name(&compose_text))
                .map(|n| crate::config::normalize_project_name(&n))
                .unwrap_or_else(|| config.project_name());
            (name, source, Some(e.to_string()))
        }
    }
}

/// The compose file's top-level `name:` when it is written out (not interpolated).
fn top_level_name(compose_text: &str) -> Option<String> {
    compose_text.lines().find_map(|line| {
        let value = line.strip_prefix("name:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty() && !value.contains('$')).then(|| value.to_string())
    })
}

/// Where a service's key (`  name:` at the start of a line) first appears, or the end.
fn position_in(text: &str, name: &str) -> usize {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indented = trimmed.len() < line.len();
        let key = trimmed
            .trim_end()
            .strip_suffix(':')
            .map(|k| k.trim_matches(|c| c == '"' || c == '\''));
        if indented && key == Some(name) {
            return offset;
        }
        offset += line.len();
    }
    usize::MAX
}

#[cfg(test)]
mod tests;
