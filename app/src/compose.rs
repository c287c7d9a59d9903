//! The `docker compose` CLI as a child process, the way the deployment guide (and Komodo, Dockge)
//! runs it: `-f <compose file> --env-file <env file> -p <project>`, in a clean environment so nothing
//! from the console's own environment changes how compose interpolates the files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::config::Config;
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
    pub project: String,
    pub dir: PathBuf,
    pub compose_file: PathBuf,
    pub env_file: PathBuf,
    pub docker_host: String,
}

/// What the console reads of `docker compose config`: the services, in the order the file lists them,
/// and each service's environment as compose resolves it now (values may be secrets: server only,
/// never serialized).
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeModel {
    pub services: Vec<String>,
    /// Service -> variable -> value (None: declared without a value).
    pub environment: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl ComposeCli {
    pub fn from_config(config: &Config) -> ComposeCli {
        // Compose runs in the project directory: relative paths would be read from there twice.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        ComposeCli {
            program: config.docker.cli.clone(),
            project: config.project.name.clone(),
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
            .arg(&self.env_file)
            .arg("-p")
            .arg(&self.project)
            .args(args)
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
        let what = args.join(" ");
        let child = self
            .command(args)
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
                    program: self.program.display().to_string(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(ComposeError::Failed {
                what,
                code: out
                    .status
                    .code()
                    .map_or_else(|| "by signal".into(), |c| c.to_string()),
                stderr: scrubber.scrub(stderr.trim()),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| ComposeError::Output {
            what,
            reason: "not UTF-8".into(),
        })
    }

    /// The project's services as compose resolves them (so an error in either file is compose's own
    /// sentence), ordered as the compose file lists them.
    pub async fn model(&self, scrubber: &Scrubber) -> Result<ComposeModel, ComposeError> {
        let json = self
            .output(
                &["config", "--format", "json"],
                Duration::from_secs(20),
                scrubber,
            )
            .await?;
        let text = std::fs::read_to_string(&self.compose_file).unwrap_or_default();
        parse_model(&json, &text).map_err(|reason| ComposeError::Output {
            what: "config --format json".into(),
            reason,
        })
    }
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
    Ok(ComposeModel {
        services: names,
        environment,
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
mod tests {
    use super::*;

    #[test]
    fn services_come_in_the_order_the_file_lists_them() {
        let json = r#"{"name":"epsm","services":{"backend":{"environment":{"A":"1","B":null}},"database":{},"nginx":{},"redis":{},"zz":{}}}"#;
        let text = "services:\n  database:\n    image: x\n  redis:\n    image: y\n  \"backend\":\n  nginx:\n";
        let model = parse_model(json, text).unwrap();
        assert_eq!(
            model.services,
            ["database", "redis", "backend", "nginx", "zz"]
        );
    }

    #[test]
    fn output_that_is_not_a_compose_model_is_an_error() {
        assert!(
            parse_model("not json", "")
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert_eq!(parse_model("{}", "").unwrap_err(), "no `services` object");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error_with_its_name() {
        let cli = ComposeCli {
            program: "/nonexistent/docker".into(),
            project: "p".into(),
            dir: std::env::temp_dir(),
            compose_file: "c.yml".into(),
            env_file: ".env".into(),
            docker_host: "unix:///x".into(),
        };
        let err = cli
            .model(&Scrubber::new(&[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot run `/nonexistent/docker compose`"),
            "{err}"
        );
    }
}
