//! The one connection to the Docker engine (bollard). Connects lazily and again after a failure, so an
//! engine that starts after the console is found; every failure is a sentence an operator can act on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage, ImageInspect};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, LogsOptions};
use futures::{Stream, StreamExt};

use super::SeenContainer;
use super::{EngineInfo, EngineState, EngineStatus};

mod containers;
mod errors;
mod exec;
mod images;

use errors::{call_error, describe};
pub use exec::ExecOutput;

/// How long one call to the engine may take before the console says it does not answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// For calls that do real work on the engine (prunes): minutes, not seconds.
const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Output kept per stream of one exec; more is cut (and said to be cut).
const EXEC_OUTPUT_LIMIT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine not reachable at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("Docker engine at {endpoint}: {what}: {reason}")]
    Call {
        endpoint: String,
        what: String,
        reason: String,
    },
    #[error("{what}: no answer within {} s", .after.as_secs())]
    Timeout { what: String, after: Duration },
}

impl From<EngineError> for crate::error::AppError {
    fn from(e: EngineError) -> Self {
        crate::error::AppError::Unavailable(e.to_string())
    }
}

pub struct Engine {
    endpoint: String,
    client: Mutex<Option<Docker>>,
    /// Requests made to the engine since start (what the health benchmark counts per probe round).
    calls: AtomicU64,
}

/// Compose's labels on every container it creates.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";

impl Engine {
    /// Does not touch the engine: the first call connects.
    pub fn new(endpoint: impl Into<String>) -> Engine {
        Engine {
            endpoint: endpoint.into(),
            client: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Requests made to the engine so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self, calls: u64) {
        self.calls.fetch_add(calls, Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A connected client whose API version is agreed with the engine (an old engine, such as Debian's
    /// 20.10 with API 1.41, refuses requests made with a newer version).
    pub async fn client(&self) -> Result<Docker, EngineError> {
        if let Some(docker) = self.client.lock().expect("engine lock").clone() {
            return Ok(docker);
        }
        let docker = Docker::connect_with_host(&self.endpoint).map_err(|e| self.unreachable(&e))?;
        let docker = self
            .bounded(
                "version negotiation",
                CALL_TIMEOUT,
                docker.negotiate_version(),
            )
            .await?
            .map_err(|e| self.unreachable(&e))?;
        *self.client.lock().expect("engine lock") = Some(docker.clone());
        Ok(docker)
    }

    /// Reachability and version, as the UI shows it. Never an error: an unreachable engine is a state.
    pub async fn status(&self) -> EngineStatus {
        let state = match self.info().await {
            Ok(info) => EngineState::Reachable(info),
            Err(e) => {
                // Forget the connection: the next call connects (and negotiates) afresh.
                *self.client.lock().expect("engine lock") = None;
                EngineState::Unreachable {
                    reason: e.to_string(),
                }
            }
        };
        EngineStatus {
            endpoint: self.endpoint.clone(),
            state,
        }
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let docker = self.client().await?;
        let v = self
            .bounded("version", CALL_TIMEOUT, docker.version())
            .await?
            .map_err(|e| self.unreachable(&e))?;
        Ok(EngineInfo {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
            kernel_version: v.kernel_version.unwrap_or_default(),
        })
    }

    /// Every container of a compose project (by compose's labels), running or not, one-off runs
    /// (`compose run`) left out.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let label = format!("{PROJECT_LABEL}={project}");
        let list = self.list_containers(Some(label)).await?;
        Ok(list
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(ONEOFF_LABEL))
                    .is_none_or(|v| v != "True")
            })
            .collect())
    }

    /// Every container on the engine, running or not, as the project checks read them (which other
    /// projects hold a service's name or a port).
    pub async fn all_containers(&self) -> Result<Vec<SeenContainer>, EngineError> {
        let list = self.list_containers(None).await?;
        Ok(list.into_iter().map(seen_container).collect())
    }

    /// The engine's container list, running or not, with this label filter if one is given.
    async fn list_containers(
        &self,
        label: Option<String>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let docker = self.client().await?;
        let options = ListContainersOptions {
            all: true,
            filters: label.map(|l| [("label".to_string(), vec![l])].into()),
            ..Default::default()
        };
        self.request(
            "list containers",
            CALL_TIMEOUT,
            docker.list_containers(Some(options)),
        )
        .await
    }

    /// The container of a compose service, running or not.
    pub async fn service_container(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<String>, EngineError> {
        let mut list = self.project_containers(project).await?;
        list.sort_by(|a, b| a.names.cmp(&b.names));
        Ok(list.into_iter().find_map(|c| {
            let labels = c.labels.as_ref()?;
            (labels.get(SERVICE_LABEL)? == service).then_some(c.id?)
        }))
    }

    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<ContainerInspectResponse, EngineError> {
        let docker = self.client().await?;
        let what = format!("inspect container {}", short_id(id));
        self.request(&what, CALL_TIMEOUT, docker.inspect_container(id, None))
            .await
    }

    pub async fn inspect_image(&self, id: &str) -> Result<ImageInspect, EngineError> {
        let docker = self.client().await?;
        let what = format!(
            "inspect image {}",
            short_id(id.trim_start_matches("sha256:"))
        );
        self.request(&what, CALL_TIMEOUT, docker.inspect_image(id))
            .await
    }

    /// The engine's container events for one compose project, as they happen (one long request).
    pub async fn project_events(
        &self,
        project: &str,
    ) -> Result<impl Stream<Item = Result<EventMessage, EngineError>> + use<>, EngineError> {
        let docker = self.client().await?;
        self.count(1);
        let filters = [
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{PROJECT_LABEL}={project}")],
            ),
        ]
        .into();
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let endpoint = self.endpoint.clone();
        Ok(docker
            .events(Some(options))
            .map(move |e| e.map_err(|e| call_error(&endpoint, "events", &e))))
    }

    /// A container's log: the last `tail` lines, then (with `follow`) new lines as they are written.
    pub async fn logs(
        &self,
        container: &str,
        tail: usize,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<LogOutput, EngineError>> + use<>, EngineError> {
        let docker = self.client().await?;
        self.count(1);
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let endpoint = self.endpoint.clone();
        Ok(docker
            .logs(container, Some(options))
            .map(move |e| e.map_err(|e| call_error(&endpoint, "logs", &e))))
    }

    /// One request to the engine, counted and bounded by `after`.
    async fn bounded<T>(
        &self,
        what: &str,
        after: Duration,
        call: impl Future<Output = T>,
    ) -> Result<T, EngineError> {
        self.count(1);
        tokio::time::timeout(after, call)
            .await
            .map_err(|_| EngineError::Timeout {
                what: format!("Docker engine at {}: {what}", self.endpoint),
                after,
            })
    }

    /// One request whose failure is the operator's sentence "Docker engine at ...: <what>: <why>".
    async fn request<T>(
        &self,
        what: &str,
        after: Duration,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        self.bounded(what, after, call)
            .await?
            .map_err(|e| self.call_error(what, &e))
    }

    fn unreachable(&self, e: &bollard::errors::Error) -> EngineError {
        EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: describe(e),
        }
    }

    fn call_error(&self, what: &str, e: &bollard::errors::Error) -> EngineError {
        call_error(&self.endpoint, what, e)
    }
}

/// What a prune reports: how many things went, and the bytes freed.
fn seen_container(c: ContainerSummary) -> SeenContainer {
    let label = |key: &str| c.labels.as_ref().and_then(|l| l.get(key)).cloned();
    SeenContainer {
        name: c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        project: label(PROJECT_LABEL),
        service: label(SERVICE_LABEL),
        working_dir: label(WORKING_DIR_LABEL),
        ports: c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let public = p.public_port?;
                let ip = p.ip.unwrap_or_else(|| "0.0.0.0".into());
                let kind = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                Some(format!("{ip}:{public}/{kind}"))
            })
            .collect(),
    }
}

pub fn short_id(container: &str) -> &str {
    let is_id = container.len() == 64 && container.bytes().all(|b| b.is_ascii_hexdigit());
    if is_id { &container[..12] } else { container }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_shortened_names_are_not() {
        let id = "a".repeat(64);
        assert_eq!(short_id(&id), "aaaaaaaaaaaa");
        assert_eq!(short_id("epsm-backend-1"), "epsm-backend-1");
    }

    #[tokio::test]
    async fn a_missing_socket_is_reported_as_unreachable_with_the_reason() {
        let engine = Engine::new("unix:///nonexistent/docker.sock");
        let status = engine.status().await;
        assert_eq!(status.endpoint, "unix:///nonexistent/docker.sock");
        match status.state {
            EngineState::Unreachable { reason } => assert_eq!(
                reason,
                "Docker engine not reachable at unix:///nonexistent/docker.sock: \
                 the socket does not exist (is dockerd running?)"
            ),
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a dead socket file
        let engine = Engine::new(format!("unix://{}", path.display()));
        match engine.status().await.state {
            EngineState::Unreachable { reason } => {
                assert!(
                    reason.ends_with("connection refused (no engine listens there)"),
                    "{reason}"
                )
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
